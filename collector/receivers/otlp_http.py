"""OTLP/HTTP: ``POST /v1/{logs,metrics,traces}`` as protobuf or JSON, plus ``/health``, ``/ready``.

Built on the standard library's threading HTTP server speaking HTTP/1.1, because what OTLP needs
beyond it is small and has to be exactly right: chunked request bodies with no Content-Length
(the Gemini CLI's JS exporter sends those), keep-alive, and a body limit enforced on the
*decompressed* size while streaming, so a gzip bomb costs at most the limit in memory.

Status codes follow the OTLP/HTTP spec: 400 with a ``google.rpc.Status`` body (in the request's
content type) for undecodable payloads, 401 without a valid bearer token, 404 for unknown paths
and signals no pipeline takes, 405 for other methods on ``/v1/*``, 413 over the body limit, 415
for other content types or encodings, 429 with ``Retry-After`` under backpressure, 200 with a
partial success when processors failed on some records (docs/architecture.md, "Errors"), 500
only when the router itself fails. Any response sent before the body was fully read closes the
connection.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any, cast
from urllib.parse import urlsplit

import zstandard
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from collector import otlp_json
from collector.component import ConsumeResult, Host, Refused, Signal
from collector.receivers.otlp import (
    HttpConfig,
    OtlpReceiver,
    PayloadError,
    bearer_tokens,
    export_response,
    has_items,
    parse_endpoint,
    parse_protobuf,
    refuse_request,
)

log = logging.getLogger("agentwatch.receiver.otlp.http")

PATHS = {"/v1/logs": Signal.LOGS, "/v1/metrics": Signal.METRICS, "/v1/traces": Signal.TRACES}
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_CONTENT_TYPES = {PROTOBUF: PROTOBUF, "application/protobuf": PROTOBUF, JSON: JSON}

READ_CHUNK = 64 * 1024
INFLATE_STEP = 1024 * 1024
IDLE_TIMEOUT_SECONDS = 60.0
"""A keep-alive connection with no request for this long is closed; also bounds each read."""
TLS_HANDSHAKE_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 256
"""Open connections beyond this are answered 503 at once, so a flood cannot exhaust threads."""
ZSTD_MAX_WINDOW = 1 << 24
"""zstd frames needing a larger window (more memory) than 16 MiB are refused; level 19 uses 8."""
MAX_CHUNK_LINE = 1024
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,15}")


class BodyError(Exception):
    """A request body that cannot be accepted; carries the status, reason label and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class WireBody:
    """The request body as sent: Content-Length or chunked, limited to ``limit`` bytes."""

    def __init__(self, rfile: io.BufferedIOBase, length: int | None, limit: int) -> None:
        self._rfile = rfile
        self._chunked = length is None
        self._remaining = length or 0  # of the body, or of the current chunk when chunked
        self._limit = limit
        self._total = 0
        self.finished = length == 0

    def read(self, size: int = READ_CHUNK) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end of the body."""
        if self.finished:
            return b""
        if self._chunked and self._remaining == 0:
            self._next_chunk()
            if self.finished:
                return b""
        data = self._rfile.read(min(size, self._remaining))
        if not data:
            raise BodyError(400, "truncated_body", "the connection closed inside the body")
        self._remaining -= len(data)
        self._total += len(data)
        if self._total > self._limit:
            raise BodyError(
                413, "too_large", f"request body exceeds the limit of {self._limit} bytes"
            )
        if self._chunked:
            if self._remaining == 0:
                self._expect_crlf()
        elif self._remaining == 0:
            self.finished = True
        return data

    def _line(self) -> bytes:
        line = self._rfile.readline(MAX_CHUNK_LINE + 1)
        if len(line) > MAX_CHUNK_LINE:
            raise BodyError(400, "bad_chunking", "chunk header line too long")
        if not line.endswith(b"\n"):
            raise BodyError(400, "truncated_body", "the connection closed inside the body")
        return line

    def _expect_crlf(self) -> None:
        if self._line().strip():
            raise BodyError(400, "bad_chunking", "chunk data longer than its declared size")

    def _next_chunk(self) -> None:
        line = self._line()
        size_text = line.split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise BodyError(400, "bad_chunking", f"invalid chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            for _ in range(100):  # trailer fields, ignored, up to the blank line
                if not self._line().strip():
                    self.finished = True
                    return
            raise BodyError(400, "bad_chunking", "too many trailer lines")
        if self._total + size > self._limit:
            raise BodyError(
                413, "too_large", f"request body exceeds the limit of {self._limit} bytes"
            )
        self._remaining = size

    def read_all(self) -> bytes | bytearray:
        first = self.read()
        if self.finished:
            return first  # the whole body in one read: no copy
        body = bytearray(first)
        while chunk := self.read():
            body += chunk
        return body


def _too_large(limit: int) -> BodyError:
    return BodyError(
        413, "too_large", f"request body exceeds the limit of {limit} bytes when decompressed"
    )


def _corrupt(encoding: str, detail: object) -> BodyError:
    return BodyError(400, "bad_compression", f"invalid {encoding} body: {detail}")


def _inflate(wire: WireBody, encoding: str, limit: int) -> bytearray:
    """gzip (also several concatenated members) or deflate (zlib, or raw as some clients send),
    inflated at most ``INFLATE_STEP`` bytes per call and never past ``limit + 1`` bytes in all,
    so a bomb costs the limit in memory, not what it would inflate to."""
    body = bytearray()
    data = wire.read()
    while 0 < len(data) < 2 and (more := wire.read()):  # the zlib header check needs 2 bytes
        data += more
    if not data:
        raise _corrupt(encoding, "the body is empty")
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0:
        wbits = zlib.MAX_WBITS  # zlib wrapper, as RFC 9110 defines "deflate"
    else:
        wbits = -zlib.MAX_WBITS  # raw deflate
    inflater = zlib.decompressobj(wbits)
    try:
        while True:
            if not data:
                data = wire.read()
                if not data:
                    break
            if inflater.eof:
                if encoding != "gzip":
                    raise _corrupt(encoding, "data after the end of the stream")
                inflater = zlib.decompressobj(wbits)  # the next gzip member
            body += inflater.decompress(data, min(INFLATE_STEP, limit - len(body) + 1))
            if len(body) > limit:
                raise _too_large(limit)
            data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
        while not inflater.eof:  # output held back by the last call's max_length
            out = inflater.decompress(b"", min(INFLATE_STEP, limit - len(body) + 1))
            if not out:
                raise _corrupt(encoding, "the compressed stream is truncated")
            body += out
            if len(body) > limit:
                raise _too_large(limit)
    except zlib.error as exc:
        raise _corrupt(encoding, exc) from None
    return body


class _WireReader(io.RawIOBase):
    """Lets zstandard pull compressed bytes from the wire as it needs them."""

    def __init__(self, wire: WireBody) -> None:
        self._wire = wire

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._wire.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _unzstd(wire: WireBody, limit: int) -> bytearray:
    """zstd, read ``READ_CHUNK`` decompressed bytes at a time up to the limit. A truncated
    frame is not reported by zstandard's streaming reader; the payload decoder catches it."""
    decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    reader = decompressor.stream_reader(
        cast(IO[bytes], _WireReader(wire)), read_size=READ_CHUNK, read_across_frames=True
    )
    body = bytearray()
    try:
        while chunk := reader.read(READ_CHUNK):
            body += chunk
            if len(body) > limit:
                raise _too_large(limit)
    except zstandard.ZstdError as exc:
        raise _corrupt("zstd", exc) from None
    return body


