"""Schema management: versioned migrations, status, TTL changes, cluster DDL and read-only
queries, against a real ClickHouse."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from collector import agent_model as am
from collector.records import Logs
from exporters.clickhouse import rows, schema
from tests.support.clickhouse_fixture import (
    ClickHouseDatabase,
    agent_record,
    as_of_version,
    logs_request,
    make_exporter,
    new_client,
)

HOUR_NS = 3600 * 10**9
T0 = (time.time_ns() // HOUR_NS - 1) * HOUR_NS


def _layout(db: ClickHouseDatabase) -> dict[str, Any]:
    """Everything that makes two schemas the same: tables, engines, columns, view queries."""
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


def test_migrate_from_empty_then_status(clickhouse_db: ClickHouseDatabase) -> None:
    settings = clickhouse_db.settings
    assert [applied for _, _, applied in schema.status(clickhouse_db.client, settings)] == [
        None
    ] * len(schema.MIGRATIONS)

    applied = schema.migrate(clickhouse_db.client, settings)
    assert applied == [(m.version, m.name) for m in schema.MIGRATIONS]
    report = schema.status(clickhouse_db.client, settings)
    assert [(v, n) for v, n, _ in report] == applied
    assert all(at is not None for _, _, at in report)

    # Running again applies nothing and records nothing twice.
    assert schema.migrate(clickhouse_db.client, settings) == []
    assert clickhouse_db.scalar(
        f"SELECT count() FROM {clickhouse_db.name}.{schema.MIGRATIONS_TABLE}"
    ) == len(applied)

    names = {
        r[0]
        for r in clickhouse_db.rows(
            f"SELECT name FROM system.tables WHERE database = '{clickhouse_db.name}'"
        )
    }
    expected = {t.name for t in schema.ALL_TABLES} | set(schema.PUBLIC_VIEWS)
    assert expected <= names


@pytest.mark.parametrize("start", [m.version for m in schema.MIGRATIONS[:-1]])
def test_migrate_from_each_earlier_version(
    clickhouse_db: ClickHouseDatabase, clickhouse_server: object, start: int, tmp_path: Path
) -> None:
    """A database left at ``start`` (with agent data when it has agent tables) migrates to
    exactly the schema a fresh database gets, and sessions/rollups include the old data."""
    settings = clickhouse_db.settings
    assert schema.migrate(clickhouse_db.client, settings, target=start) == [
        (m.version, m.name) for m in schema.MIGRATIONS if m.version <= start
    ]
    report = schema.status(clickhouse_db.client, settings)
    assert [at is not None for _, _, at in report] == [
        m.version <= start for m in schema.MIGRATIONS
    ]

    if start >= 2:  # rows stored before sessions and rollups existed
        records = [
            agent_record(
                am.EventType.API_CALL,
                f"old-{i}",
                T0 + i,
                agent="codex",
                session_id="old-session",
                user_id="u-9",
                input_tokens=7,
                cost_usd=0.1,
            )
            for i in range(3)
        ]
        batch = rows.convert_logs(Logs.from_proto(logs_request(records)))
        exporter = make_exporter(clickhouse_db, str(tmp_path), create_schema=False)
        try:
            client = exporter._ensure_ready()
            for table_rows in batch.agent.values():
                old = as_of_version(table_rows, start)  # what agentwatch wrote back then
                exporter._insert(client, old, f"old:{table_rows.table}")
        finally:
            exporter.shutdown()

    rest = schema.migrate(clickhouse_db.client, settings)
    assert [v for v, _ in rest] == [m.version for m in schema.MIGRATIONS if m.version > start]
    assert all(at is not None for _, _, at in schema.status(clickhouse_db.client, settings))

    reference_name = f"{clickhouse_db.name}_ref"
    clickhouse_db.client.command(f"CREATE DATABASE {reference_name}")
    try:
        reference = ClickHouseDatabase(reference_name, clickhouse_db.client, clickhouse_db.server)
        schema.migrate(reference.client, reference.settings)
        ours, theirs = _layout(clickhouse_db), _layout(reference)
        assert len(ours["tables"]) > 40
        assert ours == theirs
    finally:
        clickhouse_db.client.command(f"DROP DATABASE IF EXISTS {reference_name} SYNC")

    if start >= 2:
        session = clickhouse_db.rows(
            f"SELECT api_calls, input_tokens, cost_usd FROM {clickhouse_db.name}.sessions "
            "WHERE session_id = 'old-session'"
        )
        assert session == [(3, 21, pytest.approx(0.3))]
        hourly = clickhouse_db.scalar(
            f"SELECT sum(api_calls) FROM {clickhouse_db.name}.usage_hourly WHERE user_id = 'u-9'"
        )
        assert hourly == 3


def test_interrupted_migration_is_rerun_without_double_backfill(
    clickhouse_db: ClickHouseDatabase, tmp_path: Path
) -> None:
    settings = clickhouse_db.settings
    schema.migrate(clickhouse_db.client, settings, target=2)
    records = [
        agent_record(
            am.EventType.API_CALL, "only", T0, agent="codex", session_id="s", input_tokens=5
        )
    ]
    batch = rows.convert_logs(Logs.from_proto(logs_request(records)))
    exporter = make_exporter(clickhouse_db, str(tmp_path), create_schema=False)
    try:
        client = exporter._ensure_ready()
        for table_rows in batch.agent.values():
            exporter._insert(client, as_of_version(table_rows, 2), f"x:{table_rows.table}")
    finally:
        exporter.shutdown()
    # Run migration 3's statements as if a crash hit before it was recorded, then migrate.
    for statement in schema.MIGRATIONS[2].render(settings):
        clickhouse_db.client.command(statement.sql, settings=dict(statement.settings) or None)
    schema.migrate(clickhouse_db.client, settings)
    assert (
        clickhouse_db.scalar(
            f"SELECT api_calls FROM {clickhouse_db.name}.sessions WHERE session_id = 's'"
        )
        == 1
    )


def test_ttl_follows_config(clickhouse_db: ClickHouseDatabase) -> None:
    schema.migrate(clickhouse_db.client, clickhouse_db.settings)

    def engine(table: str) -> str:
        return str(
            clickhouse_db.scalar(
                f"SELECT engine_full FROM system.tables WHERE database = '{clickhouse_db.name}' "
                f"AND name = '{table}'"
            )
        )

    assert "toIntervalDay(30)" in engine("otel_logs")
    assert "toIntervalDay(400)" in engine("agent_api_calls")
    changed = schema.sync_ttls(
        clickhouse_db.client,
        schema.SchemaSettings(
            database=clickhouse_db.name, ttl_days={"otel_logs": 7, "agent_events": 0}
        ),
    )
    assert set(changed) == {"otel_logs", "agent_event_ids", "agent_call_sources"} | {
        t.table for t in schema.AGENT_TABLES.values()
    }
    assert "toIntervalDay(7)" in engine("otel_logs")
    assert "TTL" not in engine("agent_api_calls")
    assert "toIntervalDay(30)" in engine("otel_traces")


# --- cluster DDL ----------------------------------------------------------------------------


def test_cluster_ddl_renders_replicated_local_and_distributed_tables(
    clickhouse_server: object, clickhouse_db: ClickHouseDatabase
) -> None:
    settings = schema.SchemaSettings(database="aw", cluster="prod")
    statements = schema.render_migrations(settings)
    creates = [s for s in statements if s.startswith("CREATE")]
    assert creates and all(" ON CLUSTER `prod`" in s for s in creates)
    assert not any(
        re.search(r"ENGINE = (Replacing|Summing|Aggregating)?MergeTree", s) for s in statements
    )

    for table in schema.ALL_TABLES:
        local = next(
            s
            for s in statements
            if s.startswith(f"CREATE TABLE IF NOT EXISTS `aw`.`{table.name}_local` ")
        )
        assert (
            f"ENGINE = Replicated{table.engine}('/clickhouse/tables/{{shard}}/aw/"
            f"{table.name}_local', '{{replica}}')" in local
        )
        assert "replicated_deduplication_window = 10000" in local
        dist = next(
            s
            for s in statements
            if s.startswith(f"CREATE TABLE IF NOT EXISTS `aw`.`{table.name}` ")
        )
        assert (
            f"AS `aw`.`{table.name}_local` ENGINE = Distributed(`prod`, `aw`, "
            f"`{table.name}_local`, {table.sharding_key})" in dist
        )
        # Deterministic sharding: a retried batch splits into the same per-shard blocks.
        assert "rand()" not in table.sharding_key

    views = [s for s in statements if "MATERIALIZED VIEW" in s]
    assert views and all(
        re.search(r"TO `aw`.`\w+_local` AS SELECT .* FROM `aw`.`\w+_local`", s) for s in views
    )
    public = [s for s in statements if s.startswith("CREATE OR REPLACE VIEW")]
    view_names = {re.findall(r"CREATE OR REPLACE VIEW `aw`.`(\w+)`", s)[0] for s in public}
    assert view_names == set(schema.PUBLIC_VIEWS) | set(schema.RECONCILIATION_VIEWS)
    assert not any("_local" in s for s in public)  # users' views read the Distributed tables
    migrations_table = next(s for s in statements if schema.MIGRATIONS_TABLE in s)
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/aw/" in migrations_table

    # Every statement is valid ClickHouse SQL: the server's own parser formats it.
    for statement in statements:
        formatted = clickhouse_db.client.query(
            "SELECT formatQuery({q:String})", parameters={"q": statement}
        ).result_rows[0][0]
        assert "ON CLUSTER prod" in formatted or statement.startswith("INSERT")


def test_cluster_config_defaults_create_schema_off() -> None:
    from exporters.clickhouse.config import ClickHouseExporterConfig

    assert ClickHouseExporterConfig().schema_enabled is True
    assert ClickHouseExporterConfig(cluster="prod").schema_enabled is False
    assert ClickHouseExporterConfig(cluster="prod", create_schema=True).schema_enabled is True


# --- read-only queries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count() FROM otel_logs",
        "  -- how many\n  select 1",
        "/* report */ WITH 1 AS x SELECT x",
        "(SELECT 1)",
        "SHOW TABLES",
        "DESCRIBE TABLE api_calls",
        "EXPLAIN SELECT * FROM api_calls;",
    ],
)
def test_readonly_query_runs_queries(clickhouse_schema: ClickHouseDatabase, sql: str) -> None:
    client = new_client(clickhouse_schema.server, clickhouse_schema.name)
    try:
        columns, result = schema.run_readonly_query(client, sql)
    finally:
        client.close()
    assert columns and isinstance(result, list)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO otel_logs (Body) VALUES ('x')",
        "DROP TABLE otel_logs",
        "  -- looks harmless\n ALTER TABLE otel_logs DELETE WHERE 1",
        "/* */ TRUNCATE TABLE otel_logs",
        "CREATE TABLE x (a UInt8) ENGINE = Memory",
        "SYSTEM STOP MERGES",
        "OPTIMIZE TABLE otel_logs FINAL",
        "",
    ],
)
def test_readonly_query_refuses_writes(clickhouse_schema: ClickHouseDatabase, sql: str) -> None:
    with pytest.raises(schema.ReadOnlyQueryError):
        schema.run_readonly_query(clickhouse_schema.client, sql)


def test_server_enforces_readonly_too(clickhouse_schema: ClickHouseDatabase) -> None:
    """Text that passes the keyword check still cannot write or lift the restriction."""
    client = new_client(clickhouse_schema.server, clickhouse_schema.name)
    try:
        with pytest.raises(DatabaseError, match=r"readonly|READONLY"):
            schema.run_readonly_query(client, "SELECT 1 SETTINGS readonly = 0")
        with pytest.raises(DatabaseError):
            schema.run_readonly_query(
                client, "WITH 1 AS x INSERT INTO otel_logs (Body) SELECT toString(x)"
            )
    finally:
        client.close()
    assert clickhouse_schema.scalar(f"SELECT count() FROM {clickhouse_schema.name}.otel_logs") == 0
