"""OTLP exporters: re-send a pipeline's output to any OTLP backend, like the Collector's own.

Two types, as in the OpenTelemetry Collector: ``otlp`` speaks gRPC and ``otlphttp`` speaks
HTTP (protobuf, or JSON with ``encoding: json``). What they send is what their pipeline made: a
pipeline with the normalisers, cost and redaction processors sends cleaned records; a pipeline
without processors re-exports the raw input (agentwatch as a tee).

Delivery errors are classified per the OTLP specification so that the exporter queue
(``collector/queue.py``) retries only what can succeed later: gRPC ``UNAVAILABLE``,
``DEADLINE_EXCEEDED``, ``ABORTED``, ``RESOURCE_EXHAUSTED``, ... and HTTP 429/502/503/504 are
retried (honouring ``RetryInfo`` and ``Retry-After``); anything else (HTTP 400, gRPC
``INVALID_ARGUMENT``, ...) is permanent, dropped and counted by the queue. A partial success is
a success: it is logged and its rejected items are counted, never retried.
"""

from __future__ import annotations

import email.utils
import gzip
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import grpc
import urllib3
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from pydantic import Field

from collector import __version__, telemetry
from collector.component import (
    ComponentConfig,
    ConfigContext,
    Duration,
    Exporter,
    ExporterConfig,
    ExportError,
    Factory,
    Host,
    MetricsData,
    PermanentExportError,
    Signal,
    Telemetry,
)
from collector.config import resolve_path
from collector.records import Logs, Traces

log = logging.getLogger("agentwatch.exporter.otlp")

USER_AGENT = f"agentwatch/{__version__}"

REJECTED = telemetry.counter(
    "agentwatch_exporter_rejected_items",
    "Items an OTLP backend accepted the request of but rejected (partial success).",
    ("exporter", "signal"),
)

RESPONSE_TYPES: dict[Signal, type[Message]] = {
    Signal.LOGS: logs_service_pb2.ExportLogsServiceResponse,
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceResponse,
    Signal.TRACES: trace_service_pb2.ExportTraceServiceResponse,
}
_REJECTED_FIELD = {
    Signal.LOGS: "rejected_log_records",
    Signal.METRICS: "rejected_data_points",
    Signal.TRACES: "rejected_spans",
}
URL_PATHS = {Signal.LOGS: "/v1/logs", Signal.METRICS: "/v1/metrics", Signal.TRACES: "/v1/traces"}


class TlsConfig(ComponentConfig):
    insecure: bool = Field(
        default=False,
        description="gRPC only: plaintext instead of TLS when the endpoint has no scheme.",
    )
    ca_file: str | None = Field(default=None, description="CA bundle to verify the server.")
    cert_file: str | None = Field(default=None, description="Client certificate (mutual TLS).")
    key_file: str | None = Field(default=None, description="Client private key (mutual TLS).")
    server_name_override: str | None = Field(
        default=None, description="Name to verify the server certificate against."
    )

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        errors = []
        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, key)
            if value is not None and not resolve_path(value, ctx.base_dir).is_file():
                errors.append(f"{path}.{key}: file {value} does not exist")
        if (self.cert_file is None) != (self.key_file is None):
            errors.append(f"{path}: cert_file and key_file go together")
        return errors


class OtlpCommonConfig(ExporterConfig):
    endpoint: str = Field(description="Where to send: host:port (gRPC) or a URL.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Sent with every request, e.g. authorization: Bearer ${env:OTLP_TOKEN}.",
    )
    tls: TlsConfig = Field(default_factory=TlsConfig)
    compression: Literal["gzip", "none"] = "gzip"
    timeout: Duration = Field(default=10.0, description="Deadline of one export request.")


class OtlpGrpcConfig(OtlpCommonConfig):
    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        try:
            grpc_target(self)
        except ValueError as exc:
            return [f"{path}.endpoint: {exc}"]
        return []


class OtlpHttpConfig(OtlpCommonConfig):
    encoding: Literal["proto", "json"] = Field(
        default="proto", description="proto: application/x-protobuf; json: OTLP JSON."
    )
    logs_endpoint: str | None = Field(
        default=None, description="Full URL; default endpoint/v1/logs."
    )
    metrics_endpoint: str | None = Field(
        default=None, description="Full URL; default endpoint/v1/metrics."
    )
    traces_endpoint: str | None = Field(
        default=None, description="Full URL; default endpoint/v1/traces."
    )

    def url(self, signal: Signal) -> str:
        explicit = getattr(self, f"{signal.value}_endpoint")
        if explicit:
            return str(explicit)
        return self.endpoint.rstrip("/") + URL_PATHS[signal]

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        errors = []
        for key in ("endpoint", "logs_endpoint", "metrics_endpoint", "traces_endpoint"):
            value = getattr(self, key)
            if value is not None and not value.startswith(("http://", "https://")):
                errors.append(f"{path}.{key}: must be an http:// or https:// URL")
        return errors


