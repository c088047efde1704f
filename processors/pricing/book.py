"""The price book: what one model API call cost, by provider, model and day.

Prices are facts, so they live in a data file (``pricebook.yaml`` beside this module) imported
from a public, versioned source (the price table inside the ``litellm`` wheel) rather than in
code, and each price carries the day it took effect so that old data keeps its old price after
a change. A user ``pricing_file`` in the same format overrides or extends the shipped book and
may add negotiated discounts. Rates are USD per million tokens, held as ``Decimal`` so that a
bill adds up to the cent exactly as the vendor's does.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

log = logging.getLogger("agentwatch.pricing")

SHIPPED_PATH = Path(__file__).with_name("pricebook.yaml")
EPOCH = date(1970, 1, 1)
"""``effective_from`` of a price whose start is unknown: valid for any data the source covers."""
PER_MILLION = Decimal(1_000_000)
RATE_FIELDS = ("input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning")


class PriceBookError(Exception):
    """A price book that cannot be used; ``errors`` name the offending path inside the file."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


# --- file format ------------------------------------------------------------------------------


def _number(value: object) -> object:
    # YAML "3.5" (quoted) or true would otherwise be coerced silently into a price.
    if isinstance(value, bool | str):
        raise ValueError("not a number")
    return value


def _day(value: object) -> object:
    # pydantic reads an int as a Unix timestamp; 20250929 is far more likely a typo'd date.
    if isinstance(value, bool | int | float):
        raise ValueError("not a date (write YYYY-MM-DD)")
    return value


