"""Benchmark: OTLP logs request bytes into the record model, compiled decoder against its twin.

On the records of bench/pipeline_e2e.py (its ``make_requests``: Claude Code ``api_request`` and
``tool_result`` events, 25 attributes each, 500 per request), in one process on one thread:

* ``FromString`` alone: upb parses the request, nothing is read;
* the ceiling: pipeline_e2e's ``parse_and_read`` (parse, then read every attribute in Python);
* the twin: ``Logs.from_proto(ExportLogsServiceRequest.FromString(body))``;
* the compiled decoder: ``collector.wire.compiled.decode_logs(body)``.

Each figure is the median of ``--runs`` runs, CPU µs per record (the thread's CPU time, not
the wall clock: the machine is shared, and a busy neighbour would otherwise count as ours).
Run by hand (not a test):

    .venv/bin/python bench/wire_decode.py [--records 20000] [--batch 500] [--runs 7]

Writes bench/results/wire-decode.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline_e2e import machine, make_requests, parse_and_read  # noqa: E402
from collector.component import LogsData  # noqa: E402
from collector.wire import IMPLEMENTATIONS, twin  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "wire-decode.md"


def from_string(bodies: list[bytes]) -> int:
    return sum(len(LogsData.FromString(body).resource_logs) for body in bodies)


def decoding(decode: Callable[[bytes], object]) -> Callable[[list[bytes]], int]:
    def run(bodies: list[bytes]) -> int:
        for body in bodies:
            decode(body)
        return len(bodies)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="records per OTLP request")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if "compiled" not in IMPLEMENTATIONS:
        sys.exit("collector.wire.compiled is not built: pip install -e . with Cython and gcc")
    compiled = IMPLEMENTATIONS["compiled"]
    header = machine()  # the load average before the work starts

    bodies = make_requests(args.records, args.batch)
    n = args.records
    a, b = twin.decode_logs(bodies[0]), compiled.decode_logs(bodies[0])
    assert [(r.attributes, r.body) for r in a.records] == [
        (r.attributes, r.body) for r in b.records
    ], "the compiled decoder disagrees with its twin"
    attributes = len(a.records[0].attributes)

    stages: dict[str, Callable[[list[bytes]], int]] = {
        "`FromString` alone (upb parse, nothing read)": from_string,
        "ceiling: parse + read every attribute (pipeline_e2e `parse_and_read`)": parse_and_read,
        "twin: `Logs.from_proto(ExportLogsServiceRequest.FromString(body))`": decoding(
            twin.decode_logs
        ),
        "compiled: `collector.wire.compiled.decode_logs(body)`": decoding(compiled.decode_logs),
    }
    times: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(args.runs):  # interleaved, so a busy moment hurts every stage alike
        for name, stage in stages.items():
            start = time.thread_time()
            stage(bodies)
            times[name].append((time.thread_time() - start) / n * 1e6)

    medians = {name: statistics.median(values) for name, values in times.items()}
    twin_us = medians[list(stages)[2]]
    compiled_us = medians[list(stages)[3]]
    lines = [
        "# OTLP logs request bytes into the record model: compiled decoder against its twin",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `.venv/bin/python bench/wire_decode.py "
        f"--records {args.records} --batch {args.batch} --runs {args.runs}`; every figure is "
        f"the median of {args.runs} runs in one process, the stages taking turns; times are "
        "the thread's CPU time (`time.thread_time`), not the wall clock, as the machine is "
        "shared.",
        "",
        *header,
        f"- Records: bench/pipeline_e2e.py's `make_requests` (Claude Code `api_request` and "
        f"`tool_result`, {attributes} attributes on the first record), {args.batch} per "
        f"request, {n:,} per run (mean {sum(map(len, bodies)) // len(bodies) // 1024} KiB "
        "per request).",
        "",
        "| Stage | µs/record | vs. twin | runs (µs/record) |",
        "|---|---:|---:|---|",
    ]
    for name, value in medians.items():
        runs = ", ".join(f"{v:.2f}" for v in times[name])
        lines.append(f"| {name} | {value:.2f} | {twin_us / value:.2f}x | {runs} |")
    speedup = twin_us / compiled_us
    verdict = f"The compiled decoder is {speedup:.1f}x as fast as the twin" + (
        " (at least 2x: worth wiring in)." if speedup >= 2 else " (less than 2x: drop it)."
    )
    lines += ["", verdict, ""]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
