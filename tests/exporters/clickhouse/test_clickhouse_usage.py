"""``api_usage`` rows (a session's tokens derived from metrics) in ClickHouse: stored in their
own table, counted in sessions and hourly rollups only for sessions without ``api_call`` rows,
and once however often they are delivered. Real normaliser, cost processor and ClickHouse."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from collector import agent_model as am
from collector import telemetry
from collector.component import LogsData, MetricsData
from collector.records import Logs
from exporters.clickhouse import rows, schema
from processors.cost import CostConfig, CostProcessor
from processors.normalize import NormalizeConfig, NormalizeProcessor
from tests.support.clickhouse_fixture import (
    ClickHouseDatabase,
    agent_record,
    as_of_version,
    kv,
    logs_request,
    make_exporter,
)
from tests.support.normalize_support import log_request

HOUR_NS = 3600 * 10**9
T0 = (time.time_ns() // HOUR_NS - 2) * HOUR_NS  # start of the hour before last
MODEL = "claude-sonnet-4-5"
USER = {"user.id": "u-1", "user.email": "ada@example.com"}


class Pipeline:
    """The collector's agent path for logs and metrics: normalize, whose hook hands the
    api_usage records derived from metrics to the logs pipeline, then cost."""

    def __init__(self, cost: CostConfig | None = None) -> None:
        self.normalize = NormalizeProcessor("normalize/usage-test", NormalizeConfig())
        self.derived: list[Logs] = []
        self.normalize.emit_logs = self.derived.append
        self.cost = CostProcessor("cost/usage-test", cost or CostConfig())

    def logs(self, data: LogsData) -> LogsData:
        normalised = self.normalize.consume_logs(Logs.from_proto(data))  # takes records
        assert normalised is not None
        priced = self.cost.consume_logs(normalised)
        assert priced is not None
        return priced.to_proto()

    def metrics(self, data: MetricsData) -> LogsData:
        """The derived api_usage (and code_change) records of one metrics request."""
        self.derived.clear()
        self.normalize.consume_metrics(data)
        out = LogsData()
        for derived in self.derived:
            priced = self.cost.consume_logs(derived)
            assert priced is not None
            out.resource_logs.extend(priced.to_proto().resource_logs)
        return out


def claude_usage_metrics(
    session: str, when_ns: int, tokens: dict[str, int], cost: float, model: str = MODEL
) -> MetricsData:
    """What Claude Code exports per interval with OTEL_METRICS_EXPORTER=otlp, delta."""
    common = {"session.id": session, "model": model, **USER}
    token_usage = metrics_pb2.Metric(
        name="claude_code.token.usage",
        unit="tokens",
        sum=metrics_pb2.Sum(
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
            is_monotonic=True,
            data_points=[
                metrics_pb2.NumberDataPoint(
                    start_time_unix_nano=when_ns - 60 * 10**9,
                    time_unix_nano=when_ns,
                    as_double=float(count),
                    attributes=[kv(k, v) for k, v in {**common, "type": kind}.items()],
                )
                for kind, count in tokens.items()
            ],
        ),
    )
    cost_usage = metrics_pb2.Metric(
        name="claude_code.cost.usage",
        unit="USD",
        sum=metrics_pb2.Sum(
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
            is_monotonic=True,
            data_points=[
                metrics_pb2.NumberDataPoint(
                    start_time_unix_nano=when_ns - 60 * 10**9,
                    time_unix_nano=when_ns,
                    as_double=cost,
                    attributes=[kv(k, v) for k, v in common.items()],
                )
            ],
        ),
    )
    return MetricsData(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=Resource(
                    attributes=[kv("service.name", "claude-code"), kv("service.version", "2.0.14")]
                ),
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(metrics=[token_usage, cost_usage]),
                ],
            )
        ]
    )


def claude_api_requests(session: str, calls: list[dict[str, Any]]) -> LogsData:
    """Claude Code ``api_request`` log events, one per dict (``_time``, tokens, cost_usd)."""
    records = [
        {
            "event.name": "api_request",
            "session.id": session,
            "model": MODEL,
            "request_id": f"req-{session}-{i}",
            **USER,
            **call,
        }
        for i, call in enumerate(calls)
    ]
    return log_request(
        "claude-code", records, resource={"service.version": "2.0.14"}, body_prefix="claude_code."
    )


def attribute_sum(data: LogsData, event: str, key: str) -> float | None:
    """Sum of one attribute over a request's records of one event type; None when absent."""
    values = [
        kv.value.double_value if kv.value.HasField("double_value") else kv.value.int_value
        for rl in data.resource_logs
        for sl in rl.scope_logs
        for record in sl.log_records
        if any(a.key == am.EVENT and a.value.string_value == event for a in record.attributes)
        for kv in record.attributes
        if kv.key == key
    ]
    return sum(values) if values else None


