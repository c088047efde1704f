"""collector/isolation.py: a request split into single-item requests and put back together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector import otlp_json, telemetry
from collector.component import Signal, Telemetry, count_items
from collector.isolation import describe, items, merge, partition, singles
from collector.records import Logs
from exporters.clickhouse import rows
from exporters.clickhouse.config import ClickHouseExporterConfig
from exporters.clickhouse.exporter import ClickHouseExporter

CAPTURED = Path(__file__).parents[1] / "data" / "captured" / "gemini" / "retry-tools-grpc.json"


def captured(signal: Signal) -> Telemetry:
    """The largest request of one signal in a real Gemini CLI run (cumulative metrics)."""
    entries = [e for e in json.loads(CAPTURED.read_text()) if e["signal"] == signal.value]
    requests = [otlp_json.decode(signal, json.dumps(e["request"])) for e in entries]
    return max(requests, key=count_items)


def canonical(data: Telemetry) -> list[bytes]:
    """Each item with its resource, scope (and metric) as one single-item request's bytes."""
    return sorted(one.SerializeToString(deterministic=True) for one in singles(data))


@pytest.mark.parametrize("signal", list(Signal))
def test_singles_merge_back_to_the_same_items(signal: Signal) -> None:
    data = captured(signal)
    parts = list(singles(data))
    assert count_items(data) > 1
    assert [count_items(p) for p in parts] == [1] * count_items(data)
    merged = merge(parts, type(data)())
    assert count_items(merged) == count_items(data)
    assert canonical(merged) == canonical(data)
    # every item kept its own fields, in order
    assert [i.SerializeToString() for i in items(merged)] == [
        i.SerializeToString() for i in items(data)
    ]


def test_singles_of_metrics_keep_the_metric_and_its_temporality() -> None:
    data = captured(Signal.METRICS)
    for one in singles(data):
        (rm,) = one.resource_metrics  # type: ignore[union-attr]
        (sm,) = rm.scope_metrics
        (metric,) = sm.metrics
        kind = metric.WhichOneof("data")
        original = next(
            m
            for r in data.resource_metrics  # type: ignore[union-attr]
            for s in r.scope_metrics
            for m in s.metrics
            if m.name == metric.name
        )
        assert metric.unit == original.unit and metric.description == original.description
        body, source = getattr(metric, kind), getattr(original, kind)
        if hasattr(source, "aggregation_temporality"):
            assert body.aggregation_temporality == source.aggregation_temporality


def test_partition_sets_aside_only_the_items_that_fail() -> None:
    data = captured(Signal.LOGS)
    bad = {1, 3}
    for n, item in enumerate(items(data)):
        if n in bad:
            item.attributes.add(key="poison").value.string_value = "secret content"

    def convert(one: Telemetry) -> object:
        for item in items(one):
            if any(kv.key == "poison" for kv in item.attributes):
                raise ValueError("secret content must not reach the log")
        return rows.convert_logs(Logs.from_proto(one))  # type: ignore[arg-type]

    good, errors = partition(data, convert)
    assert len(errors) == 2
    kept = [i.SerializeToString() for i in items(good)]
    assert kept == [i.SerializeToString() for n, i in enumerate(items(data)) if n not in bad]
    assert describe(errors[0]).startswith("ValueError at test_isolation.py:")
    assert "secret" not in describe(errors[0])


def test_clickhouse_conversion_drops_and_counts_only_the_unconvertible_items(
    tmp_path: Path,
) -> None:
    exporter = ClickHouseExporter(
        "clickhouse/isolation", ClickHouseExporterConfig.model_validate({"endpoint": ""})
    )
    data = Logs.from_proto(captured(Signal.LOGS))  # type: ignore[arg-type]
    data.records[0].attributes["poison"] = "x"

    def convert(records: Logs) -> rows.Batch:
        if any("poison" in record.attributes for record in records.records):
            raise OverflowError("a value the conversion cannot take")
        return rows.convert_logs(records)

    labels = {"exporter": "clickhouse/isolation", "signal": "logs", "reason": "conversion_error"}
    before = telemetry.value("agentwatch_exporter_dropped_items_total", **labels)
    batch = exporter._convert(convert, data, Signal.LOGS)
    assert sum(len(t) for t in batch.raw) == len(data) - 1
    assert telemetry.value("agentwatch_exporter_dropped_items_total", **labels) == before + 1
