"""What is remembered of each stream, and how it survives a restart.

Every batch that changes state appends the changed streams to a journal (one ``write``, no
fsync, so a ``kill -9`` right after the batch returned loses nothing), and every
``state_flush_interval`` the state is compacted into an fsynced snapshot that atomically
replaces the previous one.

On-disk layout under ``<data_dir>/cumulative_to_delta/<component name>/``: ``state`` (a snapshot
of generation G) and ``journal.<g>`` files for g >= G, replayed in order on start. Every record
is framed as ``<len u32><crc32 u32><payload>`` so a torn tail from a crash is detected and cut.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import logging
import os
import struct
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    NumberDataPoint,
)

from collector import telemetry

log = logging.getLogger("processors.cumulative_to_delta")

STATE_ERRORS = telemetry.counter(
    "agentwatch_cumulative_to_delta_state_errors",
    "Failures to read or write the persisted state, by operation.",
    ("processor", "op"),
)


class Kind(enum.IntEnum):
    """The metric data a stream belongs to; its value is part of the stream key and the file."""

    SUM = 1
    HISTOGRAM = 2
    EXP_HISTOGRAM = 3


Point = NumberDataPoint | HistogramDataPoint | ExponentialHistogramDataPoint
POINT_TYPES: dict[Kind, type[Point]] = {
    Kind.SUM: NumberDataPoint,
    Kind.HISTOGRAM: HistogramDataPoint,
    Kind.EXP_HISTOGRAM: ExponentialHistogramDataPoint,
}
KEY_LEN = 16
"""Bytes of a stream key (a blake2b digest of the stream's identity)."""


class Stream:
    """What is remembered of one stream: its last point (values only) and the delta it gave.

    ``record`` caches the stream's journal record so that a snapshot re-encodes only the
    streams changed since they were last written."""

    __slots__ = ("kind", "last", "out", "record", "seen_ns")

    def __init__(
        self, kind: Kind, last: Point, out: Point | None, seen_ns: int, record: bytes = b""
    ) -> None:
        self.kind = kind
        self.last = last
        self.out = out
        self.seen_ns = seen_ns
        self.record = record


# --- on-disk records --------------------------------------------------------------------------
_FRAME = struct.Struct("<II")
_HEADER = struct.Struct("<IQqq")  # format version, generation, started_at_ns, forgotten_start_ns
_STREAM = struct.Struct("<qBI")  # seen_ns, kind, len(last); then last, then out (empty: none)
_FORGET = struct.Struct("<q")  # the forgotten stream's start time
_FORMAT_VERSION = 1


def _frame(payload: bytes) -> bytes:
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _frames(buf: bytes) -> Iterator[bytes]:
    """Payloads of a file, stopping quietly at a torn or corrupt tail."""
    pos = 0
    while pos + _FRAME.size <= len(buf):
        length, crc = _FRAME.unpack_from(buf, pos)
        payload = buf[pos + _FRAME.size : pos + _FRAME.size + length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            return
        yield payload
        pos += _FRAME.size + length


def stream_record(key: bytes, stream: Stream) -> bytes:
    """The journal record that sets a stream to its current state."""
    last = stream.last.SerializeToString()
    out = b"" if stream.out is None else b"\x01" + stream.out.SerializeToString()
    return _frame(b"S" + key + _STREAM.pack(stream.seen_ns, stream.kind, len(last)) + last + out)


def forget_record(key: bytes, start_ns: int) -> bytes:
    """The journal record that forgets a stream, keeping its start time for ``auto``."""
    return _frame(b"D" + key + _FORGET.pack(start_ns))


@dataclass
class LoadedState:
    """The state found on disk: streams least recently seen first."""

    streams: OrderedDict[bytes, Stream]
    started_at_ns: int | None
    """``None`` when there was no snapshot: the state starts now."""
    forgotten_start_ns: int


@dataclass
class Snapshot:
    """A compaction taken under the processor's lock, written to disk outside it."""

    generation: int
    data: bytes
    old_journal_fd: int | None


class StateStore:
    """The files of one processor's state. Journal appends and ``begin_snapshot`` run under the
    processor's lock; ``finish_snapshot`` runs outside it, one at a time (the caller's
    ``flush_lock``)."""

    def __init__(self, directory: Path, component: str) -> None:
        self.directory = directory
        self.component = component
        self.generation = 0
        self.changed_since_snapshot = False
        self._lock_fd: int | None = None
        self._journal_fd: int | None = None

    @property
    def journaling(self) -> bool:
        return self._journal_fd is not None

    def open(self) -> None:
        """Create the directory and take its lock: two processes must not share one state."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise RuntimeError(
                f"{self.directory} is in use by another agentwatch process; give each instance "
                "its own data_dir"
            ) from None
        self._lock_fd = lock_fd

    def close_journal(self) -> None:
        """Stop journaling (under the processor's lock, so no append races the close)."""
        fd, self._journal_fd = self._journal_fd, None
        if fd is not None:
            os.close(fd)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def append(self, buf: bytes) -> None:
        """Append a batch's changes in one write: cheap, and safe against kill -9."""
        self.changed_since_snapshot = True
        fd = self._journal_fd
        if fd is None:
            return
        try:
            view = memoryview(buf)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            # Memory stays right; the next snapshot rewrites everything from it.
            STATE_ERRORS.labels(self.component, "journal").inc()
            log.exception("state journal write failed", extra={"component": self.component})

    # --- snapshots ------------------------------------------------------------------------------
    def _journal_path(self, generation: int) -> Path:
        return self.directory / f"journal.{generation:012d}"

    def begin_snapshot(
        self, started_at_ns: int, forgotten_start_ns: int, streams: Iterable[tuple[bytes, Stream]]
    ) -> Snapshot | None:
        """Snapshot generation G+1 in memory and switch appends to journal G+1; ``None`` when
        nothing changed since the last snapshot."""
        if not self.changed_since_snapshot and self._journal_fd is not None:
            return None
        generation = self.generation + 1
        parts = [
            _frame(
                b"H" + _HEADER.pack(_FORMAT_VERSION, generation, started_at_ns, forgotten_start_ns)
            )
        ]
        for key, stream in streams:
            if not stream.record:
                stream.record = stream_record(key, stream)
            parts.append(stream.record)
        new_fd = os.open(
            self._journal_path(generation), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
        )
        old_fd, self._journal_fd = self._journal_fd, new_fd
        self.generation = generation
        self.changed_since_snapshot = False
        return Snapshot(generation, b"".join(parts), old_fd)

    def finish_snapshot(self, snapshot: Snapshot) -> None:
        """Write the snapshot fsynced over the previous one, then drop the older journals."""
        if snapshot.old_journal_fd is not None:
            os.close(snapshot.old_journal_fd)
        tmp = self.directory / "state.tmp"
        with open(tmp, "wb") as f:
            f.write(snapshot.data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / "state")
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        for generation, path in self._journal_files():
            if generation < snapshot.generation:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def _journal_files(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.directory.glob("journal.*"):
            suffix = path.name.partition(".")[2]
            if suffix.isdigit():
                found.append((int(suffix), path))
        return sorted(found)

    # --- loading --------------------------------------------------------------------------------
    def load(self) -> LoadedState:
        """Snapshot G, then journals G, G+1, ... in order; a torn tail ends its file."""
        loaded: dict[bytes, Stream] = {}
        state = LoadedState(OrderedDict(), None, 0)
        snapshot_generation = 0
        state_path = self.directory / "state"
        if state_path.exists():
            payloads = list(_frames(state_path.read_bytes()))
            if payloads and payloads[0][:1] == b"H":
                version, snapshot_generation, state.started_at_ns, state.forgotten_start_ns = (
                    _HEADER.unpack_from(payloads[0], 1)
                )
                if version != _FORMAT_VERSION:
                    raise RuntimeError(f"{state_path}: unknown state format {version}")
                self._apply(payloads[1:], loaded, state)
            else:
                STATE_ERRORS.labels(self.component, "load").inc()
                log.error(
                    "state snapshot unreadable; starting empty",
                    extra={"component": self.component},
                )
        self.generation = snapshot_generation
        for generation, path in self._journal_files():
            if generation >= snapshot_generation:
                self._apply(_frames(path.read_bytes()), loaded, state)
                self.generation = max(self.generation, generation)
        state.streams = OrderedDict(sorted(loaded.items(), key=lambda item: item[1].seen_ns))
        return state

    @staticmethod
    def _apply(payloads: Iterable[bytes], loaded: dict[bytes, Stream], state: LoadedState) -> None:
        for payload in payloads:
            tag, key = payload[:1], payload[1 : 1 + KEY_LEN]
            body = 1 + KEY_LEN
            if tag == b"S":
                seen_ns, kind_value, last_len = _STREAM.unpack_from(payload, body)
                kind = Kind(kind_value)
                body += _STREAM.size
                last = POINT_TYPES[kind].FromString(payload[body : body + last_len])
                rest = payload[body + last_len :]
                out = POINT_TYPES[kind].FromString(rest[1:]) if rest else None
                loaded[key] = Stream(kind, last, out, seen_ns, _frame(payload))
            elif tag == b"D":
                (start_ns,) = _FORGET.unpack_from(payload, body)
                loaded.pop(key, None)
                state.forgotten_start_ns = max(state.forgotten_start_ns, start_ns)
