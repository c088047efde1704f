"""Property: no legal OTLP value makes the default pipeline fail, lose a sibling, or lose count.

Records of every agent's real shapes (the captured CLI runs in tests/data/captured and the
Copilot samples) get arbitrary ``AnyValue`` trees -- strings, bools, ints up to the int64
extremes, doubles with NaN and infinities, bytes that are not UTF-8, arrays, maps, nesting,
empty values -- on the keys the normalisers read (their own keys, and every key any record of
the same agent carries: ``session.id``, token counts, ``model``, ``tool_name`` ...), on the
record or on its resource. Each request runs through the processors of configs/default.yaml
in a real service, into a real Prometheus exporter, and what comes out goes through the
ClickHouse row conversion. Metric points also get odd values (NaN, infinities, int64 extremes).
The properties:

* the request is answered (no exception), and nothing is refused;
* every record is accounted for: delivered, or counted in
  ``agentwatch_processor_dropped_items_total``;
* the records that were not changed are processed as they are without the odd sibling;
* neither the Prometheus exporter nor the row conversion fails on what was delivered;
* (fewer examples) a real ClickHouse, through the real exporter, takes all of it.
"""

from __future__ import annotations

import inspect
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import NumberDataPoint

import tests.support.components  # noqa: F401  (registers the inject receiver and recording exporter)
from collector import agent_model as am
from collector import otlp_json, telemetry
from collector.component import Signal, Telemetry, count_items
from collector.config import parse
from collector.isolation import items
from collector.pipeline import decode
from collector.service import Service
from exporters.clickhouse import rows
from exporters.clickhouse.exporter import ClickHouseExporter
from processors import vendors
from processors.vendors import vendor_for
from tests.support.clickhouse_fixture import ClickHouseDatabase, make_exporter
from tests.support.collector_process import free_port
from tests.support.components import InjectReceiver, RecordingExporter
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parents[1] / "data"
SEQ = "test.seq"
"""Marks each original record (or metric point) so the test can follow it."""

ITEMS = {
    Signal.LOGS: ("resource_logs", "scope_logs", "log_records"),
    Signal.TRACES: ("resource_spans", "scope_spans", "spans"),
}


# --- the requests -----------------------------------------------------------------------------


def _captured() -> list[tuple[str, Signal, Telemetry]]:
    out: list[tuple[str, Signal, Telemetry]] = []
    for agent in ("claude", "codex", "gemini"):
        path = DATA / "captured" / agent / "retry-tools-http-protobuf.json"
        if not path.exists():
            path = DATA / "captured" / agent / "retry-tools-http-json.json"
        for i, entry in enumerate(json.loads(path.read_text())):
            signal = Signal(entry["signal"])
            data = otlp_json.decode(signal, json.dumps(entry["request"]))
            out.append((f"{agent}[{i}]", signal, data))
    for name in sorted((DATA / "copilot").glob("*.json")):
        signal = Signal(name.name.split(".")[-2])
        out.append((name.name, signal, otlp_json.decode(signal, name.read_text())))
    return out


REQUESTS = _captured()


def resources(signal: Signal, data: Telemetry) -> list[Any]:
    key = "resource_metrics" if signal is Signal.METRICS else ITEMS[signal][0]
    return [r.resource for r in getattr(data, key)]


def service_of(signal: Signal, data: Telemetry) -> str:
    for resource in resources(signal, data):
        for kv in resource.attributes:
            if kv.key == "service.name":
                return kv.value.string_value
    return ""


def _normaliser_literals(service: str) -> set[str]:
    """Every key-like string literal of the service's vendor module and the shared vendor
    vocabulary: a superset of the attribute keys its normaliser reads."""
    vendor = vendor_for(service)
    if vendor is None:
        return set()
    source = "".join(
        Path(inspect.getsourcefile(module) or "").read_text() for module in (type(vendor), vendors)
    )
    return set(re.findall(r'"([A-Za-z][A-Za-z0-9_.]*)"', source))


