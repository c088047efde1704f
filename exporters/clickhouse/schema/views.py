"""The public views: the contract of docs/data-model.md, whose names and leading columns stay
stable across schema versions while the tables underneath change.

Each view is a macro of ``views.sql`` rendered for a schema version; a later version only adds
``version >= N`` branches, so the SQL an earlier migration runs never changes.
"""

from __future__ import annotations

from exporters.clickhouse.schema.agent_tables import (
    AGENT_TABLES,
    SOURCE_OTLP,
    USAGE_KEYS,
    USAGE_TOKENS,
)
from exporters.clickhouse.schema.ddl import SchemaSettings, SqlTemplate, render_view

_SQL = SqlTemplate("views.sql", usage_keys=USAGE_KEYS, usage_tokens=USAGE_TOKENS)

PUBLIC_VIEWS_V4: tuple[str, ...] = (
    "api_calls",
    "tool_calls",
    "detections",
    "api_errors",
    "user_prompts",
    "session_starts",
    "code_changes",
    "sessions",
    "usage_hourly",
)
"""The public views of schema version 4, which migration 4 creates."""

PUBLIC_VIEWS_V5: tuple[str, ...] = (*PUBLIC_VIEWS_V4, "api_usage")
"""The public views of version 5: migration 5 re-creates them all (api_calls, sessions and
usage_hourly became revision- and api_usage-aware)."""

PUBLIC_VIEWS_V6: tuple[str, ...] = (*PUBLIC_VIEWS_V5, "tool_events")
"""The public views of version 6: migration 6 re-creates them all (tool_calls became one row
per invocation, its events moved to tool_events)."""

CHANGED_IN_V7: tuple[str, ...] = ("api_calls", "sessions")
"""The views migration 7 re-creates (vendor billing columns); version 7 adds no view."""

PUBLIC_VIEWS: tuple[str, ...] = PUBLIC_VIEWS_V6
"""Every public view of the latest version. Names and leading columns never change; new
columns are only appended."""

RECONCILIATION_VIEWS: tuple[str, ...] = ("call_reconciliation",)
"""Views over ``agent_call_sources`` (migration 8): which sources saw each API call."""


def _table_names(settings: SchemaSettings) -> dict[str, str]:
    names = {t.table: settings.qualified(t.table) for t in AGENT_TABLES.values()}
    for table in (
        "agent_sessions",
        "agent_usage_hourly",
        "agent_api_usage_hourly",
        "agent_call_sources",
    ):
        names[table] = settings.qualified(table)
    return names


def render_public_view(name: str, settings: SchemaSettings, version: int) -> str:
    """CREATE OR REPLACE of public view ``name`` as schema ``version`` defines it."""
    select = _SQL(name, version=version, tables=_table_names(settings))
    return render_view(name, select, settings)


def render_reconciliation_view(name: str, settings: SchemaSettings, version: int) -> str:
    """CREATE OR REPLACE of reconciliation view ``name`` as schema ``version`` defines it."""
    select = _SQL(name, version=version, tables=_table_names(settings), otlp=SOURCE_OTLP)
    return render_view(name, select, settings)
