"""Codex normalisation: real CLI captures, the public 0.145 sample, stream-chunk dropping."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from collector import agent_model as am
from collector import telemetry
from collector.component import LogsData, MetricsData, Signal
from processors.vendors import TOOL_PHASE, codex, vendor_for
from tests.support.normalize_support import (
    CAPTURED,
    SAMPLES,
    Hooks,
    events,
    kv,
    load_capture,
    load_sample,
    log_request,
    processor,
    records,
    run,
    token_row,
)

CODEX_RUNS = sorted((CAPTURED / "codex").glob("*.json"))

# tests/data/captured/codex/README.md: (input, cache read, cache write, output, reasoning)
# in agentwatch's convention; on the wire input_tokens included both cache classes.
EXPECTED_CALLS = [
    (2213, 4113, 0, 131, 67),
    (2341, 6151, 1013, 149, 71),
    (2459, 8219, 0, 163, 29),
    (2503, 9337, 0, 117, 37),
]


@pytest.fixture(params=CODEX_RUNS, ids=lambda p: p.stem)
def codex_run(request: pytest.FixtureRequest) -> Path:
    return request.param


def normalise(path: Path, **config: object) -> tuple[list[dict], Hooks, str]:
    proc = processor(**config)
    hooks = Hooks(proc)
    found: list[dict] = []
    for signal, data in load_capture(path):
        out = run(proc, signal, data)
        if signal is Signal.LOGS:
            found += events(out)
    return found, hooks, proc.name


def sse_events(path: Path) -> list[dict]:
    return [
        r
        for signal, data in load_capture(path)
        if signal is Signal.LOGS
        for r in records(data)
        if r.get("event.name") == "codex.sse_event"
    ]


def test_there_are_captured_codex_runs() -> None:
    assert len(CODEX_RUNS) >= 3


def test_each_call_once_input_made_uncached(codex_run: Path) -> None:
    found, _, _ = normalise(codex_run)
    calls = [e for e in found if e[am.EVENT] == "api_call"]
    assert [token_row(c) for c in calls] == EXPECTED_CALLS
    assert len({c[am.EVENT_ID] for c in calls}) == 4
    assert {(c[am.MODEL], c[am.PROVIDER]) for c in calls} == {("gpt-5.5", "openai")}
    # the vendor's own numbers stay next to ours: input_token_count included the cache
    raw = [s for s in sse_events(codex_run) if "input_token_count" in s]
    assert [int(s["input_token_count"]) for s in raw] == [
        r[0] + r[1] + r[2] for r in EXPECTED_CALLS
    ]
    assert [c["gen_ai.usage.input_tokens"] for c in calls] == [
        int(s["input_token_count"]) for s in raw
    ]


def test_stream_chunks_dropped_and_counted_never_the_tokens(codex_run: Path) -> None:
    before = {
        reason: telemetry.value(
            "agentwatch_processor_dropped_items_total",
            processor="normalize/test",
            signal="logs",
            reason=reason,
        )
        for reason in ("stream_chunk", "duplicate_completed")
    }
    found, _, _ = normalise(codex_run)
    raw = sse_events(codex_run)
    countless_completed = [
        s
        for s in raw
        if s.get("event.kind") == "response.completed" and "input_token_count" not in s
    ]
    chunks = [s for s in raw if s.get("event.kind") != "response.completed"]
    dropped = {
        reason: telemetry.value(
            "agentwatch_processor_dropped_items_total",
            processor="normalize/test",
            signal="logs",
            reason=reason,
        )
        - before[reason]
        for reason in before
    }
    assert dropped == {"stream_chunk": len(chunks), "duplicate_completed": len(countless_completed)}
    assert len(countless_completed) == 4 and len(chunks) > 20
    assert len([e for e in found if e[am.EVENT] == "api_call"]) == 4


def test_chunks_kept_when_dropping_is_off() -> None:
    path = CAPTURED / "codex" / "retry-tools-http-protobuf.json"
    proc = processor(drop_stream_chunks=False)
    kept = 0
    calls = 0
    for signal, data in load_capture(path):
        out = run(proc, signal, data)
        if signal is Signal.LOGS:
            assert isinstance(out, LogsData)
            kept += sum(1 for r in records(out) if r.get("event.name") == "codex.sse_event")
            calls += len(events(out, "api_call"))
    assert kept == len(sse_events(path))
    assert calls == 4


def test_retried_rate_limit_is_an_api_error(codex_run: Path) -> None:
    found, _, _ = normalise(codex_run)
    (error,) = [e for e in found if e[am.EVENT] == "api_error"]
    assert error[am.STATUS] == "429"
    assert error[am.ATTEMPT] == 1  # Codex logs attempt 0; agentwatch counts from 1
    assert error[am.ERROR_MESSAGE] == "http 429"
    assert error["error.type"] == "429"


def test_tool_calls_and_session_facts(codex_run: Path) -> None:
    found, _, _ = normalise(codex_run)
    tools = [e for e in found if e[am.EVENT] == "tool_call"]
    results = [t for t in tools if t[TOOL_PHASE] == "result"]
    decisions = [t for t in tools if t[TOOL_PHASE] == "decision"]
    assert [(r[am.TOOL_NAME], r[am.SUCCESS]) for r in results] == [
        ("exec_command", True),
        ("exec_command", False),  # Codex says success=true; the output says exit code 2
        ("delete_everything", False),
    ]
    assert [r.get(am.ERROR_MESSAGE) for r in results] == [None, "exit code 2", None]
    assert {t[am.TOOL_SOURCE] for t in tools} == {"builtin"}
    assert all(am.MCP_SERVER not in t for t in tools)
    assert [r.get(am.COMMAND) for r in results] == [
        "echo hello",
        "ls /nonexistent-agentwatch-e2e",
        None,
    ]
    assert results[2][am.TOOL_OUTPUT] == "unsupported call: delete_everything"
    assert [(d[am.DECISION], d[am.DECISION_SOURCE]) for d in decisions] == [
        ("accept", "config")
    ] * 2
    (start,) = [e for e in found if e[am.EVENT] == "session_start"]
    assert start[am.APPROVAL_POLICY] == "never"
    assert start[am.SANDBOX] == "danger-full-access"
    assert start[am.MCP_SERVERS] == ""
    (prompt,) = [e for e in found if e[am.EVENT] == "user_prompt"]
    assert prompt[am.PROMPT_LENGTH] == 94
    assert ("nocontent" in codex_run.name) == (am.PROMPT_TEXT not in prompt)
    sessions = {e[am.SESSION_ID] for e in found}
    assert len(sessions) == 1 and {e[am.TEAM] for e in found} == {"platform"}
    assert {e[am.AGENT_VERSION] for e in found} == {"0.169.0"}


def test_exit_code_comes_from_the_output_header_only() -> None:
    header = "Chunk ID: 1\nWall time: 0.1 seconds\nProcess exited with code {}\nOutput:\n{}"
    assert codex.exit_code_of(header.format(0, "fine")) == 0
    assert codex.exit_code_of(header.format(137, "")) == 137
    # the command's own output saying so is not the exit status
    assert codex.exit_code_of(header.format(0, "Process exited with code 3\n")) == 0
    assert codex.exit_code_of("unsupported call: x") is None


def test_derived_duration_metric_has_the_error(codex_run: Path) -> None:
    _, hooks, _ = normalise(codex_run)
    durations = []
    for data in hooks.metrics:
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "gen_ai.client.operation.duration":
                        for p in metric.histogram.data_points:
                            attrs = {a.key: a.value.string_value for a in p.attributes}
                            durations.append((attrs.get("error.type"), p.count))
    assert sorted(durations, key=str) == sorted([("429", 1), (None, 4)], key=str)


def test_redelivered_batch_has_the_same_event_ids() -> None:
    path = CAPTURED / "codex" / "retry-tools-grpc.json"
    logs = [d for s, d in load_capture(path) if s is Signal.LOGS]
    first = [
        e[am.EVENT_ID]
        for d in logs
        for e in events(run(processor(), Signal.LOGS, copy.deepcopy(d)))
    ]
    again = [
        e[am.EVENT_ID]
        for d in logs
        for e in events(run(processor(), Signal.LOGS, copy.deepcopy(d)))
    ]
    assert first and first == again and len(set(first)) == len(first)


def test_public_sample_0_145_strings_and_empty_identity() -> None:
    """Hand count of the sample: input 100 (no cached count), output 10, as strings."""
    data = load_sample(SAMPLES / "codex" / "t4avenger__codex-0.145.0-logs.otlp.json")
    (call,) = events(run(processor(), Signal.LOGS, data), "api_call")
    assert token_row(call) == (100, 0, 0, 10, 0)
    assert call[am.MODEL] == "synthetic-model"
    assert call[am.AGENT_VERSION] == "0.145.0"
    # user.email, user.account_id, host.name, conversation.id came with no value at all
    for key in (am.USER_EMAIL, am.USER_ACCOUNT, am.HOST, am.SESSION_ID):
        assert key not in call
    assert len(call[am.EVENT_ID]) == 32


@pytest.mark.parametrize(
    "service", ["codex_exec", "codex_cli_rs", "codex_tui", "codex-tui", "codex-app-server"]
)
def test_every_codex_service_name(service: str) -> None:
    vendor = vendor_for(service)
    assert vendor is not None and vendor.agent.value == "codex"


def test_only_the_token_bearing_event_survives_a_chunk_only_batch() -> None:
    base = {"event.name": "codex.sse_event", "conversation.id": "c-1", "model": "gpt-5.5"}
    request = log_request(
        "codex_cli_rs",
        [
            {**base, "event.kind": "response.output_text.delta", "duration_ms": "0"},
            {**base, "event.kind": "response.completed", "duration_ms": "0"},
            {
                **base,
                "event.kind": "response.completed",
                "input_token_count": 500,
                "cached_token_count": "200",
                "output_token_count": "50",
                "reasoning_token_count": "20",
                "tool_token_count": "550",  # Codex's total, not a token class
            },
            {**base, "event.kind": "response.failed", "error.message": "overloaded"},
        ],
    )
    out = run(processor(), Signal.LOGS, request)
    assert out is not None
    kept = list(records(out))
    assert [r["event.kind"] for r in kept] == ["response.completed", "response.failed"]
    (call,) = events(out, "api_call")
    assert token_row(call) == (300, 200, 0, 50, 20)
    (error,) = events(out, "api_error")
    assert error[am.STATUS] == "response.failed" and error[am.ERROR_MESSAGE] == "overloaded"


def test_all_chunks_dropped_leaves_nothing_to_export() -> None:
    request = log_request(
        "codex_exec",
        [{"event.name": "codex.sse_event", "event.kind": "response.created", "duration_ms": "1"}],
    )
    assert run(processor(), Signal.LOGS, request) is None


def test_turn_token_usage_histogram_is_marked_not_derived() -> None:
    """``codex.turn.token_usage`` has no session or user: nothing to attribute a record to."""
    data = MetricsData()
    rm = data.resource_metrics.add()
    rm.resource.attributes.append(kv("service.name", "codex_cli_rs"))
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = "codex.turn.token_usage"
    metric.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    for token_type, value in (("input", 1000.0), ("cached_input", 400.0), ("output", 80.0)):
        point = metric.histogram.data_points.add(count=1, sum=value)
        point.attributes.append(kv("token_type", token_type))
    proc = processor()
    hooks = Hooks(proc)
    out = run(proc, Signal.METRICS, data)
    assert out is not None
    assert [p[am.AGENT] for p in records(out)] == ["codex"] * 3
    assert hooks.logs == []


def test_mcp_tool_server_from_namespace_or_name() -> None:
    """What Codex 0.169 logs for a namespaced (MCP) tool: the bare name and
    ``tool_namespace=mcp__<server>__``; older builds put ``mcp__<server>__`` in the name."""
    common = {"conversation.id": "c-1", "call_id": "call_1", "success": "true", "output": "hi"}
    data = log_request(
        "codex_exec",
        [
            {
                **common,
                "event.name": "codex.tool_result",
                "tool_name": "echo",
                "tool_namespace": "mcp__awecho__",
                "mcp_server": "",
            },
            {
                **common,
                "event.name": "codex.tool_result",
                "call_id": "call_2",
                "tool_name": "mcp__docs__search",
                "mcp_server": "docs",
            },
            {
                **common,
                "event.name": "codex.tool_result",
                "call_id": "call_3",
                "tool_name": "exec_command",
                "tool_namespace": "functions",
                "mcp_server": "",
            },
        ],
    )
    found = events(run(processor(), Signal.LOGS, data), "tool_call")
    assert [(t[am.TOOL_NAME], t.get(am.MCP_SERVER), t[am.TOOL_SOURCE]) for t in found] == [
        ("echo", "awecho", "mcp"),
        ("search", "docs", "mcp"),
        ("exec_command", None, "builtin"),
    ]
