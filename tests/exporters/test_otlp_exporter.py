"""The OTLP exporters (gRPC ``otlp`` and HTTP ``otlphttp``) against real OTLP receivers on
loopback: a second agentwatch, and scripted upstreams that answer with the failures the OTLP
spec defines, delivered through the real exporter queue."""

from __future__ import annotations

import datetime
import gzip
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

import tests.support.components  # noqa: F401 - registers the inject receiver and recording exporter
from collector import telemetry
from collector.component import (
    ConfigContext,
    ExportError,
    Host,
    MetricsData,
    PermanentExportError,
    Signal,
    Telemetry,
    TracesData,
    count_items,
)
from collector.config import parse
from collector.pipeline import ExporterRunner, decode
from collector.queue import MemoryQueue
from collector.records import Logs, Traces
from collector.service import Service
from exporters.otlp import (
    OtlpGrpcConfig,
    OtlpGrpcExporter,
    OtlpHttpConfig,
    OtlpHttpExporter,
    parse_retry_after,
)
from tests.support.components import InjectReceiver, RecordingExporter
from tests.support.otlp_factory import logs, seqs
from tests.support.polling import wait_for

FAST_RETRY = {"initial_interval": 0.01, "max_interval": 0.05}


def metrics(n: int, start: int = 0) -> MetricsData:
    points = [NumberDataPoint(time_unix_nano=i + 1, as_int=i) for i in range(start, start + n)]
    return MetricsData(
        resource_metrics=[
            ResourceMetrics(
                scope_metrics=[
                    ScopeMetrics(
                        metrics=[Metric(name="m", sum=Sum(data_points=points, is_monotonic=True))]
                    )
                ]
            )
        ]
    )


def traces(n: int, start: int = 0) -> TracesData:
    spans = [
        Span(
            trace_id=uuid.UUID(int=i + 1).bytes,
            span_id=(i + 1).to_bytes(8, "big"),
            name=f"span {i}",
        )
        for i in range(start, start + n)
    ]
    return TracesData(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])


def metric_values(data: list[Telemetry]) -> list[int]:
    return [
        p.as_int
        for d in data
        for rm in d.resource_metrics  # type: ignore[union-attr]
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.sum.data_points
    ]


def span_names(data: list[Telemetry]) -> list[str]:
    return [
        s.name
        for d in data
        for rs in d.resource_spans  # type: ignore[union-attr]
        for ss in rs.scope_spans
        for s in ss.spans
    ]


def log_seqs(data: list[Telemetry]) -> list[int]:
    return [s for d in data for s in seqs(d)]  # type: ignore[arg-type]


# --- scripted upstreams: real OTLP servers that answer what a test tells them ---------------

RESPONSES: dict[Signal, type[Message]] = {
    Signal.LOGS: logs_service_pb2.ExportLogsServiceResponse,
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceResponse,
    Signal.TRACES: trace_service_pb2.ExportTraceServiceResponse,
}
REQUESTS: dict[str, tuple[Signal, type[Message]]] = {
    "/v1/logs": (Signal.LOGS, logs_service_pb2.ExportLogsServiceRequest),
    "/v1/metrics": (Signal.METRICS, metrics_service_pb2.ExportMetricsServiceRequest),
    "/v1/traces": (Signal.TRACES, trace_service_pb2.ExportTraceServiceRequest),
}


def partial(signal: Signal, rejected: int, message: str) -> Message:
    field_name = {
        Signal.LOGS: "rejected_log_records",
        Signal.METRICS: "rejected_data_points",
        Signal.TRACES: "rejected_spans",
    }[signal]
    response = RESPONSES[signal]()
    setattr(response.partial_success, field_name, rejected)  # type: ignore[attr-defined]
    response.partial_success.error_message = message  # type: ignore[attr-defined]
    return response


