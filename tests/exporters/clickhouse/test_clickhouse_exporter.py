"""The clickhouse exporter's config, error classification (retryable or not) and readiness,
against a real ClickHouse."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
import time
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Exemplar,
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from pydantic import ValidationError

from collector import agent_model as am
from collector import registry
from collector.component import (
    ConfigContext,
    ExportError,
    Host,
    MetricsData,
    PermanentExportError,
    TracesData,
)
from collector.records import Logs, Traces
from exporters.clickhouse import FACTORY, schema
from exporters.clickhouse.config import ClickHouseExporterConfig
from exporters.clickhouse.embedded import free_port
from exporters.clickhouse.exporter import ClickHouseExporter, classify
from tests.support.clickhouse_fixture import (
    ClickHouseDatabase,
    ResponseDroppingProxy,
    agent_record,
    logs_request,
    make_exporter,
)


def test_factory_builds_the_exporter() -> None:
    assert (FACTORY.type_name, FACTORY.kind) == ("clickhouse", "exporter")
    exporter = FACTORY.create("clickhouse/main", FACTORY.config_class())
    assert isinstance(exporter, ClickHouseExporter) and exporter.name == "clickhouse/main"
    assert registry.factory("exporter", "clickhouse") is FACTORY


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"endpoint": "tcp://db:9000"}, "http://host"),
        ({"endpoint": "http://db:99999"}, "port"),
        ({"database": "agent-watch"}, "identifier"),
        ({"cluster": "prod; DROP"}, "identifier"),
        ({"ttl_days": {"otel_logz": 3}}, "unknown tables"),
        ({"ttl_days": {"otel_logs": -1}}, "negative"),
        ({"compression": "brotli"}, "compression"),
        ({"endpoint": "http://db:8123", "bogus": 1}, "bogus"),
    ],
)
def test_config_rejects(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ClickHouseExporterConfig.model_validate(config)


def test_config_check_and_secrets(tmp_path: Path) -> None:
    cfg = ClickHouseExporterConfig.model_validate(
        {
            "endpoint": "https://ch.example.com:8443",
            "password": "s3cret",
            "tls": {"ca_file": "missing-ca.pem", "cert_file": "client.pem"},
            "connect_timeout": "2s",
            "send_timeout": "1m",
            "ttl_days": {"otel_logs": 7},
        }
    )
    (tmp_path / "client.pem").write_text("x")
    errors = cfg.check("exporters.clickhouse", ConfigContext(str(tmp_path), str(tmp_path)))
    assert errors == [
        "exporters.clickhouse.tls.ca_file: file 'missing-ca.pem' does not exist",
        "exporters.clickhouse.tls: cert_file and key_file go together",
    ]
    assert "s3cret" not in repr(cfg)
    assert (cfg.connect_timeout, cfg.send_timeout) == (2.0, 60.0)
    settings = cfg.schema_settings()
    assert settings.ttl_days["otel_logs"] == 7
    assert settings.ttl_days["agent_events"] == schema.DEFAULT_TTL_DAYS["agent_events"]


def test_classify_errors() -> None:
    assert classify(OperationalError("connection refused"), "insert").retryable
    assert classify(DatabaseError("Code: 241 memory limit", code=241), "insert").retryable
    assert classify(DatabaseError("Code: 60 no table", code=60), "insert").retryable
    assert isinstance(classify(DatabaseError("Code: 53", code=53), "insert"), PermanentExportError)
    assert isinstance(classify(TypeError("bad"), "insert"), PermanentExportError)


def test_server_down_is_retryable_and_start_does_not_fail(
    clickhouse_db: ClickHouseDatabase, tmp_path: Path
) -> None:
    """A remote ClickHouse that is down at start: the exporter starts anyway, reports not
    ready, fails batches as retryable, and once the server is reachable creates the schema
    and stores them."""
    port = free_port()
    cfg = ClickHouseExporterConfig(
        endpoint=f"http://127.0.0.1:{port}", database=clickhouse_db.name, connect_timeout=2.0
    )
    exporter = ClickHouseExporter("clickhouse/outage", cfg)
    exporter.start(Host(str(tmp_path)))  # does not raise
    batch = logs_request([agent_record("api_call", "o-1", time.time_ns(), session_id="s")])
    try:
        assert not exporter.ready()
        with pytest.raises(ExportError) as failure:
            exporter.consume_logs(Logs.from_proto(batch), "outage-1")
        assert failure.value.retryable
        # The server comes back on the configured address.
        proxy = ResponseDroppingProxy(
            clickhouse_db.server.port, clickhouse_db.name, listen_port=port
        )
        try:
            assert exporter.ready()
            exporter.consume_logs(Logs.from_proto(batch), "outage-1")
        finally:
            proxy.close()
    finally:
        exporter.shutdown()
    assert clickhouse_db.scalar(f"SELECT count() FROM {clickhouse_db.name}.api_calls") == 1


def test_missing_schema_is_retryable(clickhouse_db: ClickHouseDatabase, tmp_path: Path) -> None:
    """create_schema off and nobody ran ``db migrate``: keep the data and retry."""
    exporter = make_exporter(clickhouse_db, str(tmp_path), create_schema=False)
    try:
        with pytest.raises(ExportError) as failure:
            exporter.consume_logs(
                Logs.from_proto(logs_request([agent_record("api_call", "m-1", time.time_ns())])),
                "no-schema",
            )
        assert failure.value.retryable
        assert "otel_logs" in str(failure.value)
    finally:
        exporter.shutdown()


def test_data_the_server_cannot_take_is_permanent(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    """A column changed by hand to a type our text does not parse as: retrying cannot help."""
    clickhouse_schema.client.command(
        f"ALTER TABLE {clickhouse_schema.name}.otel_logs MODIFY COLUMN EventName UInt64"
    )
    record = agent_record("api_call", "p-1", time.time_ns(), session_id="s")
    record.event_name = "claude_code.api_request"
    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        with pytest.raises(PermanentExportError):
            exporter.consume_logs(Logs.from_proto(logs_request([record])), "bad-type")
    finally:
        exporter.shutdown()


FAR_FUTURE_NS = 2**64 - 1  # valid OTLP (fixed64); DateTime64(9) stops at 2^63 ns


def test_classify_client_side_data_error_is_permanent() -> None:
    """clickhouse-connect refuses to serialise a value before sending: no server code, and the
    same batch would fail the same way forever."""
    refused = classify(DataError("Unable to create native array: value out of range"), "insert")
    assert isinstance(refused, PermanentExportError)
    server_side = classify(DataError("Code: 241 memory limit", code=241), "insert")
    assert server_side.retryable  # the server's code decides, as for any DatabaseError


def test_timestamps_clickhouse_cannot_hold_do_not_stop_the_exporter(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    """A timestamp of 2^64-1 ns in every time column: the records are stored with a time the
    tables can hold (the log's observed time, else the time of export) and the next batch
    goes through, instead of one record failing its batch forever."""
    now = time.time_ns()
    observed = now - 10**9
    with_observed = agent_record("api_call", "far-1", 0, session_id="far")
    with_observed.time_unix_nano, with_observed.observed_time_unix_nano = FAR_FUTURE_NS, observed
    without = agent_record("tool_call", "far-2", 0, tool_name="Read")
    without.time_unix_nano = without.observed_time_unix_nano = FAR_FUTURE_NS
    span = Span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        name="far",
        start_time_unix_nano=FAR_FUTURE_NS,
        end_time_unix_nano=FAR_FUTURE_NS,
        events=[Span.Event(time_unix_nano=FAR_FUTURE_NS, name="e")],
    )
    traces = TracesData(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    point = NumberDataPoint(
        start_time_unix_nano=FAR_FUTURE_NS,
        time_unix_nano=FAR_FUTURE_NS,
        as_int=1,
        exemplars=[Exemplar(time_unix_nano=FAR_FUTURE_NS, as_int=1)],
    )
    metrics = MetricsData(
        resource_metrics=[
            ResourceMetrics(
                scope_metrics=[
                    ScopeMetrics(metrics=[Metric(name="far", gauge=Gauge(data_points=[point]))])
                ]
            )
        ]
    )
    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        exporter.consume_logs(Logs.from_proto(logs_request([with_observed, without])), "far-logs")
        exporter.consume_traces(Traces.from_proto(traces), "far-traces")
        exporter.consume_metrics(metrics, "far-metrics")
        normal = agent_record("api_call", "near-1", now, session_id="near")
        exporter.consume_logs(Logs.from_proto(logs_request([normal])), "near-logs")
    finally:
        exporter.shutdown()
    done = time.time_ns()

    db = clickhouse_schema
    logs = dict(
        db.rows(
            f"SELECT LogAttributes['{am.EVENT_ID}'], toUnixTimestamp64Nano(Timestamp) "
            f"FROM {db.name}.otel_logs"
        )
    )
    assert logs["far-1"] == observed
    assert now <= logs["far-2"] <= done
    assert logs["near-1"] == now
    agent = dict(
        db.rows(f"SELECT event_id, toUnixTimestamp64Nano(timestamp) FROM {db.name}.agent_event_ids")
    )
    assert agent == logs
    ((start, events),) = db.rows(
        f"SELECT toUnixTimestamp64Nano(Timestamp), "
        f"arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) FROM {db.name}.otel_traces"
    )
    assert now <= start <= done and len(events) == 1 and now <= events[0] <= done
    ((point_start, point_time, exemplar_times),) = db.rows(
        "SELECT toUnixTimestamp64Nano(StartTimeUnix), toUnixTimestamp64Nano(TimeUnix), "
        "arrayMap(t -> toUnixTimestamp64Nano(t), Exemplars.TimeUnix) "
        f"FROM {db.name}.otel_metrics_gauge"
    )
    assert all(now <= t <= done for t in (point_start, point_time, *exemplar_times))


def _issue(
    name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, server: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def _write_pem(path: Path, item: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    if isinstance(item, x509.Certificate):
        path.write_bytes(item.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            item.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


class TlsTerminator:
    """A loopback TLS front for ClickHouse's plain HTTP port that requires a client
    certificate, like a TLS-terminating load balancer; asyncio keeps each TLS stream on one
    thread. ClickHouse's own certificate login cannot work behind such a front, so the header
    that asks for it is dropped and the server sees the plain user name."""

    CERT_LOGIN = b"X-ClickHouse-SSL-Certificate-Auth: on\r\n"

    def __init__(self, upstream_port: int, context: ssl.SSLContext) -> None:
        self.upstream_port = upstream_port
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        start = asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=context)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, drop: bytes = b""
        ) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data.replace(drop, b"") if drop else data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, self.CERT_LOGIN), pump(up_reader, writer))

    def close(self) -> None:
        async def shut_down() -> None:
            self._server.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut_down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def test_tls_files_under_home_and_relative_are_checked_and_used(
    clickhouse_db: ClickHouseDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``~/…`` and relative TLS paths resolve the same way in the config check and in the
    connection: mutual TLS to a real server works with them, as for the OTLP exporter."""
    home = tmp_path / "home"
    (home / "pki").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    ca, ca_key = _issue("test ca", None, False)
    server_cert, server_key = _issue("clickhouse", (ca, ca_key), True)
    client_cert, client_key = _issue("agentwatch", (ca, ca_key), False)
    _write_pem(home / "pki" / "ca.pem", ca)
    _write_pem(home / "pki" / "client.pem", client_cert)
    _write_pem(home / "pki" / "client.key", client_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(
        _write_pem(tmp_path / "server.pem", server_cert),
        _write_pem(tmp_path / "server.key", server_key),
    )
    context.load_verify_locations(home / "pki" / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED  # the client certificate must be sent
    front = TlsTerminator(clickhouse_db.server.port, context)
    cfg = ClickHouseExporterConfig.model_validate(
        {
            "endpoint": f"https://127.0.0.1:{front.port}",
            "database": clickhouse_db.name,
            "tls": {
                "ca_file": "~/pki/ca.pem",
                "cert_file": "~/pki/client.pem",
                "key_file": "pki/client.key",
            },
        }
    )
    try:
        assert cfg.check("exporters.clickhouse", ConfigContext(str(home), str(tmp_path))) == []
        exporter = ClickHouseExporter("clickhouse/tls", cfg)
        exporter.start(Host(str(tmp_path)))
        try:
            record = agent_record("api_call", "tls-1", time.time_ns(), session_id="s")
            exporter.consume_logs(Logs.from_proto(logs_request([record])), "tls-batch")
        finally:
            exporter.shutdown()
    finally:
        front.close()
    assert front.connections >= 1
    assert clickhouse_db.scalar(f"SELECT count() FROM {clickhouse_db.name}.api_calls") == 1


def test_view_reader_reads_the_public_views_and_cannot_write(
    clickhouse_db: ClickHouseDatabase, tmp_path: Path
) -> None:
    """What extensions (console, budgets) get: the stored calls, and a server-side refusal of
    any write whatever the statement looks like."""
    exporter = make_exporter(clickhouse_db, str(tmp_path))
    try:
        exporter.consume_logs(
            Logs.from_proto(logs_request([agent_record("api_call", "m-1", time.time_ns())])),
            "reader-1",
        )
        reader = exporter.view_reader()
        try:
            assert reader.query("SELECT count() FROM api_calls").result_rows[0][0] == 1
            with pytest.raises(Exception, match="readonly"):
                reader.command("INSERT INTO agent_event_ids (event_id) VALUES ('x')")
        finally:
            reader.close()
    finally:
        exporter.shutdown()
