"""``agentwatch export`` (Parquet per public view) and ``agentwatch delete`` (every table and
rollup, rollups corrected) on a real ClickHouse holding imported session files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from collector import agent_model as am
from collector.config import load
from collector.receivers.sessionfiles import importer
from collector.records import Logs
from exporters.clickhouse import lifecycle, schema
from tests.support.clickhouse_fixture import (
    ClickHouseDatabase,
    agent_record,
    logs_request,
    make_exporter,
    new_client,
)
from tests.support.sessionfiles_support import claude_tree, codex_tree, gemini_tree, write_config


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], capture_output=True, text=True
    )


def codex_two_days(root: Path) -> None:
    """A Codex session with one call on 2026-08-01 and one on 2026-08-02."""
    day = root / "2026" / "08" / "01"
    day.mkdir(parents=True)

    def count(ts: str, n: int, total: int) -> dict[str, Any]:
        usage = {"input_tokens": n, "output_tokens": 3, "total_tokens": n + 3}
        totals = {"input_tokens": total, "output_tokens": 6 if total > n else 3}
        return {
            "timestamp": ts,
            "type": "event_msg",
            "payload": {
                "type": "token_count",
                "info": {"last_token_usage": usage, "total_token_usage": totals},
            },
        }

    lines = [
        {
            "timestamp": "2026-08-01T23:00:00.000Z",
            "type": "session_meta",
            "payload": {"id": "span-days", "originator": "codex_exec"},
        },
        {
            "timestamp": "2026-08-01T23:00:01.000Z",
            "type": "turn_context",
            "payload": {"model": "gpt-5.5"},
        },
        count("2026-08-01T23:30:00.000Z", 1000, 1000),
        count("2026-08-02T00:30:00.000Z", 2000, 3000),
    ]
    (day / "rollout-2026-08-01T23-00-00-span-days.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in lines)
    )


@pytest.fixture
def store(tmp_path: Path, clickhouse_db: Any) -> tuple[str, Any]:
    cfg_path = write_config(tmp_path, clickhouse_db)
    cfg = load(str(cfg_path))
    claude = claude_tree(tmp_path, "switchboard__tool-vocabulary.session.jsonl")
    (claude.parent / ".claude.json").write_text(json.dumps({"userID": "u-claude"}))
    codex = codex_tree(
        tmp_path,
        "switchboard__apply-patch.session.jsonl",
        "switchboard__rate-limits.session.jsonl",
    )
    codex_two_days(codex)
    gemini = gemini_tree(tmp_path, "switchboard__tool-use.session.jsonl")
    roots = {"claude-code": claude, "codex": codex, "gemini": gemini}
    importer.run(cfg, importer.Options(list(roots), roots))
    return str(cfg_path), new_client(clickhouse_db.server, clickhouse_db.name)


def scalar(client: Any, sql: str) -> Any:
    return client.query(sql).result_rows[0][0]


def test_export_writes_each_view_with_its_names_and_types(
    store: tuple[str, Any], tmp_path: Path
) -> None:
    cfg, client = store
    out = tmp_path / "export"
    done = run("export", "--output", str(out), "-c", cfg)
    assert done.returncode == 0, done.stderr
    for view in schema.EXPORT_VIEWS:
        table = pq.read_table(out / f"{view}.parquet")
        described = client.query(f"DESCRIBE TABLE {view}").result_rows
        assert table.column_names == [r[0] for r in described], view
        assert table.num_rows == scalar(client, f"SELECT count() FROM {view}"), view
    calls = pq.read_table(out / "api_calls.parquet")
    assert pa.types.is_timestamp(calls.schema.field("timestamp").type)
    assert calls.schema.field("input_tokens").type == pa.uint64()
    assert calls.schema.field("cost_usd").type == pa.float64()
    assert calls.schema.field("agent").type == pa.string()
    assert calls.num_rows == 9 + 4 + 2
    assert sum(calls.column("input_tokens").to_pylist()) == scalar(
        client, "SELECT sum(input_tokens) FROM api_calls"
    )

    only = tmp_path / "codex"
    done = run(
        "export",
        "--output",
        str(only),
        "--agent",
        "codex",
        "--from",
        "2026-08-01",
        "--to",
        "2026-08-01",
        "--zip",
        "-c",
        cfg,
    )
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(only / "agentwatch-export.zip") as zf:
        assert sorted(zf.namelist()) == sorted(f"{v}.parquet" for v in schema.EXPORT_VIEWS)
        zf.extract("api_calls.parquet", tmp_path / "unzipped")
    rows = pq.read_table(tmp_path / "unzipped" / "api_calls.parquet").to_pylist()
    assert [(r["agent"], r["input_tokens"]) for r in rows] == [("codex", 1000)]


def rollups_agree(client: Any) -> None:
    """sessions and usage_hourly say what the api_calls rows they summarise say."""
    by_session = client.query(
        "SELECT agent, session_id, count(), sum(input_tokens) FROM api_calls "
        "GROUP BY agent, session_id ORDER BY 1, 2"
    ).result_rows
    sessions = client.query(
        "SELECT agent, session_id, api_calls, input_tokens FROM sessions WHERE api_calls > 0 "
        "ORDER BY 1, 2"
    ).result_rows
    assert sessions == by_session
    hourly = client.query(
        "SELECT agent, sum(api_calls), sum(input_tokens) FROM usage_hourly GROUP BY agent "
        "ORDER BY 1"
    ).result_rows
    calls = client.query(
        "SELECT agent, count(), sum(input_tokens) FROM api_calls GROUP BY agent ORDER BY 1"
    ).result_rows
    assert hourly == calls


def test_delete_a_day_of_one_agent_corrects_every_rollup(store: tuple[str, Any]) -> None:
    cfg, client = store
    rollups_agree(client)
    raw_before = scalar(client, "SELECT count() FROM otel_logs")
    refused = run("delete", "--from", "2026-08-02", "--to", "2026-08-02", "-c", cfg)
    assert refused.returncode == 2 and "--yes" in refused.stderr, refused.stderr[-600:]
    assert scalar(client, "SELECT count() FROM api_calls WHERE agent = 'codex'") == 4

    done = run(
        "delete",
        "--from",
        "2026-08-02",
        "--to",
        "2026-08-02",
        "--agent",
        "codex",
        "--yes",
        "-c",
        cfg,
    )
    assert done.returncode == 0, done.stderr
    assert "agent_api_calls" in done.stdout and "1 sessions rebuilt" in done.stdout
    # The session across midnight keeps its first call, and says so.
    assert client.query(
        "SELECT api_calls, input_tokens FROM sessions WHERE session_id = 'span-days'"
    ).result_rows == [(1, 1000)]
    assert scalar(client, "SELECT count() FROM api_calls WHERE agent = 'codex'") == 3
    assert scalar(client, "SELECT count() FROM otel_logs") == raw_before - 1
    assert (
        scalar(client, "SELECT count() FROM agent_call_sources WHERE session_id = 'span-days'") == 1
    )
    rollups_agree(client)


def test_delete_a_user_everywhere_and_import_again(store: tuple[str, Any], tmp_path: Path) -> None:
    cfg, client = store
    done = run(
        "delete",
        "--from",
        "2000-01-01",
        "--to",
        "2099-12-31",
        "--user",
        "u-claude",
        "--yes",
        "-c",
        cfg,
    )
    assert done.returncode == 0, done.stderr
    for view in ("api_calls", "tool_calls", "user_prompts"):
        assert scalar(client, f"SELECT count() FROM {view} WHERE agent = 'claude_code'") == 0
    assert scalar(client, "SELECT count() FROM sessions WHERE agent = 'claude_code'") == 0
    assert (
        scalar(client, "SELECT count() FROM otel_logs WHERE LogAttributes['user.id'] = 'u-claude'")
        == 0
    )
    assert scalar(client, "SELECT count() FROM agent_event_ids WHERE event = 'api_call'") == 4 + 2
    rollups_agree(client)
    # Nothing of them is left to stop the same calls being stored again.
    claude = tmp_path / "claude" / "projects"
    again = run("import", "claude-code", "--path", str(claude), "--force", "-c", cfg)
    assert again.returncode == 0, again.stderr
    assert scalar(client, "SELECT count() FROM api_calls WHERE agent = 'claude_code'") == 9
    rollups_agree(client)


def test_delete_rebuilds_a_session_as_the_current_views_count_it(
    clickhouse_db: ClickHouseDatabase, tmp_path: Path
) -> None:
    """A rebuilt session keeps what the views of the latest schema count for its remaining
    rows: tool invocations (not events), premium requests and AI credits, repriced cost."""
    db = clickhouse_db
    kept = (datetime.now(UTC) - timedelta(days=3)).replace(hour=12, minute=0, second=0)
    gone = kept + timedelta(days=1)
    who = {"agent": "copilot", "session_id": "s-rebuild", "user_id": "u-1", "team": "t"}

    def ns(day: datetime, second: int) -> int:
        return int(day.timestamp()) * 10**9 + second * 10**9

    def tool(event_id: str, call: str, ts: int, phase: str) -> LogRecord:
        return agent_record(
            am.EventType.TOOL_CALL,
            event_id,
            ts,
            **who,
            tool_name="Bash",
            tool_call_id=call,
            tool_phase=phase,
        )

    def call(event_id: str, ts: int, **billing: float | int) -> LogRecord:
        return agent_record(
            am.EventType.API_CALL,
            event_id,
            ts,
            **who,
            provider="github",
            model="gpt-5",
            input_tokens=100,
            output_tokens=20,
            cost_usd=0.25,
            **billing,
        )

    remaining = [
        tool("d-a", "a", ns(kept, 1), "decision"),
        tool("r-a", "a", ns(kept, 2), "result"),  # one invocation, two events
        tool("d-b", "b", ns(kept, 3), "decision"),  # a second invocation
        call("c-1", ns(kept, 4), premium_requests=1.5, nano_aiu=2_000_000_000),
        call("c-2", ns(kept, 5)),  # an api call that is not a Copilot one
        agent_record(am.EventType.USER_PROMPT, "p-1", ns(kept, 6), **who, prompt_length=9),
        agent_record(am.EventType.CODE_CHANGE, "l-1", ns(kept, 7), **who, lines_added=4),
    ]
    other_day = [
        call("c-3", ns(gone, 1), premium_requests=1.0, nano_aiu=500_000_000),
        tool("d-z", "z", ns(gone, 2), "decision"),
        tool("r-z", "z", ns(gone, 3), "result"),
    ]
    exporter = make_exporter(db, str(tmp_path))
    try:
        exporter.consume_logs(Logs.from_proto(logs_request(remaining)), "remaining")
        # reprice's correction of c-1: a revision the views count as a change of its cost
        db.client.command(
            f"INSERT INTO {db.name}.agent_api_calls SELECT * REPLACE "
            "(toUInt32(1) AS revision, cost_usd AS previous_cost_usd, 0.75 AS cost_usd) "
            f"FROM {db.name}.agent_api_calls WHERE event_id = 'c-1'"
        )
        session = f"SELECT * FROM {db.name}.sessions WHERE session_id = 's-rebuild'"
        before = db.rows(session)
        exporter.consume_logs(Logs.from_proto(logs_request(other_day)), "other-day")
    finally:
        exporter.shutdown()

    # What the remaining rows say, so that the expectation could not hold by accident.
    day = f"toDate(timestamp) = '{kept.date()}'"
    calls = f"{db.name}.agent_api_calls WHERE {day}"
    expected = db.rows(
        f"SELECT (SELECT uniqExact(tool_call_id) FROM {db.name}.agent_tool_calls WHERE {day}), "
        f"(SELECT sumIf(premium_requests, revision = 0) FROM {calls}), "
        f"(SELECT sumIf(nano_aiu, revision = 0) FROM {calls}), "
        f"(SELECT argMax(cost_usd, revision) FROM {calls} AND event_id = 'c-1') + 0.25"
    )
    assert expected == [(2, 1.5, 2_000_000_000, 1.0)]
    columns = [c[0] for c in db.rows(f"DESCRIBE TABLE {db.name}.sessions")]
    figures = ("tool_calls", "premium_requests", "nano_aiu", "cost_usd")
    assert [tuple(before[0][columns.index(name)] for name in figures)] == expected
    assert db.rows(session) != before  # the other day counted until it is deleted

    selection = lifecycle.Selection(gone.date(), gone.date())
    plan = lifecycle.plan_delete(db.client, db.settings, selection)
    assert plan.sessions == [("copilot", "s-rebuild")]
    lifecycle.delete(db.client, db.settings, selection, plan)

    after = db.rows(session)
    assert dict(zip(columns, after[0], strict=True)) == dict(zip(columns, before[0], strict=True))
    assert len(after) == 1


def test_session_rebuild_runs_the_query_of_each_sessions_view_as_migrated() -> None:
    """For every agent table, the rebuild's SELECT is the query its sessions view runs after
    the last migration that (re)defined it, read from the rendered migrations themselves."""
    settings = schema.SchemaSettings(database="db")
    migrations = schema.render_migrations(settings)
    rebuilds = schema.session_rebuild_statements(settings)
    tables = [t.table for t in schema.AGENT_TABLES.values()]
    assert len(rebuilds) == len(tables)
    for table, rebuild in zip(tables, rebuilds, strict=True):
        view = settings.local(f"{table}_sessions_mv")
        defined = [sql for sql in migrations if f" {view} " in sql]
        assert defined, table
        query = re.split(r" AS (?=SELECT)| MODIFY QUERY ", defined[-1], maxsplit=1)[1]
        select = rebuild[rebuild.index(") SELECT ") + 2 :]
        rows = re.search(
            r"FROM (\(SELECT \* FROM (\S+) WHERE .*? LIMIT 1 BY [^)]*\)) AS src", select
        )
        assert rows and rows.group(2) == settings.qualified(table), rebuild
        assert select.replace(rows.group(1), settings.local(table)) == query, table
