"""The OTLP/HTTP receiver against real clients: the OpenTelemetry SDK's exporters, raw HTTP/1.1
on a socket (chunked bodies, keep-alive) and hostile payloads. Every bad request is followed by a
good one on the same server, which must still succeed."""

from __future__ import annotations

import datetime
import gzip
import http.client
import ipaddress
import json
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from google.rpc import code_pb2, error_details_pb2, status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from collector import otlp_json, telemetry
from collector.component import (
    REQUEST_TYPES,
    Consumer,
    ConsumeResult,
    Host,
    Refused,
    Signal,
    Telemetry,
    TracesData,
)
from collector.config import ConfigError, parse
from collector.receivers import otlp_http
from collector.receivers.otlp import FACTORY, OtlpReceiver, OtlpReceiverConfig
from collector.records import Logs, Records, Traces
from tests.support.otlp_factory import logs

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
SIGNAL_PATHS = {Signal.LOGS: "/v1/logs", Signal.METRICS: "/v1/metrics", Signal.TRACES: "/v1/traces"}
LIMIT_MIB = 1
LIMIT = LIMIT_MIB * 1024 * 1024
TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"


# --------------------------------------------------------------------------------------------
# Helpers shared with tests/collector/receivers/test_receiver_grpc.py
# --------------------------------------------------------------------------------------------


