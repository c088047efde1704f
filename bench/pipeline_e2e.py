"""Benchmark: Claude Code log records end to end through ``agentwatch serve`` into ClickHouse.

One run of this script measures, against one embedded ClickHouse (chdb-core):

* **end to end**: OTLP/HTTP protobuf requests into ``agentwatch serve`` (a child process, started
  as a user starts it) with the default log pipeline (normalize, cost, detections, redaction),
  the default metrics pipeline for the derived GenAI metrics, and the clickhouse exporter on a
  write-ahead log; the clock stops when the last record is queryable in ``otel_logs``;
* **baseline (a)**: protobuf parse plus reading every attribute in Python, nothing else;
* **baseline (b)**: clickhouse-connect inserting ready-made ``otel_logs`` columns into the same
  server, batches of the exporter's size;
* **per stage**, in this process on one thread: each processor alone, the wal's append and
  read-back, the exporter's row conversion alone and the whole exporter in-process.

Records are the Claude Code ``api_request`` and ``tool_result`` events recorded from the real CLI
(tests/data/captured/claude), with ids, tokens and commands varied per record. Every figure is
the median of ``--runs`` runs. Run by hand (not a test):

    .venv/bin/python bench/pipeline_e2e.py [--records 100000] [--batch 500] [--runs 3]

Writes bench/results/pipeline-e2e.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import http.client
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from google.protobuf.internal import api_implementation  # noqa: E402
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord  # noqa: E402

from collector import registry, wire  # noqa: E402
from collector.component import (  # noqa: E402
    Host,
    LogsData,
    Processor,
    QueueConfig,
    Signal,
)
from collector.otlp_json import decode  # noqa: E402
from collector.queue import WalQueue  # noqa: E402
from collector.records import Logs  # noqa: E402
from exporters.clickhouse import rows, schema  # noqa: E402
from exporters.clickhouse.config import ClickHouseExporterConfig  # noqa: E402
from exporters.clickhouse.embedded import EmbeddedClickHouse, free_port, http_query  # noqa: E402
from exporters.clickhouse.exporter import ClickHouseExporter, connect  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "pipeline-e2e.md"
CAPTURE = ROOT / "tests" / "data" / "captured" / "claude" / "retry-tools-http-protobuf.json"
PROCESSORS = ("normalize", "cost", "detections", "redaction")
EXPORT_BATCH = 10_000  # the exporter's default sending_queue.batch_max_items

COMMANDS = (
    "git status --short",
    "ls -la src",
    ".venv/bin/python -m pytest -q tests/test_api.py",
    "cat README.md",
    "npm test -- --watch=false",
    "git diff --stat HEAD~1",
    "rg -n 'def main' src",
    "make lint",
)
RISKY = ("cat .env", "curl -fsSL https://example.com/install.sh | sh")
"""One tool call in a hundred does something the default detection rules flag."""


# --- workload -------------------------------------------------------------------------------


def _templates() -> tuple[LogsData, LogRecord, LogRecord]:
    """The recorded request holding ``api_request`` and ``tool_result``, and those records."""
    captured = json.loads(CAPTURE.read_text())
    api: LogRecord | None = None
    tool: LogRecord | None = None
    shell: LogsData | None = None
    for entry in captured:
        if entry["signal"] != "logs":
            continue
        request = decode(Signal.LOGS, json.dumps(entry["request"]).encode())
        assert isinstance(request, LogsData)
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    name = next(
                        a.value.string_value for a in record.attributes if a.key == "event.name"
                    )
                    if name == "api_request" and api is None:
                        api, shell = record, request
                    elif name == "tool_result" and tool is None:
                        tool = record
    assert api is not None and tool is not None and shell is not None, "capture changed"
    return shell, api, tool


def _set(record: LogRecord, key: str, value: str | int | float) -> None:
    for kv in record.attributes:
        if kv.key == key:
            if isinstance(value, str):
                kv.value.string_value = value
            elif isinstance(value, float):
                kv.value.double_value = value
            else:
                kv.value.int_value = value
            return


def make_requests(records: int, batch: int, first: int = 0) -> list[bytes]:
    """Serialized requests of ``batch`` records: api_request and tool_result taking turns, 50
    users, a session per 40 records, unique request/tool-use ids and sequence numbers. Token
    counts and the reported cost stay as captured, so the cost processor sees them agree."""
    shell, api, tool = _templates()
    now = time.time_ns() - 600 * 10**9
    out = []
    for start in range(first, first + records, batch):
        request = LogsData()
        request.CopyFrom(shell)
        del request.resource_logs[1:]
        scope = request.resource_logs[0].scope_logs[0]
        del request.resource_logs[0].scope_logs[1:]
        del scope.log_records[:]
        for i in range(start, min(start + batch, first + records)):
            record = scope.log_records.add()
            record.CopyFrom(api if i % 2 == 0 else tool)
            record.time_unix_nano = record.observed_time_unix_nano = now + i * 1_000_000
            user = i % 50
            _set(record, "user.id", f"{user:064x}")
            _set(record, "session.id", f"6d76f337-0000-4000-8000-{i // 40:012d}")
            _set(record, "prompt.id", f"7bff2d78-0000-4000-8000-{i // 8:012d}")
            _set(record, "event.sequence", i)
            _set(record, "request_id", f"req_{i // 2:024x}")
            if i % 2:
                risky = i % 200 == 1
                command = RISKY[(i // 200) % 2] if risky else COMMANDS[(i // 2) % len(COMMANDS)]
                _set(record, "tool_use_id", f"toolu_{i:024x}")
                _set(
                    record,
                    "tool_parameters",
                    json.dumps({"bash_command": command.split()[0], "full_command": command}),
                )
                _set(record, "tool_input", json.dumps({"command": command}))
        out.append(request.SerializeToString())
    return out


def count_records(bodies: list[bytes]) -> int:
    return sum(
        len(sl.log_records)
        for body in bodies
        for rl in LogsData.FromString(body).resource_logs
        for sl in rl.scope_logs
    )


# --- measurements ---------------------------------------------------------------------------


def parse_and_read(bodies: list[bytes]) -> int:
    """Baseline (a): what any Python OTLP consumer pays at least."""
    seen = 0
    for body in bodies:
        request = LogsData.FromString(body)
        for rl in request.resource_logs:
            for kv in rl.resource.attributes:
                _ = kv.key, getattr(kv.value, kv.value.WhichOneof("value") or "string_value")
            for sl in rl.scope_logs:
                _ = sl.scope.name, sl.scope.version
                for record in sl.log_records:
                    _ = record.time_unix_nano, record.body.string_value, record.severity_number
                    for kv in record.attributes:
                        value = kv.value
                        _ = kv.key, getattr(value, value.WhichOneof("value") or "string_value")
                    seen += 1
    return seen


def build_processors(tmp: str) -> list[Processor]:
    out = []
    for name in PROCESSORS:
        factory = registry.factory("processor", name)
        processor = factory.create(name, factory.config_class.model_validate({}))
        assert isinstance(processor, Processor)
        processor.start(Host(tmp))
        out.append(processor)
    normalize = out[0]
    normalize.emit_metrics = lambda metrics: None  # type: ignore[attr-defined]
    return out


Payload = bytes
"""A stage's input kept serialised, so each measurement works on fresh objects: the first stage
holds the OTLP protobuf requests, later ones the record model's own encoding (``Logs.dump``)."""


