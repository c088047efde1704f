"""The cost processor on OTLP protobufs carrying normalised agentwatch.* attributes.

Expected figures are hand computations from the shipped price book's rates, written out here
(USD per million tokens), so a wrong rule or a wrong rate both fail.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from collector import agent_model as am
from collector import telemetry
from collector.component import ConfigContext, LogsData, TracesData
from collector.records import Logs, Traces
from processors.cost import COST_SOURCE, FACTORY, CostConfig, CostProcessor

NOV_2026 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
Value = str | int | float


def ns(when: datetime) -> int:
    return int(when.timestamp()) * 10**9


def kv(key: str, value: Value) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def api_call(provider: str, model: str, **tokens: Value) -> dict[str, Value]:
    """An api_call event's attributes; ``tokens`` keys are agent_model names without prefix."""
    return {
        am.EVENT: am.EventType.API_CALL.value,
        am.PROVIDER: provider,
        am.MODEL: model,
        **{am.P + k: v for k, v in tokens.items()},
    }


def logs(*records: dict[str, Value], when: datetime = NOV_2026) -> LogsData:
    return LogsData(
        resource_logs=[
            ResourceLogs(
                scope_logs=[
                    ScopeLogs(
                        log_records=[
                            LogRecord(
                                time_unix_nano=ns(when),
                                attributes=[kv(k, v) for k, v in r.items()],
                            )
                            for r in records
                        ]
                    )
                ]
            )
        ]
    )


def attrs_of(data: LogsData) -> list[dict[str, AnyValue]]:
    return [
        {a.key: a.value for a in r.attributes}
        for rl in data.resource_logs
        for sl in rl.scope_logs
        for r in sl.log_records
    ]


def processor(name: str, **config: object) -> CostProcessor:
    proc = FACTORY.create(f"cost/{name}", CostConfig.model_validate(config))
    assert isinstance(proc, CostProcessor)
    return proc


def priced(proc: CostProcessor, data: LogsData) -> LogsData:
    """``data`` through the processor as the pipeline hands it over: as records."""
    records = Logs.from_proto(data)
    out = proc.consume_logs(records)
    assert out is records
    return records.to_proto()


def run(proc: CostProcessor, data: LogsData) -> list[dict[str, AnyValue]]:
    return attrs_of(priced(proc, data))


def cost(attrs: dict[str, AnyValue], key: str = am.COST_USD_COMPUTED) -> float:
    assert key in attrs, f"{key} missing"
    return attrs[key].double_value


def per_million(*token_times_rate: tuple[int, float]) -> float:
    return sum(t * r for t, r in token_times_rate) / 1e6


# --- the cases ------------------------------------------------------------------------


def test_claude_code_case_from_agents_md_is_exact() -> None:
    """Sonnet 4.5, 1200 in / 57 out / 15000 cache read / 3000 cache write (5m) -> $0.020205,
    which is what Claude Code itself reported."""
    record = api_call(
        "anthropic",
        "claude-sonnet-4-5-20250929",
        input_tokens=1200,
        output_tokens=57,
        cache_read_tokens=15000,
        cache_write_tokens=3000,
        cache_write_5m_tokens=3000,
        cache_write_1h_tokens=0,
        cost_usd_reported=0.020205,
    )
    proc = processor("claude_case")
    (attrs,) = run(proc, logs(record))
    assert round(cost(attrs), 9) == 0.020205
    assert round(cost(attrs, am.COST_USD), 9) == 0.020205
    assert attrs[COST_SOURCE].string_value == "computed"
    assert cost(attrs, am.COST_USD_REPORTED) == 0.020205  # kept untouched
    assert (
        telemetry.value(
            "agentwatch_cost_discrepancies_total",
            processor="cost/claude_case",
            provider="anthropic",
            model="claude-sonnet-4-5-20250929",
        )
        == 0
    )
    assert (
        telemetry.value(
            "agentwatch_cost_priced_items_total", processor="cost/claude_case", signal="logs"
        )
        == 1
    )