@dataclass
class Upstream:
    """What a scripted server saw: every attempt, and the requests it accepted."""

    script: deque[Any] = field(default_factory=deque)
    attempts: int = 0
    accepted: list[tuple[Signal, Telemetry]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_action(self) -> Any:
        with self.lock:
            self.attempts += 1
            return self.script.popleft() if self.script else "ok"

    def of(self, signal: Signal) -> list[Telemetry]:
        return [d for s, d in self.accepted if s is signal]


class ScriptedGrpc(Upstream):
    """An OTLP/gRPC server. Script entries: "ok", ("partial", n, msg), (code, retry_delay)."""

    def serve(self) -> tuple[grpc.Server, int]:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        upstream = self

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                return upstream.answer(Signal.LOGS, request, context)

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                return upstream.answer(Signal.METRICS, request, context)

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                return upstream.answer(Signal.TRACES, request, context)

        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        return server, port

    def answer(self, signal: Signal, request: Telemetry, context: grpc.ServicerContext) -> Message:
        self.headers.append({k: str(v) for k, v in context.invocation_metadata()})
        action = self.next_action()
        if action == "ok":
            self.accepted.append((signal, request))
            return RESPONSES[signal]()
        if action[0] == "partial":
            self.accepted.append((signal, request))
            return partial(signal, action[1], action[2])
        code, retry_delay = action
        status = status_pb2.Status(code=code.value[0], message=f"scripted {code.name}")
        if retry_delay is not None:
            info = error_details_pb2.RetryInfo()
            info.retry_delay.FromNanoseconds(int(retry_delay * 1e9))
            status.details.add().Pack(info)
        context.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("abort raises")


class ScriptedHttp(Upstream):
    """An OTLP/HTTP server. Script entries: "ok", ("partial", n, msg) or
    (status, headers, body)."""

    def serve(self) -> tuple[ThreadingHTTPServer, int]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                upstream.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                upstream.paths.append(self.path)
                signal, cls = REQUESTS[self.path.split("?")[0]]
                json_body = self.headers["Content-Type"] == "application/json"
                action = upstream.next_action()
                if action == "ok" or action[0] == "partial":
                    request = (
                        json_format.Parse(_hex_ids_to_base64(body), cls())
                        if json_body
                        else cls.FromString(body)
                    )
                    upstream.accepted.append((signal, request))  # type: ignore[arg-type]
                    response = (
                        RESPONSES[signal]()
                        if action == "ok"
                        else partial(signal, action[1], action[2])
                    )
                    out = (
                        json_format.MessageToJson(response).encode()
                        if json_body
                        else response.SerializeToString()
                    )
                    self._reply(200, {"Content-Type": self.headers["Content-Type"]}, out)
                    return
                status, headers, payload = action
                self._reply(status, headers, payload)

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return server, server.server_address[1]


def _hex_ids_to_base64(body: bytes) -> bytes:
    """OTLP JSON writes trace/span ids in hex; protobuf's JSON mapping wants base64."""
    import base64
    import json

    obj = json.loads(body)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                    node[k] = base64.b64encode(bytes.fromhex(v)).decode()
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(obj)
    return json.dumps(obj).encode()


@pytest.fixture
def grpc_upstream() -> Iterator[tuple[ScriptedGrpc, int]]:
    upstream = ScriptedGrpc()
    server, port = upstream.serve()
    yield upstream, port
    server.stop(None)


@pytest.fixture
def http_upstream() -> Iterator[tuple[ScriptedHttp, int]]:
    upstream = ScriptedHttp()
    server, port = upstream.serve()
    yield upstream, port
    server.shutdown()
    server.server_close()


class Runner:
    """An exporter behind the real exporter queues (one per signal) and their retrying workers."""

    def __init__(self, exporter: OtlpGrpcExporter | OtlpHttpExporter, tmp_path: Path) -> None:
        self.exporter = exporter
        cfg = exporter.config
        self.runners = {
            sig: ExporterRunner(exporter, cfg, MemoryQueue(cfg.sending_queue), sig)
            for sig in Signal
        }
        exporter.start(Host(str(tmp_path)))
        for runner in self.runners.values():
            runner.start()

    def offer(self, signal: Signal, data: Telemetry) -> None:
        """Queue ``data`` as the pipeline does: logs and traces as records."""
        self.runners[signal].offer(signal, decode(data), count_items(data))

    def close(self) -> None:
        deadline = time.monotonic() + 10
        assert all([runner.drain(deadline) for runner in self.runners.values()])
        self.exporter.shutdown()


def grpc_exporter(name: str, port: int, **cfg: Any) -> OtlpGrpcExporter:
    cfg.setdefault("tls", {"insecure": True})
    cfg.setdefault("retry_on_failure", FAST_RETRY)
    cfg.setdefault("sending_queue", {"batch_timeout": 0})
    return OtlpGrpcExporter(name, OtlpGrpcConfig(endpoint=f"127.0.0.1:{port}", **cfg))


def http_exporter(name: str, port: int, **cfg: Any) -> OtlpHttpExporter:
    cfg.setdefault("retry_on_failure", FAST_RETRY)
    cfg.setdefault("sending_queue", {"batch_timeout": 0})
    return OtlpHttpExporter(name, OtlpHttpConfig(endpoint=f"http://127.0.0.1:{port}", **cfg))


def dropped(exporter: str, reason: str, signal: str = "logs") -> float:
    return telemetry.value(
        "agentwatch_exporter_dropped_items_total", exporter=exporter, signal=signal, reason=reason
    )


def rejected(exporter: str, signal: str = "logs") -> float:
    return telemetry.value(
        "agentwatch_exporter_rejected_items_total", exporter=exporter, signal=signal
    )


# --- re-export into a second agentwatch -----------------------------------------------------


def downstream_service(tmp_path: Path, token: str, queue_size: int = 50_000) -> Service:
    raw = {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:0", "auth": {"bearer_tokens": [token]}},
                    "http": {"endpoint": "127.0.0.1:0", "auth": {"bearer_tokens": [token]}},
                }
            }
        },
        "exporters": {
            "recording/downstream": {
                "sending_queue": {"batch_timeout": 0, "queue_size": queue_size}
            }
        },
        "service": {
            "data_dir": str(tmp_path / "downstream"),
            "pipelines": {
                sig: {"receivers": ["otlp"], "exporters": ["recording/downstream"]}
                for sig in ("logs", "metrics", "traces")
            },
        },
    }
    svc = Service(parse(raw, source="downstream", env={}, base_dir=str(tmp_path)))
    svc.start()
    return svc


