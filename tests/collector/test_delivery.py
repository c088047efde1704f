"""Delivery guarantees of ``agentwatch serve`` into ClickHouse, as a user runs it.

Every test starts the collector as a child process (``agentwatch serve -c FILE``) with the
clickhouse exporter on a write-ahead log, and its own embedded ClickHouse on a fixed port, so
the test can stop the server and start it again on the same port and data directory: the
exporter talks to it through ``endpoint``, the same code path as a production server.

Each record carries a unique ``seq`` attribute and is an agent event with its own event id, so
the raw table (``otel_logs``, deduplicated only by ``insert_deduplication_token``) and the agent
tables (also by event id) are both checked: every record the collector acknowledged is stored,
exactly once, and nothing it refused is stored.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from prometheus_client.parser import text_string_to_metric_families

from collector import agent_model as am
from collector.component import LogsData
from exporters.clickhouse.embedded import EmbeddedClickHouse, http_query
from tests.support.clickhouse_fixture import ResponseDroppingProxy
from tests.support.collector_process import CollectorProcess, free_port
from tests.support.otlp_factory import attr
from tests.support.polling import wait_for

DATABASE = "delivery"
EXPORTER = "clickhouse"
OUTAGE_SECONDS = 6.0


# --- the store ------------------------------------------------------------------------------


@pytest.fixture
def clickhouse(tmp_path: Path) -> Iterator[EmbeddedClickHouse]:
    """An embedded ClickHouse on a port fixed for the whole test, not started yet."""
    server = EmbeddedClickHouse(
        tmp_path / "clickhouse", port=free_port(), startup_timeout=60.0, stop_timeout=10.0
    )
    try:
        yield server
    finally:
        pid = server.pid
        server.stop()
        if pid is not None:  # never leave a 300 MB server behind
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def query(server: EmbeddedClickHouse, sql: str) -> list[list[str]]:
    text = http_query(server.port, sql, timeout=30.0)
    return [line.split("\t") for line in text.splitlines()]


def stored_rows(server: EmbeddedClickHouse) -> int:
    """Rows in ``otel_logs``; 0 while the schema does not exist yet."""
    try:
        return int(query(server, f"SELECT count() FROM {DATABASE}.otel_logs")[0][0])
    except (OSError, urllib.error.URLError, ValueError, IndexError):
        return 0


def agent_rows(server: EmbeddedClickHouse) -> int:
    try:
        return int(
            query(
                server,
                f"SELECT (SELECT count() FROM {DATABASE}.agent_api_calls) + "
                f"(SELECT count() FROM {DATABASE}.agent_tool_calls)",
            )[0][0]
        )
    except (OSError, urllib.error.URLError, ValueError, IndexError):
        return 0


@dataclass
class Ledger:
    """What the client knows: acknowledged seqs, refused seqs and seqs of unknown fate (the
    connection broke before an answer), each a set of record numbers."""

    accepted: set[int] = field(default_factory=set)
    refused: set[int] = field(default_factory=set)
    unknown: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, outcome: str, seqs: range) -> None:
        with self.lock:
            getattr(self, outcome).update(seqs)


def assert_exactly_once(server: EmbeddedClickHouse, ledger: Ledger) -> None:
    """Every acknowledged record stored once, in the raw and the agent tables; nothing refused
    stored; count, distinct count and sum of ``seq`` agree (the issue's checksum)."""
    seq = "toUInt64(LogAttributes['seq'])"
    count, distinct, total = (
        int(v)
        for v in query(
            server, f"SELECT count(), uniqExact({seq}), sum({seq}) FROM {DATABASE}.otel_logs"
        )[0]
    )
    duplicated = query(
        server,
        f"SELECT {seq} AS s, count() AS n FROM {DATABASE}.otel_logs GROUP BY s HAVING n > 1 "
        "ORDER BY s LIMIT 10",
    )
    stored = {int(row[0]) for row in query(server, f"SELECT {seq} FROM {DATABASE}.otel_logs")}
    assert duplicated == [], f"records stored more than once (seq, times): {duplicated}"
    assert count == distinct == len(stored)
    assert not ledger.accepted - stored, f"acknowledged but lost: {len(ledger.accepted - stored)}"
    assert not stored - ledger.accepted - ledger.unknown, "stored what was never acknowledged"
    assert not stored & ledger.refused, "stored what the collector refused"
    if not ledger.unknown:
        assert (count, total) == (len(ledger.accepted), sum(ledger.accepted))

    event_ids = query(
        server,
        "SELECT count(), uniqExact(event_id) FROM ("
        f"SELECT event_id FROM {DATABASE}.agent_api_calls UNION ALL "
        f"SELECT event_id FROM {DATABASE}.agent_tool_calls)",
    )[0]
    assert int(event_ids[0]) == int(event_ids[1]) == count, f"agent rows {event_ids} vs {count}"


# --- the client -----------------------------------------------------------------------------

NOW_NS = time.time_ns()


def agent_logs(seqs: range) -> LogsData:
    """Claude-Code-like agent events, already normalised: half model calls, half tool calls."""
    records = []
    for seq in seqs:
        common = [
            attr("seq", seq),
            attr(am.EVENT_ID, f"delivery-{seq}"),
            attr(am.AGENT, "claude_code"),
            attr(am.SESSION_ID, f"session-{seq // 100}"),
            attr(am.USER_ID, f"user-{seq % 7}"),
        ]
        if seq % 2 == 0:
            specific = [
                attr("event.name", "api_request"),
                attr(am.EVENT, am.EventType.API_CALL.value),
                attr(am.MODEL, "claude-sonnet-4-5"),
                attr(am.INPUT_TOKENS, 1200),
                attr(am.OUTPUT_TOKENS, 57 + seq % 100),
                attr(am.COST_USD, 0.02),
            ]
        else:
            specific = [
                attr("event.name", "tool_result"),
                attr(am.EVENT, am.EventType.TOOL_CALL.value),
                attr(am.TOOL_NAME, "Bash"),
                attr(am.SUCCESS, True),
            ]
        records.append(
            LogRecord(
                time_unix_nano=NOW_NS + seq,
                body=AnyValue(string_value=f"claude_code.{specific[0].value.string_value}"),
                attributes=common + specific,
            )
        )
    return LogsData(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[attr("service.name", "delivery-test")]),
                scope_logs=[
                    ScopeLogs(
                        scope=InstrumentationScope(name="com.anthropic.claude_code.events"),
                        log_records=records,
                    )
                ],
            )
        ]
    )


