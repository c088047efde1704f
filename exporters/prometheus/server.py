"""The scrape endpoint: the derived metrics and the collector's self-telemetry over HTTP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app


class Forward:
    """Serves another registry's metrics (the collector's self-telemetry) on this endpoint."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


def _server_class(host: str) -> type[ThreadingWSGIServer]:
    if ":" not in host:
        return ThreadingWSGIServer

    class V6Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6

    return V6Server


class ScrapeServer:
    """A threaded HTTP server answering ``path`` with the registry's exposition, 404 elsewhere."""

    def __init__(self, registry: CollectorRegistry, path: str) -> None:
        self.registry = registry
        self.path = path
        self.port = 0
        self._server: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, host: str, port: int, thread_name: str) -> None:
        metrics_app = make_wsgi_app(self.registry)
        path = self.path

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != path:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [f"metrics are served at {path}\n".encode()]
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]

        server = make_server(
            host, port, app, server_class=_server_class(host), handler_class=_QuietHandler
        )
        self._server = server
        self.port = server.server_port
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name=thread_name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Idempotent: stops serving and waits for the serving thread."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