def _agent_keys() -> dict[str, list[str]]:
    """Per service.name: the keys its normaliser reads and every key any of its items carry."""
    keys: dict[str, set[str]] = {}
    for _, signal, data in REQUESTS:
        service = service_of(signal, data)
        found = keys.setdefault(service, _normaliser_literals(service))
        for resource in resources(signal, data):
            found.update(kv.key for kv in resource.attributes)
        for item in items(data):
            found.update(kv.key for kv in item.attributes)
    return {service: sorted(found) for service, found in keys.items()}


AGENT_KEYS = _agent_keys()


# --- arbitrary AnyValue trees ---------------------------------------------------------------


def _string(text: str) -> AnyValue:
    return AnyValue(string_value=text)


def _array(values: list[AnyValue]) -> AnyValue:
    out = AnyValue()
    out.array_value.values.extend(values)
    return out


def _kvlist(pairs: list[tuple[str, AnyValue]]) -> AnyValue:
    out = AnyValue()
    out.kvlist_value.values.extend(KeyValue(key=k, value=v) for k, v in pairs)
    return out


NUMERIC_TEXT = [
    "1e30",
    "-1e30",
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    str(2**63),
    str(2**64 + 7),
    "-1",
    "",
    "  42 ",
    "1.5",
    "0x10",
    "1_000",
    "9" * 5000,
]
SCALARS = st.one_of(
    st.text(max_size=30).map(_string),
    st.sampled_from(NUMERIC_TEXT).map(_string),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda i: AnyValue(int_value=i)),
    st.sampled_from([-(2**63), 2**63 - 1, 0, -1]).map(lambda i: AnyValue(int_value=i)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: AnyValue(double_value=f)),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -0.0]).map(
        lambda f: AnyValue(double_value=f)
    ),
    st.binary(max_size=20).map(lambda b: AnyValue(bytes_value=b)),
    st.sampled_from([b"\xff\xfe", b"\x80abc", b"\xc3\x28", b""]).map(
        lambda b: AnyValue(bytes_value=b)
    ),
    st.just(AnyValue()),
)
ODD_NUMBERS = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -1e308, -1.0]),
    st.sampled_from([2**63 - 1, -(2**63), -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
ANY_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(_array),
        st.lists(st.tuples(st.text(max_size=10), children), max_size=4).map(_kvlist),
    ),
    max_leaves=8,
)


@st.composite
def odd_requests(draw: st.DrawFn) -> tuple[str, Signal, Telemetry, set[int]]:
    """A captured request with odd values on one or a few of its items (or their resource);
    returns the SEQs of the items left as they were."""
    name, signal, base = draw(st.sampled_from(REQUESTS))
    data = type(base)()
    data.CopyFrom(base)
    all_items = list(items(data))
    for seq, item in enumerate(all_items):
        item.attributes.add(key=SEQ).value.int_value = seq
    changed: set[int] = set()
    targets = draw(
        st.lists(st.integers(0, len(all_items) - 1), min_size=1, max_size=3, unique=True)
    )
    service = service_of(signal, data)
    vendor = vendor_for(service)
    trace_shared = (
        {"gen_ai.conversation.id", *vendor.identity_keys.get(am.USER_ID, ())}
        if signal is Signal.TRACES and vendor is not None
        else set()
    )
    for seq in targets:
        item = all_items[seq]
        own = sorted({kv.key for kv in item.attributes} - {SEQ})
        read = st.sampled_from(AGENT_KEYS[service])
        keys = st.one_of(st.sampled_from(own), read) if own else read
        for key in draw(st.lists(keys, min_size=1, max_size=4)):
            if key in trace_shared:  # the normaliser lends it to the trace's other spans
                changed.update(
                    i for i, other in enumerate(all_items) if other.trace_id == item.trace_id
                )
            value = draw(ANY_VALUES)
            existing = [kv for kv in item.attributes if kv.key == key]
            if existing:
                existing[0].value.CopyFrom(value)
            else:
                item.attributes.add(key=key).value.CopyFrom(value)
        if signal is Signal.METRICS and draw(st.booleans()):  # an odd number as the value too
            number = draw(ODD_NUMBERS)
            if isinstance(item, NumberDataPoint):
                if isinstance(number, int):
                    item.as_int = number
                else:
                    item.as_double = number
            elif hasattr(item, "sum"):
                item.sum = float(number)
        changed.add(seq)
    if draw(st.booleans()):  # odd identity on the resource too: every item of it changes
        resource = draw(st.sampled_from(resources(signal, data)))
        key = draw(st.sampled_from(["session.id", "user.email", "user.id", "service.version"]))
        resource.attributes.add(key=key).value.CopyFrom(draw(ANY_VALUES))
        changed.update(range(len(all_items)))
    untouched = set(range(len(all_items))) - changed
    return name, signal, data, untouched


