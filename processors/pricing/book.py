"""The price book in memory: lookups by provider, model and day, and the pure cost functions.

Everything here works on typed fields (provider, model, day, token counts, the agent's reported
cost), never on telemetry records, so the ``cost`` processor and ``agentwatch reprice`` price
the same call the same way. Rates are held as ``Decimal`` so that a bill adds up to the cent
exactly as the vendor's does.
"""

from __future__ import annotations

import bisect
import enum
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

from processors.pricing.spec import (
    PER_MILLION,
    RATE_FIELDS,
    BookSpec,
    PriceBookError,
    PriceSpec,
    SourceSpec,
    TierSpec,
    merge_specs,
    read_spec,
    shipped_spec,
    to_decimal,
)


@dataclass(frozen=True)
class Rates:
    """USD per million tokens of each billed class, every fallback already applied."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    reasoning: Decimal


def _rates(explicit: Mapping[str, Decimal]) -> Rates:
    """Fill what a source leaves out the way vendors bill it.

    A model without a cache-read or cache-write price bills those tokens as input (OpenAI bills
    cache writes as ordinary input); without a 1-hour write price, 1-hour writes cost what
    standard writes cost; reasoning costs output unless priced apart.
    """
    inp, out = explicit["input"], explicit["output"]
    cache_write = explicit.get("cache_write", inp)
    return Rates(
        input=inp,
        output=out,
        cache_read=explicit.get("cache_read", inp),
        cache_write=cache_write,
        cache_write_1h=explicit.get("cache_write_1h", cache_write),
        reasoning=explicit.get("reasoning", out),
    )


def _explicit(spec: PriceSpec | TierSpec) -> dict[str, Decimal]:
    return {f: to_decimal(v) for f in RATE_FIELDS if (v := getattr(spec, f)) is not None}


@dataclass(frozen=True)
class Price:
    """One model's rates from ``effective_from`` until the next price of the same model."""

    effective_from: date
    base: Rates
    tiers: tuple[tuple[int, Rates], ...] = ()
    """(prompt tokens the tier starts above, its rates), ascending."""

    def rates_for(self, prompt_tokens: int) -> tuple[Rates, int | None]:
        """Rates of the highest tier the prompt exceeds (strictly), with that tier's threshold."""
        chosen, above = self.base, None
        for threshold, rates in self.tiers:
            if prompt_tokens > threshold:
                chosen, above = rates, threshold
        return chosen, above


@dataclass(frozen=True)
class ModelPrices:
    provider: str
    model: str
    aliases: tuple[str, ...]
    prices: tuple[Price, ...]
    """Ascending by ``effective_from``."""

    def on(self, day: date) -> Price | None:
        """The price in effect on ``day``; ``None`` before the first one took effect."""
        i = bisect.bisect_right([p.effective_from for p in self.prices], day)
        return self.prices[i - 1] if i else None


@dataclass(frozen=True)
class Usage:
    """The billed tokens of one call, in the agent event model's convention.

    ``cache_write`` counts every cache write; ``cache_write_1h`` is the part written for an hour
    (the rest is priced as a standard, 5-minute, write); ``reasoning`` is part of ``output``.
    """

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    output: int = 0
    reasoning: int = 0

    @property
    def prompt_tokens(self) -> int:
        """What providers compare with a long-context threshold: the whole prompt, cached or not."""
        return self.input + self.cache_read + self.cache_write


class Unpriced(enum.StrEnum):
    """Why a call has no computed cost; the value is the ``reason`` label of the counters."""

    UNKNOWN_MODEL = "unknown_model"
    NO_PRICE_ON_DATE = "no_price_on_date"
    INVALID_USAGE = "invalid_usage"
    NO_TOKENS = "no_tokens"
    """The record carries no token count at all (``call_cost`` only, never ``price``)."""
    NO_MODEL = "no_model"
    """The record names no model (``call_cost`` only, never ``price``)."""


@dataclass(frozen=True)
class Priced:
    provider: str
    model: str
    """The book's name for the model (an alias or snapshot name resolves to it)."""
    effective_from: date
    tier_above: int | None
    list_usd: Decimal
    """At list price, for comparing with what an agent reports."""
    multiplier: Decimal
    """The discount in effect (1 without one)."""

    @property
    def usd(self) -> Decimal:
        return self.list_usd * self.multiplier


