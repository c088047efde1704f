"""The ClickHouse schema of agentwatch, as versioned migrations, and read-only querying.

Three layers, documented column by column in docs/data-model.md:

* raw OpenTelemetry tables with the column set of the collector-contrib ``clickhouseexporter``
  (pinned: v0.150.0, the last release whose ``otel_logs`` has ``TimestampTime``), so Grafana's
  ClickHouse data source and existing queries work unchanged;
* agent tables, one row per agent event, plus sessions and hourly rollups kept current by
  materialized views;
* the public contract: plain views (``api_calls``, ``tool_calls``, ``sessions``, ...) whose
  names and columns stay stable across schema versions while the tables underneath change.

Every statement is rendered from ``SchemaSettings`` so that one definition serves a single
server and a cluster (``ON CLUSTER``, ``Replicated*`` local tables, ``Distributed`` on top).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from clickhouse_connect.driver.client import Client

from collector import agent_model as am

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MIGRATIONS_TABLE = "agentwatch_schema_migrations"
DEDUP_WINDOW = 10_000
"""Block hashes kept per table for insert_deduplication_token: a retry this many inserts late
into the same table is still recognised (one batch per second keeps hours of history)."""


def quote(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


# --- table definitions --------------------------------------------------------------------

MAP = "Map(LowCardinality(String), String)"
ZSTD = "ZSTD(1)"
TS_CODEC = "Delta(8), ZSTD(1)"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    codec: str = ZSTD
    expression: str = ""
    """``DEFAULT ...``/``MATERIALIZED ...`` for derived columns (they are not inserted)."""

    def ddl(self) -> str:
        parts = [quote(self.name), self.type]
        if self.expression:
            parts.append(self.expression)
        if self.codec:
            parts.append(f"CODEC({self.codec})")
        return " ".join(parts)


@dataclass(frozen=True)
class Table:
    """One physical table; ``ttl`` is a template with ``{days}``, applied when days > 0."""

    name: str
    columns: tuple[Column, ...]
    engine: str
    order_by: str
    partition_by: str = ""
    primary_key: str = ""
    indexes: tuple[str, ...] = ()
    ttl: str = ""
    sharding_key: str = "rand()"
    """Distributed sharding; deterministic in the row so a retried batch lands on the same
    shards in the same blocks and insert_deduplication_token still recognises it."""
    ttl_key: str = ""
    settings: tuple[str, ...] = ("index_granularity = 8192", "ttl_only_drop_parts = 1")

    @property
    def insert_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if not c.expression)

    @property
    def ttl_name(self) -> str:
        return self.ttl_key or self.name


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


# --- agent tables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentField:
    """An agent-table column filled from one ``agentwatch.*`` attribute.

    ``kind`` says how the attribute's text is parsed: str, uint, float (NULL when absent),
    bool (NULL when absent) or list (comma-separated).
    """

    column: str
    type: str
    key: str
    kind: str = "str"
    since: int = 0
    """The migration that added the column to an existing table (0: there from the start).
    Such columns come after the trailer and reprice columns, where ALTER ... ADD puts them."""


def _s(column: str, key: str, low_cardinality: bool = False) -> AgentField:
    return AgentField(column, "LowCardinality(String)" if low_cardinality else "String", key)


def _late(since: int, *fields: AgentField) -> tuple[AgentField, ...]:
    return tuple(replace(f, since=since) for f in fields)


def _u(column: str, key: str, bits: int = 64) -> AgentField:
    return AgentField(column, f"UInt{bits}", key, "uint")


def _f(column: str, key: str) -> AgentField:
    return AgentField(column, "Nullable(Float64)", key, "float")


VENDOR_BILLING_FIELDS = _late(
    7,
    _f("premium_requests", am.PREMIUM_REQUESTS),
    AgentField("nano_aiu", "Nullable(UInt64)", am.NANO_AIU, "nullable_uint"),
)
"""Added by migration 7: what a call counts against the agent vendor's own allowance (GitHub
Copilot's premium requests and AI credits in billionths); NULL when the agent reports none."""

COMMON_FIELDS = (
    _s("agent", am.AGENT, True),
    _s("agent_version", am.AGENT_VERSION, True),
    _s("session_id", am.SESSION_ID),
    _s("prompt_id", am.PROMPT_ID),
    _s("user_id", am.USER_ID),
    _s("user_email", am.USER_EMAIL),
    _s("user_account", am.USER_ACCOUNT),
    _s("organization", am.ORGANIZATION, True),
    _s("team", am.TEAM, True),
    _s("cost_center", am.COST_CENTER, True),
    _s("host", am.HOST, True),
    _s("terminal", am.TERMINAL, True),
)
"""Columns every agent table has, after the envelope columns below."""

ENVELOPE_COLUMNS = (
    Column("timestamp", "DateTime64(9)", "Delta, ZSTD(1)"),
    Column("event_id", "String"),
)
TRAILER_COLUMNS = (
    Column("service_name", "LowCardinality(String)"),
    Column("trace_id", "String"),
    Column("span_id", "String"),
    Column("record_kind", "LowCardinality(String)"),
)
"""Where the event came from: ``record_kind`` is ``log`` or ``span``; trace and span ids join
to otel_traces and otel_logs."""


REPRICE_COLUMNS = (
    Column("revision", "UInt32", ZSTD, "DEFAULT 0"),
    Column("previous_cost_usd", "Nullable(Float64)", ZSTD, "DEFAULT NULL"),
)
"""On tables whose cost ``agentwatch reprice`` corrects (see reprice.py). The exporter writes
revision 0; a correction is a newer row of the same event with ``revision + 1`` and the cost
it replaces in ``previous_cost_usd``, from which the views derive the change in sessions and
rollups. Not inserted by the exporter (they have defaults)."""


@dataclass(frozen=True)
class AgentTable:
    """One agent event type's table: envelope + common + specific fields + trailer.

    ``since`` is the migration that creates the table and ``repriced_since`` the one that gave
    it ``REPRICE_COLUMNS``, so an old migration renders the table as it was then.
    """

    event: am.EventType
    table: str
    fields: tuple[AgentField, ...]
    since: int = 2
    repriced_since: int | None = None

    @property
    def all_fields(self) -> tuple[AgentField, ...]:
        return COMMON_FIELDS + self.fields

    def late_fields(self, version: int | None = None) -> tuple[AgentField, ...]:
        """Fields later migrations added, up to ``version`` (default: all of them)."""
        return tuple(f for f in self.fields if f.since and (version is None or f.since <= version))

    def spec(self, version: int | None = None) -> Table:
        """The table as of schema ``version`` (default: the latest)."""
        columns = (
            ENVELOPE_COLUMNS
            + tuple(Column(f.column, f.type) for f in self.all_fields if not f.since)
            + TRAILER_COLUMNS
        )
        if self.repriced_since is not None and (version is None or version >= self.repriced_since):
            columns += REPRICE_COLUMNS
        columns += tuple(Column(f.column, f.type) for f in self.late_fields(version))
        return Table(
            name=self.table,
            columns=columns,
            engine="ReplacingMergeTree",
            partition_by="toYYYYMM(timestamp)",
            order_by="(toDate(timestamp), agent, session_id, timestamp, event_id)",
            indexes=(
                "INDEX idx_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 1",
                "INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1",
            ),
            ttl="toDateTime(timestamp) + toIntervalDay({days})",
            sharding_key="cityHash64(session_id)",
            ttl_key="agent_events",
        )


