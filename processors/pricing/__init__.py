"""Pricing: the price book file (``spec``), the book and the cost of a call (``book``), and the
import of LiteLLM's price table (``litellm``). Pure functions over typed fields, no telemetry
records, so the ``cost`` processor and ``agentwatch reprice`` share them (docs/pricing.md)."""

from __future__ import annotations

from processors.pricing.book import (
    SPLIT_UNKNOWN_SOURCE,
    CallCost,
    CostSource,
    ModelPrices,
    Price,
    PriceBook,
    Priced,
    Rates,
    Unpriced,
    Usage,
    build,
    call_cost,
    cost_of,
    day_of,
    load,
    usage_of,
)
from processors.pricing.litellm import import_litellm, merge_import
from processors.pricing.spec import (
    EPOCH,
    BookSpec,
    PriceBookError,
    merge_specs,
    parse_spec,
    read_spec,
    shipped_spec,
    to_yaml,
)

__all__ = [
    "EPOCH",
    "SPLIT_UNKNOWN_SOURCE",
    "BookSpec",
    "CallCost",
    "CostSource",
    "ModelPrices",
    "Price",
    "PriceBook",
    "PriceBookError",
    "Priced",
    "Rates",
    "Unpriced",
    "Usage",
    "build",
    "call_cost",
    "cost_of",
    "day_of",
    "import_litellm",
    "load",
    "merge_import",
    "merge_specs",
    "parse_spec",
    "read_spec",
    "shipped_spec",
    "to_yaml",
    "usage_of",
]
