"""Benchmark: the console's queries and the sessions page on a large store.

Fills the embedded ClickHouse with 1,000,000 synthetic API calls across 5,000 sessions and
500 users over 30 days (plus 500,000 tool calls, 25,000 prompts, 2,000 detections), then times
every query each console page runs (the same ``Store`` methods the pages call) and the
sessions page rendered over HTTP by the running console extension.

The rows are generated inside ClickHouse (``INSERT ... SELECT FROM numbers()``) into the agent
tables, so the materialized views fill ``sessions`` and ``usage_hourly`` exactly as the
exporter's inserts do; ingest speed is bench/clickhouse_insert.py's subject, not this one's.

    .venv/bin/python bench/console.py [--calls 1000000] [--sessions 5000] [--users 500] [--runs 20]

Writes bench/results/console.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import clickhouse_connect

from collector.component import Host
from exporters.clickhouse.config import ClickHouseExporterConfig
from exporters.clickhouse.embedded import EmbeddedClickHouse
from exporters.clickhouse.exporter import ClickHouseExporter
from extensions.console.component import ConsoleExtension
from extensions.console.config import ConsoleConfig
from extensions.console.internal.params import parse_filters
from extensions.console.internal.queries import ClientPool, Store

RESULTS = Path(__file__).resolve().parent / "results" / "console.md"
AGENTS = "['claude_code', 'codex', 'gemini_cli', 'copilot_cli']"
MODELS = "['claude-sonnet-4-5', 'gpt-5-codex', 'gemini-2.5-pro', 'gpt-4.1']"


def fill(client: Any, calls: int, sessions: int, users: int) -> dict[str, float]:
    """Synthetic rows: session s belongs to user s % users, starts at an even spread over the
    last 30 days and lasts about an hour; agent and model follow s % 4."""
    common = (
        f"toUInt64(n % {sessions}) AS s, toUInt64(s % {users}) AS u, "
        f"{AGENTS}[s % 4 + 1] AS agent_name, "
        "now64(9) - toIntervalSecond(30 * 86400) "
        f"+ toIntervalSecond(intDiv(s * 30 * 86400, {sessions})) "
        f"+ toIntervalSecond(intDiv(n, {sessions}) % 3600) AS ts"
    )
    who = (
        "ts AS timestamp, hex(MD5(toString(n) || which)) AS event_id, agent_name AS agent, "
        "'1.0.0' AS agent_version, concat('sess-', toString(s)) AS session_id, "
        "concat('p-', toString(s), '-', toString(intDiv(n, 5000) % 5)) AS prompt_id, "
        "concat('u-', toString(u)) AS user_id, "
        "concat('user', toString(u), '@example.com') AS user_email, "
        "concat('team-', toString(u % 20)) AS team"
    )
    statements = {
        "api_calls": (
            f"INSERT INTO agent_api_calls (timestamp, event_id, agent, agent_version, session_id, "
            "prompt_id, user_id, user_email, team, request_id, provider, model, input_tokens, "
            "cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, cost_usd, "
            "cost_usd_computed, duration_ms, status, attempt) "
            f"SELECT {who.replace('which', chr(39) + 'a' + chr(39))}, concat('r-', toString(n)), "
            f"'anthropic', {MODELS}[s % 4 + 1], 100 + n % 900, 5000 + n % 20000, n % 700, "
            "50 + n % 400, n % 50, (100 + n % 900) * 3e-6 + (50 + n % 400) * 15e-6, "
            "(100 + n % 900) * 3e-6 + (50 + n % 400) * 15e-6, 500 + n % 4000, 'ok', 1 "
            f"FROM (SELECT number AS n, {common} FROM numbers({calls}))"
        ),
        "tool_calls": (
            "INSERT INTO agent_tool_calls (timestamp, event_id, agent, agent_version, session_id, "
            "prompt_id, user_id, user_email, team, tool_name, tool_call_id, mcp_server, decision, "
            "decision_source, success, duration_ms, command) "
            f"SELECT {who.replace('which', chr(39) + 't' + chr(39))}, "
            "['Bash', 'Read', 'Edit', 'Write', 'create_issue', 'query'][n % 6 + 1], "
            "concat('t-', toString(n)), ['', '', '', '', 'github', 'postgres'][n % 6 + 1], "
            "if(n % 50 = 0, 'reject', 'accept'), 'config', n % 20 != 0, 10 + n % 3000, "
            "if(n % 6 = 0, 'ls -la', '') "
            f"FROM (SELECT number AS n, {common} FROM numbers({calls // 2}))"
        ),
        "user_prompts": (
            "INSERT INTO agent_user_prompts (timestamp, event_id, agent, agent_version, "
            "session_id, prompt_id, user_id, user_email, team, prompt_length) "
            f"SELECT {who.replace('which', chr(39) + 'p' + chr(39))}, 20 + n % 500 "
            f"FROM (SELECT number AS n, {common} FROM numbers({sessions * 5}))"
        ),
        "detections": (
            "INSERT INTO agent_detections (timestamp, event_id, agent, agent_version, session_id, "
            "prompt_id, user_id, user_email, team, rule_id, severity, evidence, tool_name) "
            f"SELECT {who.replace('which', chr(39) + 'd' + chr(39))}, "
            "['download-and-execute', 'secret-in-prompt'][n % 2 + 1], "
            "['critical', 'high'][n % 2 + 1], 'curl … | sh', 'Bash' "
            f"FROM (SELECT number AS n, {common} FROM numbers(2000))"
        ),
    }
    seconds = {}
    for name, sql in statements.items():
        started = time.perf_counter()
        client.command(sql, settings={"max_insert_block_size": 100_000})
        seconds[name] = time.perf_counter() - started
    return seconds


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    fn()  # warm up: first-use caches (marks, dictionaries) are not the steady state
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=5_000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedClickHouse(Path(tmp) / "clickhouse")
        server.start()
        try:
            config = ClickHouseExporterConfig.model_validate({"endpoint": server.url})
            exporter = ClickHouseExporter("clickhouse", config)
            host = Host(tmp)
            exporter.start(host)
            host.exporters["clickhouse"] = exporter
            writer = clickhouse_connect.get_client(
                host="127.0.0.1",
                port=server.port,
                database=config.database,
                send_receive_timeout=1800,
                autogenerate_session_id=False,
            )
            fill_s = fill(writer, args.calls, args.sessions, args.users)
            counts = {
                view: writer.query(f"SELECT count() FROM {view}").result_rows[0][0]
                for view in ("api_calls", "tool_calls", "sessions", "detections")
            }
            users = writer.query("SELECT uniqExact(user_id) FROM sessions").result_rows[0][0]

            store = Store(ClientPool(exporter.view_reader))
            f = parse_filters({"from": ["now-30d"]}, now=datetime.now(UTC))
            one = store.sessions(f, limit=1)[0][0]["session_id"]
            pages: dict[str, list[tuple[str, Callable[[], Any]]]] = {
                "Overview": [
                    ("overview: totals, series, top lists", lambda: store.overview(f, "day")),
                    ("summary (API)", lambda: store.summary(f)),
                    ("costs by team, model (API)", lambda: store.costs(f, ["team", "model"])),
                ],
                "Sessions": [
                    ("sessions, newest 50", lambda: store.sessions(f)),
                    (
                        "sessions by cost, page 20",
                        lambda: store.sessions(f, sort="cost_usd", offset=950),
                    ),
                    ("sessions, search", lambda: store.sessions(f, search="user42@")),
                    (
                        "sessions, model filter",
                        lambda: store.sessions(
                            parse_filters({"from": ["now-30d"], "model": ["gpt-4.1"]})
                        ),
                    ),
                ],
                "Session": [("session + timeline (~300 events)", lambda: store.session(one))],
                "People": [
                    ("people (users + teams)", lambda: store.people(f)),
                    ("last seen (unused seats)", store.last_seen),
                ],
                "Tools": [("tools + MCP servers", lambda: store.tools(f))],
                "Security": [("detections + by rule", lambda: store.detections(f))],
                "Health": [
                    ("unpriced models", lambda: store.unpriced_models(f)),
                    (
                        "silent agents/users",
                        lambda: store.silent(__import__("datetime").timedelta(days=1)),
                    ),
                ],
            }
            results = []
            for page, queries in pages.items():
                for label, fn in queries:
                    ms = timed(fn, args.runs)
                    results.append((page, label, statistics.median(ms), p95(ms)))
                    print(
                        f"{page:<9} {label:<36} p50 {results[-1][2]:7.1f} ms  "
                        f"p95 {results[-1][3]:7.1f} ms",
                        flush=True,
                    )

            ext = ConsoleExtension("console", ConsoleConfig(endpoint="127.0.0.1:0"))
            ext.start(host)
            try:
                base = f"http://127.0.0.1:{ext.port}"
                paths = {
                    "Overview": "/",
                    "Sessions": "/sessions",
                    "Session": f"/sessions/{one}",
                    "People": "/people",
                    "Tools": "/tools",
                    "Security": "/security",
                    "Health": "/health",
                }

                def fetch(path: str) -> Callable[[], None]:
                    def get() -> None:
                        url = f"{base}{path}?from=now-30d"
                        with urllib.request.urlopen(url, timeout=60) as r:
                            assert r.status == 200 and b"Cannot show" not in r.read()

                    return get

                rendered = {name: timed(fetch(path), args.runs) for name, path in paths.items()}
                render = rendered["Sessions"]
            finally:
                ext.shutdown()
            exporter.shutdown()
        finally:
            server.stop()

    load_after = os.getloadavg()[0]
    lines = [
        "# Console benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `bench/console.py --calls {args.calls} "
        f"--sessions {args.sessions} --users {args.users} --runs {args.runs}`.",
        "",
        f"- Machine: {platform.machine()}, Python {platform.python_version()}, embedded ClickHouse "
        "(chdb-core), loopback HTTP; 2 cores shared with other work: load average "
        f"{load_before:.1f} at the start, {load_after:.1f} at the end.",
        f"- Store: {counts['api_calls']:,} API calls, {counts['tool_calls']:,} tool calls, "
        f"{counts['sessions']:,} sessions, {users:,} users, {counts['detections']:,} detections "
        "over 30 days, generated in ClickHouse ("
        + ", ".join(f"{k} {v:.1f} s" for k, v in fill_s.items())
        + ").",
        "- Range: the last 30 days (all of it), no filter unless named. Each query ran once to "
        f"warm up, then {args.runs} times; milliseconds.",
        "",
        "| Page | Query | p50 ms | p95 ms | < 300 ms |",
        "|---|---|---:|---:|:-:|",
    ]
    lines += [
        f"| {p} | {q} | {a:.1f} | {b:.1f} | {'yes' if b < 300 else '**no**'} |"
        for p, q, a, b in results
    ]
    lines += [
        "",
        "Whole pages, `GET <page>?from=now-30d` from the running console over HTTP (queries, "
        "rendering, transfer; a page's independent queries run at once):",
        "",
        "| Page | p50 ms | p95 ms |",
        "|---|---:|---:|",
        *(
            f"| {name} | {statistics.median(ms):.0f} | {p95(ms):.0f} |"
            for name, ms in rendered.items()
        ),
        "",
        f"Sessions page (50 rows): p95 {p95(render):.0f} ms, "
        f"{'under' if p95(render) < 1000 else '**over**'} the 1 s target.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