DECODERS: dict[str, Callable[[WireBody, int], bytes | bytearray]] = {
    "identity": lambda wire, limit: wire.read_all(),
    "gzip": lambda wire, limit: _inflate(wire, "gzip", limit),
    "x-gzip": lambda wire, limit: _inflate(wire, "gzip", limit),
    "deflate": lambda wire, limit: _inflate(wire, "deflate", limit),
    "zstd": _unzstd,
}


def status_body(code: int, message: str, content_type: str, retry_after: float = 0.0) -> bytes:
    """A ``google.rpc.Status``, as OTLP/HTTP answers failures, in the request's encoding."""
    status = status_pb2.Status(code=code, message=message)
    if retry_after > 0:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromNanoseconds(int(retry_after * 1e9))
        status.details.add().Pack(info)
    return otlp_json.encode(status) if content_type == JSON else status.SerializeToString()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, otlp: OtlpHttpServer, address: tuple[str, int], family: int) -> None:
        self.address_family = family
        self.otlp = otlp
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.otlp.admit(request):
            refuse_request(self.otlp.receiver.name, "http", "too_many_connections")
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        otlp = self.otlp
        conn = request
        try:
            if otlp.tls is not None:
                request.settimeout(TLS_HANDSHAKE_TIMEOUT_SECONDS)
                try:
                    conn = otlp.tls.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    refuse_request(otlp.receiver.name, "http", "tls_handshake")
                    log.debug(
                        "TLS handshake failed",
                        extra={"peer": str(client_address), "error": str(exc)},
                    )
                    return
            otlp.track(request, conn)
            _Handler(conn, client_address, self)
        finally:
            otlp.release(request)
            if conn is not request:
                with contextlib.suppress(OSError):
                    conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error", exc_info=True, extra={"peer": str(client_address)})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "agentwatch"
    sys_version = ""
    timeout = IDLE_TIMEOUT_SECONDS
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format % args)

    def version_string(self) -> str:
        return self.server_version

    # ---- routing

    def do_POST(self) -> None:
        self.server.otlp.serve(self, "POST")

    def do_GET(self) -> None:
        self.server.otlp.serve(self, "GET")

    def do_HEAD(self) -> None:
        self.server.otlp.serve(self, "HEAD")

    def do_PUT(self) -> None:
        self.server.otlp.serve(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.otlp.serve(self, "DELETE")

    def do_PATCH(self) -> None:
        self.server.otlp.serve(self, "PATCH")

    def do_OPTIONS(self) -> None:
        self.server.otlp.serve(self, "OPTIONS")

    def reply(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close or self.server.otlp.draining:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class OtlpHttpServer:
    """One listening socket, a thread per connection, and the OTLP request logic."""

    def __init__(self, receiver: OtlpReceiver, config: HttpConfig, host: Host) -> None:
        self.receiver = receiver
        self.config = config
        self.host = host
        self.limit = int(config.max_request_body_size_mib * 1024 * 1024)
        self.tokens = bearer_tokens(config.auth)
        self.tls = config.tls.server_context(".") if config.tls is not None else None
        self.draining = False
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: dict[Any, Any] = {}  # accepted socket -> socket in use (TLS or not)
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)

    # ---- lifecycle

    def start(self) -> int:
        host, port = parse_endpoint(self.config.endpoint)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._server = _Server(self, (host, port), family)
        except OSError as exc:
            raise RuntimeError(
                f"receiver {self.receiver.name}: cannot listen on {self.config.endpoint}"
                f" for OTLP/HTTP: {exc}"
            ) from exc
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"otlp-http:{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info(
            "OTLP/HTTP listening",
            extra={"component": self.receiver.name, "endpoint": f"{host}:{self.port}"},
        )
        return self.port

    def shutdown(self, grace: float) -> None:
        """Stop accepting, let requests in flight finish within ``grace``, close the rest."""
        server, self._server = self._server, None
        if server is None:
            return
        self.draining = True
        server.shutdown()
        server.server_close()
        deadline = time.monotonic() + grace
        with self._idle:
            while self._in_flight and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))
            connections = list(self._connections.values())
        for conn in connections:  # idle keep-alive connections, and requests past the grace
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def admit(self, sock: Any) -> bool:
        with self._lock:
            if len(self._connections) >= MAX_CONNECTIONS:
                return False
            self._connections[sock] = sock
            return True

    def track(self, sock: Any, conn: Any) -> None:
        with self._lock:
            self._connections[sock] = conn

    def release(self, sock: Any) -> None:
        with self._lock:
            self._connections.pop(sock, None)

    # ---- requests

    def serve(self, handler: _Handler, method: str) -> None:
        with self._lock:
            self._in_flight += 1
        try:
            self._route(handler, method)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _route(self, handler: _Handler, method: str) -> None:
        path = handler.path
        if not path.startswith("/"):  # absolute form, as sent through a proxy
            path = urlsplit(path).path
        path = path.split("?", 1)[0]
        signal = PATHS.get(path)
        if signal is None:
            if method in ("GET", "HEAD") and path == "/health":
                handler.reply(200, b'{"status":"ok"}', JSON)
            elif method in ("GET", "HEAD") and path == "/ready":
                ready = self.host.ready() and not self.draining
                handler.reply(
                    200 if ready else 503,
                    b'{"status":"ready"}' if ready else b'{"status":"not ready"}',
                    JSON,
                )
            else:
                self._refuse(handler, 404, "not_found", f"no such path: {path[:200]}", JSON)
            return
        content_type = _CONTENT_TYPES.get(
            (handler.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        )
        answer_type = content_type or JSON
        if method != "POST":
            self._refuse(
                handler,
                405,
                "method_not_allowed",
                f"{method} is not allowed on {path}; use POST",
                answer_type,
                {"Allow": "POST"},
            )
            return
        if self.tokens is not None and not self.tokens.allows(handler.headers.get("Authorization")):
            self._refuse(
                handler,
                401,
                "unauthenticated",
                "missing or invalid bearer token",
                answer_type,
                {"WWW-Authenticate": 'Bearer realm="agentwatch"'},
            )
            return
        consumer = self.receiver.consumers.get(signal)
        if consumer is None:
            self._refuse(
                handler,
                404,
                "no_pipeline",
                f"no {signal.value} pipeline takes data from receiver {self.receiver.name}",
                answer_type,
            )
            return
        if content_type is None:
            self._refuse(
                handler,
                415,
                "unsupported_media_type",
                f"unsupported Content-Type {handler.headers.get('Content-Type')!r};"
                f" use {PROTOBUF} or {JSON}",
                JSON,
            )
            return
        encoding = (handler.headers.get("Content-Encoding") or "identity").strip().lower()
        decoder = DECODERS.get(encoding)
        if decoder is None:
            self._refuse(
                handler,
                415,
                "unsupported_encoding",
                f"unsupported Content-Encoding {encoding[:40]!r}; use gzip, deflate or zstd",
                content_type,
            )
            return
        try:
            wire = self._wire_body(handler)
            body = decoder(wire, self.limit)
        except BodyError as exc:
            self._refuse(handler, exc.status, exc.reason, exc.message, content_type)
            return
        try:
            if content_type == JSON:
                request = otlp_json.decode(signal, body)
            else:
                request = parse_protobuf(signal, body)
        except (otlp_json.OtlpJsonError, PayloadError) as exc:
            self._refuse(handler, 400, "bad_payload", str(exc), content_type, close=False)
            return
        self._consume(handler, signal, request, consumer, content_type)

    def _wire_body(self, handler: _Handler) -> WireBody:
        transfer = (handler.headers.get("Transfer-Encoding") or "").strip().lower()
        if transfer:
            if transfer != "chunked":
                raise BodyError(
                    501, "bad_transfer_encoding", f"unsupported Transfer-Encoding {transfer!r}"
                )
            return WireBody(handler.rfile, None, self.limit)
        length_text = handler.headers.get("Content-Length")
        if length_text is None:
            return WireBody(handler.rfile, 0, self.limit)
        if not length_text.strip().isdigit():
            raise BodyError(400, "bad_content_length", f"invalid Content-Length {length_text!r}")
        length = int(length_text)
        if length > self.limit:
            raise BodyError(
                413, "too_large", f"request body exceeds the limit of {self.limit} bytes"
            )
        return WireBody(handler.rfile, length, self.limit)

    def _consume(
        self, handler: _Handler, signal: Signal, request: Any, consumer: Any, content_type: str
    ) -> None:
        if not has_items(request):  # nothing to hand on: answer success, as otelcol does
            self._answer(handler, export_response(signal, ConsumeResult()), content_type)
            return
        try:
            result = consumer.consume(signal, request)
        except Refused as refused:
            retry_after = max(0.0, refused.retry_after)
            handler.reply(
                429,
                status_body(code_pb2.RESOURCE_EXHAUSTED, refused.reason, content_type, retry_after),
                content_type,
                {"Retry-After": str(math.ceil(retry_after))},
            )
            return
        except Exception:
            log.exception("pipeline failed on a request", extra={"component": self.receiver.name})
            handler.reply(
                500,
                status_body(code_pb2.INTERNAL, "the pipeline failed on this request", content_type),
                content_type,
            )
            return
        self._answer(handler, export_response(signal, result), content_type)

    def _answer(self, handler: _Handler, response: Message, content_type: str) -> None:
        body = otlp_json.encode(response) if content_type == JSON else response.SerializeToString()
        handler.reply(200, body, content_type)

    def _refuse(
        self,
        handler: _Handler,
        status: int,
        reason: str,
        message: str,
        content_type: str,
        headers: dict[str, str] | None = None,
        close: bool = True,
    ) -> None:
        """Answer an error; ``close`` unless the body was read to its end (keep-alive is safe)."""
        refuse_request(self.receiver.name, "http", reason)
        log.debug(
            "request refused",
            extra={"component": self.receiver.name, "status": status, "reason": message},
        )
        handler.reply(
            status,
            status_body(_GRPC_CODES.get(status, code_pb2.UNKNOWN), message, content_type),
            content_type,
            headers,
            close=close and _has_body(handler),
        )


def _has_body(handler: _Handler) -> bool:
    return bool(handler.headers.get("Transfer-Encoding")) or (
        handler.headers.get("Content-Length", "0").strip() not in ("", "0")
    )


_GRPC_CODES: dict[int, int] = {
    HTTPStatus.BAD_REQUEST: code_pb2.INVALID_ARGUMENT,
    HTTPStatus.UNAUTHORIZED: code_pb2.UNAUTHENTICATED,
    HTTPStatus.NOT_FOUND: code_pb2.NOT_FOUND,
    HTTPStatus.METHOD_NOT_ALLOWED: code_pb2.UNIMPLEMENTED,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: code_pb2.RESOURCE_EXHAUSTED,
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: code_pb2.INVALID_ARGUMENT,
    HTTPStatus.NOT_IMPLEMENTED: code_pb2.UNIMPLEMENTED,
}
