"""Varied real CLI sessions through agentwatch (issue 10, "Counting"): resumed sessions, an MCP
server, a subagent, a denied tool, a metrics-only session with 1-hour cache writes.

One agentwatch process (configs/default.yaml, embedded ClickHouse) serves the module; each CLI
runs offline against its mock model API over OTLP/HTTP through the recording tap. Expected
numbers come from what the mocks answered and from list prices written here, never from
agentwatch's own output.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agent_clis import (
    REPO,
    SPECS,
    AgentName,
    CliRun,
    Telemetry,
    install_clis,
    mock_for,
    run_cli,
)
from tests.e2e.mcp_echo_server import SERVER_NAME
from tests.e2e.mock_models import RecordedCall, Scenario, Text, ToolCall, Usage
from tests.e2e.stack import AgentwatchStack, TappedRequest, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SUBAGENT_PROMPT = "Say hello from the subagent."
REFUSED_FILE = "/tmp/agentwatch-e2e-sessions-refused.txt"
D = Decimal
SONNET_PER_MTOK = {
    "input": D("3"),
    "cache_read": D("0.3"),
    "cache_write_5m": D("3.75"),
    "cache_write_1h": D("6"),
    "output": D("15"),
}
"""Anthropic list prices of Claude Sonnet 4.5: a 5-minute write is 1.25x input, 1-hour 2x."""


@dataclass
class Session:
    """One or more CLI runs of one session and what the mocks answered."""

    agent: AgentName
    team: str
    runs: list[CliRun] = field(default_factory=list)
    calls: list[RecordedCall] = field(default_factory=list)
    tapped: list[TappedRequest] = field(default_factory=list)
    session_id: str = ""

    def answered(self) -> list[RecordedCall]:
        return [c for c in self.calls if c.status == 200 and c.wire_usage is not None]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentwatchStack]:
    install_clis()
    stack = AgentwatchStack(tmp_path_factory.mktemp("agentwatch-sessions"))
    try:
        stack.start()
        yield stack
    finally:
        code = stack.stop()
        assert code == 0, stack.collector.logs()[-4000:]


def _telemetry(stack: AgentwatchStack, agent: AgentName, team: str) -> Telemetry:
    protocol = SPECS[agent].protocols[0]  # OTLP/HTTP, through the tap
    return Telemetry(
        stack.endpoint(protocol),
        protocol,
        traces=False,
        resource_attributes={"team": team, "cost_center": "cc-sessions"},
    )


def _run(
    stack: AgentwatchStack,
    session: Session,
    steps: tuple[ToolCall | Text, ...],
    prompts: list[tuple[str, dict[str, Any]]],
    home: Path,
) -> Session:
    """Run the CLI once per prompt (with its run_cli keywords) against one mock, same HOME."""
    assert stack.tap is not None
    first_tapped = len(stack.tap.requests)
    with mock_for(session.agent, Scenario(steps)) as mock:
        for prompt, options in prompts:
            run = run_cli(
                session.agent,
                mock,
                _telemetry(stack, session.agent, session.team),
                prompt=prompt,
                timeout_s=180,
                keep_home=home,
                **options,
            )
            session.runs.append(run)
            assert run.exit_code == 0, run.stderr[-3000:]
        session.calls = list(mock.calls)
    wait_for(stack.drained, 60, "agentwatch to deliver the session")
    session.tapped = stack.tap.requests[first_tapped:]
    return session


def _one_session_id(stack: AgentwatchStack, team: str, view: str = "api_calls") -> str:
    ids = stack.rows(f"SELECT DISTINCT session_id FROM {view} WHERE team = {{t:String}}", t=team)
    assert len(ids) == 1, ids
    return str(ids[0][0])


def _session_row(stack: AgentwatchStack, session_id: str) -> dict[str, Any]:
    rows = stack.dicts("SELECT * FROM sessions WHERE session_id = {s:String}", s=session_id)
    assert len(rows) == 1, rows
    return rows[0]


def _wait_rows(stack: AgentwatchStack, sql: str, expected: int, **params: Any) -> None:
    wait_for(lambda: stack.scalar(sql, **params) >= expected, 60, f"{expected} rows of {sql}")


# --- resumed sessions -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def claude_resumed(stack: AgentwatchStack, tmp_path_factory: pytest.TempPathFactory) -> Session:
    """``claude -p`` with a fixed session id, then ``claude -p --resume`` of it: a second
    process continuing the same session, whose event.sequence starts at 1 again."""
    session_id = str(uuid.uuid4())
    steps = (
        ToolCall(Usage(1101, output_tokens=21), command="echo first"),
        Text(Usage(1103, output_tokens=23), "first turn done"),
        ToolCall(Usage(1201, output_tokens=31), command="echo second"),
        Text(Usage(1203, output_tokens=33), "second turn done"),
    )
    session = _run(
        stack,
        Session("claude", "sessions-claude-resume"),
        steps,
        [
            ("Run echo first.", {"args": ["--session-id", session_id]}),
            ("Run echo second.", {"args": ["--resume", session_id]}),
        ],
        tmp_path_factory.mktemp("claude-resume-home"),
    )
    session.session_id = session_id
    return session


@pytest.fixture(scope="module")
def codex_resumed(stack: AgentwatchStack, tmp_path_factory: pytest.TempPathFactory) -> Session:
    """``codex exec`` then ``codex exec resume --last``: the same conversation id, a new process."""
    steps = (
        ToolCall(Usage(2101, cache_read_tokens=512, output_tokens=41), command="echo first"),
        Text(Usage(2103, cache_read_tokens=768, output_tokens=43), "first turn done"),
        ToolCall(Usage(2201, cache_read_tokens=1024, output_tokens=51), command="echo second"),
        Text(Usage(2203, cache_read_tokens=1280, output_tokens=53), "second turn done"),
    )

    def resume(argv: list[str]) -> list[str]:
        return [argv[0], "exec", "--skip-git-repo-check", "resume", "--last", argv[-1]]

    session = _run(
        stack,
        Session("codex", "sessions-codex-resume"),
        steps,
        [("Run echo first.", {}), ("Run echo second.", {"argv_override": resume})],
        tmp_path_factory.mktemp("codex-resume-home"),
    )
    session.session_id = _one_session_id(stack, session.team)
    return session


@pytest.fixture(scope="module")
def gemini_resumed(stack: AgentwatchStack, tmp_path_factory: pytest.TempPathFactory) -> Session:
    """``gemini -p --session-id`` then ``gemini -p --resume latest``."""
    session_id = str(uuid.uuid4())
    steps = (
        ToolCall(Usage(3101, cache_read_tokens=256, output_tokens=61), command="echo first"),
        Text(Usage(3103, cache_read_tokens=256, output_tokens=63), "first turn done"),
        ToolCall(Usage(3201, cache_read_tokens=512, output_tokens=71), command="echo second"),
        Text(Usage(3203, cache_read_tokens=512, output_tokens=73), "second turn done"),
    )
    session = _run(
        stack,
        Session("gemini", "sessions-gemini-resume"),
        steps,
        [
            ("Run echo first.", {"args": ["--session-id", session_id]}),
            ("Run echo second.", {"args": ["--resume", "latest"]}),
        ],
        tmp_path_factory.mktemp("gemini-resume-home"),
    )
    session.session_id = _one_session_id(stack, session.team)
    return session


def _check_resumed(stack: AgentwatchStack, session: Session) -> dict[str, Any]:
    """Both processes' events are stored under one session, none mistaken for a resend."""
    sid = session.session_id
    answered = session.answered()
    _wait_rows(
        stack, "SELECT count() FROM api_calls WHERE session_id = {s:String}", len(answered), s=sid
    )
    assert stack.scalar(
        "SELECT count() FROM api_calls WHERE session_id = {s:String}", s=sid
    ) == len(answered)
    prompts = stack.rows(
        "SELECT prompt_length FROM user_prompts WHERE session_id = {s:String} ORDER BY timestamp",
        s=sid,
    )
    assert prompts == [(len("Run echo first."),), (len("Run echo second."),)]
    tools = stack.rows(
        "SELECT command, success, events FROM tool_calls WHERE session_id = {s:String} "
        "ORDER BY timestamp",
        s=sid,
    )
    assert [success for _, success, _ in tools] == [True, True], tools
    row = _session_row(stack, sid)
    assert (row["user_prompts"], row["tool_calls"], row["api_calls"]) == (2, 2, len(answered))
    assert row["input_tokens"] > 0 and row["tokens_from"] == "api_calls"
    return row


