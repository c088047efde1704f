"""Per-stream tracking: a stream's identity, and the state machine that turns its next
cumulative point into a delta (or drops it), as upstream's ``cumulativetodeltaprocessor``
``internal/tracking`` does, plus replay of an exact re-send and resets proven by start time."""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from typing import Literal

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    DataPointFlags,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
)

from collector import telemetry
from collector.component import Signal
from processors.cumulative_to_delta.internal.state import (
    KEY_LEN,
    Kind,
    Point,
    Stream,
    forget_record,
    stream_record,
)

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
DROP_REASONS = ("out_of_order", "initial", "reset", "start_time_changed", "duplicate", "no_value")


# --- stream identity ----------------------------------------------------------------------------
def digest(data: bytes) -> bytes:
    """A stream key: short, fixed-size, and the same across restarts."""
    return hashlib.blake2b(data, digest_size=KEY_LEN).digest()


def attributes_bytes(attributes: list[KeyValue]) -> bytes:
    """Order-independent, unambiguous bytes of an attribute set."""
    encoded = sorted(kv.SerializeToString(deterministic=True) for kv in attributes)
    return b"".join(len(e).to_bytes(4, "little") + e for e in encoded)


def strip(kind: Kind, p: Point, keep_min_max: bool = False) -> Point:
    """A copy with only what state needs: times and values, no attributes or exemplars."""
    if kind is Kind.SUM:
        assert isinstance(p, NumberDataPoint)
        n = NumberDataPoint(
            start_time_unix_nano=p.start_time_unix_nano, time_unix_nano=p.time_unix_nano
        )
        if p.WhichOneof("value") == "as_int":
            n.as_int = p.as_int
        else:
            n.as_double = p.as_double
        return n
    if kind is Kind.HISTOGRAM:
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


def _delta(kind: Kind, cur: Point, prev: Point) -> bool:
    if kind is Kind.SUM:
        return _sum_delta(cur, prev)  # type: ignore[arg-type]
    if kind is Kind.HISTOGRAM:
        return _histogram_delta(cur, prev)  # type: ignore[arg-type]
    return _exp_histogram_delta(cur, prev)  # type: ignore[arg-type]


def has_no_value(kind: Kind, p: Point) -> bool:
    """A point flagged as having no recorded value (or a NaN sum) carries nothing to subtract."""
    if p.flags & NO_RECORDED_VALUE:
        return True
    return (
        kind is Kind.SUM
        and isinstance(p, NumberDataPoint)
        and p.WhichOneof("value") == "as_double"
        and math.isnan(p.as_double)
    )


def convertible(metric: Metric) -> tuple[Kind, list[Point]] | None:
    """The kind and points of a metric this processor converts; None for everything else."""
    case = metric.WhichOneof("data")
    if case == "sum":
        s = metric.sum
        if s.aggregation_temporality == CUMULATIVE and s.is_monotonic:
            return Kind.SUM, s.data_points  # type: ignore[return-value]
    elif case == "histogram":
        if metric.histogram.aggregation_temporality == CUMULATIVE:
            return Kind.HISTOGRAM, metric.histogram.data_points  # type: ignore[return-value]
    elif case == "exponential_histogram":
        eh = metric.exponential_histogram
        if eh.aggregation_temporality == CUMULATIVE:
            return Kind.EXP_HISTOGRAM, eh.data_points  # type: ignore[return-value]
    return None


def set_delta(metric: Metric) -> None:
    case = metric.WhichOneof("data")
    getattr(metric, case).aggregation_temporality = DELTA  # type: ignore[arg-type]


