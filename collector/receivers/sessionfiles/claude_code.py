"""Claude Code transcripts: ``~/.claude/projects/<project>/<session>.jsonl`` and subagent files
under ``<project>/<session>/subagents/``.

One API call per ``message.id`` + ``requestId``. Claude writes one transcript line per content
block of a streamed message, each repeating the message's usage, and early lines can carry a
partial count: the line with the **largest** usage is kept. A copy of a call in another file
(a sidechain replay, a resumed session) is counted once, in the first file read. Lines without
a request id or with the ``<synthetic>`` model were never sent to the API. Tool calls pair the
``tool_use`` and ``tool_result`` content blocks by id.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from collector.receivers.sessionfiles.internal.events import (
    FileEvent,
    FileResult,
    Scalar,
    Session,
    as_int,
    json_lines,
    json_text,
    parse_time_ns,
)

AGENT = "claude-code"
AGENT_ID = "claude_code"
ENV_VAR = "AGENTWATCH_CLAUDE_CODE_PATH"


def default_root() -> Path:
    """``$AGENTWATCH_CLAUDE_CODE_PATH``, else ``$CLAUDE_CONFIG_DIR/projects``, else
    ``~/.claude/projects``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    base = os.environ.get("CLAUDE_CONFIG_DIR") or str(Path.home() / ".claude")
    return Path(base) / "projects"


def files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.jsonl")) if root.is_dir() else []


def user_id(root: Path) -> str | None:
    """Claude's installation user id (``userID`` in ``~/.claude.json``), the ``user.id`` its
    telemetry carries, so imported sessions group with the same user."""
    for candidate in (root.parent.parent / ".claude.json", root.parent / ".claude.json"):
        try:
            value = json.loads(candidate.read_text()).get("userID")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str) and value:
            return value
    return None


def _usage_size(usage: dict[str, Any]) -> int:
    return sum(
        as_int(usage.get(k))
        for k in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        )
    )


