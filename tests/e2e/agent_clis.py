"""Run the real agent CLIs offline: each against its mock model API, telemetry to a given OTLP
endpoint, in a throwaway HOME, and report what the run did.

The CLIs come from ``scripts/install-agent-clis.sh`` (pinned versions, cached). Every setting
that points a CLI at the mock or turns its telemetry on lives here, one function per CLI, so
the e2e tests, the capture script and later agentwatch's own e2e suite share them.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tests.e2e.mock_models import (
    AnthropicMock,
    CatalogModel,
    CopilotApiMock,
    GeminiMock,
    MockModelServer,
    OpenAIResponsesMock,
    RateLimited,
    RecordedCall,
    Scenario,
    Text,
    ToolCall,
    Usage,
)
from tests.e2e.otlp_capture import LogEvent, OtlpCapture, log_events, resources

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "install-agent-clis.sh"

Protocol = Literal["http/protobuf", "http/json", "grpc"]
AgentName = Literal["claude", "codex", "gemini", "copilot"]

PROMPT = (
    "Run `echo hello` in the shell, then run the failing check command, then tell me what happened."
)
ECHO_COMMAND = "echo hello"
FAILING_COMMAND = "ls /nonexistent-agentwatch-e2e"
"""Exits non-zero (2) on every Linux: the tool call that fails."""
REFUSED_FILE = "/tmp/agentwatch-e2e-refused-write.txt"
"""Claude is asked to write here with a tool it is not allowed; the file must never appear."""
UNKNOWN_TOOL = "delete_everything"
FINAL_ANSWER = "echo printed hello; the check command failed with exit code 2; one call refused."


def cache_dir() -> Path:
    base = os.environ.get("AGENTWATCH_CACHE") or str(Path.home() / ".cache" / "agentwatch")
    return Path(base) / "agent-clis"


def install_clis(timeout_s: float = 900) -> float:
    """Run the install script (a no-op when cached); returns the seconds it took."""
    start = time.monotonic()
    subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True, timeout=timeout_s)
    return time.monotonic() - start


@dataclass(frozen=True)
class CliSpec:
    agent: AgentName
    package: str
    version: str
    bin_name: str
    service_name: str
    model: str
    protocols: tuple[Protocol, ...]
    """OTLP protocols this CLI can export with, as far as agentwatch has verified."""

    @property
    def package_dir(self) -> Path:
        return cache_dir() / f"{self.package}@{self.version}"

    @property
    def executable(self) -> Path:
        return self.package_dir / "node_modules" / ".bin" / self.bin_name

    def installed(self) -> bool:
        return (self.package_dir / ".agentwatch-installed").is_file() and self.executable.exists()


CLAUDE = CliSpec(
    "claude",
    "@anthropic-ai/claude-code",
    "2.1.328",
    "claude",
    "claude-code",
    "claude-sonnet-4-5",
    ("http/protobuf", "http/json", "grpc"),
)
CODEX = CliSpec(
    "codex",
    "@openai/codex",
    "0.169.0",
    "codex",
    "codex_exec",
    "gpt-5.5",
    ("http/protobuf", "http/json", "grpc"),
)
GEMINI = CliSpec(
    "gemini",
    "@google/gemini-cli",
    "0.61.0",
    "gemini",
    "gemini-cli",
    "gemini-2.5-pro",
    ("http/json", "grpc"),
)
COPILOT = CliSpec(
    "copilot",
    "@github/copilot",
    "1.0.102",
    "copilot",
    "github-copilot",
    "claude-sonnet-4.5",
    ("http/protobuf", "http/json"),
)
SPECS: dict[AgentName, CliSpec] = {"claude": CLAUDE, "codex": CODEX, "gemini": GEMINI}
"""The CLIs that log their calls as events (the acceptance suite's common cases)."""
ALL_SPECS: dict[AgentName, CliSpec] = {**SPECS, "copilot": COPILOT}
"""With the Copilot CLI, whose calls are spans only (tests/e2e/test_copilot_through_agentwatch)."""


def scenario_for(
    agent: AgentName,
    *,
    extra_command: str | None = None,
    hold_final: Callable[[], bool] | None = None,
) -> Scenario:
    """429 then success; a shell call that works; one that fails; one the CLI refuses; an answer.

    The refused call names a tool the CLI must not run: one it is not allowed to use (Claude,
    ``--allowedTools Bash`` only) or one that does not exist (Codex and Gemini run with every
    approval off, so nothing they know is refused). Token numbers differ per agent and per call
    and none is round, so a test can tell every call apart wherever the numbers land.

    ``extra_command`` adds one more shell call after the refused one (agentwatch's own e2e
    suite plants a secret and a download-and-execute pattern in it); ``hold_final`` delays the
    final answer until it returns True (see :class:`Text`). Without them the scenario is the
    one recorded in tests/data/captured.
    """
    refused: tuple[str, dict[str, object]]
    if agent == "copilot":
        return copilot_scenario(extra_command=extra_command, hold_final=hold_final, nano_aiu=True)
    if agent == "claude":
        usages = (
            Usage(
                1203,
                cache_read_tokens=15011,
                cache_write_tokens=3007,
                output_tokens=57,
                cache_write_1h_tokens=1006,
            ),
            Usage(1319, cache_read_tokens=18023, cache_write_tokens=211, output_tokens=61),
            Usage(1427, cache_read_tokens=18241, cache_write_tokens=97, output_tokens=83),
            Usage(1531, cache_read_tokens=18457, cache_write_tokens=89, output_tokens=79),
        )
        refused = ("Write", {"file_path": REFUSED_FILE, "content": "must not be written\n"})
    elif agent == "codex":
        usages = (
            Usage(2213, cache_read_tokens=4113, output_tokens=131, reasoning_tokens=67),
            Usage(
                2341,
                cache_read_tokens=6151,
                cache_write_tokens=1013,
                output_tokens=149,
                reasoning_tokens=71,
            ),
            Usage(2459, cache_read_tokens=8219, output_tokens=163, reasoning_tokens=29),
            Usage(2503, cache_read_tokens=9337, output_tokens=117, reasoning_tokens=37),
        )
        refused = (UNKNOWN_TOOL, {"target": "everything"})
    else:
        usages = (
            Usage(3109, cache_read_tokens=5023, output_tokens=73, reasoning_tokens=41),
            Usage(3221, cache_read_tokens=7039, output_tokens=87, reasoning_tokens=43),
            Usage(3343, cache_read_tokens=9047, output_tokens=101, reasoning_tokens=47),
            Usage(3457, cache_read_tokens=9151, output_tokens=109, reasoning_tokens=53),
        )
        refused = (UNKNOWN_TOOL, {"target": "everything"})
    extra: tuple[ToolCall, ...] = ()
    if extra_command is not None:
        extra = (ToolCall(EXTRA_CALL_USAGE[agent], command=extra_command),)
    return Scenario(
        steps=(
            RateLimited(retry_after_s=1),
            ToolCall(usages[0], command=ECHO_COMMAND, text="I'll run echo first."),
            ToolCall(usages[1], command=FAILING_COMMAND),
            ToolCall(usages[2], tool=refused[0], args=refused[1]),
            *extra,
            Text(usages[3], FINAL_ANSWER, hold_until=hold_final),
        )
    )


COPILOT_SHELL = "bash"
COPILOT_DENIED_COMMAND = f"touch {REFUSED_FILE}"
COPILOT_DENIED_TOOL = "shell(touch)"
"""``--deny-tool`` rule of every Copilot run: it refuses the scenario's ``touch``. A shell rule
works with every model (``gpt-5.4`` offers ``apply_patch`` instead of ``create`` for files)."""


def copilot_scenario(
    *,
    extra_command: str | None = None,
    hold_final: Callable[[], bool] | None = None,
    nano_aiu: bool = False,
) -> Scenario:
    """:func:`scenario_for` for the Copilot CLI: the refused call is a shell command that
    ``--deny-tool`` forbids. The tool is named directly (``bash``) so every wire format asks
    for the same calls. ``nano_aiu`` sets AI credits per call, as GitHub's model
    API reports them (``copilot_usage.total_nano_aiu``)."""

    def aiu(n: int) -> int | None:
        return n if nano_aiu else None

    def shell(command: str) -> dict[str, object]:
        return {"command": command, "description": "Run the command the scenario asks for"}

    usages = (
        Usage(
            4111,
            cache_read_tokens=6007,
            cache_write_tokens=1009,
            output_tokens=89,
            reasoning_tokens=19,
        ),
        Usage(4217, cache_read_tokens=7013, output_tokens=97),
        Usage(4327, cache_read_tokens=8017, cache_write_tokens=503, output_tokens=103),
        Usage(4433, cache_read_tokens=9029, output_tokens=113, reasoning_tokens=23),
    )
    extra: tuple[ToolCall, ...] = ()
    if extra_command is not None:
        extra = (
            ToolCall(
                EXTRA_CALL_USAGE["copilot"],
                tool=COPILOT_SHELL,
                args=shell(extra_command),
                nano_aiu=aiu(117_000_003),
            ),
        )
    return Scenario(
        steps=(
            RateLimited(retry_after_s=1),
            ToolCall(
                usages[0],
                tool=COPILOT_SHELL,
                args=shell(ECHO_COMMAND),
                text="I'll run echo first.",
                nano_aiu=aiu(123_456_789),
            ),
            ToolCall(
                usages[1], tool=COPILOT_SHELL, args=shell(FAILING_COMMAND), nano_aiu=aiu(98_765_431)
            ),
            ToolCall(
                usages[2],
                tool=COPILOT_SHELL,
                args=shell(COPILOT_DENIED_COMMAND),
                nano_aiu=aiu(101_010_101),
            ),
            *extra,
            Text(usages[3], FINAL_ANSWER, hold_until=hold_final, nano_aiu=aiu(87_654_329)),
        )
    )


EXTRA_CALL_USAGE: dict[AgentName, Usage] = {
    "copilot": Usage(4391, cache_read_tokens=8923, output_tokens=107),
    "claude": Usage(1613, cache_read_tokens=18547, cache_write_tokens=131, output_tokens=67),
    "codex": Usage(2477, cache_read_tokens=8923, output_tokens=139, reasoning_tokens=31),
    "gemini": Usage(3389, cache_read_tokens=9103, output_tokens=97, reasoning_tokens=37),
}
"""Usage of :func:`scenario_for`'s optional extra shell call, distinct from every other call."""


def mock_for(agent: AgentName, scenario: Scenario | None = None) -> MockModelServer:
    scenario = scenario or scenario_for(agent)
    model = ALL_SPECS[agent].model
    if agent == "copilot":  # signed in to GitHub: the path that reports premium requests
        return CopilotApiMock(scenario, CatalogModel(model, "Anthropic", 1.0))
    if agent == "claude":
        return AnthropicMock(scenario, model)
    if agent == "codex":
        return OpenAIResponsesMock(scenario, model)
    return GeminiMock(scenario, model)


@dataclass
class CliRun:
    """What one CLI run did."""

    agent: AgentName
    version: str
    argv: list[str]
    env: dict[str, str]
    """Only the variables set for this run (PATH/HOME-like basics left out)."""
    files: dict[str, str]
    """Config files written into HOME, relative path -> content."""
    exit_code: int | None
    """None when the run was killed after its timeout."""
    stdout: str
    stderr: str
    duration_s: float
    mock_calls: list[RecordedCall] = field(default_factory=list)


@dataclass(frozen=True)
class Telemetry:
    """Where and how a CLI exports: ``endpoint`` is the base URL (``http://127.0.0.1:PORT``)."""

    endpoint: str
    protocol: Protocol
    content: bool = True
    """Turn on every switch that puts prompts, responses and tool details in telemetry."""
    traces: bool = True
    """Also export traces where the CLI can (Claude Code: its enhanced-telemetry beta)."""
    resource_attributes: dict[str, str] = field(
        default_factory=lambda: {"team": "platform", "cost_center": "cc-42"}
    )
    service_name: str | None = None
    """``OTEL_SERVICE_NAME``, where the CLI honours it (Copilot); None keeps the CLI's own."""

    def resource_env(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.resource_attributes.items())


def run_cli(
    agent: AgentName,
    mock: MockModelServer,
    telemetry: Telemetry,
    *,
    prompt: str = PROMPT,
    timeout_s: float = 120,
    keep_home: Path | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    argv_override: Callable[[list[str]], list[str]] | None = None,
) -> CliRun:
    """Run one CLI session against ``mock`` and wait until it has exited (and so flushed).

    ``args`` are appended to the CLI's command line and ``env`` overrides its environment (a
    resumed session, an MCP config, logs off); ``argv_override`` rewrites the whole command
    line (``codex exec resume``). ``keep_home`` keeps HOME (a session to resume) across runs.
    """
    spec = ALL_SPECS[agent]
    if telemetry.protocol not in spec.protocols:
        raise ValueError(f"{agent} cannot export OTLP as {telemetry.protocol}")
    if not spec.installed():
        raise FileNotFoundError(f"{spec.executable} missing: run {INSTALL_SCRIPT}")
    builders: dict[AgentName, Callable[..., tuple[list[str], dict[str, str], dict[str, str]]]]
    builders = {"claude": _claude, "codex": _codex, "gemini": _gemini, "copilot": _copilot}
    with tempfile.TemporaryDirectory(prefix=f"agentwatch-e2e-{agent}-") as tmp:
        home = keep_home or Path(tmp)
        workdir = home / "project"
        workdir.mkdir(parents=True, exist_ok=True)
        argv, run_env, files = builders[agent](spec, mock, telemetry, prompt)
        argv = [*argv, *args]
        if argv_override is not None:
            argv = argv_override(argv)
        run_env = {**run_env, **(env or {})}
        for rel, content in files.items():
            path = home / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "NO_COLOR": "1",
            **run_env,
        }
        (home / "tmp").mkdir(exist_ok=True)
        first_call = len(mock.calls)
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
            exit_code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            stdout, stderr = proc.communicate()
            exit_code = None
        duration = time.monotonic() - start
        if keep_home is None:
            shutil.rmtree(home, ignore_errors=True)
    return CliRun(
        agent,
        spec.version,
        argv,
        run_env,
        files,
        exit_code,
        stdout,
        stderr,
        duration,
        list(mock.calls[first_call:]),
    )