AGENT_TABLES: dict[am.EventType, AgentTable] = {
    t.event: t
    for t in (
        AgentTable(
            am.EventType.API_CALL,
            "agent_api_calls",
            (
                _s("request_id", am.REQUEST_ID),
                _s("provider", am.PROVIDER, True),
                _s("model", am.MODEL, True),
                _u("input_tokens", am.INPUT_TOKENS),
                _u("cache_read_tokens", am.CACHE_READ_TOKENS),
                _u("cache_write_tokens", am.CACHE_WRITE_TOKENS),
                _u("cache_write_5m_tokens", am.CACHE_WRITE_5M_TOKENS),
                _u("cache_write_1h_tokens", am.CACHE_WRITE_1H_TOKENS),
                _u("output_tokens", am.OUTPUT_TOKENS),
                _u("reasoning_tokens", am.REASONING_TOKENS),
                _f("cost_usd", am.COST_USD),
                _f("cost_usd_reported", am.COST_USD_REPORTED),
                _f("cost_usd_computed", am.COST_USD_COMPUTED),
                _f("duration_ms", am.DURATION_MS),
                _f("ttft_ms", am.TTFT_MS),
                _s("status", am.STATUS, True),
                _u("attempt", am.ATTEMPT, 32),
                *_late(
                    6,
                    _s("caller", am.CALLER, True),
                    _s("query_source", am.QUERY_SOURCE, True),
                    _s("subagent_id", am.SUBAGENT_ID),
                    _s("subagent_name", am.SUBAGENT_NAME, True),
                    _s("cost_source", am.COST_SOURCE, True),
                ),
                *VENDOR_BILLING_FIELDS,
            ),
            repriced_since=5,
        ),
        AgentTable(
            am.EventType.API_ERROR,
            "agent_api_errors",
            (
                _s("request_id", am.REQUEST_ID),
                _s("provider", am.PROVIDER, True),
                _s("model", am.MODEL, True),
                _s("status", am.STATUS, True),
                _s("error_message", am.ERROR_MESSAGE),
                _u("attempt", am.ATTEMPT, 32),
                _f("duration_ms", am.DURATION_MS),
            ),
        ),
        AgentTable(
            am.EventType.TOOL_CALL,
            "agent_tool_calls",
            (
                _s("tool_name", am.TOOL_NAME, True),
                _s("tool_call_id", am.TOOL_CALL_ID),
                _s("mcp_server", am.MCP_SERVER, True),
                _s("decision", am.DECISION, True),
                _s("decision_source", am.DECISION_SOURCE, True),
                _s("permission_mode", am.PERMISSION_MODE, True),
                AgentField("success", "Nullable(Bool)", am.SUCCESS, "bool"),
                _f("duration_ms", am.DURATION_MS),
                _s("arguments", am.TOOL_ARGUMENTS),
                _u("arguments_size", am.TOOL_ARGUMENTS_SIZE),
                _s("output", am.TOOL_OUTPUT),
                _u("output_size", am.TOOL_OUTPUT_SIZE),
                _s("command", am.COMMAND),
                _s("file_path", am.FILE_PATH),
                *_late(
                    6,
                    _s("phase", am.TOOL_PHASE, True),
                    _s("tool_source", am.TOOL_SOURCE, True),
                    _s("error", am.ERROR_MESSAGE),
                ),
            ),
        ),
        AgentTable(
            am.EventType.USER_PROMPT,
            "agent_user_prompts",
            (_u("prompt_length", am.PROMPT_LENGTH), _s("prompt_text", am.PROMPT_TEXT)),
        ),
        AgentTable(
            am.EventType.SESSION_START,
            "agent_session_starts",
            (
                _s("provider", am.PROVIDER, True),
                _s("model", am.MODEL, True),
                _s("approval_policy", am.APPROVAL_POLICY, True),
                _s("sandbox", am.SANDBOX, True),
                _s("permission_mode", am.PERMISSION_MODE, True),
                AgentField("mcp_servers", "Array(String)", am.MCP_SERVERS, "list"),
            ),
        ),
        AgentTable(
            am.EventType.CODE_CHANGE,
            "agent_code_changes",
            (
                _u("lines_added", am.LINES_ADDED),
                _u("lines_removed", am.LINES_REMOVED),
                _u("commits", am.COMMITS),
                _u("pull_requests", am.PULL_REQUESTS),
                _s("tool_name", am.TOOL_NAME, True),
                _s("file_path", am.FILE_PATH),
            ),
        ),
        AgentTable(
            am.EventType.DETECTION,
            "agent_detections",
            (
                _s("rule_id", am.RULE_ID, True),
                _s("severity", am.SEVERITY, True),
                _s("evidence", am.EVIDENCE),
                _s("tool_name", am.TOOL_NAME, True),
            ),
        ),
        AgentTable(
            am.EventType.API_USAGE,
            "agent_api_usage",
            (
                _s("provider", am.PROVIDER, True),
                _s("model", am.MODEL, True),
                _u("input_tokens", am.INPUT_TOKENS),
                _u("cache_read_tokens", am.CACHE_READ_TOKENS),
                _u("cache_write_tokens", am.CACHE_WRITE_TOKENS),
                _u("cache_write_5m_tokens", am.CACHE_WRITE_5M_TOKENS),
                _u("cache_write_1h_tokens", am.CACHE_WRITE_1H_TOKENS),
                _u("output_tokens", am.OUTPUT_TOKENS),
                _u("reasoning_tokens", am.REASONING_TOKENS),
                _f("cost_usd", am.COST_USD),
                _f("cost_usd_reported", am.COST_USD_REPORTED),
                _f("cost_usd_computed", am.COST_USD_COMPUTED),
                _s("derived_from", am.DERIVED_FROM, True),
                *_late(6, _s("cost_source", am.COST_SOURCE, True)),
            ),
            since=5,
            repriced_since=5,
        ),
    )
}
"""Every event type's table. ``api_usage`` rows (tokens of a session derived from metrics) are
counted in sessions and rollups only for sessions without ``api_call`` rows; see the
``sessions`` and ``usage_hourly`` views."""

AGENT_EVENT_IDS = Table(
    name="agent_event_ids",
    columns=(
        Column("event_id", "String"),
        Column("event", "LowCardinality(String)"),
        Column("timestamp", "DateTime64(9)", "Delta, ZSTD(1)"),
    ),
    engine="ReplacingMergeTree",
    partition_by="toYYYYMM(timestamp)",
    order_by="event_id",
    ttl="toDateTime(timestamp) + toIntervalDay({days})",
    sharding_key="cityHash64(event_id)",
    ttl_key="agent_events",
)
"""Every agent event id ever stored, for the exporter's pre-insert check (a primary-key
lookup) that keeps a re-sent event out of agent tables, sessions and rollups."""


def _saf(function: str, type_: str) -> str:
    return f"SimpleAggregateFunction({function}, {type_})"


SESSION_COUNTERS = (
    "api_calls",
    "api_errors",
    "tool_calls",
    "user_prompts",
    "detections",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "priced_api_calls",
    "lines_added",
    "lines_removed",
)
SESSION_LABELS = ("agent_version", "user_id", "user_email", "team", "organization")

AGENT_SESSIONS_V3 = Table(
    name="agent_sessions",
    columns=(
        Column("agent", "LowCardinality(String)"),
        Column("session_id", "String"),
        Column("month", "Date"),
        *(Column(name, _saf("max", "String")) for name in SESSION_LABELS),
        Column("first_seen", _saf("min", "DateTime64(9)")),
        Column("last_seen", _saf("max", "DateTime64(9)")),
        *(Column(name, _saf("sum", "UInt64")) for name in SESSION_COUNTERS),
        Column("cost_usd", _saf("sum", "Float64")),
    ),
    engine="AggregatingMergeTree",
    partition_by="month",
    order_by="(agent, session_id)",
    ttl="month + toIntervalDay({days})",
    sharding_key="cityHash64(session_id)",
)
"""One row per (agent, session, month) after merges; the ``sessions`` view finishes the
aggregation. Labels use max() so an event without e-mail never blanks one that had it."""

USAGE_TOKENS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
SESSION_COLUMNS_V5 = (
    Column("usage_records", _saf("sum", "UInt64")),
    *(Column(f"usage_{name}", _saf("sum", "UInt64")) for name in USAGE_TOKENS),
    Column("priced_usage_records", _saf("sum", "Int64")),
    Column("usage_cost_usd", _saf("sum", "Float64")),
    Column("priced_api_calls_repriced", _saf("sum", "Int64")),
)
"""Added by migration 5: the session's ``api_usage`` sums, kept apart from its ``api_call``
sums so the ``sessions`` view can use them only when the session has no api_call rows, and
the change reprice made to the number of priced api calls (signed, hence its own column)."""

SESSION_COLUMNS_V6 = (Column("tool_invocations", "AggregateFunction(uniqExact, String)", ""),)
"""Added by migration 6: the distinct tool invocations of a session (``INVOCATION_KEY``). A
decision and a result of one call are two events that may arrive in any order and batch; a
uniqExact state counts the call once whatever came, and merging states is idempotent."""

SESSION_COLUMNS_V7 = (
    Column("premium_requests", _saf("sum", "Float64")),
    Column("nano_aiu", _saf("sum", "UInt64")),
)
"""Added by migration 7: the session's sums of ``VENDOR_BILLING_FIELDS``."""

AGENT_SESSIONS = replace(
    AGENT_SESSIONS_V3,
    columns=AGENT_SESSIONS_V3.columns
    + SESSION_COLUMNS_V5
    + SESSION_COLUMNS_V6
    + SESSION_COLUMNS_V7,
)

USAGE_KEYS = ("hour", "agent", "team", "user_id", "user_email", "provider", "model")
USAGE_SUMS = (
    "api_calls",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "priced_api_calls",
    "reported_api_calls",
)

AGENT_USAGE_HOURLY_V3 = Table(
    name="agent_usage_hourly",
    columns=(
        Column("hour", "DateTime", "Delta, ZSTD(1)"),
        Column("agent", "LowCardinality(String)"),
        Column("team", "LowCardinality(String)"),
        Column("user_id", "String"),
        Column("user_email", "String"),
        Column("provider", "LowCardinality(String)"),
        Column("model", "LowCardinality(String)"),
        *(Column(name, "UInt64") for name in USAGE_SUMS),
        Column("cost_usd", "Float64"),
        Column("cost_usd_reported", "Float64"),
        Column("duration_ms", "Float64"),
    ),
    engine="SummingMergeTree",
    partition_by="toYYYYMM(hour)",
    order_by="(" + ", ".join(USAGE_KEYS) + ")",
    ttl="hour + toIntervalDay({days})",
    sharding_key="cityHash64(user_id, user_email)",
)
"""Hourly sums by agent/team/user/provider/model: a 30-day cost-by-user query reads at most
720 rows per user and model instead of every API call."""

USAGE_HOURLY_COLUMNS_V5 = (Column("priced_api_calls_repriced", "Int64"),)
AGENT_USAGE_HOURLY = replace(
    AGENT_USAGE_HOURLY_V3, columns=AGENT_USAGE_HOURLY_V3.columns + USAGE_HOURLY_COLUMNS_V5
)

API_USAGE_HOURLY_KEYS = (*USAGE_KEYS, "session_id")
AGENT_API_USAGE_HOURLY = Table(
    name="agent_api_usage_hourly",
    columns=(
        Column("hour", "DateTime", "Delta, ZSTD(1)"),
        Column("agent", "LowCardinality(String)"),
        Column("team", "LowCardinality(String)"),
        Column("user_id", "String"),
        Column("user_email", "String"),
        Column("provider", "LowCardinality(String)"),
        Column("model", "LowCardinality(String)"),
        Column("session_id", "String"),
        Column("usage_records", "UInt64"),
        *(Column(name, "UInt64") for name in USAGE_TOKENS),
        Column("priced_usage_records", "Int64"),
        Column("reported_usage_records", "UInt64"),
        Column("cost_usd", "Float64"),
        Column("cost_usd_reported", "Float64"),
    ),
    engine="SummingMergeTree",
    partition_by="toYYYYMM(hour)",
    order_by="(" + ", ".join(API_USAGE_HOURLY_KEYS) + ")",
    ttl="hour + toIntervalDay({days})",
    sharding_key="cityHash64(session_id)",
    ttl_key="agent_usage_hourly",
)
"""Hourly sums of ``api_usage`` rows, per session so that the ``usage_hourly`` view can leave
out the sessions whose tokens their ``api_call`` rows already count. Metric-derived records are
one per session, model and export interval, so this stays small."""

