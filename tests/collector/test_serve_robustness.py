"""``agentwatch serve`` with the default processors, as a user runs it, under two kinds of
stress that used to lose acknowledged data (issue 10, "Robustness"):

* many concurrent first requests right after a fresh start (the vendor registry was marked
  loaded before its modules were imported, so racing requests were stored as unknown agents);
* one request mixing good records with legal but odd values (bytes identities, counts beyond
  int64, NaN and infinities), which made a processor raise and the whole request fail with
  HTTP 500 / gRPC INTERNAL.

Each test checks the public ``api_calls`` view of a real ClickHouse.
"""

from __future__ import annotations

import http.client
import threading
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from prometheus_client.parser import text_string_to_metric_families

from collector.component import LogsData
from exporters.clickhouse.embedded import EmbeddedClickHouse, http_query
from tests.support.collector_process import CollectorProcess, free_port
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
FRESH_STARTS = 4
CONCURRENT_FIRST_REQUESTS = 16


def default_config(workdir: Path, clickhouse: EmbeddedClickHouse, database: str) -> dict[str, Any]:
    """configs/default.yaml with loopback ports, this test's data dir and database."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    protocols = config["receivers"]["otlp"]["protocols"]
    protocols["grpc"]["endpoint"] = f"127.0.0.1:{free_port()}"
    protocols["http"]["endpoint"] = f"127.0.0.1:{free_port()}"
    clickhouse_cfg = config["exporters"]["clickhouse"]
    clickhouse_cfg.update(endpoint=clickhouse.url, database=database, username="default")
    clickhouse_cfg["password"] = ""
    clickhouse_cfg["sending_queue"]["batch_timeout"] = 0
    config["exporters"]["prometheus"]["endpoint"] = f"127.0.0.1:{free_port()}"
    config["service"]["data_dir"] = str(workdir / "data")
    return config


def kv(key: str, value: AnyValue | str | int | float) -> KeyValue:
    if isinstance(value, AnyValue):
        return KeyValue(key=key, value=value)
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


def api_request(session: str, request_id: str, /, **odd: AnyValue) -> LogRecord:
    """A Claude Code 2.1.328 ``api_request`` event (docs: /work/shared/agents.md), with any
    attribute replaced by an odd value."""
    attrs: dict[str, AnyValue | str | int | float] = {
        "event.name": "api_request",
        "session.id": session,
        "user.id": "8cec9ec8abb326a464b5617add529d97",
        "event.sequence": 1,
        "prompt.id": f"p-{request_id}",
        "model": "claude-sonnet-4-5",
        "input_tokens": "1200",
        "output_tokens": "57",
        "cache_read_tokens": "15000",
        "cache_creation_tokens": "3000",
        "cost_usd": 0.020205,
        "duration_ms": "1834",
        "request_id": request_id,
    }
    attrs.update(odd)
    return LogRecord(
        time_unix_nano=1_795_362_821_100_000_000,
        body=AnyValue(string_value="claude_code.api_request"),
        attributes=[kv(k, v) for k, v in attrs.items()],
    )


def claude_request(records: list[LogRecord]) -> LogsData:
    data = LogsData()
    rl = data.resource_logs.add()
    rl.resource.attributes.extend(
        [kv("service.name", "claude-code"), kv("service.version", "2.1.328")]
    )
    sl = rl.scope_logs.add()
    sl.scope.name = "com.anthropic.claude_code.events"
    sl.log_records.extend(records)
    return data


def post_http(port: int, data: LogsData) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            "/v1/logs",
            body=data.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def export_grpc(port: int, data: LogsData) -> ExportLogsServiceResponse:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response: ExportLogsServiceResponse = LogsServiceStub(channel).Export(data, timeout=30)
        return response


def stored_requests(clickhouse: EmbeddedClickHouse, database: str, sessions: list[str]) -> set[str]:
    names = ",".join(f"'{s}'" for s in sessions)
    text = http_query(
        clickhouse.port,
        f"SELECT request_id FROM {database}.api_calls WHERE session_id IN ({names})",
        timeout=30.0,
    )
    return set(text.split())


def samples(collector: CollectorProcess, family: str) -> list[Any]:
    """The samples of one metric family on the collector's Prometheus endpoint."""
    endpoint = collector.config["exporters"]["prometheus"]["endpoint"]
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as response:
        text = response.read().decode()
    return [
        sample
        for found in text_string_to_metric_families(text)
        if found.name == family
        for sample in found.samples
        if sample.name.endswith("_total") or sample.name == family
    ]


def sent_logs(collector: CollectorProcess) -> float:
    """Log records the clickhouse exporter has stored, raw and agent tables both."""
    return sum(
        s.value
        for s in samples(collector, "agentwatch_exporter_sent_items")
        if s.labels == {"exporter": "clickhouse", "signal": "logs"}
    )


def raw_records(clickhouse: EmbeddedClickHouse, database: str, sessions: list[str]) -> int:
    names = ",".join(f"'{s}'" for s in sessions)
    try:
        text = http_query(
            clickhouse.port,
            f"SELECT count() FROM {database}.otel_logs "
            f"WHERE LogAttributes['session.id'] IN ({names})",
            timeout=30.0,
        )
    except OSError:
        return 0  # the schema is not there yet
    return int(text.strip() or 0)


