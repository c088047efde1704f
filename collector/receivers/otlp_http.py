"""OTLP/HTTP: ``POST /v1/{logs,metrics,traces}`` as protobuf or JSON, plus ``/health``, ``/ready``.

Served by uvicorn (the httptools parser) as an ASGI app on an event loop in the receiver's own
thread, the server the web console uses too. The loop does everything that waits: parsing HTTP,
keep-alive, reading the body (Content-Length or chunked, as the Gemini CLI's JS exporter sends)
and inflating it as it arrives, with the limit checked on the *decompressed* size at every step,
so a gzip bomb costs at most the limit in memory. Decoding the payload and the pipeline call run
on ``pipeline_concurrency`` threads, so a pipeline that blocks (a WAL fsync, a slow processor)
holds up neither other connections, ``/health``, nor shutdown.

Status codes follow the OTLP/HTTP spec: 400 with a ``google.rpc.Status`` body (in the request's
content type) for undecodable payloads and malformed HTTP, 401 without a valid bearer token, 404
for unknown paths and signals no pipeline takes, 405 for other methods on ``/v1/*``, 413 over the
body limit, 415 for other content types or encodings, 429 with ``Retry-After`` under
backpressure, 503 with ``Retry-After`` past the connection limit, 200 with a partial success when
processors failed on some records (docs/architecture.md, "Errors"), 500 only when the router
itself fails. Any response sent before the body was fully read closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import socket
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import IO, Any, NamedTuple, Protocol, cast

import uvicorn
import zstandard
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from collector import otlp_json
from collector.component import Consumer, ConsumeResult, Host, Refused, Signal, Telemetry
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

try:
    import uvloop

    new_event_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    """uvloop where it is installed (a dependency on Linux and macOS): 10-20% less CPU per request
    than asyncio's own loop (bench/results/http-ack.md)."""
except ImportError:  # pragma: no cover - Windows
    new_event_loop = asyncio.new_event_loop

PATHS = {"/v1/logs": Signal.LOGS, "/v1/metrics": Signal.METRICS, "/v1/traces": Signal.TRACES}
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_CONTENT_TYPES = {PROTOBUF: PROTOBUF, "application/protobuf": PROTOBUF, JSON: JSON}