@dataclass
class Answer:
    status: int  # HTTP status, or 0 when the connection broke before an answer
    retry_after: str | None = None
    rejected: int = 0


def post_logs(port: int, data: LogsData) -> Answer:
    """One OTLP/HTTP protobuf export on a fresh connection, as an SDK exporter sends it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            "/v1/logs",
            data.SerializeToString(),
            {"Content-Type": "application/x-protobuf"},
        )
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException):
        return Answer(0)
    finally:
        conn.close()
    answer = Answer(response.status, response.getheader("Retry-After"))
    if response.status == 200:
        parsed = ExportLogsServiceResponse.FromString(body)
        answer.rejected = parsed.partial_success.rejected_log_records
    return answer


def send_until_accepted(port: int, seqs: range, ledger: Ledger, give_up_after: float) -> bool:
    """Send one request, retrying on 429/503 as the OTLP spec asks, until acknowledged."""
    data = agent_logs(seqs)
    deadline = time.monotonic() + give_up_after
    while True:
        answer = post_logs(port, data)
        if answer.status == 200:
            assert answer.rejected == 0
            ledger.record("accepted", seqs)
            return True
        if answer.status == 0:
            ledger.record("unknown", seqs)
            return False
        assert answer.status in (429, 503), f"unexpected HTTP {answer.status}"
        assert answer.retry_after is not None, "push-back must say when to retry"
        if time.monotonic() > deadline:
            ledger.record("refused", seqs)
            return False
        time.sleep(min(float(answer.retry_after), 0.2))  # sooner than asked: keeps tests short


class SteadyClient(threading.Thread):
    """Sends ``batch`` records every ``interval`` seconds until stopped, like an agent fleet."""

    def __init__(self, port: int, ledger: Ledger, batch: int = 20, interval: float = 0.02):
        super().__init__(name="steady-client", daemon=True)
        self.port, self.ledger, self.batch, self.interval = port, ledger, batch, interval
        self.next_seq = 0
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                seqs = range(self.next_seq, self.next_seq + self.batch)
                self.next_seq += self.batch
                send_until_accepted(self.port, seqs, self.ledger, give_up_after=30.0)
                self.stop_event.wait(self.interval)
        except BaseException as exc:  # handed to the test
            self.error = exc

    def finish(self) -> None:
        self.stop_event.set()
        self.join(60)
        assert not self.is_alive(), "client did not stop"
        if self.error is not None:
            raise self.error

    def accepted(self) -> int:
        with self.ledger.lock:
            return len(self.ledger.accepted)


# --- the collector --------------------------------------------------------------------------


def delivery_config(
    workdir: Path,
    clickhouse_port: int,
    queue: dict[str, Any] | None = None,
    exporter: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """OTLP in, clickhouse (wal) out; a Prometheus exporter serves the self-metrics;
    ``exporter`` adds to the clickhouse exporter's settings."""
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{free_port()}"},
                    "http": {"endpoint": f"127.0.0.1:{free_port()}"},
                }
            }
        },
        "exporters": {
            EXPORTER: {
                "endpoint": f"http://127.0.0.1:{clickhouse_port}",
                "database": DATABASE,
                "connect_timeout": 2,
                "send_timeout": 20,
                "sending_queue": {"storage": "wal", "batch_timeout": 0.05, **(queue or {})},
                "retry_on_failure": {"initial_interval": 0.05, "max_interval": 0.5},
                **(exporter or {}),
            },
            "prometheus": {"endpoint": f"127.0.0.1:{free_port()}"},
        },
        "service": {
            "data_dir": str(workdir / "data"),
            "shutdown_timeout": 30,
            "logs": {"level": "info", "format": "json"},
            "pipelines": {
                "logs": {"receivers": ["otlp"], "exporters": [EXPORTER]},
                "metrics": {"receivers": ["otlp"], "exporters": ["prometheus"]},
            },
        },
    }


