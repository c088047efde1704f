"""A minimal OTLP receiver (HTTP protobuf/JSON and gRPC) that keeps everything it is sent.

It exists to record what the real agent CLIs emit, independently of agentwatch's own receiver,
and to let the CLI smoke test run on its own. It answers every export with success.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import zlib
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from collector.otlp_values import decode_attributes, decode_value

REQUEST_TYPES: dict[str, type[Message]] = {
    "logs": logs_service_pb2.ExportLogsServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "traces": trace_service_pb2.ExportTraceServiceRequest,
}
RESPONSE_TYPES: dict[str, type[Message]] = {
    "logs": logs_service_pb2.ExportLogsServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "traces": trace_service_pb2.ExportTraceServiceResponse,
}
_ID_KEYS = {"traceId", "spanId", "parentSpanId"}


@dataclass
class Capture:
    """One export request as received, with how it travelled."""

    signal: str
    request: Message
    transport: dict[str, Any] = field(default_factory=dict)
    received: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "transport": self.transport,
            "request": otlp_json(self.request),
        }


def otlp_json(request: Message) -> dict[str, Any]:
    """OTLP/JSON as the spec writes it: protobuf JSON mapping with hex trace and span ids."""
    data = json_format.MessageToDict(request)
    _convert_ids(data, lambda v: base64.b64decode(v).hex())
    return data


def parse_otlp_json(signal: str, payload: bytes) -> Message:
    data = json.loads(payload)
    _convert_ids(data, lambda v: base64.b64encode(bytes.fromhex(v)).decode())
    return json_format.ParseDict(data, REQUEST_TYPES[signal](), ignore_unknown_fields=True)


def _convert_ids(node: Any, convert: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str) and value:
                node[key] = convert(value)
            else:
                _convert_ids(value, convert)
    elif isinstance(node, list):
        for item in node:
            _convert_ids(item, convert)


class OtlpCapture:
    """OTLP/HTTP on one free port and OTLP/gRPC on another, both on 127.0.0.1."""

    def __init__(self) -> None:
        self.captures: list[Capture] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._http.daemon_threads = True
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._add_grpc_services()
        self._thread: threading.Thread | None = None

    @property
    def http_port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def start(self) -> OtlpCapture:
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        self._grpc.start()
        return self

    def stop(self) -> None:
        self._grpc.stop(grace=None)
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> OtlpCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def clear(self) -> None:
        with self._lock:
            self.captures.clear()
            self.errors.clear()

    def of(self, signal: str) -> list[Message]:
        with self._lock:
            return [c.request for c in self.captures if c.signal == signal]

    def to_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [c.to_json() for c in self.captures]

    def _add(self, signal: str, request: Message, transport: dict[str, Any]) -> None:
        with self._lock:
            self.captures.append(Capture(signal, request, transport))

    # -- HTTP ---------------------------------------------------------------------------
    def _handle_http(self, handler: BaseHTTPRequestHandler) -> None:
        signal = handler.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        chunked = handler.headers.get("Transfer-Encoding", "").lower() == "chunked"
        raw = (
            read_chunked(handler)
            if chunked
            else handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        )
        content_type = handler.headers.get("Content-Type", "").split(";")[0].strip()
        encoding = handler.headers.get("Content-Encoding", "").lower()
        if signal not in REQUEST_TYPES:
            with self._lock:
                self.errors.append(f"POST to unknown path {handler.path}")
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        try:
            payload = (
                gzip.decompress(raw)
                if encoding == "gzip"
                else (zlib.decompress(raw) if encoding == "deflate" else raw)
            )
            if content_type == "application/json":
                request = parse_otlp_json(signal, payload)
            else:
                request = REQUEST_TYPES[signal].FromString(payload)
        except Exception as exc:  # a capture tool reports, it never hides a bad payload
            with self._lock:
                self.errors.append(f"{handler.path}: {type(exc).__name__}: {exc}")
            handler.send_response(400)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        transport = {
            "protocol": "http/json" if content_type == "application/json" else "http/protobuf",
            "path": handler.path,
            "content_type": handler.headers.get("Content-Type", ""),
            "content_encoding": encoding,
            "chunked": chunked,
            "user_agent": handler.headers.get("User-Agent", ""),
        }
        self._add(signal, request, transport)
        response = RESPONSE_TYPES[signal]()
        if content_type == "application/json":
            body = json_format.MessageToJson(response).encode()
        else:
            body = response.SerializeToString()
        handler.send_response(200)
        handler.send_header("Content-Type", content_type or "application/x-protobuf")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        capture = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                capture._handle_http(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    # -- gRPC ---------------------------------------------------------------------------
    def _add_grpc_services(self) -> None:
        capture = self

        def export(signal: str) -> Any:
            def handle(request: Message, context: grpc.ServicerContext) -> Message:
                metadata = dict(context.invocation_metadata())
                capture._add(
                    signal,
                    request,
                    {
                        "protocol": "grpc",
                        "content_encoding": metadata.get("grpc-encoding", ""),
                        "user_agent": metadata.get("user-agent", ""),
                    },
                )
                return RESPONSE_TYPES[signal]()

            return handle

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            Export = staticmethod(export("logs"))

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            Export = staticmethod(export("metrics"))

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            Export = staticmethod(export("traces"))

        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self._grpc)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._grpc)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._grpc)


def read_chunked(handler: BaseHTTPRequestHandler) -> bytes:
    """A chunked request body, de-chunked (stdlib http.server does not do it)."""
    parts: list[bytes] = []
    while True:
        size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
        if size == 0:
            while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        parts.append(handler.rfile.read(size))
        handler.rfile.readline()


def attributes(kvs: Any) -> dict[str, Any]:
    return decode_attributes(kvs)


@dataclass(frozen=True)
class LogEvent:
    """One log record flattened for assertions: its resource, scope and attributes."""

    resource: dict[str, Any]
    scope: str
    attributes: dict[str, Any]
    body: Any

    @property
    def name(self) -> str | None:
        value = self.attributes.get("event.name")
        return str(value) if value is not None else None


def log_events(requests: list[Message]) -> list[LogEvent]:
    events = []
    for request in requests:
        for resource_logs in request.resource_logs:  # type: ignore[attr-defined]
            resource = attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    events.append(
                        LogEvent(
                            resource,
                            scope_logs.scope.name,
                            attributes(record.attributes),
                            decode_value(record.body),
                        )
                    )
    return events


def resources(requests: list[Message]) -> list[dict[str, Any]]:
    """Resource attributes of every resource block, whatever the signal."""
    found = []
    for request in requests:
        for field_name in ("resource_logs", "resource_metrics", "resource_spans"):
            for block in getattr(request, field_name, ()):
                found.append(attributes(block.resource.attributes))
    return found
