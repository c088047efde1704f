"""``agentwatch reprice``: recompute stored costs after a price book change.

Stored rows are never updated in place. For every ``api_call`` / ``api_usage`` row in the date
range whose cost the current price book and cost config would set differently, reprice inserts
a newer row of the same event: same sort key (so the ReplacingMergeTree keeps only the newest
and the ``FINAL`` views show it), ``revision + 1``, the new ``cost_usd`` /
``cost_usd_computed``, and the cost it replaces in ``previous_cost_usd``.

Sessions and hourly rollups need no rebuild: their materialized views count a revision-0 row in
full and a later revision only as the change it makes (new cost minus previous cost, and +1/-1
priced), see schema/. A correction and its effect on every rollup are therefore one INSERT,
which ClickHouse deduplicates as a whole on retry (``insert_deduplication_token``), and the
corrections add up with rows the collector inserts meanwhile instead of racing with them (a
rebuild of rollup partitions would lose or double what arrives during the rebuild). A run cut
off half-way is simply run again: rows already corrected now carry their new cost and are
left alone.

Costs are recomputed from the stored, normalised tokens by the pricing functions the ``cost``
processor uses (``processors.pricing.usage_of`` and ``call_cost``), so ``cost_source``,
``fallback``, discounts, tiers and ``effective_from`` dates apply exactly as they do on ingest.
No telemetry record is built. Rows are read per UTC day in ``event_id`` order, a page at a time.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError
from clickhouse_connect.driver.external import ExternalData

from collector import agent_model as am
from exporters.clickhouse import schema
from processors import pricing
from processors.cost import CostConfig

log = logging.getLogger("agentwatch.reprice")

REPRICED_EVENTS = (am.EventType.API_CALL, am.EventType.API_USAGE)
PAGE_SIZE = 10_000
REPRICE_VERSION = 5
"""The schema version that introduced revisions; older stores must be migrated first."""

_TOKEN_COLUMNS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
)
"""Read in this order: ``_price`` unpacks them."""
_READ_COLUMNS = (
    "src.event_id",
    "src.revision",
    "toUnixTimestamp64Nano(src.timestamp)",
    "src.provider",
    "src.model",
    *(f"src.{name}" for name in _TOKEN_COLUMNS),
    "src.cost_usd_reported",
    "src.cost_usd",
    "src.cost_usd_computed",
)
_CHANGES_STRUCTURE = [
    "event_id String",
    "revision UInt32",
    "cost_usd Nullable(Float64)",
    "cost_usd_computed Nullable(Float64)",
]


class RepriceError(Exception):
    """Reprice cannot run (bad range, schema too old); the message says what to do."""


@dataclass
class TableReprice:
    """What reprice did to one table; costs are sums of the known ``cost_usd`` in range."""

    table: str
    rows_scanned: int = 0
    rows_repriced: int = 0
    cost_usd_before: float = 0.0
    cost_usd_after: float = 0.0
    unpriced_before: int = 0
    unpriced_after: int = 0


@dataclass
class RepriceSummary:
    start: date
    end: date
    tables: list[TableReprice] = field(default_factory=list)

    @property
    def rows_repriced(self) -> int:
        return sum(t.rows_repriced for t in self.tables)

    @property
    def cost_usd_before(self) -> float:
        return sum(t.cost_usd_before for t in self.tables)

    @property
    def cost_usd_after(self) -> float:
        return sum(t.cost_usd_after for t in self.tables)

    def lines(self) -> list[str]:
        """The report ``agentwatch reprice`` prints."""
        out = [f"repriced {self.start.isoformat()} .. {self.end.isoformat()} (UTC days)"]
        for t in self.tables:
            out.append(
                f"  {t.table:<18} scanned {t.rows_scanned:>9}  repriced {t.rows_repriced:>9}  "
                f"cost_usd {t.cost_usd_before:.6f} -> {t.cost_usd_after:.6f}  "
                f"unpriced {t.unpriced_before} -> {t.unpriced_after}"
            )
        out.append(
            f"  total: {self.rows_repriced} rows repriced, cost_usd "
            f"{self.cost_usd_before:.6f} -> {self.cost_usd_after:.6f}"
        )
        return out


@dataclass(frozen=True)
class _Change:
    event_id: str
    revision: int
    cost_usd: float | None
    cost_usd_computed: float | None


def reprice(
    client: Client,
    settings: schema.SchemaSettings,
    cost: CostConfig,
    start: date,
    end: date,
    *,
    page_size: int = PAGE_SIZE,
) -> RepriceSummary:
    """Recompute ``cost_usd`` / ``cost_usd_computed`` of api_call and api_usage rows dated
    ``start`` .. ``end`` (UTC days, both included) with the price book and cost config given;
    sessions and rollups follow through their views. Raises RepriceError,
    processors.pricing.PriceBookError, and ClickHouse errors."""
    if end < start:
        raise RepriceError(f"--to {end.isoformat()} is before --from {start.isoformat()}")
    applied = schema.applied_versions(client, settings)
    if REPRICE_VERSION not in applied:
        raise RepriceError(
            f"the schema of database {settings.database!r} is older than version "
            f"{REPRICE_VERSION}: run `agentwatch db migrate` first"
        )
    book = pricing.load(cost.resolved_pricing_file(), include_shipped=cost.include_shipped)
    summary = RepriceSummary(start, end)
    for event in REPRICED_EVENTS:
        table = schema.AGENT_TABLES[event]
        stats = TableReprice(table.table)
        for day in _days(start, end):
            for page in _pages(client, settings, table.table, day, page_size):
                changes = _reprice_page(book, cost, event, page, stats)
                if changes:
                    _insert_corrections(client, settings, table, day, changes)
                    stats.rows_repriced += len(changes)
        summary.tables.append(stats)
        log.info("%s: %d of %d rows repriced", table.table, stats.rows_repriced, stats.rows_scanned)
    return summary


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def _day_bounds(day: date) -> dict[str, str]:
    return {
        "lo": f"{day.isoformat()} 00:00:00",
        "hi": f"{(day + timedelta(1)).isoformat()} 00:00:00",
    }


_IN_DAY = (
    "src.timestamp >= toDateTime64({lo:String}, 9, 'UTC') "
    "AND src.timestamp < toDateTime64({hi:String}, 9, 'UTC')"
)


def _pages(
    client: Client, settings: schema.SchemaSettings, table: str, day: date, page_size: int
) -> Iterator[Sequence[Sequence[Any]]]:
    """The day's rows as the views see them (FINAL: latest revision), by event_id."""
    after = ""
    sql = (
        f"SELECT {', '.join(_READ_COLUMNS)} FROM {settings.qualified(table)} AS src FINAL "
        f"WHERE {_IN_DAY} AND src.event_id > {{after:String}} "
        "ORDER BY src.event_id LIMIT {limit:UInt32}"
    )
    while True:
        rows = client.query(
            sql, parameters={**_day_bounds(day), "after": after, "limit": page_size}
        ).result_rows
        if not rows:
            return
        yield rows
        if len(rows) < page_size:
            return
        after = rows[-1][0]


