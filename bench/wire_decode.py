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

    .venv/bin/python bench/wire_decode.py [--records 20000] [--batch 500] [--runs 7] [--callgrind]

``--callgrind`` adds instructions per record counted by valgrind, which a busy machine does not
distort.

Writes bench/results/wire-decode.md.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
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


def stages() -> dict[str, tuple[str, Callable[[list[bytes]], int]]]:
    compiled = IMPLEMENTATIONS["compiled"]
    return {
        "fromstring": ("`FromString` alone (upb parse, nothing read)", from_string),
        "ceiling": (
            "ceiling: parse + read every attribute (pipeline_e2e `parse_and_read`)",
            parse_and_read,
        ),
        "twin": (
            "twin: `Logs.from_proto(ExportLogsServiceRequest.FromString(body))`",
            decoding(twin.decode_logs),
        ),
        "compiled": (
            "compiled: `collector.wire.compiled.decode_logs(body)`",
            decoding(compiled.decode_logs),
        ),
    }


def instructions(stage: str, records: int, batch: int) -> int:
    """Instructions the whole process executes (callgrind) when it runs ``stage`` once."""
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
        __file__, "--only", stage, "--records", str(records), "--batch", str(batch),
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    match = re.search(r"I\s+refs:\s+([\d,]+)", output)
    assert match, output
    return int(match.group(1).replace(",", ""))


def callgrind_section(records: int, batch: int) -> list[str]:
    """Instructions per record: independent of a shared machine's load, unlike the times."""
    base = instructions("none", records, batch)
    lines = [
        "",
        "## Instructions per record (callgrind)",
        "",
        f"`--callgrind`: each stage alone in a process under `valgrind --tool=callgrind` over "
        f"{records:,} records, less the same process doing nothing but building the requests.",
        "",
        "| Stage | instructions/record |",
        "|---|---:|",
    ]
    for key, (name, _) in stages().items():
        lines.append(f"| {name} | {(instructions(key, records, batch) - base) // records:,} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="records per OTLP request")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--callgrind", action="store_true", help="also count instructions")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one stage once, for --callgrind
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if "compiled" not in IMPLEMENTATIONS:
        sys.exit("collector.wire.compiled is not built: pip install -e . with Cython and gcc")
    if args.only:
        bodies = make_requests(args.records, args.batch)
        if args.only != "none":
            stages()[args.only][1](bodies)
        return
    compiled = IMPLEMENTATIONS["compiled"]
    header = machine()  # the load average before the work starts

    bodies = make_requests(args.records, args.batch)
    n = args.records
    a, b = twin.decode_logs(bodies[0]), compiled.decode_logs(bodies[0])
    assert [(r.attributes, r.body) for r in a.records] == [
        (r.attributes, r.body) for r in b.records
    ], "the compiled decoder disagrees with its twin"
    attributes = len(a.records[0].attributes)

    named = dict(stages().values())
    times: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(args.runs):  # interleaved, so a busy moment hurts every stage alike
        for name, stage in named.items():
            start = time.thread_time()
            stage(bodies)
            times[name].append((time.thread_time() - start) / n * 1e6)

    medians = {name: statistics.median(values) for name, values in times.items()}
    twin_us = medians[stages()["twin"][0]]
    compiled_us = medians[stages()["compiled"][0]]
    lines = [
        "# OTLP logs request bytes into the record model: compiled decoder against its twin",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `.venv/bin/python bench/wire_decode.py "
        f"--records {args.records} --batch {args.batch} --runs {args.runs}"
        f"{' --callgrind' if args.callgrind else ''}`; every figure is "
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
    lines += ["", verdict]
    if args.callgrind:
        lines += callgrind_section(min(n, 2 * args.batch), args.batch)
    lines.append("")
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