def cost_of(rates: Rates, usage: Usage) -> Decimal | None:
    """List cost in USD; ``None`` when the token counts contradict each other."""
    if min(usage.input, usage.cache_read, usage.cache_write, usage.cache_write_1h) < 0:
        return None
    if usage.output < 0 or usage.reasoning < 0 or usage.cache_write_1h > usage.cache_write:
        return None
    total = (
        usage.input * rates.input
        + usage.cache_read * rates.cache_read
        + (usage.cache_write - usage.cache_write_1h) * rates.cache_write
        + usage.cache_write_1h * rates.cache_write_1h
    )
    if rates.reasoning != rates.output and usage.reasoning:
        if usage.reasoning > usage.output:
            return None
        total += (usage.output - usage.reasoning) * rates.output + usage.reasoning * rates.reasoning
    else:
        total += usage.output * rates.output
    return total / PER_MILLION


_BRACKET_SUFFIX = re.compile(r"\[[^\]]*\]$")
_FIND_MEMO_SIZE = 4096


@dataclass(frozen=True)
class _Discount:
    provider: str
    model: str | None
    multiplier: Decimal
    effective_from: date


@dataclass
class PriceBook:
    """Lookups by provider, model and day. Threads share one: its only state after ``build``
    is a bounded memo of name lookups, and single dict operations are atomic."""

    providers: dict[str, dict[str, ModelPrices]]
    """provider -> every normalised model name and alias -> its prices."""
    provider_aliases: dict[str, str]
    discounts: tuple[_Discount, ...] = ()
    source: SourceSpec | None = None
    _order: tuple[str, ...] = field(default=())
    _found: dict[tuple[str | None, str], ModelPrices | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._order = tuple(self.providers)

    def canonical_provider(self, provider: str | None) -> str | None:
        if not provider:
            return None
        p = provider.strip().lower()
        return self.provider_aliases.get(p, p if p in self.providers else None)

    def normalise_model(self, model: str) -> str:
        """Lower case, without ``models/``, a ``provider/`` prefix or a ``[1m]``-style suffix."""
        m = _BRACKET_SUFFIX.sub("", model.strip().lower())
        m = m.removeprefix("models/")
        prefix, slash, rest = m.partition("/")
        if slash and (prefix in self.providers or prefix in self.provider_aliases):
            m = rest
        return m

    def find(self, provider: str | None, model: str) -> ModelPrices | None:
        """A provider the book knows is authoritative for its models; only when the provider is
        missing or unknown is the model looked up across providers, first-party vendors first."""
        key = (provider, model)
        try:
            return self._found[key]
        except KeyError:
            pass
        found = self._find(provider, model)
        if len(self._found) >= _FIND_MEMO_SIZE:
            self._found.clear()  # names come from clients: keep the memo bounded
        self._found[key] = found
        return found

    def _find(self, provider: str | None, model: str) -> ModelPrices | None:
        name = self.normalise_model(model)
        canonical = self.canonical_provider(provider)
        if canonical is not None:
            return self.providers[canonical].get(name)
        for p in self._order:
            found = self.providers[p].get(name)
            if found is not None:
                return found
        return None

    def multiplier(self, provider: str | None, model: str | None, day: date) -> Decimal:
        """The discount on ``day``: one for the model beats one for its provider; the latest
        ``effective_from`` on or before ``day`` wins."""
        if not self.discounts:
            return Decimal(1)
        canonical = self.canonical_provider(provider)
        found = self.find(provider, model) if model else None
        if found is not None:
            canonical = found.provider
        best: tuple[int, date, Decimal] | None = None
        for d in self.discounts:
            if d.provider != canonical or d.effective_from > day:
                continue
            if d.model is not None and (found is None or d.model != found.model):
                continue
            key = (1 if d.model is not None else 0, d.effective_from, d.multiplier)
            if best is None or key[:2] >= best[:2]:
                best = key
        return best[2] if best is not None else Decimal(1)

    def price(
        self,
        provider: str | None,
        model: str,
        day: date,
        usage: Usage,
        *,
        one_request: bool = True,
    ) -> Priced | Unpriced:
        """``one_request=False`` for usage summed over many calls (``api_usage``): long-context
        tiers apply to one request's prompt, so a sum is priced at base rates."""
        found = self.find(provider, model)
        if found is None:
            return Unpriced.UNKNOWN_MODEL
        price = found.on(day)
        if price is None:
            return Unpriced.NO_PRICE_ON_DATE
        rates, above = price.rates_for(usage.prompt_tokens) if one_request else (price.base, None)
        usd = cost_of(rates, usage)
        if usd is None:
            return Unpriced.INVALID_USAGE
        return Priced(
            provider=found.provider,
            model=found.model,
            effective_from=price.effective_from,
            tier_above=above,
            list_usd=usd,
            multiplier=self.multiplier(found.provider, found.model, day),
        )

    def models(self) -> Iterable[ModelPrices]:
        """Every model once (aliases not repeated)."""
        for by_name in self.providers.values():
            seen: set[int] = set()
            for mp in by_name.values():
                if id(mp) not in seen:
                    seen.add(id(mp))
                    yield mp


def build(spec: BookSpec) -> PriceBook:
    """Index a validated spec; cross-entry problems (clashing aliases, a model without a price,
    a discount for a model the book lacks) are errors with their path."""
    errors: list[str] = []
    providers: dict[str, dict[str, ModelPrices]] = {}
    provider_aliases: dict[str, str] = {}
    for raw_pname, pspec in spec.providers.items():
        pname = raw_pname.strip().lower()
        by_name: dict[str, ModelPrices] = providers.setdefault(pname, {})
        for alias in pspec.aliases:
            a = alias.strip().lower()
            if provider_aliases.get(a, pname) != pname or (a in spec.providers and a != pname):
                errors.append(f"providers.{raw_pname}.aliases: '{alias}' already names a provider")
            provider_aliases[a] = pname
        for raw_mname, mspec in pspec.models.items():
            where = f"providers.{raw_pname}.models.{raw_mname}"
            if not mspec.prices:
                errors.append(f"{where}.prices: a model needs at least one price")
                continue
            days = [p.effective_from for p in mspec.prices]
            if len(set(days)) != len(days):
                errors.append(f"{where}.prices: two prices with the same effective_from")
                continue
            prices = []
            for i, pspec_ in enumerate(sorted(mspec.prices, key=lambda p: p.effective_from)):
                base = _explicit(pspec_)
                tiers = []
                for tspec in sorted(pspec_.tiers, key=lambda t: t.above_prompt_tokens):
                    tiers.append((tspec.above_prompt_tokens, _rates({**base, **_explicit(tspec)})))
                if len({t for t, _ in tiers}) != len(tiers):
                    errors.append(f"{where}.prices.{i}.tiers: two tiers with the same threshold")
                prices.append(Price(pspec_.effective_from, _rates(base), tuple(tiers)))
            mname = raw_mname.strip().lower()
            entry = ModelPrices(
                provider=pname,
                model=mname,
                aliases=tuple(a.strip().lower() for a in mspec.aliases),
                prices=tuple(prices),
            )
            for n in (mname, *entry.aliases):
                other = by_name.get(n)
                if other is not None and other is not entry:
                    errors.append(f"{where}: name '{n}' already belongs to model '{other.model}'")
                by_name[n] = entry
    book = PriceBook(providers=providers, provider_aliases=provider_aliases, source=spec.source)
    discounts = []
    for i, dspec in enumerate(spec.discounts):
        dprovider = book.canonical_provider(dspec.provider)
        if dprovider is None:
            errors.append(f"discounts.{i}.provider: no provider '{dspec.provider}' in the book")
            continue
        model = None
        if dspec.model is not None:
            found = book.find(dprovider, dspec.model)
            if found is None:
                errors.append(f"discounts.{i}.model: no model '{dspec.model}' under '{dprovider}'")
                continue
            model = found.model
        discounts.append(
            _Discount(dprovider, model, to_decimal(dspec.multiplier), dspec.effective_from)
        )
    if errors:
        raise PriceBookError(errors)
    book.discounts = tuple(discounts)
    return book


def load(
    pricing_file: str | os.PathLike[str] | None = None, *, include_shipped: bool = True
) -> PriceBook:
    """The shipped book with a user's file on top (or the user's file alone)."""
    spec = shipped_spec() if include_shipped else BookSpec()
    if pricing_file is not None:
        spec = merge_specs(spec, read_spec(pricing_file))
    return build(spec)


# --- one call's cost: the rules the cost processor and reprice share ---------------------------

CostSource = Literal["computed", "reported"]
"""Which figure a config bills: the price book's or the agent's own."""
SPLIT_UNKNOWN_SOURCE = "reported_cache_split_unknown"
"""``cost_source`` of a call billed at the agent's figure because its cache writes have no
5m/1h split: a price-book figure would bill every 1h write at the 5m rate."""


def usage_of(
    *,
    input_tokens: int | None = None,
    cache_read_tokens: int | None = None,
    cache_write_tokens: int | None = None,
    cache_write_5m_tokens: int | None = None,
    cache_write_1h_tokens: int | None = None,
    output_tokens: int | None = None,
    reasoning_tokens: int | None = None,
) -> Usage | Unpriced:
    """The billed tokens of a record from the counts it carries (``None``: not reported).

    ``NO_TOKENS`` when it carries none (reasoning alone does not count: it is part of output);
    ``INVALID_USAGE`` when the 5m and 1h writes add up to more than all cache writes. Without a
    total, the cache writes are the sum of the split.
    """
    if (
        input_tokens is None
        and cache_read_tokens is None
        and cache_write_tokens is None
        and cache_write_5m_tokens is None
        and cache_write_1h_tokens is None
        and output_tokens is None
    ):
        return Unpriced.NO_TOKENS
    written_1h = cache_write_1h_tokens or 0
    total = cache_write_tokens
    if total is None:
        total = (cache_write_5m_tokens or 0) + written_1h
    elif cache_write_5m_tokens is not None and cache_write_5m_tokens + written_1h > total:
        return Unpriced.INVALID_USAGE
    return Usage(
        input=input_tokens or 0,
        cache_read=cache_read_tokens or 0,
        cache_write=total,
        cache_write_1h=written_1h,
        output=output_tokens or 0,
        reasoning=reasoning_tokens or 0,
    )


@dataclass(frozen=True, slots=True)
class CallCost:
    """What one call costs: the book's figure, the agent's, and the one to bill."""

    outcome: Priced | Unpriced
    """The price book's answer, or why it has none."""
    reported_usd: Decimal | None
    """The agent's own (list-price) figure with the discount in effect applied."""
    cost_usd: Decimal | None
    """The figure to bill (``agentwatch.cost_usd``); ``None`` when there is none."""
    cost_source: str | None
    """Which figure ``cost_usd`` is: ``computed``, ``reported`` or ``SPLIT_UNKNOWN_SOURCE``."""

    @property
    def computed_usd(self) -> Decimal | None:
        """The price book's figure, discount applied (``agentwatch.cost_usd_computed``)."""
        return self.outcome.usd if isinstance(self.outcome, Priced) else None


def call_cost(
    book: PriceBook,
    provider: str,
    model: str,
    day: date,
    usage: Usage | Unpriced,
    reported_usd: float | None,
    *,
    one_request: bool = True,
    cost_source: CostSource = "computed",
    fallback: bool = True,
    cache_split_unknown: bool = False,
) -> CallCost:
    """Price one call and choose the figure to bill.

    ``provider`` and ``model`` as the record names them (empty: not named); ``usage`` from
    ``usage_of``; ``reported_usd`` the agent's finite figure or ``None``; ``one_request=False``
    for an interval's total (``api_usage``, priced at base rates). A discount is what you pay,
    so it applies to the agent's list-price figure as well. With ``fallback`` the other figure
    stands in when the chosen one is missing; with ``cache_split_unknown`` the agent's figure
    wins whenever there is one.
    """
    outcome: Priced | Unpriced
    if not model:
        outcome = Unpriced.NO_MODEL
    elif isinstance(usage, Unpriced):
        outcome = usage
    else:
        outcome = book.price(provider or None, model, day, usage, one_request=one_request)
    computed = outcome.usd if isinstance(outcome, Priced) else None
    reported = None
    if reported_usd is not None:
        reported = to_decimal(reported_usd) * book.multiplier(provider, model, day)
    primary, other = (computed, reported) if cost_source == "computed" else (reported, computed)
    source: str | None = cost_source
    chosen = primary
    if chosen is None and fallback and other is not None:
        chosen = other
        source = "reported" if cost_source == "computed" else "computed"
    if chosen is None:
        source = None
    if cache_split_unknown and reported is not None:
        chosen, source = reported, SPLIT_UNKNOWN_SOURCE
    return CallCost(outcome, reported, chosen, source)


def day_of(time_unix_nano: int) -> date:
    """The UTC day whose price applies; a missing (0) or absurd timestamp means today."""
    try:
        if time_unix_nano > 0:
            return datetime.fromtimestamp(time_unix_nano / 1e9, UTC).date()
    except (OverflowError, ValueError, OSError):
        pass
    return datetime.now(UTC).date()