def upstream_service(tmp_path: Path, exporter: dict[str, Any], token: str) -> Service:
    raw = {
        "receivers": {"inject": {}},
        "exporters": exporter,
        "service": {
            "data_dir": str(tmp_path / "upstream"),
            "pipelines": {
                sig: {"receivers": ["inject"], "exporters": list(exporter)}
                for sig in ("logs", "metrics", "traces")
            },
        },
    }
    config = parse(raw, source="upstream", env={"OTLP_TOKEN": token}, base_dir=str(tmp_path))
    svc = Service(config)
    svc.start()
    return svc


def delivered(name: str, signal: Signal) -> list[Telemetry]:
    return [d for s, d, _ in RecordingExporter.instances[name].delivered if s is signal]


@pytest.mark.parametrize("transport", ["grpc", "http-proto", "http-json"])
def test_reexport_into_a_second_agentwatch(tmp_path: Path, transport: str) -> None:
    token = uuid.uuid4().hex
    down = downstream_service(tmp_path, token)
    receiver: Any = down.receivers["otlp"]
    common = {
        "headers": {"Authorization": "Bearer ${env:OTLP_TOKEN}"},
        "sending_queue": {"batch_timeout": 0},
        "retry_on_failure": FAST_RETRY,
    }
    spec: dict[str, Any]
    if transport == "grpc":
        grpc_endpoint = f"127.0.0.1:{receiver.grpc_port}"
        spec = {"otlp/next": {**common, "endpoint": grpc_endpoint, "tls": {"insecure": True}}}
    else:
        encoding = transport.split("-")[1]
        http_endpoint = f"http://127.0.0.1:{receiver.http_port}"
        spec = {
            f"otlphttp/next-{encoding}": {**common, "endpoint": http_endpoint, "encoding": encoding}
        }
    up = upstream_service(tmp_path, spec, token)
    inject = up.receivers["inject"]
    assert isinstance(inject, InjectReceiver)
    try:
        for i in range(5):
            inject.push(logs(20, start=i * 20, service="claude-code"))
        inject.push(metrics(7))
        inject.push(traces(3))
        name = "recording/downstream"
        wait_for(lambda: len(log_seqs(delivered(name, Signal.LOGS))) >= 100, what="logs downstream")
        wait_for(lambda: len(metric_values(delivered(name, Signal.METRICS))) >= 7, what="metrics")
        wait_for(lambda: len(span_names(delivered(name, Signal.TRACES))) >= 3, what="traces")
        assert up.shutdown()
        assert log_seqs(delivered(name, Signal.LOGS)) == list(range(100))
        assert metric_values(delivered(name, Signal.METRICS)) == list(range(7))
        assert span_names(delivered(name, Signal.TRACES)) == ["span 0", "span 1", "span 2"]
        first = delivered(name, Signal.LOGS)[0]
        resource = first.resource_logs[0].resource  # type: ignore[union-attr]
        assert {kv.key: kv.value.string_value for kv in resource.attributes} == {
            "service.name": "claude-code"
        }
        exp_name = next(iter(spec))
        assert (
            telemetry.value(
                "agentwatch_exporter_sent_items_total", exporter=exp_name, signal="logs"
            )
            == 100
        )
    finally:
        up.shutdown()
        down.shutdown()


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_backpressure_from_a_full_agentwatch_is_retried_until_everything_arrives_once(
    tmp_path: Path, transport: str
) -> None:
    """A downstream whose queue is full answers RESOURCE_EXHAUSTED / 429 with a retry hint; the
    exporter keeps retrying and nothing is lost or duplicated once it drains."""
    token = "t"
    down = downstream_service(tmp_path, token, queue_size=10)
    receiver: Any = down.receivers["otlp"]
    stalled = RecordingExporter.instances["recording/downstream"]
    stalled.gate.clear()
    small_batches = {"batch_timeout": 0, "batch_max_items": 5}
    if transport == "grpc":
        exp: OtlpGrpcExporter | OtlpHttpExporter = grpc_exporter(
            f"otlp/bp-{transport}",
            receiver.grpc_port,
            headers={"authorization": "Bearer t"},
            sending_queue=small_batches,
        )
    else:
        exp = http_exporter(
            f"otlphttp/bp-{transport}",
            receiver.http_port,
            headers={"Authorization": "Bearer t"},
            sending_queue=small_batches,
        )
    runner = Runner(exp, tmp_path)

    def failed() -> float:
        return telemetry.value(
            "agentwatch_exporter_failed_attempts_total",
            exporter=exp.name,
            signal="logs",
            retryable="true",
        )

    before = failed()
    try:
        for i in range(6):
            runner.offer(Signal.LOGS, logs(5, start=i * 5))
        wait_for(lambda: failed() > before, what="the downstream to push back")
        stalled.gate.set()
        wait_for(
            lambda: len(log_seqs(delivered("recording/downstream", Signal.LOGS))) >= 30, what="all"
        )
        runner.close()
        assert log_seqs(delivered("recording/downstream", Signal.LOGS)) == list(range(30))
    finally:
        stalled.gate.set()
        down.shutdown()