class Tracker:
    """Every remembered stream, least recently seen first, and the rules for its next point.

    Not thread-safe: the processor holds its lock around every call. While ``journal`` is a
    list, every change appends its journal record there for the processor to write."""

    def __init__(
        self,
        component: str,
        initial_value: Literal["auto", "keep", "drop"],
        max_streams: int,
        max_staleness_ns: int,
        started_at_ns: int,
    ) -> None:
        self.component = component
        self.initial_value = initial_value
        self.max_streams = max_streams
        self.max_staleness_ns = max_staleness_ns
        self.started_at_ns = started_at_ns
        """When this state began: a stream that started later was fully seen (``auto``)."""
        self.forgotten_start_ns = 0
        """Latest start time of a forgotten stream: one starting before may have been counted."""
        self.streams: OrderedDict[bytes, Stream] = OrderedDict()
        self.journal: list[bytes] | None = None
        self._streams_gauge = STREAMS.labels(component)
        self._dropped = {
            reason: telemetry.PROCESSOR_DROPPED.labels(component, Signal.METRICS.value, reason)
            for reason in DROP_REASONS
        }

    def set_gauge(self) -> None:
        self._streams_gauge.set(len(self.streams))

    def convert_points(self, kind: Kind, metric_key: bytes, points: list[Point], now: int) -> int:
        """Convert a metric's points in place; returns how many were removed."""
        drop: list[int] = []
        for i, point in enumerate(points):
            if has_no_value(kind, point):
                self._dropped["no_value"].inc()
                drop.append(i)
                continue
            is_double = (
                isinstance(point, NumberDataPoint) and point.WhichOneof("value") == "as_double"
            )
            key = digest(
                metric_key + (b"d" if is_double else b"i") + attributes_bytes(point.attributes)
            )
            if not self.convert(kind, key, point, now):
                drop.append(i)
        for i in reversed(drop):
            del points[i]
        return len(drop)

    def convert(self, kind: Kind, key: bytes, point: Point, now: int) -> bool:
        """Turn one cumulative point into its delta in place; False means drop it."""
        st = self.streams.get(key)
        incoming = strip(kind, point)
        if st is None:
            emit = self._emit_first(point)
            if not emit:
                self._dropped["initial"].inc()
            out = strip(kind, point, True) if emit else None
            self._remember(key, Stream(kind, incoming, out, now))
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
                RESETS.labels(self.component, "restart").inc()
                point.start_time_unix_nano = prev.time_unix_nano
            elif self.initial_value != "keep":
                self._dropped["start_time_changed"].inc()
                emit = False
        elif _delta(kind, point, prev):
            point.start_time_unix_nano = prev.time_unix_nano
        else:
            RESETS.labels(self.component, "baseline").inc()
            self._dropped["reset"].inc()
            emit = False
        st.last = incoming
        st.out = strip(kind, point, True) if emit else None
        st.seen_ns = now
        self._remember(key, st)
        return emit

    def _emit_first(self, point: Point) -> bool:
        """A stream never seen: could any of its total have been counted before?"""
        mode = self.initial_value
        if mode != "auto":
            return mode == "keep"
        start = point.start_time_unix_nano
        return (
            start != 0
            and start != point.time_unix_nano
            and start > self.started_at_ns
            and start > self.forgotten_start_ns
        )

    def _replay(self, st: Stream, point: Point) -> bool:
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
        REPLAYS.labels(self.component).inc()
        return True

    # --- bookkeeping ----------------------------------------------------------------------------
    def _remember(self, key: bytes, st: Stream) -> None:
        self.streams[key] = st
        self.streams.move_to_end(key)
        if self.journal is not None:
            st.record = stream_record(key, st)
            self.journal.append(st.record)

    def _forget(self, key: bytes, reason: str) -> None:
        st = self.streams.pop(key)
        self.forgotten_start_ns = max(self.forgotten_start_ns, st.last.start_time_unix_nano)
        EVICTIONS.labels(self.component, reason).inc()
        if self.journal is not None:
            self.journal.append(forget_record(key, st.last.start_time_unix_nano))

    def evict_over_limit(self) -> None:
        """Forget the least recently seen streams beyond ``max_streams``."""
        while len(self.streams) > self.max_streams:
            self._forget(next(iter(self.streams)), "lru")

    def sweep_stale(self, now: int) -> None:
        """Forget the streams not seen for ``max_staleness``."""
        if self.max_staleness_ns <= 0:
            return
        limit = now - self.max_staleness_ns
        while self.streams:
            key, st = next(iter(self.streams.items()))
            if st.seen_ns >= limit:
                break
            self._forget(key, "staleness")
        self.set_gauge()