def test_claude_resumed_session_keeps_both_processes_events(
    stack: AgentwatchStack, claude_resumed: Session
) -> None:
    sid = claude_resumed.session_id
    # The condition of the defect is really there: the second process restarted the sequence,
    # so its user_prompt has the same (session, event.sequence) as the first one's.
    sequences = stack.rows(
        "SELECT LogAttributes['event.sequence'] FROM otel_logs "
        "WHERE LogAttributes['event.name'] = 'user_prompt' "
        "AND LogAttributes['session.id'] = {s:String} ORDER BY Timestamp",
        s=sid,
    )
    assert len(sequences) == 2 and sequences[0] == sequences[1], sequences
    _check_resumed(stack, claude_resumed)


def test_codex_resumed_session_keeps_both_processes_events(
    stack: AgentwatchStack, codex_resumed: Session
) -> None:
    starts = stack.scalar(
        "SELECT count() FROM session_starts WHERE session_id = {s:String}",
        s=codex_resumed.session_id,
    )
    assert starts == 2  # one codex.conversation_starts per process, one conversation id
    _check_resumed(stack, codex_resumed)


def test_gemini_resumed_session_keeps_both_processes_events(
    stack: AgentwatchStack, gemini_resumed: Session
) -> None:
    _check_resumed(stack, gemini_resumed)