# --- retry and drop semantics, through the real queue ---------------------------------------


def test_http_503_with_retry_after_then_200_delivers_everything_once(
    tmp_path: Path, http_upstream: tuple[ScriptedHttp, int]
) -> None:
    upstream, port = http_upstream
    upstream.script.extend(
        [(503, {"Retry-After": "0"}, b"busy"), (503, {"Retry-After": "0"}, b"busy")]
    )
    runner = Runner(http_exporter("otlphttp/503", port), tmp_path)
    for i in range(4):
        runner.offer(Signal.LOGS, logs(10, start=i * 10))
    wait_for(lambda: len(log_seqs(upstream.of(Signal.LOGS))) >= 40, what="delivery")
    runner.close()
    assert log_seqs(upstream.of(Signal.LOGS)) == list(range(40))
    assert upstream.attempts == len(upstream.accepted) + 2
    assert dropped("otlphttp/503", "permanent_error") == 0
    assert dropped("otlphttp/503", "retries_exhausted") == 0


def test_http_400_is_not_retried_and_the_drop_is_counted(
    tmp_path: Path, http_upstream: tuple[ScriptedHttp, int]
) -> None:
    upstream, port = http_upstream
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad attribute value")
    upstream.script.append(
        (400, {"Content-Type": "application/x-protobuf"}, status.SerializeToString())
    )
    runner = Runner(http_exporter("otlphttp/400", port), tmp_path)
    runner.offer(Signal.LOGS, logs(7))
    wait_for(lambda: dropped("otlphttp/400", "permanent_error") == 7, what="the drop to be counted")
    runner.offer(Signal.LOGS, logs(3, start=7))  # the queue moves on
    wait_for(lambda: len(upstream.accepted) == 1, what="the next batch")
    runner.close()
    assert upstream.attempts == 2
    assert log_seqs(upstream.of(Signal.LOGS)) == [7, 8, 9]


def test_grpc_unavailable_then_ok_delivers_everything_once(
    tmp_path: Path, grpc_upstream: tuple[ScriptedGrpc, int]
) -> None:
    upstream, port = grpc_upstream
    upstream.script.extend([(grpc.StatusCode.UNAVAILABLE, None)] * 3)
    runner = Runner(grpc_exporter("otlp/unavailable", port), tmp_path)
    runner.offer(Signal.LOGS, logs(10))
    runner.offer(Signal.TRACES, traces(2))
    runner.offer(Signal.METRICS, metrics(4))
    wait_for(lambda: len(upstream.accepted) >= 3, what="delivery")
    runner.close()
    assert log_seqs(upstream.of(Signal.LOGS)) == list(range(10))
    assert span_names(upstream.of(Signal.TRACES)) == ["span 0", "span 1"]
    assert metric_values(upstream.of(Signal.METRICS)) == [0, 1, 2, 3]
    assert upstream.attempts == 3 + 3


