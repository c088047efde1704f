"""Cumulative-to-delta: conversion rules, bounded state, and deltas that survive restarts."""

from __future__ import annotations

import itertools
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource as SdkResource
from pydantic import ValidationError

from collector import telemetry
from collector.component import Host, MetricsData
from processors.cumulative_to_delta import (
    FACTORY,
    CumulativeToDelta,
    CumulativeToDeltaConfig,
)

CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
SEC = 10**9
T0 = 1_750_000_000 * SEC  # the processor's (fake) start; streams start before or after it
REPO = Path(__file__).resolve().parents[2]
_names = itertools.count()
ProcFactory = Callable[..., CumulativeToDelta]


class Clock:
    """Wall clock the test moves by hand, in nanoseconds."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def unique_name() -> str:
    return f"cumulative_to_delta/t{next(_names)}"


def attrs(values: dict[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in values.items()]


def sum_metric(
    points: Sequence[tuple[int, int, float]],
    *,
    name: str = "tokens",
    labels: dict[str, str] | None = None,
    monotonic: bool = True,
    temporality: int = CUMULATIVE,
    double: bool = False,
) -> Metric:
    m = Metric(name=name, unit="token")
    m.sum.CopyFrom(Sum(aggregation_temporality=temporality, is_monotonic=monotonic))  # type: ignore[arg-type]
    for start, t, v in points:
        p = m.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=t)
        if double:
            p.as_double = v
        else:
            p.as_int = int(v)
        p.attributes.extend(attrs(labels or {"type": "input"}))
    return m


def hist_metric(
    points: Sequence[tuple[int, int, list[int], float]],
    *,
    bounds: Sequence[float] = (10.0, 100.0),
    name: str = "latency",
) -> Metric:
    m = Metric(name=name, unit="ms")
    m.histogram.CopyFrom(Histogram(aggregation_temporality=CUMULATIVE))  # type: ignore[arg-type]
    for start, t, counts, total in points:
        m.histogram.data_points.add(
            start_time_unix_nano=start,
            time_unix_nano=t,
            count=sum(counts),
            sum=total,
            bucket_counts=counts,
            explicit_bounds=bounds,
            min=1.0,
            max=500.0,
        )
    return m


def request(*metrics: Metric, resource: dict[str, str] | None = None) -> MetricsData:
    rm = ResourceMetrics(
        resource=Resource(attributes=attrs(resource or {"service.name": "gemini-cli"}))
    )
    sm = ScopeMetrics(scope=InstrumentationScope(name="gemini-cli", version="0.61.0"))
    sm.metrics.extend(metrics)
    rm.scope_metrics.append(sm)
    return MetricsData(resource_metrics=[rm])


def make(
    data_dir: Path, clock: Clock | None = None, name: str | None = None, **cfg: object
) -> CumulativeToDelta:
    proc = CumulativeToDelta(
        name or unique_name(), CumulativeToDeltaConfig.model_validate(cfg), clock=clock or Clock()
    )
    proc.start(Host(str(data_dir)))
    return proc


def sum_points(out: MetricsData | None) -> list[tuple[int, int, float]]:
    """(start, time, value) of every number point in the output, in order."""
    found: list[tuple[int, int, float]] = []
    for m in metrics_of(out):
        if m.WhichOneof("data") == "sum":
            for p in m.sum.data_points:
                value = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                found.append((p.start_time_unix_nano, p.time_unix_nano, value))
    return found


def metrics_of(out: MetricsData | None) -> Iterator[Metric]:
    if out is None:
        return
    for rm in out.resource_metrics:
        for sm in rm.scope_metrics:
            yield from sm.metrics


def dropped(proc: CumulativeToDelta, reason: str) -> float:
    return telemetry.value(
        "agentwatch_processor_dropped_items_total",
        processor=proc.name,
        signal="metrics",
        reason=reason,
    )


def feed(proc: CumulativeToDelta, *points: tuple[int, int, float]) -> list[list[tuple]]:
    """One batch per point of the default stream; the delta points each batch gave."""
    return [sum_points(proc.consume_metrics(request(sum_metric([p])))) for p in points]


@pytest.fixture
def proc_factory(tmp_path: Path) -> Iterator[ProcFactory]:
    made: list[CumulativeToDelta] = []

    def build(
        clock: Clock | None = None, data_dir: Path | None = None, **cfg: object
    ) -> CumulativeToDelta:
        proc = make(data_dir or tmp_path, clock, None, **cfg)
        made.append(proc)
        return proc

    yield build
    for proc in made:
        proc.shutdown()


# --- conversion rules -------------------------------------------------------------------------
def test_monotonic_sum_becomes_delta_with_previous_time_as_start(proc_factory: ProcFactory) -> None:
    proc = proc_factory()
    s = T0 + SEC
    out = proc.consume_metrics(request(sum_metric([(s, s + 10 * SEC, 10)])))
    assert out is not None
    metric = next(metrics_of(out))
    assert metric.sum.aggregation_temporality == DELTA
    assert metric.sum.is_monotonic
    assert sum_points(out) == [(s, s + 10 * SEC, 10)]
    assert feed(proc, (s, s + 20 * SEC, 25), (s, s + 30 * SEC, 25), (s, s + 40 * SEC, 40)) == [
        [(s + 10 * SEC, s + 20 * SEC, 15)],
        [(s + 20 * SEC, s + 30 * SEC, 0)],
        [(s + 30 * SEC, s + 40 * SEC, 15)],
    ]


def test_double_sum_keeps_its_value_type(proc_factory: ProcFactory) -> None:
    proc = proc_factory()
    s = T0 + SEC
    proc.consume_metrics(request(sum_metric([(s, s + SEC, 1.5)], double=True)))
    out = proc.consume_metrics(request(sum_metric([(s, s + 2 * SEC, 4.0)], double=True)))
    point = next(metrics_of(out)).sum.data_points[0]
    assert point.WhichOneof("value") == "as_double"
    assert point.as_double == 2.5


@pytest.mark.parametrize(
    ("mode", "start", "emitted"),
    [
        ("auto", T0 + SEC, True),  # started after the processor: nothing of it was counted
        ("auto", T0 - SEC, False),  # started before: part of it may have been counted already
        ("auto", 0, False),  # unknown start
        ("auto", T0 + 5 * SEC, False),  # start equal to the point's time
        ("keep", T0 - SEC, True),
        ("drop", T0 + SEC, False),
    ],
)
def test_initial_value_modes(
    proc_factory: ProcFactory, mode: str, start: int, emitted: bool
) -> None:
    proc = proc_factory(initial_value=mode)
    first = feed(proc, (start, T0 + 5 * SEC, 7))
    assert first == ([[(start, T0 + 5 * SEC, 7)]] if emitted else [[]])
    assert dropped(proc, "initial") == (0 if emitted else 1)
    # Either way the first point is the baseline of the next delta.
    assert feed(proc, (start, T0 + 6 * SEC, 9)) == [[(T0 + 5 * SEC, T0 + 6 * SEC, 2)]]


def test_decrease_without_a_later_start_is_a_baseline_not_a_delta(
    proc_factory: ProcFactory,
) -> None:
    proc = proc_factory()
    s = T0 + SEC
    got = feed(proc, (s, s + 1 * SEC, 10), (s, s + 2 * SEC, 20), (s, s + 3 * SEC, 5))
    got += feed(proc, (s, s + 4 * SEC, 12))
    assert got == [
        [(s, s + SEC, 10)],
        [(s + SEC, s + 2 * SEC, 10)],
        [],
        [(s + 3 * SEC, s + 4 * SEC, 7)],
    ]
    assert dropped(proc, "reset") == 1
    assert (
        telemetry.value(
            "agentwatch_cumulative_to_delta_resets_total", processor=proc.name, kind="baseline"
        )
        == 1
    )


def test_decrease_with_start_after_previous_point_is_a_restart(proc_factory: ProcFactory) -> None:
    proc = proc_factory()
    s1, s2 = T0 + SEC, T0 + 25 * SEC
    got = feed(proc, (s1, T0 + 10 * SEC, 10), (s1, T0 + 20 * SEC, 30), (s2, T0 + 30 * SEC, 4))
    got += feed(proc, (s2, T0 + 40 * SEC, 9))
    assert got == [
        [(s1, T0 + 10 * SEC, 10)],
        [(T0 + 10 * SEC, T0 + 20 * SEC, 20)],
        [(T0 + 20 * SEC, T0 + 30 * SEC, 4)],  # the new process's whole total, nothing lost
        [(T0 + 30 * SEC, T0 + 40 * SEC, 5)],
    ]
    assert (
        telemetry.value(
            "agentwatch_cumulative_to_delta_resets_total", processor=proc.name, kind="restart"
        )
        == 1
    )


@pytest.mark.parametrize(("mode", "emitted"), [("auto", False), ("keep", True)])
def test_start_time_change_that_proves_nothing_starts_a_new_baseline(
    proc_factory: ProcFactory, mode: str, emitted: bool
) -> None:
    proc = proc_factory(initial_value=mode)
    s1, s2 = T0 + SEC, T0 + 5 * SEC  # s2 is before the last point: no proof of a restart
    got = feed(proc, (s1, T0 + 10 * SEC, 10), (s2, T0 + 20 * SEC, 50), (s2, T0 + 30 * SEC, 55))
    assert got[1] == ([(s2, T0 + 20 * SEC, 50)] if emitted else [])
    assert got[2] == [(T0 + 20 * SEC, T0 + 30 * SEC, 5)]
    assert dropped(proc, "start_time_changed") == (0 if emitted else 1)


def test_out_of_order_points_are_dropped_and_counted(proc_factory: ProcFactory) -> None:
    proc = proc_factory()
    s = T0 + SEC
    got = feed(
        proc,
        (s, s + 10 * SEC, 10),
        (s, s + 30 * SEC, 30),
        (s, s + 20 * SEC, 20),  # older than the last point
        (s, s + 30 * SEC, 31),  # same time, different value: not a re-send
        (s, s + 40 * SEC, 45),
    )
    assert got == [
        [(s, s + 10 * SEC, 10)],
        [(s + 10 * SEC, s + 30 * SEC, 20)],
        [],
        [],
        [(s + 30 * SEC, s + 40 * SEC, 15)],
    ]
    assert dropped(proc, "out_of_order") == 2


def test_resent_last_point_gets_the_same_delta_again(proc_factory: ProcFactory) -> None:
    """A batch refused after processing (queue full) comes back as an exact re-send."""
    proc = proc_factory()
    s = T0 + SEC
    feed(proc, (s, s + 10 * SEC, 10))
    batch = request(sum_metric([(s, s + 20 * SEC, 25)]))
    first = sum_points(proc.consume_metrics(MetricsData.FromString(batch.SerializeToString())))
    again = sum_points(proc.consume_metrics(MetricsData.FromString(batch.SerializeToString())))
    assert first == again == [(s + 10 * SEC, s + 20 * SEC, 15)]
    assert (
        telemetry.value("agentwatch_cumulative_to_delta_replayed_points_total", processor=proc.name)
        == 1
    )
    assert feed(proc, (s, s + 30 * SEC, 26)) == [[(s + 20 * SEC, s + 30 * SEC, 1)]]


def test_resent_first_point_that_was_dropped_stays_dropped(proc_factory: ProcFactory) -> None:
    proc = proc_factory()
    before = T0 - SEC
    assert feed(proc, (before, T0 + SEC, 10), (before, T0 + SEC, 10)) == [[], []]
    assert dropped(proc, "initial") == 1
    assert dropped(proc, "duplicate") == 1


def test_other_metrics_pass_through_unchanged(proc_factory: ProcFactory) -> None:
    proc = proc_factory()
    s = T0 + SEC
    gauge = Metric(name="queue_depth")
    gauge.gauge.CopyFrom(Gauge(data_points=[NumberDataPoint(time_unix_nano=s, as_int=3)]))
    up_down = sum_metric([(s, s + SEC, 5)], name="active_sessions", monotonic=False)
    already_delta = sum_metric([(s, s + SEC, 5)], name="claude_code.token.usage", temporality=DELTA)
    data = request(gauge, up_down, already_delta)
    expected = data.SerializeToString()
    for step in range(3):
        down = sum_metric([(s, s + (2 + step) * SEC, 1)], name="active_sessions", monotonic=False)
        out = proc.consume_metrics(MetricsData.FromString(expected))
        assert out is not None and out.SerializeToString() == expected
        out = proc.consume_metrics(request(down))
        assert sum_points(out) == [(s, s + (2 + step) * SEC, 1)]
    assert len(proc.tracker.streams) == 0


def test_batch_whose_every_point_is_dropped_becomes_none_but_gauges_survive(
    proc_factory: ProcFactory,
) -> None:
    proc = proc_factory()
    before = T0 - SEC
    assert proc.consume_metrics(request(sum_metric([(before, T0 + SEC, 1)]))) is None
    gauge = Metric(name="queue_depth")
    gauge.gauge.CopyFrom(Gauge(data_points=[NumberDataPoint(time_unix_nano=T0, as_int=3)]))
    out = proc.consume_metrics(
        request(sum_metric([(before, T0 + 2 * SEC, 2)], labels={"type": "output"}), gauge)
    )
    assert [m.name for m in metrics_of(out)] == ["queue_depth"]


def test_points_without_a_value_are_dropped_and_counted(proc_factory: ProcFactory) -> None:
    proc = proc_factory()
    s = T0 + SEC
    feed(proc, (s, s + SEC, 10))
    stale = sum_metric([(s, s + 2 * SEC, 0)])
    stale.sum.data_points[0].flags = 1  # no recorded value (a staleness marker)
    assert sum_points(proc.consume_metrics(request(stale))) == []
    assert dropped(proc, "no_value") == 1
    assert feed(proc, (s, s + 3 * SEC, 12)) == [[(s + SEC, s + 3 * SEC, 2)]]


def test_each_attribute_set_resource_and_unit_is_its_own_stream(proc_factory: ProcFactory) -> None:
    proc = proc_factory()
    s = T0 + SEC
    proc.consume_metrics(
        request(
            sum_metric([(s, s + SEC, 10)], labels={"type": "input"}),
            sum_metric([(s, s + SEC, 100)], labels={"type": "output"}),
        )
    )
    proc.consume_metrics(
        request(sum_metric([(s, s + SEC, 1000)]), resource={"service.name": "other"})
    )
    out = proc.consume_metrics(
        request(
            sum_metric([(s, s + 2 * SEC, 11)], labels={"type": "input"}),
            sum_metric([(s, s + 2 * SEC, 130)], labels={"type": "output"}),
        )
    )
    assert sorted(v for _, _, v in sum_points(out)) == [1, 30]
    assert telemetry.value("agentwatch_cumulative_to_delta_streams", processor=proc.name) == 3


def test_attribute_order_does_not_split_a_stream(proc_factory: ProcFactory) -> None:
    proc = proc_factory()
    s = T0 + SEC
    a = {"model": "gemini-2.5-pro", "type": "input"}
    b = {"type": "input", "model": "gemini-2.5-pro"}
    proc.consume_metrics(request(sum_metric([(s, s + SEC, 10)], labels=a)))
    out = proc.consume_metrics(request(sum_metric([(s, s + 2 * SEC, 15)], labels=b)))
    assert sum_points(out) == [(s + SEC, s + 2 * SEC, 5)]


# --- histograms ----------------------------------------------------------------------------------
def test_histogram_buckets_count_and_sum_are_differenced_and_min_max_dropped(
    proc_factory: ProcFactory,
) -> None:
    proc = proc_factory()
    s = T0 + SEC
    first = proc.consume_metrics(request(hist_metric([(s, s + SEC, [1, 2, 0], 80.0)])))
    p0 = next(metrics_of(first)).histogram.data_points[0]
    assert (p0.count, list(p0.bucket_counts), p0.min, p0.max) == (3, [1, 2, 0], 1.0, 500.0)
    out = proc.consume_metrics(request(hist_metric([(s, s + 2 * SEC, [3, 2, 1], 700.0)])))
    metric = next(metrics_of(out))
    assert metric.histogram.aggregation_temporality == DELTA
    p = metric.histogram.data_points[0]
    assert list(p.bucket_counts) == [2, 0, 1]
    assert p.count == 3 and p.sum == 620.0
    assert p.start_time_unix_nano == s + SEC
    assert not p.HasField("min") and not p.HasField("max")


def test_histogram_bounds_change_is_a_reset(proc_factory: ProcFactory) -> None:
    proc = proc_factory()
    s = T0 + SEC
    proc.consume_metrics(request(hist_metric([(s, s + SEC, [1, 2, 0], 80.0)])))
    changed = hist_metric([(s, s + 2 * SEC, [5, 5], 90.0)], bounds=(50.0,))
    assert proc.consume_metrics(request(changed)) is None
    assert dropped(proc, "reset") == 1
    out = proc.consume_metrics(
        request(hist_metric([(s, s + 3 * SEC, [6, 7], 99.0)], bounds=(50.0,)))
    )
    p = next(metrics_of(out)).histogram.data_points[0]
    assert list(p.bucket_counts) == [1, 2] and p.count == 3


def test_histogram_count_decrease_with_restart_emits_own_value(proc_factory: ProcFactory) -> None:
    proc = proc_factory()
    s1, s2 = T0 + SEC, T0 + 30 * SEC
    proc.consume_metrics(request(hist_metric([(s1, T0 + 20 * SEC, [4, 4, 4], 900.0)])))
    out = proc.consume_metrics(request(hist_metric([(s2, T0 + 40 * SEC, [1, 0, 0], 2.0)])))
    p = next(metrics_of(out)).histogram.data_points[0]
    assert list(p.bucket_counts) == [1, 0, 0] and p.count == 1 and p.sum == 2.0
    assert p.start_time_unix_nano == T0 + 20 * SEC
    assert p.min == 1.0  # a whole-process total: its min and max are still true


# --- real SDK shapes ------------------------------------------------------------------------------
GEN_AI_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304]


@dataclass
class Totals:
    """Sums of emitted deltas, per (metric name, attribute tuple)."""

    values: Counter = field(default_factory=Counter)
    buckets: dict = field(default_factory=lambda: defaultdict(lambda: None))

    def add(self, out: MetricsData | None) -> None:
        for m in metrics_of(out):
            case = m.WhichOneof("data")
            if case == "sum":
                assert m.sum.aggregation_temporality == DELTA
                for p in m.sum.data_points:
                    self.values[(m.name, key_of(p))] += p.as_int
            elif case == "histogram":
                assert m.histogram.aggregation_temporality == DELTA
                for p in m.histogram.data_points:
                    self.values[(m.name, key_of(p), "count")] += p.count
                    self.values[(m.name, key_of(p), "sum")] += p.sum
                    prev = self.buckets[(m.name, key_of(p))] or [0] * len(p.bucket_counts)
                    self.buckets[(m.name, key_of(p))] = [
                        a + b for a, b in zip(prev, p.bucket_counts, strict=True)
                    ]


def key_of(p: NumberDataPoint | HistogramDataPoint) -> tuple:
    return tuple(sorted((kv.key, kv.value.string_value) for kv in p.attributes))


def cumulative_totals(data: MetricsData) -> tuple[Counter, dict]:
    values: Counter = Counter()
    buckets: dict = {}
    for m in metrics_of(data):
        if m.WhichOneof("data") == "sum":
            for p in m.sum.data_points:
                values[(m.name, key_of(p))] = p.as_int
        elif m.WhichOneof("data") == "histogram":
            for p in m.histogram.data_points:
                values[(m.name, key_of(p), "count")] = p.count
                values[(m.name, key_of(p), "sum")] = p.sum
                buckets[(m.name, key_of(p))] = list(p.bucket_counts)
    return values, buckets


def gemini_process(reader: InMemoryMetricReader) -> MeterProvider:
    """Instruments named and labelled as Gemini CLI 0.61 sends them (cumulative, the default)."""
    return MeterProvider(
        resource=SdkResource.create(
            {"service.name": "gemini-cli", "session.id": "sess-1", "installation.id": "inst-1"}
        ),
        metric_readers=[reader],
        views=[
            View(
                instrument_name="gen_ai.client.token.usage",
                aggregation=ExplicitBucketHistogramAggregation(boundaries=GEN_AI_TOKEN_BUCKETS),
            )
        ],
    )


API_CALLS = [
    {"input": 1200, "output": 57, "cache": 300, "thought": 20, "tool": 0},
    {"input": 5400, "output": 210, "cache": 4800, "thought": 0, "tool": 12},
    {"input": 900, "output": 33, "cache": 0, "thought": 150, "tool": 0},
    {"input": 250_000, "output": 1200, "cache": 1000, "thought": 600, "tool": 4},
]


def test_gemini_cli_cumulative_tokens_become_deltas_summing_to_the_final_totals(
    tmp_path: Path,
) -> None:
    """Two CLI processes in a row (the second restarts the counters) and a collector restart."""
    proc = CumulativeToDelta(unique_name(), CumulativeToDeltaConfig())  # real clock
    proc.start(Host(str(tmp_path)))
    totals = Totals()
    expected: Counter = Counter()
    expected_buckets: dict = {}
    for process_run in range(2):
        reader = InMemoryMetricReader()
        provider = gemini_process(reader)
        meter = provider.get_meter("gemini-cli", "0.61.0")
        tokens = meter.create_counter("gemini_cli.token.usage", unit="token")
        usage = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
        last = None
        for i, call in enumerate(API_CALLS):
            for kind, n in call.items():
                tokens.add(n, {"model": "gemini-2.5-pro", "type": kind})
            for kind in ("input", "output"):
                usage.record(
                    call[kind],
                    {
                        "gen_ai.token.type": kind,
                        "gen_ai.provider.name": "gcp.gen_ai",
                        "gen_ai.request.model": "gemini-2.5-pro",
                        "gen_ai.operation.name": "generate_content",
                    },
                )
            metrics_data = reader.get_metrics_data()
            assert metrics_data is not None
            last = encode_metrics(metrics_data)
            totals.add(proc.consume_metrics(MetricsData.FromString(last.SerializeToString())))
            if process_run == 0 and i == 1:  # the collector restarts mid-stream
                proc.shutdown()
                proc = CumulativeToDelta(proc.name, CumulativeToDeltaConfig())
                proc.start(Host(str(tmp_path)))
        provider.shutdown()
        assert last is not None
        values, buckets = cumulative_totals(last)
        assert any(k[0] == "gemini_cli.token.usage" for k in values)
        expected.update(values)
        for k, b in buckets.items():
            prev = expected_buckets.get(k, [0] * len(b))
            expected_buckets[k] = [x + y for x, y in zip(prev, b, strict=True)]
    proc.shutdown()
    assert totals.values == expected
    assert dict(totals.buckets) == expected_buckets


def exp_buckets_at(scale: int, target: int, offset: int, counts: Sequence[int]) -> Counter:
    """Bucket counts of an exponential histogram re-expressed at a coarser scale."""
    merged: Counter = Counter()
    for i, c in enumerate(counts):
        merged[(offset + i) >> (scale - target)] += c
    return merged


def test_exponential_histogram_deltas_survive_sdk_downscaling(proc_factory: ProcFactory) -> None:
    proc = proc_factory(clock=Clock(0))  # every SDK start time is after this processor's
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        views=[View(instrument_name="lat", aggregation=ExponentialBucketHistogramAggregation(8))],
    )
    hist = provider.get_meter("t").create_histogram("lat")
    rng = random.Random(7)
    deltas: list[ExponentialHistogramDataPoint] = []
    cumulative_scales = set()
    last = None
    for step in range(6):
        spread = 10.0 ** (step + 1)  # the range grows, so the SDK lowers the scale
        for _ in range(40):
            hist.record(rng.uniform(1 / spread, spread))
        hist.record(0)
        data = reader.get_metrics_data()
        assert data is not None
        last = encode_metrics(data)
        cumulative_scales.add(next(metrics_of(last)).exponential_histogram.data_points[0].scale)
        out = proc.consume_metrics(MetricsData.FromString(last.SerializeToString()))
        metric = next(metrics_of(out))
        assert metric.exponential_histogram.aggregation_temporality == DELTA
        deltas.extend(metric.exponential_histogram.data_points)
    provider.shutdown()
    assert len(cumulative_scales) > 1, "the test must exercise a scale change"
    assert last is not None
    final = next(metrics_of(last)).exponential_histogram.data_points[0]
    assert sum(d.count for d in deltas) == final.count == 6 * 41
    assert sum(d.zero_count for d in deltas) == final.zero_count
    assert sum(d.sum for d in deltas) == pytest.approx(final.sum)
    for side in ("positive", "negative"):
        merged: Counter = Counter()
        for d in deltas:
            b = getattr(d, side)
            merged.update(exp_buckets_at(d.scale, final.scale, b.offset, b.bucket_counts))
        fb = getattr(final, side)
        want = exp_buckets_at(final.scale, final.scale, fb.offset, fb.bucket_counts)
        assert +merged == +want
    assert all(not d.HasField("min") for d in deltas[1:])


def exp_point(
    t: int, scale: int, positive: tuple[int, list[int]], negative: tuple[int, list[int]], zero: int
) -> Metric:
    m = Metric(name="lat")
    m.exponential_histogram.aggregation_temporality = CUMULATIVE  # type: ignore[assignment]
    p = m.exponential_histogram.data_points.add(
        start_time_unix_nano=T0 + SEC, time_unix_nano=t, scale=scale, zero_count=zero
    )
    p.positive.offset, p.negative.offset = positive[0], negative[0]
    p.positive.bucket_counts.extend(positive[1])
    p.negative.bucket_counts.extend(negative[1])
    p.count = zero + sum(positive[1]) + sum(negative[1])
    return m


def test_exponential_histogram_negative_buckets_and_scale_rules(proc_factory: ProcFactory) -> None:
    proc = proc_factory()
    # scale 1, negative buckets -3..-1 = [1, 2, 3]; at scale 0 they merge into -2: 1, -1: 5.
    proc.consume_metrics(request(exp_point(T0 + 2 * SEC, 1, (0, [4]), (-3, [1, 2, 3]), 1)))
    out = proc.consume_metrics(request(exp_point(T0 + 3 * SEC, 0, (0, [6]), (-3, [1, 4, 8]), 2)))
    p = next(metrics_of(out)).exponential_histogram.data_points[0]
    assert (p.scale, p.zero_count, p.count) == (0, 1, 1 + 2 + 7)
    assert (p.negative.offset, list(p.negative.bucket_counts)) == (-3, [1, 3, 3])
    assert list(p.positive.bucket_counts) == [2]
    # A finer scale than before cannot be differenced: a reset, kept as the new baseline.
    assert (
        proc.consume_metrics(request(exp_point(T0 + 4 * SEC, 2, (0, [9]), (-3, [1, 4, 8]), 2)))
        is None
    )
    assert dropped(proc, "reset") == 1


# --- bounded state -------------------------------------------------------------------------
def test_lru_eviction_is_counted_and_an_evicted_stream_is_not_counted_twice(
    proc_factory: ProcFactory,
) -> None:
    clock = Clock()
    proc = proc_factory(clock=clock, max_streams=2)
    s = T0 + SEC
    for i, kind in enumerate(("input", "output", "cache")):
        clock.now += SEC
        proc.consume_metrics(
            request(sum_metric([(s, s + SEC, 10 * (i + 1))], labels={"type": kind}))
        )
    assert len(proc.tracker.streams) == 2
    assert (
        telemetry.value(
            "agentwatch_cumulative_to_delta_evicted_streams_total",
            processor=proc.name,
            reason="lru",
        )
        == 1
    )
    assert telemetry.value("agentwatch_cumulative_to_delta_streams", processor=proc.name) == 2
    # "input" was least recently seen; it comes back with its running total, which must not
    # be emitted again even though its stream started after the processor did.
    out = proc.consume_metrics(
        request(sum_metric([(s, s + 2 * SEC, 15)], labels={"type": "input"}))
    )
    assert sum_points(out) == []
    assert dropped(proc, "initial") == 1


def test_stale_streams_are_forgotten_and_counted(proc_factory: ProcFactory) -> None:
    clock = Clock()
    proc = proc_factory(clock=clock, max_staleness="1m")
    s = T0 + SEC
    proc.consume_metrics(request(sum_metric([(s, s + SEC, 1)], labels={"type": "input"})))
    clock.now += 30 * SEC
    proc.consume_metrics(request(sum_metric([(s, s + SEC, 1)], labels={"type": "output"})))
    clock.now += 31 * SEC  # input unseen for 61 s, output for 31 s
    proc.consume_metrics(request(sum_metric([(s, s + 2 * SEC, 3)], labels={"type": "output"})))
    assert len(proc.tracker.streams) == 1
    assert (
        telemetry.value(
            "agentwatch_cumulative_to_delta_evicted_streams_total",
            processor=proc.name,
            reason="staleness",
        )
        == 1
    )
    clock.now += 61 * SEC
    proc.flush()  # the periodic flush forgets stale streams even without traffic
    assert len(proc.tracker.streams) == 0
    assert telemetry.value("agentwatch_cumulative_to_delta_streams", processor=proc.name) == 0


# --- include / exclude -------------------------------------------------------------------------
NAMES = ["gemini_cli.token.usage", "gemini_cli.api.request.count", "gen_ai.client.token.usage"]


@pytest.mark.parametrize(
    ("cfg", "converted"),
    [
        ({}, set(NAMES)),
        ({"include": {"metrics": ["gemini_cli.token.usage"]}}, {"gemini_cli.token.usage"}),
        (
            {"include": {"metrics": [r"token\.usage$"], "match_type": "regexp"}},
            {"gemini_cli.token.usage", "gen_ai.client.token.usage"},
        ),
        (
            {"exclude": {"metrics": ["^gemini_cli"], "match_type": "regexp"}},
            {"gen_ai.client.token.usage"},
        ),
        (
            {
                "include": {"metrics": ["token"], "match_type": "regexp"},
                "exclude": {"metrics": ["gen_ai.client.token.usage"]},
            },
            {"gemini_cli.token.usage"},
        ),
        ({"include": {"metrics": ["token"]}}, set()),  # strict means the whole name
    ],
)
def test_include_and_exclude(proc_factory: ProcFactory, cfg: dict, converted: set[str]) -> None:
    proc = proc_factory(**cfg)
    s = T0 + SEC
    out = proc.consume_metrics(request(*(sum_metric([(s, s + SEC, 5)], name=n) for n in NAMES)))
    temporality = {m.name: m.sum.aggregation_temporality for m in metrics_of(out)}
    assert temporality == {n: DELTA if n in converted else CUMULATIVE for n in NAMES}


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="invalid regexp"):
        CumulativeToDeltaConfig.model_validate(
            {"include": {"metrics": ["(unclosed"], "match_type": "regexp"}}
        )
    with pytest.raises(ValidationError):
        CumulativeToDeltaConfig.model_validate({"include": {"metrics": []}})
    with pytest.raises(ValidationError):
        CumulativeToDeltaConfig.model_validate({"max_streams": 0})
    with pytest.raises(ValidationError):
        CumulativeToDeltaConfig.model_validate({"initial_value": "sometimes"})
    with pytest.raises(ValidationError):
        CumulativeToDeltaConfig.model_validate({"max_stale": "5m"})  # unknown key
    cfg = CumulativeToDeltaConfig.model_validate(
        {"max_staleness": "5m", "state_flush_interval": "500ms"}
    )
    assert (cfg.max_staleness, cfg.state_flush_interval) == (300.0, 0.5)
    assert FACTORY.type_name == "cumulative_to_delta"
    assert isinstance(FACTORY.create("cumulative_to_delta", cfg), CumulativeToDelta)


# --- restarts ----------------------------------------------------------------------------------
def scenario(seed: int, batches: int = 24) -> list[tuple[int, bytes]]:
    """Random cumulative traffic: (clock, serialized request) per batch, with resets, process
    restarts, out-of-order points, exact re-sends, histograms and a non-monotonic sum."""
    rng = random.Random(seed)
    kinds = ["input", "output", "cache", "thought"]
    start = {k: T0 + rng.choice([-5, 1]) * SEC for k in kinds}
    value = dict.fromkeys(kinds, 0)
    hist_start, hist = T0 + SEC, [0, 0, 0]
    t = T0 + 10 * SEC
    out: list[tuple[int, bytes]] = []
    previous: bytes | None = None
    for _ in range(batches):
        if previous is not None and rng.random() < 0.1:
            out.append((t, previous))  # a client re-sends the last batch
            continue
        t += rng.randint(1, 5) * SEC
        metrics = []
        for k in rng.sample(kinds, rng.randint(1, len(kinds))):
            roll = rng.random()
            if roll < 0.08:  # the agent restarted: a later start and a small total
                start[k], value[k] = t - SEC // 2, rng.randint(0, 5)
            elif roll < 0.14:  # a decrease that nothing explains
                value[k] = max(0, value[k] - rng.randint(1, 50))
            else:
                value[k] += rng.randint(0, 500)
            ts = t - 3 * SEC if roll > 0.95 else t  # now and then a point from the past
            metrics.append(sum_metric([(start[k], ts, value[k])], labels={"type": k}))
        hist = [h + rng.randint(0, 3) for h in hist]
        metrics.append(hist_metric([(hist_start, t, hist, float(sum(hist)) * 7)]))
        metrics.append(sum_metric([(T0, t, rng.randint(0, 9))], name="sessions", monotonic=False))
        previous = request(*metrics).SerializeToString()
        out.append((t, previous))
    return out


def run(
    proc: CumulativeToDelta, clock: Clock, batches: Sequence[tuple[int, bytes]]
) -> list[bytes | None]:
    results: list[bytes | None] = []
    for now, raw in batches:
        clock.now = now
        out = proc.consume_metrics(MetricsData.FromString(raw))
        results.append(None if out is None else out.SerializeToString())
    return results


def uninterrupted(batches: Sequence[tuple[int, bytes]], name: str) -> list[bytes | None]:
    with tempfile.TemporaryDirectory() as d:
        clock = Clock()
        proc = make(Path(d), clock, name=name, state_flush_interval=3600)
        try:
            return run(proc, clock, batches)
        finally:
            proc.shutdown()


@settings(max_examples=25, deadline=None, database=None)
@given(
    seed=st.integers(0, 10_000),
    split=st.integers(1, 23),
    crash=st.booleans(),
    compact_at=st.one_of(st.none(), st.integers(0, 23)),
)
def test_restart_anywhere_gives_the_deltas_of_an_uninterrupted_run(
    seed: int, split: int, crash: bool, compact_at: int | None
) -> None:
    batches = scenario(seed)
    name = unique_name()
    reference = uninterrupted(batches, unique_name())
    assert any(r is not None for r in reference)
    with tempfile.TemporaryDirectory() as d:
        live, copy = Path(d) / "live", Path(d) / "copy"
        clock = Clock()
        first = make(live, clock, name=name, state_flush_interval=3600)
        got: list[bytes | None] = []
        for i, batch in enumerate(batches[:split]):
            got += run(first, clock, [batch])
            if i == compact_at:
                first.flush()  # a periodic snapshot in the middle: snapshot + journal on disk
        if crash:
            # What a kill -9 leaves: the files as they are now, no shutdown flush.
            shutil.copytree(live, copy, ignore=shutil.ignore_patterns("lock"))
            second = make(copy, clock, name=name, state_flush_interval=3600)
        else:
            first.shutdown()
            second = make(live, clock, name=name, state_flush_interval=3600)
        got += run(second, clock, batches[split:])
        second.shutdown()
        first.shutdown()
    assert got == reference


CHILD = r"""
import os, signal, struct, sys
from collector.component import Host, MetricsData
from processors.cumulative_to_delta import CumulativeToDelta, CumulativeToDeltaConfig

