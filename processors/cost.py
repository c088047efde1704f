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
from collections.abc import MutableSequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from pydantic import Field

from collector import agent_model as am
from collector import telemetry
from collector.component import (
    ComponentConfig,
    ConfigContext,
    Factory,
    LogsData,
    Processor,
    Signal,
    TracesData,
)
from processors import pricing

log = logging.getLogger("agentwatch.processor.cost")

COST_SOURCE = am.COST_SOURCE
"""Which figure ``agentwatch.cost_usd`` holds: ``computed``, ``reported``, or
``reported_cache_split_unknown`` (see ``SPLIT_UNKNOWN``)."""
SPLIT_UNKNOWN_SOURCE = "reported_cache_split_unknown"

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


_WANTED = frozenset(
    {
        am.EVENT,
        am.PROVIDER,
        am.MODEL,
        am.INPUT_TOKENS,
        am.CACHE_READ_TOKENS,
        am.CACHE_WRITE_TOKENS,
        am.CACHE_WRITE_5M_TOKENS,
        am.CACHE_WRITE_1H_TOKENS,
        am.OUTPUT_TOKENS,
        am.REASONING_TOKENS,
        am.COST_USD_REPORTED,
        am.COST_USD_COMPUTED,
        am.COST_USD,
        COST_SOURCE,
        am.CACHE_WRITE_SPLIT_UNKNOWN,
    }
)
_PRICED_EVENTS = frozenset({am.EventType.API_CALL.value, am.EventType.API_USAGE.value})
_OUTPUTS = frozenset({am.COST_USD_COMPUTED, am.COST_USD, COST_SOURCE})
_TOKEN_ATTRS = (
    am.INPUT_TOKENS,
    am.CACHE_READ_TOKENS,
    am.CACHE_WRITE_TOKENS,
    am.CACHE_WRITE_5M_TOKENS,
    am.CACHE_WRITE_1H_TOKENS,
    am.OUTPUT_TOKENS,
)


class _Invalid(Exception):
    pass


def _int(value: AnyValue | None) -> int | None:
    """A token count; normalisers write ints, but a string or integral double is accepted."""
    if value is None:
        return None
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return value.int_value
    if kind == "double_value" and value.double_value.is_integer():
        return int(value.double_value)
    if kind == "string_value" and value.string_value.strip().lstrip("-").isdigit():
        return int(value.string_value)
    raise _Invalid


def _float(value: AnyValue | None) -> float | None:
    if value is None:
        return None
    kind = value.WhichOneof("value")
    if kind == "double_value":
        v = value.double_value
    elif kind == "int_value":
        v = float(value.int_value)
    elif kind == "string_value":
        try:
            v = float(value.string_value)
        except ValueError:
            return None
    else:
        return None
    return v if math.isfinite(v) else None


def usage_of(found: dict[str, AnyValue]) -> pricing.Usage | None:
    """The billed tokens of a record; ``None`` when it carries none. Raises ``_Invalid``."""
    if not any(k in found for k in _TOKEN_ATTRS):
        return None
    w5 = _int(found.get(am.CACHE_WRITE_5M_TOKENS))
    w1 = _int(found.get(am.CACHE_WRITE_1H_TOKENS)) or 0
    total = _int(found.get(am.CACHE_WRITE_TOKENS))
    if total is None:
        total = (w5 or 0) + w1
    elif w5 is not None and w5 + w1 > total:
        raise _Invalid
    return pricing.Usage(
        input=_int(found.get(am.INPUT_TOKENS)) or 0,
        cache_read=_int(found.get(am.CACHE_READ_TOKENS)) or 0,
        cache_write=total,
        cache_write_1h=w1,
        output=_int(found.get(am.OUTPUT_TOKENS)) or 0,
        reasoning=_int(found.get(am.REASONING_TOKENS)) or 0,
    )