SOURCE_OTLP = "otlp"
"""``agent_call_sources.source`` of a call that arrived over OTLP; a record read from a session
file carries its own ``agentwatch.source`` (``session_files``)."""

AGENT_CALL_SOURCES = Table(
    name="agent_call_sources",
    columns=(
        Column("timestamp", "DateTime64(9)", TS_CODEC),
        Column("agent", "LowCardinality(String)"),
        Column("session_id", "String"),
        Column("source", "LowCardinality(String)"),
        Column("event_id", "String"),
        Column("user_id", "String"),
        Column("user_email", "String"),
        Column("request_id", "String"),
        Column("model", "LowCardinality(String)"),
        Column("input_tokens", "UInt64"),
        Column("cache_read_tokens", "UInt64"),
        Column("cache_write_tokens", "UInt64"),
        Column("output_tokens", "UInt64"),
        Column("cost_usd", "Nullable(Float64)"),
    ),
    engine="ReplacingMergeTree",
    partition_by="toYYYYMM(timestamp)",
    order_by="(agent, session_id, source, event_id)",
    ttl="toDateTime(timestamp) + toIntervalDay({days})",
    sharding_key="cityHash64(session_id)",
    ttl_key="agent_events",
)
"""One row per API call and source that delivered it, from every ``api_call`` log record the
raw table receives -- including the copies the agent tables leave out because their event id
is already stored. So the agent tables count a call once, and this table still knows which
sources saw it."""


ALL_TABLES: tuple[Table, ...] = (
    *RAW_TABLES,
    *(t.spec() for t in AGENT_TABLES.values()),
    AGENT_EVENT_IDS,
    AGENT_SESSIONS,
    AGENT_USAGE_HOURLY,
    AGENT_API_USAGE_HOURLY,
    AGENT_CALL_SOURCES,
)

TTL_KEYS = tuple(dict.fromkeys(t.ttl_name for t in ALL_TABLES))
DEFAULT_TTL_DAYS: dict[str, int] = {
    "otel_logs": 30,
    "otel_traces": 30,
    "otel_metrics_gauge": 30,
    "otel_metrics_sum": 30,
    "otel_metrics_histogram": 30,
    "otel_metrics_exponential_histogram": 30,
    "otel_metrics_summary": 30,
    "agent_events": 400,
    "agent_sessions": 400,
    "agent_usage_hourly": 800,
}
assert set(DEFAULT_TTL_DAYS) == set(TTL_KEYS), TTL_KEYS


# --- rendering ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaSettings:
    """What the DDL depends on: database, optional cluster and retention per table (0 = keep)."""

    database: str = "agentwatch"
    cluster: str = ""
    ttl_days: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_TTL_DAYS))
    dedup_window: int = DEDUP_WINDOW

    def __post_init__(self) -> None:
        if not IDENTIFIER.fullmatch(self.database):
            raise ValueError(f"invalid database name {self.database!r}")
        if self.cluster and not IDENTIFIER.fullmatch(self.cluster):
            raise ValueError(f"invalid cluster name {self.cluster!r}")
        unknown = set(self.ttl_days) - set(TTL_KEYS)
        if unknown:
            raise ValueError(f"unknown ttl_days keys {sorted(unknown)}; known: {list(TTL_KEYS)}")

    def days(self, table: Table) -> int:
        return int(self.ttl_days.get(table.ttl_name, DEFAULT_TTL_DAYS[table.ttl_name]))

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {quote(self.cluster)}" if self.cluster else ""

    def local_name(self, table: str) -> str:
        """Name of the table that stores the rows (``<t>_local`` on a cluster)."""
        return f"{table}_local" if self.cluster else table

    def local(self, table: str) -> str:
        return f"{quote(self.database)}.{quote(self.local_name(table))}"

    def qualified(self, table: str) -> str:
        """The name to insert into and query (the Distributed table on a cluster)."""
        return f"{quote(self.database)}.{quote(table)}"

    def engine(self, engine: str, table: str) -> str:
        if not self.cluster:
            return f"{engine}()"
        path = f"/clickhouse/tables/{{shard}}/{self.database}/{self.local_name(table)}"
        return f"Replicated{engine}('{path}', '{{replica}}')"

    def table_settings(self, table: Table) -> list[str]:
        dedup = (
            f"replicated_deduplication_window = {self.dedup_window}"
            if self.cluster
            else f"non_replicated_deduplication_window = {self.dedup_window}"
        )
        return [*table.settings, dedup]


def render_ttl(table: Table, settings: SchemaSettings) -> str:
    days = settings.days(table)
    return f"TTL {table.ttl.format(days=days)}" if table.ttl and days > 0 else ""


def render_table(table: Table, settings: SchemaSettings) -> list[str]:
    """CREATE statements for one table: itself, or its local table plus a Distributed one."""
    body = ",\n    ".join([*(c.ddl() for c in table.columns), *table.indexes])
    clauses = [f"ENGINE = {settings.engine(table.engine, table.name)}"]
    if table.partition_by:
        clauses.append(f"PARTITION BY {table.partition_by}")
    if table.primary_key:
        clauses.append(f"PRIMARY KEY {table.primary_key}")
    clauses.append(f"ORDER BY {table.order_by}")
    ttl = render_ttl(table, settings)
    if ttl:
        clauses.append(ttl)
    clauses.append("SETTINGS " + ", ".join(settings.table_settings(table)))
    statements = [
        f"CREATE TABLE IF NOT EXISTS {settings.local(table.name)}{settings.on_cluster} (\n"
        f"    {body}\n) " + "\n".join(clauses)
    ]
    if settings.cluster:
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {settings.qualified(table.name)}{settings.on_cluster} "
            f"AS {settings.local(table.name)} ENGINE = Distributed({quote(settings.cluster)}, "
            f"{quote(settings.database)}, {quote(settings.local_name(table.name))}, "
            f"{table.sharding_key})"
        )
    return statements


def render_mv(name: str, target: str, select: str, settings: SchemaSettings) -> str:
    """A materialized view on the local tables: each shard aggregates the rows it stores."""
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {settings.local(name)}{settings.on_cluster} "
        f"TO {settings.local(target)} AS {select}"
    )


def render_mv_query(name: str, select: str, settings: SchemaSettings) -> str:
    """A new query for an existing materialized view, swapped atomically."""
    return f"ALTER TABLE {settings.local(name)}{settings.on_cluster} MODIFY QUERY {select}"


def render_add_columns(
    table: str, columns: Sequence[Column], settings: SchemaSettings
) -> list[str]:
    """ALTERs appending ``columns`` (after every existing one, so an upgraded table has the
    layout a new one gets); on a cluster the Distributed table needs them too (no codecs)."""
    adds = ", ".join(f"ADD COLUMN IF NOT EXISTS {c.ddl()}" for c in columns)
    out = [f"ALTER TABLE {settings.local(table)}{settings.on_cluster} {adds}"]
    if settings.cluster:
        plain = ", ".join(f"ADD COLUMN IF NOT EXISTS {replace(c, codec='').ddl()}" for c in columns)
        out.append(f"ALTER TABLE {settings.qualified(table)}{settings.on_cluster} {plain}")
    return out


def render_view(name: str, select: str, settings: SchemaSettings) -> str:
    return f"CREATE OR REPLACE VIEW {settings.qualified(name)}{settings.on_cluster} AS {select}"


# --- materialized view queries --------------------------------------------------------------


def _trace_id_ts_select(s: SchemaSettings) -> str:
    return (
        "SELECT TraceId, min(Timestamp) AS Start, max(Timestamp) AS End "
        f"FROM {s.local('otel_traces')} WHERE TraceId != '' GROUP BY TraceId"
    )


def _event_ids_select(table: AgentTable, source: str) -> str:
    return f"SELECT event_id, '{table.event.value}' AS event, timestamp FROM {source}"


_SESSION_COUNTER_EXPRS: dict[str, dict[str, str]] = {
    "agent_api_calls": {
        "api_calls": "count()",
        "input_tokens": "sum(src.input_tokens)",
        "cache_read_tokens": "sum(src.cache_read_tokens)",
        "cache_write_tokens": "sum(src.cache_write_tokens)",
        "output_tokens": "sum(src.output_tokens)",
        "reasoning_tokens": "sum(src.reasoning_tokens)",
        "priced_api_calls": "countIf(src.cost_usd IS NOT NULL)",
        "cost_usd": "sum(ifNull(src.cost_usd, 0))",
    },
    "agent_api_errors": {"api_errors": "count()"},
    "agent_tool_calls": {"tool_calls": "count()"},
    "agent_user_prompts": {"user_prompts": "count()"},
    "agent_detections": {"detections": "count()"},
    "agent_code_changes": {
        "lines_added": "sum(src.lines_added)",
        "lines_removed": "sum(src.lines_removed)",
    },
    "agent_session_starts": {},
}
"""What each agent table adds to a session. Source columns are qualified (``src.x``) because
ClickHouse aliases are query-wide: ``sum(x) AS x`` next to ``countIf(x ...)`` would nest."""