data_dir, batches_path, out_path, name = sys.argv[1:5]
raw = open(batches_path, "rb").read()
batches, pos = [], 0
while pos < len(raw):
    now, n = struct.unpack_from("<qI", raw, pos)
    batches.append((now, raw[pos + 12 : pos + 12 + n]))
    pos += 12 + n
now = [int(sys.argv[5])]
proc = CumulativeToDelta(name, CumulativeToDeltaConfig(state_flush_interval=3600),
                         clock=lambda: now[0])
proc.start(Host(data_dir))
with open(out_path, "wb") as out:
    for now[0], batch in batches:
        result = proc.consume_metrics(MetricsData.FromString(batch))
        body = b"" if result is None else result.SerializeToString()
        out.write(struct.pack("<i", -1 if result is None else len(body)) + body)
        out.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_mid_stream_neither_loses_nor_double_counts(tmp_path: Path) -> None:
    batches = scenario(seed=1234, batches=30)
    name, reference_name = unique_name(), unique_name()
    reference = uninterrupted(batches, reference_name)
    # The scenario really holds the hard cases, so the comparison below means something.
    for reason in ("out_of_order", "reset", "initial"):
        assert (
            telemetry.value(
                "agentwatch_processor_dropped_items_total",
                processor=reference_name,
                signal="metrics",
                reason=reason,
            )
            > 0
        ), reason
    assert (
        telemetry.value(
            "agentwatch_cumulative_to_delta_resets_total", processor=reference_name, kind="restart"
        )
        > 0
    )
    assert (
        telemetry.value(
            "agentwatch_cumulative_to_delta_replayed_points_total", processor=reference_name
        )
        > 0
    )
    split = 17
    batches_file = tmp_path / "batches"
    batches_file.write_bytes(
        b"".join(struct.pack("<qI", now, len(raw)) + raw for now, raw in batches[:split])
    )
    out_file = tmp_path / "out"
    args = [str(tmp_path / "data"), str(batches_file), str(out_file), name, str(T0)]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr.decode()
    got: list[bytes | None] = []
    raw, pos = out_file.read_bytes(), 0
    while pos < len(raw):
        (n,) = struct.unpack_from("<i", raw, pos)
        pos += 4
        got.append(None if n < 0 else raw[pos : pos + n])
        pos += max(n, 0)
    assert len(got) == split
    clock = Clock()
    proc = make(tmp_path / "data", clock, name=name)
    try:
        got += run(proc, clock, batches[split:])
    finally:
        proc.shutdown()
    assert got == reference


