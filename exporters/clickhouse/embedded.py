"""An embedded ClickHouse server: ClickHouse 26.9 from PyPI's ``chdb-core``, served over HTTP.

chdb is clickhouse-local in a Python extension. It can listen on the real ClickHouse HTTP
protocol while one long query runs, so agentwatch talks to it with exactly the same
clickhouse-connect code it uses against a production server. Only one such server fits in a
Python process and it blocks the calling thread, hence a child process that this module both
implements (``python embedded.py --root DIR --tag TAG``) and supervises
(``EmbeddedClickHouse``).

This file imports only the standard library at module level so the child starts fast and can
be run as a plain script without importing the agentwatch packages.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

LISTEN_HOST = "127.0.0.1"
# The long query that keeps the HTTP listener alive. Its alias carries a per-start tag so the
# supervisor recognises its own child (and not some other server on the port) and can kill it.
SERVE_MARKER = "agentwatch_embedded_serve"


def serve_sql(tag: str) -> str:
    return (
        "SYSTEM START LISTEN HTTP; "
        f"SELECT sleepEachRow(0.25) AS {SERVE_MARKER}_{tag} FROM system.numbers "
        "SETTINGS max_block_size = 1 FORMAT Null"
    )


CONFIG_XML = """<clickhouse>
    <listen_host>{host}</listen_host>
    <http_port>{port}</http_port>
    <timezone>UTC</timezone>
</clickhouse>
"""
PID_FILE = "server.pid"
LOG_FILE = "server.log"
# A live server busy with a big insert on a loaded machine can miss a health check, and a
# restart would cost it that insert: only this many failed checks in a row, each waiting this
# long, count as hung. A child that exited is restarted at the first check.
HEALTH_TIMEOUT = 5.0
FAILED_CHECKS_BEFORE_RESTART = 3
_PR_SET_PDEATHSIG = 1


class EmbeddedStartError(RuntimeError):
    """The child server did not come up; the message carries the tail of its log."""


def free_port(host: str = LISTEN_HOST) -> int:
    """A port nobody listens on right now (another process may still take it: start() retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_query(port: int, sql: str, timeout: float = 2.0) -> str:
    """One statement over plain HTTP, for the supervisor's own needs (no client library)."""
    url = f"http://{LISTEN_HOST}:{port}/?" + urllib.parse.urlencode({"query": sql})
    with urllib.request.urlopen(url, data=b"", timeout=timeout) as response:
        return str(response.read().decode())


def ping(port: int, timeout: float = 1.0, tag: str = "") -> bool:
    """The port answers queries; with ``tag``, and it is the child started with that tag."""
    sql = "SELECT 1"
    if tag:
        sql = (
            "SELECT count() > 0 FROM system.processes WHERE query_id != queryID() "
            f"AND position(query, '{SERVE_MARKER}_{tag} ') > 0"
        )
    try:
        return http_query(port, sql, timeout).strip() == "1"
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parent_pid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])  # the command name may contain spaces


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


