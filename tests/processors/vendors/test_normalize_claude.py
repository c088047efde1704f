"""Claude Code normalisation, on telemetry the real CLI sent and on public samples."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from collector import agent_model as am
from collector.component import LogsData, MetricsData, Signal, Telemetry, TracesData
from processors.vendors import TOOL_PHASE
from tests.support.normalize_support import (
    CAPTURED,
    SAMPLES,
    Hooks,
    events,
    load_capture,
    load_sample,
    log_request,
    processor,
    records,
    run,
    token_row,
)

CLAUDE_RUNS = sorted((CAPTURED / "claude").glob("*.json"))

# tests/data/captured/claude/README.md, "Usage the mock answered per successful call":
# (input, cache read, cache write, output, reasoning), and the 1h part of the cache write.
EXPECTED_CALLS = [
    (1203, 15011, 3007, 57, 0),
    (1319, 18023, 211, 61, 0),
    (1427, 18241, 97, 83, 0),
    (1531, 18457, 89, 79, 0),
]
EXPECTED_1H = [1006, 0, 0, 0]


def normalise_run(path: Path) -> tuple[list[tuple[Signal, Telemetry | None]], Hooks]:
    proc = processor()
    hooks = Hooks(proc)
    out = [(signal, run(proc, signal, data)) for signal, data in load_capture(path)]
    return out, hooks


def log_events(
    outputs: list[tuple[Signal, Telemetry | None]], kind: str | None = None
) -> list[dict]:
    found: list[dict] = []
    for signal, data in outputs:
        if signal is Signal.LOGS:
            assert isinstance(data, LogsData)
            found += events(data, kind)
    return found


@pytest.fixture(params=CLAUDE_RUNS, ids=lambda p: p.stem)
def claude_run(request: pytest.FixtureRequest) -> Path:
    return request.param


def test_there_are_captured_claude_runs() -> None:
    assert len(CLAUDE_RUNS) >= 3, "expected the http/protobuf, http/json and grpc captures"


def test_each_call_once_with_the_mock_usage(claude_run: Path) -> None:
    outputs, _ = normalise_run(claude_run)
    calls = log_events(outputs, "api_call")
    assert [token_row(c) for c in calls] == EXPECTED_CALLS
    assert [c[am.CACHE_WRITE_1H_TOKENS] for c in calls] == EXPECTED_1H
    assert [c[am.CACHE_WRITE_5M_TOKENS] + c[am.CACHE_WRITE_1H_TOKENS] for c in calls] == [
        row[2] for row in EXPECTED_CALLS
    ]
    assert len({c[am.EVENT_ID] for c in calls}) == 4
    assert {c[am.MODEL] for c in calls} == {"claude-sonnet-4-5"}
    assert {c[am.PROVIDER] for c in calls} == {"anthropic"}
    assert all(c[am.COST_USD_REPORTED] > 0 for c in calls)
    # semconv input includes both cache classes
    assert [c["gen_ai.usage.input_tokens"] for c in calls] == [
        row[0] + row[1] + row[2] for row in EXPECTED_CALLS
    ]


def test_session_identity_and_team(claude_run: Path) -> None:
    outputs, _ = normalise_run(claude_run)
    found = log_events(outputs)
    assert {e[am.AGENT] for e in found} == {"claude_code"}
    assert {e[am.AGENT_VERSION] for e in found} == {"2.1.328"}
    assert len({e[am.SESSION_ID] for e in found}) == 1
    assert len({e[am.USER_ID] for e in found}) == 1
    assert {e[am.TEAM] for e in found} == {"platform"}
    assert {e[am.COST_CENTER] for e in found} == {"cc-42"}
    assert {e["gen_ai.conversation.id"] for e in found} == {found[0][am.SESSION_ID]}


def test_tool_calls_with_decisions(claude_run: Path) -> None:
    outputs, _ = normalise_run(claude_run)
    tools = log_events(outputs, "tool_call")
    decisions = [t for t in tools if t[TOOL_PHASE] == "decision"]
    results = [t for t in tools if t[TOOL_PHASE] == "result"]
    # Bash echo, Bash ls (fails), Write (refused by the allow-list, so it never ran)
    assert [(d[am.TOOL_NAME], d[am.DECISION], d[am.DECISION_SOURCE]) for d in decisions] == [
        ("Bash", "accept", "config"),
        ("Bash", "accept", "config"),
        ("Write", "reject", "config"),
    ]
    assert [(r[am.TOOL_NAME], r[am.SUCCESS]) for r in results] == [("Bash", True), ("Bash", False)]
    if "nocontent" in claude_run.name:  # OTEL_LOG_TOOL_DETAILS=0: no arguments, error class only
        assert results[1][am.ERROR_MESSAGE] == "ShellError"
        assert not any(am.COMMAND in t or am.TOOL_ARGUMENTS in t for t in tools)
    else:
        assert results[1][am.ERROR_MESSAGE] == "Shell command failed"
        assert [r[am.COMMAND] for r in results] == ["echo hello", "ls /nonexistent-agentwatch-e2e"]
    assert [r[am.TOOL_ARGUMENTS_SIZE] for r in results] == [78, 98]
    # decision and result of one call share the call id; a call is one distinct id
    assert {d[am.TOOL_CALL_ID] for d in decisions[:2]} == {r[am.TOOL_CALL_ID] for r in results}
    assert len({t[am.TOOL_CALL_ID] for t in tools}) == 3
    assert len({t[am.EVENT_ID] for t in tools}) == 5


def test_prompt_text_only_when_the_agent_sent_it() -> None:
    with_content, _ = normalise_run(CAPTURED / "claude" / "retry-tools-http-protobuf.json")
    without, _ = normalise_run(CAPTURED / "claude" / "retry-tools-nocontent-http-protobuf.json")
    (prompt,) = log_events(with_content, "user_prompt")
    (redacted,) = log_events(without, "user_prompt")
    assert prompt[am.PROMPT_LENGTH] == redacted[am.PROMPT_LENGTH] == 94
    assert prompt[am.PROMPT_TEXT].startswith("Run `echo hello`")
    assert am.PROMPT_TEXT not in redacted


def test_metrics_give_the_same_totals_as_the_events(claude_run: Path) -> None:
    """The metric carries the same tokens; its derived api_usage record must agree."""
    outputs, hooks = normalise_run(claude_run)
    usage = [r for logs in hooks.logs for r in events(logs, "api_usage")]
    totals = [sum(usage_row[i] for usage_row in EXPECTED_CALLS) for i in range(4)]
    assert [
        sum(u[am.INPUT_TOKENS] for u in usage),
        sum(u[am.CACHE_READ_TOKENS] for u in usage),
        sum(u[am.CACHE_WRITE_TOKENS] for u in usage),
        sum(u[am.OUTPUT_TOKENS] for u in usage),
    ] == totals
    calls = log_events(outputs, "api_call")
    assert sum(u[am.COST_USD_REPORTED] for u in usage) == pytest.approx(
        sum(c[am.COST_USD_REPORTED] for c in calls)
    )
    # metrics stay metrics: marked with the agent, never turned into api_call records
    for signal, data in outputs:
        if signal is Signal.METRICS:
            assert isinstance(data, MetricsData)
            points = list(records(data))
            assert points and all(p[am.AGENT] == "claude_code" for p in points)
            assert not any(am.EVENT in p for p in points)


def test_derived_genai_client_metrics(claude_run: Path) -> None:
    _, hooks = normalise_run(claude_run)
    sums: dict[tuple[str, str], float] = {}
    counts: dict[str, int] = {}
    for data in hooks.metrics:
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    assert metric.histogram.aggregation_temporality == 1  # DELTA
                    for p in metric.histogram.data_points:
                        attrs = {kv.key: kv.value.string_value for kv in p.attributes}
                        key = (metric.name, attrs.get("gen_ai.token.type", ""))
                        sums[key] = sums.get(key, 0) + p.sum
                        counts[metric.name] = counts.get(metric.name, 0) + p.count
                        assert sum(p.bucket_counts) == p.count
    assert sums[("gen_ai.client.token.usage", "input")] == sum(
        r[0] + r[1] + r[2] for r in EXPECTED_CALLS
    )
    assert sums[("gen_ai.client.token.usage", "output")] == sum(r[3] for r in EXPECTED_CALLS)
    assert counts["gen_ai.client.operation.duration"] == 4


def test_trace_spans_join_their_log_event_but_are_not_events(claude_run: Path) -> None:
    outputs, _ = normalise_run(claude_run)
    call_ids = {c[am.EVENT_ID] for c in log_events(outputs, "api_call")}
    llm_spans = []
    for signal, data in outputs:
        if signal is Signal.TRACES:
            assert isinstance(data, TracesData)
            for rs in data.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        if span.name == "claude_code.llm_request":
                            llm_spans.append({kv.key: kv for kv in span.attributes})
            assert not events(data)
    assert len(llm_spans) == 4
    assert {s[am.EVENT_ID].value.string_value for s in llm_spans} == call_ids
    first = min(llm_spans, key=lambda s: s["gen_ai.usage.input_tokens"].value.int_value)
    assert first["gen_ai.usage.input_tokens"].value.int_value == 1203 + 15011 + 3007
    assert first[am.ATTEMPT].value.int_value == 2  # the 429 before it was retried


def test_same_request_twice_gives_the_same_event_ids() -> None:
    (signal, data), *_ = [
        (s, d)
        for s, d in load_capture(CAPTURED / "claude" / "retry-tools-grpc.json")
        if s is Signal.LOGS and events(run(processor(), s, copy.deepcopy(d)))
    ]
    first = events(run(processor(), signal, copy.deepcopy(data)))
    again = events(run(processor(), signal, copy.deepcopy(data)))
    assert first and [e[am.EVENT_ID] for e in first] == [e[am.EVENT_ID] for e in again]
    # normalising an already normalised batch (re-export, second collector) changes nothing
    once = run(processor(), signal, copy.deepcopy(data))
    assert once is not None
    twice = run(processor(), signal, copy.deepcopy(once))
    assert twice is not None and twice.SerializeToString() == once.SerializeToString()


@pytest.mark.parametrize(
    "tokens",
    [
        {"input_tokens": "1200", "output_tokens": "57", "cache_read_tokens": "15000"},
        {"input_tokens": 1200, "output_tokens": 57, "cache_read_tokens": 15000},
        {"input_tokens": 1200.0, "output_tokens": "57.0", "cache_read_tokens": 15000},
    ],
    ids=["strings", "ints", "doubles"],
)
def test_token_counts_as_strings_ints_or_doubles(tokens: dict[str, object]) -> None:
    request = log_request(
        "claude-code",
        [
            {
                "event.name": "api_request",
                "session.id": "s-1",
                "model": "claude-sonnet-4-5",
                "cache_creation_tokens": "3000",
                "request_id": "req_1",
                **tokens,
            }
        ],
        body_prefix="claude_code.",
    )
    (call,) = events(run(processor(), Signal.LOGS, request), "api_call")
    assert token_row(call) == (1200, 15000, 3000, 57, 0)


def test_bedrock_and_vertex_models_get_their_provider() -> None:
    request = log_request(
        "claude-code",
        [
            {"event.name": "api_request", "session.id": "s", "model": m, "request_id": m}
            for m in ("us.anthropic.claude-sonnet-4-5-v1:0", "claude-sonnet-4-5@20250929", "x")
        ],
    )
    calls = events(run(processor(), Signal.LOGS, request), "api_call")
    assert [c[am.PROVIDER] for c in calls] == ["aws.bedrock", "gcp.vertex_ai", "anthropic"]


# --- public samples (../shared/samples, see SOURCES.md there) --------------------------------
def test_sample_log_conversation() -> None:
    data = load_sample(
        SAMPLES / "claude" / "t4avenger__claude-code-2.1.283-log-conversation.otlp.json"
    )
    out = run(processor(), Signal.LOGS, data)
    (prompt,) = events(out, "user_prompt")
    assert prompt[am.PROMPT_LENGTH] == 42
    assert prompt[am.SESSION_ID] == "tiq-corr-210"
    assert prompt[am.USER_EMAIL] == "synthetic-user@example.test"
    assert prompt[am.USER_ACCOUNT] == "00000000-0000-4000-8000-0000000000a2"
    assert prompt[am.ORGANIZATION] == "00000000-0000-4000-8000-0000000000a1"
    assert len(events(out)) == 1  # the assistant_response is context, not an event


def test_sample_token_usage_metrics_hand_count() -> None:
    """Hand count of the sample: input 10, output 42, cacheRead 0, cacheCreation 18856."""
    data = load_sample(
        SAMPLES / "claude" / "t4avenger__claude-code-2.1.268-token-usage-metrics.otlp.json"
    )
    proc = processor()
    hooks = Hooks(proc)
    run(proc, Signal.METRICS, data)
    (usage,) = [r for logs in hooks.logs for r in events(logs, "api_usage")]
    assert token_row(usage) == (10, 0, 18856, 42, 0)
    assert usage[am.MODEL] == "claude-haiku-4-5-20251001"
    assert usage[am.USER_EMAIL] == "synthetic@example.test"


def test_sample_trace_conversation() -> None:
    data = load_sample(
        SAMPLES / "claude" / "t4avenger__claude-code-2.1.283-trace-conversation.otlp.json"
    )
    out = run(processor(), Signal.TRACES, data)
    assert isinstance(out, TracesData)
    spans = {
        s.name: {kv.key: kv.value for kv in s.attributes}
        for s in out.resource_spans[0].scope_spans[0].spans
    }
    llm = spans["claude_code.llm_request"]
    # hand count: input 2 + cache read 0 + cache creation 8532
    assert llm["gen_ai.usage.input_tokens"].int_value == 8534
    assert llm["gen_ai.usage.cache_creation.input_tokens"].int_value == 8532
    assert llm["gen_ai.request.model"].string_value == "claude-opus-4-8"  # the agent's own key kept
    assert llm["gen_ai.provider.name"].string_value == "anthropic"
    assert llm[am.AGENT].string_value == "claude_code"


def test_sample_metrics_decode_the_same_with_json_format() -> None:
    """The sample has no trace ids, so protobuf's own JSON parser must agree with our codec."""
    path = SAMPLES / "claude" / "t4avenger__claude-code-2.1.268-token-usage-metrics.otlp.json"
    payload = json.loads(path.read_text())["payload"]
    parsed = json_format.ParseDict(payload, MetricsData())
    assert parsed == load_sample(path)


