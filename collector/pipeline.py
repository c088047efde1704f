"""Pipeline runtime: processors in order, then fan-out into each exporter's own queue.

Vendor knowledge lives in processors; nothing here knows about agents.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator, Sequence

from collector import telemetry, wire
from collector.component import (
    Consumer,
    ConsumeResult,
    Exporter,
    ExporterConfig,
    ExportError,
    LogsData,
    Processor,
    Refused,
    Signal,
    Telemetry,
    TracesData,
    count_items,
)
from collector.isolation import describe, merge, singles
from collector.queue import Batch, ExporterQueue, Queued, WalQueue
from collector.records import Logs, Records, Traces

log = logging.getLogger("agentwatch.pipeline")

ADMISSION_LOCK = threading.Lock()
"""All-or-nothing admission across every queue a batch goes to, so a refused request was queued
nowhere and the client's retry duplicates nothing."""


class ExporterRunner:
    """One exporter's queue of one signal and the worker that delivers from it with retries.

    Each signal has its own queue, so batches never mix signals (a logs batch is not cut short
    by a metrics request queued in between) and one signal's backlog never holds up another's.
    """

    def __init__(
        self, exporter: Exporter, config: ExporterConfig, queue: ExporterQueue, signal: Signal
    ) -> None:
        self.exporter = exporter
        self.name = exporter.name
        self.signal = signal
        self.config = config
        self.queue = queue
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"export:{self.name}:{signal.value}", daemon=True
        )
        self._size = telemetry.EXPORTER_QUEUE_SIZE.labels(self.name, signal.value)
        self._wal_bytes = telemetry.EXPORTER_WAL_BYTES.labels(self.name, signal.value)
        telemetry.EXPORTER_QUEUE_CAPACITY.labels(self.name, signal.value).set(
            config.sending_queue.queue_size
        )
        if config.sending_queue.storage == "wal":
            telemetry.EXPORTER_WAL_MAX_BYTES.labels(self.name, signal.value).set(
                config.sending_queue.max_bytes
            )

    def start(self) -> None:
        self._update_gauges()
        self._thread.start()

    def offer(self, signal: Signal, data: Queued, items: int) -> None:
        self.queue.put(signal, data, items)
        self._update_gauges()

    def _update_gauges(self) -> None:
        self._size.set(self.queue.items)
        if isinstance(self.queue, WalQueue):
            self._wal_bytes.set(self.queue.bytes)

    def _run(self) -> None:
        while True:
            try:
                batch = self.queue.take(self._stop)
                if batch is None:
                    return
                self._deliver(batch)
            except Exception:
                # A queue error (disk, corrupt record) must not end delivery for good.
                log.exception("exporter worker error", extra={"component": self.name})
                if self._abandon.wait(1.0):
                    return
            self._update_gauges()
            if self._abandon.is_set():
                return

    def _deliver(self, batch: Batch) -> None:
        """Send one batch until delivered, permanently refused, or retries run out."""
        retry = self.config.retry_on_failure
        signal = batch.signal.value
        merged = _merge(self.queue.load(batch))
        data = merged
        started = time.monotonic()
        interval = retry.initial_interval
        attempt = 0
        while True:
            attempt += 1
            t0 = time.monotonic()
            try:
                self.exporter.export(batch.signal, data, batch.batch_id)  # type: ignore[arg-type]
            except Exception as raised:
                if isinstance(raised, ExportError):
                    exc = raised
                else:  # an exporter bug: retried like an outage, never a silent loss
                    log.exception("exporter raised unexpectedly", extra={"component": self.name})
                    exc = ExportError(f"{type(raised).__name__}: {raised}")
                telemetry.EXPORTER_FAILED_ATTEMPTS.labels(
                    self.name, signal, str(exc.retryable).lower()
                ).inc()
                elapsed = time.monotonic() - started
                give_up = (
                    not exc.retryable
                    or not retry.enabled
                    or (retry.max_elapsed_time > 0 and elapsed >= retry.max_elapsed_time)
                )
                if give_up:
                    reason = "permanent_error" if not exc.retryable else "retries_exhausted"
                    telemetry.EXPORTER_DROPPED.labels(self.name, signal, reason).inc(batch.items)
                    log.error(
                        "export failed, batch dropped",
                        extra={
                            "component": self.name,
                            "reason": reason,
                            "error": str(exc),
                            "items": batch.items,
                        },
                    )
                    self.queue.done(batch)
                    return
                wait = (
                    exc.retry_after
                    if exc.retry_after is not None
                    else interval * random.uniform(0.5, 1.5)
                )
                log.warning(
                    "export failed, will retry",
                    extra={
                        "component": self.name,
                        "error": str(exc),
                        "attempt": attempt,
                        "retry_in_s": round(wait, 3),
                    },
                )
                interval = min(interval * 2, retry.max_interval)
                if self._abandon.wait(wait):
                    return  # shutdown deadline passed; the batch stays queued (wal) or is counted
                continue
            finally:
                telemetry.EXPORTER_SEND_SECONDS.labels(self.name, signal).observe(
                    time.monotonic() - t0
                )
            telemetry.EXPORTER_SENT.labels(self.name, signal).inc(batch.items)
            self.queue.done(batch)
            return

    def drain(self, deadline: float) -> bool:
        """Deliver what is queued until ``deadline`` (monotonic); True if everything went."""
        self._stop.set()
        self.queue.wake()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        drained = not self._thread.is_alive()
        if not drained:
            self._abandon.set()
            self._thread.join(5.0)
        left = self.queue.items
        if left:
            if self.config.sending_queue.storage == "wal":
                log.warning(
                    "shutdown timeout: items stay in the wal and are sent after restart",
                    extra={"component": self.name, "items": left},
                )
            else:
                telemetry.EXPORTER_DROPPED.labels(
                    self.name, self.signal.value, "shutdown_timeout"
                ).inc(left)
                log.error(
                    "shutdown timeout: in-memory queue dropped",
                    extra={"component": self.name, "items": left},
                )
        self.queue.close()
        return drained and left == 0