class CostProcessor(Processor):
    def __init__(self, name: str, config: CostConfig) -> None:
        super().__init__(name, config)
        self.cfg = config
        self.book = pricing.load(
            config.resolved_pricing_file(), include_shipped=config.include_shipped
        )
        self._threshold = Decimal(repr(config.discrepancy_threshold))
        self._lock = threading.Lock()
        self._logged: set[tuple[str, str, str]] = set()
        self._labels: set[tuple[str, str]] = set()
        self._priced = {s: PRICED.labels(name, s.value) for s in (Signal.LOGS, Signal.TRACES)}

    def consume_logs(self, data: LogsData) -> LogsData | None:
        for rl in data.resource_logs:
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    ts = rec.time_unix_nano or rec.observed_time_unix_nano
                    self.enrich(rec.attributes, ts, Signal.LOGS)
        return data

    def consume_traces(self, data: TracesData) -> TracesData | None:
        for rs in data.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    ts = span.start_time_unix_nano or span.end_time_unix_nano
                    self.enrich(span.attributes, ts, Signal.TRACES)
        return data

    def enrich(self, attrs: MutableSequence[KeyValue], time_unix_nano: int, signal: Signal) -> None:
        """Set computed cost, cost_usd and cost_source on one api_call record, in place."""
        found: dict[str, AnyValue] = {}
        where: dict[str, int] = {}
        for i, kv in enumerate(attrs):
            key = kv.key
            if key in _WANTED:
                found[key] = kv.value
                if key in _OUTPUTS:
                    where[key] = i
        event = found.get(am.EVENT)
        if event is None or event.string_value not in _PRICED_EVENTS:
            return
        provider = found[am.PROVIDER].string_value if am.PROVIDER in found else ""
        model = found[am.MODEL].string_value if am.MODEL in found else ""
        day = _day_of(time_unix_nano)
        reported = _float(found.get(am.COST_USD_REPORTED))

        summed = event.string_value == am.EventType.API_USAGE.value
        outcome = self._price(provider, model, day, found, one_request=not summed)
        computed: Decimal | None = None
        list_usd: Decimal | None = None
        if isinstance(outcome, pricing.Priced):
            computed, list_usd = outcome.usd, outcome.list_usd
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
        else:
            self._unpriced(outcome, provider, model)

        split = found.get(am.CACHE_WRITE_SPLIT_UNKNOWN)
        split_unknown = split is not None and split.bool_value
        if (
            reported is not None
            and list_usd is not None
            and not split_unknown  # differs by the 1h writes: counted apart, below
            and self._differs(reported, list_usd)
        ):
            DISCREPANCIES.labels(self.name, *self._label(provider, model)).inc()

        # A discount is what you pay: it applies to the agent's list-price figure as well.
        reported_billed = None
        if reported is not None:
            reported_billed = Decimal(repr(reported)) * self.book.multiplier(provider, model, day)
        primary, other = (
            (computed, reported_billed)
            if self.cfg.cost_source == "computed"
            else (reported_billed, computed)
        )
        source: str | None = self.cfg.cost_source
        chosen = primary
        if chosen is None and self.cfg.fallback and other is not None:
            chosen = other
            source = "reported" if self.cfg.cost_source == "computed" else "computed"
        if chosen is None:
            source = None
        if split_unknown and reported_billed is not None:
            chosen, source = reported_billed, SPLIT_UNKNOWN_SOURCE
            labels = self._label(provider, model)
            SPLIT_UNKNOWN.labels(self.name, *labels).inc()
            for figure, usd in (("reported", reported_billed), ("computed", computed)):
                if usd is not None and usd >= 0:
                    SPLIT_UNKNOWN_USD.labels(self.name, *labels, figure).inc(float(usd))

        _write(
            attrs,
            where,
            {
                am.COST_USD_COMPUTED: None if computed is None else float(computed),
                am.COST_USD: None if chosen is None else float(chosen),
                COST_SOURCE: source,
            },
        )

    def _price(
        self,
        provider: str,
        model: str,
        day: date,
        found: dict[str, AnyValue],
        *,
        one_request: bool = True,
    ) -> pricing.Priced | pricing.Unpriced | str:
        if not model:
            return "no_model"
        try:
            usage = usage_of(found)
        except _Invalid:
            return pricing.Unpriced.INVALID_USAGE
        if usage is None:
            return "no_tokens"
        return self.book.price(provider or None, model, day, usage, one_request=one_request)

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


def _day_of(time_unix_nano: int) -> date:
    """The UTC day whose price applies; a missing (0) or absurd timestamp means today."""
    try:
        if time_unix_nano > 0:
            return datetime.fromtimestamp(time_unix_nano / 1e9, UTC).date()
    except (OverflowError, ValueError, OSError):
        pass
    return datetime.now(UTC).date()


def _write(
    attrs: MutableSequence[KeyValue], where: dict[str, int], values: dict[str, float | str | None]
) -> None:
    """Set, replace or (for ``None``) remove the processor's own attributes, so that running
    twice gives the same record; ``where`` holds their current positions."""
    doomed = []
    for key, value in values.items():
        i = where.get(key)
        if value is None:
            if i is not None:
                doomed.append(i)
            continue
        if isinstance(value, float):
            any_value = AnyValue(double_value=value)
        else:
            any_value = AnyValue(string_value=value)
        if i is None:
            attrs.append(KeyValue(key=key, value=any_value))
        else:
            attrs[i].value.CopyFrom(any_value)
    for i in sorted(doomed, reverse=True):  # appends went past these positions
        del attrs[i]


FACTORY: Factory[CostProcessor] = Factory(
    type_name="cost",
    kind="processor",
    config_class=CostConfig,
    create=lambda name, cfg: CostProcessor(name, cfg),
    signals=frozenset({Signal.LOGS, Signal.TRACES, Signal.METRICS}),
)