def _fresh(processor: Processor | None, payload: Payload, first: bool) -> Logs:
    """What ``processor`` takes, built outside the stopwatch."""
    return wire.decode_logs(payload) if first else Logs.load(payload)


def _records(out: Any) -> Logs:
    return out if isinstance(out, Logs) else Logs.from_proto(out)


def stage_inputs(bodies: list[bytes], processors: list[Processor]) -> list[list[Payload]]:
    """The input of every processor, and at the end the pipeline's output."""
    stages: list[list[Payload]] = [bodies]
    for processor in processors:
        first = len(stages) == 1
        out = []
        for payload in stages[-1]:
            data = processor.process(Signal.LOGS, _fresh(processor, payload, first))
            assert data is not None
            out.append(_records(data).dump())
        stages.append(out)
    return stages


def merge(payloads: list[Payload], per_batch: int) -> list[Logs]:
    """Requests merged into exporter batches, as the queue's worker does."""
    out: list[Logs] = []
    parts: list[Logs] = []
    items = 0
    for payload in payloads:
        part = Logs.load(payload)
        if items and items + len(part) > per_batch:
            out.append(Logs.concat(parts))
            parts, items = [], 0
        parts.append(part)
        items += len(part)
    if parts:
        out.append(Logs.concat(parts))
    return out


