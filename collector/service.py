"""The running collector: builds components from a checked config, wires and supervises them."""

from __future__ import annotations

import logging
import signal as signals
import threading
import time
from collections.abc import Callable
from pathlib import Path

from collector.component import Exporter, Extension, Host, Processor, Receiver, Signal
from collector.config import Config, exporter_config
from collector.pipeline import ExporterRunner, Pipeline, SignalRouter
from collector.queue import make_queue

log = logging.getLogger("agentwatch.service")


class Service:
    """Start order: exporters, processors, pipelines, extensions, receivers; shutdown is the
    reverse, with queues drained in between so what was accepted is delivered (or kept in the
    wal)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = config.service.data_dir
        self.host = Host(self.data_dir, ready=self.ready)
        self.exporters: dict[str, Exporter] = {}
        self.runners: dict[tuple[str, Signal], ExporterRunner] = {}
        self.processors: dict[str, Processor] = {}
        self.receivers: dict[str, Receiver] = {}
        self.extensions: dict[str, Extension] = {}
        self.pipelines: list[Pipeline] = []
        self._started = False
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    def start(self) -> None:
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        config = self.config
        try:
            for name, spec in config.exporters.items():
                exp = spec.factory.create(name, spec.config)
                exp.start(self.host)
                self.exporters[name] = exp
                self.host.exporters[name] = exp
                ecfg = exporter_config(spec)
                for sig in sorted({p.signal for p in config.pipelines if name in p.exporters}):
                    queue = make_queue(ecfg.sending_queue, self.data_dir, name, sig)
                    runner = ExporterRunner(exp, ecfg, queue, sig)
                    runner.start()
                    self.runners[(name, sig)] = runner
                log.info("exporter started", extra={"component": name})
            for name, spec in config.processors.items():
                proc = spec.factory.create(name, spec.config)
                proc.start(self.host)
                self.processors[name] = proc
            for p in config.pipelines:
                self.pipelines.append(
                    Pipeline(
                        p.name,
                        p.signal,
                        [self.processors[n] for n in p.processors],
                        [self.runners[(n, p.signal)] for n in p.exporters],
                    )
                )
            self.host.extras["pipelines"] = self.pipelines
            for name, spec in config.extensions.items():
                ext = spec.factory.create(name, spec.config)
                ext.start(self.host)
                self.extensions[name] = ext
                log.info("extension started", extra={"component": name})
            for name, spec in config.receivers.items():
                rec = spec.factory.create(name, spec.config)
                for sig in Signal:
                    feeds = [
                        pl
                        for pl, ps in zip(self.pipelines, config.pipelines, strict=True)
                        if ps.signal is sig and name in ps.receivers
                    ]
                    if feeds:
                        rec.attach(sig, SignalRouter(name, sig, feeds))
                self.receivers[name] = rec
            self._wire_derived_outputs()
            for name, rec in self.receivers.items():
                rec.start(self.host)
                log.info("receiver started", extra={"component": name})
        except Exception:
            log.exception("start failed; shutting down what started")
            self.shutdown()
            raise
        self._started = True

    def _wire_derived_outputs(self) -> None:
        """Give processors that derive telemetry of another signal (``emit_logs`` /
        ``emit_metrics``) a way in: the pipelines of that signal that run the same processor."""
        for name, proc in self.processors.items():
            for sig in (Signal.LOGS, Signal.METRICS, Signal.TRACES):
                hook = f"emit_{sig.value}"
                if not hasattr(proc, hook):
                    continue
                feeds = [pl for pl in self.pipelines if pl.signal is sig and proc in pl.processors]
                if feeds:
                    router = SignalRouter(f"derived:{name}", sig, feeds)
                    setattr(proc, hook, lambda data, r=router, s=sig: r.consume(s, data))

    def ready(self) -> bool:
        """Started, not stopping, and every exporter can take data: its destination answers, or
        its queue is a write-ahead log with room, which carries the data over an outage (so a
        ClickHouse outage does not take every replica out of a load balancer)."""
        if not self._started or self._stopped.is_set():
            return False
        for (name, _), runner in self.runners.items():
            durable = runner.config.sending_queue.storage == "wal" and runner.queue.has_room(1)
            if not durable and not self.exporters[name].ready():
                return False
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop receivers, drain every queue within the timeout, then stop the rest.

        Returns True when every queue was fully delivered.
        """
        with self._stop_lock:
            if self._stopped.is_set():
                return True
            self._stopped.set()
        deadline = time.monotonic() + (
            self.config.service.shutdown_timeout if timeout is None else timeout
        )
        for name, rec in self.receivers.items():
            _safe(rec.shutdown, name)
        for name, ext in self.extensions.items():
            _safe(ext.shutdown, name)
        drained = True
        for runner in self.runners.values():
            drained = runner.drain(deadline) and drained
        for name, proc in self.processors.items():
            _safe(proc.shutdown, name)
        for name, exp in self.exporters.items():
            _safe(exp.shutdown, name)
        log.info("stopped", extra={"drained": drained})
        return drained

    def run_until_signalled(self) -> int:
        """Serve until SIGTERM or SIGINT, then shut down gracefully."""
        got = threading.Event()

        def handler(signum: int, _frame: object) -> None:
            log.info(
                "signal received, shutting down", extra={"signal": signals.Signals(signum).name}
            )
            got.set()

        signals.signal(signals.SIGTERM, handler)
        signals.signal(signals.SIGINT, handler)
        self.start()
        log.info("agentwatch is serving", extra={"pipelines": [p.name for p in self.pipelines]})
        while not got.wait(0.5):
            pass
        return 0 if self.shutdown() else 1


def _safe(fn: Callable[[], None], name: str) -> None:
    try:
        fn()
    except Exception:
        log.exception("shutdown failed", extra={"component": name})
