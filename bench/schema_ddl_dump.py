"""Dump every DDL and migration statement the ClickHouse schema renders, one JSON document.

Run before and after a change to the schema code and compare the two dumps with
``--compare OLD NEW``: statements must be identical modulo whitespace (runs of blanks collapse,
blanks beside parentheses and commas vanish). Not a test: a tool for refactors of the schema
package that must not change the DDL.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporters.clickhouse import schema
from exporters.clickhouse.schema.ddl import render_table, render_ttl
from exporters.clickhouse.schema.views import render_public_view

SETTINGS = {
    "single": schema.SchemaSettings(),
    "cluster": schema.SchemaSettings(database="aw", cluster="main"),
    "no_ttl": schema.SchemaSettings(
        database="db_x", ttl_days={k: 0 for k in schema.DEFAULT_TTL_DAYS}, dedup_window=7
    ),
}


def dump() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, s in SETTINGS.items():
        part: dict[str, Any] = {}
        part["render_migrations"] = schema.render_migrations(s)
        for version in range(1, schema.LATEST_VERSION + 1):
            part[f"render_migrations_upto_{version}"] = schema.render_migrations(s, upto=version)
        part["migrations"] = [
            {
                "version": m.version,
                "name": m.name,
                "statements": [[st.sql, dict(st.settings)] for st in m.render(s)],
            }
            for m in schema.MIGRATIONS
        ]
        part["tables"] = [
            {
                "name": t.name,
                "ddl": render_table(t, s),
                "insert_columns": [c.name for c in t.insert_columns],
                "ttl": render_ttl(t, s),
            }
            for t in schema.ALL_TABLES
        ]
        part["agent_specs"] = {
            t.table: {
                str(v): render_table(t.spec(v), s) for v in range(1, schema.LATEST_VERSION + 1)
            }
            for t in schema.AGENT_TABLES.values()
        }
        part["public_views"] = {
            name: render_public_view(name, s, schema.LATEST_VERSION) for name in schema.PUBLIC_VIEWS
        }
        part["delete_plan"] = schema.delete_plan(s)
        part["affected_sessions_query"] = schema.affected_sessions_query(s)
        part["session_rebuild_statements"] = schema.session_rebuild_statements(s)
        part["insert_settings"] = schema.insert_settings(s)
        part["export_queries"] = {
            v: schema.export_query(v, s.database) for v in schema.EXPORT_VIEWS
        }
        out[label] = part
    out["constants"] = {
        "TTL_KEYS": list(schema.TTL_KEYS),
        "DEFAULT_TTL_DAYS": schema.DEFAULT_TTL_DAYS,
        "MIGRATIONS_TABLE": schema.MIGRATIONS_TABLE,
        "LATEST_VERSION": schema.LATEST_VERSION,
        "PUBLIC_VIEWS": sorted(schema.PUBLIC_VIEWS),
        "RECONCILIATION_VIEWS": sorted(schema.RECONCILIATION_VIEWS),
        "EXPORT_VIEWS": schema.EXPORT_VIEWS,
        "agent_fields": {
            t.table: [[f.column, f.type, f.key, f.kind, f.since] for f in t.all_fields]
            for t in schema.AGENT_TABLES.values()
        },
    }
    return out


def normalise(value: Any) -> Any:
    if isinstance(value, str):
        text = re.sub(r"\s+", " ", value).strip()
        return re.sub(r"\s*([(),])\s*", r"\1", text)
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def compare(old: Any, new: Any, path: str = "") -> list[str]:
    """Paths where the two dumps differ after normalising whitespace."""
    if isinstance(old, dict) and isinstance(new, dict):
        diffs = [f"{path}/{k}: only in one dump" for k in set(old) ^ set(new)]
        for key in old.keys() & new.keys():
            diffs += compare(old[key], new[key], f"{path}/{key}")
        return diffs
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{path}: {len(old)} vs {len(new)} items"]
        return [
            d
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for d in compare(a, b, f"{path}[{i}]")
        ]
    if normalise(old) != normalise(new):
        return [f"{path}:\n  old: {normalise(old)}\n  new: {normalise(new)}"]
    return []


def count_statements(value: Any) -> int:
    if isinstance(value, str):
        return 1
    if isinstance(value, list | tuple):
        return sum(count_statements(v) for v in value)
    if isinstance(value, dict):
        return sum(count_statements(v) for v in value.values())
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        old, new = (json.loads(Path(p).read_text()) for p in sys.argv[2:])
        differences = compare(old, new)
        print("\n".join(differences))
        print(f"{count_statements(old)} strings compared, {len(differences)} differ")
        sys.exit(1 if differences else 0)
    json.dump(dump(), sys.stdout, indent=1, sort_keys=True)