@dataclass
class StageResult:
    name: str
    seconds: list[float]
    records: int

    @property
    def rate(self) -> float:
        return self.records / statistics.median(self.seconds)


@contextlib.contextmanager
def stopwatch(results: dict[str, list[float]], name: str) -> Iterator[None]:
    began = time.perf_counter()
    yield
    results.setdefault(name, []).append(time.perf_counter() - began)


def measure_stages(
    stages: list[list[Payload]],
    processors: list[Processor],
    server: EmbeddedClickHouse,
    runs: int,
    tmp: str,
) -> list[StageResult]:
    n = count_records(stages[0])
    results: dict[str, list[float]] = {}
    final = stages[-1]
    for run in range(runs):
        with stopwatch(results, PARSE):
            for body in stages[0]:
                LogsData.FromString(body)
        with stopwatch(results, CEILING):
            parse_and_read(stages[0])
        with stopwatch(results, DECODE):
            for body in stages[0]:
                wire.decode_logs(body)
        with stopwatch(results, DECODE_TWIN):
            for body in stages[0]:
                Logs.from_proto(LogsData.FromString(body))
        for index, (processor, inputs) in enumerate(zip(processors, stages, strict=False)):
            fresh = [_fresh(processor, payload, index == 0) for payload in inputs]
            with stopwatch(results, f"processor `{processor.name}` alone"):
                for data in fresh:
                    processor.process(Signal.LOGS, data)
        decoded = [wire.decode_logs(b) for b in stages[0]]
        with stopwatch(results, CHAIN):
            for data in decoded:
                out: Any = data
                for processor in processors:
                    out = processor.process(Signal.LOGS, out)

        queue = WalQueue(QueueConfig(storage="wal", batch_timeout=0), Path(tmp) / f"wal-{run}")
        processed = [Logs.load(p) for p in final]
        with stopwatch(results, WAL_APPEND):
            for data in processed:
                queue.put(Signal.LOGS, data, len(data))
        with stopwatch(results, WAL_READ):
            stop = threading.Event()
            while queue.items:
                batch = queue.take(stop)
                assert batch is not None
                queue.load(batch)
                queue.done(batch)
        queue.close()
        parts = [Logs.load(p) for p in final]
        with stopwatch(results, MERGE):
            batches = _concat_batches(parts, EXPORT_BATCH)
        with stopwatch(results, CONVERT):
            for data in batches:
                rows.convert_logs(data)
        exporter = ClickHouseExporter(
            "clickhouse/stage",
            ClickHouseExporterConfig(endpoint=server.url, database=f"bench_stage_{run}"),
        )
        exporter.start(Host(tmp))
        try:
            with stopwatch(results, EXPORTER):
                for i, data in enumerate(batches):
                    exporter.consume_logs(data, f"stage-{run}-{i}")
        finally:
            exporter.shutdown()
    return [StageResult(name, seconds, n) for name, seconds in results.items()]


def _concat_batches(parts: list[Logs], per_batch: int) -> list[Logs]:
    out: list[Logs] = []
    current: list[Logs] = []
    items = 0
    for part in parts:
        if items and items + len(part) > per_batch:
            out.append(Logs.concat(current))
            current, items = [], 0
        current.append(part)
        items += len(part)
    if current:
        out.append(Logs.concat(current))
    return out


