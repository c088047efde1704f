"""The price book: shipped data, file format and its errors, lookups, cost rules, LiteLLM import."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from processors import pricing
from processors.pricing import PriceBookError, Priced, Unpriced, Usage

DAY = date(2026, 11, 1)


def usd(result: Priced | Unpriced) -> Decimal:
    assert isinstance(result, Priced), result
    return result.usd


def book_from(text: str, *, include_shipped: bool = False, tmp_path: Path) -> pricing.PriceBook:
    f = tmp_path / "prices.yaml"
    f.write_text(text)
    return pricing.load(f, include_shipped=include_shipped)


# --- the shipped book -------------------------------------------------------------------------


def test_shipped_book_names_its_source_and_date() -> None:
    spec = pricing.shipped_spec()
    assert spec.source is not None
    assert spec.source.package == "litellm"
    assert spec.source.version and spec.source.retrieved and spec.source.sha256
    assert spec.source.file == "litellm/model_prices_and_context_window_backup.json"


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        # Claude Code: main models, the Haiku it uses for auxiliary calls, the opus-4-1 remap.
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-sonnet-4-5-20250929"),
        ("anthropic", "claude-sonnet-4-6"),
        ("anthropic", "claude-sonnet-5-5"),
        ("anthropic", "claude-opus-4-8"),
        ("anthropic", "claude-opus-5-5"),
        ("anthropic", "claude-haiku-4-5-20251001"),
        # Codex CLI
        ("openai", "gpt-5-codex"),
        ("openai", "gpt-5.3-codex"),
        ("openai", "gpt-5.5"),
        ("openai", "gpt-5-2025-08-07"),
        # Gemini CLI, Gemini API and Vertex AI
        ("gcp.gen_ai", "gemini-2.5-pro"),
        ("gcp.gen_ai", "gemini-2.5-flash"),
        ("gcp.gen_ai", "gemini-3-flash-preview"),
        ("gcp.gen_ai", "gemini-3.1-pro-preview"),
        ("gcp.vertex_ai", "gemini-2.5-pro"),
        ("gcp.vertex_ai", "claude-sonnet-4-5@20250929"),
        # GitHub Copilot
        ("github_copilot", "gpt-5-mini"),
        ("github_copilot", "claude-sonnet-4.6"),
        ("github_copilot", "gpt-5.3-codex"),
    ],
)
def test_shipped_book_covers_the_agents_default_models(provider: str, model: str) -> None:
    found = pricing.load().find(provider, model)
    assert found is not None, f"{provider}/{model} missing from the shipped price book"
    assert found.on(DAY) is not None


def test_shipped_sonnet_4_5_list_prices_and_long_context_tier() -> None:
    found = pricing.load().find("anthropic", "claude-sonnet-4-5-20250929")
    assert found is not None
    price = found.on(DAY)
    assert price is not None
    base, above = price.rates_for(200_000)
    assert above is None
    assert (base.input, base.output, base.cache_read) == (3, 15, Decimal("0.3"))
    assert (base.cache_write, base.cache_write_1h) == (Decimal("3.75"), 6)
    tier, above = price.rates_for(200_001)
    assert above == 200_000
    assert (tier.input, tier.output) == (6, Decimal("22.5"))
    assert (tier.cache_read, tier.cache_write) == (Decimal("0.6"), Decimal("7.5"))


def test_every_shipped_price_is_positive() -> None:
    """A zero price would bill real usage as free; the import leaves such entries out."""
    for mp in pricing.load().models():
        for price in mp.prices:
            assert price.base.input > 0 or price.base.output > 0, mp.model


# --- file format and validation ---------------------------------------------------------------


def test_a_price_that_is_not_a_number_names_its_path(tmp_path: Path) -> None:
    text = """
providers:
  openai:
    models:
      gpt-5:
        prices:
          - {effective_from: 2025-08-07, input: lots, output: 10}
"""
    with pytest.raises(PriceBookError) as exc:
        book_from(text, tmp_path=tmp_path)
    assert exc.value.errors == ["providers.openai.models.gpt-5.prices.0.input: not a number"]


def test_quoted_numbers_booleans_and_integer_dates_are_refused(tmp_path: Path) -> None:
    text = """