def grpc_target(config: OtlpCommonConfig) -> tuple[str, bool]:
    """The channel target and whether it uses TLS, from ``endpoint`` as otelcol reads it."""
    endpoint = config.endpoint
    secure = not config.tls.insecure
    if endpoint.startswith("https://"):
        endpoint, secure = endpoint[len("https://") :], True
    elif endpoint.startswith("http://"):
        endpoint, secure = endpoint[len("http://") :], False
    endpoint = endpoint.rstrip("/")
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or "/" in endpoint:
        raise ValueError(f"{config.endpoint!r} is not host:port")
    return endpoint, secure


def _read(path: str | None) -> bytes | None:
    return None if path is None else Path(path).expanduser().read_bytes()


def _count_partial_success(exporter: str, signal: Signal, response: Message, rejected: Any) -> None:
    """Log and count a partial success; the request is not retried (the spec forbids it)."""
    if not response.HasField("partial_success"):
        return
    partial = response.partial_success  # type: ignore[attr-defined]
    n = int(getattr(partial, _REJECTED_FIELD[signal]))
    if n or partial.error_message:
        rejected.labels(exporter, signal.value).inc(n)
        log.warning(
            "backend rejected part of an export",
            extra={
                "component": exporter,
                "signal": signal.value,
                "rejected": n,
                "error": partial.error_message,
            },
        )


class _OtlpExporter(Exporter):
    """Takes records: what leaves as OTLP is encoded here, once per batch."""

    def _send(self, signal: Signal, data: Telemetry) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def consume_logs(self, data: Logs, batch_id: str) -> None:
        self._send(Signal.LOGS, data.to_proto())

    def consume_metrics(self, data: MetricsData, batch_id: str) -> None:
        self._send(Signal.METRICS, data)

    def consume_traces(self, data: Traces, batch_id: str) -> None:
        self._send(Signal.TRACES, data.to_proto())


# --------------------------------------------------------------------------------------------
# gRPC
# --------------------------------------------------------------------------------------------

GRPC_RETRYABLE = frozenset(
    (
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    )
)
"""The OTLP spec's retryable codes. It retries RESOURCE_EXHAUSTED only with a RetryInfo; we
retry it always (with RetryInfo's delay when given) because a full agentwatch or Collector
queue answers it without one, and dropping would lose data a moment later accepted."""


def grpc_export_error(err: grpc.RpcError) -> ExportError:
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = f"gRPC {code.name}: {err.details() if isinstance(err, grpc.Call) else err}"
    if code not in GRPC_RETRYABLE:
        return PermanentExportError(message)
    return ExportError(message, retryable=True, retry_after=_retry_info(err))