def q(db: ClickHouseDatabase, sql: str) -> list[tuple[Any, ...]]:
    return db.rows(sql.replace("DB.", f"{db.name}."))


SESSION_COLUMNS = (
    "api_calls, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, cost_usd, "
    "usage_records, tokens_from"
)


def test_metrics_only_session_counts_its_api_usage(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    pipeline = Pipeline()
    intervals = [
        {"input": 120, "output": 57, "cacheRead": 15000, "cacheCreation": 3000},
        {"input": 30, "output": 400, "cacheRead": 0, "cacheCreation": 0},
    ]
    derived = [
        pipeline.metrics(claude_usage_metrics("m-1", T0 + (i + 1) * 60 * 10**9, tokens, 0.01))
        for i, tokens in enumerate(intervals)
    ]
    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        for i, logs in enumerate(derived):
            exporter.consume_logs(Logs.from_proto(logs), f"usage-{i}")
    finally:
        exporter.shutdown()

    stored = q(
        clickhouse_schema,
        "SELECT agent, model, provider, input_tokens, cache_read_tokens, cache_write_tokens, "
        "output_tokens, cost_usd_reported, derived_from FROM DB.api_usage ORDER BY timestamp",
    )
    assert stored == [
        ("claude_code", MODEL, "anthropic", 120, 15000, 3000, 57, 0.01, "metrics"),
        ("claude_code", MODEL, "anthropic", 30, 0, 0, 400, 0.01, "metrics"),
    ]
    costs = [attribute_sum(logs, "api_usage", am.COST_USD) for logs in derived]
    expected_cost = None if costs == [None, None] else sum(c or 0.0 for c in costs)
    (session,) = q(clickhouse_schema, f"SELECT {SESSION_COLUMNS} FROM DB.sessions")
    assert session[:5] == (0, 150, 15000, 3000, 457)
    assert session[5] == (None if expected_cost is None else pytest.approx(expected_cost))
    assert session[6:] == (2, "api_usage")

    hourly = q(
        clickhouse_schema,
        "SELECT api_calls, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, "
        "usage_records FROM DB.usage_hourly",
    )
    assert hourly == [(0, 150, 15000, 3000, 457, 2)]


def test_metrics_only_cache_writes_without_split_use_the_agents_own_cost(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    """claude_code.token.usage has no 5m/1h split of cache writes: a price from it bills 1h
    writes at the 5m rate. Such a record takes claude_code.cost.usage, says so in cost_source,
    and the difference is counted. Sonnet 4.5 list prices per MTok: input 3, output 15, cache
    read 0.3, 5m write 3.75, 1h write 6; 3000 written of which 1000 for 1h (as the agent knew)."""
    reported = (1200 * 3 + 57 * 15 + 15000 * 0.3 + 2000 * 3.75 + 1000 * 6) / 1e6  # 0.022455
    at_5m_rate = (1200 * 3 + 57 * 15 + 15000 * 0.3 + 3000 * 3.75) / 1e6  # 0.020205
    no_writes = (30 * 3 + 400 * 15) / 1e6
    labels = {"processor": "cost/usage-test", "provider": "anthropic", "model": MODEL}

    def counted() -> tuple[float, float, float, float]:
        values = [
            telemetry.REGISTRY.get_sample_value(name, {**labels, **extra}) or 0.0
            for name, extra in (
                ("agentwatch_cost_cache_split_unknown_items_total", {}),
                ("agentwatch_cost_cache_split_unknown_usd_total", {"figure": "reported"}),
                ("agentwatch_cost_cache_split_unknown_usd_total", {"figure": "computed"}),
                ("agentwatch_cost_discrepancies_total", {}),
            )
        ]
        return values[0], values[1], values[2], values[3]

    before = counted()
    pipeline = Pipeline()
    derived = [
        pipeline.metrics(
            claude_usage_metrics(
                "split-1",
                T0 + 60 * 10**9,
                {"input": 1200, "output": 57, "cacheRead": 15000, "cacheCreation": 3000},
                reported,
            )
        ),
        pipeline.metrics(
            claude_usage_metrics(
                "split-1",
                T0 + 120 * 10**9,
                {"input": 30, "output": 400, "cacheRead": 0, "cacheCreation": 0},
                no_writes,
            )
        ),
    ]
    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        for i, logs in enumerate(derived):
            exporter.consume_logs(Logs.from_proto(logs), f"split-{i}")
    finally:
        exporter.shutdown()
    stored = q(
        clickhouse_schema,
        "SELECT cost_usd, cost_usd_computed, cost_source FROM DB.api_usage ORDER BY timestamp",
    )
    assert stored == [
        (pytest.approx(reported), pytest.approx(at_5m_rate), "reported_cache_split_unknown"),
        (pytest.approx(no_writes), pytest.approx(no_writes), "computed"),
    ]
    (cost,) = q(clickhouse_schema, "SELECT cost_usd FROM DB.sessions")[0]
    assert cost == pytest.approx(reported + no_writes)
    after = counted()
    assert [b - a for a, b in zip(before, after, strict=True)] == [
        1,
        pytest.approx(reported),
        pytest.approx(at_5m_rate),
        0,  # not a price-book discrepancy: the split is what differs
    ]


def test_session_with_calls_and_usage_is_counted_once_from_calls(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    """Claude with logs and metrics on sends every token twice; the metric copy arrives first
    here, and a metrics-only session of the same user and model shares the hourly row."""
    pipeline = Pipeline()
    calls = [
        {
            "_time": T0 + 10**9,
            "input_tokens": 1200,
            "output_tokens": 57,
            "cache_read_tokens": 15000,
            "cache_creation_tokens": 3000,
            "cost_usd": 0.020205,
        },
        {
            "_time": T0 + 2 * 10**9,
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_tokens": 0,
            "cache_creation_tokens": 0,
            "cost_usd": 0.000105,
        },
    ]
    both_usage = pipeline.metrics(
        claude_usage_metrics(
            "both",
            T0 + 60 * 10**9,
            {"input": 1210, "output": 62, "cacheRead": 15000, "cacheCreation": 3000},
            0.02031,
        )
    )
    only_usage = pipeline.metrics(
        claude_usage_metrics(
            "metrics-only",
            T0 + 60 * 10**9,
            {"input": 7, "output": 3, "cacheRead": 0, "cacheCreation": 0},
            0.00006,
        )
    )
    call_logs = pipeline.logs(claude_api_requests("both", calls))
    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        exporter.consume_logs(Logs.from_proto(both_usage), "metrics-first")
        exporter.consume_logs(Logs.from_proto(only_usage), "other-session")
        exporter.consume_logs(Logs.from_proto(call_logs), "logs-later")
    finally:
        exporter.shutdown()

    assert clickhouse_schema.scalar(f"SELECT count() FROM {clickhouse_schema.name}.api_usage") == 2
    calls_cost = attribute_sum(call_logs, "api_call", am.COST_USD)
    assert calls_cost is not None  # a known model: the cost processor priced both calls
    sessions = {
        r[0]: r[1:]
        for r in q(clickhouse_schema, f"SELECT session_id, {SESSION_COLUMNS} FROM DB.sessions")
    }
    assert sessions["both"][:5] == (2, 1210, 15000, 3000, 62)
    assert sessions["both"][5] == pytest.approx(calls_cost)
    assert sessions["both"][6:] == (1, "api_calls")  # its api_usage row is stored, not counted
    assert sessions["metrics-only"][:5] == (0, 7, 0, 0, 3)
    assert sessions["metrics-only"][6:] == (1, "api_usage")

    only_cost = attribute_sum(only_usage, "api_usage", am.COST_USD)
    (hourly,) = q(
        clickhouse_schema,
        "SELECT api_calls, input_tokens, output_tokens, cost_usd, usage_records "
        "FROM DB.usage_hourly",
    )
    assert hourly[:3] == (2, 1217, 65)
    assert hourly[3] == pytest.approx(calls_cost + (only_cost or 0.0))
    assert hourly[4] == 1
    # The rollup agrees with the sessions view, the rule's other reader.
    totals = q(
        clickhouse_schema,
        "SELECT sum(input_tokens), sum(output_tokens), sum(cost_usd) FROM DB.sessions",
    )
    assert totals[0][:2] == hourly[1:3]
    assert totals[0][2] == pytest.approx(hourly[3])


def test_same_api_usage_event_delivered_twice_is_counted_once(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    """The queue retries a batch and a client resends its metrics request: the derived record
    keeps its event id, so the exporter leaves both copies out of the agent tables."""
    metrics = claude_usage_metrics(
        "twice", T0 + 60 * 10**9, {"input": 5, "output": 9, "cacheRead": 0, "cacheCreation": 0}, 0.1
    )
    first = Pipeline().metrics(metrics)
    resent = Pipeline().metrics(
        claude_usage_metrics(
            "twice",
            T0 + 60 * 10**9,
            {"input": 5, "output": 9, "cacheRead": 0, "cacheCreation": 0},
            0.1,
        )
    )
    exporter = make_exporter(clickhouse_schema, str(tmp_path), name="clickhouse/usage-twice")
    labels = {"exporter": "clickhouse/usage-twice", "table": "agent_api_usage"}
    before = telemetry.value("agentwatch_clickhouse_duplicate_agent_events_total", **labels)
    try:
        exporter.consume_logs(Logs.from_proto(first), "batch-1")
        exporter.consume_logs(Logs.from_proto(first), "batch-1")  # the queue retries the same batch
        # the client sends the request again
        exporter.consume_logs(Logs.from_proto(resent), "batch-2")
    finally:
        exporter.shutdown()
    after = telemetry.value("agentwatch_clickhouse_duplicate_agent_events_total", **labels)

    n = clickhouse_schema.name
    assert clickhouse_schema.scalar(f"SELECT count() FROM {n}.agent_api_usage") == 1
    assert clickhouse_schema.rows(
        f"SELECT usage_records, input_tokens, output_tokens FROM {n}.sessions"
    ) == [(1, 5, 9)]
    assert clickhouse_schema.rows(
        f"SELECT sum(usage_records), sum(input_tokens) FROM {n}.agent_api_usage_hourly"
    ) == [(1, 5)]
    assert after - before == 2  # the retry and the resend, each left out and counted
    # The raw table keeps the resend, as upstream does; the retried batch is there once.
    assert clickhouse_schema.scalar(f"SELECT count() FROM {n}.otel_logs") == 2


def test_usage_cost_is_null_when_nothing_is_priced(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    """Aggregates of api_usage follow the rule of api_calls: unknown cost is NULL, never 0."""

    def usage(event_id: str, session: str, cost: float | None, model: str) -> Any:
        extra = {} if cost is None else {"cost_usd": cost}
        return agent_record(
            am.EventType.API_USAGE,
            event_id,
            T0 + 5,
            agent="gemini_cli",
            session_id=session,
            user_id="u-7",
            provider="gcp.gen_ai",
            model=model,
            input_tokens=10,
            output_tokens=4,
            **extra,
        )

    records = [
        usage("u1", "priced", 0.25, "gemini-2.5-pro"),
        usage("u2", "priced", None, "gemini-9-unknown"),
        usage("u3", "unpriced", None, "gemini-9-unknown"),
    ]
    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        exporter.consume_logs(
            Logs.from_proto(logs_request(records, service="gemini-cli")), "gemini-usage"
        )
    finally:
        exporter.shutdown()
    sessions = {
        r[0]: r[1:]
        for r in q(
            clickhouse_schema,
            "SELECT session_id, input_tokens, cost_usd, unpriced_usage_records, "
            "unpriced_api_calls FROM DB.sessions",
        )
    }
    assert sessions == {"priced": (20, 0.25, 1, 0), "unpriced": (10, None, 1, 0)}
    hourly = q(
        clickhouse_schema,
        "SELECT model, input_tokens, cost_usd, unpriced_usage_records FROM DB.usage_hourly "
        "ORDER BY model",
    )
    assert hourly == [("gemini-2.5-pro", 10, 0.25, 0), ("gemini-9-unknown", 20, None, 2)]


def _layout(db: ClickHouseDatabase) -> dict[str, Any]:
    tables = db.rows(
        f"SELECT name, engine, replaceAll(engine_full, '{db.name}', 'DB'), "
        f"replaceAll(as_select, '{db.name}', 'DB') FROM system.tables "
        f"WHERE database = '{db.name}' AND name != '{schema.MIGRATIONS_TABLE}' ORDER BY name"
    )
    columns = db.rows(
        f"SELECT table, name, type, default_expression, compression_codec FROM system.columns "
        f"WHERE database = '{db.name}' ORDER BY table, position"
    )
    return {"tables": tables, "columns": columns}


@pytest.mark.parametrize("start", [m.version for m in schema.MIGRATIONS[:-1]])
def test_migrate_to_api_usage_schema_from_each_earlier_version(
    clickhouse_db: ClickHouseDatabase, start: int, tmp_path: Path
) -> None:
    """A store left at ``start`` (holding api calls when it has agent tables) upgrades to the
    schema a new store gets; old rows keep counting and api_usage rows count from then on."""
    settings = clickhouse_db.settings
    schema.migrate(clickhouse_db.client, settings, target=start)
    if start >= 2:
        old = rows.convert_logs(
            Logs.from_proto(
                logs_request(
                    [
                        agent_record(
                            am.EventType.API_CALL,
                            f"old-{i}",
                            T0 + i,
                            agent="claude_code",
                            session_id="old",
                            user_id="u-9",
                            model=MODEL,
                            input_tokens=7,
                            cost_usd=0.1,
                        )
                        for i in range(3)
                    ]
                )
            )
        )
        exporter = make_exporter(clickhouse_db, str(tmp_path), create_schema=False)
        try:
            client = exporter._ensure_ready()
            for table_rows in old.agent.values():
                exporter._insert(
                    client, as_of_version(table_rows, start), f"old:{table_rows.table}"
                )
        finally:
            exporter.shutdown()

    applied = schema.migrate(clickhouse_db.client, settings)
    assert [v for v, _ in applied] == [m.version for m in schema.MIGRATIONS if m.version > start]
    reference = ClickHouseDatabase(
        f"{clickhouse_db.name}_ref", clickhouse_db.client, clickhouse_db.server
    )
    clickhouse_db.client.command(f"CREATE DATABASE {reference.name}")
    try:
        schema.migrate(reference.client, reference.settings)
        assert _layout(clickhouse_db) == _layout(reference)
    finally:
        clickhouse_db.client.command(f"DROP DATABASE IF EXISTS {reference.name} SYNC")

    exporter = make_exporter(clickhouse_db, str(tmp_path))
    try:
        exporter.consume_logs(
            Logs.from_proto(
                Pipeline().metrics(
                    claude_usage_metrics(
                        "new",
                        T0 + 60 * 10**9,
                        {"input": 11, "output": 2, "cacheRead": 0, "cacheCreation": 0},
                        0.01,
                    )
                )
            ),
            "after-upgrade",
        )
    finally:
        exporter.shutdown()
    sessions = dict(
        q(clickhouse_db, "SELECT session_id, (api_calls, input_tokens) FROM DB.sessions")
    )
    expected = {"new": (0, 11)}
    if start >= 2:
        expected["old"] = (3, 21)
    assert sessions == expected
    assert q(clickhouse_db, "SELECT DISTINCT revision FROM DB.api_calls") == (
        [(0,)] if start >= 2 else []
    )


def test_api_usage_keys_come_from_the_record_not_the_resource() -> None:
    """Row building only: the api_usage table takes the derived record's own keys."""
    record = agent_record(
        am.EventType.API_USAGE,
        "x",
        T0,
        session_id="s",
        model=MODEL,
        input_tokens=3,
        derived_from="metrics",
    )
    record.attributes.append(kv(am.OUTPUT_TOKENS, 4))
    record.body.CopyFrom(AnyValue(string_value="agentwatch.api_usage"))
    batch = rows.convert_logs(Logs.from_proto(logs_request([record])))
    usage = batch.agent["agent_api_usage"]
    columns = dict(zip(usage.names, usage.columns, strict=True))
    assert columns["input_tokens"] == [3] and columns["output_tokens"] == [4]
    assert columns["derived_from"] == ["metrics"]
    assert "revision" not in columns  # written by reprice only; the exporter leaves the default