def _claude(
    spec: CliSpec, mock: MockModelServer, telemetry: Telemetry, prompt: str
) -> tuple[list[str], dict[str, str], dict[str, str]]:
    switch = "1" if telemetry.content else "0"
    env = {
        "ANTHROPIC_BASE_URL": mock.base_url,
        "ANTHROPIC_API_KEY": "sk-ant-mock-agentwatch-e2e",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": telemetry.protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": telemetry.endpoint,
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_LOGS_EXPORT_INTERVAL": "500",
        "OTEL_RESOURCE_ATTRIBUTES": telemetry.resource_env(),
        "OTEL_LOG_USER_PROMPTS": switch,
        "OTEL_LOG_TOOL_DETAILS": switch,
        "OTEL_LOG_TOOL_CONTENT": switch,
        "OTEL_LOG_ASSISTANT_RESPONSES": switch,
    }
    if telemetry.traces:
        env |= {
            "CLAUDE_CODE_ENHANCED_TELEMETRY_BETA": "1",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_TRACES_EXPORT_INTERVAL": "500",
        }
    argv = [str(spec.executable), "-p", prompt, "--allowedTools", "Bash", "--model", spec.model]
    return argv, env, {}


def _codex(
    spec: CliSpec, mock: MockModelServer, telemetry: Telemetry, prompt: str
) -> tuple[list[str], dict[str, str], dict[str, str]]:
    base = telemetry.endpoint.rstrip("/")
    if telemetry.protocol == "grpc":

        def exporter(signal: str) -> str:
            return f'{{ otlp-grpc = {{ endpoint = "{base}" }} }}'
    else:
        wire = "json" if telemetry.protocol == "http/json" else "binary"

        def exporter(signal: str) -> str:
            return f'{{ otlp-http = {{ endpoint = "{base}/v1/{signal}", protocol = "{wire}" }} }}'

    config = f"""\
model = "{spec.model}"
model_provider = "mock"
approval_policy = "never"
sandbox_mode = "danger-full-access"

[model_providers.mock]
name = "agentwatch mock"
base_url = "{mock.base_url}/v1"
env_key = "MOCK_KEY"
wire_api = "responses"
request_max_retries = 4
stream_max_retries = 2

[otel]
environment = "e2e"
log_user_prompt = {"true" if telemetry.content else "false"}
exporter = {exporter("logs")}
trace_exporter = {exporter("traces")}
metrics_exporter = {exporter("metrics")}
"""
    env = {
        "MOCK_KEY": "sk-mock-agentwatch-e2e",
        "OTEL_RESOURCE_ATTRIBUTES": telemetry.resource_env(),
    }
    argv = [str(spec.executable), "exec", "--skip-git-repo-check", prompt]
    return argv, env, {".codex/config.toml": config}


