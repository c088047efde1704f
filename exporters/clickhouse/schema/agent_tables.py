"""The agent tables: one row per agent event, plus the event-id index, sessions, hourly rollups
and per-source API calls, and the queries of the materialized views that keep them current.

The queries' SQL is in ``agent_tables.sql``; the functions here choose the macro, the tables
and the schema version it is rendered for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from collector import agent_model as am
from exporters.clickhouse.schema.ddl import TS_CODEC, ZSTD, Column, SqlTemplate, Table


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
"""Added by migration 6: the distinct tool invocations of a session (``invocation_key`` in
common.sql). A decision and a result of one call are two events that may arrive in any order
and batch; a uniqExact state counts the call once whatever came, and merging states is
idempotent."""

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


_SQL = SqlTemplate(
    "agent_tables.sql",
    session_labels=SESSION_LABELS,
    session_counters=SESSION_COUNTERS,
    usage_keys=USAGE_KEYS,
    api_usage_hourly_keys=API_USAGE_HOURLY_KEYS,
    usage_tokens=USAGE_TOKENS,
)


def event_ids_select(table: AgentTable, source: str) -> str:
    """The query of ``<table>_event_ids_mv``: every event id the table stores."""
    return _SQL("event_ids", event=table.event.value, source=source)


def session_select(table: str, version: int, source: str) -> str:
    """The query of ``<table>_sessions_mv`` as of schema ``version``: what the rows of ``source``
    (``table`` or a subquery of it) add to agent_sessions."""
    return _SQL("session", table=table, version=version, source=source)


def session_rebuild_insert(table: AgentTable, version: int, source: str, target: str) -> str:
    """INSERT into ``target`` (agent_sessions) of what the rows in ``source`` (``table``) of the
    sessions in the ``{sessions}`` parameter add to it by ``table``'s view as of ``version``:
    ``agentwatch delete`` rebuilds the sessions it cut short with it."""
    repriced = table.repriced_since is not None and version >= table.repriced_since
    return _SQL(
        "session_rebuild",
        table=table.table,
        version=version,
        source=source,
        into=target,
        repriced=repriced,
    )


def tool_invocations_backfill_select(source: str) -> str:
    """The tool invocations of every session in ``source`` (migration 6's back-fill)."""
    return _SQL("tool_invocations_backfill", source=source)


def usage_hourly_select(table: str, version: int, source: str) -> str:
    """The query of ``<table>_usage_hourly_mv`` as of schema ``version``: api_call rows into
    agent_usage_hourly, api_usage rows into agent_api_usage_hourly."""
    return _SQL("usage_hourly", table=table, version=version, source=source)


def call_sources_select(source: str) -> str:
    """The query of ``otel_logs_call_sources_mv``: one row per api_call log record."""
    return _SQL("call_sources", source=source, otlp=SOURCE_OTLP)