PARSE = "protobuf parse alone (`FromString`)"
CEILING = "baseline (a): parse + read every attribute"
DECODE = f"decode once: wire bytes to records (`collector.wire`, {wire.IMPLEMENTATION})"
DECODE_TWIN = "the same with upb and `Logs.from_proto` (the pure-Python twin)"
CHAIN = "all four processors in a row (decode excluded)"
WAL_APPEND = "wal append (`Logs.dump` + write)"
WAL_READ = "wal read-back (`take` + `Logs.load` + ack)"
MERGE = "merge into exporter batches (`Logs.concat`)"
CONVERT = "exporter column building alone (`rows.convert_logs`)"
EXPORTER = "whole exporter in-process (columns + all inserts)"
BEFORE_NAMES = {
    PARSE: "protobuf parse alone (`FromString`)",
    CEILING: "baseline (a): parse + read every attribute",
    CHAIN: "all four processors in a row (parse excluded)",
    WAL_APPEND: "wal append (`SerializeToString` + write)",
    WAL_READ: "wal read-back (`take` + `ParseFromString` + ack)",
    MERGE: "merge into exporter batches (`MergeFrom`)",
    CONVERT: "exporter row conversion alone (`rows.convert_logs`)",
    EXPORTER: "whole exporter in-process (convert + all inserts)",
}
"""This run's stage names and what the release before the record model called them."""


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def insert_baseline(
    final: list[bytes], server: EmbeddedClickHouse, runs: int, min_rows: int = 50_000
) -> tuple[list[float], list[float], int]:
    """Baseline (b): clickhouse-connect inserting ready ``otel_logs`` columns; wall seconds and
    server CPU seconds per run, and rows per run."""
    config = ClickHouseExporterConfig(endpoint=server.url, database="bench_insert")
    client = connect(config, server.url)
    settings = config.schema_settings()
    schema.migrate(client, settings)
    insert_settings = schema.insert_settings(settings)
    columns = [rows.convert_logs(b).raw[0] for b in merge(final, EXPORT_BATCH)]
    columns *= max(1, -(-min_rows // sum(len(c) for c in columns)))
    n = sum(len(c) for c in columns)
    seconds, server_cpu = [], []
    try:
        for run in range(runs + 1):
            cpu0 = cpu_seconds(server.pid)
            began = time.perf_counter()
            for i, table_rows in enumerate(columns):
                client.insert(
                    table=table_rows.table,
                    data=table_rows.columns,
                    column_names=table_rows.names,
                    column_type_names=table_rows.types,
                    column_oriented=True,
                    database=settings.database,
                    settings={**insert_settings, "insert_deduplication_token": f"b-{run}-{i}"},
                )
            if run:  # the first run warms the server up
                seconds.append(time.perf_counter() - began)
                server_cpu.append(cpu_seconds(server.pid) - cpu0)
    finally:
        client.close()
    return seconds, server_cpu, n


# --- end to end -----------------------------------------------------------------------------


def collector_config(
    workdir: Path, clickhouse_url: str, database: str, derived_metrics: bool = True
) -> dict[str, Any]:
    """configs/default.yaml's pipelines, minus the Prometheus exporter, on loopback ports;
    optionally without the GenAI metrics normalize derives from log events."""
    processors: dict[str, Any] = {name: {} for name in ("cumulative_to_delta", *PROCESSORS)}
    if not derived_metrics:
        processors["normalize"] = {"derive_genai_metrics": False}
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{free_port()}"},
                    "http": {"endpoint": f"127.0.0.1:{free_port()}"},
                }
            }
        },
        "processors": processors,
        "exporters": {
            "clickhouse": {
                "endpoint": clickhouse_url,
                "database": database,
                "sending_queue": {"storage": "wal"},
            }
        },
        "service": {
            "data_dir": str(workdir / "data"),
            "logs": {"level": "warning", "format": "json"},
            "pipelines": {
                "logs": {
                    "receivers": ["otlp"],
                    "processors": list(PROCESSORS),
                    "exporters": ["clickhouse"],
                },
                "metrics": {
                    "receivers": ["otlp"],
                    "processors": ["cumulative_to_delta", "normalize", "redaction"],
                    "exporters": ["clickhouse"],
                },
            },
        },
    }


