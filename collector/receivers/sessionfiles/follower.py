"""Following session-file directories: the loop behind the ``sessionfiles`` receiver and
``agentwatch watch``.

Each scan lists the directories again (so directories created later are picked up) and reads
every file that changed and has been quiet for ``settle`` seconds. A file is re-read whole --
Claude's largest-usage rule and Codex's running totals need all of it -- and only records not
sent before go out: the ledger under ``<data_dir>/sessionfiles/`` keeps each file's size,
modification time and the digests of what it sent, across restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from collector.component import LogsData
from collector.receivers.sessionfiles import importer
from collector.receivers.sessionfiles.internal.events import Session
from collector.receivers.sessionfiles.internal.ledger import Ledger

log = logging.getLogger("agentwatch.sessionfiles")


class Follower:
    def __init__(
        self,
        agents: list[str],
        roots: dict[str, Path],
        data_dir: str,
        feed: Callable[[LogsData], None],
        settle: float,
        align: Callable[[str, list[Session]], int] | None = None,
    ) -> None:
        """``align(agent, sessions)`` gives file calls already stored (over OTLP) their stored
        event id before they are sent (internal/twins.py)."""
        self.ledger = Ledger(Path(data_dir) / importer.LEDGER)
        self.feed = feed
        self.settle = settle
        self.readers = []
        for agent in agents:
            module = importer.READERS[agent]
            root = roots.get(agent) or module.default_root()
            self.readers.append((module, module.Reader(root), root))
        self.align = align
        self.matched_stored = 0
        self.records_sent = 0
        self.files_read = 0
        self.scans = 0

    def poll(self) -> int:
        """One scan; returns the number of files read."""
        read = 0
        now = time.time()
        for module, reader, root in self.readers:
            for path in module.files(root):
                try:
                    stat = path.stat()
                except OSError:
                    continue  # removed meanwhile
                if self.ledger.unchanged(path) or now - stat.st_mtime < self.settle:
                    continue
                result = reader.read(path)
                if self.align is not None:
                    self.matched_stored += self.align(module.AGENT_ID, result.sessions)
                state = self.ledger.state(path)
                sent = importer.send(result.sessions, state.sent, False, 0, 2**63 - 1, self.feed)
                state.sent |= sent
                state.size, state.mtime_ns, state.complete = stat.st_size, stat.st_mtime_ns, True
                self.records_sent += len(sent)
                read += 1
        if read:
            self.ledger.save()
            self.files_read += read
        self.scans += 1
        return read


class FollowerThread:
    """Runs a follower every ``interval`` seconds until stopped; a failed scan is logged and
    retried at the next interval (its records were not marked as sent)."""

    def __init__(self, follower: Follower, interval: float) -> None:
        self.follower = follower
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sessionfiles", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.follower.poll()
            except Exception:
                log.exception("session-file scan failed")
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