INFLATE_STEP = 1024 * 1024
ZSTD_WRITE_SIZE = 64 * 1024
IDLE_TIMEOUT_SECONDS = 60.0
"""A keep-alive connection with no request for this long is closed, and so is one whose client
sends nothing for this long in the middle of a request."""
MAX_CONNECTIONS = 256
"""Open connections beyond this are answered 503 at once, which bounds the bodies held at once."""
ZSTD_MAX_WINDOW = 1 << 24
"""zstd frames needing a larger window (more memory) than 16 MiB are refused; level 19 uses 8."""
STARTUP_TIMEOUT_SECONDS = 10.0

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class BodyError(Exception):
    """A request body that cannot be accepted; carries the status, reason label and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def _too_large(limit: int) -> BodyError:
    return BodyError(
        413, "too_large", f"request body exceeds the limit of {limit} bytes when decompressed"
    )


def _corrupt(encoding: str, detail: object) -> BodyError:
    return BodyError(400, "bad_compression", f"invalid {encoding} body: {detail}")


# --------------------------------------------------------------------------------------------
# Body decoders: fed the body as it arrives, never holding more than the limit
# --------------------------------------------------------------------------------------------


class BodyDecoder(Protocol):
    def feed(self, data: bytes) -> None: ...

    def finish(self) -> bytes | bytearray: ...


class _Identity:
    """No Content-Encoding: the body as it came (the wire limit is the body limit). A body that
    arrives in one piece is not copied; one in several pieces is copied once into a buffer of
    its Content-Length (or grown in place when chunked), so it is held about once, not twice."""

    def __init__(self, limit: int, length: int | None) -> None:
        self._length = length
        self._body: bytes | bytearray = b""
        self._filled = 0

    def feed(self, data: bytes) -> None:
        body = self._body
        if not body:
            self._body = data
            self._filled = len(data)
            return
        if isinstance(body, bytes):
            first = body
            body = self._body = bytearray(self._length or 0)
            self._filled = 0
            self._put(body, first)
        self._put(cast(bytearray, body), data)

    def _put(self, body: bytearray, data: bytes) -> None:
        end = self._filled + len(data)
        if self._length is not None and end <= self._length:
            body[self._filled:end] = data
        else:
            body += data
        self._filled = end

    def finish(self) -> bytes | bytearray:
        body = self._body
        if isinstance(body, bytearray) and self._filled < len(body):
            del body[self._filled:]
        return body


class _Inflater:
    """gzip (also several concatenated members) or deflate (zlib, or raw as some clients send),
    inflated at most ``INFLATE_STEP`` bytes per call and never past ``limit + 1`` bytes in all,
    so a bomb costs the limit in memory, not what it would inflate to."""

    def __init__(self, encoding: str, limit: int) -> None:
        self._encoding = encoding
        self._limit = limit
        self._wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else 0
        self._inflater: Any = None  # zlib's Decompress type is not importable
        self._head = b""  # the first bytes, until the zlib header check has two
        self._body = bytearray()

    def feed(self, data: bytes) -> None:
        if self._inflater is None:
            data = self._head + data
            if self._encoding != "gzip" and len(data) < 2:
                self._head = data
                return
            self._head = b""
            if not data:
                return
            if self._encoding != "gzip":
                zlib_wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
                # zlib wrapper, as RFC 9110 defines "deflate", else raw deflate
                self._wbits = zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS
            self._inflater = zlib.decompressobj(self._wbits)
        self._inflate(data)

    def _inflate(self, data: bytes) -> None:
        body, limit = self._body, self._limit
        inflater = self._inflater
        try:
            while data:
                if inflater.eof:
                    if self._encoding != "gzip":
                        raise _corrupt(self._encoding, "data after the end of the stream")
                    inflater = self._inflater = zlib.decompressobj(self._wbits)  # next member
                body += inflater.decompress(data, min(INFLATE_STEP, limit - len(body) + 1))
                if len(body) > limit:
                    raise _too_large(limit)
                data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
        except zlib.error as exc:
            raise _corrupt(self._encoding, exc) from None

    def finish(self) -> bytearray:
        if self._inflater is None:
            if not self._head:
                raise _corrupt(self._encoding, "the body is empty")
            raise _corrupt(self._encoding, "the compressed stream is truncated")
        body, limit, inflater = self._body, self._limit, self._inflater
        try:
            while not inflater.eof:  # output held back by the last call's max_length
                out = inflater.decompress(b"", min(INFLATE_STEP, limit - len(body) + 1))
                if not out:
                    raise _corrupt(self._encoding, "the compressed stream is truncated")
                body += out
                if len(body) > limit:
                    raise _too_large(limit)
        except zlib.error as exc:
            raise _corrupt(self._encoding, exc) from None
        return body


class _LimitedSink:
    """Where zstandard writes what it decompresses, ``ZSTD_WRITE_SIZE`` bytes at a time; raises
    (through zstandard) as soon as the body passes the limit."""

    def __init__(self, limit: int) -> None:
        self.body = bytearray()
        self._limit = limit

    def write(self, data: bytes) -> int:
        self.body += data
        if len(self.body) > self._limit:
            raise _too_large(self._limit)
        return len(data)


class _Unzstd:
    """zstd, across frames. A truncated frame is not reported by zstandard's streaming writer;
    the payload decoder catches it."""

    def __init__(self, limit: int) -> None:
        self._sink = _LimitedSink(limit)
        decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        self._writer = decompressor.stream_writer(
            cast(IO[bytes], self._sink), write_size=ZSTD_WRITE_SIZE, closefd=False
        )

    def feed(self, data: bytes) -> None:
        try:
            self._writer.write(data)
        except zstandard.ZstdError as exc:
            raise _corrupt("zstd", exc) from None

    def finish(self) -> bytearray:
        try:
            self._writer.flush()
        except zstandard.ZstdError as exc:
            raise _corrupt("zstd", exc) from None
        return self._sink.body


DECODERS: dict[str, Callable[[int, int | None], BodyDecoder]] = {
    "identity": _Identity,
    "gzip": lambda limit, length: _Inflater("gzip", limit),
    "x-gzip": lambda limit, length: _Inflater("gzip", limit),
    "deflate": lambda limit, length: _Inflater("deflate", limit),
    "zstd": lambda limit, length: _Unzstd(limit),
}
"""Content-Encoding -> decoder factory, given the limit and the Content-Length if declared."""


# --------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------


def status_body(code: int, message: str, content_type: str, retry_after: float = 0.0) -> bytes:
    """A ``google.rpc.Status``, as OTLP/HTTP answers failures, in the request's encoding."""
    status = status_pb2.Status(code=code, message=message)
    if retry_after > 0:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromNanoseconds(int(retry_after * 1e9))
        status.details.add().Pack(info)
    return otlp_json.encode(status) if content_type == JSON else status.SerializeToString()


