"""``agentwatch import``: read session files and feed them through the configured pipelines.

The import builds the configured service without its receivers, with only the logs pipelines
and their ClickHouse exporters (memory queues: an import is simply run again), and hands each
file's records to those pipelines exactly as a receiver would. It joins the embedded
ClickHouse of a running ``agentwatch serve`` instead of starting a second one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Protocol

from clickhouse_connect.driver.client import Client

from collector import agent_model as am
from collector.component import ComponentConfig, LogsData, Processor, Refused, Signal
from collector.config import ComponentSpec, Config, PipelineSpec
from collector.pipeline import Pipeline, SignalRouter
from collector.receivers.sessionfiles import claude_code, codex, gemini_cli
from collector.receivers.sessionfiles.internal import twins
from collector.receivers.sessionfiles.internal.events import FileResult, Session
from collector.receivers.sessionfiles.internal.ledger import Ledger, digest
from collector.receivers.sessionfiles.internal.otlp import encode
from collector.records import Logs
from collector.service import Service

READERS: dict[str, ModuleType] = {"claude-code": claude_code, "codex": codex, "gemini": gemini_cli}
"""Agent name on the command line -> reader module."""
BATCH_RECORDS = 2_000
LEDGER = "sessionfiles/ledger.json"


class Reader(Protocol):
    agent: str

    def read(self, path: Path) -> FileResult: ...


@dataclass
class Totals:
    """What the pipeline made of the imported records (after normalize and cost)."""

    api_calls: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_api_calls: int = 0
    records: int = 0
    sessions: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class Summary:
    files: int = 0
    files_unchanged: int = 0
    bytes_read: int = 0
    bad_lines: int = 0
    matched_stored: int = 0
    """File calls found already stored (their OTLP twin): sent under the twin's event id."""
    warnings: list[str] = field(default_factory=list)
    totals: dict[str, Totals] = field(default_factory=dict)

    def lines(self, dry_run: bool) -> list[str]:
        head = "would import" if dry_run else "imported"
        out = [
            f"{head}: {self.files} files read ({self.files_unchanged} unchanged, skipped), "
            f"{self.bytes_read / 1e6:.1f} MB, {self.bad_lines} unreadable lines"
        ]
        if self.matched_stored:
            out.append(f"  {self.matched_stored} API calls were already stored (over OTLP)")
        for agent, t in sorted(self.totals.items()):
            cost = f"${t.cost_usd:.4f}" + (
                f" ({t.unpriced_api_calls} calls unpriced)" if t.unpriced_api_calls else ""
            )
            out.append(
                f"  {agent}: {len(t.sessions)} sessions, {t.api_calls} API calls, tokens "
                f"input {t.input_tokens}, cache read {t.cache_read_tokens}, cache write "
                f"{t.cache_write_tokens}, output {t.output_tokens}; cost {cost}"
            )
        out += [f"  warning: {w}" for w in self.warnings[:20]]
        if len(self.warnings) > 20:
            out.append(f"  ... {len(self.warnings) - 20} more warnings")
        return out


class SummaryTap(Processor):
    """Last in each logs pipeline: counts what the processors made of the records."""

    def __init__(self, summary: Summary) -> None:
        super().__init__("sessionfiles/summary", ComponentConfig())
        self.summary = summary

    def consume_logs(self, data: Logs) -> Logs | None:
        for record in data.records:
            attrs = record.attributes
            agent = attrs.get(am.AGENT)
            name = agent if isinstance(agent, str) and agent else "unknown"
            totals = self.summary.totals.setdefault(name, Totals())
            totals.records += 1
            session = attrs.get(am.SESSION_ID)
            if isinstance(session, str) and session:
                totals.sessions.add((name, session))
            if attrs.get(am.EVENT) != am.EventType.API_CALL.value:
                continue
            totals.api_calls += 1
            for key, attr in (
                (am.INPUT_TOKENS, "input_tokens"),
                (am.CACHE_READ_TOKENS, "cache_read_tokens"),
                (am.CACHE_WRITE_TOKENS, "cache_write_tokens"),
                (am.OUTPUT_TOKENS, "output_tokens"),
            ):
                value = attrs.get(key)
                if isinstance(value, int) and not isinstance(value, bool):
                    setattr(totals, attr, getattr(totals, attr) + value)
            cost = attrs.get(am.COST_USD)
            if isinstance(cost, int | float) and not isinstance(cost, bool):
                totals.cost_usd += cost
            else:
                totals.unpriced_api_calls += 1
        return data