def self_metric(collector: CollectorProcess, name: str, **labels: str) -> float:
    """A sample of the collector's own telemetry, scraped from its Prometheus endpoint."""
    endpoint = collector.config["exporters"]["prometheus"]["endpoint"]
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def wal_dir(workdir: Path) -> Path:
    """The write-ahead log of the exporter's logs queue (the signal these tests send)."""
    return workdir / "data" / "wal" / EXPORTER / "logs"


def wal_int(workdir: Path, name: str) -> int:
    path = wal_dir(workdir) / name
    return int(path.read_text().strip()) if path.exists() else 0


def acked_at_least(workdir: Path, seq: int) -> Callable[[], bool]:
    return lambda: wal_int(workdir, "acked") >= seq


def cut_since(proxy: ResponseDroppingProxy, cuts: int) -> Callable[[], bool]:
    """The proxy dropped another answer: the server committed an insert the client never saw."""
    return lambda: proxy.cuts > cuts


def wal_segment_bytes(workdir: Path) -> int:
    return sum(p.stat().st_size for p in wal_dir(workdir).glob("seg-*.wal"))


@pytest.fixture
def collectors() -> Iterator[list[CollectorProcess]]:
    """Collector processes a test starts; any left running are killed at the end."""
    started: list[CollectorProcess] = []
    yield started
    for collector in started:
        if collector.proc is not None and collector.proc.poll() is None:
            collector.kill9()


def start_collector(
    collectors: list[CollectorProcess],
    workdir: Path,
    config: dict[str, Any],
    wait_for: str = "/ready",
) -> CollectorProcess:
    collector = CollectorProcess(config, workdir)
    collectors.append(collector)
    return collector.start(timeout=60, wait_for=wait_for)


# --- the tests ------------------------------------------------------------------------------


def test_clickhouse_outage_while_clients_send(
    tmp_path: Path, clickhouse: EmbeddedClickHouse, collectors: list[CollectorProcess]
) -> None:
    """ClickHouse stops while clients keep sending; the wal keeps accepting; after the server
    is back every acknowledged record is stored exactly once."""
    clickhouse.start()
    collector = start_collector(collectors, tmp_path, delivery_config(tmp_path, clickhouse.port))
    ledger = Ledger()
    client = SteadyClient(collector.http_port, ledger)
    client.start()
    try:
        wait_for(lambda: stored_rows(clickhouse) >= 200, 30, "the first rows in ClickHouse")
        clickhouse.stop()
        during_outage = client.accepted()
        time.sleep(OUTAGE_SECONDS)  # the outage itself, while the client keeps sending
        accepted_while_down = client.accepted() - during_outage
        clickhouse.start()  # same port, same data directory
        wait_for(
            lambda: client.accepted() >= during_outage + accepted_while_down + 200,
            30,
            "more records after recovery",
        )
    finally:
        client.finish()
    assert accepted_while_down >= 200, "the wal must keep accepting while ClickHouse is down"
    wait_for(lambda: stored_rows(clickhouse) >= len(ledger.accepted), 90, "every record to arrive")
    assert collector.stop() == 0, collector.logs()  # drains: nothing is still on its way
    assert not ledger.refused and not ledger.unknown
    assert_exactly_once(clickhouse, ledger)
    assert wal_int(tmp_path, "acked") > 0