providers:
  openai:
    models:
      gpt-5:
        prices:
          - {effective_from: 20250807, input: "1.25", output: true}
"""
    with pytest.raises(PriceBookError) as exc:
        book_from(text, tmp_path=tmp_path)
    assert sorted(exc.value.errors) == [
        "providers.openai.models.gpt-5.prices.0.effective_from: not a date (write YYYY-MM-DD)",
        "providers.openai.models.gpt-5.prices.0.input: not a number",
        "providers.openai.models.gpt-5.prices.0.output: not a number",
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("providers: {openai: {models: {gpt-5: {prices: []}}}}", "prices: a model needs at least"),
        ("providers: {openai: {models: {gpt-5: {prices: [{input: 1}]}}}}", "output: required"),
        ("providers: {openai: {models: {gpt-5: {price: []}}}}", "price: unknown key"),
        ("providers: {openai: {models: {gpt-5: {prices: [{input: -1, output: 1}]}}}}", "negative"),
        ("discounts: [{provider: nobody, multiplier: 0.5}]", "discounts.0.provider: no provider"),
        ("- just a list", "expected a mapping"),
    ],
)
def test_invalid_books_are_refused_with_a_reason(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(PriceBookError) as exc:
        book_from(text, tmp_path=tmp_path)
    assert any(error in e for e in exc.value.errors), exc.value.errors


def test_a_discount_for_a_model_the_book_lacks_is_an_error(tmp_path: Path) -> None:
    text = "discounts: [{provider: openai, model: gpt-99, multiplier: 0.5}]"
    with pytest.raises(PriceBookError) as exc:
        book_from(text, include_shipped=True, tmp_path=tmp_path)
    assert exc.value.errors == ["discounts.0.model: no model 'gpt-99' under 'openai'"]


def test_an_alias_naming_two_models_is_an_error(tmp_path: Path) -> None:
    text = """
providers:
  openai:
    models:
      a: {aliases: [x], prices: [{input: 1, output: 2}]}
      b: {aliases: [x], prices: [{input: 1, output: 2}]}
"""
    with pytest.raises(PriceBookError) as exc:
        book_from(text, tmp_path=tmp_path)
    assert exc.value.errors == ["providers.openai.models.b: name 'x' already belongs to model 'a'"]


def test_missing_file() -> None:
    with pytest.raises(PriceBookError) as exc:
        pricing.load("/nonexistent/prices.yaml")
    assert exc.value.errors == ["no such file"]


# --- lookups ----------------------------------------------------------------------------------

SMALL = """
providers:
  anthropic:
    models:
      claude-sonnet-4-5:
        aliases: [claude-sonnet-4-5-20250929]
        prices:
          - {effective_from: 2025-09-29, input: 3, output: 15, cache_read: 0.3, cache_write: 3.75,
             cache_write_1h: 6}
          - {effective_from: 2026-06-01, input: 2, output: 10}
  gcp.gen_ai:
    aliases: [gemini]
    models:
      gemini-2.5-pro:
        prices:
          - effective_from: 2025-06-17
            input: 1.25
            output: 10
            cache_read: 0.125
            tiers:
              - {above_prompt_tokens: 200000, input: 2.5, output: 15, cache_read: 0.25}
  github_copilot:
    models:
      gpt-5-mini: {prices: [{input: 0.25, output: 2}]}
  openai:
    models:
      o-think: {prices: [{input: 1, output: 4, reasoning: 8}]}