def _gemini(
    spec: CliSpec, mock: MockModelServer, telemetry: Telemetry, prompt: str
) -> tuple[list[str], dict[str, str], dict[str, str]]:
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
        "telemetry": {
            "enabled": True,
            "target": "local",
            "useCollector": True,
            "otlpEndpoint": telemetry.endpoint,
            "otlpProtocol": "grpc" if telemetry.protocol == "grpc" else "http",
            "logPrompts": telemetry.content,
            "traces": telemetry.content and telemetry.traces,
        },
    }
    env = {
        "GEMINI_API_KEY": "mock-agentwatch-e2e",
        "GOOGLE_GEMINI_BASE_URL": mock.base_url,
        "OTEL_RESOURCE_ATTRIBUTES": telemetry.resource_env(),
    }
    argv = [str(spec.executable), "-p", prompt, "--yolo", "-m", spec.model]
    return argv, env, {".gemini/settings.json": json.dumps(settings, indent=2)}


def copilot_cache_home(spec: CliSpec = COPILOT) -> Path:
    """``XDG_CACHE_HOME`` of every Copilot run: its first run unpacks ~235 MB under
    ``$XDG_CACHE_HOME/copilot``; kept beside the package instead of in each throwaway HOME."""
    return spec.package_dir / "xdg-cache"