def _session_select(source_table: str, source: str) -> str:
    exprs = _SESSION_COUNTER_EXPRS[source_table]
    columns = [
        "src.agent AS agent",
        "src.session_id AS session_id",
        "toStartOfMonth(src.timestamp) AS month",
    ]
    columns += [f"max(toString(src.{name})) AS {name}" for name in SESSION_LABELS]
    columns += ["min(src.timestamp) AS first_seen", "max(src.timestamp) AS last_seen"]
    columns += [f"toUInt64({exprs.get(name, '0')}) AS {name}" for name in SESSION_COUNTERS]
    columns.append(f"toFloat64({exprs.get('cost_usd', '0')}) AS cost_usd")
    return (
        f"SELECT {', '.join(columns)} FROM {source} AS src WHERE src.session_id != '' "
        "GROUP BY src.agent, src.session_id, month"
    )


def _usage_select(source: str) -> str:
    columns = ["toStartOfHour(src.timestamp) AS hour"]
    columns += [f"src.{key} AS {key}" for key in USAGE_KEYS[1:]]
    columns += [
        "count() AS api_calls",
        *(f"sum(src.{name}) AS {name}" for name in USAGE_SUMS[1:6]),
        "countIf(src.cost_usd IS NOT NULL) AS priced_api_calls",
        "countIf(src.cost_usd_reported IS NOT NULL) AS reported_api_calls",
        "sum(ifNull(src.cost_usd, 0)) AS cost_usd",
        "sum(ifNull(src.cost_usd_reported, 0)) AS cost_usd_reported",
        "sum(ifNull(src.duration_ms, 0)) AS duration_ms",
    ]
    group = ["hour", *(f"src.{key}" for key in USAGE_KEYS[1:])]
    return f"SELECT {', '.join(columns)} FROM {source} AS src GROUP BY {', '.join(group)}"


# Version 5 views are revision-aware (REPRICE_COLUMNS): a revision-0 row is an event as the
# exporter stored it and counts in full; a later revision is reprice's correction of that event
# and adds only the change of its cost and of whether it is priced. Sums of every revision of an
# event thus equal the figures of its latest one, and a correction needs no rebuild.
_FIRST = "src.revision = 0"
_COST_CHANGE = "sum(ifNull(src.cost_usd, 0)) - sum(ifNull(src.previous_cost_usd, 0))"
_PRICED_CHANGE = (
    "toInt64(countIf(src.cost_usd IS NOT NULL)) "
    "- toInt64(countIf(src.previous_cost_usd IS NOT NULL))"
)
_REPRICED_CHANGE = (
    "toInt64(countIf(src.revision > 0 AND src.cost_usd IS NOT NULL)) "
    "- toInt64(countIf(src.previous_cost_usd IS NOT NULL))"
)


def _session_head() -> list[str]:
    columns = [
        "src.agent AS agent",
        "src.session_id AS session_id",
        "toStartOfMonth(src.timestamp) AS month",
    ]
    columns += [f"max(toString(src.{name})) AS {name}" for name in SESSION_LABELS]
    return [*columns, "min(src.timestamp) AS first_seen", "max(src.timestamp) AS last_seen"]


def _session_tail(source: str) -> str:
    return (
        f"FROM {source} AS src WHERE src.session_id != '' GROUP BY src.agent, src.session_id, month"
    )


def _api_call_session_select_v5(source: str) -> str:
    exprs = {
        "api_calls": f"countIf({_FIRST})",
        **{name: f"sumIf(src.{name}, {_FIRST})" for name in USAGE_TOKENS},
        "priced_api_calls": f"countIf({_FIRST} AND src.cost_usd IS NOT NULL)",
    }
    columns = _session_head()
    columns += [f"toUInt64({exprs.get(name, '0')}) AS {name}" for name in SESSION_COUNTERS]
    columns += [
        f"toFloat64({_COST_CHANGE}) AS cost_usd",
        f"{_REPRICED_CHANGE} AS priced_api_calls_repriced",
    ]
    return f"SELECT {', '.join(columns)} {_session_tail(source)}"


def _api_call_session_select_v7(source: str) -> str:
    """Version 5's, plus the vendor's own billing measures (a repriced revision changes none)."""
    columns = [
        f"toFloat64(sumIf(ifNull(src.premium_requests, 0), {_FIRST})) AS premium_requests",
        f"toUInt64(sumIf(ifNull(src.nano_aiu, 0), {_FIRST})) AS nano_aiu",
    ]
    head, tail = _api_call_session_select_v5(source).split(" FROM ", 1)
    return f"{head}, {', '.join(columns)} FROM {tail}"


def _api_usage_session_select(source: str) -> str:
    columns = _session_head()
    columns.append(f"toUInt64(countIf({_FIRST})) AS usage_records")
    columns += [f"toUInt64(sumIf(src.{name}, {_FIRST})) AS usage_{name}" for name in USAGE_TOKENS]
    columns += [
        f"{_PRICED_CHANGE} AS priced_usage_records",
        f"toFloat64({_COST_CHANGE}) AS usage_cost_usd",
    ]
    return f"SELECT {', '.join(columns)} {_session_tail(source)}"


def _api_call_usage_select_v5(source: str) -> str:
    columns = ["toStartOfHour(src.timestamp) AS hour"]
    columns += [f"src.{key} AS {key}" for key in USAGE_KEYS[1:]]
    columns += [
        f"countIf({_FIRST}) AS api_calls",
        *(f"sumIf(src.{name}, {_FIRST}) AS {name}" for name in USAGE_TOKENS),
        f"countIf({_FIRST} AND src.cost_usd IS NOT NULL) AS priced_api_calls",
        f"countIf({_FIRST} AND src.cost_usd_reported IS NOT NULL) AS reported_api_calls",
        f"{_COST_CHANGE} AS cost_usd",
        f"sumIf(ifNull(src.cost_usd_reported, 0), {_FIRST}) AS cost_usd_reported",
        f"sumIf(ifNull(src.duration_ms, 0), {_FIRST}) AS duration_ms",
        f"{_REPRICED_CHANGE} AS priced_api_calls_repriced",
    ]
    group = ["hour", *(f"src.{key}" for key in USAGE_KEYS[1:])]
    return f"SELECT {', '.join(columns)} FROM {source} AS src GROUP BY {', '.join(group)}"


def _api_usage_hourly_select(source: str) -> str:
    columns = ["toStartOfHour(src.timestamp) AS hour"]
    columns += [f"src.{key} AS {key}" for key in API_USAGE_HOURLY_KEYS[1:]]
    columns += [
        f"countIf({_FIRST}) AS usage_records",
        *(f"sumIf(src.{name}, {_FIRST}) AS {name}" for name in USAGE_TOKENS),
        f"{_PRICED_CHANGE} AS priced_usage_records",
        f"countIf({_FIRST} AND src.cost_usd_reported IS NOT NULL) AS reported_usage_records",
        f"{_COST_CHANGE} AS cost_usd",
        f"sumIf(ifNull(src.cost_usd_reported, 0), {_FIRST}) AS cost_usd_reported",
    ]
    group = ["hour", *(f"src.{key}" for key in API_USAGE_HOURLY_KEYS[1:])]
    return f"SELECT {', '.join(columns)} FROM {source} AS src GROUP BY {', '.join(group)}"


# --- public contract views ------------------------------------------------------------------

_ENVELOPE = (
    "timestamp, event_id, agent, agent_version, session_id, prompt_id, user_id, "
    "user_email, team, organization"
)

_TOOL_EVENT_COLUMNS = (
    "timestamp, agent, session_id, user_id, tool_name, mcp_server, decision, decision_source, "
    "success, duration_ms, arguments, event_id, agent_version, prompt_id, user_email, team, "
    "tool_call_id, permission_mode, arguments_size, output, output_size, command, file_path, "
    "trace_id, span_id"
)
"""One tool event's columns: ``tool_calls`` of migration 4, now ``tool_events``."""