# --- the service --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """configs/default.yaml's processors and pipelines, fed by a test receiver, delivering to a
    recording exporter and a real Prometheus exporter."""
    tmp = tmp_path_factory.mktemp("odd")
    default = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    queue = {"sending_queue": {"batch_timeout": 0}}
    raw = {
        "receivers": {"inject": {}},
        "processors": default["processors"],
        "exporters": {
            "recording": queue,
            "prometheus": {"endpoint": f"127.0.0.1:{free_port()}", **queue},
        },
        "service": {
            "data_dir": str(tmp),
            "shutdown_timeout": 10,
            "pipelines": {
                sig: {**p, "receivers": ["inject"], "exporters": ["recording", "prometheus"]}
                for sig, p in default["service"]["pipelines"].items()
            },
        },
    }
    svc = Service(parse(raw, source="odd-values", env={}, base_dir=str(tmp)))
    svc.start()
    yield svc
    assert svc.shutdown()


def idle(svc: Service) -> bool:
    return all(runner.queue.items == 0 for runner in svc.runners.values())


def processor_drops(signal: Signal, reason: str | None = None) -> float:
    """``agentwatch_processor_dropped_items_total`` of one signal (one reason, or all)."""
    return sum(
        sample.value
        for metric in telemetry.REGISTRY.collect()
        if metric.name == "agentwatch_processor_dropped_items"
        for sample in metric.samples
        if sample.name.endswith("_total")
        and sample.labels["signal"] == signal.value
        and reason in (None, sample.labels["reason"])
    )


def failures() -> dict[str, float]:
    """Counters that must never move: an exporter raising, Prometheus unable to count."""
    return {
        "prometheus_errors": sum(
            telemetry.value("agentwatch_prometheus_skipped_items_total", **labels)
            for labels in (
                {"exporter": "prometheus", "signal": s.value, "reason": "error"} for s in Signal
            )
        ),
        "failed_attempts": sum(
            telemetry.value(
                "agentwatch_exporter_failed_attempts_total",
                exporter=e,
                signal=s.value,
                retryable=r,
            )
            for e in ("recording", "prometheus")
            for s in Signal
            for r in ("true", "false")
        ),
    }


def agent_view(item: Any) -> tuple[str, frozenset[str]]:
    """What normalising made of an item: its event type and which agentwatch keys it got."""
    keys = {kv.key: kv.value for kv in item.attributes}
    event = keys.get(am.EVENT)
    return (
        event.string_value if event is not None else "",
        frozenset(k for k in keys if k.startswith(am.P)),
    )


def by_seq(signal: Signal, delivered: list[tuple[Signal, Telemetry, str]]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for sig, data, _ in delivered:
        if sig is not signal:
            continue
        for item in items(data):
            for kv in item.attributes:
                if kv.key == SEQ:
                    out.setdefault(kv.value.int_value, item)
    return out


def run(svc: Service, signal: Signal, data: Telemetry) -> tuple[dict[int, Any], float]:
    """Push one request: the delivered items by SEQ, and how many items processors dropped."""
    delivered, dropped = push(svc, signal, data)
    return by_seq(signal, delivered), dropped


def push(
    svc: Service, signal: Signal, data: Telemetry
) -> tuple[list[tuple[Signal, Telemetry, str]], float]:
    """Push one request: every batch delivered for it, and how many items processors dropped."""
    receiver = svc.receivers["inject"]
    assert isinstance(receiver, InjectReceiver)
    recording = RecordingExporter.instances["recording"]
    start = len(recording.delivered)
    drops, errors = processor_drops(signal), processor_drops(signal, "processor_error")
    result = receiver.push(data)
    wait_for(lambda: idle(svc), timeout=30, what="every queue delivered")
    delivered = recording.delivered[start:]
    for sig, out, _ in delivered:  # on into the ClickHouse row conversion
        convert = {
            Signal.LOGS: rows.convert_logs,
            Signal.TRACES: rows.convert_traces,
            Signal.METRICS: rows.convert_metrics,
        }[sig]
        batch = convert(decode(out))  # type: ignore[operator]
        assert sum(len(t) for t in batch.raw) == count_items(out)
    # what the client is told it lost is what processors failed on
    assert result.rejected == processor_drops(signal, "processor_error") - errors
    return delivered, processor_drops(signal) - drops


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(example=odd_requests())
def test_odd_values_never_fail_the_default_pipeline(
    service: Service, example: tuple[str, Signal, Telemetry, set[int]]
) -> None:
    name, signal, data, untouched = example
    baseline_data = next(d for n, s, d in REQUESTS if n == name)
    baseline_input = type(baseline_data)()
    baseline_input.CopyFrom(baseline_data)
    for seq, item in enumerate(items(baseline_input)):
        item.attributes.add(key=SEQ).value.int_value = seq
    n_items = count_items(data)
    seqs = set(range(n_items))
    before = failures()

    errors = processor_drops(signal, "processor_error")
    baseline, _ = run(service, signal, baseline_input)
    delivered, dropped = run(service, signal, data)

    assert failures() == before, f"{name}: an exporter failed on what the pipeline delivered"
    # every record accounted for: delivered, or dropped and counted
    assert len(seqs - set(delivered)) == dropped, (name, sorted(seqs - set(delivered)), dropped)
    assert processor_drops(signal, "processor_error") == errors, (
        f"{name}: a processor failed on a legal value"
    )
    # siblings left as they were are processed as without the odd ones
    for seq in untouched:
        if seq in baseline:
            assert seq in delivered, (name, seq)
            assert agent_view(delivered[seq]) == agent_view(baseline[seq]), (name, seq)


RAW_TABLES = {Signal.LOGS: "otel_logs", Signal.TRACES: "otel_traces"}


@pytest.fixture
def clickhouse_exporter(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> Iterator[ClickHouseExporter]:
    exporter = make_exporter(clickhouse_schema, str(tmp_path), name="clickhouse/odd")
    yield exporter
    exporter.shutdown()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(example=odd_requests())
def test_what_odd_values_become_is_stored_by_a_real_clickhouse(
    service: Service,
    clickhouse_exporter: ClickHouseExporter,
    example: tuple[str, Signal, Telemetry, set[int]],
) -> None:
    """The delivered output of the same requests, inserted by the real exporter: no batch is
    refused by the server or dropped in conversion."""
    name, signal, data, _ = example
    delivered, _ = push(service, signal, data)
    for sig, out, _ in delivered:
        table = RAW_TABLES.get(sig)
        labels = {"exporter": "clickhouse/odd", "table": table or ""}
        before = telemetry.value("agentwatch_clickhouse_inserted_rows_total", **labels)
        # records, as the pipeline hands them to it; raises on any failure
        clickhouse_exporter.export(sig, decode(out), f"odd-{uuid.uuid4().hex}")
        if table:  # (the server's TTL may then drop rows of old samples at once)
            after = telemetry.value("agentwatch_clickhouse_inserted_rows_total", **labels)
            assert after - before == count_items(out), name
    assert (
        telemetry.value(
            "agentwatch_exporter_dropped_items_total",
            exporter="clickhouse/odd",
            signal=signal.value,
            reason="conversion_error",
        )
        == 0
    )
