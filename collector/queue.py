"""Each exporter's own bounded queue: in memory, or a write-ahead log that survives a crash.

The queue sits between the receivers (which must answer quickly) and one exporter (which may be
slow, down or failing), so exporters never block ingestion or each other. Entries leave the queue
only when the exporter delivered them or gave up on them for a counted reason.

Batch ids are stable: a batch is retried with the same id, and a ``wal`` queue re-forms exactly
the batch that was in flight when the process died, so exporters that deduplicate on the id
(ClickHouse's ``insert_deduplication_token``) store every item exactly once.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from collector.component import (
    REQUEST_TYPES,
    QueueConfig,
    Signal,
    Telemetry,
)
from collector.records import Logs, Records, Traces

log = logging.getLogger("agentwatch.queue")

_SIGNAL_CODES = {Signal.LOGS: 1, Signal.METRICS: 2, Signal.TRACES: 3}
"""Payload codes of serialised OTLP protobuf requests (every entry written before the record
model, and metrics still)."""
_MODEL_CODES = {Signal.LOGS: 11, Signal.TRACES: 13}
"""Payload codes of the record model's own encoding (``Logs.dump``/``Traces.dump``)."""
_CODE_SIGNALS = {v: k for codes in (_SIGNAL_CODES, _MODEL_CODES) for k, v in codes.items()}
_MODELS: dict[Signal, type[Logs] | type[Traces]] = {Signal.LOGS: Logs, Signal.TRACES: Traces}

Queued = Telemetry | Records


@dataclass
class Entry:
    seq: int
    signal: Signal
    items: int
    data: Queued | None = None  # memory queue keeps the object; the wal reads bytes back
    location: tuple[Path, int, int, int] | None = None  # wal: segment, offset, length, code
    size: int = 0  # wal: bytes on disk (header + payload), counted until delivered


@dataclass
class Batch:
    signal: Signal
    entries: list[Entry]
    batch_id: str

    @property
    def items(self) -> int:
        return sum(e.items for e in self.entries)


