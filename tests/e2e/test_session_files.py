"""Session files of the real Claude Code, Codex and Gemini CLIs, imported into a running
agentwatch (issue 14).

Each CLI runs its scripted session twice in its own temporary HOME: once with telemetry to
agentwatch (OTLP and files both hold the session) and once with telemetry to a throwaway
capture (only the files reach agentwatch). ``agentwatch import`` then reads both HOMEs while
``agentwatch serve`` runs. Expected tokens and costs come from what the mock model APIs
answered and from the hand-written rates of the acceptance suite, never from agentwatch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.agent_clis import (
    SPECS,
    AgentName,
    Telemetry,
    install_clis,
    mock_for,
    run_cli,
)
from tests.e2e.mock_models import RecordedCall
from tests.e2e.otlp_capture import OtlpCapture
from tests.e2e.stack import AgentwatchStack, wait_for
from tests.e2e.test_agents_through_agentwatch import AGENT, PROVIDER, Tokens

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

AGENTS: tuple[AgentName, ...] = ("claude", "codex", "gemini")
IMPORT_NAME = {"claude": "claude-code", "codex": "codex", "gemini": "gemini"}
FILES_UNDER = {
    "claude": ".claude/projects",
    "codex": ".codex/sessions",
    "gemini": ".gemini/tmp",
}


@dataclass
class Run:
    agent: AgentName
    home: Path
    calls: list[RecordedCall]
    """The mock's answered (200) model calls."""

    @property
    def files(self) -> Path:
        return self.home / FILES_UNDER[self.agent]

    def expected(self) -> list[tuple[Tokens, Decimal]]:
        model = SPECS[self.agent].model
        out = []
        for call in self.calls:
            u = call.usage
            assert u is not None
            tokens = Tokens(
                u.input_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens,
                u.cache_write_1h_tokens,
                u.output_tokens,
                u.reasoning_tokens,
            )
            out.append((tokens, tokens.cost(PROVIDER[self.agent], model)))
        return sorted(out)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentwatchStack]:
    install_clis()
    running = AgentwatchStack(tmp_path_factory.mktemp("agentwatch")).start()
    try:
        yield running
    finally:
        running.stop()


def run_agent(agent: AgentName, home: Path, endpoint: str) -> Run:
    home.mkdir(parents=True)
    with mock_for(agent) as mock:
        run = run_cli(agent, mock, Telemetry(endpoint, "grpc"), keep_home=home)
        assert run.exit_code == 0, run.stderr[-3000:]
        calls = [c for c in mock.calls if c.status == 200 and c.usage is not None]
    return Run(agent, home, calls)


@pytest.fixture(scope="module")
def runs(
    stack: AgentwatchStack, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[AgentName, Run]]:
    """Per agent: a run whose OTLP reached agentwatch, and one whose OTLP did not."""
    base = tmp_path_factory.mktemp("homes")
    both: dict[AgentName, Run] = {}
    files_only: dict[AgentName, Run] = {}
    with OtlpCapture() as elsewhere:
        for agent in AGENTS:
            both[agent] = run_agent(agent, base / f"{agent}-otlp", stack.endpoint("grpc"))
            files_only[agent] = run_agent(agent, base / f"{agent}-files", elsewhere.grpc_endpoint)
    for agent, run in both.items():
        expected = len(run.calls)
        wait_for(
            lambda a=agent, n=expected: (
                stack.scalar("SELECT count() FROM api_calls WHERE agent = {a:String}", a=AGENT[a])
                >= n
            ),
            120,
            f"{agent}'s OTLP API calls",
        )
    return {"both": both, "files": files_only}


def agentwatch(stack: AgentwatchStack, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "collector", *args, "-c", str(stack.collector.config_path)],
        cwd=stack.workdir,
        env=stack.collector.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"agentwatch {args} failed: {done.stderr[-4000:]}"
    return done


def session_of(run: Run) -> str:
    """The session id the CLI wrote into its files (the importer's view of it)."""
    if run.agent == "claude":
        (path,) = run.files.rglob("*.jsonl")
        return path.stem
    if run.agent == "codex":
        (path,) = run.files.rglob("rollout-*.jsonl")
        return str(json.loads(path.read_text().splitlines()[0])["payload"]["id"])
    (path,) = run.files.rglob("session-*.jsonl")
    return str(json.loads(path.read_text().splitlines()[0])["sessionId"])


def stored(stack: AgentwatchStack, agent: AgentName, session: str) -> list[tuple[Tokens, Decimal]]:
    rows = stack.dicts(
        "SELECT input_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, "
        "output_tokens, reasoning_tokens, cost_usd FROM api_calls "
        "WHERE agent = {a:String} AND session_id = {s:String}",
        a=AGENT[agent],
        s=session,
    )
    out = []
    for r in rows:
        tokens = Tokens(
            r["input_tokens"],
            r["cache_read_tokens"],
            r["cache_write_tokens"],
            r["cache_write_1h_tokens"],
            r["output_tokens"],
            r["reasoning_tokens"] if agent != "claude" else 0,
        )
        out.append((tokens, Decimal(str(r["cost_usd"])).quantize(Decimal("1e-12"))))
    return sorted(out)


def quantized(expected: list[tuple[Tokens, Decimal]]) -> list[tuple[Tokens, Decimal]]:
    return sorted((t, c.quantize(Decimal("1e-12"))) for t, c in expected)