def test_grpc_invalid_argument_is_dropped_and_counted(
    tmp_path: Path, grpc_upstream: tuple[ScriptedGrpc, int]
) -> None:
    upstream, port = grpc_upstream
    upstream.script.append((grpc.StatusCode.INVALID_ARGUMENT, None))
    runner = Runner(grpc_exporter("otlp/invalid", port), tmp_path)
    runner.offer(Signal.METRICS, metrics(5))
    wait_for(lambda: dropped("otlp/invalid", "permanent_error", "metrics") == 5, what="the drop")
    runner.close()
    assert upstream.attempts == 1 and not upstream.accepted


# --- error classification, one call at a time -----------------------------------------------


def started(exporter: OtlpGrpcExporter | OtlpHttpExporter, tmp_path: Path) -> Any:
    exporter.start(Host(str(tmp_path)))
    return exporter


def test_grpc_status_codes_map_to_retryable_or_permanent(
    tmp_path: Path, grpc_upstream: tuple[ScriptedGrpc, int]
) -> None:
    upstream, port = grpc_upstream
    exp = started(grpc_exporter("otlp/codes", port), tmp_path)
    try:
        cases = {
            grpc.StatusCode.UNAVAILABLE: True,
            grpc.StatusCode.DEADLINE_EXCEEDED: True,
            grpc.StatusCode.ABORTED: True,
            grpc.StatusCode.RESOURCE_EXHAUSTED: True,
            grpc.StatusCode.INVALID_ARGUMENT: False,
            grpc.StatusCode.UNAUTHENTICATED: False,
            grpc.StatusCode.PERMISSION_DENIED: False,
            grpc.StatusCode.UNIMPLEMENTED: False,
        }
        for code, retryable in cases.items():
            upstream.script.append((code, None))
            with pytest.raises(ExportError) as err:
                exp.consume_logs(Logs.from_proto(logs(1)), "b")
            assert err.value.retryable is retryable, code
            assert isinstance(err.value, PermanentExportError) is not retryable
            assert code.name in str(err.value)
            assert err.value.retry_after is None
        upstream.script.append((grpc.StatusCode.RESOURCE_EXHAUSTED, 2.5))
        with pytest.raises(ExportError) as err:
            exp.consume_logs(Logs.from_proto(logs(1)), "b")
        assert err.value.retryable and err.value.retry_after == pytest.approx(2.5)
    finally:
        exp.shutdown()


def test_grpc_unreachable_endpoint_is_retryable(tmp_path: Path) -> None:
    from tests.support.prometheus_server import free_port

    exp = started(grpc_exporter("otlp/nowhere", free_port(), timeout=2), tmp_path)
    try:
        with pytest.raises(ExportError) as err:
            exp.consume_logs(Logs.from_proto(logs(1)), "b")
        assert err.value.retryable
    finally:
        exp.shutdown()


def test_http_statuses_map_to_retryable_or_permanent(
    tmp_path: Path, http_upstream: tuple[ScriptedHttp, int]
) -> None:
    upstream, port = http_upstream
    exp = started(http_exporter("otlphttp/codes", port), tmp_path)
    try:
        for status in (429, 502, 503, 504):
            upstream.script.append((status, {"Retry-After": "7"}, b""))
            with pytest.raises(ExportError) as err:
                exp.consume_traces(Traces.from_proto(traces(1)), "b")
            assert err.value.retryable and err.value.retry_after == 7.0, status
        for status in (400, 401, 403, 404, 413, 500):
            upstream.script.append((status, {"Content-Type": "text/plain"}, b"nope"))
            with pytest.raises(PermanentExportError) as perm:
                exp.consume_traces(Traces.from_proto(traces(1)), "b")
            assert f"HTTP {status}: nope" in str(perm.value)
        upstream.script.append((503, {}, b""))
        with pytest.raises(ExportError) as err:
            exp.consume_traces(Traces.from_proto(traces(1)), "b")
        assert err.value.retryable and err.value.retry_after is None
    finally:
        exp.shutdown()


