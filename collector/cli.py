"""The ``agentwatch`` command line."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable
from datetime import date
from typing import Any

from collector import __version__
from collector.config import DEFAULT_CONFIG, Config, ConfigError, load

log = logging.getLogger("agentwatch.cli")


def _load_or_report(path: str | None) -> Config | None:
    try:
        config = load(path)
    except ConfigError as exc:
        print(f"agentwatch: invalid configuration {path or DEFAULT_CONFIG}:", file=sys.stderr)
        for err in exc.errors:
            print(f"  error: {err}", file=sys.stderr)
        return None
    for warning in config.warnings:
        print(f"  warning: {warning}", file=sys.stderr)
    return config


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load_or_report(args.config)
    if config is None:
        return 1
    print(f"{config.source}: valid ({len(config.pipelines)} pipelines)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from collector import logs
    from collector.service import Service

    config = _load_or_report(args.config)
    if config is None:
        return 1
    logs.configure(config.service.logs.level, config.service.logs.format)
    # Decoding OTLP allocates many short-lived objects; a higher first-generation threshold
    # spends far less time in the collector (measured in bench/results/otlp-json.md).
    gc.set_threshold(10_000, 20, 20)
    try:
        return Service(config).run_until_signalled()
    except Exception as exc:
        log.error("agentwatch could not start", extra={"error": str(exc)})
        return 1


def cmd_version(args: argparse.Namespace) -> int:
    print(f"agentwatch {__version__}")
    return 0


def cmd_pricing_import(args: argparse.Namespace) -> int:
    import datetime

    import yaml

    from processors import pricing

    try:
        imported = pricing.import_litellm(args.file, package=args.package, version=args.version)
        if args.merge_into:
            with open(args.merge_into) as fh:
                base = yaml.safe_load(fh)
            imported = pricing.merge_import(base, imported, datetime.date.today())
    except (OSError, ValueError, pricing.PriceBookError) as exc:
        print(f"agentwatch: cannot import {args.file}: {exc}", file=sys.stderr)
        return 1
    text = pricing.to_yaml(imported)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_rules_test(args: argparse.Namespace) -> int:
    from processors.detections.rules_test import test_rules

    try:
        report = test_rules(args.rules_file, args.events_file)
    except (OSError, ValueError) as exc:
        print(f"agentwatch: {exc}", file=sys.stderr)
        return 2
    print(report.format())
    return 0 if report.ok else 1


def _store_config(config: Config, exporter: str | None) -> tuple[Any, str] | None:
    """The ClickHouse exporter config a store command works on, and the data directory."""
    names = [n for n, spec in config.exporters.items() if spec.factory.type_name == "clickhouse"]
    if exporter is not None:
        names = [n for n in names if n == exporter]
    if len(names) != 1:
        which = f"'{exporter}'" if exporter else "one"
        print(
            f"agentwatch: the configuration must have {which} clickhouse exporter "
            f"(found: {', '.join(names) or 'none'}); choose with --exporter",
            file=sys.stderr,
        )
        return None
    return config.exporters[names[0]].config, config.service.data_dir


def _on_store(args: argparse.Namespace, what: str, work: Callable[[Any, Any, Config], int]) -> int:
    """Run a store command: load the config, open its one (or ``--exporter``'s) ClickHouse
    store, hand ``work`` the client, the exporter config and the config; a failure is one line
    with the server's own message, which is the useful part."""
    from exporters.clickhouse.exporter import open_store

    config = _load_or_report(args.config)
    found = config and _store_config(config, args.exporter)
    if not config or not found:
        return 1
    ch_cfg, data_dir = found
    try:
        with open_store(ch_cfg, data_dir) as client:
            return work(client, ch_cfg, config)
    except Exception as exc:
        print(f"agentwatch: {what} failed: {exc}", file=sys.stderr)
        return 1


def cmd_db(args: argparse.Namespace) -> int:
    from exporters.clickhouse import schema

    def work(client: Any, ch_cfg: Any, _cfg: Config) -> int:
        settings = ch_cfg.schema_settings()
        if args.db_command == "migrate":
            for version, name in schema.migrate(client, settings):
                print(f"applied {version:>4}  {name}")
            print(f"schema is at version {schema.LATEST_VERSION}")
            return 0
        for version, name, applied_at in schema.status(client, settings):
            print(f"{version:>4}  {name:<40} {applied_at or 'pending'}")
        return 0

    return _on_store(args, f"db {args.db_command}", work)


def cmd_query(args: argparse.Namespace) -> int:
    from exporters.clickhouse import schema
    from extensions.console.report import print_rows

    def work(client: Any, _ch_cfg: Any, _cfg: Config) -> int:
        try:
            columns, rows = schema.run_readonly_query(client, args.sql)
        except schema.ReadOnlyQueryError as exc:
            print(f"agentwatch: {exc}", file=sys.stderr)
            return 2
        print_rows(columns, rows, args.format)
        return 0

    return _on_store(args, "query", work)


def cmd_reconcile(args: argparse.Namespace) -> int:
    from exporters.clickhouse import reconcile
    from extensions.console.report import print_rows

    def work(client: Any, _ch_cfg: Any, _cfg: Config) -> int:
        sessions, users = reconcile.report(client, args.since)
        if args.format == "table":
            print(
                "Per session (coverage_pct: share of the calls in session files that OTLP "
                "delivered too):"
            )
        print_rows(*sessions, args.format)
        if args.format == "table":
            print("\nPer user:")
        print_rows(*users, args.format)
        return 0

    return _on_store(args, "reconcile", work)


def cmd_reprice(args: argparse.Namespace) -> int:
    from exporters.clickhouse import reprice
    from exporters.clickhouse.exporter import open_store
    from processors.cost import CostConfig
    from processors.pricing import PriceBookError

    config = _load_or_report(args.config)
    found = config and _store_config(config, args.exporter)
    if not config or not found:
        return 1
    ch_cfg, data_dir = found
    costs = {n: s.config for n, s in config.processors.items() if s.factory.type_name == "cost"}
    if args.processor is not None:
        costs = {n: c for n, c in costs.items() if n == args.processor}
        if not costs:
            print(f"agentwatch: no cost processor '{args.processor}'", file=sys.stderr)
            return 1
    if len(costs) > 1:
        print(
            f"agentwatch: several cost processors ({', '.join(costs)}); choose with --processor",
            file=sys.stderr,
        )
        return 1
    cost_cfg = next(iter(costs.values()), None) or CostConfig()
    assert isinstance(cost_cfg, CostConfig)
    try:
        with open_store(ch_cfg, data_dir) as client:
            summary = reprice.reprice(
                client, ch_cfg.schema_settings(), cost_cfg, args.start, args.end
            )
    except (reprice.RepriceError, PriceBookError) as exc:
        print(f"agentwatch: {exc}", file=sys.stderr)
        return 1
    print("\n".join(summary.lines()))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from collector import logs
    from collector.receivers.sessionfiles import importer

    config = _load_or_report(args.config)
    if config is None:
        return 1
    logs.configure("warn", config.service.logs.format)
    agents = list(importer.READERS) if args.agent == "all" else [args.agent]
    if args.path and len(agents) > 1:
        print("agentwatch: --path needs one agent, not 'all'", file=sys.stderr)
        return 2
    roots = {agents[0]: Path(args.path)} if args.path else {}
    options = importer.Options(
        agents,
        roots,
        start=args.start,
        end=args.end,
        dry_run=args.dry_run,
        force=args.force,
        progress=sys.stderr.isatty(),
    )
    try:
        summary = importer.run(config, options)
    except Exception as exc:
        print(f"agentwatch: import failed: {exc}", file=sys.stderr)
        return 1
    print("\n".join(summary.lines(args.dry_run)))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    import dataclasses

    from collector import logs
    from collector.config import ComponentSpec
    from collector.receivers.sessionfiles import importer, receiver
    from collector.receivers.sessionfiles.config import SessionFilesConfig
    from collector.service import Service

    config = _load_or_report(args.config)
    if config is None:
        return 1
    logs.configure(config.service.logs.level, config.service.logs.format)
    agents = list(importer.READERS) if args.agent == "all" else [args.agent]
    if args.path and len(agents) > 1:
        print("agentwatch: --path needs one agent, not 'all'", file=sys.stderr)
        return 2
    follow = SessionFilesConfig.model_validate(
        {
            "agents": agents,
            "paths": {agents[0]: args.path} if args.path else {},
            "poll_interval": args.interval,
            "settle": args.settle,
        }
    )
    watched = importer.import_config(config, dry_run=False)
    if not watched.exporters:
        print("agentwatch: the configuration has no clickhouse exporter", file=sys.stderr)
        return 1
    watched = dataclasses.replace(
        watched,
        receivers={"sessionfiles": ComponentSpec("sessionfiles", receiver.FACTORY, follow)},
        pipelines=[dataclasses.replace(p, receivers=["sessionfiles"]) for p in watched.pipelines],
    )
    try:
        return Service(watched).run_until_signalled()
    except Exception as exc:
        log.error("agentwatch watch could not start", extra={"error": str(exc)})
        return 1


def cmd_setup(args: argparse.Namespace) -> int:
    from collector import setup_agents

    settings = setup_agents.settings_for(
        args.agent, args.endpoint, args.protocol, args.token, args.content == "on"
    )
    print(setup_agents.describe(settings))
    if not args.write:
        return 0
    try:
        path, backup = setup_agents.write(settings)
    except (OSError, ValueError) as exc:
        print(f"agentwatch: not written: {exc}", file=sys.stderr)
        return 1
    saved = f" (backup: {backup})" if backup else ""
    print(f"# written: {path}{saved}")
    return 0


def _selection(args: argparse.Namespace) -> Any:
    from exporters.clickhouse.lifecycle import Selection

    return Selection(
        args.start or date(1970, 1, 1),
        args.end or date(2261, 12, 31),  # DateTime64(9) ends in 2262
        args.agent or "",
        args.user or "",
    )


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from exporters.clickhouse import lifecycle

    def work(client: Any, ch_cfg: Any, _cfg: Config) -> int:
        written = lifecycle.export(
            client, ch_cfg.schema_settings(), _selection(args), Path(args.output), args.zip
        )
        for name, path in written:
            print(f"{name:<20} {path} ({path.stat().st_size} bytes)")
        return 0

    return _on_store(args, "export", work)


def cmd_delete(args: argparse.Namespace) -> int:
    from exporters.clickhouse import lifecycle

    def work(client: Any, ch_cfg: Any, _cfg: Config) -> int:
        selection = _selection(args)
        settings = ch_cfg.schema_settings()
        plan = lifecycle.plan_delete(client, settings, selection)
        who = f"agent {selection.agent or 'any'}, user {selection.user or 'any'}"
        print(f"rows from {selection.start} to {selection.end} (UTC days), {who}:")
        for table, count in plan.counts:
            if count:
                print(f"  {table:<36} {count}")
        print(f"  {len(plan.sessions)} sessions rebuilt from their remaining rows")
        if plan.total == 0:
            print("nothing to delete")
            return 0
        if not args.yes:
            if not sys.stdin.isatty():
                print("agentwatch: not a terminal: confirm with --yes", file=sys.stderr)
                return 2
            if input(f"delete these {plan.total} rows? [y/N] ").strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 1
        lifecycle.delete(client, settings, selection, plan)
        print(f"deleted {plan.total} rows")
        return 0

    return _on_store(args, "delete", work)


def cmd_console_report(args: argparse.Namespace) -> int:
    """``report``, ``sessions`` and ``session``: the console's queries, in the terminal."""
    from extensions.console import report

    def work(client: Any, _ch_cfg: Any, _cfg: Config) -> int:
        with report.store_of(client) as store:
            return report.run(store, args)

    return _on_store(args, "query", work)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentwatch",
        description="Receive the OpenTelemetry of AI coding agents (Claude Code, Codex, Gemini "
        "CLI, Copilot), normalise, price and redact it, and store it in ClickHouse.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = f"configuration file (default: {DEFAULT_CONFIG})"

    p = sub.add_parser("serve", help="run the collector until SIGTERM/SIGINT")
    p.add_argument("-c", "--config", help=config_help)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "validate", help="check a configuration; print every error and exit non-zero"
    )
    p.add_argument("-c", "--config", help=config_help)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "query", help="run read-only SQL against the configured store and print the result"
    )
    p.add_argument("sql", help='e.g. "SELECT agent, sum(cost_usd) FROM api_calls GROUP BY agent"')
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("-c", "--config", help=config_help)
    p.add_argument("--exporter", help="clickhouse exporter to use when there are several")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("db", help="schema management of the ClickHouse store")
    dsub = p.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    for name, text in (("migrate", "apply pending migrations"), ("status", "list migrations")):
        p = dsub.add_parser(name, help=text)
        p.add_argument("-c", "--config", help=config_help)
        p.add_argument("--exporter", help="clickhouse exporter to use when there are several")
        p.set_defaults(func=cmd_db)

    p = sub.add_parser(
        "reprice",
        help="recompute stored costs of a date range after a price book change (docs/pricing.md)",
    )
    p.add_argument(
        "--from",
        dest="start",
        type=date.fromisoformat,
        required=True,
        help="first UTC day, YYYY-MM-DD",
    )
    p.add_argument(
        "--to",
        dest="end",
        type=date.fromisoformat,
        required=True,
        help="last UTC day (included), YYYY-MM-DD",
    )
    p.add_argument("-c", "--config", help=config_help)
    p.add_argument("--exporter", help="clickhouse exporter to use when there are several")
    p.add_argument("--processor", help="cost processor whose settings apply, if several")
    p.set_defaults(func=cmd_reprice)

    p = sub.add_parser("pricing", help="price book tools")
    psub = p.add_subparsers(dest="pricing_command", required=True, metavar="SUBCOMMAND")
    p = psub.add_parser(
        "import",
        help="convert a LiteLLM model_prices JSON into the price book format (docs/pricing.md)",
    )
    p.add_argument("file", help="LiteLLM-format JSON, e.g. model_prices_and_context_window.json")
    p.add_argument("--merge-into", help="existing price book: keep its history, add new prices")
    p.add_argument("--package", help="source package name to record, e.g. litellm")
    p.add_argument("--version", help="source package version to record")
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.set_defaults(func=cmd_pricing_import)

    p = sub.add_parser("rules", help="security detection rule tools")
    rsub = p.add_subparsers(dest="rules_command", required=True, metavar="SUBCOMMAND")
    p = rsub.add_parser(
        "test",
        help="run a rule file over sample events (JSON lines) and print what matched; exit 1 "
        "when an event's _expect list is not met (docs/detections.md)",
    )
    p.add_argument("rules_file", help="rule file (YAML), e.g. processors/rules/default.yaml")
    p.add_argument("events_file", help="sample events, one JSON object of attributes per line")
    p.set_defaults(func=cmd_rules_test)

    from extensions.console import report

    report.add_arguments(sub, config_help, cmd_console_report)

    p = sub.add_parser(
        "import",
        help="import the agent CLIs' own session files (history, or sessions without "
        "telemetry) through the pipelines into the store (docs/session-files.md)",
    )
    p.add_argument("agent", choices=("claude-code", "codex", "gemini", "all"))
    p.add_argument(
        "--path",
        help="where the agent's session files are (default: its own directory under $HOME, "
        "or $AGENTWATCH_CLAUDE_CODE_PATH / $AGENTWATCH_CODEX_PATH / $AGENTWATCH_GEMINI_PATH)",
    )
    p.add_argument(
        "--from", dest="start", type=date.fromisoformat, help="first UTC day, YYYY-MM-DD"
    )
    p.add_argument(
        "--to", dest="end", type=date.fromisoformat, help="last UTC day (included), YYYY-MM-DD"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print files, sessions, calls, tokens and cost without storing anything",
    )
    p.add_argument("--force", action="store_true", help="read files again even if already imported")
    p.add_argument("-c", "--config", help=config_help)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "reconcile",
        help="per session and user: API calls seen over OTLP and in session files, OTLP's "
        "coverage, calls only one source has (docs/session-files.md)",
    )
    p.add_argument(
        "--since", type=date.fromisoformat, help="sessions last seen on or after this UTC day"
    )
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("-c", "--config", help=config_help)
    p.add_argument("--exporter", help="clickhouse exporter to use when there are several")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser(
        "watch",
        help="follow the agents' session-file directories and import what changes until "
        "SIGTERM/SIGINT (or use the sessionfiles receiver in serve; docs/session-files.md)",
    )
    p.add_argument("agent", choices=("claude-code", "codex", "gemini", "all"))
    p.add_argument("--path", help="the agent's session-file directory (as for import)")
    p.add_argument("--interval", default="5s", help="scan interval (default 5s)")
    p.add_argument(
        "--settle", default="10s", help="read a file once unchanged this long (default 10s)"
    )
    p.add_argument("-c", "--config", help=config_help)
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser(
        "setup",
        help="print (or --write) the settings that send an agent's telemetry to agentwatch",
    )
    p.add_argument(
        "agent", choices=("claude-code", "codex", "gemini", "copilot-vscode", "copilot-cli")
    )
    p.add_argument("--endpoint", help="agentwatch's OTLP URL (default: 127.0.0.1, 4317 / 4318)")
    p.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    p.add_argument("--token", help="bearer token agentwatch's OTLP receiver expects")
    p.add_argument(
        "--content",
        choices=("on", "off"),
        default="off",
        help="also send prompts, responses and tool details (default off)",
    )
    p.add_argument(
        "--write",
        action="store_true",
        help="merge into the user's settings file (a backup is kept; other keys untouched)",
    )
    p.set_defaults(func=cmd_setup)

    def selection_arguments(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument(
            "--from",
            dest="start",
            type=date.fromisoformat,
            required=required,
            help="first UTC day, YYYY-MM-DD",
        )
        p.add_argument(
            "--to",
            dest="end",
            type=date.fromisoformat,
            required=required,
            help="last UTC day (included), YYYY-MM-DD",
        )
        p.add_argument("--agent", help="only this agent (claude_code, codex, gemini_cli, ...)")
        p.add_argument("--user", help="only this user id or e-mail")
        p.add_argument("-c", "--config", help=config_help)
        p.add_argument("--exporter", help="clickhouse exporter to use when there are several")

    p = sub.add_parser(
        "export", help="write every public view to Parquet files (docs/data-lifecycle.md)"
    )
    p.add_argument("--output", required=True, help="directory to write <view>.parquet into")
    p.add_argument("--zip", action="store_true", help="pack the files into one ZIP")
    selection_arguments(p, required=False)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "delete",
        help="delete a date range (of one agent or user) from every table and rollup "
        "(docs/data-lifecycle.md)",
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    selection_arguments(p, required=True)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