class RecordingConsumer(Consumer):
    """Keeps what arrives; a test can make it refuse, reject some items, fail or stall."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[tuple[Signal, Telemetry]] = []
        self.refuse_times = 0
        self.retry_after = 1.0
        self.reject = 0
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
        self.refuse_times = 0
        self.retry_after = 1.0
        self.reject = 0
        self.fail = False
        self.gate.set()
        self.entered.clear()

    def consume(self, signal: Signal, data: Telemetry | Records) -> ConsumeResult:
        """Keeps protobuf: logs and traces arrive as records decoded from the wire bytes they
        keep (``source``), which the assertions compare as the request the client sent."""
        if isinstance(data, Logs | Traces):
            assert data.source is not None
            data = REQUEST_TYPES[signal].FromString(data.source)
        self.entered.set()
        self.gate.wait(30)
        with self.lock:
            if self.refuse_times:
                self.refuse_times -= 1
                raise Refused("exporter queue full: test", retry_after=self.retry_after)
        if self.fail:
            raise RuntimeError("a processor bug")
        with self.lock:
            self.received.append((signal, data))
        message = f"{self.reject} items were invalid" if self.reject else ""
        return ConsumeResult(self.reject, message)

    def of(self, signal: Signal) -> list[Telemetry]:
        with self.lock:
            return [d for s, d in self.received if s is signal]


def start_receiver(
    protocols: dict[str, Any],
    consumer: Consumer,
    signals: tuple[Signal, ...] = tuple(Signal),
    ready: Callable[[], bool] | None = None,
    name: str = "otlp",
) -> OtlpReceiver:
    cfg = OtlpReceiverConfig.model_validate({"protocols": protocols})
    receiver = FACTORY.create(name, cfg)
    assert isinstance(receiver, OtlpReceiver)
    for signal in signals:
        receiver.attach(signal, consumer)
    receiver.start(Host(data_dir="/nonexistent", ready=ready))
    return receiver


def value(v: AnyValue) -> Any:
    """An AnyValue as plain Python, so assertions read like the attributes that were sent."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    return None if kind is None else getattr(v, kind)


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
        usage: list[x509.ObjectIdentifier] | None,
    ) -> x509.Certificate:
        issuer_name, issuer_key = issuer if issuer else (subject, key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
        )
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usage), False).add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    def write(stem: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        (directory / f"{stem}.pem").write_bytes(pem)
        (directory / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("agentwatch test CA", ca_key, None, None)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = cert("localhost", server_key, ("agentwatch test CA", ca_key),
                  [ExtendedKeyUsageOID.SERVER_AUTH])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = cert("agent", client_key, ("agentwatch test CA", ca_key),
                  [ExtendedKeyUsageOID.CLIENT_AUTH])
    write("ca", ca, ca_key)
    write("server", server, server_key)
    write("client", client, client_key)
    return {
        "ca": directory / "ca.pem",
        "server_cert": directory / "server.pem",
        "server_key": directory / "server.key",
        "client_cert": directory / "client.pem",
        "client_key": directory / "client.key",
    }


def gzip_bomb(inflated: int = 1 << 30) -> bytes:
    """A valid gzip stream of ``inflated`` zero bytes (~1 MB for 1 GiB), built in well under a
    second: after a full flush deflate restarts, so every 1 MiB block compresses identically."""
    block = b"\0" * (1 << 20)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    compressed_block = deflater.compress(block) + deflater.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(inflated >> 20):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, inflated & 0xFFFFFFFF)
    return header + compressed_block * (inflated >> 20) + deflater.flush() + trailer


# --------------------------------------------------------------------------------------------
# Fixtures and raw HTTP
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def consumer() -> RecordingConsumer:
    return RecordingConsumer()


@pytest.fixture(scope="module")
def readiness() -> dict[str, bool]:
    return {"ready": True}


@pytest.fixture(scope="module")
def receiver(consumer: RecordingConsumer, readiness: dict[str, bool]) -> Iterator[OtlpReceiver]:
    rx = start_receiver(
        {"http": {"endpoint": "127.0.0.1:0", "max_request_body_size_mib": LIMIT_MIB}},
        consumer,
        ready=lambda: readiness["ready"],
    )
    yield rx
    rx.shutdown()


@pytest.fixture(autouse=True)
def _fresh_consumer(consumer: RecordingConsumer) -> None:
    consumer.reset()


@pytest.fixture
def port(receiver: OtlpReceiver) -> int:
    assert receiver.http_port
    return receiver.http_port


def post(
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def json_log(text: str) -> bytes:
    return json.dumps(
        {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": text}}]}]}]}
    ).encode()


def assert_still_serving(port: int, consumer: RecordingConsumer, marker: str = "still ok") -> None:
    before = len(consumer.of(Signal.LOGS))
    status, _, body = post(port, "/v1/logs", json_log(marker), {"Content-Type": JSON})
    assert status == 200, body
    received = consumer.of(Signal.LOGS)
    assert len(received) == before + 1
    assert received[-1].resource_logs[0].scope_logs[0].log_records[0].body.string_value == marker


def status_of(body: bytes, content_type: str) -> status_pb2.Status:
    if content_type == JSON:
        obj = json.loads(body)
        return status_pb2.Status(code=obj.get("code", 0), message=obj.get("message", ""))
    return status_pb2.Status.FromString(body)


def refused_requests(reason: str) -> float:
    return telemetry.value(
        "agentwatch_receiver_refused_requests_total", receiver="otlp", transport="http",
        reason=reason,
    )


# --------------------------------------------------------------------------------------------
# Real SDK exporters
# --------------------------------------------------------------------------------------------


def send_with_sdk(make_exporter: Callable[[str], Any]) -> dict[str, Any]:
    """Logs, spans and metrics through the SDK's OTLP exporters that ``make_exporter("logs")``
    (or "traces", "metrics") builds; returns the span contexts and the metric export result."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode, set_span_in_context

    resource = Resource.create({"service.name": "claude-code", "team": "platform"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(make_exporter("traces")))
    tracer = tracer_provider.get_tracer("com.anthropic.claude_code.tracing", "1.0.0")
    with tracer.start_as_current_span("claude_code.interaction") as root:
        root_ctx = root.get_span_context()
        with tracer.start_as_current_span(
            "claude_code.llm_request",
            kind=SpanKind.CLIENT,
            attributes={"model": "claude-sonnet-4-5", "input_tokens": 1200, "ttft_ms": 812.5},
            links=[Link(root_ctx, {"link.reason": "follows"})],
        ) as child:
            child.add_event("retry", {"attempt": 2, "transient": True})
            child.set_status(Status(StatusCode.ERROR, "rate limited"))
            child_ctx = child.get_span_context()

        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(make_exporter("logs")))
        logger = logger_provider.get_logger("com.anthropic.claude_code.events", "2.1.328")
        logger.emit(
            body="claude_code.api_request",
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            event_name="api_request",
            attributes={
                "model": "claude-sonnet-4-5",
                "input_tokens": 1200,
                "cost_usd": 0.020205,
                "success": True,
                "tools": ["Bash", "Read"],
            },
            context=set_span_in_context(root),
        )

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meter_provider.get_meter("com.anthropic.claude_code", "2.1.328")
    tokens = meter.create_counter("claude_code.token.usage", unit="tokens")
    tokens.add(1200, {"type": "input", "model": "claude-sonnet-4-5"})
    tokens.add(57, {"type": "output", "model": "claude-sonnet-4-5"})
    duration = meter.create_histogram("claude_code.api.duration", unit="ms")
    for ms in (120.0, 480.0, 2600.0):
        duration.record(ms, {"model": "claude-sonnet-4-5"})
    metrics_data = reader.get_metrics_data()
    assert metrics_data is not None
    results = [make_exporter("metrics").export(metrics_data).name]
    for provider in (tracer_provider, logger_provider, meter_provider):
        provider.shutdown()
    return {"root": root_ctx, "child": child_ctx, "metric_result": results}


def http_exporters(endpoint: str, compression: str = "none", **tls: str) -> Callable[[str], Any]:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    classes = {"logs": OTLPLogExporter, "traces": OTLPSpanExporter, "metrics": OTLPMetricExporter}

    def make(kind: str) -> Any:
        return classes[kind](  # type: ignore[operator]
            endpoint=f"{endpoint}/v1/{kind}", compression=Compression(compression), timeout=10,
            **tls,
        )

    return make


def assert_sdk_data_arrived(consumer: RecordingConsumer, sent: dict[str, Any]) -> None:
    assert sent["metric_result"] == ["SUCCESS"]
    root, child = sent["root"], sent["child"]

    (logs_data,) = consumer.of(Signal.LOGS)
    (rl,) = logs_data.resource_logs
    assert attrs(rl.resource.attributes)["service.name"] == "claude-code"
    assert attrs(rl.resource.attributes)["team"] == "platform"
    (sl,) = rl.scope_logs
    assert (sl.scope.name, sl.scope.version) == ("com.anthropic.claude_code.events", "2.1.328")
    (record,) = sl.log_records
    assert record.body.string_value == "claude_code.api_request"
    assert record.severity_number == 9 and record.severity_text == "INFO"
    assert record.event_name == "api_request"
    assert attrs(record.attributes) == {
        "model": "claude-sonnet-4-5",
        "input_tokens": 1200,
        "cost_usd": 0.020205,
        "success": True,
        "tools": ["Bash", "Read"],
    }
    assert record.trace_id == root.trace_id.to_bytes(16, "big")
    assert record.span_id == root.span_id.to_bytes(8, "big")

    spans = {
        s.name: s
        for traces in consumer.of(Signal.TRACES)
        for r in traces.resource_spans
        for ss in r.scope_spans
        for s in ss.spans
    }
    assert set(spans) == {"claude_code.interaction", "claude_code.llm_request"}
    llm = spans["claude_code.llm_request"]
    assert llm.trace_id == child.trace_id.to_bytes(16, "big")
    assert llm.span_id == child.span_id.to_bytes(8, "big")
    assert llm.parent_span_id == root.span_id.to_bytes(8, "big")
    assert llm.kind == 3  # SPAN_KIND_CLIENT
    assert attrs(llm.attributes) == {
        "model": "claude-sonnet-4-5", "input_tokens": 1200, "ttft_ms": 812.5
    }
    (event,) = llm.events
    assert event.name == "retry" and attrs(event.attributes) == {"attempt": 2, "transient": True}
    (link,) = llm.links
    assert link.span_id == root.span_id.to_bytes(8, "big")
    assert attrs(link.attributes) == {"link.reason": "follows"}
    assert (llm.status.code, llm.status.message) == (2, "rate limited")
    assert llm.end_time_unix_nano >= llm.start_time_unix_nano > 0

    (metrics_data,) = consumer.of(Signal.METRICS)
    metrics = {
        m.name: m
        for r in metrics_data.resource_metrics
        for sm in r.scope_metrics
        for m in sm.metrics
    }
    token_usage = metrics["claude_code.token.usage"]
    assert token_usage.unit == "tokens" and token_usage.sum.is_monotonic
    assert token_usage.sum.aggregation_temporality == 2  # CUMULATIVE, the SDK default
    points = {attrs(p.attributes)["type"]: p.as_int for p in token_usage.sum.data_points}
    assert points == {"input": 1200, "output": 57}
    (hist_point,) = metrics["claude_code.api.duration"].histogram.data_points
    assert hist_point.count == 3 and hist_point.sum == pytest.approx(3200.0)
    assert sum(hist_point.bucket_counts) == 3
    assert (hist_point.min, hist_point.max) == (120.0, 2600.0)


@pytest.mark.parametrize("compression", ["none", "gzip", "deflate"])
def test_sdk_http_exporters_deliver_every_signal(
    port: int, consumer: RecordingConsumer, compression: str
) -> None:
    sent = send_with_sdk(http_exporters(f"http://127.0.0.1:{port}", compression))
    assert_sdk_data_arrived(consumer, sent)


def test_sdk_exporter_retries_after_backpressure_and_then_delivers(
    port: int, consumer: RecordingConsumer
) -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    consumer.refuse_times = 1
    consumer.retry_after = 1.0
    provider = LoggerProvider()
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(
            OTLPLogExporter(endpoint=f"http://127.0.0.1:{port}/v1/logs", timeout=10)
        )
    )
    provider.get_logger("t").emit(body="kept by the client, sent again")
    provider.shutdown()
    assert consumer.refuse_times == 0  # the first attempt was refused
    (data,) = consumer.of(Signal.LOGS)
    record = data.resource_logs[0].scope_logs[0].log_records[0]
    assert record.body.string_value == "kept by the client, sent again"


# --------------------------------------------------------------------------------------------
# Responses: success, partial success, backpressure, failure, health, readiness
# --------------------------------------------------------------------------------------------


def test_json_request_gets_json_response_and_data_arrives(
    port: int, consumer: RecordingConsumer
) -> None:
    body = json.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {
                        "attributes": [
                            {"key": "service.name", "value": {"stringValue": "codex_exec"}}
                        ]
                    },
                    "scopeLogs": [
                        {
                            "scope": {"name": "codex_otel.log_only"},
                            "logRecords": [
                                {
                                    "timeUnixNano": "1790501729814000000",
                                    "traceId": TRACE_ID,
                                    "spanId": SPAN_ID,
                                    "attributes": [
                                        {
                                            "key": "input_token_count",
                                            "value": {"stringValue": "100"},
                                        },
                                        {"key": "attempt", "value": {"intValue": "2"}},
                                        {"key": "user.email"},
                                    ],
                                    "body": None,
                                    "severityText": "INFO",
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    ).encode()
    status, headers, response = post(port, "/v1/logs", body, {"Content-Type": JSON})
    assert status == 200 and headers["content-type"] == JSON
    assert json.loads(response) == {}
    (data,) = consumer.of(Signal.LOGS)
    record = data.resource_logs[0].scope_logs[0].log_records[0]
    assert attrs(data.resource_logs[0].resource.attributes) == {"service.name": "codex_exec"}
    assert record.time_unix_nano == 1790501729814000000
    assert record.trace_id.hex() == TRACE_ID and record.span_id.hex() == SPAN_ID
    assert attrs(record.attributes) == {
        "input_token_count": "100", "attempt": 2, "user.email": None
    }
    assert not record.attributes[2].HasField("value")
    assert not record.HasField("body")


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_partial_success_reports_rejected_items(
    port: int, consumer: RecordingConsumer, content_type: str
) -> None:
    consumer.reject = 2
    request = logs(5)
    body = request.SerializeToString() if content_type == PROTOBUF else otlp_json.encode(request)
    status, headers, response = post(port, "/v1/logs", body, {"Content-Type": content_type})
    assert status == 200 and headers["content-type"] == content_type
    if content_type == PROTOBUF:
        parsed = ExportLogsServiceResponse.FromString(response)
    else:
        assert json.loads(response)["partialSuccess"]["rejectedLogRecords"] == "2"
        parsed = otlp_json.decode_message(ExportLogsServiceResponse, response)  # type: ignore[assignment]
    assert parsed.partial_success.rejected_log_records == 2
    assert parsed.partial_success.error_message == "2 items were invalid"


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_backpressure_is_429_with_retry_after_and_retry_info(
    port: int, consumer: RecordingConsumer, content_type: str
) -> None:
    consumer.refuse_times = 1
    consumer.retry_after = 2.5
    request = logs(3)
    body = request.SerializeToString() if content_type == PROTOBUF else otlp_json.encode(request)
    status, headers, response = post(port, "/v1/logs", body, {"Content-Type": content_type})
    assert status == 429
    assert headers["retry-after"] == "3"  # whole seconds, rounded up
    if content_type == PROTOBUF:
        rpc_status = status_pb2.Status.FromString(response)
        assert rpc_status.code == code_pb2.RESOURCE_EXHAUSTED
        info = error_details_pb2.RetryInfo()
        assert rpc_status.details[0].Unpack(info)
        assert info.retry_delay.ToNanoseconds() == 2_500_000_000
    else:
        obj = json.loads(response)
        assert obj["code"] == code_pb2.RESOURCE_EXHAUSTED
        assert obj["details"][0]["@type"].endswith("google.rpc.RetryInfo")
        assert obj["details"][0]["retryDelay"] == "2.500s"
    assert "exporter queue full" in status_of(response, content_type).message
    assert consumer.of(Signal.LOGS) == []
    assert_still_serving(port, consumer)


def test_pipeline_failure_is_500_and_server_keeps_serving(
    port: int, consumer: RecordingConsumer
) -> None:
    consumer.fail = True
    status, _, response = post(port, "/v1/logs", logs(1).SerializeToString(),
                               {"Content-Type": PROTOBUF})
    assert status == 500
    assert status_pb2.Status.FromString(response).code == code_pb2.INTERNAL
    consumer.fail = False
    assert_still_serving(port, consumer)


def test_empty_request_is_accepted_without_calling_the_pipeline(
    port: int, consumer: RecordingConsumer
) -> None:
    status, _, response = post(port, "/v1/traces", b"", {"Content-Type": PROTOBUF})
    assert status == 200 and response == b""
    status, _, response = post(port, "/v1/traces", b'{"resourceSpans":[]}', {"Content-Type": JSON})
    assert status == 200 and json.loads(response) == {}
    assert consumer.received == []


def test_health_and_readiness(port: int, readiness: dict[str, bool]) -> None:
    assert post(port, "/health", b"", method="GET")[0] == 200
    assert post(port, "/ready", b"", method="GET")[0] == 200
    readiness["ready"] = False
    try:
        assert post(port, "/ready", b"", method="GET")[0] == 503
        assert post(port, "/health", b"", method="GET")[0] == 200
    finally:
        readiness["ready"] = True
    assert post(port, "/ready", b"", method="GET")[0] == 200


def test_a_blocked_pipeline_holds_up_neither_health_nor_other_requests(
    port: int, consumer: RecordingConsumer
) -> None:
    consumer.gate.clear()
    result: dict[str, Any] = {}
    sender = threading.Thread(
        target=lambda: result.update(
            answer=post(port, "/v1/logs", json_log("blocked"), {"Content-Type": JSON})
        )
    )
    sender.start()
    try:
        assert consumer.entered.wait(10)
        assert post(port, "/health", b"", method="GET")[0] == 200
        # decoded and refused on another pipeline thread while the first one waits
        assert post(port, "/v1/logs", b"{", {"Content-Type": JSON})[0] == 400
    finally:
        consumer.gate.set()
        sender.join(10)
    assert result["answer"][0] == 200
    assert len(consumer.of(Signal.LOGS)) == 1


def test_connections_past_the_limit_are_answered_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_http, "MAX_CONNECTIONS", 2)
    full_consumer = RecordingConsumer()
    rx = start_receiver({"http": {"endpoint": "127.0.0.1:0"}}, full_consumer, name="otlp/full")
    try:
        assert rx.http_port
        port = rx.http_port
        held = []
        for _ in range(2):  # two keep-alive connections, each known to the server
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock.makefile("rb"))[0] == 200
            held.append(sock)
        status, headers, _ = post(port, "/health", b"", method="GET")
        assert status == 503 and headers["retry-after"] == "1"
        assert telemetry.value(
            "agentwatch_receiver_refused_requests_total", receiver="otlp/full",
            transport="http", reason="too_many_connections",
        ) == 1
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 10
        while post(port, "/health", b"", method="GET")[0] != 200:  # once the server saw them go
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert_still_serving(port, full_consumer)
    finally:
        rx.shutdown()


# --------------------------------------------------------------------------------------------
# Transport: chunked bodies, keep-alive, compression
# --------------------------------------------------------------------------------------------


def read_response(sock_file: Any) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response read off a socket file by hand (Content-Length framed)."""
    status_line = sock_file.readline().decode()
    status = int(status_line.split()[1])
    headers = {}
    while (line := sock_file.readline()) not in (b"\r\n", b""):
        key, _, val = line.decode().partition(":")
        headers[key.strip().lower()] = val.strip()
    return status, headers, sock_file.read(int(headers["content-length"]))


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, pos, i = b"", 0, 0
    while pos < len(body):
        size = sizes[i % len(sizes)]
        piece = body[pos : pos + size]
        ext = b";note=x" if i % 2 else b""
        out += f"{len(piece):x}".encode() + ext + b"\r\n" + piece + b"\r\n"
        pos += size
        i += 1
    return out + b"0\r\nX-Trailer: ignored\r\n\r\n"


def test_chunked_json_without_content_length_over_keep_alive(
    port: int, consumer: RecordingConsumer
) -> None:
    """What the Gemini CLI's JS exporter sends: JSON, chunked, keep-alive, several requests."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock_file = sock.makefile("rb")
        for i, sizes in enumerate([[1], [7, 300], [4096]]):
            body = json_log(f"gemini {i}")
            head = (
                f"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                "Connection: keep-alive\r\n\r\n"
            ).encode()
            sock.sendall(head + chunked(body, sizes))
            status, headers, response = read_response(sock_file)
            assert status == 200, response
            assert headers.get("connection") != "close"
    bodies = [
        d.resource_logs[0].scope_logs[0].log_records[0].body.string_value
        for d in consumer.of(Signal.LOGS)
    ]
    assert bodies == ["gemini 0", "gemini 1", "gemini 2"]


def test_chunked_gzip_protobuf(port: int, consumer: RecordingConsumer) -> None:
    body = gzip.compress(logs(50).SerializeToString())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked(body, [100, 1, 33])
        )
        status, _, _ = read_response(sock.makefile("rb"))
    assert status == 200
    (data,) = consumer.of(Signal.LOGS)
    assert data == logs(50)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_large_uncompressed_body_arrives_intact(
    port: int, consumer: RecordingConsumer, framing: str
) -> None:
    """Read in many pieces off the socket (into one buffer of its Content-Length, or grown)."""
    request = logs(10_000)
    body = request.SerializeToString()
    assert 256 * 1024 < len(body) < LIMIT
    head = (b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if framing == "chunked":
            sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, [70_000]))
        else:
            sock.sendall(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status, _, response = read_response(sock.makefile("rb"))
    assert status == 200, response
    assert consumer.of(Signal.LOGS) == [request]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate", "zstd", "gzip-members"])
def test_compressed_bodies(port: int, consumer: RecordingConsumer, encoding: str) -> None:
    raw = logs(20).SerializeToString()
    header = encoding
    if encoding == "gzip":
        body = gzip.compress(raw)
    elif encoding == "gzip-members":  # concatenated members are one valid gzip stream
        body = gzip.compress(raw[:100]) + gzip.compress(raw[100:])
        header = "gzip"
    elif encoding == "deflate":
        body = zlib.compress(raw)
    elif encoding == "raw-deflate":
        deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = deflater.compress(raw) + deflater.flush()
        header = "deflate"
    else:
        body = zstandard.ZstdCompressor().compress(raw)
    status, _, response = post(
        port, "/v1/logs", body, {"Content-Type": PROTOBUF, "Content-Encoding": header}
    )
    assert status == 200, response
    assert consumer.of(Signal.LOGS) == [logs(20)]


# --------------------------------------------------------------------------------------------
# Bad requests: each answered with the right status, then a good request still works
# --------------------------------------------------------------------------------------------

BAD_PAYLOADS: list[tuple[str, str, str, bytes, dict[str, str], str]] = [
    # (case, path, content type, body, extra headers, expected words in the message)
    ("invalid json", "/v1/logs", JSON, b'{"resourceLogs": [', {}, "invalid JSON"),
    ("json not an object", "/v1/logs", JSON, b"[1, 2]", {}, "top level"),
    ("empty json body", "/v1/logs", JSON, b"", {}, "invalid JSON"),
    (
        "base64 trace id in json",
        "/v1/traces",
        JSON,
        json.dumps(
            {"resourceSpans": [{"scopeSpans": [{"spans": [
                {"traceId": "W47/95gDgQPSabYzgT/GDA==", "spanId": SPAN_ID, "name": "x"}
            ]}]}]}
        ).encode(),
        {},
        "hex",
    ),
    (
        "string where an int belongs",
        "/v1/logs",
        JSON,
        b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"soon"}]}]}]}',
        {},
        "timeUnixNano",
    ),
    (
        "traces protobuf posted to /v1/logs",
        "/v1/logs",
        PROTOBUF,
        TracesData(
            resource_spans=[{"scope_spans": [{"spans": [
                {"trace_id": bytes.fromhex(TRACE_ID), "span_id": bytes.fromhex(SPAN_ID),
                 "name": "claude_code.llm_request", "kind": 3, "start_time_unix_nano": 5}
            ]}]}]
        ).SerializeToString(),
        {},
        "ExportLogsServiceRequest",
    ),
    (
        "logs protobuf posted to /v1/traces",
        "/v1/traces",
        PROTOBUF,
        logs(3).SerializeToString(),
        {},
        "wrong wire type",
    ),
    ("truncated protobuf", "/v1/logs", PROTOBUF, logs(3).SerializeToString()[:-7], {}, "decode"),
    ("random bytes as protobuf", "/v1/logs", PROTOBUF, b"\xff\xff\xff\xff\x0f", {}, "decode"),
    ("corrupt gzip", "/v1/logs", PROTOBUF, b"\x1f\x8b\x08\x00garbage-garbage",
     {"Content-Encoding": "gzip"}, "gzip"),
    (
        "truncated gzip",
        "/v1/logs",
        PROTOBUF,
        gzip.compress(logs(3).SerializeToString())[:-12],
        {"Content-Encoding": "gzip"},
        "truncated",
    ),
    ("corrupt zstd", "/v1/logs", PROTOBUF, b"\x28\xb5\x2f\xfd garbage",
     {"Content-Encoding": "zstd"}, "zstd"),
    (
        "corrupt deflate",
        "/v1/logs",
        PROTOBUF,
        b"\x78\x9c\xff\xff\xff\xff",
        {"Content-Encoding": "deflate"},
        "deflate",
    ),
]


@pytest.mark.parametrize(
    ("path", "content_type", "body", "headers", "words"),
    [case[1:] for case in BAD_PAYLOADS],
    ids=[case[0] for case in BAD_PAYLOADS],
)
def test_undecodable_payload_is_400_with_status_body(
    port: int,
    consumer: RecordingConsumer,
    path: str,
    content_type: str,
    body: bytes,
    headers: dict[str, str],
    words: str,
) -> None:
    status, response_headers, response = post(
        port, path, body, {"Content-Type": content_type, **headers}
    )
    assert status == 400, response
    assert response_headers["content-type"] == content_type
    rpc_status = status_of(response, content_type)
    assert rpc_status.code == code_pb2.INVALID_ARGUMENT
    assert words in rpc_status.message, rpc_status.message
    assert consumer.received == []
    assert_still_serving(port, consumer)


def test_bad_requests_are_counted(port: int, consumer: RecordingConsumer) -> None:
    before = refused_requests("bad_payload")
    assert post(port, "/v1/logs", b"{", {"Content-Type": JSON})[0] == 400
    assert refused_requests("bad_payload") == before + 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_signal_paths_are_405(
    port: int, consumer: RecordingConsumer, method: str
) -> None:
    status, headers, _ = post(port, "/v1/logs", b"", method=method)
    assert status == 405 and headers["allow"] == "POST"
    assert_still_serving(port, consumer)


def test_unknown_path_is_404(port: int, consumer: RecordingConsumer) -> None:
    assert post(port, "/v1/profiles", b"{}", {"Content-Type": JSON})[0] == 404
    assert post(port, "/", json_log("old gemini"), {"Content-Type": JSON})[0] == 404
    assert_still_serving(port, consumer)


def test_signal_without_pipeline_is_404() -> None:
    only_logs = RecordingConsumer()
    rx = start_receiver({"http": {"endpoint": "127.0.0.1:0"}}, only_logs, signals=(Signal.LOGS,))
    try:
        assert rx.http_port
        status, _, response = post(
            rx.http_port, "/v1/metrics", b"{}", {"Content-Type": JSON}
        )
        assert status == 404
        assert "no metrics pipeline" in json.loads(response)["message"]
        assert_still_serving(rx.http_port, only_logs)
    finally:
        rx.shutdown()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Type": "application/xml"}, 415),
        ({}, 415),
        ({"Content-Type": PROTOBUF, "Content-Encoding": "br"}, 415),
        ({"Content-Type": "application/json; charset=utf-8"}, 200),
        ({"Content-Type": "Application/JSON"}, 200),
    ],
)
def test_content_type_and_encoding_negotiation(
    port: int, consumer: RecordingConsumer, headers: dict[str, str], status: int
) -> None:
    got, _, response = post(port, "/v1/logs", json_log("negotiated"), headers)
    assert got == status, response
    assert_still_serving(port, consumer)


def test_body_over_the_limit_is_413(port: int, consumer: RecordingConsumer) -> None:
    big = b"x" * (LIMIT + 1)
    # declared too large: refused before reading, so the answer comes without the body (a
    # client still sending it would race the server's close and could see a broken pipe)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            + f"Content-Length: {len(big)}\r\n\r\n".encode()
        )
        status, headers, _ = read_response(sock.makefile("rb"))
    assert status == 413 and headers["connection"] == "close"
    # chunked, so only noticed while streaming
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked(big, [256 * 1024])
        )
        status, headers, _ = read_response(sock.makefile("rb"))
    assert status == 413 and headers["connection"] == "close"
    # small on the wire, over the limit once inflated
    inflated_too_big = gzip.compress(b"\0" * (LIMIT + 1))
    status, _, _ = post(port, "/v1/logs", inflated_too_big,
                        {"Content-Type": PROTOBUF, "Content-Encoding": "gzip"})
    assert status == 413
    zstd_too_big = zstandard.ZstdCompressor().compress(b"\0" * (LIMIT + 1))
    status, _, _ = post(port, "/v1/logs", zstd_too_big,
                        {"Content-Type": PROTOBUF, "Content-Encoding": "zstd"})
    assert status == 413
    # exactly at the limit is fine: a valid request padded with an unknown field
    padded = logs(1).SerializeToString()
    filler = LIMIT - len(padded) - 1 - 4  # field 15, wire type 2: tag byte + 4-byte length
    padded += b"\x7a" + bytes([0x80 | (filler & 0x7F), 0x80 | ((filler >> 7) & 0x7F),
                               0x80 | ((filler >> 14) & 0x7F), filler >> 21]) + b"\0" * filler
    assert len(padded) == LIMIT
    status, _, response = post(port, "/v1/logs", gzip.compress(padded),
                               {"Content-Type": PROTOBUF, "Content-Encoding": "gzip"})
    assert status == 200, response
    assert_still_serving(port, consumer)


def vm_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


def test_gzip_bomb_is_refused_with_bounded_memory() -> None:
    bomb_consumer = RecordingConsumer()
    rx = start_receiver({"http": {"endpoint": "127.0.0.1:0"}}, bomb_consumer)  # 20 MiB default
    try:
        assert rx.http_port
        bomb = gzip_bomb(1 << 30)  # 1 GiB of zeros in ~1 MB, well under the limit on the wire
        assert len(bomb) < 2 * 1024 * 1024
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
        rss_before = vm_kib("VmRSS")
        status, _, response = post(rx.http_port, "/v1/logs", bomb,
                                   {"Content-Type": PROTOBUF, "Content-Encoding": "gzip"})
        peak_growth_mib = (vm_kib("VmHWM") - rss_before) / 1024
        assert status == 413, response
        message = status_pb2.Status.FromString(response).message
        assert message == "request body exceeds the limit of 20971520 bytes when decompressed"
        assert peak_growth_mib < 100, f"peak RSS grew {peak_growth_mib:.0f} MiB"
        print(f"gzip bomb: peak RSS growth {peak_growth_mib:.1f} MiB")
        assert_still_serving(rx.http_port, bomb_consumer)
    finally:
        rx.shutdown()


def test_a_client_that_stalls_mid_request_is_disconnected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(otlp_http, "IDLE_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(otlp_http, "STALL_CHECK_SECONDS", 0.1)
    stall_consumer = RecordingConsumer()
    rx = start_receiver({"http": {"endpoint": "127.0.0.1:0"}}, stall_consumer, name="otlp/stall")
    try:
        assert rx.http_port
        port = rx.http_port
        for stalled in (
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{",  # a body that stops
            b"POST /v1/logs HTTP/1.1\r\nHost",  # a head that never ends
            b"",  # a connection that never says anything
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(stalled)
                assert sock.recv(1) == b""  # closed by the server, not left open
        assert telemetry.value(
            "agentwatch_receiver_refused_requests_total", receiver="otlp/stall",
            transport="http", reason="timeout",
        ) == 3
        # a pipeline slower than the timeout is the server's delay, not a stalled client
        stall_consumer.gate.clear()
        result: dict[str, Any] = {}
        sender = threading.Thread(
            target=lambda: result.update(
                answer=post(port, "/v1/logs", json_log("slow"), {"Content-Type": JSON})
            )
        )
        sender.start()
        assert stall_consumer.entered.wait(10)
        time.sleep(1.0)
        stall_consumer.gate.set()
        sender.join(10)
        assert result["answer"][0] == 200
        assert_still_serving(port, stall_consumer)
    finally:
        rx.shutdown()


def test_zstd_bomb_is_refused_with_bounded_memory() -> None:
    bomb_consumer = RecordingConsumer()
    rx = start_receiver({"http": {"endpoint": "127.0.0.1:0"}}, bomb_consumer)  # 20 MiB default
    try:
        assert rx.http_port
        frame = zstandard.ZstdCompressor().compress(b"\0" * (1 << 20))
        bomb = frame * 1024  # 1 GiB of zeros in 1,024 frames of a few dozen bytes each
        assert len(bomb) < 1024 * 1024
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        rss_before = vm_kib("VmRSS")
        status, _, response = post(rx.http_port, "/v1/logs", bomb,
                                   {"Content-Type": PROTOBUF, "Content-Encoding": "zstd"})
        peak_growth_mib = (vm_kib("VmHWM") - rss_before) / 1024
        assert status == 413, response
        message = status_pb2.Status.FromString(response).message
        assert message == "request body exceeds the limit of 20971520 bytes when decompressed"
        assert peak_growth_mib < 100, f"peak RSS grew {peak_growth_mib:.0f} MiB"
        assert_still_serving(rx.http_port, bomb_consumer)
    finally:
        rx.shutdown()


def test_malformed_http_is_answered_with_a_status_and_counted(port: int) -> None:
    before = refused_requests("bad_framing")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: abc\r\n\r\n")
        status, headers, body = read_response(sock.makefile("rb"))
    assert status == 400 and headers["connection"] == "close"
    assert status_of(body, JSON).code == code_pb2.INVALID_ARGUMENT
    assert refused_requests("bad_framing") == before + 1


def test_malformed_http_framing_is_refused_and_server_keeps_serving(
    port: int, consumer: RecordingConsumer
) -> None:
    cases = [
        b"Content-Length: abc\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
        b"Transfer-Encoding: gzip\r\n\r\n",
    ]
    for tail in cases:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + tail)
            status, headers, _ = read_response(sock.makefile("rb"))
        assert status in (400, 501), tail
        assert headers["connection"] == "close"
    # a client that disconnects halfway through its body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"resourceLogs\"")
    assert_still_serving(port, consumer)


# --------------------------------------------------------------------------------------------
# Fuzz: random and mutated payloads never crash or hang the server
# --------------------------------------------------------------------------------------------

SEEDS = [
    (Signal.LOGS, PROTOBUF, logs(3, model="claude-sonnet-4-5").SerializeToString()),
    (Signal.LOGS, JSON, otlp_json.encode(logs(2, tokens=12))),
    (Signal.TRACES, JSON, json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": TRACE_ID, "spanId": SPAN_ID, "name": "s", "kind": 2,
         "attributes": [{"key": "a", "value": {"arrayValue": {"values": [{"intValue": "1"}]}}}]}
    ]}]}]}).encode()),
    (Signal.METRICS, JSON, json.dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "m", "sum": {"dataPoints": [{"asInt": "5", "timeUnixNano": "1"}],
                              "aggregationTemporality": 1, "isMonotonic": True}}
    ]}]}]}).encode()),
]


@st.composite
def fuzz_request(draw: st.DrawFn) -> tuple[str, str, bytes, str | None, bool]:
    signal, content_type, seed = draw(st.sampled_from(SEEDS))
    if draw(st.booleans()):
        body = draw(st.binary(max_size=2048))
    else:
        body = bytearray(seed)
        for _ in range(draw(st.integers(0, 8))):
            pos = draw(st.integers(0, max(0, len(body) - 1)))
            op = draw(st.sampled_from(["flip", "insert", "delete"]))
            byte = draw(st.integers(0, 255))
            if op == "flip" and body:
                body[pos] = byte
            elif op == "insert":
                body.insert(pos, byte)
            elif body:
                del body[pos]
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
        body = bytes(body)
    encoding = draw(st.sampled_from([None, "gzip", "zstd", "gzip-label-only"]))
    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "zstd":
        body = zstandard.ZstdCompressor().compress(body)
    if draw(st.booleans()):
        content_type = draw(st.sampled_from([PROTOBUF, JSON]))
    path = SIGNAL_PATHS[draw(st.sampled_from(list(Signal)))] if draw(st.booleans()) else (
        SIGNAL_PATHS[signal]
    )
    header = "gzip" if encoding == "gzip-label-only" else encoding
    return path, content_type, body, header, draw(st.booleans())


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=fuzz_request())
def test_fuzzed_requests_get_an_answer_and_the_server_keeps_serving(
    port: int, consumer: RecordingConsumer, request: tuple[str, str, bytes, str | None, bool]
) -> None:
    path, content_type, body, encoding, use_chunked = request
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        if use_chunked:
            wire = (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunked(body, [977])
        else:
            wire = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        sock.sendall(wire)
        status, _, response = read_response(sock.makefile("rb"))
    assert status in (200, 400), (status, response)
    if status == 400:
        assert status_of(response, content_type).code == code_pb2.INVALID_ARGUMENT
    assert_still_serving(port, consumer)


# --------------------------------------------------------------------------------------------
# Auth, TLS, shutdown
# --------------------------------------------------------------------------------------------


def test_bearer_token() -> None:
    rx_consumer = RecordingConsumer()
    rx = start_receiver(
        {"http": {"endpoint": "127.0.0.1:0", "auth": {"bearer_tokens": ["s3cret", "other"]}}},
        rx_consumer,
        name="otlp/auth",
    )
    try:
        assert rx.http_port
        port = rx.http_port
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"},
                        {"Authorization": "Bearer "}):
            status, response_headers, response = post(
                port, "/v1/logs", json_log("x"), {"Content-Type": JSON, **headers}
            )
            assert status == 401, headers
            assert response_headers["www-authenticate"].startswith("Bearer")
            assert json.loads(response)["code"] == code_pb2.UNAUTHENTICATED
        assert rx_consumer.received == []
        for token in ("s3cret", "other"):
            status, _, _ = post(port, "/v1/logs", json_log(token),
                                {"Content-Type": JSON, "Authorization": f"Bearer {token}"})
            assert status == 200
        assert len(rx_consumer.of(Signal.LOGS)) == 2
        assert post(port, "/health", b"", method="GET")[0] == 200  # probes need no token
        assert telemetry.value(
            "agentwatch_receiver_refused_requests_total", receiver="otlp/auth", transport="http",
            reason="unauthenticated",
        ) == 4
    finally:
        rx.shutdown()


def test_tls_with_client_certificates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these override the exporter's certificate_file (a session-level verify)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    pki = make_pki(tmp_path)
    tls_consumer = RecordingConsumer()
    rx = start_receiver(
        {
            "http": {
                "endpoint": "127.0.0.1:0",
                "tls": {
                    "cert_file": str(pki["server_cert"]),
                    "key_file": str(pki["server_key"]),
                    "client_ca_file": str(pki["ca"]),
                },
            }
        },
        tls_consumer,
        name="otlp/tls",
    )
    try:
        assert rx.http_port
        port = rx.http_port
        # the SDK exporter, verifying the server and presenting its client certificate
        sent = send_with_sdk(
            http_exporters(
                f"https://127.0.0.1:{port}",
                "gzip",
                certificate_file=str(pki["ca"]),
                client_certificate_file=str(pki["client_cert"]),
                client_key_file=str(pki["client_key"]),
            )
        )
        assert_sdk_data_arrived(tls_consumer, sent)
        # no client certificate: the handshake fails
        context = ssl.create_default_context(cafile=str(pki["ca"]))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
            conn.request("POST", "/v1/logs", json_log("x"), {"Content-Type": JSON})
            conn.getresponse().read()
        # plain HTTP to the TLS port gets no answer, and the server carries on
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            post(port, "/v1/logs", json_log("x"), {"Content-Type": JSON})
        context.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        conn.request("POST", "/v1/logs", json_log("after"), {"Content-Type": JSON})
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        rx.shutdown()


def wait_until_refused(port: int, timeout: float = 10.0) -> None:
    """Until a new connection to ``port`` is refused: the receiver closed its listener."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return
        except ConnectionResetError:
            pass  # caught in the backlog as the listener closed: the next try is refused
        assert time.monotonic() < deadline, f"port {port} still accepts connections"
        time.sleep(0.005)


def test_shutdown_lets_the_request_in_flight_finish_and_closes_the_port() -> None:
    slow = RecordingConsumer()
    rx = start_receiver({"http": {"endpoint": "127.0.0.1:0"}}, slow)
    assert rx.http_port
    port = rx.http_port
    idle = socket.create_connection(("127.0.0.1", port))  # an idle keep-alive client
    slow.gate.clear()
    result: dict[str, Any] = {}
    sender = threading.Thread(
        target=lambda: result.update(
            answer=post(port, "/v1/logs", json_log("in flight"), {"Content-Type": JSON})
        )
    )
    sender.start()
    assert slow.entered.wait(10)
    stopper = threading.Thread(target=rx.shutdown)
    stopper.start()
    wait_until_refused(port)  # shutdown has stopped listening: it now waits for the request
    assert stopper.is_alive()
    slow.gate.set()
    sender.join(10)
    stopper.join(10)
    assert not stopper.is_alive()
    assert result["answer"][0] == 200
    assert len(slow.of(Signal.LOGS)) == 1
    assert idle.recv(1) == b""  # the idle connection was closed, not left hanging
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def config_errors(tmp_path: Path, receiver_cfg: Any) -> list[str]:
    raw = {
        "receivers": {"otlp": receiver_cfg},
        "exporters": {"debug": {"path": str(tmp_path / "out.jsonl")}},
        "service": {
            "data_dir": str(tmp_path / "data"),
            "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["debug"]}},
        },
    }
    try:
        parse(raw, source="test.yaml", env={}, base_dir=str(tmp_path))
    except ConfigError as exc:
        return exc.errors
    return []


def test_config_missing_tls_files_named_with_their_exact_path(tmp_path: Path) -> None:
    errors = config_errors(
        tmp_path,
        {"protocols": {"http": {"tls": {"cert_file": "nope.pem", "key_file": "nope.key"}},
                       "grpc": {"tls": {"cert_file": "a", "key_file": "b",
                                        "client_ca_file": "ca.pem"}}}},
    )
    assert "receivers.otlp.protocols.http.tls.cert_file: no such file" in errors
    assert "receivers.otlp.protocols.http.tls.key_file: no such file" in errors
    assert "receivers.otlp.protocols.grpc.tls.client_ca_file: no such file" in errors


def test_config_unloadable_tls_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    errors = config_errors(
        tmp_path,
        {"protocols": {"http": {"tls": {"cert_file": "cert.pem", "key_file": "key.pem"}}}},
    )
    assert len(errors) == 1 and errors[0].startswith("receivers.otlp.protocols.http.tls: cannot")


def test_config_protocols(tmp_path: Path) -> None:
    assert config_errors(tmp_path, {"protocols": {"grpc": None}}) == []  # present = enabled
    cfg = OtlpReceiverConfig.model_validate({"protocols": {"grpc": None}})
    assert cfg.protocols.grpc is not None and cfg.protocols.http is None
    assert cfg.protocols.grpc.endpoint == "localhost:4317"
    errors = config_errors(tmp_path, {"protocols": {}})
    assert any("enable at least one protocol" in e for e in errors), errors
    assert config_errors(tmp_path, {}) == ["receivers.otlp.protocols: required key is missing"]
    errors = config_errors(tmp_path, {"protocols": {"http": {"endpoint": "localhost"}}})
    assert any(e.startswith("receivers.otlp.protocols.http.endpoint:") for e in errors), errors
    errors = config_errors(tmp_path, {"protocols": {"http": {"endpoint": ":99999"}}})
    assert any("out of range" in e for e in errors), errors
    errors = config_errors(tmp_path, {"protocols": {"http": {"max_request_body_size_mib": 0}}})
    assert any("max_request_body_size_mib" in e for e in errors), errors
    errors = config_errors(tmp_path, {"protocols": {"http": {"auth": {"bearer_tokens": []}}}})
    assert any("bearer_tokens" in e for e in errors), errors
    errors = config_errors(tmp_path, {"protocols": {"https": {}}})
    assert "receivers.otlp.protocols.https: unknown key" in errors


def test_port_in_use_fails_start_clearly(receiver: OtlpReceiver) -> None:
    with pytest.raises(RuntimeError, match="cannot listen"):
        start_receiver({"http": {"endpoint": f"127.0.0.1:{receiver.http_port}"}},
                       RecordingConsumer())

