"""The call_reconciliation view and ``reconcile.report`` on a real ClickHouse, from raw log
rows as the exporter writes them (the view's source table is filled by a materialized view)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from collector import agent_model as am
from collector.records import Logs
from exporters.clickhouse import reconcile
from tests.support.clickhouse_fixture import agent_record, logs_request, make_exporter, new_client

T0 = 1_790_000_000_000_000_000


def call(session: str, n: int, source: str | None, user: str = "u-1") -> Any:
    extra = {"source": source} if source else {}
    return agent_record(
        am.EventType.API_CALL,
        f"{session}-call-{n}",
        T0 + n * 1_000_000_000,
        agent="codex",
        session_id=session,
        user_id=user,
        input_tokens=100 + n,
        output_tokens=10,
        **extra,
    )


def test_reconciliation_per_session_and_user(clickhouse_db: Any, tmp_path: Path) -> None:
    db = clickhouse_db
    records = [
        *(call("both", n, None) for n in range(3)),
        *(call("both", n, "session_files") for n in range(3)),
        *(call("lost", n, "session_files") for n in range(2)),
        call("lost", 9, None),  # OTLP delivered one call the files do not show
        *(call("otlp-only", n, None, user="u-2") for n in range(2)),
    ]
    # The same call from two sources has one event id: the exporter stores it once in the agent
    # tables and every copy in the raw table, from which the sources are counted.
    exporter = make_exporter(db, str(tmp_path))
    try:
        exporter.consume_logs(Logs.from_proto(logs_request(records, service="codex_exec")), "b-1")
    finally:
        exporter.shutdown()
    client = new_client(db.server, db.name)
    assert client.query("SELECT count() FROM api_calls").result_rows[0][0] == 3 + 3 + 2
    (cols, sessions), (ucols, users) = reconcile.report(client, date(2020, 1, 1))
    by = {r[cols.index("session_id")]: dict(zip(cols, r, strict=True)) for r in sessions}
    assert by["both"]["coverage_pct"] == 100.0 and by["both"]["both_calls"] == 3
    assert by["lost"]["file_only_calls"] == 2 and by["lost"]["otlp_only_calls"] == 1
    assert by["lost"]["coverage_pct"] == 0.0
    assert by["otlp-only"]["coverage_pct"] is None and by["otlp-only"]["otlp_calls"] == 2
    assert by["both"]["otlp_tokens"] == by["both"]["file_tokens"] == 3 * 110 + 3
    per_user = {r[0]: dict(zip(ucols, r, strict=True)) for r in users}
    assert per_user["u-1"]["file_calls"] == 5 and per_user["u-1"]["both_calls"] == 3
    assert per_user["u-1"]["coverage_pct"] == 60.0
    assert per_user["u-2"]["sessions"] == 1
    (_, later), _ = reconcile.report(client, date(2030, 1, 1))
    assert later == []