def test_kill_9_with_acknowledged_data_in_the_wal(
    tmp_path: Path, clickhouse: EmbeddedClickHouse, collectors: list[CollectorProcess]
) -> None:
    """ClickHouse is down, so acknowledged data sits in the wal; ``kill -9`` the collector;
    restarted with ClickHouse up, it stores every acknowledged record exactly once."""
    config = delivery_config(tmp_path, clickhouse.port)
    collector = start_collector(collectors, tmp_path, config, wait_for="/health")
    ledger = Ledger()
    for first in range(0, 2000, 50):
        assert post_logs(collector.http_port, agent_logs(range(first, first + 50))).status == 200
        ledger.record("accepted", range(first, first + 50))
    # Wait until the worker has formed its first batch and is retrying it against the dead
    # server, so the kill also exercises the re-forming of an in-flight batch.
    wait_for(lambda: wal_int(tmp_path, "inflight") > 0, 30, "a batch in flight")
    assert wal_int(tmp_path, "acked") == 0
    assert wal_segment_bytes(tmp_path) > 0
    collector.kill9()

    clickhouse.start()
    restarted = start_collector(collectors, tmp_path, config)
    wait_for(lambda: stored_rows(clickhouse) >= 2000, 60, "the wal to be delivered")
    assert restarted.stop() == 0, restarted.logs()
    assert_exactly_once(clickhouse, ledger)
    assert wal_int(tmp_path, "acked") == 2000 // 50  # one wal record per request
    assert wal_segment_bytes(tmp_path) == 0  # delivered segments are removed


def test_kill_9_after_commit_before_ack_does_not_duplicate(
    tmp_path: Path, clickhouse: EmbeddedClickHouse, collectors: list[CollectorProcess]
) -> None:
    """The retry path for real: the collector dies after ClickHouse committed a batch's raw
    rows but before the wal recorded the batch as delivered. A proxy between the two lets the
    ``otel_logs`` insert commit and then drops the connection before the answer, every time
    while armed, so the batch stays undelivered however often the exporter retries it; then
    the collector is killed. The restarted collector re-forms the same batch with the same id
    and sends it again; ``insert_deduplication_token`` makes ClickHouse ignore what it already
    has (``otel_logs`` has no other deduplication)."""
    clickhouse.start()
    proxy = ResponseDroppingProxy(clickhouse.port, DATABASE)
    try:
        # Uncompressed, so the proxy can read the table name at the start of the insert.
        config = delivery_config(tmp_path, proxy.port, exporter={"compression": "none"})
        ledger = Ledger()
        per_request = 1000
        rounds = 2
        total = 0
        for round_no in range(1, rounds + 2):
            collector = start_collector(collectors, tmp_path, config)
            # Every earlier request (wal seq 1..round_no-1) is delivered, the batch that was in
            # flight at the kill included, and it did not add a single row.
            wait_for(acked_at_least(tmp_path, round_no - 1), 60, "the re-sent batch")
            assert (stored_rows(clickhouse), agent_rows(clickhouse)) == (total, total)
            if round_no > 1:
                # The restarted collector really sent that batch again; ClickHouse dropped it.
                resent = self_metric(
                    collector,
                    "agentwatch_clickhouse_inserted_rows_total",
                    exporter=EXPORTER,
                    table="otel_logs",
                )
                assert resent == per_request
            if round_no > rounds:
                break
            cuts = proxy.cuts
            proxy.arm("otel_logs", 10**9)
            seqs = range(total, total + per_request)
            assert post_logs(collector.http_port, agent_logs(seqs)).status == 200
            ledger.record("accepted", seqs)
            wait_for(cut_since(proxy, cuts), 60, "an insert committed without an answer")
            collector.kill9()
            proxy.arm("", 0)  # the next collector reaches ClickHouse normally
            # Committed, though never acknowledged: the agent tables, written after the raw
            # rows, are still missing, and the wal still has this request (seq n) in flight.
            assert stored_rows(clickhouse) == total + per_request
            assert agent_rows(clickhouse) == total
            assert (wal_int(tmp_path, "acked"), wal_int(tmp_path, "inflight")) == (
                round_no - 1,
                round_no,
            )
            total += per_request
        assert collector.stop() == 0, collector.logs()
    finally:
        proxy.close()
    assert_exactly_once(clickhouse, ledger)