"""


@pytest.fixture
def small(tmp_path: Path) -> pricing.PriceBook:
    return book_from(SMALL, tmp_path=tmp_path)


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("Anthropic", "Claude-Sonnet-4-5", "claude-sonnet-4-5"),
        ("anthropic", "anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("anthropic", "claude-sonnet-4-5[1m]", "claude-sonnet-4-5"),
        ("gemini", "models/gemini-2.5-pro", "gemini-2.5-pro"),
        (None, "gemini-2.5-pro", "gemini-2.5-pro"),
        ("some-proxy", "gpt-5-mini", "gpt-5-mini"),
    ],
)
def test_lookup_normalises_names(
    small: pricing.PriceBook, provider: str | None, model: str, expected: str
) -> None:
    found = small.find(provider, model)
    assert found is not None and found.model == expected


def test_a_known_provider_never_borrows_another_vendors_price(small: pricing.PriceBook) -> None:
    assert small.find("github_copilot", "claude-sonnet-4-5") is None
    assert small.find("anthropic", "gpt-5-mini") is None


def test_price_in_effect_follows_effective_from(small: pricing.PriceBook) -> None:
    u = Usage(input=1_000_000)
    assert small.price("anthropic", "claude-sonnet-4-5", date(2025, 9, 28), u) is (
        Unpriced.NO_PRICE_ON_DATE
    )
    assert usd(small.price("anthropic", "claude-sonnet-4-5", date(2025, 9, 29), u)) == 3
    assert usd(small.price("anthropic", "claude-sonnet-4-5", date(2026, 5, 31), u)) == 3
    assert usd(small.price("anthropic", "claude-sonnet-4-5", date(2026, 6, 1), u)) == 2


def test_long_context_tier_starts_strictly_above_threshold(small: pricing.PriceBook) -> None:
    at = Usage(input=150_000, cache_read=50_000, output=1000)
    above = Usage(input=150_001, cache_read=50_000, output=1000)
    low = usd(small.price("gemini", "gemini-2.5-pro", DAY, at))
    high = usd(small.price("gemini", "gemini-2.5-pro", DAY, above))
    assert low == (150_000 * Decimal("1.25") + 50_000 * Decimal("0.125") + 1000 * 10) / 10**6
    assert high == (150_001 * Decimal("2.5") + 50_000 * Decimal("0.25") + 1000 * 15) / 10**6


def test_fallbacks_cache_priced_as_input_and_1h_as_standard_write(
    small: pricing.PriceBook,
) -> None:
    # The June 2026 Sonnet price lists no cache rates: cached tokens cost input, not nothing.
    u = Usage(input=10, cache_read=100, cache_write=1000, cache_write_1h=400, output=1)
    assert (
        usd(small.price("anthropic", "claude-sonnet-4-5", date(2026, 7, 1), u))
        == (Decimal(10 + 100 + 1000) * 2 + 10) / 10**6
    )


def test_reasoning_priced_apart_only_where_the_model_does(small: pricing.PriceBook) -> None:
    u = Usage(input=0, output=1000, reasoning=600)
    assert usd(small.price("openai", "o-think", DAY, u)) == Decimal(400 * 4 + 600 * 8) / 10**6
    # Same rates for both: the reasoning split changes nothing.
    same = usd(small.price("github_copilot", "gpt-5-mini", DAY, u))
    assert same == Decimal(1000 * 2) / 10**6


@pytest.mark.parametrize(
    "usage",
    [
        Usage(input=-1),
        Usage(cache_write=10, cache_write_1h=11),
        Usage(output=10, reasoning=11),
    ],
)
def test_contradictory_token_counts_are_not_priced(small: pricing.PriceBook, usage: Usage) -> None:
    assert small.price("openai", "o-think", DAY, usage) is Unpriced.INVALID_USAGE


def test_unknown_model_is_unpriced_not_free(small: pricing.PriceBook) -> None:
    assert small.price("anthropic", "claude-opus-9", DAY, Usage(input=1)) is Unpriced.UNKNOWN_MODEL


# --- overrides and discounts ------------------------------------------------------------------


def test_override_adds_a_price_change_and_keeps_history(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text(
        """
providers:
  anthropic:
    models:
      claude-sonnet-4-5-20250929:
        prices: [{effective_from: 2026-12-01, input: 2.5, output: 12}]
      claude-in-house: {prices: [{input: 1, output: 1}]}