def first_requests(collector: CollectorProcess, sessions: list[str]) -> dict[str, object]:
    """One Claude Code api_request per session, all sent at once (half over HTTP, half over
    gRPC) as the first requests the process sees; the answer to each."""
    barrier = threading.Barrier(len(sessions))
    answers: dict[str, object] = {}

    def send(i: int, session: str) -> None:
        data = claude_request([api_request(session, f"req-{session}")])
        barrier.wait()
        if i % 2:
            answers[session] = export_grpc(collector.grpc_port, data)
        else:
            answers[session] = post_http(collector.http_port, data)[0]

    threads = [threading.Thread(target=send, args=(i, s)) for i, s in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


@pytest.fixture
def database(clickhouse_server: EmbeddedClickHouse) -> str:
    return f"robust_{uuid.uuid4().hex[:10]}"


def test_concurrent_first_requests_after_a_fresh_start_are_all_normalised(
    tmp_path: Path, clickhouse_server: EmbeddedClickHouse, database: str
) -> None:
    """Every record of the first requests of a fresh process reaches api_calls: none is
    acknowledged before the normaliser knows every agent."""
    for start in range(FRESH_STARTS):
        workdir = tmp_path / f"start{start}"
        workdir.mkdir()
        collector = CollectorProcess(default_config(workdir, clickhouse_server, database), workdir)
        collector.start()
        try:
            sessions = [str(uuid.uuid4()) for _ in range(CONCURRENT_FIRST_REQUESTS)]
            answers = first_requests(collector, sessions)
            assert len(answers) == len(sessions)
            for session, answer in answers.items():
                if isinstance(answer, int):
                    assert answer == 200, session
                else:
                    assert isinstance(answer, ExportLogsServiceResponse)
                    assert not answer.HasField("partial_success"), answer
            expected = {f"req-{s}" for s in sessions}
            n = len(sessions)
            wait_for(
                lambda c=collector, n=n: sent_logs(c) >= n,  # type: ignore[misc]
                timeout=60,
                what="every acknowledged record stored (raw and agent tables)",
            )
            assert raw_records(clickhouse_server, database, sessions) == len(sessions)
            missing = expected - stored_requests(clickhouse_server, database, sessions)
            assert not missing, f"start {start}: stored raw but not in api_calls: {missing}"
            unknown = samples(collector, "agentwatch_normalize_unknown_service_items")
            assert unknown == [], f"start {start}: stored as unknown services: {unknown}"
        finally:
            assert collector.stop() == 0, collector.logs()


# --- odd values in one request with good ones -------------------------------------------------


def odd_values() -> dict[str, dict[str, AnyValue]]:
    """What was seen to fail a whole request (issue 10), one record each."""
    bad_map = AnyValue()
    entry = bad_map.kvlist_value.values.add()
    entry.key, entry.value.bytes_value = "raw", b"\xff\xfe\x00"
    return {
        "session_bytes": {"session.id": AnyValue(bytes_value=b"\xde\xad\xbe\xef\xff")},
        "map_with_bytes": {"request_id": bad_map},
        "tokens_1e30": {"input_tokens": AnyValue(string_value="1e30")},
        "tokens_above_int64": {"output_tokens": AnyValue(string_value=str(2**64 + 7))},
        "tokens_int64_max": {"cache_read_tokens": AnyValue(int_value=2**63 - 1)},
        "cost_inf": {"cost_usd": AnyValue(double_value=float("inf"))},
        "cost_nan": {"cost_usd": AnyValue(double_value=float("nan"))},
        "duration_nan": {"duration_ms": AnyValue(string_value="nan")},
        "model_bytes": {"model": AnyValue(bytes_value=b"\x80invalid utf-8")},
    }


def mixed_request(tag: str) -> tuple[LogsData, list[str], list[str]]:
    """Good records interleaved with one record per odd value; their request ids."""
    good: list[str] = []
    odd: list[str] = []
    records: list[LogRecord] = []
    for name, values in odd_values().items():
        good_id = f"{tag}-good-{name}"
        records.append(api_request(f"{tag}-session", good_id))
        good.append(good_id)
        odd_id = f"{tag}-odd-{name}"
        records.append(api_request(f"{tag}-session", odd_id, **values))
        odd.append(odd_id)
    return claude_request(records), good, odd


def test_odd_values_never_fail_a_request_and_good_records_are_stored(
    tmp_path: Path, clickhouse_server: EmbeddedClickHouse, database: str
) -> None:
    collector = CollectorProcess(default_config(tmp_path, clickhouse_server, database), tmp_path)
    collector.start()
    try:
        http_data, http_good, http_odd = mixed_request("http")
        status, body = post_http(collector.http_port, http_data)
        assert status == 200, body
        answer = ExportLogsServiceResponse.FromString(body)
        assert answer.partial_success.rejected_log_records == 0, answer
        grpc_data, grpc_good, grpc_odd = mixed_request("grpc")
        response = export_grpc(collector.grpc_port, grpc_data)  # raises on a non-OK status
        assert response.partial_success.rejected_log_records == 0, response

        every_session = ["http-session", "grpc-session"]
        wanted = set(http_good + grpc_good)
        wait_for(
            lambda: stored_requests(clickhouse_server, database, every_session) >= wanted,
            timeout=60,
        )
        # The odd records are legal OTLP: they are stored too, normalised with what could be
        # read (an unreadable count is 0, an unreadable cost is left to the price book).
        stored = stored_requests(clickhouse_server, database, every_session)
        odd_stored = {r for r in http_odd + grpc_odd if r in stored}
        assert odd_stored >= {
            f"{tag}-odd-{name}"
            for tag in ("http", "grpc")
            for name in ("tokens_1e30", "tokens_above_int64", "cost_inf", "cost_nan")
        }
        row = http_query(
            clickhouse_server.port,
            f"SELECT input_tokens, output_tokens, cost_usd > 0 FROM {database}.api_calls "
            "WHERE request_id = 'http-good-tokens_1e30'",
            timeout=30.0,
        )
        assert row.split() == ["1200", "57", "1"]
    finally:
        assert collector.stop() == 0, collector.logs()
