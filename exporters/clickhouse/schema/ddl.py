"""What every part of the schema is made of: columns, tables, the settings DDL depends on, the
renderers of CREATE/ALTER statements, and the SQL templates next to these modules.

Every statement is rendered from ``SchemaSettings`` so that one definition serves a single
server and a cluster (``ON CLUSTER``, ``Replicated*`` local tables, ``Distributed`` on top).
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jinja2

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEDUP_WINDOW = 10_000
"""Block hashes kept per table for insert_deduplication_token: a retry this many inserts late
into the same table is still recognised (one batch per second keeps hours of history)."""

MAP = "Map(LowCardinality(String), String)"
ZSTD = "ZSTD(1)"
TS_CODEC = "Delta(8), ZSTD(1)"

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
"""Retention per TTL key (a table's ``ttl_name``); the migrations module checks that these are
exactly the keys of the tables it creates."""
TTL_KEYS = tuple(DEFAULT_TTL_DAYS)


def quote(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


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


def _load_template(name: str) -> str:
    return importlib.resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


_TEMPLATES = jinja2.Environment(
    loader=jinja2.FunctionLoader(_load_template),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
)


class SqlTemplate:
    """The macros of one ``.sql`` file of this package, each rendering one query.

    The SQL text of queries lives in these files; Python only says which macro, with which
    table names and schema version. Output is one line (whitespace runs collapsed), so a
    template may be laid out for reading without changing the statement.
    """

    def __init__(self, file: str, **names: Any) -> None:
        """``names``: values every macro of the file may use (column name lists, mostly)."""
        self._module = _TEMPLATES.get_template(file, globals=names).module

    def __call__(self, macro: str, /, **values: Any) -> str:
        return " ".join(str(getattr(self._module, macro)(**values)).split())