def call_key(message_id: str, request_id: str) -> int:
    digest = hashlib.blake2b(f"{message_id}\x1f{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Reader:
    """Reads the files of one import; remembers calls across files so a copy counts once."""

    agent = AGENT

    def __init__(self, root: Path) -> None:
        self.root = root
        self.user_id = user_id(root)
        self.seen: set[int] = set()

    def read(self, path: Path) -> FileResult:
        result = FileResult(path)
        best: dict[int, tuple[int, dict[str, Any]]] = {}
        order: list[int] = []
        tool_uses: dict[str, tuple[int, str, Any, str]] = {}
        results: list[tuple[dict[str, Any], int, str]] = []
        prompts: list[tuple[dict[str, Any], str]] = []
        for _, line in json_lines(path):
            if line is None:
                result.bad_lines += 1
                continue
            message = line.get("message")
            if not isinstance(message, dict):
                continue
            kind = line.get("type")
            session = line.get("sessionId")
            if not isinstance(session, str) or not session:
                continue
            when = parse_time_ns(line.get("timestamp")) or 0
            content = message.get("content")
            if kind == "assistant":
                for block in content if isinstance(content, list) else ():
                    if isinstance(block, dict) and block.get("type") == "tool_use":
                        tool_id = block.get("id")
                        if isinstance(tool_id, str) and tool_id not in tool_uses:
                            name = str(block.get("name") or "")
                            tool_uses[tool_id] = (when, name, block.get("input"), session)
                usage = message.get("usage")
                message_id, request_id = message.get("id"), line.get("requestId")
                if (
                    not isinstance(usage, dict)
                    or not isinstance(message_id, str)
                    or not isinstance(request_id, str)
                    or message.get("model") == "<synthetic>"
                ):
                    continue
                key = call_key(message_id, request_id)
                size = _usage_size(usage)
                if key not in best:
                    order.append(key)
                    best[key] = (size, line)
                elif size > best[key][0]:
                    best[key] = (size, line)
            elif kind == "user" and not line.get("isMeta"):
                if isinstance(content, str):
                    prompts.append((line, session))
                for block in content if isinstance(content, list) else ():
                    if isinstance(block, dict) and block.get("type") == "tool_result":
                        results.append((block, when, session))
        sessions: dict[str, Session] = {}

        def session_of(session_id: str, version: Any = None) -> Session:
            if session_id not in sessions:
                resource: dict[str, Scalar] = {"service.name": AGENT}
                if isinstance(version, str) and version:
                    resource["service.version"] = version
                sessions[session_id] = Session(session_id, resource)
            return sessions[session_id]

        for key in order:
            if key in self.seen:
                continue
            self.seen.add(key)
            _, line = best[key]
            session = session_of(line["sessionId"], line.get("version"))
            session.events.append(self._api_request(line))
        for line, session_id in prompts:
            text = line["message"]["content"]
            attrs = self._identity(session_id, line)
            attrs |= {"event.name": "user_prompt", "prompt_length": len(text), "prompt": text}
            when = parse_time_ns(line.get("timestamp")) or 0
            session_of(session_id, line.get("version")).events.append(
                FileEvent(when, "claude_code.user_prompt", attrs)
            )
        done: set[str] = set()
        for block, when, session_id in results:
            tool_id = block.get("tool_use_id")
            if not isinstance(tool_id, str) or tool_id in done:
                continue
            done.add(tool_id)
            used = tool_uses.get(tool_id)
            attrs = self._identity(session_id, {})
            attrs |= {
                "event.name": "tool_result",
                "tool_use_id": tool_id,
                "success": not block.get("is_error", False),
                "tool_result_size_bytes": len(json_text(block.get("content", "")).encode()),
            }
            if used is not None:
                started, name, arguments, _ = used
                attrs["tool_name"] = name
                if arguments is not None:
                    attrs["tool_input"] = json_text(arguments)
                if started and when >= started:
                    attrs["duration_ms"] = (when - started) / 1e6
            session_of(session_id).events.append(FileEvent(when, "claude_code.tool_result", attrs))
        result.sessions = list(sessions.values())
        return result

    def _identity(self, session_id: str, line: dict[str, Any]) -> dict[str, Scalar]:
        attrs: dict[str, Scalar] = {"session.id": session_id}
        if self.user_id:
            attrs["user.id"] = self.user_id
        prompt_id = line.get("promptId")
        if isinstance(prompt_id, str) and prompt_id:
            attrs["prompt.id"] = prompt_id
        return attrs

    def _api_request(self, line: dict[str, Any]) -> FileEvent:
        message = line["message"]
        usage = message["usage"]
        attrs = self._identity(line["sessionId"], line)
        attrs |= {
            "event.name": "api_request",
            "model": str(message.get("model") or ""),
            "request_id": line["requestId"],
            "message_id": message["id"],
            "input_tokens": as_int(usage.get("input_tokens")),
            "output_tokens": as_int(usage.get("output_tokens")),
            "cache_read_tokens": as_int(usage.get("cache_read_input_tokens")),
            "cache_creation_tokens": as_int(usage.get("cache_creation_input_tokens")),
        }
        split = usage.get("cache_creation")
        if isinstance(split, dict):
            attrs["cache_creation_5m_tokens"] = as_int(split.get("ephemeral_5m_input_tokens"))
            attrs["cache_creation_1h_tokens"] = as_int(split.get("ephemeral_1h_input_tokens"))
        cost = line.get("costUSD")
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            attrs["cost_usd"] = float(cost)
        if line.get("isSidechain"):
            attrs["is_sidechain"] = True
        when = parse_time_ns(line.get("timestamp")) or 0
        match = (
            int(attrs["input_tokens"]),
            int(attrs["cache_read_tokens"]),
            int(attrs["cache_creation_tokens"]),
            int(attrs["output_tokens"]),
        )
        return FileEvent(when, "claude_code.api_request", attrs, api_call=True, match_tokens=match)