def grpc_export(port: int, data: LogsData) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            LogsServiceStub(channel).Export(data, timeout=30)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    "queue",
    [
        pytest.param({"storage": "wal", "max_bytes": 48 * 1024}, id="wal-max-bytes"),
        pytest.param({"storage": "memory", "queue_size": 400}, id="memory-queue-size"),
    ],
)
def test_full_queue_pushes_back_on_http_and_grpc_and_loses_nothing(
    tmp_path: Path,
    clickhouse: EmbeddedClickHouse,
    collectors: list[CollectorProcess],
    queue: dict[str, Any],
) -> None:
    """ClickHouse is down and the exporter's queue fills up: both receivers push back (HTTP
    429/503 with Retry-After, gRPC RESOURCE_EXHAUSTED/UNAVAILABLE) instead of holding more;
    every refusal is counted, nothing is dropped; after recovery everything acknowledged is
    stored exactly once and the receivers accept again."""
    config = delivery_config(tmp_path, clickhouse.port, queue)
    collector = start_collector(collectors, tmp_path, config, wait_for="/health")
    ledger = Ledger()
    batch = 20
    seq = 0
    first_refusal: Answer | None = None
    while first_refusal is None:
        assert seq < 400 * batch, "the queue never filled up"
        seqs = range(seq, seq + batch)
        seq += batch
        answer = post_logs(collector.http_port, agent_logs(seqs))
        if answer.status == 200:
            ledger.record("accepted", seqs)
        else:
            first_refusal = answer
            ledger.record("refused", seqs)
    assert first_refusal.status in (429, 503) and first_refusal.retry_after is not None
    assert len(ledger.accepted) >= batch
    for _ in range(10):  # still full: every further request is refused, on both protocols
        seqs = range(seq, seq + batch)
        seq += batch
        assert post_logs(collector.http_port, agent_logs(seqs)).status in (429, 503)
        ledger.record("refused", seqs)
        seqs = range(seq, seq + batch)
        seq += batch
        code = grpc_export(collector.grpc_port, agent_logs(seqs))
        assert code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE), code
        ledger.record("refused", seqs)

    # Bounded: what the queue holds stayed within its limit (plus the one request that
    # crossed a byte bound), and every item is accounted for in the self-metrics.
    if queue["storage"] == "wal":
        request_bytes = len(agent_logs(range(seq - batch, seq)).SerializeToString()) + 64
        assert wal_segment_bytes(tmp_path) <= queue["max_bytes"] + request_bytes
    queued = self_metric(collector, "agentwatch_exporter_queue_size", exporter=EXPORTER)
    assert queued == len(ledger.accepted)
    if queue["storage"] == "memory":
        assert queued <= queue["queue_size"]
    refused = self_metric(
        collector,
        "agentwatch_receiver_refused_items_total",
        receiver="otlp",
        signal="logs",
        reason="queue_full",
    )
    assert refused == len(ledger.refused)
    assert self_metric(
        collector, "agentwatch_receiver_accepted_items_total", receiver="otlp", signal="logs"
    ) == len(ledger.accepted)

    clickhouse.start()
    wait_for(lambda: stored_rows(clickhouse) >= len(ledger.accepted), 60, "the queue to drain")
    # Pushback is over on both protocols.
    seqs = range(seq, seq + batch)
    seq += batch
    assert send_until_accepted(collector.http_port, seqs, ledger, give_up_after=30)
    seqs = range(seq, seq + batch)
    assert grpc_export(collector.grpc_port, agent_logs(seqs)) == grpc.StatusCode.OK
    ledger.record("accepted", seqs)
    wait_for(lambda: stored_rows(clickhouse) >= len(ledger.accepted), 60, "the last records")
    assert self_metric(collector, "agentwatch_exporter_dropped_items_total") == 0
    assert collector.stop() == 0, collector.logs()
    assert_exactly_once(clickhouse, ledger)
