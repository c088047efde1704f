"""The real agent CLIs, offline: each runs its scripted session against its mock model API and
exports to a capture receiver, over HTTP and gRPC.

This proves the e2e harness itself (install, mocks, CLI settings, capture) and pins down the
telemetry facts the vendor normalisers depend on, so a CLI upgrade that changes them fails here
first. Expected numbers always come from what the mock recorded, never from constants.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agent_clis import (
    ECHO_COMMAND,
    FAILING_COMMAND,
    REFUSED_FILE,
    SPECS,
    UNKNOWN_TOOL,
    AgentName,
    Protocol,
    Telemetry,
    install_clis,
    mock_for,
    run_cli,
)
from tests.e2e.mock_models import MockModelServer, RecordedCall
from tests.e2e.otlp_capture import LogEvent, OtlpCapture, attributes, log_events, resources

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TokenTuple = tuple[int, ...]

CASES: list[tuple[AgentName, Protocol]] = [
    (agent, protocol) for agent, spec in SPECS.items() for protocol in (spec.protocols[0], "grpc")
]


@pytest.fixture(scope="session")
def installed_clis() -> float:
    """Install (or find cached) the pinned CLIs; the seconds it took."""
    return install_clis()


def _conversation(body: Any) -> Any:
    """The part of a model request that a retry must repeat unchanged."""
    assert isinstance(body, dict)
    for key in ("messages", "input", "contents"):
        if key in body:
            return body[key]
    raise AssertionError(f"no conversation in request keys {sorted(body)}")


def _int(value: Any) -> int:
    return int(value) if value not in (None, "") else 0


WIRE_TOKEN_FIELDS: dict[AgentName, tuple[str, ...]] = {
    "claude": (
        "input_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cache_creation.ephemeral_1h_input_tokens",
        "output_tokens",
    ),
    "codex": (
        "input_tokens",
        "input_tokens_details.cached_tokens",
        "input_tokens_details.cache_write_tokens",
        "output_tokens",
        "output_tokens_details.reasoning_tokens",
    ),
    "gemini": (
        "promptTokenCount",
        "cachedContentTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
        "totalTokenCount",
    ),
}
"""Usage fields as the mock sends them, in the order of LOGGED_TOKEN_FIELDS."""

LOGGED_TOKEN_FIELDS: dict[AgentName, tuple[str, tuple[str, ...]]] = {
    "claude": (
        "api_request",
        (
            "input_tokens",
            "cache_read_tokens",
            "cache_creation_tokens",
            "cache_creation_1h_tokens",
            "output_tokens",
        ),
    ),
    "codex": (
        "codex.sse_event",
        (
            "input_token_count",
            "cached_token_count",
            "cache_write_token_count",
            "output_token_count",
            "reasoning_token_count",
        ),
    ),
    "gemini": (
        "gemini_cli.api_response",
        (
            "input_token_count",
            "cached_content_token_count",
            "output_token_count",
            "thoughts_token_count",
            "total_token_count",
        ),
    ),
}
"""Where each CLI logs the same numbers: one log event per model call."""


def _wire_tokens(agent: AgentName, usage: dict[str, Any]) -> TokenTuple:
    values = []
    for path in WIRE_TOKEN_FIELDS[agent]:
        node: Any = usage
        for key in path.split("."):
            node = node.get(key, 0) if isinstance(node, dict) else 0
        values.append(_int(node))
    return tuple(values)


def _logged_tokens(agent: AgentName, events: list[LogEvent]) -> list[TokenTuple]:
    event_name, keys = LOGGED_TOKEN_FIELDS[agent]
    return sorted(
        tuple(_int(e.attributes.get(k)) for k in keys)
        for e in events
        # Codex also logs a count-less response.completed per call: only the counted one.
        if e.name == event_name and keys[0] in e.attributes
    )


def _answered_tokens(agent: AgentName, calls: list[RecordedCall]) -> list[TokenTuple]:
    return sorted(
        _wire_tokens(agent, c.wire_usage)
        for c in calls
        if c.status == 200 and c.wire_usage is not None
    )


def _tool_outcomes(agent: AgentName, events: list[LogEvent]) -> list[tuple[str, str]]:
    """(tool name, success) per finished tool call, in the order logged."""
    event_name, name_key = {
        "claude": ("tool_result", "tool_name"),
        "codex": ("codex.tool_result", "tool_name"),
        "gemini": ("gemini_cli.tool_call", "function_name"),
    }[agent]
    return [
        (str(e.attributes[name_key]), str(e.attributes["success"]).lower())
        for e in events
        if e.name == event_name
    ]


def _wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Exports are flushed before a CLI exits; this only absorbs a receiver thread's lag."""
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def _assert_retry_seen(mock: MockModelServer) -> None:
    scripted = mock.scripted_calls()
    assert [c.kind for c in scripted] == [
        "rate_limited",
        "tool_call",
        "tool_call",
        "tool_call",
        "text",
    ]
    rate_limited, retry = scripted[0], scripted[1]
    assert (rate_limited.status, retry.status) == (429, 200)
    assert _conversation(retry.body) == _conversation(rate_limited.body)