class EmbeddedClickHouse:
    """Starts, watches, restarts and stops one embedded ClickHouse child on 127.0.0.1.

    ``root`` holds ``config.xml``, ``server.pid``, ``server.log`` and the ClickHouse data under
    ``root/data``; data survives restarts and ``kill -9``.

    Every spawn and stop runs on one supervisor thread that lives until ``stop()`` is done:
    Linux delivers the child's parent-death signal when the *thread* that spawned it ends, so
    spawning from a caller's short-lived thread would kill the server with that thread.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        port: int = 0,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        python: str = sys.executable,
        health_timeout: float = HEALTH_TIMEOUT,
        failed_checks_before_restart: int = FAILED_CHECKS_BEFORE_RESTART,
    ) -> None:
        self.root = Path(root).resolve()
        self.configured_port = port
        self.port = port
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.python = python
        self.health_timeout = health_timeout
        self.failed_checks_before_restart = failed_checks_before_restart
        self.failed_checks = 0
        """Health checks the running child failed in a row."""
        self.restarts = 0
        self.startup_seconds = 0.0
        self.last_exit_code: int | None = None
        """Exit status of the last stopped child: 0 after a clean stop."""
        self._process: subprocess.Popen[bytes] | None = None
        self._tag = ""
        self._inbox: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._watch_interval: float | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def pid_file(self) -> Path:
        return self.root / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.root / LOG_FILE

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    @property
    def url(self) -> str:
        return f"http://{LISTEN_HOST}:{self.port}"

    # --- public operations, each run on the supervisor thread ------------------------------

    def start(self) -> None:
        """Start the child and wait until it answers; raise EmbeddedStartError if it does not."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._supervise, name="clickhouse-embedded", daemon=True
            )
            self._thread.start()
        self._call(self._start)

    def ensure_running(self) -> bool:
        """Restart the child if it exited, or if it failed ``failed_checks_before_restart``
        health checks in a row (hung); True if a restart happened."""
        return bool(self._call(self._ensure_running))

    def watch(self, interval: float = 2.0) -> None:
        """Check health every ``interval`` seconds and restart the server after a crash."""
        self._watch_interval = interval
        self._call(lambda: None)  # wake the supervisor so it picks up the interval

    def stop(self) -> None:
        """Cancel the serving query (clean shutdown), then terminate, then kill after a timeout."""
        thread = self._thread
        if thread is None:
            return
        self._watch_interval = None
        self._call(self._stop)
        self._inbox.put(None)
        thread.join(timeout=self.stop_timeout)
        self._thread = None

    def healthy(self) -> bool:
        """The child is alive and answers a query."""
        process = self._process
        return (
            process is not None
            and process.poll() is None
            and ping(self.port, self.health_timeout, tag=self._tag)
        )

    def _call(self, operation: Callable[[], Any]) -> Any:
        if self._thread is None:
            raise RuntimeError("embedded ClickHouse is not started")
        future: Future[Any] = Future()
        self._inbox.put((operation, future))
        return future.result()

    def _supervise(self) -> None:
        while True:
            try:
                item = self._inbox.get(timeout=self._watch_interval)
            except queue.Empty:
                if self._watch_interval is not None:
                    with contextlib.suppress(EmbeddedStartError):
                        self._ensure_running()
                continue
            if item is None:
                return
            operation, future = item
            try:
                future.set_result(operation())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

    # --- the work itself (supervisor thread only) ------------------------------------------

    def _start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self._reap_orphan()
        attempts = 1 if self.configured_port else 3
        error: EmbeddedStartError | None = None
        for _ in range(attempts):
            try:
                self._spawn_and_wait()
                return
            except EmbeddedStartError as exc:  # a free port may have been taken meanwhile
                error = exc
        assert error is not None
        raise error

    def _spawn_and_wait(self) -> None:
        self.port = self.configured_port or free_port()
        self._tag = secrets.token_hex(6)
        (self.root / "config.xml").write_text(CONFIG_XML.format(host=LISTEN_HOST, port=self.port))
        began = time.monotonic()
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                [
                    self.python,
                    str(Path(__file__).resolve()),
                    "--root",
                    str(self.root),
                    "--tag",
                    self._tag,
                    "--parent",
                    str(os.getpid()),
                ],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._process = process
        self.pid_file.write_text(f"{process.pid}\n")
        deadline = began + self.startup_timeout
        while time.monotonic() < deadline and process.poll() is None:
            if ping(self.port, tag=self._tag):
                self.startup_seconds = time.monotonic() - began
                self.failed_checks = 0
                return
            time.sleep(0.05)
        self._kill_child()
        raise EmbeddedStartError(
            f"embedded ClickHouse did not answer on port {self.port} within "
            f"{self.startup_timeout:.0f}s; last log lines:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _reap_orphan(self) -> None:
        """Kill a server whose supervisor died (it would hold the data directory), but refuse
        to start when a live supervisor still owns it: two servers must not share the data."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        cmdline = _cmdline(pid)
        ours = str(self.root) in cmdline and any(part.endswith("embedded.py") for part in cmdline)
        if _pid_alive(pid) and ours:
            owner = _parent_pid(pid)
            if owner not in (0, 1, os.getpid()) and _pid_alive(owner):
                raise EmbeddedStartError(
                    f"{self.root} is already served by pid {pid}, supervised by pid {owner}"
                )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + self.stop_timeout
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def _ensure_running(self) -> bool:
        process = self._process
        if process is not None and process.poll() is None:
            if ping(self.port, self.health_timeout, tag=self._tag):
                self.failed_checks = 0
                return False
            self.failed_checks += 1
            if self.failed_checks < self.failed_checks_before_restart:
                return False  # maybe only busy: a restart would lose its work
        self.failed_checks = 0
        self._kill_child()
        self.configured_port = self.configured_port or self.port  # keep the URL clients use
        self._start()
        self.restarts += 1
        return True

    def _stop(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(OSError, urllib.error.URLError):
                http_query(
                    self.port,
                    f"KILL QUERY WHERE position(query, '{SERVE_MARKER}_{self._tag} ') > 0 "
                    "AND query NOT LIKE '%KILL QUERY%' SYNC",
                    timeout=self.stop_timeout,
                )
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.last_exit_code = process.returncode
        self._process = None
        self.pid_file.unlink(missing_ok=True)

    def _kill_child(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._process = None

    def rss_bytes(self) -> int:
        """Resident memory of the child, from /proc (0 when not running)."""
        pid = self.pid
        if pid is None:
            return 0
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return 0
        return 0


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child when its parent dies, so no server outlives agentwatch."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def serve(root: Path, tag: str, parent: int) -> int:
    """Child side: serve HTTP from ``root/config.xml`` until the serving query is killed."""
    os.chdir(root)  # clickhouse-local reads ./config.xml
    _die_with_parent()
    if parent and os.getppid() != parent:  # the parent died before prctl took effect
        return 1
    import chdb._chdb as chdb_native  # heavy: imported only in the child

    try:
        chdb_native.query(  # type: ignore[attr-defined]
            serve_sql(tag), "TabSeparated", path=str(root / "data")
        )
    except Exception as exc:
        if "QUERY_WAS_CANCELLED" not in str(exc) and "cancelled" not in str(exc).lower():
            print(f"embedded ClickHouse stopped: {exc}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one embedded ClickHouse HTTP server.")
    parser.add_argument("--root", required=True, help="directory holding config.xml and data/")
    parser.add_argument("--tag", required=True, help="identifies this server's serving query")
    parser.add_argument("--parent", type=int, default=0, help="pid of the supervisor")
    args = parser.parse_args(argv)
    return serve(Path(args.root), args.tag, args.parent)


if __name__ == "__main__":
    sys.exit(main())