def _retry_info(err: grpc.RpcError) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` in the status details, if the server sent one."""
    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except (ValueError, AttributeError, DecodeError):
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return max(0.0, info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


class OtlpGrpcExporter(_OtlpExporter):
    config: OtlpGrpcConfig

    def __init__(self, name: str, config: OtlpGrpcConfig) -> None:
        super().__init__(name, config)
        self._channel: grpc.Channel | None = None
        self._calls: dict[Signal, Callable[..., Message]] = {}
        self._metadata = tuple((k.lower(), v) for k, v in config.headers.items())

    def start(self, host: Host) -> None:
        target, secure = grpc_target(self.config)
        tls = self.config.tls
        options: list[tuple[str, Any]] = [
            ("grpc.primary_user_agent", USER_AGENT),
            ("grpc.max_send_message_length", -1),
        ]
        if tls.server_name_override:
            options.append(("grpc.ssl_target_name_override", tls.server_name_override))
        compression = (
            grpc.Compression.Gzip
            if self.config.compression == "gzip"
            else grpc.Compression.NoCompression
        )
        if secure:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(tls.ca_file),
                private_key=_read(tls.key_file),
                certificate_chain=_read(tls.cert_file),
            )
            channel = grpc.secure_channel(target, credentials, options, compression)
        else:
            channel = grpc.insecure_channel(target, options, compression)
        self._channel = channel
        self._calls = {
            Signal.LOGS: logs_service_pb2_grpc.LogsServiceStub(channel).Export,
            Signal.METRICS: metrics_service_pb2_grpc.MetricsServiceStub(channel).Export,
            Signal.TRACES: trace_service_pb2_grpc.TraceServiceStub(channel).Export,
        }

    def _send(self, signal: Signal, data: Telemetry) -> None:
        call = self._calls[signal]
        try:
            response = call(data, timeout=self.config.timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise grpc_export_error(err) from None
        _count_partial_success(self.name, signal, response, REJECTED)

    def shutdown(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

HTTP_RETRYABLE = frozenset((429, 502, 503, 504))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_message(status: int, content_type: str, body: bytes) -> str:
    """The server's reason: a ``google.rpc.Status`` per the spec, or the start of its text."""
    text = ""
    if "protobuf" in content_type:
        try:
            text = status_pb2.Status.FromString(body).message
        except DecodeError:
            text = ""
    elif "json" in content_type or "text" in content_type:
        text = body[:300].decode("utf-8", "replace").strip()
    return f"HTTP {status}" + (f": {text}" if text else "")


class OtlpHttpExporter(_OtlpExporter):
    config: OtlpHttpConfig

    def __init__(self, name: str, config: OtlpHttpConfig) -> None:
        super().__init__(name, config)
        self._pool: urllib3.PoolManager | None = None
        content_type = "application/json" if config.encoding == "json" else "application/x-protobuf"
        self._headers = {
            "Content-Type": content_type,
            "User-Agent": USER_AGENT,
            **config.headers,
        }
        if config.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"

    def start(self, host: Host) -> None:
        tls = self.config.tls
        kwargs: dict[str, Any] = {}
        if tls.ca_file:
            kwargs["ca_certs"] = str(Path(tls.ca_file).expanduser())
        if tls.cert_file and tls.key_file:
            kwargs["cert_file"] = str(Path(tls.cert_file).expanduser())
            kwargs["key_file"] = str(Path(tls.key_file).expanduser())
        if tls.server_name_override:
            kwargs["server_hostname"] = tls.server_name_override
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=1,
            retries=False,
            timeout=urllib3.Timeout(total=self.config.timeout),
            **kwargs,
        )

    def _encode(self, data: Telemetry) -> bytes:
        if self.config.encoding == "json":
            from collector import otlp_json

            body = otlp_json.encode(data)
        else:
            body = data.SerializeToString()
        if self.config.compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
        return body

    def _send(self, signal: Signal, data: Telemetry) -> None:
        assert self._pool is not None, "exporter not started"
        url = self.config.url(signal)
        try:
            resp = self._pool.request(
                "POST",
                url,
                body=self._encode(data),
                headers=self._headers,
                redirect=False,
                preload_content=True,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ExportError(f"POST {url}: {exc}", retryable=True) from None
        content_type = resp.headers.get("Content-Type", "")
        if 200 <= resp.status < 300:
            self._partial_success(signal, content_type, resp.data)
            return
        message = f"POST {url}: " + _error_message(resp.status, content_type, resp.data)
        if resp.status in HTTP_RETRYABLE:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            raise ExportError(message, retryable=True, retry_after=retry_after)
        raise PermanentExportError(message)

    def _partial_success(self, signal: Signal, content_type: str, body: bytes) -> None:
        if not body:
            return
        cls = RESPONSE_TYPES[signal]
        try:
            if "json" in content_type:
                from collector import otlp_json

                response = otlp_json.decode_message(cls, body)
            else:
                response = cls.FromString(body)
        except (DecodeError, ValueError):
            log.warning(
                "unreadable export response ignored",
                extra={"component": self.name, "content_type": content_type},
            )
            return
        _count_partial_success(self.name, signal, response, REJECTED)

    def shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.clear()


ALL_SIGNALS = frozenset(Signal)

FACTORY = Factory(
    type_name="otlp",
    kind="exporter",
    config_class=OtlpGrpcConfig,
    create=lambda name, config: OtlpGrpcExporter(name, config),
    signals=ALL_SIGNALS,
)
HTTP_FACTORY = Factory(
    type_name="otlphttp",
    kind="exporter",
    config_class=OtlpHttpConfig,
    create=lambda name, config: OtlpHttpExporter(name, config),
    signals=ALL_SIGNALS,
)