def _merge(parts: list[Queued]) -> Queued:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if isinstance(first, Logs):
        return Logs.concat(parts)  # type: ignore[arg-type]
    if isinstance(first, Traces):
        return Traces.concat(parts)  # type: ignore[arg-type]
    merged = type(first)()
    for p in parts:
        merged.MergeFrom(p)  # type: ignore[arg-type]  # repeated resource_* fields concatenate
    return merged


def decode(request: Telemetry | Records) -> Telemetry | Records:
    """The one place a protobuf logs or traces request (OTLP/JSON, session files) becomes the
    record model; records (decoded from the wire by the receiver) and metrics pass as they are."""
    if isinstance(request, LogsData):
        return Logs.from_proto(request)
    if isinstance(request, TracesData):
        return Traces.from_proto(request)
    return request


class Replay:
    """What a pipeline received, kept so it can be processed again record by record after a
    processor failed on it: the wire bytes the records came from or the protobuf request they
    were decoded from (nothing to copy: neither is changed), else a snapshot in the wal
    encoding; metrics as a protobuf copy."""

    def __init__(self, data: Telemetry | Records, request: Telemetry | None = None) -> None:
        self._records: type[Logs] | type[Traces] | None = None
        self._source: bytes | None = None
        self._snapshot: bytes | None = None
        self._metrics: Telemetry | None = None
        self._request = request
        if request is not None:
            self._records = type(data)  # type: ignore[assignment]
        elif isinstance(data, Logs | Traces):
            self._records = type(data)
            if data.source is not None:
                self._source = data.source
            else:
                self._snapshot = data.dump()
        else:
            self._metrics = type(data)()
            self._metrics.CopyFrom(data)

    def whole(self) -> Telemetry | Records:
        """A fresh copy of what was received."""
        if self._request is not None:
            return decode(self._request)
        if self._records is Logs:
            return wire.decode_logs(self._source) if self._source else Logs.load(self._snapshot)  # type: ignore[arg-type]
        if self._records is Traces:
            return (
                wire.decode_traces(self._source) if self._source else Traces.load(self._snapshot)  # type: ignore[arg-type]
            )
        assert self._metrics is not None
        copy = type(self._metrics)()
        copy.CopyFrom(self._metrics)
        return copy

    def singles(self) -> Iterator[Telemetry | Records]:
        whole = self.whole()
        if isinstance(whole, Logs | Traces):
            yield from whole.singles()
        else:
            yield from singles(whole)


