"""The ``console`` extension: serves the web console and /api/v1 from its own thread."""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from collector.component import Extension, Host, parse_endpoint
from collector.config import resolve_path
from exporters.clickhouse.exporter import ClickHouseExporter
from extensions.console.app import Console
from extensions.console.config import ConsoleConfig, is_loopback
from extensions.console.internal.queries import ClientPool, Store
from processors.directory import Directory

log = logging.getLogger(__name__)


class ConsoleExtension(Extension):
    config: ConsoleConfig

    def __init__(self, name: str, config: ConsoleConfig) -> None:
        super().__init__(name, config)
        self.port = 0
        self._pool: ClientPool | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, host: Host) -> None:
        bind_host, port = parse_endpoint(self.config.endpoint)
        if not is_loopback(bind_host) and not self.config.auth.configured():
            # The config check says the same; this guards configs built in code.
            raise RuntimeError(
                f"{self.name}: refusing to serve on {bind_host} without auth (see README)"
            )
        exporter = host.exporter("clickhouse", self.config.clickhouse)
        if not isinstance(exporter, ClickHouseExporter):
            raise LookupError(f"{exporter.name} is not a clickhouse exporter")
        directory = None
        if self.config.directory_file:
            directory = Directory.load(resolve_path(self.config.directory_file, "."))
        self._pool = ClientPool(exporter.view_reader)
        console = Console(Store(self._pool, self.config.query_timeout), self.config, directory)
        family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_host, port))
        except OSError as exc:
            sock.close()
            raise RuntimeError(
                f"{self.name}: cannot listen on {self.config.endpoint}: {exc}"
            ) from exc
        sock.listen(128)
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(
                console.app(),
                log_level="warning",
                lifespan="off",
                access_log=False,
                server_header=False,
            )
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"console:{self.name}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            raise RuntimeError(f"{self.name}: the web server did not start")
        log.info(
            "serving the console",
            extra={"component": self.name, "address": f"http://{bind_host}:{self.port}/"},
        )

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None