def test_http_unreachable_endpoint_is_retryable(tmp_path: Path) -> None:
    from tests.support.prometheus_server import free_port

    exp = started(http_exporter("otlphttp/nowhere", free_port()), tmp_path)
    try:
        with pytest.raises(ExportError) as err:
            exp.consume_logs(Logs.from_proto(logs(1)), "b")
        assert err.value.retryable and not isinstance(err.value, PermanentExportError)
    finally:
        exp.shutdown()


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC).timestamp()
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


# --- partial success ------------------------------------------------------------------------


def test_grpc_partial_success_is_counted_not_retried(
    tmp_path: Path, grpc_upstream: tuple[ScriptedGrpc, int]
) -> None:
    upstream, port = grpc_upstream
    upstream.script.append(("partial", 3, "3 records too large"))
    exp = started(grpc_exporter("otlp/partial", port), tmp_path)
    try:
        exp.consume_logs(Logs.from_proto(logs(10)), "b")
    finally:
        exp.shutdown()
    assert upstream.attempts == 1
    assert rejected("otlp/partial") == 3


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_http_partial_success_is_counted_not_retried(
    tmp_path: Path, http_upstream: tuple[ScriptedHttp, int], encoding: str
) -> None:
    upstream, port = http_upstream
    upstream.script.append(("partial", 2, "2 points dropped"))
    name = f"otlphttp/partial-{encoding}"
    exp = started(http_exporter(name, port, encoding=encoding), tmp_path)
    try:
        exp.consume_metrics(metrics(5), "b")
    finally:
        exp.shutdown()
    assert upstream.attempts == 1
    assert rejected(name, "metrics") == 2


# --- wire details: headers, compression, encodings ------------------------------------------


def test_http_sends_headers_gzip_and_the_chosen_encoding(
    tmp_path: Path, http_upstream: tuple[ScriptedHttp, int]
) -> None:
    upstream, port = http_upstream
    records = Traces.from_proto(traces(2))
    for encoding, compression in (("proto", "gzip"), ("json", "none")):
        exp = started(
            http_exporter(
                f"otlphttp/wire-{encoding}",
                port,
                encoding=encoding,
                compression=compression,
                headers={"X-Scope-OrgID": "tenant-1"},
            ),
            tmp_path,
        )
        try:
            exp.consume_traces(records, "b")
        finally:
            exp.shutdown()
        sent = upstream.headers[-1]
        assert sent["x-scope-orgid"] == "tenant-1"
        assert sent["user-agent"].startswith("agentwatch/")
        assert sent["content-type"] == (
            "application/x-protobuf" if encoding == "proto" else "application/json"
        )
        assert sent.get("content-encoding") == ("gzip" if compression == "gzip" else None)
    # what arrives is the records' OTLP (to_proto writes the empty resource, scope and status
    # the hand-built request leaves out)
    assert [d for _, d in upstream.accepted] == [records.to_proto(), records.to_proto()]


def test_http_signal_endpoints_override_the_default_paths(
    tmp_path: Path, http_upstream: tuple[ScriptedHttp, int]
) -> None:
    upstream, port = http_upstream
    override = f"http://127.0.0.1:{port}/v1/logs?tenant=override"
    exp = started(http_exporter("otlphttp/paths", port, logs_endpoint=override), tmp_path)
    try:
        exp.consume_logs(Logs.from_proto(logs(1)), "b")
        exp.consume_metrics(metrics(1), "b")
    finally:
        exp.shutdown()
    assert upstream.paths == ["/v1/logs?tenant=override", "/v1/metrics"]


def test_grpc_sends_headers_as_lowercase_metadata(
    tmp_path: Path, grpc_upstream: tuple[ScriptedGrpc, int]
) -> None:
    upstream, port = grpc_upstream
    exp = started(grpc_exporter("otlp/meta", port, headers={"X-Tenant": "acme"}), tmp_path)
    try:
        exp.consume_logs(Logs.from_proto(logs(1)), "b")
    finally:
        exp.shutdown()
    assert upstream.headers[-1]["x-tenant"] == "acme"
    assert "agentwatch/" in upstream.headers[-1]["user-agent"]


