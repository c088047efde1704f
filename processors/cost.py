"""The ``cost`` processor: prices every model API call from its normalised tokens.

It runs after the vendor normalisers and reads only ``agentwatch.*`` keys, so one set of rules
prices Claude Code, Codex, Gemini CLI and Copilot alike. A call the price book cannot price gets
no computed cost at all (NULL downstream), never zero, and is counted and logged once per model,
so a stale price book shows up on a dashboard instead of as a silently low bill.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from collector import agent_model as am
from collector import telemetry
from collector.component import (
    ComponentConfig,
    ConfigContext,
    Factory,
    Processor,
    Signal,
)
from collector.records import Logs, Traces
from processors import pricing

log = logging.getLogger("agentwatch.processor.cost")

COST_SOURCE = am.COST_SOURCE
"""Which figure ``agentwatch.cost_usd`` holds: ``computed``, ``reported``, or
``pricing.SPLIT_UNKNOWN_SOURCE`` (see ``SPLIT_UNKNOWN``)."""

MAX_MODEL_LABELS = 256
"""Distinct (provider, model) label pairs per processor; more share the label ``_other`` so a
client sending random model names cannot blow up the metrics."""

UNPRICED = telemetry.counter(
    "agentwatch_cost_unpriced_items",
    "api_call records left without a computed cost, by reason (unknown_model, "
    "no_price_on_date, invalid_usage, no_tokens, no_model) and model.",
    ("processor", "reason", "provider", "model"),
)
PRICED = telemetry.counter(
    "agentwatch_cost_priced_items",
    "api_call records given a computed cost.",
    ("processor", "signal"),
)
DISCREPANCIES = telemetry.counter(
    "agentwatch_cost_discrepancies",
    "api_call records whose agent-reported cost differs from the list-price computed cost by "
    "more than discrepancy_threshold.",
    ("processor", "provider", "model"),
)


SPLIT_UNKNOWN = telemetry.counter(
    "agentwatch_cost_cache_split_unknown_items",
    "Records whose cache writes have no 5m/1h split (Claude Code metrics without logs) and that "
    "were priced with the agent's own cost: a price-book figure would bill every 1h write at "
    "the 5m rate.",
    ("processor", "provider", "model"),
)
SPLIT_UNKNOWN_USD = telemetry.counter(
    "agentwatch_cost_cache_split_unknown_usd",
    "Those records' cost in USD as the agent reported it (figure=reported, the one used) and "
    "as the price book computes it at the 5m write rate (figure=computed): the difference is "
    "what the split would have changed.",
    ("processor", "provider", "model", "figure"),
)


class CostConfig(ComponentConfig):
    pricing_file: str | None = Field(
        default=None,
        description="Price book file (YAML or JSON) whose entries override or extend the "
        "shipped one and which may set discounts; relative to the working directory.",
    )
    include_shipped: bool = Field(
        default=True, description="false: use only pricing_file, e.g. a complete imported book."
    )
    cost_source: Literal["computed", "reported"] = Field(
        default="computed",
        description="Which figure becomes agentwatch.cost_usd, the one to bill.",
    )
    fallback: bool = Field(
        default=True,
        description="When the chosen figure is missing (unknown model, agent reports none), "
        "use the other one; false leaves cost_usd NULL.",
    )
    discrepancy_threshold: float = Field(
        default=0.01,
        ge=0,
        allow_inf_nan=False,
        description="Relative difference between reported and computed cost above which a "
        "record counts as a discrepancy (0.01 = 1%).",
    )

    def resolved_pricing_file(self, base_dir: str | None = None) -> Path | None:
        if self.pricing_file is None:
            return None
        p = Path(os.path.expanduser(self.pricing_file))
        return p if p.is_absolute() else Path(base_dir or os.getcwd()) / p

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        where = f"{path}.pricing_file"
        file = self.resolved_pricing_file(ctx.base_dir)
        if file is None and not self.include_shipped:
            return [f"{path}.include_shipped: false needs a pricing_file"]
        if file is not None and not file.is_file():
            return [f"{where}: no such file: {file}"]
        try:
            pricing.load(file, include_shipped=self.include_shipped)
        except pricing.PriceBookError as exc:
            return [f"{where if file else path}: {e}" for e in exc.errors]
        return []


_PRICED_EVENTS = frozenset({am.EventType.API_CALL.value, am.EventType.API_USAGE.value})
_TOKEN_KEYS = (
    am.INPUT_TOKENS,
    am.CACHE_READ_TOKENS,
    am.CACHE_WRITE_TOKENS,
    am.CACHE_WRITE_5M_TOKENS,
    am.CACHE_WRITE_1H_TOKENS,
    am.OUTPUT_TOKENS,
)
"""The billed token counts; a record with none of them has nothing to price."""


class _Invalid(Exception):
    pass


def _int(value: Any) -> int:
    """A token count; normalisers write ints, but a string or integral double is accepted."""
    if value.__class__ is int:
        return value  # type: ignore[no-any-return]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise _Invalid  # booleans, maps, lists, bytes and empty values are no count


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float | int):
        v = float(value)
    elif isinstance(value, str):
        try:
            v = float(value)
        except ValueError:
            return None
    else:
        return None
    return v if math.isfinite(v) else None


def _count(attrs: dict[str, Any], key: str) -> int | None:
    """A present count (raises ``_Invalid`` when it is no count), ``None`` when absent."""
    return _int(attrs[key]) if key in attrs else None


def usage_of(attrs: dict[str, Any]) -> pricing.Usage | pricing.Unpriced:
    """The billed tokens of a record's typed fields, or why there are none to price."""
    if attrs.keys().isdisjoint(_TOKEN_KEYS):
        return pricing.Unpriced.NO_TOKENS
    try:
        return pricing.usage_of(
            input_tokens=_count(attrs, am.INPUT_TOKENS),
            cache_read_tokens=_count(attrs, am.CACHE_READ_TOKENS),
            cache_write_tokens=_count(attrs, am.CACHE_WRITE_TOKENS),
            cache_write_5m_tokens=_count(attrs, am.CACHE_WRITE_5M_TOKENS),
            cache_write_1h_tokens=_count(attrs, am.CACHE_WRITE_1H_TOKENS),
            output_tokens=_count(attrs, am.OUTPUT_TOKENS),
            reasoning_tokens=_count(attrs, am.REASONING_TOKENS),
        )
    except _Invalid:
        return pricing.Unpriced.INVALID_USAGE