def _copilot(
    spec: CliSpec, mock: MockModelServer, telemetry: Telemetry, prompt: str
) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Bring-your-own-provider offline (documented in ``copilot help providers``): the mock's
    class picks the wire API. :class:`CopilotApiMock` is the GitHub sign-in path instead: a fake
    token and the (undocumented) GitHub API URL; only that path reports premium requests."""
    env = {
        "XDG_CACHE_HOME": str(copilot_cache_home(spec)),
        "COPILOT_AUTO_UPDATE": "false",
        "OTEL_EXPORTER_OTLP_ENDPOINT": telemetry.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": telemetry.protocol,
        "OTEL_RESOURCE_ATTRIBUTES": telemetry.resource_env(),
    }
    if telemetry.content:
        env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
    if telemetry.service_name:
        env["OTEL_SERVICE_NAME"] = telemetry.service_name
    argv = [str(spec.executable), "-p", prompt, "--allow-all-tools"]
    # The rule must be the refusal's reason: without --add-dir a path outside the working
    # directory is refused first, for want of anyone to approve it.
    argv += [f"--deny-tool={COPILOT_DENIED_TOOL}", "--add-dir=/tmp"]
    if isinstance(mock, CopilotApiMock):
        env |= {
            "COPILOT_GITHUB_TOKEN": "gho_agentwatchE2eMockToken0000000000000",
            "COPILOT_DEBUG_GITHUB_API_URL": mock.base_url,
            "COPILOT_MODEL": mock.model,
        }
        argv.append("--disable-builtin-mcps")
        return argv, env, {}
    env |= {
        "COPILOT_OFFLINE": "true",
        "COPILOT_PROVIDER_API_KEY": "sk-mock-agentwatch-e2e",
        "COPILOT_MODEL": mock.model,
    }
    if isinstance(mock, AnthropicMock):
        env |= {"COPILOT_PROVIDER_TYPE": "anthropic", "COPILOT_PROVIDER_BASE_URL": mock.base_url}
    else:
        env["COPILOT_PROVIDER_BASE_URL"] = mock.base_url + "/v1"
        if isinstance(mock, OpenAIResponsesMock):
            env["COPILOT_PROVIDER_WIRE_API"] = "responses"
    return argv, env, {}


# --------------------------------------------------------------------------------------------
# Recording ground truth: python -m tests.e2e.agent_clis [OUT_DIR]

CAPTURE_SCENARIO = "retry-tools"
"""Name of :func:`scenario_for`'s session in capture file names."""