class Pipeline:
    """Processors in order, then every exporter of the pipeline."""

    def __init__(
        self,
        name: str,
        signal: Signal,
        processors: Sequence[Processor],
        runners: Sequence[ExporterRunner],
    ) -> None:
        self.name = name
        self.signal = signal
        self.processors = list(processors)
        self.runners = list(runners)

    def process(self, data: Telemetry | Records) -> tuple[Telemetry | Records | None, int]:
        """The processed data (``None`` when processors dropped it all) and how many of its
        items were dropped because a processor failed on them.

        A processor that raises on a request does not fail it: the request is processed again
        from what was received (``Replay``), one item at a time, and only the items that still
        make a processor raise are dropped, counted (``agentwatch_processor_dropped_items_total``,
        ``reason="processor_error"``) and reported to the client as a partial success. Dropping,
        not passing on, is what keeps a record whose redaction failed from being stored.
        ``Refused`` (derived telemetry refused by full queues) refuses the request as before.
        """
        request = data if isinstance(data, LogsData | TracesData) else None
        data = decode(data)
        if not self.processors:
            return data, 0
        replay = Replay(data, request)
        try:
            return self._run(data), 0
        except _ProcessorFailed as failed:
            log.warning(
                "processor failed on a request; processing it record by record",
                extra={"component": failed.processor, "error": describe(failed.error)},
            )
        outputs: list[Telemetry | Records] = []
        dropped = 0
        for one in replay.singles():
            try:
                out = self._run(one)
            except _ProcessorFailed as failed:
                dropped += 1
                telemetry.PROCESSOR_DROPPED.labels(
                    failed.processor, self.signal.value, "processor_error"
                ).inc(count_items(one))
                log.error(
                    "processor failed on a record; record dropped",
                    extra={"component": failed.processor, "error": describe(failed.error)},
                )
                continue
            if out is not None and count_items(out):
                outputs.append(out)
        if not outputs:
            return None, dropped
        if isinstance(outputs[0], Logs | Traces):
            return _merge(outputs), dropped  # type: ignore[arg-type]
        merged = merge(outputs, type(outputs[0])())  # type: ignore[type-var, arg-type]
        return (merged if count_items(merged) else None), dropped

    def _run(self, data: Telemetry | Records) -> Telemetry | Records | None:
        for p in self.processors:
            try:
                out = p.process(self.signal, data)
            except Refused:
                raise
            except Exception as exc:
                raise _ProcessorFailed(p.name, exc) from exc
            if out is None:
                return None
            data = out
        return data


class _ProcessorFailed(Exception):
    def __init__(self, processor: str, error: Exception) -> None:
        super().__init__(processor)
        self.processor = processor
        self.error = error