# --- TLS ------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _issue(
    name: str, issuer: x509.Certificate | None, issuer_key: Any, is_ca: bool, server: bool
) -> tuple[x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if server:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = _issue("test ca", None, None, True, False)
    server, server_key = _issue("localhost", ca, ca_key, False, True)
    client, client_key = _issue("agentwatch client", ca, ca_key, False, False)

    def write(name: str, obj: Any) -> Path:
        path = d / name
        if isinstance(obj, x509.Certificate):
            path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
        else:
            path.write_bytes(
                obj.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return path

    return Pki(
        ca=write("ca.pem", ca),
        server_cert=write("server.pem", server),
        server_key=write("server.key", server_key),
        client_cert=write("client.pem", client),
        client_key=write("client.key", client_key),
    )


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_mutual_tls_into_a_second_agentwatch(tmp_path: Path, pki: Pki, transport: str) -> None:
    tls_server = {
        "cert_file": str(pki.server_cert),
        "key_file": str(pki.server_key),
        "client_ca_file": str(pki.ca),
    }
    raw = {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": "127.0.0.1:0", "tls": tls_server},
                    "http": {"endpoint": "127.0.0.1:0", "tls": tls_server},
                }
            }
        },
        "exporters": {"recording/tls": {"sending_queue": {"batch_timeout": 0}}},
        "service": {
            "data_dir": str(tmp_path / "down"),
            "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["recording/tls"]}},
        },
    }
    down = Service(parse(raw, source="tls", env={}, base_dir=str(tmp_path)))
    down.start()
    receiver: Any = down.receivers["otlp"]
    tls = {
        "ca_file": str(pki.ca),
        "cert_file": str(pki.client_cert),
        "key_file": str(pki.client_key),
    }
    try:
        exp: OtlpGrpcExporter | OtlpHttpExporter
        if transport == "grpc":
            exp = grpc_exporter("otlp/tls", receiver.grpc_port, tls=tls)
        else:
            exp = OtlpHttpExporter(
                "otlphttp/tls",
                OtlpHttpConfig(endpoint=f"https://127.0.0.1:{receiver.http_port}", tls=tls),
            )
        exp.start(Host(str(tmp_path)))
        try:
            exp.consume_logs(Logs.from_proto(logs(4)), "b")
            # without the client certificate the server refuses the connection
            no_client = {"ca_file": str(pki.ca)}
            bare: OtlpGrpcExporter | OtlpHttpExporter = (
                grpc_exporter("otlp/tls-bare", receiver.grpc_port, tls=no_client, timeout=3)
                if transport == "grpc"
                else OtlpHttpExporter(
                    "otlphttp/tls-bare",
                    OtlpHttpConfig(
                        endpoint=f"https://127.0.0.1:{receiver.http_port}", tls=no_client, timeout=3
                    ),
                )
            )
            bare.start(Host(str(tmp_path)))
            try:
                with pytest.raises(ExportError):
                    bare.consume_logs(Logs.from_proto(logs(1, start=99)), "b")
            finally:
                bare.shutdown()
        finally:
            exp.shutdown()
        wait_for(
            lambda: len(log_seqs(delivered("recording/tls", Signal.LOGS))) >= 4,
            what="tls delivery",
        )
        assert log_seqs(delivered("recording/tls", Signal.LOGS)) == [0, 1, 2, 3]
    finally:
        down.shutdown()


# --- config ---------------------------------------------------------------------------------


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    ctx = ConfigContext(base_dir=str(tmp_path), data_dir=str(tmp_path))
    assert OtlpGrpcConfig(endpoint="collector").check("exporters.otlp", ctx) == [
        "exporters.otlp.endpoint: 'collector' is not host:port"
    ]
    assert OtlpGrpcConfig(endpoint="https://collector.example.com:4317").check("e", ctx) == []
    assert OtlpHttpConfig(endpoint="collector:4318").check("e", ctx) == [
        "e.endpoint: must be an http:// or https:// URL"
    ]
    raw = {
        "receivers": {"inject": {}},
        "exporters": {
            "otlp": {
                "endpoint": "127.0.0.1:4317",
                "tls": {"ca_file": "missing.pem", "cert_file": "c.pem"},
            },
            "otlphttp": {"endpoint": "http://127.0.0.1:4318", "compression": "zstd"},
        },
        "service": {
            "data_dir": str(tmp_path),
            "pipelines": {"logs": {"receivers": ["inject"], "exporters": ["otlp", "otlphttp"]}},
        },
    }
    from collector.config import ConfigError

    with pytest.raises(ConfigError) as err:
        parse(raw, source="test", env={}, base_dir=str(tmp_path))
    errors = err.value.errors
    assert "exporters.otlp.tls.ca_file: file missing.pem does not exist" in errors
    assert "exporters.otlp.tls: cert_file and key_file go together" in errors
    assert any(e.startswith("exporters.otlphttp.compression") for e in errors)


