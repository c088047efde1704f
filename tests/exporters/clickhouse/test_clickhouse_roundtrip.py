"""Round trip: OTLP requests encoded by the real OpenTelemetry SDK go through the clickhouse
exporter into a real ClickHouse and are read back: values, attributes and timestamps."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Metric,
    ResourceMetrics,
    ScopeMetrics,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from collector.component import MetricsData
from collector.records import Logs, Traces
from tests.support.clickhouse_fixture import ClickHouseDatabase, kv, make_exporter

HOUR_NS = 3600 * 10**9
# Start of the previous hour: recent enough that the tables' TTL keeps the rows.
T0 = (time.time_ns() // HOUR_NS - 1) * HOUR_NS
RESOURCE = Resource.create({"service.name": "claude-code", "team": "platform"})


def _q(db: ClickHouseDatabase, sql: str) -> list[tuple[Any, ...]]:
    return db.rows(sql.replace("DB.", f"{db.name}."))


def test_logs_round_trip(clickhouse_schema: ClickHouseDatabase, tmp_path: Path) -> None:
    tracer_provider = TracerProvider(resource=RESOURCE)
    span = tracer_provider.get_tracer("t").start_span("parent", start_time=T0)
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("com.anthropic.claude_code", "2.0.1")
    logger.emit(
        timestamp=T0 + 123_456_789,
        observed_timestamp=T0 + 200_000_000,
        context=trace.set_span_in_context(span),
        severity_number=SeverityNumber.WARN,
        severity_text="WARN",
        body="api request done",
        attributes={
            "model": "claude-sonnet-4",
            "tokens": 1234,
            "cost": 0.25,
            "ok": True,
            "tags": ["a", "b"],
            "whole": 3.0,
        },
        event_name="claude_code.api_request",
    )
    logger.emit(timestamp=None, observed_timestamp=T0 + 5, body={"nested": {"k": 1}})
    request = encode_logs(memory.get_finished_logs())

    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        exporter.consume_logs(Logs.from_proto(request), "batch-logs-1")
    finally:
        exporter.shutdown()

    rows = _q(
        clickhouse_schema,
        "SELECT toUnixTimestamp64Nano(Timestamp), TimestampTime, TraceId, SpanId, SeverityText, "
        "SeverityNumber, ServiceName, Body, ResourceAttributes, ScopeName, ScopeVersion, "
        "LogAttributes, EventName FROM DB.otel_logs ORDER BY Timestamp DESC",
    )
    assert len(rows) == 2
    (
        ts,
        ts_time,
        trace_id,
        span_id,
        sev_text,
        sev_num,
        service,
        body,
        res,
        scope,
        version,
        attrs,
        event_name,
    ) = rows[0]
    ctx = span.get_span_context()
    assert ts == T0 + 123_456_789
    assert int(ts_time.timestamp()) == T0 // 10**9
    assert trace_id == format(ctx.trace_id, "032x")
    assert span_id == format(ctx.span_id, "016x")
    assert (sev_text, sev_num, service, body) == ("WARN", 13, "claude-code", "api request done")
    assert res["team"] == "platform"
    assert (scope, version, event_name) == (
        "com.anthropic.claude_code",
        "2.0.1",
        "claude_code.api_request",
    )
    assert attrs == {
        "model": "claude-sonnet-4",
        "tokens": "1234",
        "cost": "0.25",
        "ok": "true",
        "tags": '["a","b"]',
        "whole": "3",
    }
    # A record without a timestamp is stored at its observed time; a map body as JSON.
    assert rows[1][0] == T0 + 5
    assert rows[1][7] == '{"nested":{"k":1}}'
    assert rows[1][2] == ""


def test_traces_round_trip(clickhouse_schema: ClickHouseDatabase, tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("agent.tracer", "0.9")
    linked = tracer.start_span("linked", start_time=T0)
    linked.end(end_time=T0 + 10)
    parent = tracer.start_span("session", start_time=T0, kind=SpanKind.SERVER)
    child = tracer.start_span(
        "llm_request",
        context=trace.set_span_in_context(parent),
        kind=SpanKind.CLIENT,
        start_time=T0 + 1_000,
        attributes={"gen_ai.request.model": "gpt-5", "attempt": 2},
        links=[Link(linked.get_span_context(), {"why": "retry-of"})],
    )
    child.add_event("first_token", {"ttft_ms": 120.5}, timestamp=T0 + 5_000)
    child.set_status(Status(StatusCode.ERROR, "rate limited"))
    child.end(end_time=T0 + 2_501_000)
    parent.end(end_time=T0 + 3_000_000)
    request = encode_spans(memory.get_finished_spans())

    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        exporter.consume_traces(Traces.from_proto(request), "batch-traces-1")
    finally:
        exporter.shutdown()

    rows = _q(
        clickhouse_schema,
        "SELECT toUnixTimestamp64Nano(Timestamp), TraceId, SpanId, ParentSpanId, SpanName, "
        "SpanKind, ServiceName, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, "
        "StatusMessage, arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp), Events.Name, "
        "Events.Attributes, Links.TraceId, Links.SpanId, Links.Attributes "
        "FROM DB.otel_traces WHERE SpanName = 'llm_request'",
    )
    assert len(rows) == 1
    row = rows[0]
    child_ctx, parent_ctx, linked_ctx = (
        child.get_span_context(),
        parent.get_span_context(),
        linked.get_span_context(),
    )
    assert row[0] == T0 + 1_000
    assert row[1] == format(child_ctx.trace_id, "032x")
    assert row[2] == format(child_ctx.span_id, "016x")
    assert row[3] == format(parent_ctx.span_id, "016x")
    assert row[4:9] == ("llm_request", "SPAN_KIND_CLIENT", "claude-code", "agent.tracer", "0.9")
    assert row[9] == {"gen_ai.request.model": "gpt-5", "attempt": "2"}
    assert row[10] == 2_500_000
    assert row[11:13] == ("STATUS_CODE_ERROR", "rate limited")
    assert row[13] == [T0 + 5_000]
    assert row[14] == ["first_token"]
    assert row[15] == [{"ttft_ms": "120.5"}]
    assert row[16] == [format(linked_ctx.trace_id, "032x")]
    assert row[17] == [format(linked_ctx.span_id, "016x")]
    assert row[18] == [{"why": "retry-of"}]
    assert (
        clickhouse_schema.scalar(f"SELECT count() FROM {clickhouse_schema.name}.otel_traces") == 3
    )
    # The trace-id lookup table upstream keeps for Grafana is filled by its view.
    lookup = _q(
        clickhouse_schema,
        f"SELECT TraceId, Start, End FROM DB.otel_traces_trace_id_ts WHERE TraceId = '{row[1]}'",
    )
    assert len(lookup) == 1


def _sdk_metrics() -> MetricsData:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=RESOURCE,
        metric_readers=[reader],
        views=[
            View(
                instrument_name="tool.duration.exp",
                aggregation=ExponentialBucketHistogramAggregation(max_size=20),
            )
        ],
    )
    meter = provider.get_meter("agent.meter", "1.0")
    tokens = meter.create_counter("claude_code.token.usage", unit="tokens", description="Tokens")
    tokens.add(100, {"type": "input"})
    tokens.add(50, {"type": "input"})
    tokens.add(7, {"type": "output"})
    meter.create_gauge("queue.depth").set(3.5, {"queue": "wal"})
    latency = meter.create_histogram("api.latency", unit="ms")
    for value in (5.0, 20.0, 300.0):
        latency.record(value, {"model": "m1"})
    exp = meter.create_histogram("tool.duration.exp", unit="ms")
    for value in (1.0, 2.0, 4.0, 1000.0):
        exp.record(value)
    data = reader.get_metrics_data()
    assert data is not None
    return encode_metrics(data)


def _summary_request() -> MetricsData:
    point = SummaryDataPoint(
        start_time_unix_nano=T0,
        time_unix_nano=T0 + 60_000_000_000,
        count=10,
        sum=42.5,
        quantile_values=[
            SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=3.0),
            SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=9.5),
        ],
        attributes=[kv("route", "/v1/messages")],
    )
    return MetricsData(
        resource_metrics=[
            ResourceMetrics(
                resource=PbResource(attributes=[kv("service.name", "proxy")]),
                scope_metrics=[
                    ScopeMetrics(
                        scope=InstrumentationScope(name="legacy"),
                        metrics=[
                            Metric(
                                name="rpc.latency", unit="s", summary=Summary(data_points=[point])
                            )
                        ],
                    )
                ],
            )
        ]
    )


def test_metrics_round_trip_every_type(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    request = _sdk_metrics()
    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        exporter.consume_metrics(request, "batch-metrics-1")
        exporter.consume_metrics(_summary_request(), "batch-metrics-2")
    finally:
        exporter.shutdown()

    sums = dict(
        _q(
            clickhouse_schema,
            "SELECT Attributes['type'], Value FROM DB.otel_metrics_sum "
            "WHERE MetricName = 'claude_code.token.usage'",
        )
    )
    assert sums == {"input": 150.0, "output": 7.0}
    meta = _q(
        clickhouse_schema,
        "SELECT DISTINCT MetricUnit, MetricDescription, ServiceName, "
        "ScopeName, ScopeVersion, AggregationTemporality, IsMonotonic, "
        "ResourceAttributes['team'] FROM DB.otel_metrics_sum",
    )
    assert meta == [("tokens", "Tokens", "claude-code", "agent.meter", "1.0", 2, True, "platform")]

    # Timestamps are stored to the nanosecond as the SDK set them.
    point = request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0]
    stamps = _q(
        clickhouse_schema,
        "SELECT toUnixTimestamp64Nano(StartTimeUnix), "
        "toUnixTimestamp64Nano(TimeUnix) FROM DB.otel_metrics_sum",
    )
    assert (point.start_time_unix_nano, point.time_unix_nano) in stamps

    gauge = _q(clickhouse_schema, "SELECT MetricName, Value, Attributes FROM DB.otel_metrics_gauge")
    assert gauge == [("queue.depth", 3.5, {"queue": "wal"})]

    hist = _q(
        clickhouse_schema,
        "SELECT Count, Sum, Min, Max, BucketCounts, ExplicitBounds, "
        "Attributes FROM DB.otel_metrics_histogram",
    )
    assert len(hist) == 1
    count, total, low, high, buckets, bounds, attrs = hist[0]
    assert (count, total, low, high, attrs) == (3, 325.0, 5.0, 300.0, {"model": "m1"})
    assert sum(buckets) == 3 and len(buckets) == len(bounds) + 1
    assert bounds[:4] == [0.0, 5.0, 10.0, 25.0]

    exp_point = next(
        m
        for m in request.resource_metrics[0].scope_metrics[0].metrics
        if m.name == "tool.duration.exp"
    ).exponential_histogram.data_points[0]
    exp = _q(
        clickhouse_schema,
        "SELECT Count, Sum, Scale, ZeroCount, PositiveOffset, "
        "PositiveBucketCounts, Min, Max "
        "FROM DB.otel_metrics_exponential_histogram",
    )
    assert exp == [
        (
            4,
            1007.0,
            exp_point.scale,
            0,
            exp_point.positive.offset,
            list(exp_point.positive.bucket_counts),
            1.0,
            1000.0,
        )
    ]
    assert sum(exp[0][5]) == 4

    summary = _q(
        clickhouse_schema,
        "SELECT ServiceName, MetricName, Count, Sum, "
        "ValueAtQuantiles.Quantile, ValueAtQuantiles.Value, "
        "toUnixTimestamp64Nano(TimeUnix), Attributes "
        "FROM DB.otel_metrics_summary",
    )
    assert summary == [
        (
            "proxy",
            "rpc.latency",
            10,
            42.5,
            [0.5, 0.99],
            [3.0, 9.5],
            T0 + 60_000_000_000,
            {"route": "/v1/messages"},
        )
    ]
