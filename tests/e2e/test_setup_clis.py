"""``agentwatch setup --write`` output fed to the real Claude Code, Codex and Gemini CLIs (and
``setup copilot-cli``'s environment to the real Copilot CLI): each then sends its telemetry to a
running agentwatch, with no other telemetry setting.

The CLIs get only what points them at their mock model API (base URL and key, and for Codex
and Gemini the provider/auth keys already in their settings file, which setup must keep).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.agent_clis import (
    ALL_SPECS,
    COPILOT_DENIED_TOOL,
    PROMPT,
    AgentName,
    copilot_cache_home,
    install_clis,
    mock_for,
)
from tests.e2e.stack import AgentwatchStack, wait_for
from tests.e2e.test_agents_through_agentwatch import AGENT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SETUP_NAME = {
    "claude": "claude-code",
    "codex": "codex",
    "gemini": "gemini",
    "copilot": "copilot-cli",
}
AGENT_OF = {**AGENT, "copilot": "copilot_cli"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentwatchStack]:
    install_clis()
    running = AgentwatchStack(tmp_path_factory.mktemp("agentwatch")).start()
    try:
        yield running
    finally:
        running.stop()


def prepare(agent: AgentName, home: Path, base_url: str) -> tuple[list[str], dict[str, str]]:
    """The mock-only settings (no telemetry) the CLI needs, in its own files and environment."""
    spec = ALL_SPECS[agent]
    exe = str(spec.executable)
    if agent == "copilot":  # signed in to the GitHub API mock, as the Copilot e2e suite runs it
        env = {
            "XDG_CACHE_HOME": str(copilot_cache_home()),
            "COPILOT_AUTO_UPDATE": "false",
            "COPILOT_GITHUB_TOKEN": "gho_agentwatchE2eMockToken0000000000000",
            "COPILOT_DEBUG_GITHUB_API_URL": base_url,
            "COPILOT_MODEL": spec.model,
        }
        argv = [exe, "-p", PROMPT, "--allow-all-tools", f"--deny-tool={COPILOT_DENIED_TOOL}"]
        return [*argv, "--add-dir=/tmp", "--disable-builtin-mcps"], env
    if agent == "claude":
        env = {
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": "sk-ant-mock-agentwatch-e2e",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        }
        return [exe, "-p", PROMPT, "--allowedTools", "Bash", "--model", spec.model], env
    if agent == "codex":
        (home / ".codex").mkdir()
        (home / ".codex" / "config.toml").write_text(
            f'model = "{spec.model}"\nmodel_provider = "mock"\napproval_policy = "never"\n'
            'sandbox_mode = "danger-full-access"\n\n[model_providers.mock]\n'
            f'name = "mock"\nbase_url = "{base_url}/v1"\nenv_key = "MOCK_KEY"\n'
            'wire_api = "responses"\nrequest_max_retries = 4\nstream_max_retries = 2\n'
        )
        return [exe, "exec", "--skip-git-repo-check", PROMPT], {"MOCK_KEY": "sk-mock"}
    (home / ".gemini").mkdir()
    (home / ".gemini" / "settings.json").write_text(
        json.dumps(
            {
                "security": {
                    "auth": {"selectedType": "gemini-api-key"},
                    "folderTrust": {"enabled": False},
                }
            }
        )
    )
    env = {"GEMINI_API_KEY": "mock", "GOOGLE_GEMINI_BASE_URL": base_url}
    return [exe, "-p", PROMPT, "--yolo", "-m", spec.model], env


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini", "copilot"])
def test_setup_output_makes_the_cli_send_to_agentwatch(
    stack: AgentwatchStack, tmp_path: Path, agent: AgentName
) -> None:
    home = tmp_path / "home"
    (home / "project").mkdir(parents=True)
    (home / "tmp").mkdir()
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
    }
    # Copilot CLI 1.0.102 was verified over OTLP/HTTP only (docs/agents/copilot.md).
    protocol = "http" if agent == "copilot" else "grpc"
    endpoint = stack.endpoint("http/protobuf" if agent == "copilot" else "grpc")
    query = "SELECT count() FROM api_calls WHERE agent = {a:String}"
    before = stack.scalar(query, a=AGENT_OF[agent])
    with mock_for(agent) as mock:
        argv, env = prepare(agent, home, mock.base_url)
        setup = subprocess.run(
            [
                sys.executable,
                "-m",
                "collector",
                "setup",
                SETUP_NAME[agent],
                "--endpoint",
                endpoint,
                "--protocol",
                protocol,
                *([] if agent == "copilot" else ["--write"]),
            ],
            env=base,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert setup.returncode == 0, setup.stderr
        if agent == "copilot":  # no settings file: the environment it prints, as a profile sets
            exports = [shlex.split(line)[1] for line in setup.stdout.splitlines()
                       if line.startswith("export ")]
            env |= dict(e.split("=", 1) for e in exports)
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint
        done = subprocess.run(
            argv,
            cwd=home / "project",
            env={**base, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        answered = [c for c in mock.calls if c.status == 200 and c.wire_usage is not None]
    assert len(answered) >= 4
    wait_for(
        lambda: (
            stack.scalar(query, a=AGENT_OF[agent]) >= before + len(answered)
        ),
        120,
        f"{agent}'s API calls over the telemetry setup configured",
    )