def test_torn_journal_tail_is_ignored(tmp_path: Path) -> None:
    clock = Clock()
    name = unique_name()
    s = T0 + SEC
    proc = make(tmp_path, clock, name=name)
    feed(proc, (s, s + SEC, 10), (s, s + 2 * SEC, 20))
    state_dir = tmp_path / "cumulative_to_delta" / name.replace("/", "%2F")
    journals = sorted(state_dir.glob("journal.*"))
    assert journals and journals[-1].stat().st_size > 0
    with open(journals[-1], "ab") as f:
        f.write(struct.pack("<II", 500, 0) + b"S" + b"\x00" * 40)  # a write cut short by a crash
    copy = tmp_path / "after-crash"
    shutil.copytree(state_dir, copy / "cumulative_to_delta" / name.replace("/", "%2F"))
    proc.shutdown()
    second = make(copy, clock, name=name)
    try:
        assert feed(second, (s, s + 3 * SEC, 26)) == [[(s + 2 * SEC, s + 3 * SEC, 6)]]
    finally:
        second.shutdown()


def test_state_directory_is_exclusive(tmp_path: Path) -> None:
    name = unique_name()
    first = make(tmp_path, name=name)
    try:
        with pytest.raises(RuntimeError, match="in use"):
            make(tmp_path, name=name)
    finally:
        first.shutdown()
    make(tmp_path, name=name).shutdown()  # free again after shutdown


