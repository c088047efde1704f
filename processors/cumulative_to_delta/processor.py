"""The ``cumulative_to_delta`` processor: turn monotonic cumulative sums and cumulative
histograms into deltas.

Gemini CLI (and any agent whose SDK is set to cumulative) reports running totals; cost, the
agent tables and most backends want what happened in each interval. The conversion needs the
previous point of every stream, so this processor is stateful. Unlike upstream's in-memory
``cumulativetodelta``, its state survives a restart (``internal/state.py``): every batch that
changes state is journaled in one write, and every ``state_flush_interval`` a background thread
compacts the state into an fsynced snapshot. The per-stream rules are in
``internal/tracking.py``; this module walks the metrics and owns the locks and the lifecycle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from collector.component import Factory, Host, MetricsData, Processor, Signal
from processors.cumulative_to_delta.config import CumulativeToDeltaConfig
from processors.cumulative_to_delta.internal.state import STATE_ERRORS, StateStore
from processors.cumulative_to_delta.internal.tracking import (
    Tracker,
    attributes_bytes,
    convertible,
    digest,
    set_delta,
)

log = logging.getLogger("processors.cumulative_to_delta")


class CumulativeToDelta(Processor):
    """Converts cumulative streams to delta, remembering each stream's last point on disk."""

    config: CumulativeToDeltaConfig

    def __init__(
        self,
        name: str,
        config: CumulativeToDeltaConfig,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(name, config)
        self.config = config
        self._clock = clock
        self._include = config.include.matcher() if config.include else None
        self._exclude = config.exclude.matcher() if config.exclude else None
        self._selected: dict[str, bool] = {}
        self.tracker = Tracker(
            name,
            config.initial_value,
            config.max_streams,
            int(config.max_staleness * 1e9),
            clock(),
        )
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._store: StateStore | None = None
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self, host: Host) -> None:
        store = StateStore(
            Path(host.data_dir) / "cumulative_to_delta" / quote(self.name, safe=""), self.name
        )
        store.open()
        self._store = store
        try:
            with self._lock:
                loaded = store.load()
                tracker = self.tracker
                tracker.streams = loaded.streams
                tracker.forgotten_start_ns = loaded.forgotten_start_ns
                tracker.started_at_ns = (
                    self._clock() if loaded.started_at_ns is None else loaded.started_at_ns
                )
                tracker.evict_over_limit()
                tracker.set_gauge()
            store.changed_since_snapshot = True
            self._compact()
        except BaseException:
            self._release()
            raise
        self._stop.clear()
        self._flusher = threading.Thread(
            target=self._flush_loop, name=f"{self.name}-state", daemon=True
        )
        self._flusher.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        try:
            if self._store is not None and self._store.journaling:
                self.flush()
        finally:
            self._release()

    def _release(self) -> None:
        store = self._store
        if store is None:
            return
        with self._lock:
            store.close_journal()
            self.tracker.journal = None
        store.unlock()

    def flush(self) -> None:
        """Forget stale streams and compact the state into an fsynced snapshot."""
        with self._lock:
            self.tracker.sweep_stale(self._clock())
            self._write_journal()
        self._compact()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.config.state_flush_interval):
            try:
                self.flush()
            except OSError:
                STATE_ERRORS.labels(self.name, "snapshot").inc()
                log.exception("state snapshot failed", extra={"component": self.name})

    def _write_journal(self) -> None:
        """Write the journal records of this batch's changes (under the lock)."""
        journal = self.tracker.journal
        if not journal or self._store is None:
            return
        buf = b"".join(journal)
        journal.clear()
        self._store.append(buf)

    def _compact(self) -> None:
        """Snapshot generation G+1, switch appends to journal G+1, then drop older files."""
        store = self._store
        if store is None:
            return
        with self._flush_lock:
            with self._lock:
                tracker = self.tracker
                snapshot = store.begin_snapshot(
                    tracker.started_at_ns, tracker.forgotten_start_ns, tracker.streams.items()
                )
                if tracker.journal is None:
                    tracker.journal = []
            if snapshot is not None:
                store.finish_snapshot(snapshot)

    # --- the conversion -------------------------------------------------------------------------
    def consume_metrics(self, data: MetricsData) -> MetricsData | None:
        touched = False
        tracker = self.tracker
        with self._lock:
            now = self._clock()
            tracker.sweep_stale(now)
            for rm_index in range(len(data.resource_metrics) - 1, -1, -1):
                rm = data.resource_metrics[rm_index]
                resource_key: bytes | None = None
                removed_scope = False
                for sm_index in range(len(rm.scope_metrics) - 1, -1, -1):
                    sm = rm.scope_metrics[sm_index]
                    scope_key: bytes | None = None
                    removed_metric = False
                    for m_index in range(len(sm.metrics) - 1, -1, -1):
                        metric = sm.metrics[m_index]
                        found = convertible(metric)
                        if found is None or not self._selects(metric.name):
                            continue
                        kind, points = found
                        if resource_key is None:
                            resource_key = digest(attributes_bytes(rm.resource.attributes))
                        if scope_key is None:
                            scope_key = digest(
                                resource_key
                                + attributes_bytes(sm.scope.attributes)
                                + b"\0"
                                + sm.scope.name.encode()
                                + b"\0"
                                + sm.scope.version.encode()
                            )
                        metric_key = (
                            scope_key
                            + bytes((kind,))
                            + metric.name.encode()
                            + b"\0"
                            + metric.unit.encode()
                            + b"\0"
                        )
                        touched = True
                        dropped = tracker.convert_points(kind, metric_key, points, now)
                        set_delta(metric)
                        if dropped and not points:
                            del sm.metrics[m_index]
                            removed_metric = True
                    if removed_metric and not sm.metrics:
                        del rm.scope_metrics[sm_index]
                        removed_scope = True
                if removed_scope and not rm.scope_metrics:
                    del data.resource_metrics[rm_index]
            if touched:
                tracker.evict_over_limit()
                self._write_journal()
                tracker.set_gauge()
        if touched and not data.resource_metrics:
            return None
        return data

    def _selects(self, name: str) -> bool:
        selected = self._selected.get(name)
        if selected is None:
            selected = (self._include is None or self._include(name)) and not (
                self._exclude is not None and self._exclude(name)
            )
            if len(self._selected) < 10_000:
                self._selected[name] = selected
        return selected


FACTORY: Factory[CumulativeToDelta] = Factory(
    type_name="cumulative_to_delta",
    kind="processor",
    config_class=CumulativeToDeltaConfig,
    create=lambda name, config: CumulativeToDelta(name, config),
    signals=frozenset({Signal.METRICS}),
)
