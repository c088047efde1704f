"""Agent tables: normalised records become one row per event, sessions and hourly rollups
follow through materialized views, and the public contract views expose them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collector import agent_model as am
from collector.component import TracesData
from collector.records import Logs, Traces
from exporters.clickhouse import schema
from tests.support.clickhouse_fixture import (
    ClickHouseDatabase,
    agent_record,
    kv,
    logs_request,
    make_exporter,
)

HOUR_NS = 3600 * 10**9
T0 = (time.time_ns() // HOUR_NS - 2) * HOUR_NS  # start of the hour before last
USER = {
    "user_id": "u-1",
    "user_email": "ada@example.com",
    "team": "platform",
    "agent": "claude_code",
    "agent_version": "2.0.14",
}


def _api_call(
    event_id: str, ts: int, session: str, *, cost: float | None, **extra: Any
) -> LogRecord:
    attrs: dict[str, Any] = {
        **USER,
        "session_id": session,
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "request_id": f"req-{event_id}",
        "input_tokens": 100,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 200,
        "output_tokens": 50,
        "reasoning_tokens": 10,
        "duration_ms": 1234.5,
        "status": "ok",
    }
    if cost is not None:
        attrs["cost_usd"] = cost
        attrs["cost_usd_reported"] = cost + 0.01
    attrs.update(extra)
    return agent_record(am.EventType.API_CALL, event_id, ts, **attrs)


def _q(db: ClickHouseDatabase, sql: str) -> list[tuple[Any, ...]]:
    return db.rows(sql.replace("DB.", f"{db.name}."))


def test_every_event_type_lands_in_its_table(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    s = "sess-1"
    records = [
        _api_call("e1", T0 + 1, s, cost=0.5),
        agent_record(
            am.EventType.API_ERROR,
            "e2",
            T0 + 2,
            **USER,
            session_id=s,
            status="529",
            error_message="overloaded",
            attempt=3,
            model="claude-sonnet-4-5",
        ),
        agent_record(
            am.EventType.TOOL_CALL,
            "e3",
            T0 + 3,
            **USER,
            session_id=s,
            tool_name="Bash",
            decision="accept",
            decision_source="config",
            success=True,
            duration_ms=42.0,
            tool_arguments='{"command":"ls"}',
            mcp_server="",
            command="ls",
        ),
        agent_record(
            am.EventType.USER_PROMPT, "e4", T0 + 4, **USER, session_id=s, prompt_length=17
        ),
        agent_record(
            am.EventType.SESSION_START,
            "e5",
            T0,
            **USER,
            session_id=s,
            approval_policy="on-request",
            sandbox="workspace-write",
            mcp_servers="github, linear",
        ),
        agent_record(
            am.EventType.CODE_CHANGE,
            "e6",
            T0 + 6,
            **USER,
            session_id=s,
            lines_added=12,
            lines_removed=3,
        ),
        agent_record(
            am.EventType.DETECTION,
            "e7",
            T0 + 7,
            **USER,
            session_id=s,
            rule_id="secret-in-prompt",
            severity="high",
            evidence="AKIA…",
        ),
        agent_record(
            am.EventType.API_USAGE,
            "e8",
            T0 + 5,
            **USER,
            session_id=s,
            model="claude-sonnet-4-5",
            input_tokens=999,
            output_tokens=9,
            derived_from="metrics",
        ),
    ]
    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        exporter.consume_logs(Logs.from_proto(logs_request(records)), "agent-batch-1")
    finally:
        exporter.shutdown()

    counts = {
        t.table: clickhouse_schema.scalar(f"SELECT count() FROM {clickhouse_schema.name}.{t.table}")
        for t in schema.AGENT_TABLES.values()
    }
    assert counts == {t.table: 1 for t in schema.AGENT_TABLES.values()}
    assert clickhouse_schema.scalar(f"SELECT count() FROM {clickhouse_schema.name}.otel_logs") == 8

    api = _q(clickhouse_schema, "SELECT * FROM DB.api_calls")
    columns = [c for c, *_ in _q(clickhouse_schema, "DESCRIBE TABLE DB.api_calls")]
    row = dict(zip(columns, api[0], strict=True))
    assert columns[:19] == [
        "timestamp",
        "agent",
        "agent_version",
        "session_id",
        "user_id",
        "user_email",
        "team",
        "provider",
        "model",
        "request_id",
        "input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cost_usd",
        "cost_usd_reported",
        "duration_ms",
        "status",
    ]
    assert {
        k: row[k]
        for k in (
            "agent",
            "session_id",
            "user_email",
            "team",
            "model",
            "request_id",
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cost_usd",
            "cost_usd_reported",
            "duration_ms",
            "status",
            "event_id",
        )
    } == {
        "agent": "claude_code",
        "session_id": s,
        "user_email": "ada@example.com",
        "team": "platform",
        "model": "claude-sonnet-4-5",
        "request_id": "req-e1",
        "input_tokens": 100,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 200,
        "output_tokens": 50,
        "reasoning_tokens": 10,
        "cost_usd": 0.5,
        "cost_usd_reported": 0.51,
        "duration_ms": 1234.5,
        "status": "ok",
        "event_id": "e1",
    }
    assert _q(clickhouse_schema, "SELECT toUnixTimestamp64Nano(timestamp) FROM DB.api_calls") == [
        (T0 + 1,)
    ]

    tool = _q(
        clickhouse_schema,
        "SELECT timestamp, agent, session_id, user_id, tool_name, "
        "mcp_server, decision, decision_source, success, duration_ms, "
        "arguments, command FROM DB.tool_calls",
    )
    assert tool[0][1:] == (
        "claude_code",
        s,
        "u-1",
        "Bash",
        "",
        "accept",
        "config",
        True,
        42.0,
        '{"command":"ls"}',
        "ls",
    )
    detections = _q(
        clickhouse_schema,
        "SELECT rule_id, severity, agent, session_id, user_id, evidence FROM DB.detections",
    )
    assert detections == [("secret-in-prompt", "high", "claude_code", s, "u-1", "AKIA…")]
    starts = _q(
        clickhouse_schema, "SELECT approval_policy, sandbox, mcp_servers FROM DB.session_starts"
    )
    assert starts == [("on-request", "workspace-write", ["github", "linear"])]
    errors = _q(clickhouse_schema, "SELECT status, error_message, attempt FROM DB.api_errors")
    assert errors == [("529", "overloaded", 3)]

    session = _q(
        clickhouse_schema,
        "SELECT session_id, agent, agent_version, user_id, "
        "user_email, team, toUnixTimestamp64Nano(first_seen), "
        "toUnixTimestamp64Nano(last_seen), api_calls, tool_calls, "
        "input_tokens, cache_read_tokens, cache_write_tokens, "
        "output_tokens, cost_usd, api_errors, user_prompts, "
        "detections, lines_added, lines_removed FROM DB.sessions",
    )
    assert session == [
        (
            s,
            "claude_code",
            "2.0.14",
            "u-1",
            "ada@example.com",
            "platform",
            T0,
            T0 + 7,
            1,
            1,
            100,
            1000,
            200,
            50,
            0.5,
            1,
            1,
            1,
            12,
            3,
        )
    ]


def test_sessions_and_rollups_aggregate_across_batches(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        exporter.consume_logs(
            Logs.from_proto(
                logs_request(
                    [
                        _api_call("a1", T0 + 10, "s1", cost=0.25),
                        _api_call("a2", T0 + HOUR_NS + 10, "s1", cost=0.75),  # next hour
                    ]
                )
            ),
            "b1",
        )
        exporter.consume_logs(
            Logs.from_proto(
                logs_request(
                    [
                        _api_call(
                            "a3", T0 + 20, "s1", cost=1.0, user_email=""
                        ),  # a record without e-mail
                        _api_call("a4", T0 + 30, "s2", cost=None),  # unknown model: no price
                        _api_call(
                            "a5",
                            T0 + 40,
                            "s3",
                            cost=None,
                            user_id="u-2",
                            user_email="bo@example.com",
                        ),
                        _api_call(
                            "a6",
                            T0 + 50,
                            "s3",
                            cost=2.0,
                            user_id="u-2",
                            user_email="bo@example.com",
                        ),
                    ]
                )
            ),
            "b2",
        )
    finally:
        exporter.shutdown()

    sessions = {
        r[0]: r[1:]
        for r in _q(
            clickhouse_schema,
            "SELECT session_id, user_email, api_calls, input_tokens, output_tokens, cost_usd, "
            "unpriced_api_calls FROM DB.sessions",
        )
    }
    assert sessions == {
        "s1": ("ada@example.com", 3, 300, 150, 2.0, 0),
        "s2": ("ada@example.com", 1, 100, 50, None, 1),  # cost unknown is NULL, never 0
        "s3": ("bo@example.com", 2, 200, 100, 2.0, 1),
    }

    hourly = _q(
        clickhouse_schema,
        "SELECT toUnixTimestamp(hour), user_id, user_email, "
        "api_calls, input_tokens, cost_usd, unpriced_api_calls "
        "FROM DB.usage_hourly ORDER BY hour, user_id, user_email",
    )
    first, second = T0 // 10**9, T0 // 10**9 + 3600
    assert hourly == [
        (first, "u-1", "", 1, 100, 1.0, 0),
        (first, "u-1", "ada@example.com", 2, 200, 0.25, 1),
        (first, "u-2", "bo@example.com", 2, 200, 2.0, 1),
        (second, "u-1", "ada@example.com", 1, 100, 0.75, 0),
    ]

    # The 30-day cost-by-user query of the docs reads the rollup and agrees with raw events.
    by_user = dict(
        _q(
            clickhouse_schema,
            "SELECT user_id, sum(cost_usd) FROM DB.usage_hourly "
            "WHERE hour >= now() - INTERVAL 30 DAY GROUP BY user_id",
        )
    )
    raw = dict(
        _q(clickhouse_schema, "SELECT user_id, sum(cost_usd) FROM DB.api_calls GROUP BY user_id")
    )
    assert by_user == raw == {"u-1": 2.0, "u-2": 2.0}


def test_spans_with_agent_events_become_rows(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    span = Span(
        trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
        span_id=bytes.fromhex("b7ad6b7169203331"),
        name="chat claude-sonnet-4-5",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=T0 + 100,
        end_time_unix_nano=T0 + 100 + 2_500_000_000,
        attributes=[
            kv(am.EVENT, "api_call"),
            kv(am.EVENT_ID, "span-e1"),
            kv(am.AGENT, "copilot_chat"),
            kv(am.SESSION_ID, "vs-1"),
            kv(am.MODEL, "gpt-5"),
            kv(am.INPUT_TOKENS, 10),
            kv(am.OUTPUT_TOKENS, 5),
            kv(am.COST_USD, 0.001),
        ],
    )
    request = TracesData(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[kv("service.name", "copilot-chat")]),
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name="copilot"), spans=[span])],
            )
        ]
    )
    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        exporter.consume_traces(Traces.from_proto(request), "t1")
    finally:
        exporter.shutdown()
    rows = _q(
        clickhouse_schema,
        "SELECT agent, session_id, model, input_tokens, output_tokens, "
        "cost_usd, duration_ms, trace_id, span_id "
        "FROM DB.api_calls",
    )
    # Without an explicit duration the span's own duration is used.
    assert rows == [
        (
            "copilot_chat",
            "vs-1",
            "gpt-5",
            10,
            5,
            0.001,
            2500.0,
            "0af7651916cd43dd8448eb211c80319c",
            "b7ad6b7169203331",
        )
    ]


def test_unparsable_values_become_null_and_are_counted(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    from collector import telemetry

    exporter = make_exporter(clickhouse_schema, str(tmp_path), name="clickhouse/invalid")
    before = telemetry.value(
        "agentwatch_clickhouse_invalid_agent_values_total", exporter="clickhouse/invalid"
    )
    try:
        exporter.consume_logs(
            Logs.from_proto(
                logs_request(
                    [
                        _api_call("x1", T0, "s", cost=None, cost_usd="n/a", input_tokens="many"),
                    ]
                )
            ),
            "bad-values",
        )
    finally:
        exporter.shutdown()
    assert _q(clickhouse_schema, "SELECT cost_usd, input_tokens FROM DB.api_calls") == [(None, 0)]
    after = telemetry.value(
        "agentwatch_clickhouse_invalid_agent_values_total", exporter="clickhouse/invalid"
    )
    assert after - before == 2
    # The raw table keeps the text the agent sent.
    assert _q(
        clickhouse_schema, "SELECT LogAttributes['agentwatch.cost_usd'] FROM DB.otel_logs"
    ) == [("n/a",)]