class CostProcessor(Processor):
    def __init__(self, name: str, config: CostConfig) -> None:
        super().__init__(name, config)
        self.config: CostConfig = config
        self.book = pricing.load(
            config.resolved_pricing_file(), include_shipped=config.include_shipped
        )
        self._threshold = Decimal(repr(config.discrepancy_threshold))
        self._lock = threading.Lock()
        self._logged: set[tuple[str, str, str]] = set()
        self._labels: set[tuple[str, str]] = set()
        self._priced = {s: PRICED.labels(name, s.value) for s in (Signal.LOGS, Signal.TRACES)}

    def consume_logs(self, data: Logs) -> Logs | None:
        priced = _PRICED_EVENTS
        for record in data.records:
            event = record.attributes.get(am.EVENT)
            if event.__class__ is str and event in priced:
                ts = record.time_unix_nano or record.observed_time_unix_nano
                self.enrich(record.attributes, ts, Signal.LOGS)
        return data

    def consume_traces(self, data: Traces) -> Traces | None:
        priced = _PRICED_EVENTS
        for span in data.spans:
            event = span.attributes.get(am.EVENT)
            if event.__class__ is str and event in priced:
                ts = span.start_time_unix_nano or span.end_time_unix_nano
                self.enrich(span.attributes, ts, Signal.TRACES)
        return data

    def enrich(self, attrs: dict[str, Any], time_unix_nano: int, signal: Signal) -> None:
        """Set computed cost, cost_usd and cost_source on one api_call record, in place."""
        event = attrs.get(am.EVENT)
        if not isinstance(event, str) or event not in _PRICED_EVENTS:
            return
        provider = attrs.get(am.PROVIDER)
        provider = provider if isinstance(provider, str) else ""
        model = attrs.get(am.MODEL)
        model = model if isinstance(model, str) else ""
        day = pricing.day_of(time_unix_nano)
        reported = _float(attrs[am.COST_USD_REPORTED]) if am.COST_USD_REPORTED in attrs else None
        split_unknown = attrs.get(am.CACHE_WRITE_SPLIT_UNKNOWN) is True
        cost = pricing.call_cost(
            self.book,
            provider,
            model,
            day,
            usage_of(attrs) if model else pricing.Unpriced.NO_MODEL,
            reported,
            one_request=event != am.EventType.API_USAGE.value,
            cost_source=self.config.cost_source,
            fallback=self.config.fallback,
            cache_split_unknown=split_unknown,
        )
        outcome = cost.outcome
        if isinstance(outcome, pricing.Priced):
            self._priced[signal].inc()
            if provider and self.book.canonical_provider(provider) is None:
                self._log_once(
                    ("borrowed", provider, model),
                    "%s: provider %r is not in the price book; model %r priced as %s/%s",
                    provider,
                    model,
                    outcome.provider,
                    outcome.model,
                )
            if (
                reported is not None
                and not split_unknown  # differs by the 1h writes: counted apart, below
                and self._differs(reported, outcome.list_usd)
            ):
                DISCREPANCIES.labels(self.name, *self._label(provider, model)).inc()
        else:
            self._unpriced(outcome, provider, model)
        computed = cost.computed_usd
        if split_unknown and cost.reported_usd is not None:
            labels = self._label(provider, model)
            SPLIT_UNKNOWN.labels(self.name, *labels).inc()
            for figure, usd in (("reported", cost.reported_usd), ("computed", computed)):
                if usd is not None and usd >= 0:
                    SPLIT_UNKNOWN_USD.labels(self.name, *labels, figure).inc(float(usd))
        # set, replace or remove: running twice gives the same record
        if computed is None:
            attrs.pop(am.COST_USD_COMPUTED, None)
        else:
            attrs[am.COST_USD_COMPUTED] = float(computed)
        if cost.cost_usd is None:
            attrs.pop(am.COST_USD, None)
        else:
            attrs[am.COST_USD] = float(cost.cost_usd)
        if cost.cost_source is None:
            attrs.pop(COST_SOURCE, None)
        else:
            attrs[COST_SOURCE] = cost.cost_source

    def _differs(self, reported: float, list_usd: Decimal) -> bool:
        diff = abs(Decimal(repr(reported)) - list_usd)
        if list_usd == 0:
            return diff > 0
        return diff / list_usd > self._threshold

    def _unpriced(self, reason: str, provider: str, model: str) -> None:
        label_provider, label_model = self._label(provider, model)
        UNPRICED.labels(self.name, str(reason), label_provider, label_model).inc()
        if reason not in (pricing.Unpriced.UNKNOWN_MODEL, pricing.Unpriced.NO_PRICE_ON_DATE):
            return
        if reason == pricing.Unpriced.UNKNOWN_MODEL:
            message = (
                "%s: model %r (provider %r) is not in the price book: its calls get no computed "
                "cost; add it with a pricing_file"
            )
        else:
            message = (
                "%s: model %r (provider %r) has no price in effect on some record's date: those "
                "calls get no computed cost"
            )
        self._log_once((str(reason), provider, model), message, model, provider)

    def _log_once(self, key: tuple[str, str, str], message: str, *args: object) -> None:
        with self._lock:
            if key in self._logged or len(self._logged) >= MAX_MODEL_LABELS:
                return
            self._logged.add(key)
        log.warning(message, self.name, *args)

    def _label(self, provider: str, model: str) -> tuple[str, str]:
        pair = (provider, model)
        with self._lock:
            if pair in self._labels:
                return pair
            if len(self._labels) < MAX_MODEL_LABELS:
                self._labels.add(pair)
                return pair
        return ("_other", "_other")


FACTORY: Factory[CostProcessor] = Factory(
    type_name="cost",
    kind="processor",
    config_class=CostConfig,
    create=lambda name, config: CostProcessor(name, config),
    signals=frozenset({Signal.LOGS, Signal.TRACES, Signal.METRICS}),
)
