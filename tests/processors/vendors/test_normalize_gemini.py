"""Gemini CLI normalisation: thoughts outside output, cached inside input, cumulative metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from collector import agent_model as am
from collector import telemetry
from collector.component import MetricsData, Signal
from processors.vendors import TOOL_PHASE
from processors.vendors.gemini_cli import gemini_tokens
from tests.support.normalize_support import (
    CAPTURED,
    Hooks,
    events,
    load_capture,
    log_request,
    processor,
    records,
    run,
    token_row,
)

GEMINI_RUNS = sorted((CAPTURED / "gemini").glob("*.json"))

# tests/data/captured/gemini/README.md: (input, cache read, cache write, output, reasoning)
# agentwatch's convention: input = promptTokenCount - cached; output = candidates + thoughts.
EXPECTED_CALLS = [
    (3109, 5023, 0, 73, 41),
    (3221, 7039, 0, 87, 43),
    (3343, 9047, 0, 101, 47),
    (3457, 9151, 0, 109, 53),
]


@pytest.fixture(params=GEMINI_RUNS, ids=lambda p: p.stem)
def gemini_run(request: pytest.FixtureRequest) -> Path:
    return request.param


def normalise(path: Path) -> tuple[list[dict], Hooks, list[MetricsData]]:
    proc = processor()
    hooks = Hooks(proc)
    found: list[dict] = []
    metrics: list[MetricsData] = []
    for signal, data in load_capture(path):
        out = run(proc, signal, data)
        if signal is Signal.LOGS:
            found += events(out)
        elif signal is Signal.METRICS:
            assert isinstance(out, MetricsData)
            metrics.append(out)
    return found, hooks, metrics


def test_there_are_captured_gemini_runs() -> None:
    assert len(GEMINI_RUNS) >= 2


def test_each_call_once_thoughts_counted_as_output(gemini_run: Path) -> None:
    found, _, _ = normalise(gemini_run)
    calls = [e for e in found if e[am.EVENT] == "api_call"]
    assert [token_row(c) for c in calls] == EXPECTED_CALLS
    assert len({c[am.EVENT_ID] for c in calls}) == 4
    assert {(c[am.MODEL], c[am.PROVIDER]) for c in calls} == {("gemini-2.5-pro", "gcp.gen_ai")}
    # semconv: input includes the cache read; output includes the thoughts
    assert [c["gen_ai.usage.input_tokens"] for c in calls] == [r[0] + r[1] for r in EXPECTED_CALLS]
    assert [c["gen_ai.usage.output_tokens"] for c in calls] == [r[3] for r in EXPECTED_CALLS]
    assert {(c[am.CALLER], c[am.QUERY_SOURCE]) for c in calls} == {("main", "main")}


def test_error_tools_prompt_and_config(gemini_run: Path) -> None:
    found, _, _ = normalise(gemini_run)
    (error,) = [e for e in found if e[am.EVENT] == "api_error"]
    assert error[am.STATUS] == "429"
    assert "RESOURCE_EXHAUSTED" in error[am.ERROR_MESSAGE]
    tools = [e for e in found if e[am.EVENT] == "tool_call"]
    assert [(t[am.TOOL_NAME], t[am.SUCCESS], t.get(am.DECISION)) for t in tools] == [
        ("run_shell_command", True, "accept"),
        ("run_shell_command", True, "accept"),
        ("delete_everything", False, None),
    ]
    assert all(t[TOOL_PHASE] == "result" for t in tools)
    commands = [t.get(am.COMMAND) for t in tools]
    if "nocontent" in gemini_run.name:  # logPrompts=false also drops function_args
        assert commands == [None, None, None]
    else:
        assert commands == ["echo hello", "ls /nonexistent-agentwatch-e2e", None]
    assert "not found" in tools[2][am.ERROR_MESSAGE]
    assert len({t[am.EVENT_ID] for t in tools}) == 3
    (start,) = [e for e in found if e[am.EVENT] == "session_start"]
    assert (start[am.APPROVAL_POLICY], start[am.SANDBOX], start[am.MCP_SERVERS]) == (
        "yolo",
        "true",
        "",
    )
    (prompt,) = [e for e in found if e[am.EVENT] == "user_prompt"]
    assert prompt[am.PROMPT_LENGTH] == 94
    assert ("nocontent" in gemini_run.name) == (am.PROMPT_TEXT not in prompt)


def test_identity_without_email(gemini_run: Path) -> None:
    found, _, _ = normalise(gemini_run)
    assert len({e[am.SESSION_ID] for e in found}) == 1
    users = {e[am.USER_ID] for e in found}  # installation.id groups a user with no e-mail
    assert len(users) == 1 and all(am.USER_EMAIL not in e for e in found)
    assert {(e[am.TEAM], e[am.COST_CENTER]) for e in found} == {("platform", "cc-42")}
    # service.version is Node's version, not the CLI's: it must not become the agent version
    assert all(am.AGENT_VERSION not in e for e in found)


def test_inference_details_and_requests_are_not_calls(gemini_run: Path) -> None:
    found, _, _ = normalise(gemini_run)
    assert len([e for e in found if e[am.EVENT] == "api_call"]) == 4
    raw_details = [
        r
        for signal, data in load_capture(gemini_run)
        if signal is Signal.LOGS
        for r in records(data)
        if r.get("event.name") == "gen_ai.client.inference.operation.details"
    ]
    assert len(raw_details) == 10  # five requests and five responses: context only


def test_cumulative_metrics_are_not_derived_until_made_delta(gemini_run: Path) -> None:
    before = telemetry.value(
        "agentwatch_normalize_usage_skipped_points_total",
        processor="normalize/test",
        agent="gemini_cli",
        reason="not_delta",
    )
    _, hooks, _ = normalise(gemini_run)
    assert hooks.logs == []
    skipped = (
        telemetry.value(
            "agentwatch_normalize_usage_skipped_points_total",
            processor="normalize/test",
            agent="gemini_cli",
            reason="not_delta",
        )
        - before
    )
    assert skipped >= 5  # input, output, cache, thought, tool
    # The first export of a cumulative series is its delta since start: flip and derive.
    proc = processor()
    delta_hooks = Hooks(proc)
    for signal, data in load_capture(gemini_run):
        if signal is Signal.METRICS:
            assert isinstance(data, MetricsData)
            for rm in data.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.WhichOneof("data") == "sum":
                            metric.sum.aggregation_temporality = (
                                metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
                            )
            run(proc, signal, data)
    usage = [r for logs in delta_hooks.logs for r in events(logs, "api_usage")]
    assert [
        sum(u[key] for u in usage)
        for key in (am.INPUT_TOKENS, am.CACHE_READ_TOKENS, am.OUTPUT_TOKENS, am.REASONING_TOKENS)
    ] == [
        sum(r[0] for r in EXPECTED_CALLS),
        sum(r[1] for r in EXPECTED_CALLS),
        sum(r[3] for r in EXPECTED_CALLS),
        sum(r[4] for r in EXPECTED_CALLS),
    ]


def test_gemini_emits_its_own_client_metrics_so_none_are_derived(gemini_run: Path) -> None:
    _, hooks, metrics = normalise(gemini_run)
    assert hooks.metrics == []
    names = {
        m.name
        for d in metrics
        for rm in d.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert "gen_ai.client.token.usage" in names


@pytest.mark.parametrize("as_strings", [True, False])
def test_token_counts_as_strings_or_ints(as_strings: bool) -> None:
    counts = {
        "input_token_count": 8132,
        "cached_content_token_count": 5023,
        "output_token_count": 32,
        "thoughts_token_count": 41,
        "tool_token_count": 0,
        "total_token_count": 8205,
    }
    attrs: dict[str, object] = {k: str(v) if as_strings else v for k, v in counts.items()}
    request = log_request(
        "gemini-cli",
        [
            {
                "event.name": "gemini_cli.api_response",
                "prompt_id": "p-1",
                "model": "gemini-2.5-pro",
                **attrs,
            }
        ],
        resource={"session.id": "s-1"},
    )
    (call,) = events(run(processor(), Signal.LOGS, request), "api_call")
    assert token_row(call) == (3109, 5023, 0, 73, 41)
    assert call[am.SESSION_ID] == "s-1"  # from the resource when the record lacks it


def test_tool_use_prompt_tokens_count_as_input_unless_the_total_says_otherwise() -> None:
    # total = input + output + thoughts + tool: tool tokens were outside the input count
    outside = gemini_tokens(1000, 400, 50, 10, 30, 1090)
    assert outside[am.INPUT_TOKENS] == 630
    # total = input + output + thoughts: tool tokens were already part of the input count
    inside = gemini_tokens(1000, 400, 50, 10, 30, 1060)
    assert inside[am.INPUT_TOKENS] == 600


def test_vertex_auth_means_vertex_provider() -> None:
    request = log_request(
        "gemini-cli",
        [
            {
                "event.name": "gemini_cli.api_response",
                "session.id": "s",
                "auth_type": "vertex-ai",
                "input_token_count": 10,
                "output_token_count": 5,
            }
        ],
    )
    (call,) = events(run(processor(), Signal.LOGS, request), "api_call")
    assert call[am.PROVIDER] == "gcp.vertex_ai"
    assert call["gen_ai.provider.name"] == "gcp.vertex_ai"


def test_router_call_is_auxiliary_and_error_type_is_the_tool_error() -> None:
    """Without -m, Gemini CLI 0.61 starts each turn with a non-streaming router call
    (role=utility_router) to a flash-lite model; a failed tool may carry only error_type."""
    common = {"session.id": "g-1", "prompt_id": "g-1", "installation.id": "i-1"}
    data = log_request(
        "gemini-cli",
        [
            {
                **common,
                "event.name": "gemini_cli.api_response",
                "model": "gemini-2.5-flash-lite",
                "role": "utility_router",
                "input_token_count": 900,
                "output_token_count": 12,
                "total_token_count": 912,
            },
            {
                **common,
                "event.name": "gemini_cli.api_response",
                "model": "gemini-3.1-pro-preview",
                "role": "main",
                "input_token_count": 4000,
                "output_token_count": 50,
            },
            {
                **common,
                "event.name": "gemini_cli.tool_call",
                "function_name": "read_file",
                "success": False,
                "error_type": "file_not_found",
                "mcp_server_name": "",
            },
        ],
    )
    found = events(run(processor(), Signal.LOGS, data))
    calls = [e for e in found if e[am.EVENT] == "api_call"]
    assert [(c[am.MODEL], c[am.CALLER]) for c in calls] == [
        ("gemini-2.5-flash-lite", "auxiliary"),
        ("gemini-3.1-pro-preview", "main"),
    ]
    (tool,) = [e for e in found if e[am.EVENT] == "tool_call"]
    assert (tool[am.ERROR_MESSAGE], tool[am.TOOL_SOURCE]) == ("file_not_found", "builtin")
