"""The ordered migrations that build the schema, and the runner that applies them.

Migration N renders every statement from the definitions as of version N (tables via
``AgentTable.spec(N)``, queries and views via their templates at ``version=N``), so adding a
migration never changes what an earlier one runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client

from collector import agent_model as am
from exporters.clickhouse.schema.agent_tables import (
    AGENT_API_USAGE_HOURLY,
    AGENT_CALL_SOURCES,
    AGENT_EVENT_IDS,
    AGENT_SESSIONS,
    AGENT_SESSIONS_V3,
    AGENT_TABLES,
    AGENT_USAGE_HOURLY,
    AGENT_USAGE_HOURLY_V3,
    REPRICE_COLUMNS,
    SESSION_COLUMNS_V5,
    SESSION_COLUMNS_V6,
    SESSION_COLUMNS_V7,
    USAGE_HOURLY_COLUMNS_V5,
    AgentTable,
    call_sources_select,
    event_ids_select,
    session_select,
    tool_invocations_backfill_select,
    usage_hourly_select,
)
from exporters.clickhouse.schema.ddl import (
    TTL_KEYS,
    Column,
    SchemaSettings,
    Table,
    quote,
    render_add_columns,
    render_mv,
    render_mv_query,
    render_table,
    render_ttl,
)
from exporters.clickhouse.schema.tables import RAW_TABLES, trace_id_ts_select
from exporters.clickhouse.schema.views import (
    CHANGED_IN_V7,
    PUBLIC_VIEWS_V4,
    PUBLIC_VIEWS_V5,
    PUBLIC_VIEWS_V6,
    RECONCILIATION_VIEWS,
    render_public_view,
    render_reconciliation_view,
)

MIGRATIONS_TABLE = "agentwatch_schema_migrations"

ALL_TABLES: tuple[Table, ...] = (
    *RAW_TABLES,
    *(t.spec() for t in AGENT_TABLES.values()),
    AGENT_EVENT_IDS,
    AGENT_SESSIONS,
    AGENT_USAGE_HOURLY,
    AGENT_API_USAGE_HOURLY,
    AGENT_CALL_SOURCES,
)
"""Every table of the latest schema."""
assert tuple(dict.fromkeys(t.ttl_name for t in ALL_TABLES)) == TTL_KEYS, TTL_KEYS


@dataclass(frozen=True)
class Statement:
    sql: str
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    render: Callable[[SchemaSettings], list[Statement]]


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


def _statements(sqls: list[str]) -> list[Statement]:
    return [Statement(sql) for sql in sqls]


def _backfill(
    target: str, select: str, s: SchemaSettings, token: str, columns: str = ""
) -> Statement:
    """INSERT ... SELECT of rows stored before a view existed; the token makes a re-run of an
    interrupted migration harmless. ``columns``: the target columns, when not all of them."""
    into = f"{s.qualified(target)} ({columns})" if columns else s.qualified(target)
    return Statement(
        f"INSERT INTO {into} {select}",
        {"insert_deduplication_token": token, **insert_settings(s)},
    )


def _agent_tables_since(version: int) -> list[AgentTable]:
    return [t for t in AGENT_TABLES.values() if t.since == version]


def _public_views(names: tuple[str, ...], version: int, s: SchemaSettings) -> list[Statement]:
    return [Statement(render_public_view(name, s, version)) for name in names]


def _m1_raw(s: SchemaSettings) -> list[Statement]:
    out = [Statement(sql) for table in RAW_TABLES for sql in render_table(table, s)]
    out.append(
        Statement(
            render_mv(
                "otel_traces_trace_id_ts_mv", "otel_traces_trace_id_ts", trace_id_ts_select(s), s
            )
        )
    )
    return out


def _agent_table_statements(table: AgentTable, version: int, s: SchemaSettings) -> list[Statement]:
    out = _statements(render_table(table.spec(version), s))
    out.append(
        Statement(
            render_mv(
                f"{table.table}_event_ids_mv",
                "agent_event_ids",
                event_ids_select(table, s.local(table.table)),
                s,
            )
        )
    )
    return out


def _m2_agent_events(s: SchemaSettings) -> list[Statement]:
    out = _statements(render_table(AGENT_EVENT_IDS, s))
    for table in _agent_tables_since(2):
        out += _agent_table_statements(table, 2, s)
    return out


def _m3_sessions_rollups(s: SchemaSettings) -> list[Statement]:
    out = [
        Statement(sql)
        for t in (AGENT_SESSIONS_V3, AGENT_USAGE_HOURLY_V3)
        for sql in render_table(t, s)
    ]
    tables = [t.table for t in _agent_tables_since(2)]
    for table in tables:
        select = session_select(table, 3, s.qualified(table))
        out.append(_backfill("agent_sessions", select, s, f"migration-3:sessions:{table}"))
    usage = usage_hourly_select("agent_api_calls", 3, s.qualified("agent_api_calls"))
    out.append(_backfill("agent_usage_hourly", usage, s, "migration-3:usage_hourly"))
    for table in tables:
        select = session_select(table, 3, s.local(table))
        out.append(Statement(render_mv(f"{table}_sessions_mv", "agent_sessions", select, s)))
    usage = usage_hourly_select("agent_api_calls", 3, s.local("agent_api_calls"))
    out.append(
        Statement(render_mv("agent_api_calls_usage_hourly_mv", "agent_usage_hourly", usage, s))
    )
    return out


def _m4_public_views(s: SchemaSettings) -> list[Statement]:
    return _public_views(PUBLIC_VIEWS_V4, 4, s)


def _m5_api_usage_and_reprice(s: SchemaSettings) -> list[Statement]:
    """The api_usage table and its rollups; revision columns for reprice, and the api_call
    views made revision-aware. No backfill: api_usage rows were not stored before."""
    out: list[Statement] = []
    for table in _agent_tables_since(5):
        out += _agent_table_statements(table, 5, s)
    out += _statements(render_table(AGENT_API_USAGE_HOURLY, s))
    out += _statements(render_add_columns("agent_api_calls", REPRICE_COLUMNS, s))
    out += _statements(render_add_columns("agent_sessions", SESSION_COLUMNS_V5, s))
    out += _statements(render_add_columns("agent_usage_hourly", USAGE_HOURLY_COLUMNS_V5, s))
    calls = s.local("agent_api_calls")
    out.append(
        Statement(
            render_mv_query(
                "agent_api_calls_sessions_mv", session_select("agent_api_calls", 5, calls), s
            )
        )
    )
    out.append(
        Statement(
            render_mv_query(
                "agent_api_calls_usage_hourly_mv",
                usage_hourly_select("agent_api_calls", 5, calls),
                s,
            )
        )
    )
    usage = s.local("agent_api_usage")
    out.append(
        Statement(
            render_mv(
                "agent_api_usage_sessions_mv",
                "agent_sessions",
                session_select("agent_api_usage", 5, usage),
                s,
            )
        )
    )
    out.append(
        Statement(
            render_mv(
                "agent_api_usage_usage_hourly_mv",
                "agent_api_usage_hourly",
                usage_hourly_select("agent_api_usage", 5, usage),
                s,
            )
        )
    )
    out += _public_views(PUBLIC_VIEWS_V5, 5, s)
    return out


def _m6_tool_invocations(s: SchemaSettings) -> list[Statement]:
    """One tool_calls row per invocation (decision and result merged), per-event detail in
    tool_events, sessions counting invocations; caller and cost_source columns. The backfill
    of invocations is a uniqExact state, so rows that the changed view also counts while it
    runs are not counted twice."""
    out: list[Statement] = []
    for table in AGENT_TABLES.values():
        added = [Column(f.column, f.type) for f in table.late_fields(6) if f.since == 6]
        if added:
            out += _statements(render_add_columns(table.table, added, s))
    out += _statements(render_add_columns("agent_sessions", SESSION_COLUMNS_V6, s))
    select = session_select("agent_tool_calls", 6, s.local("agent_tool_calls"))
    out.append(Statement(render_mv_query("agent_tool_calls_sessions_mv", select, s)))
    out.append(
        _backfill(
            "agent_sessions",
            tool_invocations_backfill_select(s.qualified("agent_tool_calls")),
            s,
            "migration-6:tool_invocations",
            columns="agent, session_id, month, first_seen, last_seen, tool_invocations",
        )
    )
    out += _public_views(PUBLIC_VIEWS_V6, 6, s)
    return out


def _m7_vendor_billing(s: SchemaSettings) -> list[Statement]:
    """Premium requests and AI credits (GitHub Copilot) on api calls and sessions. No
    backfill: older Copilot rows carried the premium-request multiplier as cost_usd_reported,
    which the raw otel_traces rows still hold as ``github.copilot.cost``."""
    calls = AGENT_TABLES[am.EventType.API_CALL]
    added = [Column(f.column, f.type) for f in calls.late_fields(7) if f.since == 7]
    out = _statements(render_add_columns(calls.table, added, s))
    out += _statements(render_add_columns("agent_sessions", SESSION_COLUMNS_V7, s))
    select = session_select(calls.table, 7, s.local(calls.table))
    out.append(Statement(render_mv_query("agent_api_calls_sessions_mv", select, s)))
    out += _public_views(CHANGED_IN_V7, 7, s)
    return out


def _m8_call_sources(s: SchemaSettings) -> list[Statement]:
    """API calls per source (filled from the raw logs, back-filled from what they still hold)
    and the ``call_reconciliation`` view."""
    out = _statements(render_table(AGENT_CALL_SOURCES, s))
    out.append(
        _backfill(
            "agent_call_sources",
            call_sources_select(s.qualified("otel_logs")),
            s,
            "migration-8:call_sources",
        )
    )
    out.append(
        Statement(
            render_mv(
                "otel_logs_call_sources_mv",
                "agent_call_sources",
                call_sources_select(s.local("otel_logs")),
                s,
            )
        )
    )
    out += [Statement(render_reconciliation_view(name, s, 8)) for name in RECONCILIATION_VIEWS]
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