class SignalRouter(Consumer):
    """What a receiver sees for one signal: every pipeline of that signal it feeds.

    Each pipeline gets its own copy when there are several, because processors change data in
    place. Admission is decided once, for every queue involved, before any processor runs.
    """

    def __init__(self, receiver: str, signal: Signal, pipelines: Sequence[Pipeline]) -> None:
        self.receiver = receiver
        self.signal = signal
        self.pipelines = list(pipelines)
        self._accepted = telemetry.RECEIVER_ACCEPTED.labels(receiver, signal.value)

    def consume(self, signal: Signal, data: Telemetry | Records) -> ConsumeResult:
        """``data``: records a receiver decoded from the wire or a processor derived, or a
        protobuf request (OTLP/JSON, session files, metrics)."""
        items_in = count_items(data)
        # The one refusal point is before processors run: stateful processors (cumulative-to-
        # delta, detection de-duplication) and derived telemetry must not act on a request the
        # client will send again. Once admitted, a request is queued even if a concurrent one
        # filled a queue meanwhile, so queues may overshoot their bound by the requests in
        # flight (bounded by the receivers' concurrency), never by more.
        with ADMISSION_LOCK:
            runners = [r for p in self.pipelines for r in p.runners]
            full_names = self._admit([(r, items_in) for r in runners], items_in)
        outputs: list[tuple[Pipeline, Telemetry | Records, int]] = []
        rejected = 0
        # Processors change what they get: every pipeline but the last gets its own copy, made
        # before any of them ran.
        last = len(self.pipelines) - 1
        # A protobuf request is never changed: every pipeline decodes its own records from it.
        copies = Replay(data) if last > 0 and not isinstance(data, LogsData | TracesData) else None
        for i, pipeline in enumerate(self.pipelines):
            try:
                out, dropped = pipeline.process(
                    data if copies is None or i == last else copies.whole()
                )
            except Refused:
                # Telemetry a processor derived was refused (its queues are full): the client
                # retries the request, and the derived part with it.
                telemetry.RECEIVER_REFUSED.labels(
                    self.receiver, signal.value, "derived_queue_full"
                ).inc(items_in)
                raise
            rejected = max(rejected, dropped)
            if out is not None:
                outputs.append((pipeline, out, count_items(out)))
        targets = [(r, out, n) for p, out, n in outputs for r in p.runners if n]
        # Durable queues first: if a write-ahead log cannot take the request (disk full), it is
        # refused before any other queue holds a copy a retry would duplicate.
        targets.sort(key=lambda t: t[0].config.sending_queue.storage != "wal")
        offered = 0
        with ADMISSION_LOCK:
            for runner, out, n in targets:
                if runner.name in full_names:
                    telemetry.EXPORTER_DROPPED.labels(runner.name, signal.value, "queue_full").inc(
                        n
                    )
                    continue
                try:
                    runner.offer(signal, out, n)
                except OSError as exc:
                    log.error(
                        "queue write failed", extra={"component": runner.name, "error": str(exc)}
                    )
                    if offered == 0:
                        telemetry.RECEIVER_REFUSED.labels(
                            self.receiver, signal.value, "queue_write_error"
                        ).inc(items_in)
                        raise Refused(f"queue of {runner.name} cannot write: {exc}") from exc
                    telemetry.EXPORTER_DROPPED.labels(
                        runner.name, signal.value, "queue_write_error"
                    ).inc(n)
                    continue
                offered += 1
        self._accepted.inc(items_in)
        if rejected:
            return ConsumeResult(
                rejected=rejected,
                message=f"{rejected} item(s) dropped: a processor failed on them"
                " (counted in agentwatch_processor_dropped_items_total{reason=processor_error})",
            )
        return ConsumeResult()

    def _admit(self, targets: list[tuple[ExporterRunner, int]], items_in: int) -> set[str]:
        """Raise ``Refused`` unless the request may enter; return the full drop-policy queues.

        Caller holds ``ADMISSION_LOCK``.
        """
        full = [(r, n) for r, n in targets if n and not r.queue.has_room(n)]
        if full and (
            len(full) == len(targets)
            or any(r.config.sending_queue.on_full == "refuse" for r, _ in full)
        ):
            telemetry.RECEIVER_REFUSED.labels(self.receiver, self.signal.value, "queue_full").inc(
                items_in
            )
            names = ", ".join(sorted({r.name for r, _ in full}))
            raise Refused(f"exporter queue full: {names}", retry_after=1.0)
        return {r.name for r, _ in full}