"""
    )
    book = pricing.load(f)
    u = Usage(input=100_000)  # below Sonnet 4.5's long-context threshold
    assert usd(book.price("anthropic", "claude-sonnet-4-5", date(2026, 11, 30), u)) == Decimal(
        "0.3"
    )
    assert usd(book.price("anthropic", "claude-sonnet-4-5", date(2026, 12, 1), u)) == Decimal(
        "0.25"
    )
    assert usd(book.price("anthropic", "claude-in-house", DAY, u)) == Decimal("0.1")
    # Other shipped models are untouched.
    assert usd(book.price("openai", "gpt-5-codex", DAY, u)) == Decimal("0.125")


def test_discount_model_beats_provider_and_starts_on_its_day(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text(
        """
discounts:
  - {provider: anthropic, multiplier: 0.8}
  - {provider: anthropic, model: claude-sonnet-4-5-20250929, multiplier: 0.5,
     effective_from: 2026-10-01}
"""
    )
    book = pricing.load(f)
    u = Usage(input=100_000)
    before = book.price("anthropic", "claude-sonnet-4-5", date(2026, 9, 30), u)
    after = book.price("anthropic", "claude-sonnet-4-5", date(2026, 10, 1), u)
    haiku = book.price("anthropic", "claude-haiku-4-5", date(2026, 10, 1), u)
    assert isinstance(before, Priced) and before.list_usd == Decimal("0.3")
    assert usd(before) == Decimal("0.24")
    assert usd(after) == Decimal("0.15")
    assert usd(haiku) == Decimal("0.08")
    assert book.multiplier("anthropic", "claude-never-heard-of", DAY) == Decimal("0.8")
    assert book.multiplier("openai", "gpt-5-codex", DAY) == 1


# --- one call's cost: usage_of and call_cost ---------------------------------------------------


def test_usage_of_reads_the_counts_a_record_carries() -> None:
    assert pricing.usage_of() is Unpriced.NO_TOKENS
    assert pricing.usage_of(reasoning_tokens=5) is Unpriced.NO_TOKENS  # part of output
    assert pricing.usage_of(input_tokens=0) == Usage()
    # Without a total, the cache writes are the sum of the split.
    assert pricing.usage_of(cache_write_5m_tokens=30, cache_write_1h_tokens=70) == Usage(
        cache_write=100, cache_write_1h=70
    )
    assert pricing.usage_of(cache_write_tokens=100, cache_write_1h_tokens=40) == Usage(
        cache_write=100, cache_write_1h=40
    )
    assert (
        pricing.usage_of(cache_write_tokens=100, cache_write_5m_tokens=61, cache_write_1h_tokens=40)
        is Unpriced.INVALID_USAGE
    )


def test_call_cost_bills_the_chosen_figure_and_falls_back(small: pricing.PriceBook) -> None:
    u = Usage(input=1_000_000)
    computed = pricing.call_cost(small, "anthropic", "claude-sonnet-4-5", DAY, u, 5.0)
    assert computed.computed_usd == computed.cost_usd == Decimal(2)
    assert computed.reported_usd == Decimal(5) and computed.cost_source == "computed"
    reported = pricing.call_cost(
        small, "anthropic", "claude-sonnet-4-5", DAY, u, 5.0, cost_source="reported"
    )
    assert reported.cost_usd == Decimal(5) and reported.cost_source == "reported"
    unknown = pricing.call_cost(small, "anthropic", "claude-opus-9", DAY, u, 5.0)
    assert unknown.outcome is Unpriced.UNKNOWN_MODEL and unknown.computed_usd is None
    assert unknown.cost_usd == Decimal(5) and unknown.cost_source == "reported"
    strict = pricing.call_cost(small, "anthropic", "claude-opus-9", DAY, u, 5.0, fallback=False)
    assert strict.cost_usd is None and strict.cost_source is None


def test_call_cost_reasons_and_split_unknown(small: pricing.PriceBook) -> None:
    u = Usage(input=1_000_000)
    assert pricing.call_cost(small, "anthropic", "", DAY, u, None).outcome is Unpriced.NO_MODEL
    no_tokens = pricing.call_cost(small, "anthropic", "x", DAY, Unpriced.NO_TOKENS, None)
    assert no_tokens.outcome is Unpriced.NO_TOKENS and no_tokens.cost_usd is None
    split = pricing.call_cost(
        small, "anthropic", "claude-sonnet-4-5", DAY, u, 5.0, cache_split_unknown=True
    )
    assert split.computed_usd == Decimal(2)
    assert split.cost_usd == Decimal(5) and split.cost_source == pricing.SPLIT_UNKNOWN_SOURCE


def test_call_cost_prices_a_sum_at_base_rates(small: pricing.PriceBook) -> None:
    big = Usage(input=300_000)
    one = pricing.call_cost(small, "gemini", "gemini-2.5-pro", DAY, big, None)
    summed = pricing.call_cost(small, "gemini", "gemini-2.5-pro", DAY, big, None, one_request=False)
    assert one.cost_usd == Decimal("0.75") and summed.cost_usd == Decimal("0.375")


def test_call_cost_applies_the_discount_to_the_reported_figure(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("discounts:\n  - {provider: anthropic, multiplier: 0.5}\n")
    book = pricing.load(f)
    cost = pricing.call_cost(
        book,
        "anthropic",
        "claude-sonnet-4-5",
        DAY,
        Usage(input=100_000),
        0.4,
        cost_source="reported",
    )
    assert cost.reported_usd == cost.cost_usd == Decimal("0.2")
    assert cost.computed_usd == Decimal("0.15")


def test_day_of_is_the_utc_day_or_today() -> None:
    assert pricing.day_of(1_780_000_000 * 10**9) == date(2026, 5, 28)
    for missing_or_absurd in (0, -1, 10**30):
        before = datetime.now(UTC).date()
        got = pricing.day_of(missing_or_absurd)
        assert got in {before, datetime.now(UTC).date()}


# --- LiteLLM import ---------------------------------------------------------------------------

LITELLM_SAMPLE = {
    "sample_spec": {"litellm_provider": "one of ...", "input_cost_per_token": 0.0},
    "claude-sonnet-4-5": {
        "litellm_provider": "anthropic",
        "mode": "chat",
        "input_cost_per_token": 3e-06,
        "output_cost_per_token": 1.5e-05,
        "cache_read_input_token_cost": 3e-07,
        "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
        "input_cost_per_token_batches": 1.5e-06,
    },
    "claude-sonnet-4-5-20250929": {
        "litellm_provider": "anthropic",
        "mode": "chat",
        "input_cost_per_token": 3e-06,
        "output_cost_per_token": 1.5e-05,
        "cache_read_input_token_cost": 3e-07,
        "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
    },
    "gemini/gemini-2.5-pro": {
        "litellm_provider": "gemini",
        "mode": "chat",
        "input_cost_per_token": 1.25e-06,
        "input_cost_per_token_above_200k_tokens": 2.5e-06,
        "input_cost_per_token_above_200k_tokens_priority": 4.5e-06,
        "output_cost_per_token": 1e-05,
        "output_cost_per_token_above_200k_tokens": 1.5e-05,
        "cache_read_input_token_cost": 1.25e-07,
        "cache_read_input_token_cost_above_200k_tokens": 2.5e-07,
    },
    "gemini/gemini-2.5-flash": {
        "litellm_provider": "gemini",
        "mode": "chat",
        "input_cost_per_token": 3e-07,
        "output_cost_per_token": 2.5e-06,
        "output_cost_per_reasoning_token": 2.5e-06,
    },
    "o-think": {
        "litellm_provider": "openai",
        "mode": "responses",
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 4e-06,
        "output_cost_per_reasoning_token": 8e-06,
    },
    "gpt-free-preview": {
        "litellm_provider": "openai",
        "mode": "chat",
        "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0,
    },
    "dall-e-9": {
        "litellm_provider": "openai",
        "mode": "image_generation",
        "input_cost_per_token": 1,
    },
    "ft:gpt-4o": {
        "litellm_provider": "openai",
        "input_cost_per_token": 1,
        "output_cost_per_token": 1,
    },
    "mistral-x": {
        "litellm_provider": "mistral",
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 1e-06,
    },
}


@pytest.fixture
def litellm_json(tmp_path: Path) -> Path:
    f = tmp_path / "model_prices.json"
    f.write_text(json.dumps(LITELLM_SAMPLE))
    return f


def test_import_litellm_converts_rates_aliases_tiers(litellm_json: Path) -> None:
    book = pricing.import_litellm(
        litellm_json, package="litellm", version="9.9.9", retrieved=date(2026, 11, 2)
    )
    assert book["source"]["package"] == "litellm" and book["source"]["version"] == "9.9.9"
    assert book["source"]["retrieved"] == date(2026, 11, 2)
    providers = book["providers"]
    assert set(providers) == {"anthropic", "openai", "gcp.gen_ai"}
    sonnet = providers["anthropic"]["models"]["claude-sonnet-4-5"]
    assert sonnet["aliases"] == ["claude-sonnet-4-5-20250929"]
    assert sonnet["prices"] == [
        {
            "effective_from": date(2025, 9, 29),
            "input": 3.0,
            "output": 15.0,
            "cache_read": 0.3,
            "cache_write": 3.75,
            "cache_write_1h": 6.0,
        }
    ]
    pro = providers["gcp.gen_ai"]["models"]["gemini-2.5-pro"]["prices"][0]
    assert pro["effective_from"] == pricing.EPOCH
    assert pro["tiers"] == [
        {"above_prompt_tokens": 200000, "input": 2.5, "output": 15.0, "cache_read": 0.25}
    ]
    # Reasoning only where it is priced differently from output.
    assert "reasoning" not in providers["gcp.gen_ai"]["models"]["gemini-2.5-flash"]["prices"][0]
    assert providers["openai"]["models"]["o-think"]["prices"][0]["reasoning"] == 8.0
    # Free/unknown (zero), non-text, fine-tuned and unmapped providers are left out.
    assert set(providers["openai"]["models"]) == {"o-think"}


def test_imported_yaml_loads_and_prices_like_the_source(litellm_json: Path, tmp_path: Path) -> None:
    text = pricing.to_yaml(pricing.import_litellm(litellm_json), header="test import")
    assert text.startswith("# test import\n")
    out = tmp_path / "imported.yaml"
    out.write_text(text)
    book = pricing.load(out, include_shipped=False)
    u = Usage(input=1200, output=57, cache_read=15000, cache_write=3000)
    assert usd(book.price("anthropic", "claude-sonnet-4-5-20250929", DAY, u)) == Decimal("0.020205")
    big = Usage(input=250_000, output=1000)
    assert (
        usd(book.price("gemini", "gemini-2.5-pro", DAY, big))
        == Decimal(250_000 * Decimal("2.5") + 1000 * 15) / 10**6
    )


def test_merge_import_records_a_price_change_from_its_day(litellm_json: Path) -> None:
    old = pricing.import_litellm(litellm_json)
    changed = json.loads(json.dumps(LITELLM_SAMPLE))
    changed["o-think"]["input_cost_per_token"] = 5e-07
    newer_json = litellm_json.with_name("newer.json")
    newer_json.write_text(json.dumps(changed))
    merged = pricing.merge_import(old, pricing.import_litellm(newer_json), date(2026, 12, 1))
    prices = merged["providers"]["openai"]["models"]["o-think"]["prices"]
    assert [p["effective_from"] for p in prices] == [pricing.EPOCH, date(2026, 12, 1)]
    assert [p["input"] for p in prices] == [1.0, 0.5]
    # Unchanged models get no new price.
    assert len(merged["providers"]["anthropic"]["models"]["claude-sonnet-4-5"]["prices"]) == 1
    book = pricing.build(pricing.parse_spec(yaml.safe_load(pricing.to_yaml(merged))))
    u = Usage(input=1_000_000)
    assert usd(book.price("openai", "o-think", date(2026, 11, 30), u)) == 1
    assert usd(book.price("openai", "o-think", date(2026, 12, 1), u)) == Decimal("0.5")


def test_import_refuses_a_file_that_is_not_a_price_table(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text("[1, 2]")
    with pytest.raises(PriceBookError):
        pricing.import_litellm(f)
    f.write_text("{not json")
    with pytest.raises(PriceBookError):
        pricing.import_litellm(f)
