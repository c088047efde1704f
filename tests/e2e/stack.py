"""agentwatch as a user runs it, for the real-CLI acceptance suite.

One ``agentwatch serve`` child process with the shipped configs/default.yaml (only its listen
addresses and data directory moved to free loopback ports and a temp dir) and its embedded
ClickHouse, plus an OTLP re-export over gRPC and over HTTP into a capture receiver, so a test
sees what leaves agentwatch as well as what it stores. OTLP/HTTP from a CLI goes through
:class:`HttpTap`, a transparent recording proxy, so a test can deliver exactly the same request a
second time; gRPC goes straight to agentwatch.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import clickhouse_connect
import yaml
import zstandard
from clickhouse_connect.driver.client import Client
from google.protobuf.message import Message
from prometheus_client.parser import text_string_to_metric_families

from exporters.clickhouse.exporter import running_embedded_url
from tests.e2e.otlp_capture import REQUEST_TYPES, OtlpCapture, parse_otlp_json, read_chunked
from tests.support.collector_process import CollectorProcess, free_port

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "configs" / "default.yaml"
REEXPORTERS = ("otlp/reexport", "otlphttp/reexport")
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class Timings:
    """Wall-clock seconds per named part of the suite, reported at the end (never asserted)."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.parts.append((name, time.monotonic() - start))

    def report(self) -> str:
        width = max((len(n) for n, _ in self.parts), default=0)
        lines = [f"  {name.ljust(width)}  {secs:6.1f}s" for name, secs in self.parts]
        return "\n".join(["agentwatch e2e timings:", *lines])


@dataclass
class TappedRequest:
    """One OTLP/HTTP export as the CLI sent it and what agentwatch answered."""

    path: str
    headers: dict[str, str]
    """Request headers as sent, minus hop-by-hop ones (Host, Content-Length, chunking)."""
    body: bytes
    """The body as sent (still compressed if it was), de-chunked."""
    chunked: bool
    status: int

    @property
    def signal(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]

    def decode(self) -> Message:
        """The export request as protobuf, whatever encoding the CLI used."""
        payload = _decompress(self.body, self.headers.get("content-encoding", ""))
        content_type = self.headers.get("content-type", "").split(";")[0].strip()
        if content_type == "application/json":
            return parse_otlp_json(self.signal, payload)
        return REQUEST_TYPES[self.signal].FromString(payload)


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.lower().strip()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "zstd":
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(body))
    return body


