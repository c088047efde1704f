"""The SQL of ``agentwatch export`` and ``agentwatch delete`` (run by
exporters/clickhouse/lifecycle.py): which rows of which tables and views a selection of time,
agent and user covers, and how sessions are rebuilt after a delete.
"""

from __future__ import annotations

from exporters.clickhouse.schema.agent_tables import AGENT_TABLES, session_rebuild_insert
from exporters.clickhouse.schema.ddl import SchemaSettings, quote
from exporters.clickhouse.schema.migrations import LATEST_VERSION
from exporters.clickhouse.schema.tables import RAW_TABLES

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
    """Re-insert the sessions of ``{sessions}`` from their remaining rows in every agent table,
    each with the query of its sessions view at the latest schema version -- what the views
    would have written had only those rows arrived (tool invocations, vendor billing, every
    revision of a repriced call; each event once)."""
    return [
        session_rebuild_insert(
            table, LATEST_VERSION, s.qualified(table.table), s.qualified("agent_sessions")
        )
        for table in AGENT_TABLES.values()
    ]
