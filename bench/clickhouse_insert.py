"""Benchmark: inserting realistic agent log records into the embedded ClickHouse.

Measures, in one run against one embedded server (chdb-core 26.9):

* clickhouse-connect insert alone: ready-made ``otel_logs`` columns, rows/s (the issue's
  "clickhouse-connect insert alone" baseline), in its Native format (what the exporter uses)
  and, for comparison, the same columns as Arrow (``insert_arrow``, the pyarrow table built
  from the columns included);
* records to columns alone: ``rows.convert_logs`` on decoded requests (``Logs``), records/s;
* the whole exporter: ``ClickHouseExporter.consume_logs`` (convert, raw insert, event-id
  look-up, agent-table inserts and their materialized views), records/s;
* embedded server start time and resident memory.

Records imitate Claude Code's ``api_request`` and ``tool_result`` log events after
normalisation: the vendor's attributes plus the ``agentwatch.*`` keys.

    .venv/bin/python bench/clickhouse_insert.py [--records 200000] [--batch 10000]

Writes bench/results/clickhouse-insert.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from collector import agent_model as am
from collector.component import Host, LogsData
from collector.records import Logs
from exporters.clickhouse import rows, schema
from exporters.clickhouse.config import ClickHouseExporterConfig
from exporters.clickhouse.embedded import EmbeddedClickHouse, http_query
from exporters.clickhouse.exporter import ClickHouseExporter, connect

RESULTS = Path(__file__).resolve().parent / "results" / "clickhouse-insert.md"


def _kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _identity(i: int) -> list[KeyValue]:
    user = i % 50
    return [
        _kv("user.id", f"{user:064x}"),
        _kv("session.id", f"6f1c2e4a-0000-4000-8000-{i // 40:012d}"),
        _kv("organization.id", "1d0a1b2c-3d4e-5f60-7182-93a4b5c6d7e8"),
        _kv("user.email", f"dev{user}@example.com"),
        _kv("user.account_uuid", f"acc-{user:08d}"),
        _kv("terminal.type", "vscode"),
        _kv("app.version", "2.1.283"),
        _kv("prompt.id", f"prompt-{i // 8}"),
        _kv("event.timestamp", "2026-11-22T10:00:00.000Z"),
        _kv("event.sequence", i),
    ]


def _normalised(i: int, event: str, now: int) -> list[KeyValue]:
    user = i % 50
    return [
        _kv(am.EVENT, event),
        _kv(am.EVENT_ID, f"{i:032x}"),
        _kv(am.AGENT, "claude_code"),
        _kv(am.AGENT_VERSION, "2.1.283"),
        _kv(am.SESSION_ID, f"6f1c2e4a-0000-4000-8000-{i // 40:012d}"),
        _kv(am.PROMPT_ID, f"prompt-{i // 8}"),
        _kv(am.USER_ID, f"{user:064x}"),
        _kv(am.USER_EMAIL, f"dev{user}@example.com"),
        _kv(am.TEAM, ("platform", "payments", "infra")[user % 3]),
        _kv(am.ORGANIZATION, "1d0a1b2c-3d4e-5f60-7182-93a4b5c6d7e8"),
    ]


def _api_request(i: int, now: int) -> LogRecord:
    attrs = [
        _kv("event.name", "api_request"),
        *_identity(i),
        _kv("model", "claude-sonnet-4-5-20250929"),
        _kv("input_tokens", "1200"),
        _kv("output_tokens", str(57 + i % 300)),
        _kv("cache_read_tokens", "15000"),
        _kv("cache_creation_tokens", "3000"),
        _kv("cost_usd", 0.020205),
        _kv("duration_ms", "2315"),
        _kv("request_id", f"req_{i:024x}"),
        _kv("query_source", "main"),
        *_normalised(i, "api_call", now),
        _kv(am.PROVIDER, "anthropic"),
        _kv(am.MODEL, "claude-sonnet-4-5-20250929"),
        _kv(am.REQUEST_ID, f"req_{i:024x}"),
        _kv(am.INPUT_TOKENS, 1200),
        _kv(am.OUTPUT_TOKENS, 57 + i % 300),
        _kv(am.CACHE_READ_TOKENS, 15000),
        _kv(am.CACHE_WRITE_TOKENS, 3000),
        _kv(am.COST_USD, 0.020205),
        _kv(am.COST_USD_REPORTED, 0.020205),
        _kv(am.DURATION_MS, 2315.0),
        _kv(am.STATUS, "ok"),
    ]
    return LogRecord(
        time_unix_nano=now + i * 1000,
        observed_time_unix_nano=now + i * 1000,
        body=AnyValue(string_value="claude_code.api_request"),
        attributes=attrs,
    )


def _tool_result(i: int, now: int) -> LogRecord:
    parameters = json.dumps({"full_command": f"git diff --stat HEAD~{i % 5}"})
    attrs = [
        _kv("event.name", "tool_result"),
        *_identity(i),
        _kv("tool_name", "Bash"),
        _kv("success", "true"),
        _kv("duration_ms", "412"),
        _kv("tool_parameters", parameters),
        _kv("tool_result_size_bytes", "2048"),
        _kv("decision_type", "accept"),
        _kv("decision_source", "config"),
        *_normalised(i, "tool_call", now),
        _kv(am.TOOL_NAME, "Bash"),
        _kv(am.SUCCESS, True),
        _kv(am.DURATION_MS, 412.0),
        _kv(am.DECISION, "accept"),
        _kv(am.DECISION_SOURCE, "config"),
        _kv(am.TOOL_ARGUMENTS, parameters),
        _kv(am.TOOL_OUTPUT_SIZE, 2048),
    ]
    return LogRecord(
        time_unix_nano=now + i * 1000,
        observed_time_unix_nano=now + i * 1000,
        body=AnyValue(string_value="claude_code.tool_result"),
        attributes=attrs,
    )


def make_batches(records: int, batch: int, first: int = 0) -> list[Logs]:
    """Requests of ``batch`` records, alternating api_request and tool_result events, decoded
    into the record model as the exporter receives them."""
    now = time.time_ns() - 3600 * 10**9
    resource = Resource(
        attributes=[
            _kv("service.name", "claude-code"),
            _kv("service.version", "2.1.283"),
            _kv("team", "platform"),
            _kv("host.arch", "arm64"),
            _kv("os.type", "darwin"),
        ]
    )
    scope = InstrumentationScope(name="com.anthropic.claude_code.events", version="2.1.283")
    out = []
    for start in range(first, first + records, batch):
        logs = [
            (_api_request if i % 2 == 0 else _tool_result)(i, now)
            for i in range(start, min(start + batch, first + records))
        ]
        request = LogsData(
            resource_logs=[
                ResourceLogs(
                    resource=resource, scope_logs=[ScopeLogs(scope=scope, log_records=logs)]
                )
            ]
        )
        out.append(Logs.from_proto(request))
    return out


def _arrow_type(type_name: str) -> pa.DataType:
    """The Arrow type ClickHouse reads into a column of ``type_name`` (LowCardinality is the
    server's business; maps are String to String in these tables)."""
    name = re.sub(r"LowCardinality\((.*?)\)", r"\1", type_name)
    if name.startswith("Nullable("):
        return _arrow_type(name[9:-1])
    if name.startswith("Array("):
        return pa.list_(_arrow_type(name[6:-1]))
    if name.startswith("Map("):
        return pa.map_(pa.string(), pa.string())
    return {
        "String": pa.string(),
        "UInt8": pa.uint8(),
        "UInt32": pa.uint32(),
        "UInt64": pa.uint64(),
        "Float64": pa.float64(),
        "Bool": pa.bool_(),
        "DateTime64(9)": pa.timestamp("ns"),
    }[name]


def arrow_table(table_rows: rows.TableRows) -> pa.Table:
    arrays = []
    for type_name, column in zip(table_rows.types, table_rows.columns, strict=True):
        arrow_type = _arrow_type(type_name)
        if pa.types.is_map(arrow_type):
            column = [list(value.items()) for value in column]
        arrays.append(pa.array(column, type=arrow_type))
    return pa.Table.from_arrays(arrays, names=table_rows.names)


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    load = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="agentwatch-bench-") as tmp:
        server = EmbeddedClickHouse(Path(tmp) / "clickhouse")
        server.start()
        try:
            time.sleep(1.0)
            idle_rss = rss_mb(server.pid)
            version = http_query(server.port, "SELECT version()").strip()
            config = ClickHouseExporterConfig(endpoint=server.url, database="bench")
            client = connect(config, server.url)
            schema.migrate(client, config.schema_settings())
            settings = schema.insert_settings(config.schema_settings())

            batches = make_batches(args.records, args.batch)
            warm = make_batches(args.batch, args.batch, first=10**9)

            # 1. Records to columns alone.
            began, cpu = time.perf_counter(), time.process_time()
            converted = [rows.convert_logs(b) for b in batches]
            convert_s, convert_cpu = time.perf_counter() - began, time.process_time() - cpu

            # 2. clickhouse-connect insert alone (raw table, ready-made columns).
            def insert(table_rows: rows.TableRows, token: str) -> None:
                client.insert(
                    table=table_rows.table,
                    data=table_rows.columns,
                    column_names=table_rows.names,
                    column_type_names=table_rows.types,
                    column_oriented=True,
                    database="bench",
                    settings={**settings, "insert_deduplication_token": token},
                )

            insert(rows.convert_logs(warm[0]).raw[0], "warm")
            began, cpu = time.perf_counter(), time.process_time()
            for n, batch in enumerate(converted):
                insert(batch.raw[0], f"insert-only-{n}")
            insert_s, insert_cpu = time.perf_counter() - began, time.process_time() - cpu

            # 2b. The same columns as Arrow, into a table of its own database.
            cfg_arrow = ClickHouseExporterConfig(endpoint=server.url, database="bench_arrow")
            schema.migrate(client, cfg_arrow.schema_settings())
            began, cpu = time.perf_counter(), time.process_time()
            for n, batch in enumerate(converted):
                client.insert_arrow(
                    batch.raw[0].table,
                    arrow_table(batch.raw[0]),
                    database="bench_arrow",
                    settings={**settings, "insert_deduplication_token": f"arrow-{n}"},
                )
            arrow_s, arrow_cpu = time.perf_counter() - began, time.process_time() - cpu

            # 3. The whole exporter into a fresh database.
            exporter = ClickHouseExporter(
                "clickhouse/bench",
                ClickHouseExporterConfig(endpoint=server.url, database="bench_exporter"),
            )
            exporter.start(Host(tmp))
            exporter.consume_logs(warm[0], "warm")
            began, cpu = time.perf_counter(), time.process_time()
            for n, batch_data in enumerate(batches):
                exporter.consume_logs(batch_data, f"bench-{n}")
            exporter_s, exporter_cpu = time.perf_counter() - began, time.process_time() - cpu
            stored = client.query("SELECT count() FROM bench_exporter.otel_logs").result_rows[0][0]
            agent = client.query(
                "SELECT (SELECT count() FROM bench_exporter.agent_api_calls) + "
                "(SELECT count() FROM bench_exporter.agent_tool_calls)"
            ).result_rows[0][0]
            exporter.shutdown()
            loaded_rss = rss_mb(server.pid)
            client.close()
        finally:
            server.stop()

    n = args.records
    attrs = len(batches[0].records[0].attributes)
    lines = [
        "# ClickHouse insert benchmark",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/clickhouse_insert.py"
        f" --records {n} --batch {args.batch}`.",
        "",
        f"- Machine: {os.cpu_count()} vCPU ({platform.machine()}), Python "
        f"{platform.python_version()}, ClickHouse {version} embedded (chdb-core), loopback HTTP; "
        f"load average {load:.1f} at the start (shared machine: CPU µs/record are this "
        "process's own CPU time, steadier than wall time under load).",
        f"- Records: Claude Code `api_request`/`tool_result` log events after normalisation, "
        f"{attrs} attributes each (vendor keys + `agentwatch.*`), {args.batch} per request.",
        f"- Stored: {stored} rows in `otel_logs` and {agent} agent-table rows by the exporter run.",
        "",
        "| Measurement | Records/s | Seconds | Collector CPU µs/record |",
        "|---|---:|---:|---:|",
        f"| clickhouse-connect insert alone (`otel_logs` columns ready, Native) | "
        f"{n / insert_s:,.0f} | {insert_s:.2f} | {1e6 * insert_cpu / n:.1f} |",
        f"| the same columns as Arrow (`insert_arrow`, building the Arrow table included) | "
        f"{n / arrow_s:,.0f} | {arrow_s:.2f} | {1e6 * arrow_cpu / n:.1f} |",
        f"| records to columns alone (`rows.convert_logs`) | {n / convert_s:,.0f} | "
        f"{convert_s:.2f} | {1e6 * convert_cpu / n:.1f} |",
        f"| whole exporter (`consume_logs`: convert, raw insert, event-id check, agent tables, "
        f"views) | {n / exporter_s:,.0f} | {exporter_s:.2f} | {1e6 * exporter_cpu / n:.1f} |",
        "",
        f"Embedded server: started in {server.startup_seconds:.2f} s; resident memory "
        f"{idle_rss:.0f} MB idle, {loaded_rss:.0f} MB after the run.",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