PUBLIC_VIEWS_V4: dict[str, str] = {
    "api_calls": (
        "SELECT timestamp, agent, agent_version, session_id, user_id, user_email, team, provider, "
        "model, request_id, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, "
        "reasoning_tokens, cost_usd, cost_usd_reported, duration_ms, status, event_id, "
        "prompt_id, organization, cost_center, cache_write_5m_tokens, cache_write_1h_tokens, "
        "cost_usd_computed, ttft_ms, attempt, trace_id, span_id FROM {agent_api_calls} FINAL"
    ),
    "tool_calls": f"SELECT {_TOOL_EVENT_COLUMNS} FROM {{agent_tool_calls}} FINAL",
    "detections": (
        "SELECT timestamp, rule_id, severity, agent, session_id, user_id, evidence, event_id, "
        "user_email, team, tool_name FROM {agent_detections} FINAL"
    ),
    "api_errors": (
        f"SELECT {_ENVELOPE}, request_id, provider, model, status, error_message, attempt, "
        "duration_ms FROM {agent_api_errors} FINAL"
    ),
    "user_prompts": (
        f"SELECT {_ENVELOPE}, prompt_length, prompt_text FROM {{agent_user_prompts}} FINAL"
    ),
    "session_starts": (
        f"SELECT {_ENVELOPE}, provider, model, approval_policy, sandbox, permission_mode, "
        "mcp_servers FROM {agent_session_starts} FINAL"
    ),
    "code_changes": (
        f"SELECT {_ENVELOPE}, lines_added, lines_removed, commits, pull_requests, tool_name, "
        "file_path FROM {agent_code_changes} FINAL"
    ),
    "sessions": (
        "SELECT t.session_id AS session_id, t.agent AS agent, "
        "max(t.agent_version) AS agent_version, max(t.user_id) AS user_id, "
        "max(t.user_email) AS user_email, max(t.team) AS team, "
        "min(t.first_seen) AS first_seen, max(t.last_seen) AS last_seen, "
        "sum(t.api_calls) AS api_calls, sum(t.tool_calls) AS tool_calls, "
        "sum(t.input_tokens) AS input_tokens, sum(t.cache_read_tokens) AS cache_read_tokens, "
        "sum(t.cache_write_tokens) AS cache_write_tokens, sum(t.output_tokens) AS output_tokens, "
        "if(sum(t.priced_api_calls) = 0 AND sum(t.api_calls) > 0, NULL, "
        "sum(t.cost_usd)) AS cost_usd, sum(t.reasoning_tokens) AS reasoning_tokens, "
        "sum(t.api_calls) - sum(t.priced_api_calls) AS unpriced_api_calls, "
        "sum(t.api_errors) AS api_errors, sum(t.user_prompts) AS user_prompts, "
        "sum(t.detections) AS detections, sum(t.lines_added) AS lines_added, "
        "sum(t.lines_removed) AS lines_removed, max(t.organization) AS organization "
        "FROM {agent_sessions} AS t GROUP BY t.agent, t.session_id"
    ),
    "usage_hourly": (
        "SELECT t.hour AS hour, t.agent AS agent, t.team AS team, t.user_id AS user_id, "
        "t.user_email AS user_email, t.provider AS provider, t.model AS model, "
        "sum(t.api_calls) AS api_calls, sum(t.input_tokens) AS input_tokens, "
        "sum(t.cache_read_tokens) AS cache_read_tokens, "
        "sum(t.cache_write_tokens) AS cache_write_tokens, "
        "sum(t.output_tokens) AS output_tokens, sum(t.reasoning_tokens) AS reasoning_tokens, "
        "if(sum(t.priced_api_calls) = 0 AND sum(t.api_calls) > 0, NULL, sum(t.cost_usd)) "
        "AS cost_usd, sum(t.api_calls) - sum(t.priced_api_calls) AS unpriced_api_calls, "
        "if(sum(t.reported_api_calls) = 0, NULL, sum(t.cost_usd_reported)) AS cost_usd_reported, "
        "sum(t.duration_ms) AS duration_ms_total FROM {agent_usage_hourly} AS t GROUP BY "
        + ", ".join(f"t.{key}" for key in USAGE_KEYS)
    ),
}
"""The public views as migration 4 created them."""

_CALLS = "sum(t.api_calls)"
_USAGE = "sum(t.usage_records)"
_PRICED_CALLS = "(sum(t.priced_api_calls) + sum(t.priced_api_calls_repriced))"
_PRICED_USAGE = "sum(t.priced_usage_records)"


def _session_tokens(name: str) -> str:
    return f"if({_CALLS} > 0, sum(t.{name}), sum(t.usage_{name})) AS {name}"


_SESSIONS_V5 = (
    "SELECT t.session_id AS session_id, t.agent AS agent, "
    "max(t.agent_version) AS agent_version, max(t.user_id) AS user_id, "
    "max(t.user_email) AS user_email, max(t.team) AS team, "
    "min(t.first_seen) AS first_seen, max(t.last_seen) AS last_seen, "
    f"{_CALLS} AS api_calls, sum(t.tool_calls) AS tool_calls, "
    + ", ".join(_session_tokens(name) for name in USAGE_TOKENS[:4])
    + f", multiIf({_CALLS} > 0, if({_PRICED_CALLS} = 0, NULL, sum(t.cost_usd)), "
    f"{_USAGE} > 0, if({_PRICED_USAGE} = 0, NULL, sum(t.usage_cost_usd)), sum(t.cost_usd)) "
    f"AS cost_usd, {_session_tokens('reasoning_tokens')}, "
    f"{_CALLS} - {_PRICED_CALLS} AS unpriced_api_calls, "
    "sum(t.api_errors) AS api_errors, sum(t.user_prompts) AS user_prompts, "
    "sum(t.detections) AS detections, sum(t.lines_added) AS lines_added, "
    "sum(t.lines_removed) AS lines_removed, max(t.organization) AS organization, "
    f"{_USAGE} AS usage_records, {_USAGE} - {_PRICED_USAGE} AS unpriced_usage_records, "
    f"multiIf({_CALLS} > 0, 'api_calls', {_USAGE} > 0, 'api_usage', '') AS tokens_from "
    "FROM {agent_sessions} AS t GROUP BY t.agent, t.session_id"
)
"""A session's tokens and cost come from its api_call rows when it has any, else from its
api_usage rows (metrics-only set-ups): decided here, at query time, so it does not matter
which signal arrived first."""

_HOURLY_PARTS = (
    ("api_calls", "h.api_calls", "toUInt64(0)"),
    *((name, f"h.{name}", f"a.{name}") for name in USAGE_TOKENS),
    ("priced_calls", "toInt64(h.priced_api_calls) + h.priced_api_calls_repriced", "toInt64(0)"),
    ("usage_records", "toUInt64(0)", "a.usage_records"),
    ("priced_usage", "toInt64(0)", "a.priced_usage_records"),
    ("reported", "h.reported_api_calls", "a.reported_usage_records"),
    ("cost_usd", "h.cost_usd", "a.cost_usd"),
    ("cost_usd_reported", "h.cost_usd_reported", "a.cost_usd_reported"),
    ("duration_ms", "h.duration_ms", "toFloat64(0)"),
)
_USAGE_HOURLY_V5 = (
    "SELECT "
    + ", ".join(f"u.{key} AS {key}" for key in USAGE_KEYS)
    + ", sum(u.api_calls) AS api_calls, "
    + ", ".join(f"sum(u.{name}) AS {name}" for name in USAGE_TOKENS)
    + ", if(sum(u.priced_calls) + sum(u.priced_usage) = 0 "
    "AND sum(u.api_calls) + sum(u.usage_records) > 0, NULL, sum(u.cost_usd)) AS cost_usd, "
    "sum(u.api_calls) - sum(u.priced_calls) AS unpriced_api_calls, "
    "if(sum(u.reported) = 0, NULL, sum(u.cost_usd_reported)) AS cost_usd_reported, "
    "sum(u.duration_ms) AS duration_ms_total, sum(u.usage_records) AS usage_records, "
    "sum(u.usage_records) - sum(u.priced_usage) AS unpriced_usage_records FROM ("
    "SELECT "
    + ", ".join(f"h.{key} AS {key}" for key in USAGE_KEYS)
    + ", "
    + ", ".join(f"{calls} AS {name}" for name, calls, _ in _HOURLY_PARTS)
    + " FROM {agent_usage_hourly} AS h UNION ALL SELECT "
    + ", ".join(f"a.{key} AS {key}" for key in USAGE_KEYS)
    + ", "
    + ", ".join(f"{usage} AS {name}" for name, _, usage in _HOURLY_PARTS)
    + " FROM {agent_api_usage_hourly} AS a WHERE (a.agent, a.session_id) GLOBAL NOT IN ("
    "SELECT s.agent, s.session_id FROM {agent_sessions} AS s GROUP BY s.agent, s.session_id "
    "HAVING sum(s.api_calls) > 0)) AS u GROUP BY " + ", ".join(f"u.{key}" for key in USAGE_KEYS)
)
"""api_call rollups plus the api_usage rollups of sessions that have no api_call rows, the
same rule as ``sessions``. GLOBAL: on a cluster the session list is gathered once."""

PUBLIC_VIEWS_V5: dict[str, str] = {
    **PUBLIC_VIEWS_V4,
    "api_calls": PUBLIC_VIEWS_V4["api_calls"].replace(
        "span_id FROM {agent_api_calls}", "span_id, revision FROM {agent_api_calls}"
    ),
    "sessions": _SESSIONS_V5,
    "usage_hourly": _USAGE_HOURLY_V5,
    "api_usage": (
        "SELECT timestamp, agent, agent_version, session_id, user_id, user_email, team, "
        "provider, model, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, "
        "reasoning_tokens, cost_usd, cost_usd_reported, cost_usd_computed, event_id, prompt_id, "
        "organization, cost_center, cache_write_5m_tokens, cache_write_1h_tokens, derived_from, "
        "revision FROM {agent_api_usage} FINAL"
    ),
}
"""The public views as migration 5 left them."""
assert "revision FROM {agent_api_calls}" in PUBLIC_VIEWS_V5["api_calls"]

INVOCATION_KEY = "if({t}tool_call_id != '', {t}tool_call_id, {t}event_id)"
"""One tool invocation: the vendor's call id, which its decision and result events share; an
event without one (Gemini CLI logs a single event per call) is an invocation of its own."""


def _merged(column: str) -> str:
    """A text column of one invocation: the value of whichever event has one."""
    return f"anyIf(t.{column}, t.{column} != '') AS {column}"


_TOOL_CALLS_V6 = (
    "SELECT min(t.timestamp) AS timestamp, t.agent AS agent, t.session_id AS session_id, "
    + ", ".join(_merged(c) for c in ("user_id", "tool_name", "mcp_server", "decision"))
    + ", "
    + _merged("decision_source")
    + ", any(t.success) AS success, any(t.duration_ms) AS duration_ms, "
    + _merged("arguments")
    + ", min(t.event_id) AS event_id, "
    + ", ".join(
        _merged(c) for c in ("agent_version", "prompt_id", "user_email", "team", "tool_call_id")
    )
    + ", "
    + _merged("permission_mode")
    + ", max(t.arguments_size) AS arguments_size, "
    + _merged("output")
    + ", max(t.output_size) AS output_size, "
    + ", ".join(_merged(c) for c in ("command", "file_path", "trace_id", "span_id"))
    + ", count() AS events, max(t.timestamp) AS last_seen, "
    + ", ".join(_merged(c) for c in ("tool_source", "error"))
    + " FROM {agent_tool_calls} AS t FINAL GROUP BY t.agent, t.session_id, "
    + INVOCATION_KEY.format(t="t.")
)
"""One row per tool invocation: its decision event and its result event merged, whichever
arrived (a decision alone is a call refused or still pending; a result alone one whose decision
was not logged). ``success`` is NULL when there is no result. ``event_id`` is the smallest of
its events' ids; ``events`` says how many were merged; the events themselves are in
``tool_events``."""

