"""A chat webhook stand-in (the one thing here that cannot be real): a loopback HTTP server
that takes JSON POSTs as Slack's incoming webhooks do and records them."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookSink:
    """Records every JSON body POSTed to it; answers ``fail_with`` statuses first, in order."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        self.fail_with: list[int] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with sink._lock:
                    sink.attempts += 1
                    status = sink.fail_with.pop(0) if sink.fail_with else 200
                    if status == 200:
                        assert self.headers.get("Content-Type") == "application/json"
                        sink.received.append(json.loads(raw))
                body = b"ok" if status == 200 else b"no"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [b for b in self.received if kind is None or b.get("kind") == kind]
