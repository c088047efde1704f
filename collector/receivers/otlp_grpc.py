"""OTLP/gRPC: the Logs, Metrics and Trace services' ``Export`` on grpcio's threaded server.

Requests arrive as raw bytes and are decoded here, not by grpcio, so that an undecodable payload
is INVALID_ARGUMENT (grpcio's own deserializer would answer INTERNAL). grpcio inflates gzip
itself and enforces ``max_recv_msg_size_mib`` on the inflated size.

Backpressure is RESOURCE_EXHAUSTED carrying ``google.rpc.RetryInfo`` twice: in the standard
``grpc-status-details-bin`` trailer (a ``google.rpc.Status``, read by Go and Java clients) and as
``google.rpc.retryinfo-bin`` (the trailer the OpenTelemetry Python exporter reads).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import grpc
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from collector.component import ConsumeResult, Host, Refused, Signal
from collector.receivers.otlp import (
    GrpcConfig,
    OtlpReceiver,
    PayloadError,
    bearer_tokens,
    export_response,
    has_items,
    parse_endpoint,
    parse_protobuf,
    refuse_request,
)

log = logging.getLogger("agentwatch.receiver.otlp.grpc")

SERVICES = {
    Signal.LOGS: logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name,
    Signal.METRICS: metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name,
    Signal.TRACES: trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name,
}
WORKER_THREADS = 8
_MAX_CONCURRENT_RPCS = 4 * WORKER_THREADS
RETRY_INFO_TRAILER = "google.rpc.retryinfo-bin"
STATUS_DETAILS_TRAILER = "grpc-status-details-bin"


class _Status(NamedTuple):
    """What ``ServicerContext.abort_with_status`` takes (``grpc.Status``)."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, bytes], ...]


def retry_status(message: str, retry_after: float) -> _Status:
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromNanoseconds(int(max(0.0, retry_after) * 1e9))
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message)
    status.details.add().Pack(info)
    return _Status(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        message,
        (
            (STATUS_DETAILS_TRAILER, status.SerializeToString()),
            (RETRY_INFO_TRAILER, info.SerializeToString()),
        ),
    )


class OtlpGrpcServer:
    def __init__(self, receiver: OtlpReceiver, config: GrpcConfig, host: Host) -> None:
        self.receiver = receiver
        self.config = config
        self.host = host
        self.tokens = bearer_tokens(config.auth)
        self.port = 0
        self._server: grpc.Server | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=WORKER_THREADS, thread_name_prefix=f"otlp-grpc:{receiver.name}"
        )

    def start(self) -> int:
        max_bytes = int(self.config.max_recv_msg_size_mib * 1024 * 1024)
        server = grpc.server(
            self._executor,
            # Calls beyond this wait in no queue: grpc answers RESOURCE_EXHAUSTED, which OTLP
            # clients retry, instead of holding up to max message size each in memory.
            maximum_concurrent_rpcs=_MAX_CONCURRENT_RPCS,
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.so_reuseport", 0),  # a second collector on the port must fail, not share
            ],
        )
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    SERVICES[signal],
                    {
                        "Export": grpc.unary_unary_rpc_method_handler(
                            self._handler(signal),
                            request_deserializer=None,  # raw bytes; decoded in _export
                            response_serializer=_serialize,
                        )
                    },
                )
                for signal in Signal
            ]
        )
        host, port = parse_endpoint(self.config.endpoint)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if self.config.tls is not None:
                cert, key, ca = self.config.tls.files(".")
                credentials = grpc.ssl_server_credentials(
                    [(_read(key), _read(cert))],
                    root_certificates=_read(ca) if ca is not None else None,
                    require_client_auth=ca is not None,
                )
                bound = server.add_secure_port(address, credentials)
            else:
                bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            bound = 0
            reason = str(exc)
        else:
            reason = "address in use or not available"
        if not bound:
            raise RuntimeError(
                f"receiver {self.receiver.name}: cannot listen on {self.config.endpoint}"
                f" for OTLP/gRPC: {reason}"
            )
        server.start()
        self._server = server
        self.port = bound
        log.info(
            "OTLP/gRPC listening",
            extra={"component": self.receiver.name, "endpoint": f"{host}:{bound}"},
        )
        return bound

    def begin_shutdown(self, grace: float) -> threading.Event:
        """Stop accepting now; the event is set once calls in flight finished (or ``grace``)."""
        server, self._server = self._server, None
        if server is None:
            done = threading.Event()
            done.set()
            return done
        return server.stop(grace)

    def release_threads(self) -> None:
        """After the server stopped: let the idle worker threads go."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _handler(self, signal: Signal) -> Callable[[bytes, grpc.ServicerContext], Message]:
        def export(body: bytes, context: grpc.ServicerContext) -> Message:
            return self._export(signal, body, context)

        return export

    def _export(self, signal: Signal, body: bytes, context: grpc.ServicerContext) -> Message:
        name = self.receiver.name
        if self.tokens is not None:
            metadata = dict(context.invocation_metadata() or ())
            authorization = metadata.get("authorization")
            if not self.tokens.allows(authorization if isinstance(authorization, str) else None):
                refuse_request(name, "grpc", "unauthenticated")
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
        consumer = self.receiver.consumers.get(signal)
        if consumer is None:
            refuse_request(name, "grpc", "no_pipeline")
            context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"no {signal.value} pipeline takes data from receiver {name}",
            )
            raise AssertionError("abort() raises")
        try:
            request = parse_protobuf(signal, body)
        except PayloadError as exc:
            refuse_request(name, "grpc", "bad_payload")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not has_items(request):
            return export_response(signal, ConsumeResult())
        try:
            result = consumer.consume(signal, request)
        except Refused as refused:
            context.abort_with_status(retry_status(refused.reason, refused.retry_after))
        except Exception:
            log.exception("pipeline failed on a request", extra={"component": name})
            context.abort(grpc.StatusCode.INTERNAL, "the pipeline failed on this request")
        return export_response(signal, result)


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()  # type: ignore[no-any-return]


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