# --- MCP server, subagent, denied tool (Claude Code) ------------------------------------------


@pytest.fixture(scope="module")
def claude_mcp_subagent(
    stack: AgentwatchStack, tmp_path_factory: pytest.TempPathFactory
) -> Session:
    """An MCP tool of a local stdio server, a Task subagent, and a Write the config refuses.

    Claude runs the subagent in the background, so which loop gets which later step depends
    on timing; what each loop asked is in the mock's recorded requests.
    """
    home = tmp_path_factory.mktemp("claude-mcp-home")
    config = home / "mcp.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    SERVER_NAME: {
                        "command": sys.executable,
                        "args": ["-m", "tests.e2e.mcp_echo_server"],
                        "env": {"PYTHONPATH": str(REPO)},
                    }
                }
            }
        )
    )
    steps = (
        ToolCall(
            Usage(1301, output_tokens=41), tool=f"mcp__{SERVER_NAME}__echo", args={"text": "hi"}
        ),
        ToolCall(
            Usage(1302, output_tokens=42),
            tool="Task",
            args={
                "description": "greet",
                "prompt": SUBAGENT_PROMPT,
                "subagent_type": "general-purpose",
            },
        ),
        Text(Usage(1303, output_tokens=43), "step three"),
        ToolCall(
            Usage(1304, output_tokens=44),
            tool="Write",
            args={"file_path": REFUSED_FILE, "content": "must not be written\n"},
        ),
        Text(Usage(1305, output_tokens=45), "step five"),
    )
    args = [
        "--allowedTools",
        f"mcp__{SERVER_NAME}__echo",
        "--allowedTools",
        "Task",
        "--mcp-config",
        str(config),
    ]
    session = _run(
        stack,
        Session("claude", "sessions-claude-mcp"),
        steps,
        [("Use the echo tool, then a subagent.", {"args": args})],
        home,
    )
    session.session_id = _one_session_id(stack, session.team)
    return session


def _is_subagent(call: RecordedCall) -> bool:
    body = call.body if isinstance(call.body, dict) else {}
    return SUBAGENT_PROMPT in json.dumps(body.get("messages", [])[:1])


