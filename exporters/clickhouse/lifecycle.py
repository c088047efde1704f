"""Getting data out and deleting it: ``agentwatch export`` and ``agentwatch delete``.

Export writes one Parquet file per public view, produced by ClickHouse itself, so column names
and types are the view's. Delete removes the selected rows from every raw and agent table and
rollup: hourly rollup rows lie inside the deleted hours and go as a whole; a session partly
outside the range is rebuilt from its remaining rows with its materialized views' own queries.
The statements are in ``schema`` (``delete_plan``, ``session_rebuild_statements``).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from exporters.clickhouse import schema


@dataclass(frozen=True)
class Selection:
    """UTC days ``start`` to ``end`` (both included), one agent and one user (or all: '')."""

    start: date
    end: date
    agent: str = ""
    user: str = ""

    def parameters(self) -> dict[str, Any]:
        return {
            "start": datetime.combine(self.start, time(), UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "end": datetime.combine(self.end + timedelta(days=1), time(), UTC).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "agent": self.agent,
            "user": self.user,
        }


def export(
    client: Client,
    settings: schema.SchemaSettings,
    selection: Selection,
    out_dir: Path,
    as_zip: bool = False,
) -> list[tuple[str, Path]]:
    """One ``<view>.parquet`` per public view; with ``as_zip`` one ZIP holding them all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, Path]] = []
    params = selection.parameters()
    for view in schema.EXPORT_VIEWS:
        path = out_dir / f"{view}.parquet"
        with path.open("wb") as fh:
            stream = client.raw_stream(
                schema.export_query(view, settings.database),
                parameters=params,
                settings={"output_format_parquet_string_as_string": 1},
            )
            for chunk in stream:
                fh.write(chunk)
        written.append((view, path))
    if not as_zip:
        return written
    archive = out_dir / "agentwatch-export.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for _, path in written:
            zf.write(path, path.name)
            path.unlink()
    return [("zip", archive)]


@dataclass
class DeletePlan:
    counts: list[tuple[str, int]]
    sessions: list[tuple[str, str]]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)


def plan_delete(
    client: Client, settings: schema.SchemaSettings, selection: Selection
) -> DeletePlan:
    """How many rows each table would lose, and the sessions to rebuild."""
    params = selection.parameters()
    sessions = [
        (str(a), str(s))
        for a, s in client.query(
            schema.affected_sessions_query(settings), parameters=params
        ).result_rows
    ]
    params["sessions"] = sessions
    counts = [
        (table, int(client.query(count, parameters=params).result_rows[0][0]))
        for table, count, _ in schema.delete_plan(settings)
    ]
    return DeletePlan(counts, sessions)


def delete(
    client: Client, settings: schema.SchemaSettings, selection: Selection, plan: DeletePlan
) -> None:
    """Delete in order, each mutation finished before the next; then rebuild the sessions."""
    params = selection.parameters() | {"sessions": plan.sessions}
    counts = dict(plan.counts)
    for table, _, statement in schema.delete_plan(settings):
        if counts.get(table, 1) == 0:
            continue
        client.command(statement, parameters=params, settings={"mutations_sync": 2})
    if plan.sessions:
        for statement in schema.session_rebuild_statements(settings):
            # Not deduplicated: the same rebuild twice (delete, re-import, delete) is real data.
            client.command(
                statement, parameters=params, settings={"insert_deduplicate": 0, "async_insert": 0}
            )