def import_config(config: Config, dry_run: bool) -> Config:
    """The configured service as an import runs it: logs pipelines only, no receivers, only
    ClickHouse exporters (none for a dry run) on memory queues, sharing a running embedded
    ClickHouse, and no extensions (the console and budgets belong to ``serve``, which may be
    running beside it on their ports)."""
    from exporters.clickhouse.exporter import embedded_root, running_embedded_url

    exporters: dict[str, ComponentSpec] = {}
    if not dry_run:
        for name, spec in config.exporters.items():
            if spec.factory.type_name != "clickhouse":
                continue
            ch = spec.config
            update: dict[str, object] = {
                "sending_queue": ch.sending_queue.model_copy(  # type: ignore[attr-defined]
                    update={"storage": "memory", "on_full": "refuse"}
                )
            }
            if not ch.endpoint:  # type: ignore[attr-defined]
                url = running_embedded_url(embedded_root(ch, config.service.data_dir))  # type: ignore[arg-type]
                if url:
                    update["endpoint"] = url
            exporters[name] = ComponentSpec(name, spec.factory, ch.model_copy(update=update))
    pipelines = [
        PipelineSpec(p.name, p.signal, [], p.processors, [e for e in p.exporters if e in exporters])
        for p in config.pipelines
        if p.signal is Signal.LOGS
    ]
    used = {n for p in pipelines for n in p.processors}
    processors = {n: s for n, s in config.processors.items() if n in used}
    return dataclasses.replace(
        config,
        receivers={},
        processors=processors,
        exporters=exporters,
        pipelines=pipelines,
        extensions={},
    )


@dataclass
class Options:
    agents: list[str]
    roots: dict[str, Path]
    start: date | None = None
    end: date | None = None
    dry_run: bool = False
    force: bool = False
    progress: bool = False


def _bounds(start: date | None, end: date | None) -> tuple[int, int]:
    def ns(day: date) -> int:
        return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 10**9

    low = ns(start) if start else 0
    high = ns(end + timedelta(days=1)) if end else 2**63 - 1
    return low, high


class Progress:
    """A one-line bar on stderr, only on a terminal."""

    def __init__(self, total_files: int, total_bytes: int, enabled: bool) -> None:
        self.total_files, self.total_bytes, self.enabled = total_files, total_bytes, enabled
        self.files = self.bytes = 0
        self._last = 0.0

    def advance(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.files == self.total_files):
            self._last = now
            share = self.bytes / self.total_bytes if self.total_bytes else 1.0
            bar = "#" * int(share * 30)
            sys.stderr.write(
                f"\r[{bar:<30}] {self.files}/{self.total_files} files "
                f"{self.bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB"
            )
            if self.files == self.total_files:
                sys.stderr.write("\n")
            sys.stderr.flush()


class Feeder:
    """Hands requests to the pipelines: through the router (admission, queues) or, for a dry
    run, through the processors only."""

    def __init__(self, service: Service, dry_run: bool) -> None:
        self.pipelines: list[Pipeline] = service.pipelines
        self.router = None if dry_run else SignalRouter("sessionfiles", Signal.LOGS, self.pipelines)

    def __call__(self, request: LogsData) -> None:
        if self.router is None:
            for pipeline in self.pipelines:
                copy = LogsData()
                copy.CopyFrom(request)
                pipeline.process(copy)
            return
        while True:
            try:
                self.router.consume(Signal.LOGS, request)
                return
            except Refused as exc:  # queues full: wait for the exporter, as a client would
                time.sleep(exc.retry_after or 0.5)