def _assert_tools_ran(agent: AgentName, mock: MockModelServer) -> None:
    outputs = mock.tool_outputs()
    assert len(outputs) == 3, outputs
    echo, failing, refused = (str(o["output"]) for o in outputs)
    assert "hello" in echo and "nonexistent" not in echo
    assert "nonexistent-agentwatch-e2e" in failing
    assert (REFUSED_FILE if agent == "claude" else UNKNOWN_TOOL) in refused
    assert not Path(REFUSED_FILE).exists()


def _assert_tool_telemetry(agent: AgentName, events: list[LogEvent]) -> None:
    outcomes = _tool_outcomes(agent, events)
    shell = {"claude": "Bash", "codex": "exec_command", "gemini": "run_shell_command"}[agent]
    assert outcomes[0] == (shell, "true")
    if agent == "claude":
        # Claude logs no tool_result for a refused call, only the decision.
        assert outcomes == [(shell, "true"), (shell, "false")]
        decisions = [
            (e.attributes["tool_name"], e.attributes["decision"])
            for e in events
            if e.name == "tool_decision"
        ]
        assert decisions == [(shell, "accept"), (shell, "accept"), ("Write", "reject")]
    else:
        # Both log a failing shell command as success=true: the exit code is only in the output.
        assert [name for name, _ in outcomes] == [shell, shell, UNKNOWN_TOOL]
        assert outcomes[2] == (UNKNOWN_TOOL, "false")


def _assert_rate_limit_telemetry(agent: AgentName, capture: OtlpCapture) -> None:
    events = log_events(capture.of("logs"))
    if agent == "codex":
        statuses = [
            str(e.attributes.get("http.response.status_code"))
            for e in events
            if e.name == "codex.api_request"
        ]
        assert statuses[0] == "429" and statuses.count("200") == 4
    elif agent == "gemini":
        errors = [e for e in events if e.name == "gemini_cli.api_error"]
        assert [str(e.attributes["status_code"]) for e in errors] == ["429"]
    else:
        # Claude logs nothing for a retried 429; its traces say attempt 2 on that llm_request.
        attempts = [
            str(attributes(span.attributes).get("attempt"))
            for request in capture.of("traces")
            for rs in request.resource_spans  # type: ignore[attr-defined]
            for ss in rs.scope_spans
            for span in ss.spans
            if span.name == "claude_code.llm_request"
        ]
        assert sorted(attempts) == ["1", "1", "1", "2"]


@pytest.mark.parametrize(("agent", "protocol"), CASES, ids=[f"{a}-{p}" for a, p in CASES])
def test_cli_session_against_mock_exports_its_telemetry(
    agent: AgentName,
    protocol: Protocol,
    installed_clis: float,
    record_property: Callable[[str, object], None],
) -> None:
    spec = SPECS[agent]
    with OtlpCapture() as capture, mock_for(agent) as mock:
        endpoint = capture.grpc_endpoint if protocol == "grpc" else capture.http_endpoint
        run = run_cli(agent, mock, Telemetry(endpoint, protocol), timeout_s=120)
        record_property("cli_seconds", round(run.duration_s, 2))
        print(f"{agent} over {protocol}: {run.duration_s:.1f}s (install {installed_clis:.1f}s)")

        assert run.exit_code == 0, run.stderr[-4000:]
        _assert_retry_seen(mock)
        _assert_tools_ran(agent, mock)
        assert ECHO_COMMAND in str(mock.calls[-1].body) and FAILING_COMMAND in str(
            mock.calls[-1].body
        )

        expected_tokens = _answered_tokens(agent, mock.calls)
        assert len(expected_tokens) >= 4

        def tokens_arrived() -> bool:
            return _logged_tokens(agent, log_events(capture.of("logs"))) == expected_tokens

        _wait_until(tokens_arrived)
        assert capture.errors == []
        received = [c.request for c in capture.captures]
        assert {c.transport["protocol"] for c in capture.captures} == {protocol}
        blocks = resources(received)
        assert blocks, "no telemetry arrived"
        assert {r.get("service.name") for r in blocks} == {spec.service_name}
        assert {r.get("team") for r in blocks} == {"platform"}

        events = log_events(capture.of("logs"))
        assert _logged_tokens(agent, events) == expected_tokens
        _assert_tool_telemetry(agent, events)
        _assert_rate_limit_telemetry(agent, capture)