def _reprice_page(
    book: pricing.PriceBook,
    config: CostConfig,
    event: am.EventType,
    page: Sequence[Sequence[Any]],
    stats: TableReprice,
) -> list[_Change]:
    changes = []
    for row in page:
        event_id, revision, ts, provider, model, *tokens, reported, cost, computed = row
        new_cost, new_computed = _price(
            book, config, event, provider, model, tokens, reported, int(ts)
        )
        stats.rows_scanned += 1
        stats.cost_usd_before += cost or 0.0
        stats.cost_usd_after += new_cost or 0.0
        stats.unpriced_before += cost is None
        stats.unpriced_after += new_cost is None
        if (new_cost, new_computed) != (cost, computed):
            changes.append(_Change(event_id, int(revision), new_cost, new_computed))
    return changes


def _price(
    book: pricing.PriceBook,
    config: CostConfig,
    event: am.EventType,
    provider: str,
    model: str,
    tokens: Sequence[int],
    reported: float | None,
    time_unix_nano: int,
) -> tuple[float | None, float | None]:
    """(cost_usd, cost_usd_computed) the cost processor gives a record with these facts.

    Storage keeps 0 for an absent count, so a row with no tokens at all is treated as a record
    that had none (unpriced, as on ingest), and a cache-write split only when it is non-zero.
    """
    usage: pricing.Usage | pricing.Unpriced = pricing.Unpriced.NO_TOKENS
    if any(tokens):
        inputs, cache_read, cache_write, output, reasoning, written_5m, written_1h = map(
            int, tokens
        )
        usage = pricing.usage_of(
            input_tokens=inputs,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            cache_write_5m_tokens=written_5m or None,
            cache_write_1h_tokens=written_1h or None,
            output_tokens=output,
            reasoning_tokens=reasoning,
        )
    cost = pricing.call_cost(
        book,
        provider,
        model,
        pricing.day_of(time_unix_nano),
        usage,
        reported if reported is not None and math.isfinite(reported) else None,
        # The event type matters: api_usage (an interval's total) is priced at base rates.
        one_request=event != am.EventType.API_USAGE,
        cost_source=config.cost_source,
        fallback=config.fallback,
    )
    computed = cost.computed_usd
    return (
        None if cost.cost_usd is None else float(cost.cost_usd),
        None if computed is None else float(computed),
    )


def _tsv(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, float):
        return repr(value)
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _insert_corrections(
    client: Client,
    settings: schema.SchemaSettings,
    table: schema.AgentTable,
    day: date,
    changes: list[_Change],
) -> None:
    """One INSERT ... SELECT writing the newer revision of every changed row, copied from the
    stored row so every other column stays exactly as it was."""
    columns = [c.name for c in table.spec().insert_columns]
    exprs = []
    for name in columns:
        exprs.append(f"r.{name}" if name in ("cost_usd", "cost_usd_computed") else f"src.{name}")
    columns += ["revision", "previous_cost_usd"]
    exprs += ["src.revision + 1", "src.cost_usd"]
    text = "".join(
        "\t".join(_tsv(v) for v in (c.event_id, c.revision, c.cost_usd, c.cost_usd_computed)) + "\n"
        for c in sorted(changes, key=lambda c: c.event_id)
    )
    changed = ExternalData(
        file_name="repriced",
        data=text.encode(),
        fmt="TabSeparated",
        structure=_CHANGES_STRUCTURE,
    )
    join = "GLOBAL INNER JOIN" if settings.cluster else "INNER JOIN"
    target = settings.qualified(table.table)
    sql = (
        f"INSERT INTO {target} ({', '.join(schema.quote(c) for c in columns)}) "
        f"SELECT {', '.join(exprs)} FROM {target} AS src FINAL {join} repriced AS r "
        f"ON src.event_id = r.event_id AND src.revision = r.revision WHERE {_IN_DAY}"
    )
    token = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    insert = {
        **schema.insert_settings(settings),
        "insert_deduplication_token": f"reprice:{table.table}:{token}",
        "max_threads": 1,
        "max_insert_threads": 1,
    }
    for attempt in (1, 2):  # the same token: a lost answer to a committed insert is harmless
        try:
            client.command(sql, parameters=_day_bounds(day), settings=insert, external_data=changed)
            return
        except OperationalError:
            if attempt == 2:
                raise
            log.warning("reprice insert into %s failed; retrying once", table.table)
