"""``agentwatch setup``: what it prints and how --write merges into the user's own files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path


def setup(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(
        [sys.executable, "-m", "collector", "setup", *args], capture_output=True, text=True, env=env
    )


def test_claude_settings_merge_keeps_other_keys_and_backs_up(tmp_path: Path) -> None:
    settings = tmp_path / ".claude" / "settings.json"
    settings.parent.mkdir()
    original = {"model": "opus", "env": {"KEEP": "me", "OTEL_LOG_USER_PROMPTS": "1"}}
    settings.write_text(json.dumps(original))
    done = setup(tmp_path, "claude-code", "--endpoint", "http://10.0.0.5:4317", "--write")
    assert done.returncode == 0, done.stderr
    merged = json.loads(settings.read_text())
    assert merged["model"] == "opus" and merged["env"]["KEEP"] == "me"
    assert merged["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://10.0.0.5:4317"
    assert merged["env"]["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1"
    assert merged["env"]["OTEL_LOG_USER_PROMPTS"] == "0"  # content is off unless asked
    (backup,) = settings.parent.glob("settings.json.agentwatch-backup-*")
    assert json.loads(backup.read_text()) == original


def test_codex_otel_table_replaced_rest_untouched(tmp_path: Path) -> None:
    config = tmp_path / ".codex" / "config.toml"
    config.parent.mkdir()
    config.write_text(
        'model = "gpt-5.5"\n\n[otel]\nenvironment = "old"\nexporter = "none"\n\n'
        '[otel.extra]\nx = 1\n\n[model_providers.mock]\nname = "m"\n'
    )
    done = setup(
        tmp_path, "codex", "--protocol", "http", "--token", "t0k", "--content", "on", "--write"
    )
    assert done.returncode == 0, done.stderr
    parsed = tomllib.loads(config.read_text())
    assert parsed["model"] == "gpt-5.5" and parsed["model_providers"]["mock"]["name"] == "m"
    otel = parsed["otel"]
    assert set(otel) == {"log_user_prompt", "exporter", "metrics_exporter", "trace_exporter"}
    assert otel["log_user_prompt"] is True
    assert otel["metrics_exporter"]["otlp-http"]["endpoint"] == "http://127.0.0.1:4318/v1/metrics"
    assert otel["exporter"]["otlp-http"]["headers"] == {"authorization": "Bearer t0k"}


def test_gemini_and_vscode_and_copilot_cli(tmp_path: Path) -> None:
    gemini = tmp_path / ".gemini" / "settings.json"
    gemini.parent.mkdir()
    gemini.write_text(
        json.dumps(
            {
                "security": {"auth": {"selectedType": "gemini-api-key"}},
                "telemetry": {"outfile": "/x"},
            }
        )
    )
    assert setup(tmp_path, "gemini", "--write").returncode == 0
    data = json.loads(gemini.read_text())
    assert data["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert data["telemetry"] == {
        "outfile": "/x",
        "enabled": True,
        "target": "local",
        "useCollector": True,
        "otlpEndpoint": "http://127.0.0.1:4317",
        "otlpProtocol": "grpc",
        "logPrompts": False,
    }
    done = setup(tmp_path, "copilot-vscode", "--protocol", "http", "--write")
    assert done.returncode == 0, done.stderr
    vscode = json.loads((tmp_path / ".config" / "Code" / "User" / "settings.json").read_text())
    assert vscode["github.copilot.chat.otel.exporterType"] == "otlp-http"
    assert vscode["github.copilot.chat.otel.captureContent"] is False
    cli = setup(tmp_path, "copilot-cli", "--token", "s3")
    assert cli.returncode == 0
    assert "export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317" in cli.stdout
    assert "export OTEL_EXPORTER_OTLP_HEADERS='Authorization=Bearer s3'" in cli.stdout
    assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=false" in cli.stdout
    refused = setup(tmp_path, "copilot-cli", "--write")
    assert refused.returncode == 1 and "no settings file" in refused.stderr


def test_a_file_that_does_not_parse_is_left_alone(tmp_path: Path) -> None:
    settings = tmp_path / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text("{ // a comment\n}")
    done = setup(tmp_path, "claude-code", "--write")
    assert done.returncode == 1 and "not written" in done.stderr
    assert settings.read_text() == "{ // a comment\n}"
    assert list(settings.parent.iterdir()) == [settings]


def test_mdm_script_configures_each_home(tmp_path: Path) -> None:
    """configs/examples/mdm-agentwatch-setup.sh over a home named after the current user."""
    import getpass

    script = Path(__file__).parents[2] / "configs" / "examples" / "mdm-agentwatch-setup.sh"
    home = tmp_path / getpass.getuser()
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text('model = "gpt-5.5"\n')
    wrapper = tmp_path / "agentwatch"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m collector "$@"\n')
    wrapper.chmod(0o755)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AGENTWATCH_ENDPOINT": "http://collector.example:4317",
        "AGENTWATCH_AGENTS": "claude-code codex",
        "AGENTWATCH_BIN": str(wrapper),
        "AGENTWATCH_HOMES": str(home),
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("configured for") == 2
    claude = json.loads((home / ".claude" / "settings.json").read_text())
    assert claude["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.example:4317"
    codex = tomllib.loads((home / ".codex" / "config.toml").read_text())
    assert codex["model"] == "gpt-5.5"
    assert codex["otel"]["exporter"]["otlp-grpc"]["endpoint"] == "http://collector.example:4317"