def test_flush_compacts_into_one_snapshot_that_restores_everything(tmp_path: Path) -> None:
    clock = Clock()
    name = unique_name()
    s = T0 + SEC
    proc = make(tmp_path, clock, name=name)
    for i in range(5):
        proc.consume_metrics(
            request(
                *(sum_metric([(s, s + (i + 1) * SEC, 10 * i)], labels={"type": k}) for k in "ab")
            )
        )
    state_dir = tmp_path / "cumulative_to_delta" / name.replace("/", "%2F")
    journal_before = sorted(state_dir.glob("journal.*"))[-1]
    assert journal_before.stat().st_size > 0
    proc.flush()
    journals = sorted(state_dir.glob("journal.*"))
    assert journal_before not in journals and all(j.stat().st_size == 0 for j in journals)
    assert not (state_dir / "state.tmp").exists()
    proc.shutdown()
    second = make(tmp_path, clock, name=name)
    try:
        assert len(second.tracker.streams) == 2
        out = second.consume_metrics(
            request(*(sum_metric([(s, s + 6 * SEC, 45)], labels={"type": k}) for k in "ab"))
        )
        assert sum_points(out) == [(s + 5 * SEC, s + 6 * SEC, 5)] * 2
    finally:
        second.shutdown()


def test_concurrent_batches_with_background_compaction_keep_every_delta(tmp_path: Path) -> None:
    """Receiver threads convert while the flusher rotates the journal every few milliseconds."""
    name = unique_name()
    proc = make(tmp_path, Clock(), name=name, state_flush_interval="5ms")
    s = T0 + SEC
    per_thread, threads = 300, 4
    sums: Counter = Counter()
    errors: list[BaseException] = []

    def worker(kind: str) -> None:
        try:
            for i in range(1, per_thread + 1):
                out = proc.consume_metrics(
                    request(sum_metric([(s, s + i * SEC, i * 3)], labels={"type": kind}))
                )
                for _, _, v in sum_points(out):
                    sums[kind] += int(v)
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(f"k{n}",)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    proc.shutdown()
    assert not errors
    assert sums == {f"k{n}": per_thread * 3 for n in range(threads)}
    second = make(tmp_path, Clock(), name=name)
    try:
        out = second.consume_metrics(
            request(
                *(
                    sum_metric([(s, s + (per_thread + 1) * SEC, 1000)], labels={"type": f"k{n}"})
                    for n in range(threads)
                )
            )
        )
        assert sorted(v for _, _, v in sum_points(out)) == [1000 - per_thread * 3] * threads
    finally:
        second.shutdown()
