"""LiteLLM's price table (``model_prices_and_context_window.json``) turned into a price book.

``agentwatch pricing import`` reads the JSON shipped inside the ``litellm`` wheel, keeps the text
models of the providers agentwatch knows, and writes (or folds into an existing book) the price
book format of ``spec.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from processors.pricing.spec import (
    EPOCH,
    PER_MILLION,
    RATE_FIELDS,
    BookSpec,
    PriceBookError,
    parse_spec,
    to_decimal,
    union_names,
)

log = logging.getLogger("agentwatch.pricing")

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
    return float((to_decimal(float(per_token)) * PER_MILLION).normalize())


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
            mout["aliases"] = union_names(mout.get("aliases", []), mnew.get("aliases", []))
            latest = max(mout["prices"], key=lambda p: p["effective_from"])
            rates = {k: v for k, v in latest.items() if k not in ("effective_from", "note")}
            if rates != latest_new:
                mout["prices"].append({"effective_from": day, **latest_new})
    if "source" in imported:
        out["source"] = dict(imported["source"])
    parse_spec(out)
    return out