def test_mcp_tool_subagent_and_denied_tool_are_one_row_each(
    stack: AgentwatchStack, claude_mcp_subagent: Session
) -> None:
    sid = claude_mcp_subagent.session_id
    assert not Path(REFUSED_FILE).exists()
    rows = stack.dicts(
        "SELECT tool_name, mcp_server, tool_source, decision, decision_source, success, events "
        "FROM tool_calls WHERE session_id = {s:String} ORDER BY timestamp",
        s=sid,
    )
    assert {r["tool_name"]: r for r in rows} == {
        # Claude logs every MCP tool as `mcp_tool`; the real names come from tool_parameters.
        "echo": {
            "tool_name": "echo",
            "mcp_server": SERVER_NAME,
            "tool_source": "mcp",
            "decision": "accept",
            "decision_source": "config",
            "success": True,
            "events": 2,
        },
        "Agent": {
            "tool_name": "Agent",
            "mcp_server": "",
            "tool_source": "builtin",
            "decision": "accept",
            "decision_source": "config",
            "success": True,
            "events": 2,
        },
        # Denied: one row with its decision and no success.
        "Write": {
            "tool_name": "Write",
            "mcp_server": "",
            "tool_source": "builtin",
            "decision": "reject",
            "decision_source": "config",
            "success": None,
            "events": 1,
        },
    }
    assert len(rows) == 3
    row = _session_row(stack, sid)
    assert (row["tool_calls"], row["tool_events"]) == (3, 5)
    assert stack.scalar("SELECT count() FROM tool_events WHERE session_id = {s:String}", s=sid) == 5


def test_subagent_calls_are_attributed_in_api_calls(
    stack: AgentwatchStack, claude_mcp_subagent: Session
) -> None:
    answered = claude_mcp_subagent.answered()
    expected = {c.request_id: "subagent" if _is_subagent(c) else "main" for c in answered}
    assert "subagent" in expected.values() and "main" in expected.values()
    rows = stack.dicts(
        "SELECT request_id, caller, query_source, subagent_id, subagent_name FROM api_calls "
        "WHERE session_id = {s:String}",
        s=claude_mcp_subagent.session_id,
    )
    assert {r["request_id"]: r["caller"] for r in rows} == expected
    for r in rows:
        if r["caller"] == "subagent":
            assert r["query_source"] == "agent:builtin:general-purpose", r
            assert r["subagent_id"] and r["subagent_name"] == "general-purpose", r
        else:
            assert (r["query_source"], r["subagent_id"]) == ("sdk", ""), r
    assert len({r["subagent_id"] for r in rows if r["subagent_id"]}) == 1


def test_mcp_server_is_a_session_fact_and_a_detection(
    stack: AgentwatchStack, claude_mcp_subagent: Session
) -> None:
    sid = claude_mcp_subagent.session_id
    servers = stack.rows(
        "SELECT mcp_servers FROM session_starts WHERE session_id = {s:String}", s=sid
    )
    assert servers == [([SERVER_NAME],)]
    evidence = stack.rows(
        "SELECT evidence FROM detections WHERE session_id = {s:String} "
        "AND rule_id = 'mcp-server-not-allowlisted'",
        s=sid,
    )
    assert evidence and all(SERVER_NAME in e for (e,) in evidence), evidence


# --- metrics only, with 1-hour cache writes ----------------------------------------------------


def _list_price(usage: Usage) -> Decimal:
    write_5m = usage.cache_write_tokens - usage.cache_write_1h_tokens
    total = (
        usage.input_tokens * SONNET_PER_MTOK["input"]
        + usage.cache_read_tokens * SONNET_PER_MTOK["cache_read"]
        + write_5m * SONNET_PER_MTOK["cache_write_5m"]
        + usage.cache_write_1h_tokens * SONNET_PER_MTOK["cache_write_1h"]
        + usage.output_tokens * SONNET_PER_MTOK["output"]
    )
    return total / 1_000_000