@dataclass(frozen=True)
class CapturePlan:
    agent: AgentName
    protocol: Protocol
    content: bool = True

    @property
    def file_name(self) -> str:
        protocol = self.protocol.replace("/", "-")
        content = "" if self.content else "-nocontent"
        return f"{CAPTURE_SCENARIO}{content}-{protocol}.json"


def capture_plans() -> list[CapturePlan]:
    """Every protocol each CLI supports with content on, and its first one with content off."""
    plans = []
    for agent, spec in ALL_SPECS.items():
        plans += [CapturePlan(agent, protocol) for protocol in spec.protocols]
        plans.append(CapturePlan(agent, spec.protocols[0], content=False))
    return plans


def record_captures(out_dir: Path, plans: list[CapturePlan] | None = None) -> list[str]:
    """Run each plan against a fresh mock and capture receiver; write JSON files and a README."""
    install_clis()
    notes: dict[AgentName, list[str]] = {}
    timings = []
    for plan in plans or capture_plans():
        target = out_dir / plan.agent / plan.file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        with OtlpCapture() as capture, mock_for(plan.agent) as mock:
            endpoint = capture.grpc_endpoint if plan.protocol == "grpc" else capture.http_endpoint
            run = run_cli(plan.agent, mock, Telemetry(endpoint, plan.protocol, plan.content))
            if run.exit_code != 0:
                raise RuntimeError(f"{plan}: exit {run.exit_code}\n{run.stderr[-4000:]}")
            if capture.errors:
                raise RuntimeError(f"{plan}: capture errors {capture.errors}")
            entries = capture.to_json()
            target.write_text("[\n" + ",\n".join(json.dumps(e) for e in entries) + "\n]\n")
            events = log_events(capture.of("logs"))
            services = sorted(
                {
                    str(r.get("service.name"))
                    for r in resources([c.request for c in capture.captures])
                }
            )
            timings.append(f"{plan.agent} {plan.file_name}: {run.duration_s:.1f}s")
            notes.setdefault(plan.agent, []).append(
                _capture_note(plan, run, mock, entries, events, services, endpoint)
            )
    for agent, agent_notes in notes.items():
        (out_dir / agent / "README.md").write_text(_readme(agent, agent_notes))
    return timings