class ExporterQueue:
    """Bounded FIFO of export requests for one exporter. Thread-safe."""

    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        self._cond = threading.Condition()
        self._entries: deque[Entry] = deque()
        self._items = 0
        self._closed = False
        self._in_flight: Batch | None = None

    # --- producer side (receiver threads, under the pipeline's admission lock) --------------
    def has_room(self, items: int) -> bool:
        with self._cond:
            return self._items == 0 or self._items + items <= self.config.queue_size

    def put(self, signal: Signal, data: Queued, items: int) -> None:
        with self._cond:
            entry = self._append(signal, data, items)
            self._entries.append(entry)
            self._items += entry.items
            self._cond.notify_all()

    def _append(self, signal: Signal, data: Queued, items: int) -> Entry:
        raise NotImplementedError

    # --- consumer side (the exporter's worker thread) ---------------------------------------
    def take(self, stop: threading.Event) -> Batch | None:
        """Wait for entries, then gather same-signal entries up to ``batch_max_items``.

        Returns None when stopped and empty. The batch stays counted in the queue until
        ``done`` is called, so the queue never looks emptier than what is undelivered.
        """
        config = self.config
        with self._cond:
            if self._in_flight is not None:
                return self._in_flight
            while not self._entries:
                if stop.is_set() or self._closed:
                    return None
                self._cond.wait(0.1)
                self._idle()
            deadline = time.monotonic() + config.batch_timeout
            while self._items < config.batch_max_items and not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            head = self._entries[0]
            chosen: list[Entry] = []
            n = 0
            limit = self._forced_end()
            for e in self._entries:
                if e.signal is not head.signal:
                    break
                if chosen and (n + e.items > config.batch_max_items) and limit is None:
                    break
                chosen.append(e)
                n += e.items
                if limit is not None and e.seq >= limit:
                    break
            batch = Batch(head.signal, chosen, f"{self.id_prefix}-{chosen[0].seq}-{chosen[-1].seq}")
            self._begin(batch)
            self._in_flight = batch
            return batch

    def load(self, batch: Batch) -> list[Queued]:
        return [e.data for e in batch.entries if e.data is not None]

    def done(self, batch: Batch) -> None:
        """The batch was delivered or given up on (and counted): remove it for good.

        Ignored once the queue is closed: a worker abandoned at the shutdown deadline may finish
        late, and its batch then stays in the wal to be re-sent under the same id.
        """
        with self._cond:
            if self._closed:
                return
            for _ in batch.entries:
                e = self._entries.popleft()
                self._items -= e.items
                self._release(e)
            self._in_flight = None
            self._commit(batch)
            self._cond.notify_all()

    @property
    def items(self) -> int:
        return self._items

    @property
    def id_prefix(self) -> str:
        raise NotImplementedError

    def _forced_end(self) -> int | None:
        return None

    def _idle(self) -> None:
        """Called about every 0.1 s while the worker waits for data."""

    def _begin(self, batch: Batch) -> None:
        pass

    def _release(self, entry: Entry) -> None:
        pass

    def _commit(self, batch: Batch) -> None:
        pass

    def wake(self) -> None:
        """Make a waiting ``take`` look at its stop event now rather than after its timeout."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class MemoryQueue(ExporterQueue):
    """Fast and lost on crash; the id prefix is new per run so ids never repeat across runs."""

    def __init__(self, config: QueueConfig) -> None:
        super().__init__(config)
        self._prefix = uuid.uuid4().hex[:16]
        self._seq = 0

    @property
    def id_prefix(self) -> str:
        return self._prefix

    def _append(self, signal: Signal, data: Queued, items: int) -> Entry:
        self._seq += 1
        return Entry(self._seq, signal, items, data=data)


_HEADER = struct.Struct("<IIQBI")  # payload length, crc32 of payload, seq, signal, items
_SEGMENT_BYTES = 16 * 1024 * 1024
_MIN_SEGMENT_BYTES = 64 * 1024


class WalQueue(ExporterQueue):
    """A write-ahead log of segment files under one directory.

    Layout: ``id`` (this log's identity, part of every batch id), ``seg-<first seq>.wal``
    segments of ``header + protobuf`` records, ``acked`` (last delivered seq) and ``inflight``
    (last seq of the batch being delivered, written before delivery so a restart re-forms the
    same batch). A torn record at the tail after a crash is cut off; its request was never
    acknowledged to the client.
    """

    def __init__(self, config: QueueConfig, directory: Path) -> None:
        super().__init__(config)
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.dir / "lock", "w")  # noqa: SIM115 - held while the queue lives
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_fh.close()
            raise RuntimeError(f"wal {self.dir} is in use by another agentwatch process") from exc
        id_file = self.dir / "id"
        if not id_file.exists():
            _atomic_write(id_file, uuid.uuid4().hex[:16])
        self._prefix = id_file.read_text().strip()
        self._acked = _read_int(self.dir / "acked", 0)
        self._inflight_end: int | None = _read_int(self.dir / "inflight", 0) or None
        self._bytes = 0  # undelivered records only: what max_bytes bounds
        # Delivered records stay on disk until their segment is dropped; small segments keep
        # that overhang well below max_bytes.
        self._segment_bytes = max(_MIN_SEGMENT_BYTES, min(_SEGMENT_BYTES, config.max_bytes // 8))
        self._dirty = False
        self._seq = self._acked
        self._segment: Path | None = None
        self._fh: BinaryIO | None = None
        self._last_sync = time.monotonic()
        self._recover()

    @property
    def id_prefix(self) -> str:
        return self._prefix

    @property
    def bytes(self) -> int:
        return self._bytes

    def has_room(self, items: int) -> bool:
        with self._cond:
            if self._bytes >= self.config.max_bytes:
                return False
            return self._items == 0 or self._items + items <= self.config.queue_size

    def _recover(self) -> None:
        for seg in sorted(self.dir.glob("seg-*.wal")):
            valid_end = 0
            with open(seg, "rb") as fh:
                data = fh.read()
            pos = 0
            while pos + _HEADER.size <= len(data):
                length, crc, seq, code, items = _HEADER.unpack_from(data, pos)
                start = pos + _HEADER.size
                payload = data[start : start + length]
                if len(payload) < length or zlib.crc32(payload) != crc or code not in _CODE_SIGNALS:
                    break
                pos = start + length
                valid_end = pos
                self._seq = max(self._seq, seq)
                if seq > self._acked:
                    self._bytes += _HEADER.size + length
                    self._entries.append(
                        Entry(
                            seq,
                            _CODE_SIGNALS[code],
                            items,
                            location=(seg, start, length, code),
                            size=_HEADER.size + length,
                        )
                    )
                    self._items += items
            if valid_end < len(data):
                log.warning(
                    "wal segment has a torn tail, cutting it off",
                    extra={"segment": str(seg), "bytes": len(data) - valid_end},
                )
                with open(seg, "r+b") as fh:
                    fh.truncate(valid_end)
            self._segment = seg
        self._drop_acked_segments()
        if self._inflight_end is not None and self._inflight_end <= self._acked:
            self._inflight_end = None

    def _append(self, signal: Signal, data: Queued, items: int) -> Entry:
        if isinstance(data, Logs | Traces):
            payload, code = data.dump(), _MODEL_CODES[signal]
        else:
            payload, code = data.SerializeToString(), _SIGNAL_CODES[signal]
        seq = self._seq + 1
        if self._segment is None or self._segment.stat().st_size >= self._segment_bytes:
            self._close_segment()
            self._segment = self.dir / f"seg-{seq:020d}.wal"
        if self._fh is None:
            self._fh = open(self._segment, "ab")  # noqa: SIM115 - kept open across appends
            _fsync_dir(self.dir)
        fh = self._fh
        offset = fh.tell()
        header = _HEADER.pack(len(payload), zlib.crc32(payload), seq, code, items)
        try:
            fh.write(header + payload)
            fh.flush()
        except OSError:
            # Disk full or I/O error: cut the partial record off, so what follows stays
            # readable, and let the caller refuse the request.
            self._fh = None
            with contextlib.suppress(OSError):
                fh.close()
            with contextlib.suppress(OSError), open(self._segment, "r+b") as repair:
                repair.truncate(offset)
            raise
        self._seq = seq
        self._dirty = True
        if self.config.fsync == "always":
            self._sync_now()
        else:
            self._idle()
        size = _HEADER.size + len(payload)
        self._bytes += size
        location = (self._segment, offset + _HEADER.size, len(payload), code)
        return Entry(seq, signal, items, location=location, size=size)

    def load(self, batch: Batch) -> list[Queued]:
        """The batch's entries read back: record-model entries each loaded, runs of protobuf
        entries as one request (serialised OTLP requests concatenated parse as their merge),
        which is much cheaper than parsing and merging each. Logs and traces come back as the
        record model whatever encoding they were written in (a wal from before the model)."""
        out: list[Queued] = []
        protobuf: list[bytes] = []
        handles: dict[Path, BinaryIO] = {}
        model = _MODELS.get(batch.signal)

        def flush() -> None:
            if protobuf:
                request = REQUEST_TYPES[batch.signal].FromString(b"".join(protobuf))
                out.append(model.from_proto(request) if model else request)  # type: ignore[arg-type]
                protobuf.clear()

        try:
            for e in batch.entries:
                assert e.location is not None
                seg, offset, length, code = e.location
                fh = handles.get(seg)
                if fh is None:
                    fh = handles[seg] = open(seg, "rb")  # noqa: SIM115 - closed below
                fh.seek(offset)
                payload = fh.read(length)
                if code in _SIGNAL_CODES.values():
                    protobuf.append(payload)
                    continue
                flush()
                assert model is not None
                out.append(model.load(payload))
        finally:
            for fh in handles.values():
                fh.close()
        flush()
        return out

    def _idle(self) -> None:
        """``fsync: interval``: at most one second of appends is ever unsynced."""
        if self._dirty and time.monotonic() - self._last_sync >= 1.0:
            self._sync_now()

    def _sync_now(self) -> None:
        if self._fh is not None:
            os.fsync(self._fh.fileno())
        self._dirty = False
        self._last_sync = time.monotonic()

    def _forced_end(self) -> int | None:
        return self._inflight_end

    def _begin(self, batch: Batch) -> None:
        end = batch.entries[-1].seq
        if self._inflight_end != end:
            _atomic_write(self.dir / "inflight", str(end))
            self._inflight_end = end

    def _release(self, entry: Entry) -> None:
        self._bytes -= entry.size

    def _commit(self, batch: Batch) -> None:
        self._acked = batch.entries[-1].seq
        _atomic_write(self.dir / "acked", str(self._acked))
        self._inflight_end = None
        self._drop_acked_segments()

    def _drop_acked_segments(self) -> None:
        """Delete segments whose every record is delivered (the live one once it is too)."""
        segs = sorted(self.dir.glob("seg-*.wal"))
        for seg, nxt in itertools.pairwise(segs):
            if int(nxt.stem[4:]) <= self._acked + 1:
                seg.unlink()
        if segs and not self._entries and self._seq == self._acked:
            self._close_segment()
            segs[-1].unlink(missing_ok=True)
            self._segment = None

    def _close_segment(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def close(self) -> None:
        super().close()
        with self._cond:
            self._close_segment()
            if not self._lock_fh.closed:
                fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
                self._lock_fh.close()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a created or renamed file's directory entry durable too."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_int(path: Path, default: int) -> int:
    try:
        return int(path.read_text().strip() or default)
    except (FileNotFoundError, ValueError):
        return default


def make_queue(
    config: QueueConfig, data_dir: str, exporter_name: str, signal: Signal
) -> ExporterQueue:
    """The queue of one exporter and signal; a wal is ``<data_dir>/wal/<exporter>/<signal>``."""
    if config.storage == "wal":
        safe = exporter_name.replace("/", "__")
        return WalQueue(config, Path(data_dir) / "wal" / safe / signal.value)
    return MemoryQueue(config)
