"""The price book file: its format as pydantic models, reading, merging and writing it.

Prices are facts, so they live in a data file (``pricebook.yaml`` beside this module) imported
from a public, versioned source (the price table inside the ``litellm`` wheel, see
``litellm.py``) rather than in code, and each price carries the day it took effect so that old
data keeps its old price after a change. A user ``pricing_file`` in the same format overrides or
extends the shipped book and may add negotiated discounts. Rates are USD per million tokens.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

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


def to_decimal(value: float) -> Decimal:
    """A file's number as the exact decimal it was written as, so a bill adds up to the cent."""
    # repr() is the shortest text that round-trips, so 3.75 becomes Decimal("3.75") exactly.
    return Decimal(repr(value))


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
        target.aliases = union_names(target.aliases, ospec.aliases)
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
            merged.aliases = union_names(merged.aliases, [*extra, *mspec.aliases])
    return BookSpec(
        source=base.source,
        providers=providers,
        discounts=[*base.discounts, *override.discounts],
    )


def union_names(first: list[str], second: Iterable[str]) -> list[str]:
    """``first`` then the names of ``second`` it lacks, compared case-insensitively."""
    out = list(first)
    seen = {a.lower() for a in out}
    for a in second:
        if a.lower() not in seen:
            seen.add(a.lower())
            out.append(a)
    return out


# --- writing ---------------------------------------------------------------------------------


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
