"""Terminal reports: ``agentwatch report cost|usage|adoption|tools``, ``agentwatch sessions``
and ``agentwatch session ID``. They ask the console's query layer (the same templates as the
API and pages) on the configured store, so a report equals the page it mirrors."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from extensions.console.internal.params import BadParameter, Filters, parse_filters
from extensions.console.internal.queries import GROUP_KEYS, SESSION_SORTS, ClientPool, Store

REPORTS = ("cost", "usage", "adoption", "tools")
TOKENS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")


def print_rows(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, out: TextIO = sys.stdout
) -> None:
    """Rows as an aligned table, CSV or JSON lines (one object per row)."""
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(dict(zip(columns, row, strict=True)), default=str) + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([["" if v is None else _cell(v) for v in r] for r in rows])
        return
    cells = [[str(c) for c in columns]] + [["" if v is None else _cell(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for n, row in enumerate(cells):
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def add_arguments(sub: Any, config_help: str, run: Callable[[argparse.Namespace], int]) -> None:
    """The report commands' parsers; ``run`` is the CLI's store-opening entry point."""

    def common(p: argparse.ArgumentParser, by: bool = False) -> None:
        if by:
            p.add_argument(
                "--by", default="", help=f"group by, comma-separated: {', '.join(GROUP_KEYS)}"
            )
        p.add_argument("--since", help="the last DURATION, e.g. 30d, 12h (default 30d)")
        p.add_argument("--from", dest="start", help="start: ISO 8601 (2026-01-31), now-7d")
        p.add_argument("--to", dest="end", help="end (exclusive); default now")
        for key in ("agent", "team", "user", "model"):
            p.add_argument(
                f"--{key}",
                action="append",
                default=[],
                help=f"only this {key} (repeatable, or comma-separated)",
            )
        p.add_argument("--format", choices=("table", "csv", "json"), default="table")
        p.add_argument("-c", "--config", help=config_help)
        p.add_argument("--exporter", help="clickhouse exporter to use when there are several")
        p.set_defaults(func=run)

    p = sub.add_parser("report", help="cost, usage, adoption and tool reports from the store")
    p.add_argument("report", choices=REPORTS, help="which report")
    common(p, by=True)
    p.set_defaults(console_command="report")

    p = sub.add_parser("sessions", help="list sessions, as the console's Sessions page")
    common(p)
    p.add_argument("--search", default="", help="substring of session id, user, team or agent")
    p.add_argument("--sort", choices=list(SESSION_SORTS), default="start")
    p.add_argument("--asc", action="store_true", help="ascending (default: descending)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(console_command="sessions")

    p = sub.add_parser("session", help="one session's metadata, totals and turn-by-turn timeline")
    p.add_argument("session_id")
    p.add_argument("--agent", action="append", default=[], help="the agent, if the id is shared")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("-c", "--config", help=config_help)
    p.add_argument("--exporter", help="clickhouse exporter to use when there are several")
    p.set_defaults(func=run, console_command="session")

    p = sub.add_parser("console", help="web console tools")
    csub = p.add_subparsers(dest="console_tool", required=True, metavar="SUBCOMMAND")
    p = csub.add_parser(
        "hash-password",
        help="read a password (stdin, or a prompt) and print the hash for auth.basic_users",
    )
    p.set_defaults(func=_hash_password)


def _hash_password(args: argparse.Namespace) -> int:
    import getpass

    from extensions.console.internal.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("agentwatch: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        print("agentwatch: empty password", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def filters_of(args: argparse.Namespace, now: datetime | None = None) -> Filters:
    if args.since and (args.start or args.end):
        raise BadParameter("use --since or --from/--to, not both")
    get: dict[str, list[str]] = {k: getattr(args, k) for k in ("agent", "team", "user", "model")}
    get["from"] = [f"now-{args.since}" if args.since else args.start or "now-30d"]
    if args.end:
        get["to"] = [args.end]
    return parse_filters(get, now=now or datetime.now(UTC))


@contextmanager
def store_of(client: Any) -> Iterator[Store]:
    yield Store(ClientPool(lambda: client, size=1))


def run(store: Store, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """One report command on an open store; 2 on a bad parameter."""
    try:
        if args.console_command == "session":
            return _session(store, args, out)
        f = filters_of(args)
        if args.console_command == "sessions":
            return _sessions(store, f, args, out)
        return _report(store, f, args, out)
    except BadParameter as exc:
        print(f"agentwatch: {exc}", file=sys.stderr)
        return 2


def _report(store: Store, f: Filters, args: argparse.Namespace, out: TextIO) -> int:
    by = [k.strip() for k in args.by.split(",") if k.strip()]
    if args.report in ("cost", "usage"):
        rows = store.costs(f, by)
        if args.report == "cost":
            columns = [*by, "cost_usd", "api_calls", "unpriced_api_calls", "total_tokens"]
        else:
            columns = [
                *by,
                "api_calls",
                "usage_records",
                *TOKENS,
                "reasoning_tokens",
                "total_tokens",
            ]
        for r in rows:
            r["total_tokens"] = sum(r[t] for t in TOKENS)
        print_rows(columns, [[r[c] for c in columns] for r in rows], args.format, out)
        return 0
    if args.report == "adoption":
        if set(by) - {"user", "team"} or len(by) > 1:
            raise BadParameter("adoption: --by user (default) or --by team")
        people = store.people(f)
        if by == ["team"]:
            columns = [
                "team",
                "users",
                "sessions",
                "active_days",
                "last_seen",
                "cost_usd",
                "agents",
                "models",
            ]
            rows = people["teams"]
        else:
            columns = [
                "user",
                "team",
                "sessions",
                "active_days",
                "last_seen",
                "cost_usd",
                "agents",
                "models",
            ]
            rows = people["users"]
        print_rows(columns, [[r[c] for c in columns] for r in rows], args.format, out)
        return 0
    if by:
        raise BadParameter("tools: --by does not apply (tools are listed per tool and MCP server)")
    tools = store.tools(f)["tools"]
    columns = [
        "tool_name",
        "mcp_server",
        "calls",
        "sessions",
        "failure_rate",
        "denial_rate",
        "avg_duration_ms",
        "p95_duration_ms",
    ]
    print_rows(columns, [[r[c] for c in columns] for r in tools], args.format, out)
    return 0


def _sessions(store: Store, f: Filters, args: argparse.Namespace, out: TextIO) -> int:
    if not 1 <= args.limit <= 100_000 or args.offset < 0:
        raise BadParameter("--limit must be 1..100000 and --offset not negative")
    rows, total = store.sessions(
        f,
        search=args.search,
        sort=args.sort,
        descending=not args.asc,
        limit=args.limit,
        offset=args.offset,
    )
    columns = [
        "session_id",
        "start",
        "user",
        "team",
        "agent",
        "models",
        "user_prompts",
        "duration_s",
        "api_calls",
        "tool_calls",
        *TOKENS,
        "cost_usd",
        "api_errors",
        "detections",
    ]
    print_rows(columns, [[r[c] for c in columns] for r in rows], args.format, out)
    if args.format == "table":
        out.write(f"\n{len(rows)} of {total} sessions\n")
    return 0


def _session(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    from extensions.console.app import turns

    found = store.session(args.session_id, agents=args.agent)
    if found is None:
        print(f"agentwatch: no session {args.session_id!r}", file=sys.stderr)
        return 1
    if args.format == "json":
        out.write(json.dumps(found, default=str) + "\n")
        return 0
    s = found
    out.write(f"session  {s['session_id']}\n")
    for label, value in (
        ("user", s["user"]),
        ("team", s["team"]),
        ("agent", f"{s['agent']} {s['agent_version']}"),
        ("models", ", ".join(s["models"])),
        ("start", s["start"]),
        ("duration", f"{s['duration_s']:.1f}s"),
        ("cost_usd", "unpriced" if s["cost_usd"] is None else repr(s["cost_usd"])),
        (
            "calls",
            f"{s['api_calls']} API, {s['tool_calls']} tool, {s['api_errors']} errors, "
            f"{s['detections']} detections",
        ),
        ("tokens", " / ".join(f"{t.removesuffix('_tokens')} {s[t]}" for t in TOKENS)),
    ):
        out.write(f"{label:<9}{value}\n")
    for turn in turns(s["timeline"]):
        p = turn["prompt"]
        if p is not None:
            text = p.get("prompt_text") or f"({p.get('prompt_length', 0)} characters, not stored)"
            out.write(f"\n{p['timestamp'][11:23]}  turn {turn['n']}: {text}\n")
        else:
            out.write(
                f"\n(events of {'turn ' + turn['prompt_id'] if turn['prompt_id'] else 'no turn'})\n"
            )
        for e in turn["events"]:
            out.write(f"  {e['timestamp'][11:23]}  {describe(e)}\n")
    return 0


def describe(e: dict[str, Any]) -> str:
    """One timeline event on one line."""
    kind = e["type"]
    if kind == "api_call":
        cost = "unpriced" if e.get("cost_usd") is None else f"${e['cost_usd']!r}"
        retry = f" attempt {e['attempt']}" if (e.get("attempt") or 1) > 1 else ""
        return (
            f"api_call   {e['model']}  in {e['input_tokens']} cache_read "
            f"{e['cache_read_tokens']} cache_write {e['cache_write_tokens']} out "
            f"{e['output_tokens']}  {cost}  {e.get('duration_ms') or 0:.0f} ms{retry}"
        )
    if kind == "tool_call":
        parts = [f"tool_call  {e['tool_name']}"]
        if e.get("mcp_server"):
            parts.append(f"(MCP {e['mcp_server']})")
        if e.get("decision"):
            parts.append(f"{e['decision']} by {e.get('decision_source') or '?'}")
        if e.get("success") is not None:
            parts.append("ok" if e["success"] else "FAILED")
        if e.get("duration_ms") is not None:
            parts.append(f"{e['duration_ms']:.0f} ms")
        if e.get("command"):
            parts.append(f"$ {e['command']}")
        return "  ".join(parts)
    if kind == "api_error":
        return f"api_error  {e['model']}  {e['status']}  {e.get('error_message', '')}"
    if kind == "detection":
        return f"DETECTION  {e['severity']}  {e['rule_id']}  {e.get('evidence', '')}"
    if kind == "api_usage":
        return f"api_usage  {e['model']}  cost {e.get('cost_usd')!r}"
    if kind == "code_change":
        return f"code       +{e['lines_added']} -{e['lines_removed']} {e.get('file_path', '')}"
    if kind == "session_start":
        return f"start      {e.get('model', '')} {e.get('permission_mode', '')}".rstrip()
    return kind