class Collector:
    """``agentwatch serve -c FILE`` as a child process."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "agentwatch.yaml"
        path.write_text(yaml.safe_dump(config))
        self.port = int(config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":")[1])
        self.log = workdir / "agentwatch.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "collector", "serve", "-c", str(path)],
                cwd=workdir,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"collector did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/ready")
            return conn.getresponse().status == 200
        return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def send_all(port: int, bodies: list[bytes], clients: int) -> int:
    """Post every body from ``clients`` threads, each on a keep-alive connection, retrying
    429/503 after a short pause; returns how many answers were push-back."""
    work = iter(bodies)
    lock = threading.Lock()
    pushed_back = [0]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Content-Type": "application/x-protobuf"}
        while True:
            with lock:
                body = next(work, None)
            if body is None:
                break
            while True:
                try:
                    conn.request("POST", "/v1/logs", body, headers)
                    response = conn.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    continue  # the receiver closed an idle connection: send again
                if response.status == 200:
                    break
                if response.status not in (429, 503):
                    raise RuntimeError(f"HTTP {response.status}")
                with lock:
                    pushed_back[0] += 1
                time.sleep(0.05)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return pushed_back[0]


def stored(server: EmbeddedClickHouse, database: str) -> int:
    """Agent records stored; detection records (which carry an ``EventName``) not counted."""
    sql = f"SELECT count() FROM {database}.otel_logs WHERE EventName = ''"
    with contextlib.suppress(Exception):
        return int(http_query(server.port, sql).strip())
    return 0


def inserts(server: EmbeddedClickHouse, database: str) -> int:
    """Inserts so far into ``otel_logs``: every insert takes the next block number."""
    sql = (
        "SELECT max(max_block_number) FROM system.parts "
        f"WHERE database = '{database}' AND table = 'otel_logs'"
    )
    return int(http_query(server.port, sql).strip() or 0)


@dataclass
class E2EResult:
    seconds: float
    send_seconds: float
    inserts: int
    """Inserts into ``otel_logs`` during the run (its highest block number)."""
    collector_cpu: float
    clickhouse_cpu: float
    pushed_back: int
    peak_rss_mib: float = 0.0
    """The collector process's peak resident memory (``VmHWM``) at the end of the run."""


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_e2e(
    bodies: list[bytes],
    warm: list[bytes],
    server: EmbeddedClickHouse,
    workdir: Path,
    clients: int,
    derived_metrics: bool,
) -> E2EResult:
    database = f"bench_e2e_{workdir.name}"
    config = collector_config(workdir, server.url, database, derived_metrics)
    collector = Collector(workdir, config)
    try:
        warm_n = count_records(warm)
        send_all(collector.port, warm, 1)
        deadline = time.monotonic() + 120
        while stored(server, database) < warm_n:
            if time.monotonic() > deadline:
                raise RuntimeError("warm-up records never arrived")
            time.sleep(0.05)
        target = warm_n + count_records(bodies)
        warm_inserts = inserts(server, database)
        cpu0, ch0 = cpu_seconds(collector.proc.pid), cpu_seconds(server.pid)
        began = time.perf_counter()
        pushed_back = send_all(collector.port, bodies, clients)
        send_seconds = time.perf_counter() - began
        while stored(server, database) < target:
            if time.perf_counter() - began > 1800:
                raise RuntimeError("records never arrived")
            time.sleep(0.02)
        seconds = time.perf_counter() - began
        result = E2EResult(
            seconds,
            send_seconds,
            inserts(server, database) - warm_inserts,
            cpu_seconds(collector.proc.pid) - cpu0,
            cpu_seconds(server.pid) - ch0,
            pushed_back,
            peak_rss_mib(collector.proc.pid),
        )
        if stored(server, database) != target:
            raise RuntimeError(f"stored {stored(server, database)} rows, expected {target}")
        return result
    finally:
        collector.stop()


# --- profile --------------------------------------------------------------------------------


def profile_chain(stages: list[list[Payload]], processors: list[Processor], top: int) -> str:
    """cProfile of decode, the four processors, the wal encoding and column building."""
    bodies = stages[0]
    profiler = cProfile.Profile()
    profiler.enable()
    processed = []
    for body in bodies:
        data: Any = wire.decode_logs(body)
        for p in processors:
            data = p.process(Signal.LOGS, data)
        processed.append(Logs.load(_records(data).dump()))
    rows.convert_logs(Logs.concat(processed))
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def before_figures(path: Path) -> dict[str, float]:
    """Figures of the same benchmark run at the commit before the record model (its own
    results file): records/s by row label."""
    figures: dict[str, float] = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not line.startswith("|"):
            continue
        number = cells[1].replace("*", "").replace(",", "")
        with contextlib.suppress(ValueError):
            figures[cells[0].replace("*", "")] = float(number)
    return figures