def test_one_hour_cache_write_priced_at_the_one_hour_rate() -> None:
    record = api_call(
        "anthropic",
        "claude-sonnet-4-5",
        input_tokens=100,
        output_tokens=10,
        cache_write_tokens=5000,
        cache_write_5m_tokens=1000,
        cache_write_1h_tokens=4000,
    )
    (attrs,) = run(processor("one_hour"), logs(record))
    # Sonnet 4.5: input 3, output 15, 5-minute write 3.75, 1-hour write 6.
    expected = per_million((100, 3), (10, 15), (1000, 3.75), (4000, 6))
    assert round(cost(attrs), 9) == round(expected, 9)
    # The same tokens all written for 5 minutes cost less: the rate really differs.
    assert expected > per_million((100, 3), (10, 15), (5000, 3.75))


def test_unsplit_cache_write_is_priced_as_five_minute() -> None:
    record = api_call(
        "anthropic", "claude-sonnet-4-5", input_tokens=0, output_tokens=0, cache_write_tokens=2000
    )
    (attrs,) = run(processor("unsplit"), logs(record))
    assert round(cost(attrs), 9) == round(per_million((2000, 3.75)), 9)


def test_gemini_2_5_pro_above_200k_prompt_tokens_uses_long_context_rates() -> None:
    # Gemini CLI: 230k prompt of which 40k cached (already subtracted from input by the
    # normaliser), 2000 output of which 1500 thoughts (added to output by the normaliser).
    big = api_call(
        "gcp.gen_ai",
        "gemini-2.5-pro",
        input_tokens=190_000,
        cache_read_tokens=40_000,
        output_tokens=2000,
        reasoning_tokens=1500,
    )
    small = api_call(
        "gcp.gen_ai",
        "gemini-2.5-pro",
        input_tokens=150_000,
        cache_read_tokens=40_000,
        output_tokens=2000,
        reasoning_tokens=1500,
    )
    big_attrs, small_attrs = run(processor("gemini_long"), logs(big, small))
    # gemini-2.5-pro: <=200k input 1.25 / cache 0.125 / output 10; >200k 2.5 / 0.25 / 15.
    assert round(cost(big_attrs), 9) == round(
        per_million((190_000, 2.5), (40_000, 0.25), (2000, 15)), 9
    )
    assert round(cost(small_attrs), 9) == round(
        per_million((150_000, 1.25), (40_000, 0.125), (2000, 10)), 9
    )


def test_api_usage_sums_are_priced_at_base_rates_not_long_context() -> None:
    """An api_usage record is one interval's total of many calls (derived from metrics): 40
    calls of 6k prompt tokens must not be billed as one 240k-token long-context prompt."""
    tokens = {
        "input_tokens": 200_000,
        "cache_read_tokens": 40_000,
        "output_tokens": 8000,
        "reasoning_tokens": 3000,
    }
    usage = {**api_call("gcp.gen_ai", "gemini-2.5-pro", **tokens), am.EVENT: "api_usage"}
    call = api_call("gcp.gen_ai", "gemini-2.5-pro", **tokens)
    usage_attrs, call_attrs = run(processor("usage_base"), logs(usage, call))
    # gemini-2.5-pro: <=200k input 1.25 / cache 0.125 / output 10; >200k 2.5 / 0.25 / 15.
    assert round(cost(usage_attrs), 9) == round(
        per_million((200_000, 1.25), (40_000, 0.125), (8000, 10)), 9
    )
    assert round(cost(usage_attrs, am.COST_USD), 9) == round(cost(usage_attrs), 9)
    # one call with that prompt really is long-context
    assert round(cost(call_attrs), 9) == round(
        per_million((200_000, 2.5), (40_000, 0.25), (8000, 15)), 9
    )