PUBLIC_VIEWS_V6: dict[str, str] = {
    **PUBLIC_VIEWS_V5,
    "api_calls": PUBLIC_VIEWS_V5["api_calls"].replace(
        "revision FROM {agent_api_calls}",
        "revision, caller, query_source, subagent_id, subagent_name, cost_source "
        "FROM {agent_api_calls}",
    ),
    "api_usage": PUBLIC_VIEWS_V5["api_usage"].replace(
        "revision FROM {agent_api_usage}", "revision, cost_source FROM {agent_api_usage}"
    ),
    "tool_calls": _TOOL_CALLS_V6,
    "tool_events": (
        f"SELECT {_TOOL_EVENT_COLUMNS}, phase, tool_source, error FROM {{agent_tool_calls}} FINAL"
    ),
    "sessions": _SESSIONS_V5.replace(
        "sum(t.tool_calls) AS tool_calls", "uniqExactMerge(t.tool_invocations) AS tool_calls"
    ).replace(
        " FROM {agent_sessions} AS t",
        ", sum(t.tool_calls) AS tool_events FROM {agent_sessions} AS t",
    ),
}
"""The public views as migration 6 left them."""
assert "uniqExactMerge" in PUBLIC_VIEWS_V6["sessions"]
assert "tool_events FROM" in PUBLIC_VIEWS_V6["sessions"]

PUBLIC_VIEWS_V7: dict[str, str] = {
    **PUBLIC_VIEWS_V6,
    "api_calls": PUBLIC_VIEWS_V6["api_calls"].replace(
        "cost_source FROM {agent_api_calls}",
        "cost_source, premium_requests, nano_aiu FROM {agent_api_calls}",
    ),
    "sessions": PUBLIC_VIEWS_V6["sessions"].replace(
        " FROM {agent_sessions} AS t GROUP BY",
        ", sum(t.premium_requests) AS premium_requests, sum(t.nano_aiu) AS nano_aiu"
        " FROM {agent_sessions} AS t GROUP BY",
    ),
}
"""The public views as migration 7 left them."""
assert "nano_aiu FROM {agent_api_calls}" in PUBLIC_VIEWS_V7["api_calls"]
assert "nano_aiu FROM {agent_sessions}" in PUBLIC_VIEWS_V7["sessions"]

PUBLIC_VIEWS: dict[str, str] = PUBLIC_VIEWS_V7
"""The public contract (docs/data-model.md): names and leading columns never change; new
columns are only appended. Agent views read FINAL so the ReplacingMergeTree backstop hides any
duplicate that slipped past the exporter's check, and show the latest revision of a repriced
row. A migration renders its own version's dict, so a later one (``PUBLIC_VIEWS_V8 =
{**PUBLIC_VIEWS_V7, ...}``) changes no earlier migration."""


def render_public_view(
    name: str, settings: SchemaSettings, views: Mapping[str, str] = PUBLIC_VIEWS
) -> str:
    names = {t.table: settings.qualified(t.table) for t in AGENT_TABLES.values()}
    for table in ("agent_sessions", "agent_usage_hourly", "agent_api_usage_hourly"):
        names[table] = settings.qualified(table)
    return render_view(name, views[name].format(**names), settings)


# --- migrations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    sql: str
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    render: Callable[[SchemaSettings], list[Statement]]


def _m1_raw(s: SchemaSettings) -> list[Statement]:
    out = [Statement(sql) for table in RAW_TABLES for sql in render_table(table, s)]
    out.append(
        Statement(
            render_mv(
                "otel_traces_trace_id_ts_mv", "otel_traces_trace_id_ts", _trace_id_ts_select(s), s
            )
        )
    )
    return out


def _agent_tables_since(version: int) -> list[AgentTable]:
    return [t for t in AGENT_TABLES.values() if t.since == version]


def _agent_table_statements(table: AgentTable, version: int, s: SchemaSettings) -> list[Statement]:
    out = [Statement(sql) for sql in render_table(table.spec(version), s)]
    out.append(
        Statement(
            render_mv(
                f"{table.table}_event_ids_mv",
                "agent_event_ids",
                _event_ids_select(table, s.local(table.table)),
                s,
            )
        )
    )
    return out


def _m2_agent_events(s: SchemaSettings) -> list[Statement]:
    out = [Statement(sql) for sql in render_table(AGENT_EVENT_IDS, s)]
    for table in _agent_tables_since(2):
        out += _agent_table_statements(table, 2, s)
    return out


def _backfill(target: str, select: str, s: SchemaSettings, token: str) -> Statement:
    """INSERT ... SELECT of rows stored before a view existed; the token makes a re-run of an
    interrupted migration harmless."""
    return Statement(
        f"INSERT INTO {s.qualified(target)} {select}",
        {"insert_deduplication_token": token, **insert_settings(s)},
    )


def _m3_sessions_rollups(s: SchemaSettings) -> list[Statement]:
    out = [
        Statement(sql)
        for t in (AGENT_SESSIONS_V3, AGENT_USAGE_HOURLY_V3)
        for sql in render_table(t, s)
    ]
    tables = _agent_tables_since(2)
    for table in tables:
        select = _session_select(table.table, s.qualified(table.table))
        out.append(_backfill("agent_sessions", select, s, f"migration-3:sessions:{table.table}"))
    usage = _usage_select(s.qualified("agent_api_calls"))
    out.append(_backfill("agent_usage_hourly", usage, s, "migration-3:usage_hourly"))
    for table in tables:
        out.append(
            Statement(
                render_mv(
                    f"{table.table}_sessions_mv",
                    "agent_sessions",
                    _session_select(table.table, s.local(table.table)),
                    s,
                )
            )
        )
    out.append(
        Statement(
            render_mv(
                "agent_api_calls_usage_hourly_mv",
                "agent_usage_hourly",
                _usage_select(s.local("agent_api_calls")),
                s,
            )
        )
    )
    return out


def _m4_public_views(s: SchemaSettings) -> list[Statement]:
    return [Statement(render_public_view(name, s, PUBLIC_VIEWS_V4)) for name in PUBLIC_VIEWS_V4]


def _m5_api_usage_and_reprice(s: SchemaSettings) -> list[Statement]:
    """The api_usage table and its rollups; revision columns for reprice, and the api_call
    views made revision-aware. No backfill: api_usage rows were not stored before."""
    out: list[Statement] = []
    for table in _agent_tables_since(5):
        out += _agent_table_statements(table, 5, s)
    out += [Statement(sql) for sql in render_table(AGENT_API_USAGE_HOURLY, s)]
    out += [Statement(sql) for sql in render_add_columns("agent_api_calls", REPRICE_COLUMNS, s)]
    out += [Statement(sql) for sql in render_add_columns("agent_sessions", SESSION_COLUMNS_V5, s)]
    out += [
        Statement(sql)
        for sql in render_add_columns("agent_usage_hourly", USAGE_HOURLY_COLUMNS_V5, s)
    ]
    calls = s.local("agent_api_calls")
    out.append(
        Statement(
            render_mv_query("agent_api_calls_sessions_mv", _api_call_session_select_v5(calls), s)
        )
    )
    out.append(
        Statement(
            render_mv_query("agent_api_calls_usage_hourly_mv", _api_call_usage_select_v5(calls), s)
        )
    )
    usage = s.local("agent_api_usage")
    out.append(
        Statement(
            render_mv(
                "agent_api_usage_sessions_mv",
                "agent_sessions",
                _api_usage_session_select(usage),
                s,
            )
        )
    )
    out.append(
        Statement(
            render_mv(
                "agent_api_usage_usage_hourly_mv",
                "agent_api_usage_hourly",
                _api_usage_hourly_select(usage),
                s,
            )
        )
    )
    out += [Statement(render_public_view(name, s, PUBLIC_VIEWS_V5)) for name in PUBLIC_VIEWS_V5]
    return out


def _tool_call_session_select_v6(source: str) -> str:
    key = INVOCATION_KEY.format(t="src.")
    return _session_select("agent_tool_calls", source).replace(
        " FROM ", f", uniqExactState({key}) AS tool_invocations FROM ", 1
    )


def _m6_tool_invocations(s: SchemaSettings) -> list[Statement]:
    """One tool_calls row per invocation (decision and result merged), per-event detail in
    tool_events, sessions counting invocations; caller and cost_source columns. The backfill
    of invocations is a uniqExact state, so rows that the changed view also counts while it
    runs are not counted twice."""
    out: list[Statement] = []
    for table in AGENT_TABLES.values():
        added = [Column(f.column, f.type) for f in table.late_fields(6) if f.since == 6]
        if added:
            out += [Statement(sql) for sql in render_add_columns(table.table, added, s)]
    out += [Statement(sql) for sql in render_add_columns("agent_sessions", SESSION_COLUMNS_V6, s)]
    out.append(
        Statement(
            render_mv_query(
                "agent_tool_calls_sessions_mv",
                _tool_call_session_select_v6(s.local("agent_tool_calls")),
                s,
            )
        )
    )
    key = INVOCATION_KEY.format(t="src.")
    backfill = (
        "SELECT src.agent AS agent, src.session_id AS session_id, "
        "toStartOfMonth(src.timestamp) AS month, min(src.timestamp) AS first_seen, "
        f"max(src.timestamp) AS last_seen, uniqExactState({key}) AS tool_invocations "
        f"FROM {s.qualified('agent_tool_calls')} AS src WHERE src.session_id != '' "
        "GROUP BY src.agent, src.session_id, month"
    )
    out.append(
        Statement(
            f"INSERT INTO {s.qualified('agent_sessions')} "
            "(agent, session_id, month, first_seen, last_seen, tool_invocations) " + backfill,
            {"insert_deduplication_token": "migration-6:tool_invocations", **insert_settings(s)},
        )
    )
    out += [Statement(render_public_view(name, s, PUBLIC_VIEWS_V6)) for name in PUBLIC_VIEWS_V6]
    return out