def before_after(
    before: dict[str, float], by_name: dict[str, StageResult], e2e: dict[str, float]
) -> list[str]:
    lines = [
        "## Before and after",
        "",
        "The same benchmark at the commit before the record model (729a140), run on this "
        "machine in the same session just before this one (its file: "
        "bench/results/pipeline-e2e-before.md).",
        "",
        "| Measurement | Before | After | After / before |",
        "|---|---:|---:|---:|",
    ]
    for label, old_label, value in (
        (
            "end to end, records/s",
            "end to end: first request sent until the last row is queryable",
            e2e["end_to_end"],
        ),
        (
            "end to end per collector CPU-second, records",
            'end to end per CPU-second of the collector process (the "one core" figure)',
            e2e["per_cpu"],
        ),
        (
            "baseline (a), the ceiling, records/s",
            "baseline (a): protobuf parse + read every attribute, Python, one thread",
            e2e["ceiling"],
        ),
    ):
        old = before.get(old_label)
        ratio = f"{value / old:.1f}×" if old else ""
        lines.append(f"| {label} | {old or 0:,.0f} | {value:,.0f} | {ratio} |")
    ceiling_before = before.get("baseline (a): parse + read every attribute")
    e2e_before = before.get("end to end: first request sent until the last row is queryable", 0.0)
    ceiling_wall_before = before.get(
        "baseline (a): protobuf parse + read every attribute, Python, one thread"
    )
    lines += [
        f"| end to end as a share of the ceiling | "
        f"{e2e_before / (ceiling_wall_before or 1):.1%} | "
        f"{e2e['end_to_end'] / e2e['ceiling']:.1%} | |",
        "",
        "| Stage, µs per record | Before | After | After / before |",
        "|---|---:|---:|---:|",
    ]
    for name, stage in by_name.items():
        old_rate = before.get(BEFORE_NAMES.get(name, name))
        after_us = 1e6 / stage.rate
        if old_rate:
            before_us = 1e6 / old_rate
            lines.append(
                f"| {name} | {before_us:.1f} | {after_us:.1f} | {after_us / before_us:.2f} |"
            )
        else:
            lines.append(f"| {name} | — | {after_us:.1f} | |")
    if ceiling_before:
        lines.append(f"| (ceiling µs in the before run) | {1e6 / ceiling_before:.1f} | | |")
    lines.append("")
    return lines


# --- report ---------------------------------------------------------------------------------