@pytest.fixture(scope="module")
def claude_metrics_only(
    stack: AgentwatchStack, tmp_path_factory: pytest.TempPathFactory
) -> Session:
    """OTEL_LOGS_EXPORTER=none: only claude_code.token.usage / cost.usage reach agentwatch."""
    steps = (
        ToolCall(
            Usage(
                1401,
                cache_read_tokens=15013,
                cache_write_tokens=3011,
                output_tokens=57,
                cache_write_1h_tokens=2003,
            ),
            command="echo metrics",
        ),
        Text(
            Usage(
                1409,
                cache_read_tokens=18017,
                cache_write_tokens=709,
                output_tokens=61,
                cache_write_1h_tokens=503,
            ),
            "metrics only done",
        ),
    )
    session_id = str(uuid.uuid4())
    session = _run(
        stack,
        Session("claude", "sessions-claude-metrics-only"),
        steps,
        [
            (
                "Run echo metrics.",
                {"args": ["--session-id", session_id], "env": {"OTEL_LOGS_EXPORTER": "none"}},
            )
        ],
        tmp_path_factory.mktemp("claude-metrics-home"),
    )
    session.session_id = session_id
    return session


def test_metrics_only_session_with_1h_cache_writes_costs_what_the_agent_reported(
    stack: AgentwatchStack, claude_metrics_only: Session
) -> None:
    sid = claude_metrics_only.session_id
    answered = [c.usage for c in claude_metrics_only.answered() if c.usage is not None]
    assert any(u.cache_write_1h_tokens for u in answered)
    wait_for(
        lambda: (
            stack.scalar(
                "SELECT sum(output_tokens) FROM api_usage WHERE session_id = {s:String}", s=sid
            )
            == sum(u.output_tokens for u in answered)
        ),
        60,
        "every interval's api_usage",
    )
    row = _session_row(stack, sid)
    assert (row["tokens_from"], row["api_calls"]) == ("api_usage", 0)
    assert row["cache_write_tokens"] == sum(u.cache_write_tokens for u in answered)
    expected = sum(_list_price(u) for u in answered)
    at_5m_rate = sum(
        _list_price(
            Usage(u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens)
        )
        for u in answered
    )
    assert float(expected - at_5m_rate) > 0.005  # the 1h writes matter here
    assert row["cost_usd"] == pytest.approx(float(expected), rel=1e-6)
    sources = stack.rows(
        "SELECT DISTINCT cost_source FROM api_usage WHERE session_id = {s:String} "
        "AND cache_write_tokens > 0",
        s=sid,
    )
    assert sources == [("reported_cache_split_unknown",)]
    assert stack.self_metric("agentwatch_cost_cache_split_unknown_items_total") > 0
    reported = stack.self_metric("agentwatch_cost_cache_split_unknown_usd_total", figure="reported")
    computed = stack.self_metric("agentwatch_cost_cache_split_unknown_usd_total", figure="computed")
    assert reported - computed == pytest.approx(float(expected - at_5m_rate), rel=1e-6)


# --- exactly once across redelivery -------------------------------------------------------------


def test_redelivering_every_session_changes_no_row(
    stack: AgentwatchStack,
    claude_resumed: Session,
    codex_resumed: Session,
    gemini_resumed: Session,
    claude_mcp_subagent: Session,
) -> None:
    """Event ids are stable across redelivery although they differ across processes."""
    sessions = [claude_resumed, codex_resumed, gemini_resumed, claude_mcp_subagent]
    views = ("api_calls", "api_errors", "tool_calls", "tool_events", "user_prompts", "sessions")

    def snapshot() -> dict[str, list[tuple[Any, ...]]]:
        return {v: stack.rows(f"SELECT * FROM {v} ORDER BY ALL") for v in views}

    assert stack.tap is not None
    before = snapshot()
    resend = [t for s in sessions for t in s.tapped if t.signal == "logs"]
    assert resend
    assert [stack.tap.repost(t) for t in resend] == [200] * len(resend)
    time.sleep(0.5)
    wait_for(stack.drained, 60, "the re-delivered requests to be delivered")
    assert snapshot() == before
    assert {s.agent for s in sessions} == set(SPECS)
