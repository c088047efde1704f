"""The ``agentwatch`` command line."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from collector import __version__
from collector.config import DEFAULT_CONFIG, Config, ConfigError, load

log = logging.getLogger("agentwatch.cli")


def _load_or_report(path: str | None) -> Config | None:
    try:
        cfg = load(path)
    except ConfigError as exc:
        print(f"agentwatch: invalid configuration {path or DEFAULT_CONFIG}:", file=sys.stderr)
        for err in exc.errors:
            print(f"  error: {err}", file=sys.stderr)
        return None
    for warning in cfg.warnings:
        print(f"  warning: {warning}", file=sys.stderr)
    return cfg


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = _load_or_report(args.config)
    if cfg is None:
        return 1
    print(f"{cfg.source}: valid ({len(cfg.pipelines)} pipelines)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from collector import logs
    from collector.service import Service

    cfg = _load_or_report(args.config)
    if cfg is None:
        return 1
    logs.configure(cfg.service.logs.level, cfg.service.logs.format)
    # Decoding OTLP allocates many short-lived objects; a higher first-generation threshold
    # spends far less time in the collector (measured in bench/results/otlp-json.md).
    gc.set_threshold(10_000, 20, 20)
    try:
        return Service(cfg).run_until_signalled()
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

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
