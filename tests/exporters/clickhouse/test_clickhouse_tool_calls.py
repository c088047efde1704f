"""One ``tool_calls`` row per tool invocation, whatever events arrived and in whatever order;
``tool_events`` keeps every event; ``sessions.tool_calls`` counts invocations (issue 10)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from collector import agent_model as am
from collector.records import Logs
from exporters.clickhouse import rows, schema
from tests.support.clickhouse_fixture import (
    ClickHouseDatabase,
    agent_record,
    as_of_version,
    logs_request,
    make_exporter,
)

HOUR_NS = 3600 * 10**9
T0 = (time.time_ns() // HOUR_NS - 2) * HOUR_NS
WHO = {"agent": "claude_code", "session_id": "s-tools", "user_id": "u-1", "team": "t"}


def decision(call: str, ts: int, verdict: str = "accept", **extra: Any) -> LogRecord:
    return agent_record(
        am.EventType.TOOL_CALL,
        f"d-{call}",
        ts,
        **WHO,
        tool_name="Bash",
        tool_call_id=call,
        decision=verdict,
        decision_source="config",
        permission_mode="default",
        tool_phase="decision",
        **extra,
    )


def result(call: str, ts: int, success: bool = True, **extra: Any) -> LogRecord:
    return agent_record(
        am.EventType.TOOL_CALL,
        f"r-{call}",
        ts,
        **WHO,
        tool_name="Bash",
        tool_call_id=call,
        success=success,
        duration_ms=12.5,
        tool_arguments_size=40,
        tool_output_size=7,
        command="ls",
        tool_phase="result",
        **extra,
    )


def q(db: ClickHouseDatabase, sql: str) -> list[tuple[Any, ...]]:
    return db.rows(sql.replace("DB.", f"{db.name}."))


def test_decision_and_result_merge_into_one_row_in_any_order(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    db = clickhouse_schema
    gemini = {**WHO, "tool_name": "run_shell_command", "success": True, "decision": "accept"}
    batches = [
        [decision("a", T0), result("b", T0 + 5)],  # b's result before its decision
        [result("a", T0 + 2), decision("b", T0 + 1)],
        [decision("refused", T0 + 3, "reject")],  # denied: a decision and nothing else
        [
            result("orphan", T0 + 4, success=False, error_message="exit code 2")
        ],  # decision not logged
        [  # no call id (Gemini): each event is an invocation of its own
            agent_record(am.EventType.TOOL_CALL, "g-1", T0 + 6, **gemini),
            agent_record(am.EventType.TOOL_CALL, "g-2", T0 + 7, **gemini),
        ],
        [decision("a", T0)],  # a redelivered decision: no new row, no new count
    ]
    exporter = make_exporter(db, str(tmp_path))
    try:
        for n, records in enumerate(batches):
            exporter.consume_logs(Logs.from_proto(logs_request(records)), f"batch-{n}")
    finally:
        exporter.shutdown()

    calls = q(
        db,
        "SELECT tool_call_id, tool_name, decision, decision_source, success, duration_ms, "
        "arguments_size, command, permission_mode, events, error, "
        "toUnixTimestamp64Nano(timestamp), toUnixTimestamp64Nano(last_seen) "
        "FROM DB.tool_calls ORDER BY timestamp",
    )
    assert calls == [
        ("a", "Bash", "accept", "config", True, 12.5, 40, "ls", "default", 2, "", T0, T0 + 2),
        ("b", "Bash", "accept", "config", True, 12.5, 40, "ls", "default", 2, "", T0 + 1, T0 + 5),
        (
            "refused",
            "Bash",
            "reject",
            "config",
            None,
            None,
            0,
            "",
            "default",
            1,
            "",
            T0 + 3,
            T0 + 3,
        ),
        ("orphan", "Bash", "", "", False, 12.5, 40, "ls", "", 1, "exit code 2", T0 + 4, T0 + 4),
        ("", "run_shell_command", "accept", "", True, None, 0, "", "", 1, "", T0 + 6, T0 + 6),
        ("", "run_shell_command", "accept", "", True, None, 0, "", "", 1, "", T0 + 7, T0 + 7),
    ]
    events = q(db, "SELECT phase, count() FROM DB.tool_events GROUP BY phase ORDER BY phase")
    assert events == [("", 2), ("decision", 3), ("result", 3)]
    session = q(db, "SELECT tool_calls, tool_events FROM DB.sessions")
    assert session == [(6, 8)]


def test_tool_calls_stored_before_migration_6_count_as_invocations(
    clickhouse_db: ClickHouseDatabase, tmp_path: Path
) -> None:
    """A store at schema 5 holding a decision and a result of one call: after the upgrade the
    session counts one call, and running migration 6 again (interrupted) changes nothing."""
    db = clickhouse_db
    schema.migrate(db.client, db.settings, target=5)
    batch = rows.convert_logs(
        Logs.from_proto(logs_request([decision("old", T0), result("old", T0 + 1)]))
    )
    exporter = make_exporter(db, str(tmp_path), create_schema=False)
    try:
        client = exporter._ensure_ready()
        for table_rows in batch.agent.values():
            exporter._insert(client, as_of_version(table_rows, 5), f"old:{table_rows.table}")
    finally:
        exporter.shutdown()
    assert q(db, "SELECT tool_calls FROM DB.sessions") == [(2,)]  # the defect, as stored by v5

    applied = schema.migrate(db.client, db.settings)
    assert applied[0] == (6, "tool_invocations_and_callers")
    assert applied == [(m.version, m.name) for m in schema.MIGRATIONS if m.version > 5]
    for statement in schema.MIGRATIONS[5].render(db.settings):  # a re-run after a crash
        db.client.command(statement.sql, settings=dict(statement.settings) or None)
    assert q(db, "SELECT tool_calls, tool_events FROM DB.sessions") == [(1, 2)]
    assert q(db, "SELECT tool_call_id, decision, success, events FROM DB.tool_calls") == [
        ("old", "accept", True, 2)
    ]