def test_an_otlp_exporter_without_redaction_is_warned_about(tmp_path: Path) -> None:
    raw = {
        "receivers": {"inject": {}},
        "exporters": {
            "otlp/vendor": {"endpoint": "127.0.0.1:4317", "headers": {"api-key": "${env:KEY}"}}
        },
        "service": {
            "data_dir": str(tmp_path),
            "pipelines": {"logs": {"receivers": ["inject"], "exporters": ["otlp/vendor"]}},
        },
    }
    config = parse(raw, source="test", env={"KEY": "k-123"}, base_dir=str(tmp_path))
    assert any("without a redaction processor" in w for w in config.warnings)
    spec = config.exporters["otlp/vendor"]
    assert spec.config.headers == {"api-key": "k-123"}


# --- what is re-exported: the pipeline's output, cleaned or raw -----------------------------

CAPTURE = (
    Path(__file__).parents[1] / "data" / "captured" / "claude" / "retry-tools-http-protobuf.json"
)
PROMPT = b"Run `echo hello` in the shell"
RESPONSE = b"I'll run echo first."


def test_processed_pipeline_reexports_clean_records_and_a_bare_one_tees_the_raw_input(
    tmp_path: Path,
    http_upstream: tuple[ScriptedHttp, int],
    grpc_upstream: tuple[ScriptedGrpc, int],
) -> None:
    import json

    from collector import otlp_json

    vendor, vendor_port = http_upstream
    tee, tee_port = grpc_upstream
    raw = {
        "receivers": {"inject": {}},
        "processors": {"normalize": {}, "cost": {}, "redaction": {}},
        "exporters": {
            "otlphttp/vendor": {
                "endpoint": f"http://127.0.0.1:{vendor_port}",
                "sending_queue": {"batch_timeout": 0},
            },
            "otlp/tee": {
                "endpoint": f"127.0.0.1:{tee_port}",
                "tls": {"insecure": True},
                "sending_queue": {"batch_timeout": 0},
            },
        },
        "service": {
            "data_dir": str(tmp_path / "data"),
            "pipelines": {
                "logs/clean": {
                    "receivers": ["inject"],
                    "processors": ["normalize", "cost", "redaction"],
                    "exporters": ["otlphttp/vendor"],
                },
                "logs/raw": {"receivers": ["inject"], "exporters": ["otlp/tee"]},
            },
        },
    }
    config = parse(raw, source="test", env={}, base_dir=str(tmp_path))
    assert [w for w in config.warnings if "redaction" in w] == [
        "service.pipelines.logs/raw: exports over OTLP without a redaction processor; prompts, "
        "responses and secrets may leave this machine"
    ]
    svc = Service(config)
    svc.start()
    try:
        inject = svc.receivers["inject"]
        assert isinstance(inject, InjectReceiver)
        requests = [
            otlp_json.decode(Signal.LOGS, json.dumps(line["request"]))
            for line in json.loads(CAPTURE.read_text())
            if line["signal"] == "logs"
        ]
        sent = sum(count_items(r) for r in requests)
        raw_bytes = b"".join(r.SerializeToString() for r in requests)
        assert PROMPT in raw_bytes and RESPONSE in raw_bytes
        for request in requests:
            inject.push(request)
        wait_for(lambda: sum(count_items(d) for d in vendor.of(Signal.LOGS)) == sent, what="clean")
        wait_for(lambda: sum(count_items(d) for d in tee.of(Signal.LOGS)) == sent, what="raw")
    finally:
        assert svc.shutdown()

    clean = b"".join(d.SerializeToString() for d in vendor.of(Signal.LOGS))
    assert PROMPT not in clean and RESPONSE not in clean
    events = [
        {kv.key: kv.value for kv in rec.attributes}
        for d in vendor.of(Signal.LOGS)
        for rl in d.resource_logs  # type: ignore[union-attr]
        for sl in rl.scope_logs
        for rec in sl.log_records
    ]
    api_calls = [
        e
        for e in events
        if e.get("agentwatch.event", None) is not None
        and e["agentwatch.event"].string_value == "api_call"
    ]
    assert len(api_calls) == 4
    assert all(e["agentwatch.cost_usd"].double_value > 0 for e in api_calls)
    assert sorted(e["agentwatch.input_tokens"].int_value for e in api_calls) == [
        1203,
        1319,
        1427,
        1531,
    ]

    teed = b"".join(d.SerializeToString() for d in tee.of(Signal.LOGS))
    assert PROMPT in teed and RESPONSE in teed
    assert b"agentwatch." not in teed