def _capture_note(
    plan: CapturePlan,
    run: CliRun,
    mock: MockModelServer,
    entries: list[dict[str, object]],
    events: list[LogEvent],
    services: list[str],
    endpoint: str,
) -> str:
    signals = Counter(str(e["signal"]) for e in entries)
    names = Counter(str(e.name) for e in events)
    lines = [
        f"### `{plan.file_name}`",
        "",
        f"- protocol `{plan.protocol}`, content switches {'on' if plan.content else 'off'}, "
        f"OTLP endpoint `{endpoint}`; run took {run.duration_s:.1f}s, exit {run.exit_code}",
        f"- export requests: {dict(sorted(signals.items()))}; service.name {services}",
        f"- log events: {dict(sorted(names.items()))}",
        f"- argv: `` {_display_argv(run)} ``",
        "- env: " + ", ".join(f"`{k}={v}`" for k, v in run.env.items()),
    ]
    for rel, content in run.files.items():
        lines += [f"- `$HOME/{rel}`:", "", "```", content.rstrip(), "```"]
    lines += [
        "",
        "| # | request | status | kind | usage as sent on the wire |",
        "|---|---|---|---|---|",
    ]
    for call in mock.calls:
        wire = json.dumps(call.wire_usage) if call.wire_usage else ""
        lines.append(
            f"| {call.index} | {call.method} {call.path} | {call.status} | {call.kind} | `{wire}` |"
        )
    return "\n".join(lines) + "\n"


