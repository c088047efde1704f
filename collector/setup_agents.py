"""``agentwatch setup``: the exact settings that point one agent's telemetry at agentwatch,
printed, or merged into the user's own settings file (after a backup, other keys untouched).

Content capture (prompts, responses, tool details) is off unless ``content`` is on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

Protocol = Literal["grpc", "http"]
AGENTS = ("claude-code", "codex", "gemini", "copilot-vscode", "copilot-cli")


@dataclass
class AgentSettings:
    agent: str
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables (to export, or already inside the file for Claude Code)."""
    file: Path | None = None
    merge: Callable[[str | None], str] | None = None
    """Existing file text (None: no file) -> the merged text."""
    snippet: str = ""
    """What the file gets, as shown to the user."""


def default_endpoint(protocol: Protocol) -> str:
    return "http://127.0.0.1:4317" if protocol == "grpc" else "http://127.0.0.1:4318"


def _headers(token: str | None) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {token}"} if token else {}


def _json_merge(update: Callable[[dict[str, Any]], None]) -> Callable[[str | None], str]:
    def merge(text: str | None) -> str:
        data = json.loads(text) if text and text.strip() else {}
        if not isinstance(data, dict):
            raise ValueError("the settings file is not a JSON object")
        update(data)
        return json.dumps(data, indent=2) + "\n"

    return merge


def claude_code(
    endpoint: str, protocol: Protocol, token: str | None, content: bool
) -> AgentSettings:
    switch = "1" if content else "0"
    env = {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc" if protocol == "grpc" else "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        **_headers(token),
        "OTEL_LOG_USER_PROMPTS": switch,
        "OTEL_LOG_TOOL_DETAILS": switch,
    }
    base = Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")

    def update(data: dict[str, Any]) -> None:
        data["env"] = {**(data.get("env") or {}), **env}

    snippet = json.dumps({"env": env}, indent=2)
    return AgentSettings("claude-code", env, base / "settings.json", _json_merge(update), snippet)


def _codex_exporter(endpoint: str, protocol: Protocol, signal: str, token: str | None) -> str:
    headers = f', headers = {{ "authorization" = "Bearer {token}" }}' if token else ""
    if protocol == "grpc":
        return f'{{ otlp-grpc = {{ endpoint = "{endpoint}"{headers} }} }}'
    url = f"{endpoint.rstrip('/')}/v1/{signal}"
    return f'{{ otlp-http = {{ endpoint = "{url}", protocol = "binary"{headers} }} }}'


_TABLE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _drop_otel_tables(text: str) -> str:
    """The TOML text without its ``[otel]`` table and ``[otel.*]`` sub-tables."""
    out, skipping = [], False
    for line in text.splitlines():
        header = _TABLE.match(line)
        if header:
            name = header.group(1).strip().strip('"')
            skipping = name == "otel" or name.startswith("otel.")
        if not skipping:
            out.append(line)
    return "\n".join(out).rstrip() + "\n" if out else ""


def codex(endpoint: str, protocol: Protocol, token: str | None, content: bool) -> AgentSettings:
    """Codex sends its metrics to OpenAI unless ``metrics_exporter`` says otherwise."""
    snippet = "\n".join(
        [
            "[otel]",
            f"log_user_prompt = {'true' if content else 'false'}",
            f"exporter = {_codex_exporter(endpoint, protocol, 'logs', token)}",
            f"metrics_exporter = {_codex_exporter(endpoint, protocol, 'metrics', token)}",
            f"trace_exporter = {_codex_exporter(endpoint, protocol, 'traces', token)}",
        ]
    )

    def merge(text: str | None) -> str:
        if text:
            tomllib.loads(text)  # refuse to touch a file that is not TOML
        kept = _drop_otel_tables(text or "")
        merged = (kept + "\n" if kept else "") + snippet + "\n"
        tomllib.loads(merged)
        return merged

    base = Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex")
    return AgentSettings("codex", {}, base / "config.toml", merge, snippet)


def gemini(endpoint: str, protocol: Protocol, token: str | None, content: bool) -> AgentSettings:
    telemetry = {
        "enabled": True,
        "target": "local",
        "useCollector": True,
        "otlpEndpoint": endpoint,
        "otlpProtocol": protocol,
        "logPrompts": content,
    }

    def update(data: dict[str, Any]) -> None:
        data["telemetry"] = {**(data.get("telemetry") or {}), **telemetry}

    snippet = json.dumps({"telemetry": telemetry}, indent=2)
    path = Path.home() / ".gemini" / "settings.json"
    return AgentSettings("gemini", _headers(token), path, _json_merge(update), snippet)


def vscode_settings_path() -> Path:
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Code" / "User" / "settings.json"
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", "")) / "Code" / "User" / "settings.json"
    return Path.home() / ".config" / "Code" / "User" / "settings.json"


def copilot_vscode(
    endpoint: str, protocol: Protocol, token: str | None, content: bool
) -> AgentSettings:
    keys = {
        "github.copilot.chat.otel.enabled": True,
        "github.copilot.chat.otel.exporterType": "otlp-grpc" if protocol == "grpc" else "otlp-http",
        "github.copilot.chat.otel.otlpEndpoint": endpoint,
        "github.copilot.chat.otel.captureContent": content,
    }
    snippet = json.dumps(keys, indent=2)
    return AgentSettings(
        "copilot-vscode",
        _headers(token),
        vscode_settings_path(),
        _json_merge(lambda data: data.update(keys)),
        snippet,
    )


def copilot_cli(
    endpoint: str, protocol: Protocol, token: str | None, content: bool
) -> AgentSettings:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc" if protocol == "grpc" else "http/protobuf",
        **_headers(token),
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true" if content else "false",
    }
    return AgentSettings("copilot-cli", env)


BUILDERS = {
    "claude-code": claude_code,
    "codex": codex,
    "gemini": gemini,
    "copilot-vscode": copilot_vscode,
    "copilot-cli": copilot_cli,
}


def settings_for(
    agent: str, endpoint: str | None, protocol: Protocol, token: str | None, content: bool
) -> AgentSettings:
    return BUILDERS[agent](endpoint or default_endpoint(protocol), protocol, token, content)


def describe(s: AgentSettings) -> str:
    lines = []
    env = s.env if s.agent != "claude-code" else {}
    if env:
        lines.append("# environment (shell profile, or your MDM's environment policy):")
        lines += [f"export {k}={_shell(v)}" for k, v in env.items()]
    if s.file is not None:
        lines.append(f"# {s.file} (merged with --write):")
        lines.append(s.snippet)
    return "\n".join(lines)


def _shell(value: str) -> str:
    return (
        value
        if re.fullmatch(r"[A-Za-z0-9_./:=@-]+", value)
        else "'" + value.replace("'", "'\\''") + "'"
    )


def write(s: AgentSettings) -> tuple[Path, Path | None]:
    """Merge into the user's file; returns (file, backup or None when there was no file)."""
    if s.file is None or s.merge is None:
        raise ValueError(f"{s.agent} has no settings file: set the environment variables shown")
    old = s.file.read_text() if s.file.exists() else None
    merged = s.merge(old)
    backup = None
    if old is not None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        backup = s.file.with_name(f"{s.file.name}.agentwatch-backup-{stamp}")
        shutil.copy2(s.file, backup)
    s.file.parent.mkdir(parents=True, exist_ok=True)
    tmp = s.file.with_name(s.file.name + ".agentwatch-tmp")
    tmp.write_text(merged)
    os.replace(tmp, s.file)
    return s.file, backup