def _m7_vendor_billing(s: SchemaSettings) -> list[Statement]:
    """Premium requests and AI credits (GitHub Copilot) on api calls and sessions. No
    backfill: older Copilot rows carried the premium-request multiplier as cost_usd_reported,
    which the raw otel_traces rows still hold as ``github.copilot.cost``."""
    calls = AGENT_TABLES[am.EventType.API_CALL]
    added = [Column(f.column, f.type) for f in calls.late_fields(7) if f.since == 7]
    out = [Statement(sql) for sql in render_add_columns(calls.table, added, s)]
    out += [Statement(sql) for sql in render_add_columns("agent_sessions", SESSION_COLUMNS_V7, s)]
    out.append(
        Statement(
            render_mv_query(
                "agent_api_calls_sessions_mv",
                _api_call_session_select_v7(s.local(calls.table)),
                s,
            )
        )
    )
    out += [
        Statement(render_public_view(name, s, PUBLIC_VIEWS_V7))
        for name in ("api_calls", "sessions")
    ]
    return out


# --- migration 8: API calls per source, and their reconciliation -----------------------------


def _attr(key: str) -> str:
    """A record attribute, or the resource attribute of that name when the record has none."""
    return (
        f"if(mapContains(LogAttributes, '{key}'), LogAttributes['{key}'], "
        f"ResourceAttributes['{key}'])"
    )


def _call_sources_select(source: str) -> str:
    tokens = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
    columns = [
        "Timestamp AS timestamp",
        f"{_attr('agentwatch.agent')} AS agent",
        f"{_attr('agentwatch.session_id')} AS session_id",
        f"if(LogAttributes['agentwatch.source'] = '', '{SOURCE_OTLP}', "
        "LogAttributes['agentwatch.source']) AS source",
        "LogAttributes['agentwatch.event_id'] AS event_id",
        f"{_attr('agentwatch.user_id')} AS user_id",
        f"{_attr('agentwatch.user_email')} AS user_email",
        "LogAttributes['agentwatch.request_id'] AS request_id",
        "LogAttributes['agentwatch.model'] AS model",
        *(f"toUInt64OrZero(LogAttributes['agentwatch.{t}']) AS {t}" for t in tokens),
        "toFloat64OrNull(LogAttributes['agentwatch.cost_usd']) AS cost_usd",
    ]
    return (
        f"SELECT {', '.join(columns)} FROM {source} "
        "WHERE LogAttributes['agentwatch.event'] = 'api_call' "
        "AND LogAttributes['agentwatch.event_id'] != ''"
    )


_TOKENS_SUM = "input_tokens + cache_read_tokens + cache_write_tokens + output_tokens"

RECONCILIATION_VIEWS: dict[str, str] = {
    "call_reconciliation": (
        "SELECT agent, session_id, max(user_id) AS user_id, max(user_email) AS user_email, "
        "min(first_seen) AS first_seen, max(last_seen) AS last_seen, "
        "count() AS api_calls, countIf(in_otlp) AS otlp_calls, countIf(in_files) AS file_calls, "
        "countIf(in_otlp AND in_files) AS both_calls, "
        "countIf(in_otlp AND NOT in_files) AS otlp_only_calls, "
        "countIf(in_files AND NOT in_otlp) AS file_only_calls, "
        "sum(otlp_tokens) AS otlp_tokens, sum(file_tokens) AS file_tokens, "
        "if(countIf(in_files) = 0, NULL, "
        "round(100 * countIf(in_otlp AND in_files) / countIf(in_files), 2)) AS coverage_pct "
        "FROM (SELECT c.agent AS agent, c.session_id AS session_id, c.event_id AS event_id, "
        "max(c.user_id) AS user_id, max(c.user_email) AS user_email, "
        "min(c.timestamp) AS first_seen, max(c.timestamp) AS last_seen, "
        f"max(c.source = '{SOURCE_OTLP}') AS in_otlp, "
        f"max(c.source != '{SOURCE_OTLP}') AS in_files, "
        f"maxIf({_TOKENS_SUM}, c.source = '{SOURCE_OTLP}') AS otlp_tokens, "
        f"maxIf({_TOKENS_SUM}, c.source != '{SOURCE_OTLP}') AS file_tokens "
        "FROM {agent_call_sources} AS c FINAL GROUP BY c.agent, c.session_id, c.event_id) "
        "GROUP BY agent, session_id"
    ),
}
"""Per session: API calls seen by OTLP, by session files, by both, and OTLP's coverage of the
calls the files show. A call is the same in both sources when both name it with the same event
id (the importer gives a file record the request id, or the time and prompt, of its OTLP twin).
"""


def _m8_call_sources(s: SchemaSettings) -> list[Statement]:
    """API calls per source (filled from the raw logs, back-filled from what they still hold)
    and the ``call_reconciliation`` view."""
    out = [Statement(sql) for sql in render_table(AGENT_CALL_SOURCES, s)]
    out.append(
        _backfill(
            "agent_call_sources",
            _call_sources_select(s.qualified("otel_logs")),
            s,
            "migration-8:call_sources",
        )
    )
    out.append(
        Statement(
            render_mv(
                "otel_logs_call_sources_mv",
                "agent_call_sources",
                _call_sources_select(s.local("otel_logs")),
                s,
            )
        )
    )
    names = {"agent_call_sources": s.qualified("agent_call_sources")}
    out += [
        Statement(render_view(name, select.format(**names), s))
        for name, select in RECONCILIATION_VIEWS.items()
    ]
    return out


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "otel_raw_tables", _m1_raw),
    Migration(2, "agent_event_tables", _m2_agent_events),
    Migration(3, "agent_sessions_and_hourly_rollups", _m3_sessions_rollups),
    Migration(4, "public_contract_views", _m4_public_views),
    Migration(5, "api_usage_and_reprice", _m5_api_usage_and_reprice),
    Migration(6, "tool_invocations_and_callers", _m6_tool_invocations),
    Migration(7, "vendor_billing_measures", _m7_vendor_billing),
    Migration(8, "call_sources_and_reconciliation", _m8_call_sources),
)
LATEST_VERSION = MIGRATIONS[-1].version


def insert_settings(s: SchemaSettings) -> dict[str, Any]:
    """Settings every insert needs so retries and views deduplicate (see exporter)."""
    out: dict[str, Any] = {
        "async_insert": 0,
        "insert_deduplicate": 1,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
    }
    if s.cluster:
        out["distributed_foreground_insert"] = 1
    return out


def _migrations_table(s: SchemaSettings) -> list[str]:
    if s.cluster:
        engine = (
            "ReplicatedReplacingMergeTree("
            f"'/clickhouse/tables/{s.database}/{MIGRATIONS_TABLE}', '{{replica}}')"
        )
    else:
        engine = "ReplacingMergeTree()"
    return [
        f"CREATE DATABASE IF NOT EXISTS {quote(s.database)}{s.on_cluster}",
        f"CREATE TABLE IF NOT EXISTS {s.qualified(MIGRATIONS_TABLE)}{s.on_cluster} "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC')) "
        f"ENGINE = {engine} ORDER BY version",
    ]


def render_migrations(settings: SchemaSettings, upto: int | None = None) -> list[str]:
    """Every statement ``migrate`` would run on an empty database, for review and tests."""
    out = _migrations_table(settings)
    for migration in MIGRATIONS:
        if upto is not None and migration.version > upto:
            break
        out += [st.sql for st in migration.render(settings)]
    return out


def applied_versions(client: Client, settings: SchemaSettings) -> dict[int, Any]:
    exists = client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": settings.database, "t": MIGRATIONS_TABLE},
    ).result_rows[0][0]
    if not exists:
        return {}
    rows = client.query(
        f"SELECT version, min(applied_at) FROM {settings.qualified(MIGRATIONS_TABLE)} "
        "GROUP BY version"
    ).result_rows
    return {int(version): applied_at for version, applied_at in rows}


def migrate(
    client: Client, settings: SchemaSettings, target: int | None = None
) -> list[tuple[int, str]]:
    """Apply pending migrations in order (up to ``target``); returns those applied.

    Statements are idempotent (IF NOT EXISTS, OR REPLACE, token-deduplicated backfills), so a
    migration interrupted half-way is simply run again. Also brings table TTLs in line with
    ``settings.ttl_days``.
    """
    for sql in _migrations_table(settings):
        client.command(sql)
    done = applied_versions(client, settings)
    applied: list[tuple[int, str]] = []
    for migration in MIGRATIONS:
        if target is not None and migration.version > target:
            break
        if migration.version in done:
            continue
        for statement in migration.render(settings):
            client.command(statement.sql, settings=dict(statement.settings) or None)
        client.command(
            f"INSERT INTO {settings.qualified(MIGRATIONS_TABLE)} (version, name, applied_at) "
            f"VALUES ({migration.version}, '{migration.name}', now64(3))",
            settings=insert_settings(settings),
        )
        applied.append((migration.version, migration.name))
    sync_ttls(client, settings, upto=target)
    return applied