WIRE_NOTES: dict[AgentName, str] = {
    "claude": "Anthropic wire: `input_tokens` excludes cache; `cache_creation_input_tokens` is "
    "the write, split in `cache_creation.ephemeral_5m/1h_input_tokens`; `output_tokens` in "
    "`message_delta`.",
    "codex": "OpenAI wire: `input_tokens` = input + cache read + cache write; "
    "`input_tokens_details.cached_tokens` (read) and `.cache_write_tokens` (write, the field "
    "Codex reads); `output_tokens` includes `output_tokens_details.reasoning_tokens`.",
    "copilot": "Copilot API wire (OpenAI chat completions): `prompt_tokens` = input + cache "
    "read + cache write; `prompt_tokens_details.cached_tokens` (read) and `.cache_write_tokens` "
    "(write); `completion_tokens` includes `completion_tokens_details.reasoning_tokens`; the "
    "last chunk adds `copilot_usage.total_nano_aiu`. The catalog's `billing.multiplier` is 1.",
    "gemini": "Gemini wire: `promptTokenCount` = input + `cachedContentTokenCount`; "
    "`candidatesTokenCount` excludes `thoughtsTokenCount`; `totalTokenCount` = prompt + "
    "candidates + thoughts; no cache write.",
}


def _display_argv(run: CliRun) -> str:
    spec = ALL_SPECS[run.agent]
    executable = f"$AGENTWATCH_CACHE/agent-clis/{spec.package}@{spec.version}/node_modules/.bin/"
    return shlex.join([executable + spec.bin_name, *run.argv[1:]])


def _readme(agent: AgentName, notes: list[str]) -> str:
    spec = ALL_SPECS[agent]
    scenario = scenario_for(agent)
    usage_rows = [
        f"| {n} | {u.input_tokens} | {u.cache_read_tokens} | {u.cache_write_tokens} "
        f"({u.cache_write_1h_tokens} for 1h) | {u.output_tokens} | {u.reasoning_tokens} |"
        for n, u in enumerate(scenario.calls_with_usage(), start=1)
    ]
    steps = "\n".join(
        f"{n}. {type(s).__name__}"
        + (f": `{s.command or s.tool}`" if isinstance(s, ToolCall) else "")
        for n, s in enumerate(scenario.steps, start=1)
    )
    return f"""# Captured telemetry: {spec.package}@{spec.version}

Recorded by `python -m tests.e2e.agent_clis` (tests/e2e/agent_clis.py): the real CLI, offline,
against tests/e2e/mock_models.py and the capture receiver tests/e2e/otlp_capture.py. Each
`*.json` file is one run: a JSON list, one export request per line, each
`{{"signal", "transport", "request"}}` with `request` in OTLP/JSON (hex trace and span ids).
Regenerate after bumping the CLI version in scripts/install-agent-clis.sh.

Model `{spec.model}`; expected service.name `{spec.service_name}`; resource attributes set
with `OTEL_RESOURCE_ATTRIBUTES=team=platform,cost_center=cc-42`. Prompt: `` {PROMPT} ``.
Ports are free ports picked per run.

Scenario (each step answers one agent-loop model request):

{steps}

Usage the mock answered per successful call, in agentwatch's convention (input excludes
cache, output includes reasoning); the wire form of each call is in each run's table below.
{WIRE_NOTES[agent]}

| call | input | cache read | cache write | output | reasoning |
|---|---|---|---|---|---|
{chr(10).join(usage_rows)}

## Runs

{chr(10).join(notes)}"""


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=record_captures.__doc__)
    parser.add_argument("out_dir", nargs="?", default=str(REPO / "tests" / "data" / "captured"))
    parser.add_argument("--agent", choices=sorted(ALL_SPECS), action="append")
    args = parser.parse_args(argv)
    plans = [p for p in capture_plans() if not args.agent or p.agent in args.agent]
    for line in record_captures(Path(args.out_dir), plans):
        print(line)


if __name__ == "__main__":
    main()