@pytest.fixture(scope="module")
def imported(stack: AgentwatchStack, runs: dict[str, dict[AgentName, Run]]) -> dict[str, str]:
    outputs = {}
    for agent in AGENTS:
        for kind in ("both", "files"):
            run = runs[kind][agent]
            done = agentwatch(stack, "import", IMPORT_NAME[agent], "--path", str(run.files))
            outputs[f"{agent}-{kind}"] = done.stdout
    return outputs


@pytest.mark.parametrize("agent", AGENTS)
def test_files_only_session_has_the_model_api_numbers(
    stack: AgentwatchStack,
    runs: dict[str, dict[AgentName, Run]],
    imported: dict[str, str],
    agent: AgentName,
) -> None:
    run = runs["files"][agent]
    assert len(run.calls) >= 4
    assert stored(stack, agent, session_of(run)) == quantized(run.expected())


@pytest.mark.parametrize("agent", AGENTS)
def test_session_in_both_sources_is_counted_once(
    stack: AgentwatchStack,
    runs: dict[str, dict[AgentName, Run]],
    imported: dict[str, str],
    agent: AgentName,
) -> None:
    run = runs["both"][agent]
    session = session_of(run)
    # Each call once, with the model API's numbers: the same as the files-only session's.
    assert stored(stack, agent, session) == quantized(run.expected())
    assert stored(stack, agent, session) == stored(stack, agent, session_of(runs["files"][agent]))
    calls = stack.scalar(
        "SELECT api_calls FROM sessions WHERE agent = {a:String} AND session_id = {s:String}",
        a=AGENT[agent],
        s=session,
    )
    assert calls == len(run.calls)
    assert f"{len(run.calls)} API calls were already stored" in imported[f"{agent}-both"]
    row = stack.dicts(
        "SELECT otlp_calls, file_calls, both_calls, otlp_only_calls, file_only_calls, "
        "coverage_pct FROM call_reconciliation "
        "WHERE agent = {a:String} AND session_id = {s:String}",
        a=AGENT[agent],
        s=session,
    )
    n = len(run.calls)
    assert row == [
        {
            "otlp_calls": n,
            "file_calls": n,
            "both_calls": n,
            "otlp_only_calls": 0,
            "file_only_calls": 0,
            "coverage_pct": 100.0,
        }
    ]


def test_reconcile_reports_a_session_whose_otlp_was_lost(
    stack: AgentwatchStack, runs: dict[str, dict[AgentName, Run]], imported: dict[str, str]
) -> None:
    """Drop the OTLP record of one session, as a vendor's silent telemetry loss would: the
    reconciliation shows it, per session and per user."""
    lost = session_of(runs["both"]["codex"])
    kept = session_of(runs["both"]["claude"])
    stack.rows(
        "ALTER TABLE agent_call_sources DELETE WHERE session_id = {s:String} AND source = 'otlp' "
        "SETTINGS mutations_sync = 2",
        s=lost,
    )
    done = agentwatch(stack, "reconcile", "--format", "json")
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    per_session = {r["session_id"]: r for r in lines if "session_id" in r}
    n = len(runs["both"]["codex"].calls)
    assert per_session[lost]["coverage_pct"] == 0.0
    assert per_session[lost]["file_only_calls"] == n and per_session[lost]["otlp_calls"] == 0
    assert per_session[kept]["coverage_pct"] == 100.0
    files_only = session_of(runs["files"]["gemini"])
    assert per_session[files_only]["coverage_pct"] == 0.0
    per_user = [r for r in lines if "user" in r]
    assert any(r["agent"] == "codex" and r["file_only_calls"] >= 2 * n for r in per_user), per_user
    table = agentwatch(stack, "reconcile", "--since", "2000-01-01")
    assert "Per session" in table.stdout and "Per user" in table.stdout and lost in table.stdout


def test_console_health_shows_the_coverage_reconcile_reports(
    stack: AgentwatchStack, runs: dict[str, dict[AgentName, Run]], imported: dict[str, str]
) -> None:
    """The console's pipeline-health page and API give, per agent, the call_reconciliation
    view's figures over the sessions in range (here: every session of this module)."""
    import urllib.request
    from datetime import UTC, datetime, timedelta

    expected = {
        row["agent"]: row
        for row in stack.dicts(
            "SELECT agent, count() AS sessions, sum(file_calls) AS file_calls, "
            "sum(otlp_calls) AS otlp_calls, sum(both_calls) AS both_calls, "
            "sum(file_only_calls) AS file_only_calls, sum(otlp_only_calls) AS otlp_only_calls "
            "FROM call_reconciliation GROUP BY agent HAVING file_calls > 0"
        )
    }
    assert set(expected) == {AGENT[a] for a in runs["files"]}
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = f"from=now-1d&to={later}"
    with urllib.request.urlopen(f"{stack.console_url}/api/v1/health?{query}", timeout=30) as r:
        coverage = {row["agent"]: row for row in json.load(r)["coverage"]}
    assert set(coverage) == set(expected)
    for agent, want in expected.items():
        got = coverage[agent]
        assert {k: got[k] for k in want} == want
        assert got["coverage_pct"] == round(100 * want["both_calls"] / want["file_calls"], 2)
    with urllib.request.urlopen(f"{stack.console_url}/health?{query}", timeout=30) as r:
        page = r.read().decode()
    assert 'id="coverage"' in page
    for agent in expected:
        assert f"<td>{agent}</td>" in page