def test_codex_call_with_cached_tokens() -> None:
    # Codex sent input_token_count=9000 including cached_token_count=6000; the normaliser
    # stored input_tokens=3000 (uncached) and cache_read_tokens=6000.
    record = api_call(
        "openai",
        "gpt-5-codex",
        input_tokens=3000,
        cache_read_tokens=6000,
        output_tokens=800,
        reasoning_tokens=512,
    )
    (attrs,) = run(processor("codex"), logs(record))
    # gpt-5-codex: input 1.25, cached input 0.125, output 10 (reasoning billed as output).
    expected = per_million((3000, 1.25), (6000, 0.125), (800, 10))
    assert round(cost(attrs), 9) == round(expected, 9)
    assert attrs[COST_SOURCE].string_value == "computed"


def test_unknown_model_gets_no_cost_and_is_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = api_call("anthropic", "claude-opus-9-9", input_tokens=1000, output_tokens=100)
    proc = processor("unknown", fallback=False)
    with caplog.at_level(logging.WARNING, logger="agentwatch.processor.cost"):
        first = run(proc, logs(record, record))
        second = run(proc, logs(record))
    for attrs in [*first, *second]:
        assert am.COST_USD_COMPUTED not in attrs
        assert am.COST_USD not in attrs
        assert COST_SOURCE not in attrs
    assert (
        telemetry.value(
            "agentwatch_cost_unpriced_items_total",
            processor="cost/unknown",
            reason="unknown_model",
            provider="anthropic",
            model="claude-opus-9-9",
        )
        == 3
    )
    warnings = [r for r in caplog.records if "claude-opus-9-9" in r.getMessage()]
    assert len(warnings) == 1


def test_unknown_model_falls_back_to_the_reported_cost_by_default() -> None:
    record = api_call(
        "anthropic", "claude-opus-9-9", input_tokens=1000, output_tokens=100, cost_usd_reported=0.5
    )
    (attrs,) = run(processor("unknown_fallback"), logs(record))
    assert am.COST_USD_COMPUTED not in attrs
    assert cost(attrs, am.COST_USD) == 0.5
    assert attrs[COST_SOURCE].string_value == "reported"


def test_price_change_prices_old_and_new_data_differently(tmp_path: Path) -> None:
    book = tmp_path / "prices.yaml"
    book.write_text(
        """
providers:
  openai:
    models:
      gpt-5-codex:
        prices: [{effective_from: 2026-11-01, input: 0.625, output: 5, cache_read: 0.0625}]
"""
    )
    proc = processor("price_change", pricing_file=str(book))
    record = api_call("openai", "gpt-5-codex", input_tokens=10_000, output_tokens=1000)
    (old,) = run(proc, logs(record, when=datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC)))
    (new,) = run(proc, logs(record, when=datetime(2026, 11, 1, 0, 0, 0, tzinfo=UTC)))
    assert round(cost(old), 9) == round(per_million((10_000, 1.25), (1000, 10)), 9)
    assert round(cost(new), 9) == round(per_million((10_000, 0.625), (1000, 5)), 9)


def test_pricing_file_extends_the_book_and_sets_discounts(tmp_path: Path) -> None:
    book = tmp_path / "prices.yaml"
    book.write_text(
        """
providers:
  openai:
    models:
      gpt-in-house: {prices: [{input: 1, output: 2}]}
discounts:
  - {provider: openai, multiplier: 0.9}
  - {provider: openai, model: gpt-5-codex, multiplier: 0.5}
"""
    )
    proc = processor("discounts", pricing_file=str(book))
    house, codex, mini = run(
        proc,
        logs(
            api_call("openai", "gpt-in-house", input_tokens=1000, output_tokens=1000),
            api_call("openai", "gpt-5-codex", input_tokens=1000, output_tokens=1000),
            api_call("openai", "gpt-5-mini", input_tokens=1000, output_tokens=1000),
        ),
    )
    assert round(cost(house), 9) == round(per_million((1000, 1), (1000, 2)) * 0.9, 9)
    assert round(cost(codex), 9) == round(per_million((1000, 1.25), (1000, 10)) * 0.5, 9)
    assert round(cost(mini), 9) == round(per_million((1000, 0.25), (1000, 2)) * 0.9, 9)
    assert cost(codex, am.COST_USD) == cost(codex)


