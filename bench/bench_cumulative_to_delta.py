"""What persisting cumulative-to-delta state costs: per batch, per snapshot, per start.

Run: ``.venv/bin/python bench/bench_cumulative_to_delta.py`` (about 20 s); writes
``bench/results/cumulative_to_delta.md``.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Metric,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from collector.component import Host, MetricsData
from processors.cumulative_to_delta import CumulativeToDelta, CumulativeToDeltaConfig

CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
SEC = 10**9
BOUNDS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304]


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def batch(step: int, streams: int, histograms: int, session: str = "s") -> bytes:
    """A Gemini-CLI-shaped export: token sums by type, gen_ai histograms, step-th collection."""
    t = (1_800_000_000 + step) * SEC
    start = 1_800_000_000 * SEC - SEC
    rm = ResourceMetrics(
        resource=Resource(attributes=[kv("service.name", "gemini-cli"), kv("session.id", session)])
    )
    sm = ScopeMetrics(scope=InstrumentationScope(name="gemini-cli", version="0.61.0"))
    tokens = Metric(name="gemini_cli.token.usage", unit="token")
    tokens.sum.aggregation_temporality = CUMULATIVE  # type: ignore[assignment]
    tokens.sum.is_monotonic = True
    for i in range(streams):
        p = tokens.sum.data_points.add(
            start_time_unix_nano=start, time_unix_nano=t, as_int=step * (i + 1)
        )
        p.attributes.extend([kv("model", "gemini-2.5-pro"), kv("type", f"t{i}")])
    sm.metrics.append(tokens)
    if histograms:
        hist = Metric(name="gen_ai.client.token.usage", unit="{token}")
        hist.histogram.aggregation_temporality = CUMULATIVE  # type: ignore[assignment]
        for i in range(histograms):
            counts = [step * (j % 3) for j in range(len(BOUNDS) + 1)]
            p = hist.histogram.data_points.add(
                start_time_unix_nano=start,
                time_unix_nano=t,
                count=sum(counts),
                sum=float(step * 1000),
                bucket_counts=counts,
                explicit_bounds=BOUNDS,
            )
            p.attributes.extend([kv("gen_ai.token.type", f"t{i}"), kv("gen_ai.system", "gcp")])
        sm.metrics.append(hist)
    rm.scope_metrics.append(sm)
    return MetricsData(resource_metrics=[rm]).SerializeToString()


def per_batch_us(proc: CumulativeToDelta, batches: list[bytes]) -> float:
    parsed = [MetricsData.FromString(b) for b in batches]
    began = time.perf_counter()
    for data in parsed:
        proc.consume_metrics(data)
    return (time.perf_counter() - began) / len(parsed) * 1e6


def measure(persist: bool, make_batches: Callable[[], list[bytes]]) -> float:
    """Best of three fresh runs over the same batches (each a whole stream history)."""
    batches = make_batches()
    runs = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as d:
            proc = CumulativeToDelta("bench", CumulativeToDeltaConfig(state_flush_interval=3600))
            if persist:
                proc.start(Host(d))
            runs.append(per_batch_us(proc, batches))
            proc.shutdown()
    return min(runs)


def main() -> None:
    rows = []
    shapes = {
        "Gemini CLI export (5 token sums + 2 histograms)": (5, 2, 3000),
        "wide export (1,000 sums)": (1000, 0, 60),
    }
    for label, (streams, histograms, n) in shapes.items():

        def make(streams: int = streams, histograms: int = histograms, n: int = n) -> list[bytes]:
            return [batch(step, streams, histograms) for step in range(1, n + 1)]

        memory = measure(False, make)
        disk = measure(True, make)
        points = streams + histograms
        rows.append(
            f"| {label} | {points} | {memory:,.0f} | {disk:,.0f} | {disk - memory:,.0f} "
            f"| {(disk - memory) / points:,.2f} |"
        )

    many = 100_000
    with tempfile.TemporaryDirectory() as d:
        proc = CumulativeToDelta("bench", CumulativeToDeltaConfig(state_flush_interval=3600))
        proc.start(Host(d))
        for s in range(many // 1000):
            proc.consume_metrics(MetricsData.FromString(batch(1, 1000, 0, session=f"s{s}")))
        began = time.perf_counter()
        proc.flush()
        snapshot_ms = (time.perf_counter() - began) * 1e3
        state = Path(d) / "cumulative_to_delta" / "bench" / "state"
        size = state.stat().st_size
        proc.shutdown()
        began = time.perf_counter()
        again = CumulativeToDelta("bench", CumulativeToDeltaConfig(state_flush_interval=3600))
        again.start(Host(d))
        load_ms = (time.perf_counter() - began) * 1e3
        assert len(again.tracker.streams) == many
        again.shutdown()

    out = Path(__file__).parent / "results" / "cumulative_to_delta.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        "# cumulative_to_delta: cost of persisted state\n\n"
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs (shared), {time.strftime('%Y-%m-%d')}. "
        "Best of 3 runs; state on the local disk; the journal is appended once per batch "
        "(no fsync), snapshots are fsynced.\n\n"
        "| batch | points | in memory µs/batch | persisted µs/batch | persistence µs/batch "
        "| persistence µs/point |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\n{many:,} streams: snapshot (write + fsync + rename) {snapshot_ms:,.0f} ms, "
        f"{size / 1e6:.1f} MB; start (load + first snapshot) {load_ms:,.0f} ms.\n"
    )
    print(out.read_text())


if __name__ == "__main__":
    main()
