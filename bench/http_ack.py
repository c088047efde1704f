"""Benchmark: OTLP/HTTP acknowledgement latency and memory of the receiver, old against new.

The receiver runs in a child process started from a given checkout (``--root``, with that
checkout's ``.venv``), with a consumer that accepts and discards, so the figures are the
receiver's own: HTTP parsing, body reading, inflating, protobuf decoding and the answer. The
load comes from this process: an open-loop schedule of ``--rate`` requests per second of 50 real
Claude Code records each (bench/pipeline_e2e.py's generator), over ``--clients`` keep-alive
connections; latency is measured from each request's *scheduled* time, so a stalled server is
not hidden by a client that waits (coordinated omission). Then the child's peak RSS after
``--big`` requests of ~10 MB, four at a time.

    .venv/bin/python bench/http_ack.py --root /path/old --label old --root . --label new \\
        [--rate 500] [--seconds 20]

Writes bench/results/http-ack.md. Run by hand, not a test.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVER = """
import sys, threading
from collector.component import ConsumeResult, Host, Signal
from collector.receivers.otlp import OtlpReceiver, OtlpReceiverConfig

class Discard:
    def consume(self, signal, data):
        return ConsumeResult()

config = OtlpReceiverConfig.model_validate({"protocols": {"http": {"endpoint": "127.0.0.1:0"}}})
rx = OtlpReceiver("otlp", config)
rx.attach(Signal.LOGS, Discard())
rx.start(Host("/tmp"))
print(rx.http_port, flush=True)
sys.stdin.read()
rx.shutdown()
"""


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_loop(port: int, bodies: list[bytes], rate: float, seconds: float, clients: int) -> dict:
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2
    latencies: list[float] = []
    errors: dict[int, int] = {}
    lock = threading.Lock()
    counter = iter(range(total))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            conn.request(
                "POST",
                "/v1/logs",
                bodies[i % len(bodies)],
                {"Content-Type": "application/x-protobuf"},
            )
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - due)
            if response.status != 200:
                with lock:
                    errors[response.status] = errors.get(response.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()

    def q(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "max": latencies[-1] * 1000,
        "errors": errors,
    }


def big_bodies(port: int, count: int) -> int:
    body = b"\x0a" + b"\xff" * 5 + b"\x7f" + os.urandom(10 * 1024 * 1024)  # undecodable, 10 MB
    statuses: list[int] = []

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/v1/logs", body, {"Content-Type": "application/x-protobuf"})
        statuses.append(conn.getresponse().status)
        conn.close()

    for _ in range(0, count, 4):
        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return len(statuses)


def measure(root: Path, args: argparse.Namespace, bodies: list[bytes]) -> dict:
    child = subprocess.Popen(
        [str(root / ".venv" / "bin" / "python"), "-c", SERVER],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    port = int(child.stdout.readline())
    open_loop(port, bodies, args.rate, 2, args.clients)  # warm up
    cpu0 = cpu_seconds(child.pid)
    result = open_loop(port, bodies, args.rate, args.seconds, args.clients)
    result["cpu_per_request_us"] = (cpu_seconds(child.pid) - cpu0) / result["requests"] * 1e6
    result["rss_steady"] = rss_mib(child.pid)
    big_bodies(port, args.big)
    result["rss_peak_big"] = peak_rss_mib(child.pid)
    child.stdin.close()
    child.wait(30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", action="append", type=Path, required=True)
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        help="a name for each --root in the table, in the same order (default: the path)",
    )
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--big", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from bench.pipeline_e2e import make_requests

    bodies = make_requests(50 * 200, 50)
    rows = []
    labels = args.label + [f"`{root}`" for root in args.root[len(args.label) :]]
    load_before = os.getloadavg()[0]
    runs_of: dict[Path, list[dict]] = {root: [] for root in args.root}
    for _ in range(args.runs):  # interleaved, so a change in the machine's load hits all alike
        for root in args.root:
            runs_of[root].append(measure(root.resolve(), args, bodies))
    for root, label in zip(args.root, labels, strict=True):
        runs = runs_of[root]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "errors"}
        errors = sum(sum(r["errors"].values()) for r in runs)
        rows.append(
            f"| {label} | {med['requests']:.0f} | {med['p50']:.2f} | {med['p90']:.2f} | "
            f"{med['p99']:.2f} | {med['max']:.1f} | {errors} | {med['cpu_per_request_us']:.0f} | "
            f"{med['rss_steady']:.0f} | {med['rss_peak_big']:.0f} |"
        )
        print(rows[-1], flush=True)
    load = os.getloadavg()
    text = "\n".join(
        [
            "# OTLP/HTTP receiver: ack latency and memory",
            "",
            f"Command: `.venv/bin/python bench/http_ack.py {shlex.join(sys.argv[1:])}`",
            "",
            f"{args.rate:.0f} requests/s of 50 Claude Code records (protobuf, ~"
            f"{statistics.median(len(b) for b in bodies) / 1024:.0f} KiB) over {args.clients} "
            f"keep-alive connections for {args.seconds:.0f} s, open loop, latency from each "
            f"request's scheduled time; the receiver in a child process with a consumer that "
            f"discards. Then {args.big} undecodable 10 MB bodies, four at a time. Medians of "
            f"{args.runs} interleaved runs; load average {load_before:.1f} at the start and "
            f"{load[0]:.1f} at the end on {os.cpu_count()} cores.",
            "",
            "| receiver | requests | p50 ms | p90 ms | p99 ms | max ms | non-200 | "
            "CPU µs/request | RSS MiB steady | peak RSS MiB after 10 MB bodies |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )
    out = ROOT / "bench" / "results" / "http-ack.md"
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