def status(client: Client, settings: SchemaSettings) -> list[tuple[int, str, Any]]:
    """Every known migration with its applied_at time, or None when pending."""
    done = applied_versions(client, settings)
    return [(m.version, m.name, done.get(m.version)) for m in MIGRATIONS]


_TTL_DAYS = re.compile(r"\bTTL\b.*?toIntervalDay\((\d+)\)")


def _tables_upto(upto: int | None) -> list[Table]:
    created = {
        1: RAW_TABLES,
        2: (AGENT_EVENT_IDS, *(t.spec() for t in _agent_tables_since(2))),
        3: (AGENT_SESSIONS, AGENT_USAGE_HOURLY),
        5: (*(t.spec() for t in _agent_tables_since(5)), AGENT_API_USAGE_HOURLY),
        8: (AGENT_CALL_SOURCES,),
    }
    return [
        t for version, tables in created.items() if upto is None or version <= upto for t in tables
    ]


def sync_ttls(client: Client, settings: SchemaSettings, upto: int | None = None) -> list[str]:
    """ALTER the TTL of tables whose configured retention changed since they were created."""
    rows = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String}",
        parameters={"db": settings.database},
    ).result_rows
    engine_full = {name: text for name, text in rows}
    changed = []
    for table in _tables_upto(upto):
        text = engine_full.get(settings.local_name(table.name))
        if text is None or not table.ttl:
            continue
        match = _TTL_DAYS.search(text)
        current = int(match.group(1)) if match else 0
        wanted = settings.days(table)
        if current == wanted:
            continue
        target = settings.local(table.name) + settings.on_cluster
        if wanted > 0:
            sql = f"ALTER TABLE {target} MODIFY {render_ttl(table, settings)}"
        else:
            sql = f"ALTER TABLE {target} REMOVE TTL"
        client.command(sql, settings={"materialize_ttl_after_modify": 0})
        changed.append(table.name)
    return changed


# --- data lifecycle: export and delete (agentwatch export | delete) -------------------------

EXPORT_VIEWS: dict[str, tuple[str, str]] = {
    "api_calls": ("timestamp", "user_email"),
    "tool_calls": ("timestamp", "user_email"),
    "sessions": ("last_seen", "user_email"),
    "detections": ("timestamp", "user_email"),
    "api_errors": ("timestamp", "user_email"),
    "user_prompts": ("timestamp", "user_email"),
    "session_starts": ("timestamp", "user_email"),
    "code_changes": ("timestamp", "user_email"),
    "usage_hourly": ("hour", "user_email"),
    "api_usage": ("timestamp", "user_email"),
    "call_reconciliation": ("last_seen", "user_email"),
}
"""Public view -> (its time column, its e-mail column), for ``agentwatch export``."""

_RANGE = "{time} >= {{start:DateTime64(9)}} AND {time} < {{end:DateTime64(9)}}"
_AGENT = " AND ({{agent:String}} = '' OR {agent} = {{agent:String}})"
_USER = " AND ({{user:String}} = '' OR {user_id} = {{user:String}} OR {email} = {{user:String}})"


def lifecycle_filter(time: str, agent: str, user_id: str, email: str) -> str:
    """Rows in [start, end) of one agent (or all, '') and one user id or e-mail (or all)."""
    return (_RANGE + _AGENT + _USER).format(time=time, agent=agent, user_id=user_id, email=email)


def export_query(view: str, database: str) -> str:
    time, email = EXPORT_VIEWS[view]
    where = lifecycle_filter(time, "agent", "user_id", email)
    return f"SELECT * FROM {quote(database)}.{quote(view)} WHERE {where} FORMAT Parquet"


def _raw_attr(maps: tuple[str, ...], keys: tuple[str, ...]) -> list[str]:
    return [f"{m}[{k!r}]" for k in keys for m in maps]


_RAW_USER_KEYS = (
    "agentwatch.user_id",
    "agentwatch.user_email",
    "user.id",
    "user.email",
    "user.account_id",
    "installation.id",
)
RAW_DELETE: dict[str, tuple[str, tuple[str, ...]]] = {
    "otel_logs": ("TimestampTime", ("LogAttributes", "ResourceAttributes")),
    "otel_traces": ("Timestamp", ("SpanAttributes", "ResourceAttributes")),
    **{
        t.name: ("TimeUnix", ("Attributes", "ResourceAttributes"))
        for t in RAW_TABLES
        if t.name.startswith("otel_metrics_")
    },
}
"""Raw table -> (time column, attribute maps naming the agent and the user)."""


def _raw_filter(time: str, maps: tuple[str, ...]) -> str:
    agent = ", ".join(_raw_attr(maps, ("agentwatch.agent",)))
    users = " OR ".join(f"{a} = {{user:String}}" for a in _raw_attr(maps, _RAW_USER_KEYS))
    return (
        f"{time} >= {{start:DateTime64(9)}} AND {time} < {{end:DateTime64(9)}}"
        f" AND ({{agent:String}} = '' OR {{agent:String}} IN ({agent}))"
        f" AND ({{user:String}} = '' OR {users})"
    )


def _agent_filter() -> str:
    return lifecycle_filter("timestamp", "agent", "user_id", "user_email")


def delete_plan(s: SchemaSettings) -> list[tuple[str, str, str]]:
    """(table, COUNT query, ALTER ... DELETE statement) in the order they must run: event ids
    before the agent rows they are found by, sessions (rebuilt afterwards) last."""
    agent_where = _agent_filter()
    out: list[tuple[str, str, str]] = []

    def add(table: str, where: str) -> None:
        out.append(
            (
                table,
                f"SELECT count() FROM {s.qualified(table)} WHERE {where}",
                f"ALTER TABLE {s.local(table)}{s.on_cluster} DELETE WHERE {where}",
            )
        )

    ids = " UNION ALL ".join(
        f"SELECT event_id FROM {s.qualified(t.table)} WHERE {agent_where}"
        for t in AGENT_TABLES.values()
    )
    add("agent_event_ids", f"event_id IN ({ids})")
    for agent_table in AGENT_TABLES.values():
        add(agent_table.table, agent_where)
    add("agent_call_sources", agent_where)
    hourly = lifecycle_filter("hour", "agent", "user_id", "user_email")
    add("agent_usage_hourly", hourly)
    add("agent_api_usage_hourly", hourly)
    for raw, (time, maps) in RAW_DELETE.items():
        add(raw, _raw_filter(time, maps))
    add("agent_sessions", "(agent, session_id) IN {sessions:Array(Tuple(String, String))}")
    return out


def affected_sessions_query(s: SchemaSettings) -> str:
    where = _agent_filter()
    parts = " UNION DISTINCT ".join(
        f"SELECT agent, session_id FROM {s.qualified(t.table)} WHERE {where}"
        for t in AGENT_TABLES.values()
    )
    return f"SELECT agent, session_id FROM ({parts}) WHERE session_id != ''"


def session_rebuild_statements(s: SchemaSettings) -> list[str]:
    """Re-insert the sessions of ``{sessions}`` from their remaining rows with the queries of
    their materialized views. Each event counts once (``LIMIT 1 BY``), every revision of a
    repriced call too, as when the views saw them arrive."""
    out = []
    for table in AGENT_TABLES.values():
        by = "event_id, revision" if table.repriced_since is not None else "event_id"
        source = (
            f"(SELECT * FROM {s.qualified(table.table)} WHERE (agent, session_id) IN "
            f"{{sessions:Array(Tuple(String, String))}} LIMIT 1 BY {by})"
        )
        if table.table == "agent_api_calls":
            select = _api_call_session_select_v5(source)
        elif table.table == "agent_api_usage":
            select = _api_usage_session_select(source)
        else:
            select = _session_select(table.table, source)
        # The views' queries name only the columns of their own version (an MV inserts by
        # name); an INSERT ... SELECT is positional, so name them.
        head = select[: select.index(f" FROM {source}")]
        names = ", ".join(re.findall(r" AS (\w+)(?:,|$)", head))
        out.append(f"INSERT INTO {s.qualified('agent_sessions')} ({names}) {select}")
    return out


# --- read-only queries ----------------------------------------------------------------------

READONLY_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"})
_LEADING_NOISE = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|#[^\n]*(?:\n|\Z)|/\*.*?\*/|\()+", re.S)


class ReadOnlyQueryError(ValueError):
    """The statement is not a query; ``agentwatch query`` refuses to run it."""


def first_keyword(sql: str) -> str:
    rest = _LEADING_NOISE.sub("", sql, count=1)
    match = re.match(r"[A-Za-z]+", rest)
    return match.group(0).upper() if match else ""


def run_readonly_query(
    client: Client, sql: str, parameters: Mapping[str, Any] | None = None
) -> tuple[list[str], list[Sequence[Any]]]:
    """Run one query and return (column names, rows); anything that could write is refused.

    Checked twice: here by the leading keyword (a clear message), and by the server through
    ``readonly=1``, which rejects every write whatever the text looks like.
    """
    keyword = first_keyword(sql)
    if keyword not in READONLY_KEYWORDS:
        raise ReadOnlyQueryError(
            f"only read-only statements ({', '.join(sorted(READONLY_KEYWORDS))}) are allowed, "
            f"not {keyword or 'an empty statement'}"
        )
    statement = sql.strip().rstrip(";").strip()
    result = client.query(statement, parameters=dict(parameters or {}), settings={"readonly": 1})
    return list(result.column_names), [tuple(row) for row in result.result_rows]