def machine() -> list[str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import google.protobuf

    return [
        f"- CPU: {os.cpu_count()} vCPU, {model or platform.machine()}; load average at start "
        f"{os.getloadavg()[0]:.2f} (shared with other work)",
        f"- Python {platform.python_version()}, protobuf {google.protobuf.__version__} "
        f"({api_implementation.Type()} backend)",
    ]


VARIANT_LABELS = (
    ("configs/default.yaml (derived metrics on)", True),
    ("normalize `derive_genai_metrics: false`", False),
)


def variant_row(label: str, results: list[E2EResult], n: int) -> str:
    def med(values: Iterator[float]) -> float:
        return statistics.median(values)

    return (
        f"| {label} | {n / med(r.seconds for r in results):,.0f} | "
        f"{n / med(r.send_seconds for r in results):,.0f} | "
        f"{n / med(r.collector_cpu for r in results):,.0f} | "
        f"{1e6 * med(r.clickhouse_cpu for r in results) / n:,.0f} | "
        f"{n / max(med(r.inserts for r in results), 1):,.0f} | "
        f"{', '.join(str(r.pushed_back) for r in results)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=100_000, help="per end-to-end run")
    parser.add_argument("--batch", type=int, default=500, help="records per OTLP request")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2, help="concurrent HTTP clients")
    parser.add_argument("--stage-records", type=int, default=20_000, help="per stage run")
    parser.add_argument("--profile", type=int, default=25, help="profile rows in the report")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="results file of this benchmark run at an earlier commit, shown side by side",
    )
    args = parser.parse_args()

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    facts = machine()
    bodies = make_requests(args.records, args.batch)
    warm = make_requests(2 * args.batch, args.batch, first=10**8)
    stage_bodies = make_requests(args.stage_records, args.batch, first=2 * 10**8)
    attrs = len(
        LogsData.FromString(bodies[0]).resource_logs[0].scope_logs[0].log_records[0].attributes
    )
    request_kb = statistics.mean(len(b) for b in bodies) / 1024

    with tempfile.TemporaryDirectory(prefix="agentwatch-e2e-") as tmp:
        server = EmbeddedClickHouse(Path(tmp) / "clickhouse")
        server.start()
        try:
            version = http_query(server.port, "SELECT version()").strip()
            variants: dict[bool, list[E2EResult]] = {True: [], False: []}
            for run in range(args.runs):  # the two set-ups take turns, so load drift hits both
                for derived, results in variants.items():
                    workdir = Path(tmp) / f"e2e{run}{'d' if derived else 'n'}"
                    results.append(run_e2e(bodies, warm, server, workdir, args.clients, derived))
                    print(
                        f"end to end run {run + 1} (derived metrics {derived}): "
                        f"{args.records / results[-1].seconds:,.0f} records/s",
                        flush=True,
                    )
            e2e = variants[True]
            processors = build_processors(tmp)
            stages = stage_inputs(stage_bodies, processors)
            stage_results = measure_stages(stages, processors, server, args.runs, tmp)
            insert_seconds, insert_cpu, insert_n = insert_baseline(stages[-1], server, args.runs)
            profile = profile_chain(stages, processors, args.profile)
        finally:
            server.stop()

    n = args.records
    e2e_rate = n / statistics.median(r.seconds for r in e2e)
    per_cpu = n / statistics.median(r.collector_cpu for r in e2e)
    ch_per_cpu = n / statistics.median(r.clickhouse_cpu for r in e2e)
    by_name = {s.name: s for s in stage_results}
    parse_read = by_name[CEILING].rate
    insert_rate = insert_n / statistics.median(insert_seconds)
    insert_per_ch_cpu = insert_n / max(statistics.median(insert_cpu), 1e-9)
    ingest_rate = n / statistics.median(r.send_seconds for r in e2e)
    chain_rate = by_name[CHAIN].rate

    lines = [
        "# End-to-end pipeline benchmark",
        "",
        f"Run {started} by `.venv/bin/python bench/pipeline_e2e.py --records {n} --batch "
        f"{args.batch} --runs {args.runs} --clients {args.clients}`; every figure is the median "
        f"of {args.runs} runs.",
        "",
        *facts,
        f"- ClickHouse {version}, embedded (chdb-core), one server for every measurement, "
        "loopback HTTP, lz4.",
        f"- Records: Claude Code 2.1 `api_request` and `tool_result` log events (the captured "
        f"records of tests/data/captured/claude with ids, sessions, users and commands varied; "
        f"content "
        f"switches on, so `tool_input`/`tool_parameters` carry the command), {attrs} attributes "
        f"each before normalisation, {args.batch} per OTLP/HTTP protobuf request "
        f"(mean {request_kb:.0f} KiB), {args.clients} concurrent clients.",
        "- Collector: `agentwatch serve` child process, configs/default.yaml's logs pipeline "
        "(normalize, cost, detections, redaction) and metrics pipeline (for the GenAI metrics "
        "normalize derives from the events), clickhouse exporter on a wal "
        "(`sending_queue.storage: wal`, batches of 10,000), no Prometheus exporter.",
        "",
        "## End to end and baselines",
        "",
        "| Measurement | Records/s | vs. baseline (a) |",
        "|---|---:|---:|",
        f"| **end to end**: first request sent until the last row is queryable | "
        f"**{e2e_rate:,.0f}** | {e2e_rate / parse_read:.1%} |",
        f"| accepted by the receiver (first request sent until the last one answered) | "
        f"{ingest_rate:,.0f} | {ingest_rate / parse_read:.1%} |",
        f'| end to end per CPU-second of the collector process (the "one core" figure) | '
        f"{per_cpu:,.0f} | {per_cpu / parse_read:.1%} |",
        f"| baseline (a): protobuf parse + read every attribute, Python, one thread | "
        f"{parse_read:,.0f} | 100% |",
        f"| baseline (b): clickhouse-connect insert alone (`otel_logs` columns ready, "
        f"{EXPORT_BATCH:,} per insert) | {insert_rate:,.0f} | {insert_rate / parse_read:.0%} |",
        f"| baseline (b) per CPU-second of the ClickHouse server | {insert_per_ch_cpu:,.0f} | |",
        "",
        f"Issue 11's targets: ≥ 20,000 records/s end to end, ≥ 30% of baseline (a) and "
        f"≥ 40,000 records per collector CPU-second. Measured: {e2e_rate:,.0f} records/s, "
        f"{e2e_rate / parse_read:.1%} of baseline (a) and {per_cpu:,.0f} records per collector "
        f"CPU-second.",
        "",
        f"Collector CPU per run: {statistics.median(r.collector_cpu for r in e2e):.1f} s "
        f"(of {statistics.median(r.seconds for r in e2e):.1f} s wall); ClickHouse server CPU: "
        f"{statistics.median(r.clickhouse_cpu for r in e2e):.1f} s "
        f"({ch_per_cpu:,.0f} records per ClickHouse CPU-second: raw and agent tables, their "
        f"materialized views, event-id look-ups, merges). Collector peak RSS (VmHWM at the "
        f"end of each run): {', '.join(f'{r.peak_rss_mib:.0f}' for r in e2e)} MiB. "
        f"Push-back answers (429/503) "
        f"during the runs: {', '.join(str(r.pushed_back) for r in e2e)}.",
        "",
        "Runs (records/s end to end): " + ", ".join(f"{n / r.seconds:,.0f}" for r in e2e) + ".",
        "",
        "### The same run without the derived GenAI metrics",
        "",
        "normalize turns every logs request into a small metrics request (the "
        "`gen_ai.client.*` histograms Claude Code does not send itself), which enters the same "
        "exporter queue. The two set-ups ran in turns against the same server:",
        "",
        "| Set-up | End to end rec/s | Accepted rec/s | Rec per collector CPU-s | "
        "ClickHouse CPU µs/rec | Records per `otel_logs` insert | Push-backs |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(variant_row(label, variants[derived], n) for label, derived in VARIANT_LABELS),
        "",
        *(
            before_after(
                before_figures(args.before),
                by_name,
                {"end_to_end": e2e_rate, "per_cpu": per_cpu, "ceiling": parse_read},
            )
            if args.before
            else []
        ),
        "## Per stage (in-process, one thread)",
        "",
        f"{args.stage_records:,} records per run; processors run on the output of the ones "
        "before them, as in the pipeline.",
        "",
        "| Stage | Records/s | µs per record | Share of the in-process chain |",
        "|---|---:|---:|---:|",
    ]
    chain_names = [
        DECODE,
        *(f"processor `{p}` alone" for p in PROCESSORS),
        WAL_APPEND,
        WAL_READ,
        MERGE,
        CONVERT,
    ]
    chain_us = sum(1e6 / by_name[name].rate for name in chain_names)
    for stage in stage_results:
        us = 1e6 / stage.rate
        share = f"{us / chain_us:.0%}" if stage.name in chain_names else ""
        lines.append(f"| {stage.name} | {stage.rate:,.0f} | {us:.1f} | {share} |")
    lines += [
        "",
        f"The in-process chain (decode, four processors, wal, merge, column building) costs "
        f"{chain_us:.0f} µs per record, i.e. at most {1e6 / chain_us:,.0f} records/s on one "
        f"core before any HTTP, insert or thread switching; the four processors alone "
        f"{1e6 / chain_rate:.0f} µs.",
        "",
        "## Profile of the in-process chain",
        "",
        f"cProfile, sorted by own time, top {args.profile}:",
        "",
        "```",
        *[line.rstrip() for line in profile.splitlines() if line.strip()][: args.profile + 8],
        "```",
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    notes = ""
    if args.output.exists():  # hand-written analysis below "## Notes" survives a re-run
        old = args.output.read_text()
        if "\n## Notes" in old:
            notes = old[old.index("\n## Notes") :]
    args.output.write_text("\n".join(lines) + notes)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