MCP_RUN = CAPTURED / "claude-sessions" / "mcp-subagent-denied-http-protobuf.json"


def test_mcp_tools_get_their_real_names_and_server() -> None:
    """Claude 2.1.328 logs every MCP tool as ``mcp_tool``; the names are in tool_parameters."""
    outputs, _ = normalise_run(MCP_RUN)
    tools = log_events(outputs, "tool_call")
    mcp = [t for t in tools if t.get("tool_name") == "mcp_tool"]
    assert len(mcp) == 2  # the vendor's own key stays as sent
    assert {(t[am.TOOL_NAME], t[am.MCP_SERVER], t[am.TOOL_SOURCE]) for t in mcp} == {
        ("echo", "awecho", "mcp")
    }
    (result,) = [t for t in mcp if t[TOOL_PHASE] == "result"]
    assert result[am.TOOL_ARGUMENTS] == '{"text":"hi mcp"}'  # tool_input, not the names
    others = [t for t in tools if t.get("tool_name") != "mcp_tool"]
    assert {t[am.TOOL_SOURCE] for t in others} == {"builtin"}
    assert all(am.MCP_SERVER not in t for t in others)
    (start,) = log_events(outputs, "session_start")  # mcp_server_connection, status connected
    assert start[am.MCP_SERVERS] == "awecho"


