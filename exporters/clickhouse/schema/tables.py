"""The raw OpenTelemetry tables, with the column set of the collector-contrib
``clickhouseexporter`` (pinned: v0.150.0, the last release whose ``otel_logs`` has
``TimestampTime``), so Grafana's ClickHouse data source and existing queries work unchanged.
"""

from __future__ import annotations

from exporters.clickhouse.schema.ddl import (
    MAP,
    TS_CODEC,
    Column,
    SchemaSettings,
    SqlTemplate,
    Table,
)

_SQL = SqlTemplate("tables.sql")


def _exemplar_columns() -> tuple[Column, ...]:
    return (
        Column(
            "Exemplars",
            f"Nested (FilteredAttributes {MAP}, TimeUnix DateTime64(9), Value Float64, "
            "SpanId String, TraceId String)",
        ),
    )


def _metric_common() -> tuple[Column, ...]:
    return (
        Column("ResourceAttributes", MAP),
        Column("ResourceSchemaUrl", "String"),
        Column("ScopeName", "String"),
        Column("ScopeVersion", "String"),
        Column("ScopeAttributes", MAP),
        Column("ScopeDroppedAttrCount", "UInt32"),
        Column("ScopeSchemaUrl", "String"),
        Column("ServiceName", "LowCardinality(String)"),
        Column("MetricName", "String"),
        Column("MetricDescription", "String"),
        Column("MetricUnit", "String"),
        Column("Attributes", MAP),
        Column("StartTimeUnix", "DateTime64(9)", "Delta, ZSTD(1)"),
        Column("TimeUnix", "DateTime64(9)", "Delta, ZSTD(1)"),
    )


def _map_indexes(*maps: tuple[str, str]) -> tuple[str, ...]:
    out = []
    for prefix, column in maps:
        out.append(
            f"INDEX idx_{prefix}_key mapKeys({column}) TYPE bloom_filter(0.01) GRANULARITY 1"
        )
        out.append(
            f"INDEX idx_{prefix}_value mapValues({column}) TYPE bloom_filter(0.01) GRANULARITY 1"
        )
    return tuple(out)


_METRIC_INDEXES = _map_indexes(
    ("res_attr", "ResourceAttributes"), ("scope_attr", "ScopeAttributes"), ("attr", "Attributes")
)


def _metric_table(name: str, columns: tuple[Column, ...]) -> Table:
    return Table(
        name=name,
        columns=_metric_common() + columns,
        engine="MergeTree",
        partition_by="toDate(TimeUnix)",
        order_by="(ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))",
        indexes=_METRIC_INDEXES,
        ttl="toDateTime(TimeUnix) + toIntervalDay({days})",
        sharding_key="cityHash64(ServiceName, MetricName, TimeUnix)",
    )


OTEL_LOGS = Table(
    name="otel_logs",
    columns=(
        Column("Timestamp", "DateTime64(9)", TS_CODEC),
        Column("TimestampTime", "DateTime", "", "DEFAULT toDateTime(Timestamp)"),
        Column("TraceId", "String"),
        Column("SpanId", "String"),
        Column("TraceFlags", "UInt8", ""),
        Column("SeverityText", "LowCardinality(String)"),
        Column("SeverityNumber", "UInt8", ""),
        Column("ServiceName", "LowCardinality(String)"),
        Column("Body", "String"),
        Column("ResourceSchemaUrl", "LowCardinality(String)"),
        Column("ResourceAttributes", MAP),
        Column("ScopeSchemaUrl", "LowCardinality(String)"),
        Column("ScopeName", "String"),
        Column("ScopeVersion", "LowCardinality(String)"),
        Column("ScopeAttributes", MAP),
        Column("LogAttributes", MAP),
        Column("EventName", "String"),
    ),
    engine="MergeTree",
    partition_by="toDate(TimestampTime)",
    primary_key="(ServiceName, TimestampTime)",
    order_by="(ServiceName, TimestampTime, Timestamp)",
    indexes=(
        "INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1",
        *_map_indexes(
            ("res_attr", "ResourceAttributes"),
            ("scope_attr", "ScopeAttributes"),
            ("log_attr", "LogAttributes"),
        ),
        "INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8",
    ),
    ttl="TimestampTime + toIntervalDay({days})",
    sharding_key="cityHash64(ServiceName, Timestamp, TraceId, SpanId)",
)