class HttpTap:
    """A recording reverse proxy for OTLP/HTTP: forwards every request to agentwatch unchanged
    (chunked stays chunked) and answers with agentwatch's own answer."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.requests: list[TappedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HttpTap:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def send(
        self, path: str, headers: dict[str, str], body: bytes, chunked: bool
    ) -> tuple[int, dict[str, str], bytes]:
        """POST to agentwatch as the client did: the status, headers and body it answered."""
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            # An iterable body without Content-Length is sent chunked, as the client sent it.
            payload: Any = iter([body]) if chunked else body
            conn.request("POST", path, body=payload, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def repost(self, request: TappedRequest) -> int:
        """Deliver a recorded request to agentwatch once more; the status it answered."""
        return self.send(request.path, request.headers, request.body, request.chunked)[0]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        chunked = handler.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if chunked:
            body = read_chunked(handler)
        else:
            body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        status, answer_headers, answer = self.send(handler.path, headers, body, chunked)
        with self._lock:
            self.requests.append(TappedRequest(handler.path, headers, body, chunked, status))
        handler.send_response(status)
        for key, value in answer_headers.items():
            if key.lower() not in _HOP_BY_HOP:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(answer)))
        handler.end_headers()
        handler.wfile.write(answer)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        tap = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                tap._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def stack_config(workdir: Path, reexport: OtlpCapture) -> dict[str, Any]:
    """configs/default.yaml with free loopback ports, a temp data dir and two OTLP re-exports.

    Everything else (processors, their order, the exporters' settings) stays as shipped, so the
    suite tests the configuration users get.
    """
    config: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text())
    protocols = config["receivers"]["otlp"]["protocols"]
    protocols["grpc"]["endpoint"] = f"127.0.0.1:{free_port()}"
    protocols["http"]["endpoint"] = f"127.0.0.1:{free_port()}"
    config["exporters"]["prometheus"]["endpoint"] = f"127.0.0.1:{free_port()}"
    config["extensions"]["console"]["endpoint"] = f"127.0.0.1:{free_port()}"
    config["exporters"]["otlp/reexport"] = {
        "endpoint": f"127.0.0.1:{reexport.grpc_port}",
        "tls": {"insecure": True},
        "sending_queue": {"batch_timeout": 0.05},
    }
    config["exporters"]["otlphttp/reexport"] = {
        "endpoint": reexport.http_endpoint,
        "sending_queue": {"batch_timeout": 0.05},
    }
    config["service"]["data_dir"] = str(workdir / "data")
    for pipeline in config["service"]["pipelines"].values():
        pipeline["exporters"] = [*pipeline["exporters"], *REEXPORTERS]
    return config


class AgentwatchStack:
    """agentwatch (default config) + its embedded ClickHouse + the re-export sink + the tap."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.reexport = OtlpCapture()
        self.config = stack_config(workdir, self.reexport)
        # The config keeps default.yaml's ${env:...} references: pin them so that the test
        # runner's own environment cannot point the stack at another ClickHouse.
        env = {
            "AGENTWATCH_CLICKHOUSE_ENDPOINT": "",
            "AGENTWATCH_CLICKHOUSE_USER": "default",
            "AGENTWATCH_CLICKHOUSE_PASSWORD": "",
        }
        self.collector = CollectorProcess(self.config, workdir, env=env)
        self.tap: HttpTap | None = None
        self._client: Client | None = None
        self._reexport_started = False

    def start(self) -> AgentwatchStack:
        """Start everything; :meth:`stop` cleans up after a start that failed half-way."""
        self.reexport.start()
        self._reexport_started = True
        self.collector.start(timeout=120)
        self.tap = HttpTap(self.collector.http_port).start()
        url = running_embedded_url(Path(self.config["service"]["data_dir"]) / "clickhouse")
        if url is None:
            raise RuntimeError(f"no embedded ClickHouse found:\n{self.collector.logs()}")
        port = int(url.rsplit(":", 1)[1])
        self._client = clickhouse_connect.get_client(
            host="127.0.0.1",
            port=port,
            database="agentwatch",
            autogenerate_session_id=False,
            dedicated_pool=True,
        )
        return self

    def stop(self) -> int | None:
        if self._client is not None:
            self._client.close()
        if self.tap is not None:
            self.tap.stop()
        code = self.collector.stop() if self.collector.proc is not None else None
        if self._reexport_started:
            self.reexport.stop()
            self._reexport_started = False
        return code

    # -- where the CLIs send ------------------------------------------------------------
    def endpoint(self, protocol: str) -> str:
        if protocol == "grpc":
            return f"http://127.0.0.1:{self.collector.grpc_port}"
        assert self.tap is not None
        return self.tap.url

    @property
    def console_url(self) -> str:
        return f"http://{self.config['extensions']['console']['endpoint']}"

    @property
    def prometheus_target(self) -> str:
        return str(self.config["exporters"]["prometheus"]["endpoint"])

    # -- reading back -------------------------------------------------------------------
    def rows(self, sql: str, **parameters: Any) -> list[tuple[Any, ...]]:
        assert self._client is not None
        return [tuple(r) for r in self._client.query(sql, parameters=parameters).result_rows]

    def scalar(self, sql: str, **parameters: Any) -> Any:
        return self.rows(sql, **parameters)[0][0]

    def dicts(self, sql: str, **parameters: Any) -> list[dict[str, Any]]:
        assert self._client is not None
        result = self._client.query(sql, parameters=parameters)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def cli_query(self, sql: str) -> list[dict[str, Any]]:
        """``agentwatch query SQL -c FILE --format json``, the way an operator reads the store."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "collector",
                "query",
                sql,
                "-c",
                str(self.collector.config_path),
                "--format",
                "json",
            ],
            cwd=self.workdir,
            env=self.collector.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise AssertionError(f"agentwatch query failed ({done.returncode}): {done.stderr}")
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def scrape(self) -> bytes:
        """agentwatch's /metrics exposition, as Prometheus gets it."""
        with urllib.request.urlopen(f"http://{self.prometheus_target}/metrics", timeout=10) as r:
            return bytes(r.read())

    def self_metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
        total = 0.0
        for family in text_string_to_metric_families(self.scrape().decode()):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total

    def drained(self) -> bool:
        """Every exporter queue is empty: whatever the receiver accepted has been delivered."""
        return self.self_metric("agentwatch_exporter_queue_size") == 0


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll until ``condition`` holds; the deadline only bounds a hang, it asserts no speed."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception as exc:  # e.g. a table not created yet
            last_error = exc
        time.sleep(0.2)
    raise AssertionError(
        f"timed out waiting for {what}" + (f": {last_error}" if last_error else "")
    )


@contextlib.contextmanager
def module_stack(
    workdir: Path,
    prometheus: Any,
    job: str,
    timings: Timings,
    request: Any,
) -> Iterator[AgentwatchStack]:
    """An e2e module's agentwatch: CLIs installed, started, scraped by the session's Prometheus
    as ``job``; on the way out stopped (it must exit 0) and the module's timings printed."""
    from tests.e2e.agent_clis import install_clis

    with timings.part("install the pinned CLIs (cached)"):
        install_clis()
    stack = AgentwatchStack(workdir)
    try:
        with timings.part("start agentwatch + embedded ClickHouse"):
            stack.start()
        prometheus.set_targets({job: stack.prometheus_target})
        yield stack
    finally:
        with timings.part("stop agentwatch"):
            code = stack.stop()
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("\n" + timings.report())
        assert code == 0, stack.collector.logs()[-4000:]