class Answer(NamedTuple):
    """What the pipeline thread hands back to the loop to send."""

    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


_GRPC_CODES: dict[int, int] = {
    HTTPStatus.BAD_REQUEST: code_pb2.INVALID_ARGUMENT,
    HTTPStatus.UNAUTHORIZED: code_pb2.UNAUTHENTICATED,
    HTTPStatus.NOT_FOUND: code_pb2.NOT_FOUND,
    HTTPStatus.METHOD_NOT_ALLOWED: code_pb2.UNIMPLEMENTED,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: code_pb2.RESOURCE_EXHAUSTED,
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: code_pb2.INVALID_ARGUMENT,
    HTTPStatus.NOT_IMPLEMENTED: code_pb2.UNIMPLEMENTED,
}
_HEALTHY = b'{"status":"ok"}'
_READY = b'{"status":"ready"}'
_NOT_READY = b'{"status":"not ready"}'
_CLOSE = (b"connection", b"close")
_ANSWERED = "agentwatch.answered"
"""Set in a request's ``scope["state"]`` when the protocol answered or closed the connection
itself (malformed HTTP, a stalled client) and counted the refusal: the app has nothing to say."""
STALL_CHECK_SECONDS = 5.0


class OtlpHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with this receiver's answers to what the parser refuses, to
    connections past ``MAX_CONNECTIONS`` and to clients that stall, counted like every refusal."""

    last_data = 0.0

    @property
    def otlp(self) -> OtlpHttpServer:
        return cast(OtlpHttpServer, self.config.app)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.last_data = time.monotonic()
        super().connection_made(transport)
        if len(self.connections) > MAX_CONNECTIONS:
            refuse_request(self.otlp.receiver.name, "http", "too_many_connections")
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            transport.close()

    def data_received(self, data: bytes) -> None:
        self.last_data = time.monotonic()
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        """Malformed HTTP (bad Content-Length, chunk framing or Transfer-Encoding)."""
        name = self.otlp.receiver.name
        if self.scope is not None:
            self.scope["state"][_ANSWERED] = True
        refuse_request(name, "http", "bad_framing")
        log.debug("malformed HTTP refused", extra={"component": name, "peer": str(self.client)})
        body = status_body(code_pb2.INVALID_ARGUMENT, "malformed HTTP request", JSON)
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()

    def stalled(self, now: float) -> bool:
        """Nothing received for ``IDLE_TIMEOUT_SECONDS`` while the client owes bytes (a request's
        head or body; an idle keep-alive connection is uvicorn's to time out)."""
        if self.transport.is_closing() or self.timeout_keep_alive_task is not None:
            return False
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            return False  # the request is whole: the server owes the answer
        return now - self.last_data > IDLE_TIMEOUT_SECONDS

    def close_stalled(self) -> None:
        if self.scope is not None:
            self.scope["state"][_ANSWERED] = True
        refuse_request(self.otlp.receiver.name, "http", "timeout")
        self.transport.close()


async def close_stalled_connections(server: uvicorn.Server) -> None:
    """Every ``STALL_CHECK_SECONDS``, close connections whose client stopped sending mid-request,
    so a slow or vanished client cannot hold a connection (and a partial body) forever. One
    sweep instead of a timer per read keeps the common path free of timer bookkeeping."""
    while True:
        await asyncio.sleep(STALL_CHECK_SECONDS)
        now = time.monotonic()
        for connection in list(server.server_state.connections):
            if isinstance(connection, OtlpHttpProtocol) and connection.stalled(now):
                connection.close_stalled()


class PipelineThreads:
    """A fixed set of threads that run the pipeline for the loop, at most ``count`` at once.

    Leaner than ``loop.run_in_executor``: one queue put to hand a call over and one
    ``call_soon_threadsafe`` to hand the answer back, no ``concurrent.futures`` layer in
    between: 50-70 us of CPU per round trip against 90-105 us on the asyncio loop here.
    """

    def __init__(self, count: int, name: str) -> None:
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}:{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, function: Callable[..., Answer], *args: Any) -> asyncio.Future[Answer]:
        """``function(*args)`` on one of the threads; the future completes on the caller's loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._calls.put((loop, future, function, args))
        return future

    def stop(self) -> None:
        """Let the threads end once the calls queued before this are done (they are daemons)."""
        for _ in self._threads:
            self._calls.put(None)

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            self._call(*call)
            del call  # an idle thread must not keep the last request's body alive

    def _call(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Answer],
        function: Callable[..., Answer],
        args: tuple[Any, ...],
    ) -> None:
        try:
            answer = function(*args)
        except BaseException as exc:  # handed to the awaiting request, which answers 500
            self._settle(loop, future, None, exc)
        else:
            self._settle(loop, future, answer, None)

    @staticmethod
    def _settle(
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Answer],
        answer: Answer | None,
        exc: BaseException | None,
    ) -> None:
        def settle() -> None:
            if future.cancelled():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(cast(Answer, answer))

        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(settle)


class OtlpHttpServer:
    """One listening socket served by uvicorn on its own thread, and the OTLP request logic."""

    def __init__(self, receiver: OtlpReceiver, config: HttpConfig, host: Host) -> None:
        self.receiver = receiver
        self.config = config
        self.host = host
        self.limit = int(config.max_request_body_size_mib * 1024 * 1024)
        self.tokens = bearer_tokens(config.auth)
        self.tls = config.tls.server_context(".") if config.tls is not None else None
        self.draining = False
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._pipeline: PipelineThreads | None = None

    # ---- lifecycle

    def start(self) -> int:
        host, port = parse_endpoint(self.config.endpoint)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise RuntimeError(
                f"receiver {self.receiver.name}: cannot listen on {self.config.endpoint}"
                f" for OTLP/HTTP: {exc}"
            ) from exc
        self.port = int(sock.getsockname()[1])
        self._pipeline = PipelineThreads(
            self.config.pipeline_concurrency, f"otlp-http:{self.receiver.name}"
        )
        server = uvicorn.Server(
            uvicorn.Config(
                self,
                http=OtlpHttpProtocol,
                lifespan="off",
                log_config=None,
                log_level="warning",
                access_log=False,
                proxy_headers=False,  # no X-Forwarded-* rewriting: one ASGI layer less
                server_header=False,
                headers=[("server", "agentwatch")],
                timeout_keep_alive=int(IDLE_TIMEOUT_SECONDS),
            )
        )
        server.config.load()
        server.config.ssl = self.tls  # the receiver's own context (client certificates too)
        self._server = server
        self._thread = threading.Thread(
            target=self._run,
            args=(server, sock),
            name=f"otlp-http:{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not server.started:
            server.should_exit = True
            sock.close()
            self._pipeline.stop()
            raise RuntimeError(
                f"receiver {self.receiver.name}: the OTLP/HTTP server did not start"
            )
        log.info(
            "OTLP/HTTP listening",
            extra={"component": self.receiver.name, "endpoint": f"{host}:{self.port}"},
        )
        return self.port

    def shutdown(self, grace: float) -> None:
        """Stop accepting, let requests in flight finish within ``grace``, close the rest.

        uvicorn closes the listener and idle keep-alive connections at once, answers requests
        in flight with ``Connection: close`` and waits for them; past the grace it cancels them.
        """
        server, self._server = self._server, None
        if server is None:
            return
        self.draining = True
        server.config.timeout_graceful_shutdown = max(1, math.ceil(grace))
        server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=grace + 5.0)
        if self._pipeline is not None:
            self._pipeline.stop()

    @classmethod
    def _run(cls, server: uvicorn.Server, sock: socket.socket) -> None:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(cls._serve(server, sock))

    @staticmethod
    async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
        """uvicorn's serve (no signal handlers off the main thread) beside the stall sweep, then
        the connections still open past the grace are closed rather than left to the GC."""
        sweeper = asyncio.create_task(close_stalled_connections(server))
        try:
            await server.serve(sockets=[sock])
        finally:
            sweeper.cancel()
        for connection in list(server.server_state.connections):
            connection.transport.abort()

    # ---- requests (on the loop)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        routed = await self._route(scope, receive)
        if routed is None:
            return  # the protocol answered (malformed HTTP) or closed (a stalled client) itself
        answer, close = routed
        headers = [
            (b"content-type", answer.content_type.encode()),
            (b"content-length", str(len(answer.body)).encode()),
            *answer.headers,
        ]
        if close or self.draining:
            headers.append(_CLOSE)
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def _route(self, scope: Scope, receive: Receive) -> tuple[Answer, bool] | None:
        """The answer, and whether to close the connection after it (the body was not read)."""
        method: str = scope["method"]
        path: str = scope["path"]
        headers = dict(scope["headers"])
        signal = PATHS.get(path)
        has_body = b"transfer-encoding" in headers or (
            headers.get(b"content-length", b"0").strip() not in (b"", b"0")
        )
        if signal is None:
            if method in ("GET", "HEAD") and path == "/health":
                return Answer(200, _HEALTHY, JSON), False
            if method in ("GET", "HEAD") and path == "/ready":
                ready = self.host.ready() and not self.draining
                return Answer(200 if ready else 503, _READY if ready else _NOT_READY, JSON), False
            return self._refuse(404, "not_found", f"no such path: {path[:200]}", JSON), has_body
        content_type = _CONTENT_TYPES.get(
            headers.get(b"content-type", b"").decode("latin-1").split(";", 1)[0].strip().lower()
        )
        answer_type = content_type or JSON
        if method != "POST":
            return self._refuse(
                405, "method_not_allowed", f"{method} is not allowed on {path}; use POST",
                answer_type, ((b"allow", b"POST"),),
            ), has_body
        if self.tokens is not None:
            authorization = headers.get(b"authorization")
            if not self.tokens.allows(authorization.decode("latin-1") if authorization else None):
                return self._refuse(
                    401, "unauthenticated", "missing or invalid bearer token", answer_type,
                    ((b"www-authenticate", b'Bearer realm="agentwatch"'),),
                ), has_body
        consumer = self.receiver.consumers.get(signal)
        if consumer is None:
            return self._refuse(
                404, "no_pipeline",
                f"no {signal.value} pipeline takes data from receiver {self.receiver.name}",
                answer_type,
            ), has_body
        if content_type is None:
            given = headers.get(b"content-type")
            return self._refuse(
                415, "unsupported_media_type",
                f"unsupported Content-Type {given.decode('latin-1') if given else None!r};"
                f" use {PROTOBUF} or {JSON}",
                JSON,
            ), has_body
        encoding = headers.get(b"content-encoding", b"identity").decode("latin-1").strip().lower()
        make_decoder = DECODERS.get(encoding)
        if make_decoder is None:
            return self._refuse(
                415, "unsupported_encoding",
                f"unsupported Content-Encoding {encoding[:40]!r}; use gzip, deflate or zstd",
                content_type,
            ), has_body
        try:
            body = await self._read_body(receive, headers, make_decoder)
        except BodyError as exc:
            if scope["state"].get(_ANSWERED):
                return None
            return self._refuse(exc.status, exc.reason, exc.message, content_type), True
        assert self._pipeline is not None  # requests arrive only once start() made it
        answer = await self._pipeline.run(
            self._decode_and_consume, signal, content_type, body, consumer
        )
        return answer, False

    async def _read_body(
        self,
        receive: Receive,
        headers: dict[bytes, bytes],
        make_decoder: Callable[[int, int | None], BodyDecoder],
    ) -> bytes | bytearray:
        """The body, decoded as it arrives; the limit is checked on the wire and decoded."""
        transfer = headers.get(b"transfer-encoding", b"").strip().lower()
        if transfer and transfer != b"chunked":
            raise BodyError(
                501, "bad_transfer_encoding",
                f"unsupported Transfer-Encoding {transfer.decode('latin-1')!r}",
            )
        length = None if transfer else int(headers.get(b"content-length", b"0") or 0)
        if length is not None and length > self.limit:
            raise BodyError(
                413, "too_large", f"request body exceeds the limit of {self.limit} bytes"
            )
        decoder = make_decoder(self.limit, length)
        received = 0
        while True:
            message = await receive()  # a client that stalls is closed by the stall sweep
            if message["type"] != "http.request":
                raise BodyError(400, "truncated_body", "the connection closed inside the body")
            data: bytes = message.get("body", b"")
            if data:
                received += len(data)
                if received > self.limit:
                    raise BodyError(
                        413, "too_large", f"request body exceeds the limit of {self.limit} bytes"
                    )
                decoder.feed(data)
            if not message.get("more_body", False):
                return decoder.finish()

    def _refuse(
        self,
        status: int,
        reason: str,
        message: str,
        content_type: str,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> Answer:
        refuse_request(self.receiver.name, "http", reason)
        log.debug(
            "request refused",
            extra={"component": self.receiver.name, "status": status, "reason": message},
        )
        return Answer(
            status,
            status_body(_GRPC_CODES.get(status, code_pb2.UNKNOWN), message, content_type),
            content_type,
            headers,
        )

    # ---- requests (on a pipeline thread)

    def _decode_and_consume(
        self, signal: Signal, content_type: str, body: bytes | bytearray, consumer: Consumer
    ) -> Answer:
        decoded = self._decode(signal, content_type, body)
        if isinstance(decoded, Answer):
            return decoded
        return self._consume(signal, content_type, decoded, consumer)

    def _decode(
        self, signal: Signal, content_type: str, body: bytes | bytearray
    ) -> Telemetry | Answer:
        """The export request, or the answer when it is undecodable or has no items."""
        try:
            request: Telemetry
            if content_type == JSON:
                request = otlp_json.decode(signal, body)
            else:
                request = parse_protobuf(signal, body)
        except (otlp_json.OtlpJsonError, PayloadError) as exc:
            return self._refuse(400, "bad_payload", str(exc), content_type)
        if not has_items(request):  # nothing to hand on: answer success, as otelcol does
            return self._answer(export_response(signal, ConsumeResult()), content_type)
        return request

    def _consume(
        self, signal: Signal, content_type: str, request: Telemetry, consumer: Consumer
    ) -> Answer:
        try:
            result = consumer.consume(signal, request)
        except Refused as refused:
            retry_after = max(0.0, refused.retry_after)
            return Answer(
                429,
                status_body(
                    code_pb2.RESOURCE_EXHAUSTED, refused.reason, content_type, retry_after
                ),
                content_type,
                ((b"retry-after", str(math.ceil(retry_after)).encode()),),
            )
        except Exception:
            log.exception(
                "pipeline failed on a request", extra={"component": self.receiver.name}
            )
            return Answer(
                500,
                status_body(code_pb2.INTERNAL, "the pipeline failed on this request", content_type),
                content_type,
            )
        return self._answer(export_response(signal, result), content_type)

    @staticmethod
    def _answer(response: Message, content_type: str) -> Answer:
        body = otlp_json.encode(response) if content_type == JSON else response.SerializeToString()
        return Answer(200, body, content_type)