Rate = Annotated[float, BeforeValidator(_number), Field(ge=0, allow_inf_nan=False)]
Day = Annotated[date, BeforeValidator(_day)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TierSpec(_Spec):
    """Rates that apply instead of the base ones when the prompt exceeds a size."""

    above_prompt_tokens: int = Field(gt=0)
    input: Rate | None = None
    output: Rate | None = None
    cache_read: Rate | None = None
    cache_write: Rate | None = None
    cache_write_1h: Rate | None = None
    reasoning: Rate | None = None


class PriceSpec(_Spec):
    effective_from: Day = EPOCH
    input: Rate
    output: Rate
    cache_read: Rate | None = None
    cache_write: Rate | None = None
    cache_write_1h: Rate | None = None
    reasoning: Rate | None = None
    tiers: list[TierSpec] = Field(default_factory=list)
    note: str | None = None


class ModelSpec(_Spec):
    aliases: list[str] = Field(default_factory=list)
    prices: list[PriceSpec] = Field(default_factory=list)


class ProviderSpec(_Spec):
    aliases: list[str] = Field(default_factory=list)
    models: dict[str, ModelSpec] = Field(default_factory=dict)


class DiscountSpec(_Spec):
    provider: str
    model: str | None = None
    multiplier: Annotated[float, BeforeValidator(_number), Field(gt=0, allow_inf_nan=False)]
    effective_from: Day = EPOCH
    note: str | None = None


class SourceSpec(_Spec):
    package: str | None = None
    version: str | None = None
    file: str | None = None
    sha256: str | None = None
    url: str | None = None
    retrieved: Day | None = None
    note: str | None = None


class BookSpec(_Spec):
    """One price book file, shipped or the user's."""

    source: SourceSpec | None = None
    currency: Literal["USD"] = "USD"
    unit: Literal["per_million_tokens"] = "per_million_tokens"
    providers: dict[str, ProviderSpec] = Field(default_factory=dict)
    discounts: list[DiscountSpec] = Field(default_factory=list)


_PYDANTIC_MESSAGES = {
    "float_parsing": "not a number",
    "float_type": "not a number",
    "int_parsing": "not a whole number",
    "int_type": "not a whole number",
    "int_from_float": "not a whole number",
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
    "date_from_datetime_parsing": "not a date (write YYYY-MM-DD)",
    "date_parsing": "not a date (write YYYY-MM-DD)",
    "date_type": "not a date (write YYYY-MM-DD)",
    "greater_than_equal": "must not be negative",
    "finite_number": "must be a finite number",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
}


def parse_spec(data: object) -> BookSpec:
    """Validate one decoded price book; errors read ``providers.openai.models.gpt-5...: why``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PriceBookError(["expected a mapping with providers (and optionally discounts)"])
    try:
        return BookSpec.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = _PYDANTIC_MESSAGES.get(err["type"])
            if msg is None:
                msg = str(err["msg"]).removeprefix("Value error, ")
            errors.append(f"{where}: {msg}")
        raise PriceBookError(errors) from None


def read_spec(path: str | os.PathLike[str]) -> BookSpec:
    """Read a YAML (or JSON) price book file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PriceBookError(["no such file"]) from None
    except OSError as exc:
        raise PriceBookError([f"cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise PriceBookError([f"not valid YAML: {exc}"]) from None
    return parse_spec(data)


@lru_cache(maxsize=1)
def shipped_spec() -> BookSpec:
    return read_spec(SHIPPED_PATH)


# --- the book in memory -----------------------------------------------------------------------


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


def _dec(value: float) -> Decimal:
    # repr() is the shortest text that round-trips, so 3.75 becomes Decimal("3.75") exactly.
    return Decimal(repr(value))


def _explicit(spec: PriceSpec | TierSpec) -> dict[str, Decimal]:
    return {f: _dec(v) for f in RATE_FIELDS if (v := getattr(spec, f)) is not None}


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
    UNKNOWN_MODEL = "unknown_model"
    NO_PRICE_ON_DATE = "no_price_on_date"
    INVALID_USAGE = "invalid_usage"


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


def merge_specs(base: BookSpec, override: BookSpec) -> BookSpec:
    """``override`` on top of ``base``: a model named (or aliased) in both keeps ``base``'s prices
    except where ``override`` has one with the same ``effective_from``; new models and providers
    are added; aliases and discounts accumulate; ``override``'s source note is dropped."""
    providers = {k.lower(): v.model_copy(deep=True) for k, v in base.providers.items()}
    alias_to_provider = {a.lower(): k for k, v in providers.items() for a in v.aliases}
    for raw_name, ospec in override.providers.items():
        pname = raw_name.lower()
        pname = alias_to_provider.get(pname, pname)
        target = providers.setdefault(pname, ProviderSpec())
        target.aliases = _union(target.aliases, ospec.aliases)
        index = {}
        for mname, mspec in target.models.items():
            for n in (mname, *mspec.aliases):
                index[n.lower()] = mname
        for mname, mspec in ospec.models.items():
            existing = index.get(mname.lower())
            if existing is None:
                target.models[mname] = mspec.model_copy(deep=True)
                continue
            merged = target.models[existing]
            by_day = {p.effective_from: p for p in merged.prices}
            by_day.update({p.effective_from: p for p in mspec.prices})
            merged.prices = [by_day[d] for d in sorted(by_day)]
            extra = [] if mname.lower() == existing.lower() else [mname]
            merged.aliases = _union(merged.aliases, [*extra, *mspec.aliases])
    return BookSpec(
        source=base.source,
        providers=providers,
        discounts=[*base.discounts, *override.discounts],
    )


def _union(first: list[str], second: Iterable[str]) -> list[str]:
    out = list(first)
    seen = {a.lower() for a in out}
    for a in second:
        if a.lower() not in seen:
            seen.add(a.lower())
            out.append(a)
    return out


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
        discounts.append(_Discount(dprovider, model, _dec(dspec.multiplier), dspec.effective_from))
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


# --- import from LiteLLM ----------------------------------------------------------------------

LITELLM_PROVIDERS: dict[str, str] = {
    "anthropic": "anthropic",
    "openai": "openai",
    "gemini": "gcp.gen_ai",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai-language-models": "gcp.vertex_ai",
    "vertex_ai-anthropic_models": "gcp.vertex_ai",
    "github_copilot": "github_copilot",
}
"""LiteLLM's ``litellm_provider`` -> the ``agentwatch.provider`` value (GenAI semconv names)."""

PROVIDER_ALIASES: dict[str, list[str]] = {
    "gcp.gen_ai": ["gemini", "google", "gcp.gemini", "google_ai_studio"],
    "gcp.vertex_ai": ["vertex_ai", "vertex"],
    "github_copilot": ["copilot", "github"],
}

_LITELLM_MODES = {"chat", "responses", "completion", None}
_LITELLM_FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "output_cost_per_reasoning_token": "reasoning",
}
_LITELLM_TIER = re.compile(
    r"(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
    r"|cache_creation_input_token_cost_above_1hr|cache_creation_input_token_cost"
    r"|output_cost_per_reasoning_token)_above_(\d+)k_tokens"
)
_SNAPSHOT = re.compile(
    r"^(?P<base>.+?)(?:-(?P<ymd>\d{8})|-(?P<iso>\d{4}-\d{2}-\d{2})|@(?P<tag>.+))$"
)


def _per_million(per_token: object) -> float | None:
    if isinstance(per_token, bool) or not isinstance(per_token, int | float):
        return None
    return float((_dec(float(per_token)) * PER_MILLION).normalize())


def _litellm_price(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    price: dict[str, Any] = {}
    for key, name in _LITELLM_FIELDS.items():
        v = _per_million(entry.get(key))
        if v is not None:
            price[name] = v
    if "input" not in price or "output" not in price:
        return None
    if price["input"] == 0 and price["output"] == 0:
        return None  # LiteLLM writes 0 for "free preview" and for "not known" alike
    if price.get("reasoning") == price["output"]:
        del price["reasoning"]
    tiers: dict[int, dict[str, Any]] = {}
    for key, raw in entry.items():
        m = _LITELLM_TIER.fullmatch(key)
        v = _per_million(raw)
        if m and v is not None:
            tiers.setdefault(int(m.group(2)) * 1000, {})[_LITELLM_FIELDS[m.group(1)]] = v
    if tiers:
        price["tiers"] = [
            {"above_prompt_tokens": t, **{f: tiers[t][f] for f in RATE_FIELDS if f in tiers[t]}}
            for t in sorted(tiers)
        ]
    return price


def _snapshot_day(m: re.Match[str]) -> date | None:
    try:
        if m.group("ymd"):
            s = m.group("ymd")
            return date(int(s[:4]), int(s[4:6]), int(s[6:]))
        if m.group("iso"):
            return date.fromisoformat(m.group("iso"))
        tag = m.group("tag")
        if tag and len(tag) == 8 and tag.isdigit():  # Vertex AI: claude-3-5-haiku@20241022
            return date(int(tag[:4]), int(tag[4:6]), int(tag[6:]))
    except ValueError:
        return None
    return None


def import_litellm(
    path: str | os.PathLike[str],
    *,
    providers: Mapping[str, str] | None = None,
    package: str | None = None,
    version: str | None = None,
    retrieved: date | None = None,
    effective_from: date | None = None,
) -> dict[str, Any]:
    """A price book (as a plain dict, see ``to_yaml``) from a LiteLLM-format price JSON.

    Only text models of ``providers`` (LiteLLM provider -> agentwatch provider) are taken. A dated
    snapshot (``-20250929``, ``-2025-08-07``, ``@default``) priced like its undated model becomes
    an alias of it; without ``effective_from``, a price starts on its earliest snapshot's date,
    or on 1970-01-01 when that is unknown. LiteLLM keys for audio, images, batches, flex and
    priority tiers, and OpenAI's 12-hour cache writes are not imported.
    """
    p = Path(path)
    raw_bytes = p.read_bytes()
    try:
        table = json.loads(raw_bytes)
    except json.JSONDecodeError as exc:
        raise PriceBookError([f"not valid JSON: {exc}"]) from None
    if not isinstance(table, dict):
        raise PriceBookError(["expected a JSON object of model name -> prices"])
    mapping = dict(LITELLM_PROVIDERS if providers is None else providers)
    # "vertex_ai-language-models" keys read "vertex_ai/gemini-...": strip "<provider>/".
    prefixes = (*(f"{k.split('-')[0]}/" for k in mapping), "models/")

    collected: dict[str, dict[str, dict[str, Any]]] = {}
    for key, entry in table.items():
        if not isinstance(entry, dict) or key == "sample_spec" or key.startswith("ft:"):
            continue
        target = mapping.get(str(entry.get("litellm_provider")))
        if target is None or entry.get("mode") not in _LITELLM_MODES:
            continue
        price = _litellm_price(entry)
        if price is None:
            continue
        name = key.lower()
        for prefix in prefixes:
            name = name.removeprefix(prefix)
        models = collected.setdefault(target, {})
        prefixed = name != key.lower()
        # LiteLLM's own key for a provider's model carries the provider prefix
        # ("gemini/gemini-exp-1206"); an unprefixed twin is a leftover, so it yields.
        if name in models and models[name] != price and not prefixed:
            log.warning("litellm import: %s/%s listed twice; ignored %r", target, name, key)
            continue
        models[name] = price

    book_providers: dict[str, Any] = {}
    for target in sorted(collected, key=lambda t: list(mapping.values()).index(t)):
        models = collected[target]
        canonical: dict[str, str] = {}
        for name in sorted(models):
            m = _SNAPSHOT.match(name)
            if m and m.group("base") in models and models[m.group("base")] == models[name]:
                canonical[name] = m.group("base")
        out: dict[str, Any] = {}
        for name in sorted(models):
            if name in canonical:
                continue
            aliases = sorted(a for a, base in canonical.items() if base == name)
            days = [
                d for a in (name, *aliases) if (m := _SNAPSHOT.match(a)) and (d := _snapshot_day(m))
            ]
            start = effective_from or (min(days) if days else EPOCH)
            entry_out: dict[str, Any] = {}
            if aliases:
                entry_out["aliases"] = aliases
            entry_out["prices"] = [{"effective_from": start, **models[name]}]
            out[name] = entry_out
        book_providers[target] = {"aliases": PROVIDER_ALIASES.get(target, []), "models": out}

    source: dict[str, Any] = {
        "file": p.name,
        "sha256": hashlib.sha256(raw_bytes).hexdigest(),
        "retrieved": retrieved or date.today(),
    }
    if package:
        source["package"] = package
    if version:
        source["version"] = version
    book = {
        "source": source,
        "currency": "USD",
        "unit": "per_million_tokens",
        "providers": book_providers,
    }
    parse_spec(book)  # what the import writes must load
    return book


def merge_import(base: Mapping[str, Any], imported: Mapping[str, Any], day: date) -> dict[str, Any]:
    """Fold a newer import into an existing book: a model whose latest rates changed gets a new
    price from ``day`` on (its history stays), new models are added, nothing is removed."""
    out = BookSpec.model_validate(base).model_dump(exclude_none=True)
    new = BookSpec.model_validate(imported).model_dump(exclude_none=True)
    for pname, pnew in new["providers"].items():
        pout = out["providers"].setdefault(pname, {"aliases": pnew["aliases"], "models": {}})
        for mname, mnew in pnew["models"].items():
            latest_new = {k: v for k, v in mnew["prices"][-1].items() if k != "effective_from"}
            mout = pout["models"].get(mname)
            if mout is None:
                pout["models"][mname] = mnew
                continue
            mout["aliases"] = _union(mout.get("aliases", []), mnew.get("aliases", []))
            latest = max(mout["prices"], key=lambda p: p["effective_from"])
            rates = {k: v for k, v in latest.items() if k not in ("effective_from", "note")}
            if rates != latest_new:
                mout["prices"].append({"effective_from": day, **latest_new})
    if "source" in imported:
        out["source"] = dict(imported["source"])
    parse_spec(out)
    return out


class _Flow(dict[str, Any]):
    """A mapping written on one line, so a price reads as one row."""


class _FlowList(list[Any]):
    pass


class _BookDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # a shared date object must not become a YAML anchor


_BookDumper.add_representer(
    _Flow, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)
_BookDumper.add_representer(
    _FlowList, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def to_yaml(book: Mapping[str, Any], header: str = "") -> str:
    """The YAML text of a book dict: one line per price, tier, discount and alias list."""

    def shape(node: Any, key: str | None) -> Any:
        if isinstance(node, Mapping):
            if key in ("prices", "discounts"):
                if "tiers" not in node:
                    return _Flow(node)
                rest = {k: v for k, v in node.items() if k != "tiers"}
                return {**rest, "tiers": [_Flow(t) for t in node["tiers"]]}
            return {k: shape(v, k) for k, v in node.items()}
        if isinstance(node, list):
            if key == "aliases":
                return _FlowList(node)
            return [shape(v, key) for v in node]
        return node

    text = yaml.dump(shape(book, None), Dumper=_BookDumper, sort_keys=False, width=1000)
    prefix = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return prefix + text