def test_discrepancy_between_reported_and_computed_is_counted(tmp_path: Path) -> None:
    book = tmp_path / "prices.yaml"
    book.write_text("discounts: [{provider: anthropic, multiplier: 0.5}]\n")
    proc = processor("discrepancy", pricing_file=str(book), cost_source="reported")
    tokens = {"input_tokens": 1200, "output_tokens": 57, "cache_read_tokens": 15000}
    tokens["cache_write_tokens"] = 3000
    computed = 0.020205
    within, beyond, below = run(
        proc,
        logs(
            api_call(
                "anthropic", "claude-sonnet-4-5", **tokens, cost_usd_reported=computed * 1.009
            ),
            api_call("anthropic", "claude-sonnet-4-5", **tokens, cost_usd_reported=computed * 1.02),
            api_call("anthropic", "claude-sonnet-4-5", **tokens, cost_usd_reported=computed * 0.97),
        ),
    )
    assert (
        telemetry.value(
            "agentwatch_cost_discrepancies_total",
            processor="cost/discrepancy",
            provider="anthropic",
            model="claude-sonnet-4-5",
        )
        == 2
    )
    # The discount does not make every record a discrepancy: the comparison is at list price.
    assert round(cost(within), 9) == round(computed * 0.5, 9)
    # cost_source=reported: cost_usd is the agent's figure, discounted like the computed one.
    assert within[COST_SOURCE].string_value == "reported"
    assert round(cost(beyond, am.COST_USD), 9) == round(computed * 1.02 * 0.5, 9)
    assert round(cost(below, am.COST_USD_REPORTED), 9) == round(computed * 0.97, 9)


# --- behaviour around the edges ---------------------------------------------------------------


def test_records_that_are_not_api_calls_pass_unchanged() -> None:
    data = logs(
        {am.EVENT: "tool_call", am.MODEL: "gpt-5-codex", am.P + "input_tokens": 5},
        {"event.name": "api_request", "model": "claude-sonnet-4-5", "input_tokens": "10"},
    )
    before = Logs.from_proto(data).to_proto().SerializeToString()  # as the pipeline encodes it
    assert priced(processor("other_events"), data).SerializeToString() == before


def test_reprocessing_is_idempotent() -> None:
    proc = processor("idempotent")
    data = logs(api_call("openai", "gpt-5-codex", input_tokens=1000, output_tokens=10))
    data = priced(proc, data)
    once = data.SerializeToString()
    data = priced(proc, data)
    assert data.SerializeToString() == once
    (attrs,) = attrs_of(data)
    keys = [a.key for a in data.resource_logs[0].scope_logs[0].log_records[0].attributes]
    assert keys.count(am.COST_USD_COMPUTED) == 1 and am.COST_USD in attrs


def test_call_without_tokens_or_model_is_counted_not_priced_at_zero() -> None:
    proc = processor("no_tokens")
    no_tokens, no_model = run(
        proc,
        logs(api_call("openai", "gpt-5-codex"), api_call("openai", "", input_tokens=10)),
    )
    assert am.COST_USD_COMPUTED not in no_tokens and am.COST_USD_COMPUTED not in no_model
    for reason, model in (("no_tokens", "gpt-5-codex"), ("no_model", "")):
        assert (
            telemetry.value(
                "agentwatch_cost_unpriced_items_total",
                processor="cost/no_tokens",
                reason=reason,
                provider="openai",
                model=model,
            )
            == 1
        )


def test_string_token_counts_are_read_and_garbage_is_refused() -> None:
    proc = processor("strings")
    ok, bad = run(
        proc,
        logs(
            api_call("openai", "gpt-5-codex", input_tokens="1000", output_tokens="10"),
            api_call("openai", "gpt-5-codex", input_tokens="many", output_tokens=10),
        ),
    )
    assert round(cost(ok), 9) == round(per_million((1000, 1.25), (10, 10)), 9)
    assert am.COST_USD_COMPUTED not in bad
    assert (
        telemetry.value(
            "agentwatch_cost_unpriced_items_total",
            processor="cost/strings",
            reason="invalid_usage",
            provider="openai",
            model="gpt-5-codex",
        )
        == 1
    )


