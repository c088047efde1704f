"""Exactly-once into ClickHouse: a retried batch and a re-sent event are never counted twice,
in raw tables, agent tables, sessions or hourly rollups, even when the server committed an
insert and only its answer was lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from collector import agent_model as am
from collector import telemetry
from collector.component import ExportError, PermanentExportError
from collector.records import Logs
from exporters.clickhouse import rows
from tests.support.clickhouse_fixture import (
    ClickHouseDatabase,
    ResponseDroppingProxy,
    agent_record,
    logs_request,
    make_exporter,
)

HOUR_NS = 3600 * 10**9
T0 = (time.time_ns() // HOUR_NS - 1) * HOUR_NS


def _calls(n: int, start: int = 0, session: str = "s1") -> list[LogRecord]:
    return [
        agent_record(
            am.EventType.API_CALL,
            f"ev-{i}",
            T0 + i,
            agent="codex",
            session_id=session,
            user_id="u-1",
            model="gpt-5",
            input_tokens=10,
            output_tokens=i,
            cost_usd=0.5,
        )
        for i in range(start, start + n)
    ]


def _counts(db: ClickHouseDatabase) -> dict[str, object]:
    n = db.name
    return {
        "otel_logs": db.scalar(f"SELECT count() FROM {n}.otel_logs"),
        "agent_api_calls": db.scalar(f"SELECT count() FROM {n}.agent_api_calls"),
        "agent_event_ids": db.scalar(f"SELECT count() FROM {n}.agent_event_ids"),
        "session_calls": db.scalar(f"SELECT sum(api_calls) FROM {n}.agent_sessions"),
        "session_output": db.scalar(f"SELECT sum(output_tokens) FROM {n}.agent_sessions"),
        "hourly_calls": db.scalar(f"SELECT sum(api_calls) FROM {n}.agent_usage_hourly"),
        "hourly_cost": db.scalar(f"SELECT sum(cost_usd) FROM {n}.agent_usage_hourly"),
        "checksum": db.scalar(f"SELECT groupBitXor(cityHash64(event_id)) FROM {n}.agent_api_calls"),
    }


def _expected(n: int) -> dict[str, object]:
    return {
        "otel_logs": n,
        "agent_api_calls": n,
        "agent_event_ids": n,
        "session_calls": n,
        "session_output": sum(range(n)),
        "hourly_calls": n,
        "hourly_cost": 0.5 * n,
    }


def _subset(counts: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in counts.items() if k != "checksum"}


def test_same_batch_id_twice_is_stored_once(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    batch = logs_request(_calls(20))
    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        exporter.consume_logs(Logs.from_proto(batch), "batch-1")
        first = _counts(clickhouse_schema)
        exporter.consume_logs(Logs.from_proto(batch), "batch-1")
        exporter.consume_logs(Logs.from_proto(batch), "batch-1")
    finally:
        exporter.shutdown()
    assert _subset(first) == _expected(20)
    assert _counts(clickhouse_schema) == first


def test_insert_token_alone_deduplicates_tables_and_their_views(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    """ClickHouse's own layer, without the exporter's event-id check: the same token twice
    leaves raw, agent, event-id, session and rollup tables unchanged."""
    batch = rows.convert_logs(Logs.from_proto(logs_request(_calls(5))))
    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        client = exporter._ensure_ready()
        for attempt in range(2):
            for table_rows in [*batch.raw, *batch.agent.values()]:
                exporter._insert(client, table_rows, f"batch-x:{table_rows.table}")
            if attempt == 0:
                first = _counts(clickhouse_schema)
    finally:
        exporter.shutdown()
    assert _subset(first) == _expected(5)
    assert _counts(clickhouse_schema) == first


def test_event_resent_in_another_batch_is_not_counted_twice(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    exporter = make_exporter(clickhouse_schema, str(tmp_path), name="clickhouse/resend")
    before = telemetry.value(
        "agentwatch_clickhouse_duplicate_agent_events_total",
        exporter="clickhouse/resend",
        table="agent_api_calls",
    )
    try:
        exporter.consume_logs(Logs.from_proto(logs_request(_calls(10))), "batch-a")
        # A client re-sends events 5..9 together with new events 10..14 in a new request;
        # the same event also appears twice within that request.
        resend = _calls(10, start=5) + _calls(1, start=12)
        exporter.consume_logs(Logs.from_proto(logs_request(resend)), "batch-b")
    finally:
        exporter.shutdown()
    counts = _counts(clickhouse_schema)
    expected = _expected(15)
    expected["otel_logs"] = 10 + 11  # raw tables keep every record received, like upstream
    assert _subset(counts) == expected
    skipped = (
        telemetry.value(
            "agentwatch_clickhouse_duplicate_agent_events_total",
            exporter="clickhouse/resend",
            table="agent_api_calls",
        )
        - before
    )
    assert skipped == 5
    assert clickhouse_schema.scalar(f"SELECT count() FROM {clickhouse_schema.name}.api_calls") == 15


@pytest.fixture
def proxy(clickhouse_schema: ClickHouseDatabase) -> Iterator[ResponseDroppingProxy]:
    p = ResponseDroppingProxy(clickhouse_schema.server.port, clickhouse_schema.name)
    try:
        yield p
    finally:
        p.close()


@pytest.mark.parametrize(
    ("cut_table", "times"), [("otel_logs", 2), ("agent_api_calls", 2), ("otel_logs", 1)]
)
def test_retry_after_lost_response_does_not_duplicate(
    clickhouse_schema: ClickHouseDatabase,
    proxy: ResponseDroppingProxy,
    tmp_path: Path,
    cut_table: str,
    times: int,
) -> None:
    """clickhouse-connect itself replays an insert once when the connection drops; losing
    that answer too makes the exporter fail and the queue retry the batch. Either replay
    carries the same insert_deduplication_token, so the server stores the rows once."""
    batch = logs_request(_calls(8))
    cfg: dict[str, Any] = {"endpoint": proxy.url, "create_schema": False, "compression": "none"}
    exporter = make_exporter(clickhouse_schema, str(tmp_path), **cfg)
    try:
        proxy.arm(cut_table, times)
        if times == 1:
            # the client library's replay succeeded
            exporter.consume_logs(Logs.from_proto(batch), "batch-lost")
        else:
            with pytest.raises(ExportError) as failure:
                exporter.consume_logs(Logs.from_proto(batch), "batch-lost")
            assert failure.value.retryable and not isinstance(failure.value, PermanentExportError)
            # The server did commit what the client saw fail.
            committed = clickhouse_schema.scalar(
                f"SELECT count() FROM {clickhouse_schema.name}.{cut_table}"
            )
            assert committed == 8
            # the queue's retry: same batch id
            exporter.consume_logs(Logs.from_proto(batch), "batch-lost")
        assert proxy.cuts == times
    finally:
        exporter.shutdown()
    assert _subset(_counts(clickhouse_schema)) == _expected(8)
