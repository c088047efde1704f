"""The ClickHouse schema of agentwatch, as versioned migrations, and read-only querying.

Three layers, documented column by column in docs/data-model.md:

* ``tables``: raw OpenTelemetry tables with the column set of the collector-contrib
  ``clickhouseexporter``, so Grafana's ClickHouse data source and existing queries work
  unchanged;
* ``agent_tables``: one row per agent event, plus sessions and hourly rollups kept current by
  materialized views;
* ``views``: the public contract, plain views (``api_calls``, ``tool_calls``, ``sessions``,
  ...) whose names and columns stay stable across schema versions while the tables underneath
  change.

``migrations`` builds them in order, ``lifecycle`` holds the SQL of export and delete,
``readonly`` runs users' queries, ``ddl`` is what all of them are made of. Query SQL lives in
the ``.sql`` templates next to the modules.
"""

from __future__ import annotations

from exporters.clickhouse.schema.agent_tables import (
    AGENT_TABLES,
    ENVELOPE_COLUMNS,
    TRAILER_COLUMNS,
    AgentField,
    AgentTable,
)
from exporters.clickhouse.schema.ddl import (
    DEFAULT_TTL_DAYS,
    IDENTIFIER,
    TTL_KEYS,
    Column,
    SchemaSettings,
    Table,
    quote,
)
from exporters.clickhouse.schema.lifecycle import (
    EXPORT_VIEWS,
    affected_sessions_query,
    delete_plan,
    export_query,
    session_rebuild_statements,
)
from exporters.clickhouse.schema.migrations import (
    ALL_TABLES,
    LATEST_VERSION,
    MIGRATIONS,
    MIGRATIONS_TABLE,
    Migration,
    Statement,
    applied_versions,
    insert_settings,
    migrate,
    render_migrations,
    status,
    sync_ttls,
)
from exporters.clickhouse.schema.readonly import ReadOnlyQueryError, run_readonly_query
from exporters.clickhouse.schema.tables import (
    OTEL_LOGS,
    OTEL_METRICS_EXP_HISTOGRAM,
    OTEL_METRICS_GAUGE,
    OTEL_METRICS_HISTOGRAM,
    OTEL_METRICS_SUM,
    OTEL_METRICS_SUMMARY,
    OTEL_TRACES,
    RAW_TABLES,
)
from exporters.clickhouse.schema.views import PUBLIC_VIEWS, RECONCILIATION_VIEWS

__all__ = [
    "AGENT_TABLES",
    "ALL_TABLES",
    "DEFAULT_TTL_DAYS",
    "ENVELOPE_COLUMNS",
    "EXPORT_VIEWS",
    "IDENTIFIER",
    "LATEST_VERSION",
    "MIGRATIONS",
    "MIGRATIONS_TABLE",
    "OTEL_LOGS",
    "OTEL_METRICS_EXP_HISTOGRAM",
    "OTEL_METRICS_GAUGE",
    "OTEL_METRICS_HISTOGRAM",
    "OTEL_METRICS_SUM",
    "OTEL_METRICS_SUMMARY",
    "OTEL_TRACES",
    "PUBLIC_VIEWS",
    "RAW_TABLES",
    "RECONCILIATION_VIEWS",
    "TRAILER_COLUMNS",
    "TTL_KEYS",
    "AgentField",
    "AgentTable",
    "Column",
    "Migration",
    "ReadOnlyQueryError",
    "SchemaSettings",
    "Statement",
    "Table",
    "affected_sessions_query",
    "applied_versions",
    "delete_plan",
    "export_query",
    "insert_settings",
    "migrate",
    "quote",
    "render_migrations",
    "run_readonly_query",
    "session_rebuild_statements",
    "status",
    "sync_ttls",
]