def test_record_without_timestamp_uses_its_observed_time(tmp_path: Path) -> None:
    book = tmp_path / "prices.yaml"
    book.write_text(
        "providers: {openai: {models: {gpt-5-codex: "
        "{prices: [{effective_from: 2030-01-01, input: 100, output: 100}]}}}}\n"
    )
    proc = processor("observed", pricing_file=str(book))
    data = logs(api_call("openai", "gpt-5-codex", input_tokens=1000, output_tokens=0))
    rec = data.resource_logs[0].scope_logs[0].log_records[0]
    rec.time_unix_nano = 0
    rec.observed_time_unix_nano = ns(datetime(2026, 1, 1, tzinfo=UTC))
    (attrs,) = run(proc, data)
    assert round(cost(attrs), 9) == round(per_million((1000, 1.25)), 9)  # not the 2030 price


def test_spans_are_priced_too() -> None:
    span = Span(
        name="chat gpt-5-codex",
        start_time_unix_nano=ns(NOV_2026),
        end_time_unix_nano=ns(NOV_2026) + 10**9,
        attributes=[
            kv(k, v)
            for k, v in api_call(
                "openai", "gpt-5-codex", input_tokens=2000, output_tokens=100
            ).items()
        ],
    )
    data = TracesData(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    spans = Traces.from_proto(data)
    assert processor("spans").consume_traces(spans) is spans
    out = spans.to_proto()
    attrs = {a.key: a.value for a in out.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert round(attrs[am.COST_USD_COMPUTED].double_value, 9) == round(
        per_million((2000, 1.25), (100, 10)), 9
    )


def test_unknown_provider_prices_by_model_name() -> None:
    # The e2e mock providers ("mock") are not vendors; the model name still identifies the price.
    (attrs,) = run(
        processor("mock_provider"),
        logs(api_call("mock", "gpt-5-codex", input_tokens=1000, output_tokens=0)),
    )
    assert round(cost(attrs), 9) == round(per_million((1000, 1.25)), 9)


# --- config -----------------------------------------------------------------------------------


def test_config_check_names_the_path_of_a_missing_file(tmp_path: Path) -> None:
    cfg = CostConfig.model_validate({"pricing_file": "nope.yaml"})
    errors = cfg.check("processors.cost", ConfigContext(base_dir=str(tmp_path), data_dir="."))
    assert errors == [f"processors.cost.pricing_file: no such file: {tmp_path / 'nope.yaml'}"]


def test_config_check_names_the_path_inside_the_file(tmp_path: Path) -> None:
    (tmp_path / "prices.yaml").write_text(
        "providers: {openai: {models: {gpt-5: {prices: [{input: x, output: 1}]}}}}\n"
    )
    cfg = CostConfig.model_validate({"pricing_file": "prices.yaml"})
    errors = cfg.check("processors.cost", ConfigContext(base_dir=str(tmp_path), data_dir="."))
    assert errors == [
        "processors.cost.pricing_file: providers.openai.models.gpt-5.prices.0.input: not a number"
    ]


def test_config_defaults_and_refusals() -> None:
    cfg = CostConfig.model_validate({})
    assert (cfg.cost_source, cfg.fallback, cfg.discrepancy_threshold) == ("computed", True, 0.01)
    assert cfg.check("processors.cost", ConfigContext(base_dir=".", data_dir=".")) == []
    with pytest.raises(ValueError):
        CostConfig.model_validate({"cost_source": "guessed"})
    with pytest.raises(ValueError):
        CostConfig.model_validate({"discrepancy_threshold": -1})
    lonely = CostConfig.model_validate({"include_shipped": False})
    assert lonely.check("processors.cost", ConfigContext(base_dir=".", data_dir=".")) == [
        "processors.cost.include_shipped: false needs a pricing_file"
    ]
