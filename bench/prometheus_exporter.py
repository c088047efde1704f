"""Benchmark: the Prometheus exporter's ``consume_logs`` per record, on normalised records.

The records are those of bench/pipeline_e2e.py (Claude Code ``api_request`` and ``tool_result``
events recorded from the real CLI, ids, tokens and commands varied per record) after the default
log pipeline (normalize, cost, detections, redaction), merged into batches of the exporter's
size. Each run counts them into a fresh exporter (a warm one would see only duplicates); the
conversion into the exporter's input is done before the clock starts, as the pipeline does it
once for every exporter. Times are this thread's CPU time, so other load on the machine does
not count. Run by hand (not a test):

    .venv/bin/python bench/prometheus_exporter.py [--records 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pipeline_e2e import (  # noqa: E402
    EXPORT_BATCH,
    build_processors,
    make_requests,
    parse_and_read,
)

from collector import registry  # noqa: E402
from collector.component import Exporter, Host, LogsData, Processor, Signal  # noqa: E402


def _records_input(component: Any, data: LogsData) -> Any:
    """What ``component`` consumes: the record model when it takes records, else protobuf."""
    from collector.records import Logs

    return Logs.from_proto(data)


def _to_proto(data: Any) -> LogsData:
    return data if isinstance(data, LogsData) else data.to_proto()  # type: ignore[no-any-return]


def normalised_batches(bodies: list[bytes], tmp: str) -> list[LogsData]:
    """The default log pipeline's output, merged into exporter-sized batches."""
    processors: list[Processor] = build_processors(tmp)
    out: list[LogsData] = []
    current, items = LogsData(), 0
    for body in bodies:
        data: Any = LogsData.FromString(body)
        for processor in processors:
            data = processor.process(Signal.LOGS, _records_input(processor, _to_proto(data)))
            assert data is not None
        part = _to_proto(data)
        n = sum(len(sl.log_records) for rl in part.resource_logs for sl in rl.scope_logs)
        if items and items + n > EXPORT_BATCH:
            out.append(current)
            current, items = LogsData(), 0
        current.MergeFrom(part)
        items += n
    if items:
        out.append(current)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compat", action="store_true", help="claude_code_compat: true")
    args = parser.parse_args()
    factory = registry.factory("exporter", "prometheus")
    with tempfile.TemporaryDirectory() as tmp:
        bodies = make_requests(args.records, 500)
        batches = normalised_batches(bodies, tmp)
        n = sum(
            len(sl.log_records) for b in batches for rl in b.resource_logs for sl in rl.scope_logs
        )
        ceiling = []
        for _ in range(args.runs):
            began = time.thread_time()
            parse_and_read(bodies)
            ceiling.append(time.thread_time() - began)
        seconds = []
        for run in range(args.runs):
            config = factory.config_class.model_validate(
                {"endpoint": "127.0.0.1:0", "claude_code_compat": args.compat}
            )
            exporter = factory.create(f"prometheus/bench{run}", config)
            assert isinstance(exporter, Exporter)
            exporter.start(Host(tmp))
            try:
                inputs = [_records_input(exporter, b) for b in batches]
                began = time.thread_time()
                for i, data in enumerate(inputs):
                    exporter.consume_logs(data, f"b{i}")
                seconds.append(time.thread_time() - began)
            finally:
                exporter.shutdown()
    median = statistics.median(seconds)
    print(
        f"parse-and-read-every-attribute ceiling: {args.records} records, "
        f"{statistics.median(ceiling) * 1e6 / args.records:.2f} µs/record"
    )
    print(
        f"prometheus consume_logs: {n} records, median of {args.runs} runs (thread CPU time) "
        f"{median * 1e6 / n:.2f} µs/record ({n / median:,.0f} records/s); "
        f"runs: {', '.join(f'{s * 1e6 / n:.2f}' for s in seconds)} µs/record"
    )


if __name__ == "__main__":
    main()
