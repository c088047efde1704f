"""Cumulative-to-delta: turn monotonic cumulative sums and cumulative histograms into deltas.

Gemini CLI (and any agent whose SDK is set to cumulative) reports running totals; cost, the
agent tables and most backends want what happened in each interval. The conversion needs the
previous point of every stream, so this processor is stateful. Unlike upstream's in-memory
``cumulativetodelta``, its state survives a restart: every batch that changes state appends the
changed streams to a journal (one ``write``, no fsync, so a ``kill -9`` right after the batch
returned loses nothing), and every ``state_flush_interval`` a background thread compacts the
state into an fsynced snapshot that atomically replaces the previous one.

On-disk layout under ``<data_dir>/cumulative_to_delta/<component name>/``: ``state`` (a snapshot
of generation G) and ``journal.<g>`` files for g >= G, replayed in order on start. Every record
is framed as ``<len u32><crc32 u32><payload>`` so a torn tail from a crash is detected and cut.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import logging
import math
import os
import re
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    DataPointFlags,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
)
from pydantic import Field, model_validator

from collector import telemetry
from collector.component import (
    ComponentConfig,
    Duration,
    Factory,
    Host,
    MetricsData,
    Processor,
    Signal,
)

log = logging.getLogger(__name__)

CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
NO_RECORDED_VALUE = DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK

STREAMS = telemetry.gauge(
    "agentwatch_cumulative_to_delta_streams",
    "Cumulative streams whose previous point the processor remembers.",
    ("processor",),
)
EVICTIONS = telemetry.counter(
    "agentwatch_cumulative_to_delta_evicted_streams",
    "Streams forgotten, by reason: lru (max_streams reached) or staleness (max_staleness).",
    ("processor", "reason"),
)
RESETS = telemetry.counter(
    "agentwatch_cumulative_to_delta_resets",
    "Counter resets seen: restart (start time proves it, value emitted) or baseline "
    "(not provable, point kept as the new baseline and dropped).",
    ("processor", "kind"),
)
REPLAYS = telemetry.counter(
    "agentwatch_cumulative_to_delta_replayed_points",
    "Exact re-sends of a stream's last point (a client retry) answered with the same delta.",
    ("processor",),
)
STATE_ERRORS = telemetry.counter(
    "agentwatch_cumulative_to_delta_state_errors",
    "Failures to read or write the persisted state, by operation.",
    ("processor", "op"),
)


class MetricMatch(ComponentConfig):
    """Metric names to match, exactly or by (unanchored, like upstream) regular expression."""

    metrics: list[str] = Field(min_length=1)
    match_type: Literal["strict", "regexp"] = "strict"

    @model_validator(mode="after")
    def _compile(self) -> MetricMatch:
        if self.match_type == "regexp":
            for i, pattern in enumerate(self.metrics):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"metrics[{i}]: invalid regexp {pattern!r}: {exc}") from None
        return self

    def matcher(self) -> Callable[[str], bool]:
        if self.match_type == "strict":
            names = frozenset(self.metrics)
            return names.__contains__
        patterns = [re.compile(p) for p in self.metrics]
        return lambda name: any(p.search(name) for p in patterns)


class CumulativeToDeltaConfig(ComponentConfig):
    include: MetricMatch | None = Field(
        default=None, description="Only these metrics are converted; all when unset."
    )
    exclude: MetricMatch | None = Field(
        default=None, description="These metrics are never converted; wins over include."
    )
    initial_value: Literal["auto", "keep", "drop"] = Field(
        default="auto",
        description="First point of a stream never seen: auto emits it only when the stream "
        "started after this processor's state did; keep always; drop never.",
    )
    max_streams: int = Field(
        default=100_000, gt=0, description="Streams remembered; the least recently seen go first."
    )
    max_staleness: Duration = Field(
        default=0.0, description="Forget a stream not seen for this long; 0 keeps it until LRU."
    )
    state_flush_interval: Duration = Field(
        default=10.0, gt=0, description="How often the state is compacted into an fsynced snapshot."
    )


class _Kind(enum.IntEnum):
    SUM = 1
    HISTOGRAM = 2
    EXP_HISTOGRAM = 3


Point = NumberDataPoint | HistogramDataPoint | ExponentialHistogramDataPoint
_POINT_TYPES: dict[_Kind, type[Point]] = {
    _Kind.SUM: NumberDataPoint,
    _Kind.HISTOGRAM: HistogramDataPoint,
    _Kind.EXP_HISTOGRAM: ExponentialHistogramDataPoint,
}


class _Stream:
    """What is remembered of one stream: its last point (values only) and the delta it gave."""

    __slots__ = ("kind", "last", "out", "record", "seen_ns")

    def __init__(
        self, kind: _Kind, last: Point, out: Point | None, seen_ns: int, record: bytes = b""
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
_KEY_LEN = 16


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


def _stream_record(key: bytes, st: _Stream) -> bytes:
    last = st.last.SerializeToString()
    out = b"" if st.out is None else b"\x01" + st.out.SerializeToString()
    return _frame(b"S" + key + _STREAM.pack(st.seen_ns, st.kind, len(last)) + last + out)


def _forget_record(key: bytes, start_ns: int) -> bytes:
    return _frame(b"D" + key + _FORGET.pack(start_ns))


# --- stream identity ----------------------------------------------------------------------------
def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_KEY_LEN).digest()


def _attributes_bytes(attributes: list[KeyValue]) -> bytes:
    """Order-independent, unambiguous bytes of an attribute set."""
    encoded = sorted(kv.SerializeToString(deterministic=True) for kv in attributes)
    return b"".join(len(e).to_bytes(4, "little") + e for e in encoded)


def _strip(kind: _Kind, p: Point, keep_min_max: bool = False) -> Point:
    """A copy with only what state needs: times and values, no attributes or exemplars."""
    if kind is _Kind.SUM:
        assert isinstance(p, NumberDataPoint)
        n = NumberDataPoint(
            start_time_unix_nano=p.start_time_unix_nano, time_unix_nano=p.time_unix_nano
        )
        if p.WhichOneof("value") == "as_int":
            n.as_int = p.as_int
        else:
            n.as_double = p.as_double
        return n
    if kind is _Kind.HISTOGRAM:
        assert isinstance(p, HistogramDataPoint)
        h = HistogramDataPoint(
            start_time_unix_nano=p.start_time_unix_nano,
            time_unix_nano=p.time_unix_nano,
            count=p.count,
            bucket_counts=p.bucket_counts,
            explicit_bounds=p.explicit_bounds,
        )
        if p.HasField("sum"):
            h.sum = p.sum
        if keep_min_max and p.HasField("min"):
            h.min = p.min
        if keep_min_max and p.HasField("max"):
            h.max = p.max
        return h
    assert isinstance(p, ExponentialHistogramDataPoint)
    e = ExponentialHistogramDataPoint(
        start_time_unix_nano=p.start_time_unix_nano,
        time_unix_nano=p.time_unix_nano,
        count=p.count,
        scale=p.scale,
        zero_count=p.zero_count,
        zero_threshold=p.zero_threshold,
    )
    e.positive.CopyFrom(p.positive)
    e.negative.CopyFrom(p.negative)
    if p.HasField("sum"):
        e.sum = p.sum
    if keep_min_max and p.HasField("min"):
        e.min = p.min
    if keep_min_max and p.HasField("max"):
        e.max = p.max
    return e


# --- differencing -------------------------------------------------------------------------------
def _sum_delta(cur: NumberDataPoint, prev: NumberDataPoint) -> bool:
    """Subtract ``prev`` in place; False (and ``cur`` untouched) when the counter went down."""
    if cur.WhichOneof("value") == "as_int":
        if cur.as_int < prev.as_int:
            return False
        cur.as_int -= prev.as_int
    else:
        if cur.as_double < prev.as_double:
            return False
        cur.as_double -= prev.as_double
    return True


def _histogram_delta(cur: HistogramDataPoint, prev: HistogramDataPoint) -> bool:
    if cur.explicit_bounds != prev.explicit_bounds or len(cur.bucket_counts) != len(
        prev.bucket_counts
    ):
        return False
    counts = [c - p for c, p in zip(cur.bucket_counts, prev.bucket_counts, strict=True)]
    if cur.count < prev.count or any(c < 0 for c in counts):
        return False
    cur.count -= prev.count
    del cur.bucket_counts[:]
    cur.bucket_counts.extend(counts)
    _sum_and_extremes_delta(cur, prev)
    return True


def _downscale(offset: int, counts: list[int], shift: int) -> tuple[int, list[int]]:
    """Merge exponential buckets ``shift`` scales down (index i goes to i >> shift)."""
    if shift == 0 or not counts:
        return offset, counts
    new_offset = offset >> shift
    merged = [0] * (((offset + len(counts) - 1) >> shift) - new_offset + 1)
    for i, c in enumerate(counts):
        merged[((offset + i) >> shift) - new_offset] += c
    return new_offset, merged


def _bucket_delta(
    cur_offset: int, cur_counts: list[int], prev_offset: int, prev_counts: list[int]
) -> list[int] | None:
    delta = list(cur_counts)
    for i, c in enumerate(prev_counts):
        if c == 0:
            continue
        j = prev_offset + i - cur_offset
        if j < 0 or j >= len(delta) or delta[j] < c:
            return None
        delta[j] -= c
    return delta


def _exp_histogram_delta(
    cur: ExponentialHistogramDataPoint, prev: ExponentialHistogramDataPoint
) -> bool:
    """A cumulative exponential histogram only loses scale; a gain or new threshold is a reset."""
    if cur.scale > prev.scale or cur.zero_threshold != prev.zero_threshold:
        return False
    if cur.count < prev.count or cur.zero_count < prev.zero_count:
        return False
    shift = prev.scale - cur.scale
    sides = []
    for cur_side, prev_side in ((cur.positive, prev.positive), (cur.negative, prev.negative)):
        p_offset, p_counts = _downscale(prev_side.offset, list(prev_side.bucket_counts), shift)
        delta = _bucket_delta(cur_side.offset, list(cur_side.bucket_counts), p_offset, p_counts)
        if delta is None:
            return False
        sides.append((cur_side, delta))
    for side, delta in sides:
        del side.bucket_counts[:]
        side.bucket_counts.extend(delta)
    cur.count -= prev.count
    cur.zero_count -= prev.zero_count
    _sum_and_extremes_delta(cur, prev)
    return True


def _sum_and_extremes_delta(
    cur: HistogramDataPoint | ExponentialHistogramDataPoint,
    prev: HistogramDataPoint | ExponentialHistogramDataPoint,
) -> None:
    """Sums difference; min and max of a running total say nothing about one interval."""
    if cur.HasField("sum") and prev.HasField("sum") and not math.isnan(cur.sum):
        cur.sum -= prev.sum
    else:
        cur.ClearField("sum")
    cur.ClearField("min")
    cur.ClearField("max")


def _delta(kind: _Kind, cur: Point, prev: Point) -> bool:
    if kind is _Kind.SUM:
        return _sum_delta(cur, prev)  # type: ignore[arg-type]
    if kind is _Kind.HISTOGRAM:
        return _histogram_delta(cur, prev)  # type: ignore[arg-type]
    return _exp_histogram_delta(cur, prev)  # type: ignore[arg-type]


def _has_no_value(kind: _Kind, p: Point) -> bool:
    if p.flags & NO_RECORDED_VALUE:
        return True
    return (
        kind is _Kind.SUM
        and isinstance(p, NumberDataPoint)
        and p.WhichOneof("value") == "as_double"
        and math.isnan(p.as_double)
    )


def _convertible(metric: Metric) -> tuple[_Kind, list[Point]] | None:
    """The kind and points of a metric this processor converts; None for everything else."""
    case = metric.WhichOneof("data")
    if case == "sum":
        s = metric.sum
        if s.aggregation_temporality == CUMULATIVE and s.is_monotonic:
            return _Kind.SUM, s.data_points  # type: ignore[return-value]
    elif case == "histogram":
        if metric.histogram.aggregation_temporality == CUMULATIVE:
            return _Kind.HISTOGRAM, metric.histogram.data_points  # type: ignore[return-value]
    elif case == "exponential_histogram":
        eh = metric.exponential_histogram
        if eh.aggregation_temporality == CUMULATIVE:
            return _Kind.EXP_HISTOGRAM, eh.data_points  # type: ignore[return-value]
    return None


def _set_delta(metric: Metric) -> None:
    case = metric.WhichOneof("data")
    getattr(metric, case).aggregation_temporality = DELTA  # type: ignore[arg-type]


class CumulativeToDelta(Processor):
    """Converts cumulative streams to delta, remembering each stream's last point on disk."""

    def __init__(
        self,
        name: str,
        config: CumulativeToDeltaConfig,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(name, config)
        self.cfg = config
        self._clock = clock
        self._include = config.include.matcher() if config.include else None
        self._exclude = config.exclude.matcher() if config.exclude else None
        self._selected: dict[str, bool] = {}
        self._streams: OrderedDict[bytes, _Stream] = OrderedDict()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._started_at_ns = clock()
        self._forgotten_start_ns = 0
        self._max_staleness_ns = int(config.max_staleness * 1e9)
        self._dir: Path | None = None
        self._lock_fd: int | None = None
        self._journal_fd: int | None = None
        self._generation = 0
        self._pending: list[bytes] = []
        self._changed_since_snapshot = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._streams_gauge = STREAMS.labels(name)
        self._dropped = {
            reason: telemetry.PROCESSOR_DROPPED.labels(name, Signal.METRICS.value, reason)
            for reason in (
                "out_of_order",
                "initial",
                "reset",
                "start_time_changed",
                "duplicate",
                "no_value",
            )
        }

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self, host: Host) -> None:
        self._dir = Path(host.data_dir) / "cumulative_to_delta" / quote(self.name, safe="")
        self._dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self._dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise RuntimeError(
                f"{self._dir} is in use by another agentwatch process; give each instance its "
                "own data_dir"
            ) from None
        self._lock_fd = lock_fd
        try:
            with self._lock:
                self._load()
                self._evict_over_limit()
                self._streams_gauge.set(len(self._streams))
            self._changed_since_snapshot = True
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
            if self._journal_fd is not None:
                self.flush()
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            fd, self._journal_fd = self._journal_fd, None
        if fd is not None:
            os.close(fd)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def flush(self) -> None:
        """Forget stale streams and compact the state into an fsynced snapshot."""
        with self._lock:
            self._sweep_stale(self._clock())
            self._write_pending()
        self._compact()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.cfg.state_flush_interval):
            try:
                self.flush()
            except OSError:
                STATE_ERRORS.labels(self.name, "snapshot").inc()
                log.exception("state snapshot failed", extra={"component": self.name})

    # --- the conversion -------------------------------------------------------------------------
    def consume_metrics(self, data: MetricsData) -> MetricsData | None:
        touched = False
        with self._lock:
            now = self._clock()
            self._sweep_stale(now)
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
                        found = _convertible(metric)
                        if found is None or not self._selects(metric.name):
                            continue
                        kind, points = found
                        if resource_key is None:
                            resource_key = _digest(_attributes_bytes(rm.resource.attributes))
                        if scope_key is None:
                            scope_key = _digest(
                                resource_key
                                + _attributes_bytes(sm.scope.attributes)
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
                        dropped = self._convert_points(kind, metric_key, points, now)
                        _set_delta(metric)
                        if dropped and not points:
                            del sm.metrics[m_index]
                            removed_metric = True
                    if removed_metric and not sm.metrics:
                        del rm.scope_metrics[sm_index]
                        removed_scope = True
                if removed_scope and not rm.scope_metrics:
                    del data.resource_metrics[rm_index]
            if touched:
                self._evict_over_limit()
                self._write_pending()
                self._streams_gauge.set(len(self._streams))
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

    def _convert_points(self, kind: _Kind, metric_key: bytes, points: list[Point], now: int) -> int:
        """Convert a metric's points in place; returns how many were removed."""
        drop: list[int] = []
        for i, point in enumerate(points):
            if _has_no_value(kind, point):
                self._dropped["no_value"].inc()
                drop.append(i)
                continue
            is_double = (
                isinstance(point, NumberDataPoint) and point.WhichOneof("value") == "as_double"
            )
            key = _digest(
                metric_key + (b"d" if is_double else b"i") + _attributes_bytes(point.attributes)
            )
            if not self._convert(kind, key, point, now):
                drop.append(i)
        for i in reversed(drop):
            del points[i]
        return len(drop)

    def _convert(self, kind: _Kind, key: bytes, point: Point, now: int) -> bool:
        """Turn one cumulative point into its delta in place; False means drop it."""
        st = self._streams.get(key)
        incoming = _strip(kind, point)
        if st is None:
            emit = self._emit_first(point)
            if not emit:
                self._dropped["initial"].inc()
            out = _strip(kind, point, True) if emit else None
            self._remember(key, _Stream(kind, incoming, out, now))
            return emit
        prev = st.last
        if incoming == prev:
            return self._replay(st, point)
        if point.time_unix_nano <= prev.time_unix_nano:
            self._dropped["out_of_order"].inc()
            return False
        emit = True
        if point.start_time_unix_nano != prev.start_time_unix_nano:
            if point.start_time_unix_nano > prev.time_unix_nano:
                RESETS.labels(self.name, "restart").inc()
                point.start_time_unix_nano = prev.time_unix_nano
            elif self.cfg.initial_value != "keep":
                self._dropped["start_time_changed"].inc()
                emit = False
        elif _delta(kind, point, prev):
            point.start_time_unix_nano = prev.time_unix_nano
        else:
            RESETS.labels(self.name, "baseline").inc()
            self._dropped["reset"].inc()
            emit = False
        st.last = incoming
        st.out = _strip(kind, point, True) if emit else None
        st.seen_ns = now
        self._remember(key, st)
        return emit

    def _emit_first(self, point: Point) -> bool:
        """A stream never seen: could any of its total have been counted before?"""
        mode = self.cfg.initial_value
        if mode != "auto":
            return mode == "keep"
        start = point.start_time_unix_nano
        return (
            start != 0
            and start != point.time_unix_nano
            and start > self._started_at_ns
            and start > self._forgotten_start_ns
        )

    def _replay(self, st: _Stream, point: Point) -> bool:
        """A client re-sent the last point (e.g. after a refused batch): give the same delta."""
        if st.out is None:
            self._dropped["duplicate"].inc()
            return False
        replayed = type(point)()
        replayed.CopyFrom(st.out)
        replayed.attributes.extend(point.attributes)  # type: ignore[attr-defined]
        replayed.exemplars.extend(point.exemplars)  # type: ignore[attr-defined]
        replayed.flags = point.flags
        point.CopyFrom(replayed)  # type: ignore[arg-type]
        REPLAYS.labels(self.name).inc()
        return True

    # --- state bookkeeping ---------------------------------------------------------------------
    def _remember(self, key: bytes, st: _Stream) -> None:
        self._streams[key] = st
        self._streams.move_to_end(key)
        if self._journal_fd is not None:
            st.record = _stream_record(key, st)
            self._pending.append(st.record)

    def _forget(self, key: bytes, reason: str) -> None:
        st = self._streams.pop(key)
        self._forgotten_start_ns = max(self._forgotten_start_ns, st.last.start_time_unix_nano)
        EVICTIONS.labels(self.name, reason).inc()
        if self._journal_fd is not None:
            self._pending.append(_forget_record(key, st.last.start_time_unix_nano))

    def _evict_over_limit(self) -> None:
        while len(self._streams) > self.cfg.max_streams:
            self._forget(next(iter(self._streams)), "lru")

    def _sweep_stale(self, now: int) -> None:
        if self._max_staleness_ns <= 0:
            return
        limit = now - self._max_staleness_ns
        while self._streams:
            key, st = next(iter(self._streams.items()))
            if st.seen_ns >= limit:
                break
            self._forget(key, "staleness")
        self._streams_gauge.set(len(self._streams))

    def _write_pending(self) -> None:
        """Append this batch's changes in one write: cheap, and safe against kill -9."""
        if not self._pending:
            return
        buf = b"".join(self._pending)
        self._pending.clear()
        self._changed_since_snapshot = True
        fd = self._journal_fd
        if fd is None:
            return
        try:
            view = memoryview(buf)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            # Memory stays right; the next snapshot rewrites everything from it.
            STATE_ERRORS.labels(self.name, "journal").inc()
            log.exception("state journal write failed", extra={"component": self.name})

    # --- persistence ----------------------------------------------------------------------------
    def _journal_path(self, generation: int) -> Path:
        assert self._dir is not None
        return self._dir / f"journal.{generation:012d}"

    def _compact(self) -> None:
        """Snapshot generation G+1, switch appends to journal G+1, then drop older files."""
        if self._dir is None:
            return
        with self._flush_lock:
            with self._lock:
                if not self._changed_since_snapshot and self._journal_fd is not None:
                    return
                generation = self._generation + 1
                parts = [
                    _frame(
                        b"H"
                        + _HEADER.pack(
                            _FORMAT_VERSION,
                            generation,
                            self._started_at_ns,
                            self._forgotten_start_ns,
                        )
                    )
                ]
                for key, st in self._streams.items():
                    if not st.record:
                        st.record = _stream_record(key, st)
                    parts.append(st.record)
                new_fd = os.open(
                    self._journal_path(generation), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
                )
                old_fd, self._journal_fd = self._journal_fd, new_fd
                self._generation = generation
                self._changed_since_snapshot = False
            if old_fd is not None:
                os.close(old_fd)
            snapshot = b"".join(parts)
            tmp = self._dir / "state.tmp"
            with open(tmp, "wb") as f:
                f.write(snapshot)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._dir / "state")
            dir_fd = os.open(self._dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            for old in self._journal_files():
                if old[0] < generation:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(old[1])

    def _journal_files(self) -> list[tuple[int, Path]]:
        assert self._dir is not None
        found = []
        for path in self._dir.glob("journal.*"):
            suffix = path.name.partition(".")[2]
            if suffix.isdigit():
                found.append((int(suffix), path))
        return sorted(found)

    def _load(self) -> None:
        """Snapshot G, then journals G, G+1, ... in order; a torn tail ends its file."""
        assert self._dir is not None
        loaded: dict[bytes, _Stream] = {}
        snapshot_generation = 0
        started_at: int | None = None
        state_path = self._dir / "state"
        if state_path.exists():
            payloads = list(_frames(state_path.read_bytes()))
            if payloads and payloads[0][:1] == b"H":
                version, snapshot_generation, started_at, self._forgotten_start_ns = (
                    _HEADER.unpack_from(payloads[0], 1)
                )
                if version != _FORMAT_VERSION:
                    raise RuntimeError(f"{state_path}: unknown state format {version}")
                self._apply(payloads[1:], loaded)
            else:
                STATE_ERRORS.labels(self.name, "load").inc()
                log.error(
                    "state snapshot unreadable; starting empty", extra={"component": self.name}
                )
        self._generation = snapshot_generation
        for generation, path in self._journal_files():
            if generation >= snapshot_generation:
                self._apply(_frames(path.read_bytes()), loaded)
                self._generation = max(self._generation, generation)
        self._started_at_ns = self._clock() if started_at is None else started_at
        self._streams = OrderedDict(sorted(loaded.items(), key=lambda item: item[1].seen_ns))

    def _apply(self, payloads: Iterator[bytes] | list[bytes], loaded: dict[bytes, _Stream]) -> None:
        for payload in payloads:
            tag, key = payload[:1], payload[1 : 1 + _KEY_LEN]
            body = 1 + _KEY_LEN
            if tag == b"S":
                seen_ns, kind_value, last_len = _STREAM.unpack_from(payload, body)
                kind = _Kind(kind_value)
                body += _STREAM.size
                last = _POINT_TYPES[kind].FromString(payload[body : body + last_len])
                rest = payload[body + last_len :]
                out = _POINT_TYPES[kind].FromString(rest[1:]) if rest else None
                loaded[key] = _Stream(kind, last, out, seen_ns, _frame(payload))
            elif tag == b"D":
                (start_ns,) = _FORGET.unpack_from(payload, body)
                loaded.pop(key, None)
                self._forgotten_start_ns = max(self._forgotten_start_ns, start_ns)


FACTORY = Factory(
    type_name="cumulative_to_delta",
    kind="processor",
    config_class=CumulativeToDeltaConfig,
    create=lambda name, cfg: CumulativeToDelta(name, cfg),
    signals=frozenset({Signal.METRICS}),
)