def run(config: Config, options: Options, log: Callable[[str], None] | None = None) -> Summary:
    summary = Summary()
    ledger = Ledger(Path(config.service.data_dir) / LEDGER)
    readers: list[tuple[Reader, list[Path]]] = []
    reader_agent_ids: dict[int, str] = {}
    for agent in options.agents:
        module = READERS[agent]
        root = options.roots.get(agent) or module.default_root()
        reader = module.Reader(root)
        reader_agent_ids[id(reader)] = module.AGENT_ID
        readers.append((reader, module.files(root)))
    total_files = sum(len(f) for _, f in readers)
    total_bytes = sum(p.stat().st_size for _, fs in readers for p in fs)
    progress = Progress(total_files, total_bytes, options.progress)
    low, high = _bounds(options.start, options.end)
    filtered = options.start is not None or options.end is not None
    import_cfg = import_config(config, options.dry_run)
    if not options.dry_run and not import_cfg.exporters:
        raise ValueError("the configuration has no clickhouse exporter in a logs pipeline")
    service = Service(import_cfg)
    service.start()
    for pipeline in service.pipelines:
        pipeline.processors.append(SummaryTap(summary))
    feed = Feeder(service, options.dry_run)
    drained = False
    store = contextlib.ExitStack()
    lookup = None if options.dry_run else twins.Twins(store.enter_context(_store(import_cfg)))
    try:
        for reader, paths in readers:
            for path in paths:
                size = path.stat().st_size
                if not options.force and ledger.unchanged(path):
                    summary.files_unchanged += 1
                    progress.advance(size)
                    continue
                stat = path.stat()
                result = reader.read(path)
                summary.files += 1
                summary.bytes_read += size
                summary.bad_lines += result.bad_lines
                summary.warnings += result.warnings
                if lookup is not None:
                    summary.matched_stored += lookup.align(
                        reader_agent_ids[id(reader)], result.sessions
                    )
                state = ledger.state(path)
                sent = send(result.sessions, state.sent, options.force, low, high, feed)
                if not options.dry_run:
                    state.sent |= sent
                    state.size, state.mtime_ns = stat.st_size, stat.st_mtime_ns
                    state.complete = not filtered
                progress.advance(size)
    finally:
        store.close()
        drained = service.shutdown(timeout=max(config.service.shutdown_timeout, 600))
    if not options.dry_run:
        if not drained:
            raise RuntimeError("the store did not take every record; nothing marked as imported")
        ledger.save()
    return summary


@contextlib.contextmanager
def _store(config: Config) -> Iterator[Client]:
    """A client on the store the import writes to (its first ClickHouse exporter)."""
    from exporters.clickhouse.exporter import open_store

    spec = next(iter(config.exporters.values()))
    with open_store(spec.config, config.service.data_dir) as client:  # type: ignore[arg-type]
        yield client


def send(
    sessions: Iterable[Session],
    already: set[str],
    force: bool,
    low: int,
    high: int,
    feed: Callable[[LogsData], None],
) -> set[str]:
    """Feed the sessions' new events in batches; return the digests of what was sent."""
    sent: set[str] = set()
    batch: list[Session] = []
    size = 0
    for session in sessions:
        kept = Session(session.session_id, session.resource)
        for event in session.events:
            if not low <= event.time_ns < high:
                continue
            key = digest(session.session_id, event)
            if key in already and not force:
                continue
            sent.add(key)
            kept.events.append(event)
        if kept.events:
            batch.append(kept)
            size += len(kept.events)
        if size >= BATCH_RECORDS:
            feed(encode(batch))
            batch, size = [], 0
    if batch:
        feed(encode(batch))
    return sent