def test_subagent_and_main_calls_are_told_apart() -> None:
    outputs, _ = normalise_run(MCP_RUN)
    calls = log_events(outputs, "api_call")
    assert [(c[am.CALLER], c[am.QUERY_SOURCE]) for c in calls] == [
        ("main", "sdk"),
        ("main", "sdk"),
        ("main", "sdk"),
        ("subagent", "agent:builtin:general-purpose"),
        ("subagent", "agent:builtin:general-purpose"),
        ("main", "sdk"),
    ]
    subagent = [c for c in calls if c[am.CALLER] == "subagent"]
    assert {(c[am.SUBAGENT_ID], c[am.SUBAGENT_NAME]) for c in subagent} == {
        ("a5b7603877fb839b1", "general-purpose")
    }
    assert all(am.SUBAGENT_ID not in c for c in calls if c[am.CALLER] == "main")


def _prompt_record(sequence: int, time_ns: int, prompt_id: str) -> dict[str, object]:
    return {
        "event.name": "user_prompt",
        "session.id": "resumed",
        "event.sequence": sequence,
        "event.timestamp": f"2026-12-06T04:00:0{time_ns % 10}.000Z",
        "prompt.id": prompt_id,
        "prompt_length": "12",
        "_time": time_ns,
    }


def test_event_ids_differ_across_processes_and_repeat_on_redelivery() -> None:
    """``--resume`` starts a new process whose event.sequence restarts at 1: the second
    process's first prompt must not get the first one's id; the same record sent again must."""
    first = _prompt_record(5, 1_700_000_000_000_000_001, "p-1")
    resumed = _prompt_record(5, 1_700_000_100_000_000_002, "p-2")
    proc = processor()
    ids = []
    for record in (first, resumed, first):
        data = log_request("claude-code", [dict(record)], body_prefix="claude_code.")
        (event,) = events(run(proc, Signal.LOGS, data), "user_prompt")
        ids.append(event[am.EVENT_ID])
    assert ids[0] != ids[1] and ids[0] == ids[2]