OTEL_TRACES = Table(
    name="otel_traces",
    columns=(
        Column("Timestamp", "DateTime64(9)", "Delta, ZSTD(1)"),
        Column("TraceId", "String"),
        Column("SpanId", "String"),
        Column("ParentSpanId", "String"),
        Column("TraceState", "String"),
        Column("SpanName", "LowCardinality(String)"),
        Column("SpanKind", "LowCardinality(String)"),
        Column("ServiceName", "LowCardinality(String)"),
        Column("ResourceAttributes", MAP),
        Column("ScopeName", "String"),
        Column("ScopeVersion", "String"),
        Column("SpanAttributes", MAP),
        Column("Duration", "UInt64"),
        Column("StatusCode", "LowCardinality(String)"),
        Column("StatusMessage", "String"),
        Column(
            "Events",
            f"Nested (Timestamp DateTime64(9), Name LowCardinality(String), Attributes {MAP})",
        ),
        Column(
            "Links", f"Nested (TraceId String, SpanId String, TraceState String, Attributes {MAP})"
        ),
    ),
    engine="MergeTree",
    partition_by="toDate(Timestamp)",
    order_by="(ServiceName, SpanName, toDateTime(Timestamp))",
    indexes=(
        "INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1",
        *_map_indexes(("res_attr", "ResourceAttributes"), ("span_attr", "SpanAttributes")),
        "INDEX idx_duration Duration TYPE minmax GRANULARITY 1",
    ),
    ttl="toDate(Timestamp) + toIntervalDay({days})",
    sharding_key="cityHash64(TraceId)",
)

OTEL_TRACES_TRACE_ID_TS = Table(
    name="otel_traces_trace_id_ts",
    columns=(
        Column("TraceId", "String"),
        Column("Start", "DateTime"),
        Column("End", "DateTime"),
    ),
    engine="MergeTree",
    partition_by="toDate(Start)",
    order_by="(TraceId, Start)",
    indexes=("INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1",),
    ttl="toDate(Start) + toIntervalDay({days})",
    sharding_key="cityHash64(TraceId)",
    ttl_key="otel_traces",
)

OTEL_METRICS_GAUGE = _metric_table(
    "otel_metrics_gauge",
    (Column("Value", "Float64"), Column("Flags", "UInt32"), *_exemplar_columns()),
)
OTEL_METRICS_SUM = _metric_table(
    "otel_metrics_sum",
    (
        Column("Value", "Float64"),
        Column("Flags", "UInt32"),
        *_exemplar_columns(),
        Column("AggregationTemporality", "Int32"),
        Column("IsMonotonic", "Boolean", "Delta, ZSTD(1)"),
    ),
)
OTEL_METRICS_HISTOGRAM = _metric_table(
    "otel_metrics_histogram",
    (
        Column("Count", "UInt64", "Delta, ZSTD(1)"),
        Column("Sum", "Float64"),
        Column("BucketCounts", "Array(UInt64)"),
        Column("ExplicitBounds", "Array(Float64)"),
        *_exemplar_columns(),
        Column("Flags", "UInt32"),
        Column("Min", "Float64"),
        Column("Max", "Float64"),
        Column("AggregationTemporality", "Int32"),
    ),
)
OTEL_METRICS_EXP_HISTOGRAM = _metric_table(
    "otel_metrics_exponential_histogram",
    (
        Column("Count", "UInt64", "Delta, ZSTD(1)"),
        Column("Sum", "Float64"),
        Column("Scale", "Int32"),
        Column("ZeroCount", "UInt64"),
        Column("PositiveOffset", "Int32"),
        Column("PositiveBucketCounts", "Array(UInt64)"),
        Column("NegativeOffset", "Int32"),
        Column("NegativeBucketCounts", "Array(UInt64)"),
        *_exemplar_columns(),
        Column("Flags", "UInt32"),
        Column("Min", "Float64"),
        Column("Max", "Float64"),
        Column("AggregationTemporality", "Int32"),
    ),
)
OTEL_METRICS_SUMMARY = _metric_table(
    "otel_metrics_summary",
    (
        Column("Count", "UInt64", "Delta, ZSTD(1)"),
        Column("Sum", "Float64"),
        Column("ValueAtQuantiles", "Nested (Quantile Float64, Value Float64)"),
        Column("Flags", "UInt32"),
    ),
)

RAW_TABLES = (
    OTEL_LOGS,
    OTEL_TRACES,
    OTEL_TRACES_TRACE_ID_TS,
    OTEL_METRICS_GAUGE,
    OTEL_METRICS_SUM,
    OTEL_METRICS_HISTOGRAM,
    OTEL_METRICS_EXP_HISTOGRAM,
    OTEL_METRICS_SUMMARY,
)


def trace_id_ts_select(settings: SchemaSettings) -> str:
    """The query of ``otel_traces_trace_id_ts_mv``: each trace's time span, for trace lookup."""
    return _SQL("trace_id_ts", source=settings.local("otel_traces"))
