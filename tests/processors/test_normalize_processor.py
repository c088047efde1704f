"""The normalize processor itself: dispatch, unknown services, directory, hooks, semconv."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.metrics.v1 import metrics_pb2

import tests.support.components  # noqa: F401 - registers the inject receiver and recording exporter
from collector import agent_model as am
from collector import registry, telemetry
from collector.component import (
    ConfigContext,
    Host,
    LogsData,
    MetricsData,
    Refused,
    Signal,
    Telemetry,
    count_items,
)
from collector.config import parse
from collector.records import Logs
from collector.service import Service
from processors.directory import Directory, DirectoryError
from processors.normalize import FACTORY, NormalizeConfig, NormalizeProcessor
from processors.vendors import USER_DISPLAY_NAME
from tests.support.components import InjectReceiver, RecordingExporter
from tests.support.normalize_support import (
    CAPTURED,
    Hooks,
    events,
    kv,
    load_capture,
    log_request,
    processor,
    records,
    run,
)
from tests.support.polling import wait_for

API_REQUEST = {
    "event.name": "api_request",
    "session.id": "s-1",
    "user.id": "u-hash-1",
    "user.email": "Alice@Example.com",
    "model": "claude-sonnet-4-5",
    "input_tokens": "1203",
    "output_tokens": "57",
    "cache_read_tokens": "15011",
    "cache_creation_tokens": "3007",
    "duration_ms": "1500",
    "request_id": "req_1",
    "team": "from-laptop",
}


def unknown_items(service: str, name: str = "normalize/test") -> float:
    return telemetry.value(
        "agentwatch_normalize_unknown_service_items_total",
        processor=name,
        signal="logs",
        service_name=service,
    )


def test_unknown_service_passes_untouched_and_is_counted() -> None:
    request = log_request("my-own-app", [{"event.name": "api_request", "input_tokens": "5"}] * 3)
    before = Logs.from_proto(request).to_proto().SerializeToString()  # as the pipeline sees it
    counted = unknown_items("my-own-app", "normalize/unknown")
    out = run(NormalizeProcessor("normalize/unknown", NormalizeConfig()), Signal.LOGS, request)
    assert out is not None and out.SerializeToString() == before
    assert unknown_items("my-own-app", "normalize/unknown") - counted == 3


def test_unknown_service_labels_are_capped() -> None:
    proc = NormalizeProcessor("normalize/cap", NormalizeConfig(max_unknown_service_labels=2))
    for service in ("svc-a", "svc-b", "svc-c", "svc-d"):
        run(proc, Signal.LOGS, log_request(service, [{"x": 1}]))
    run(proc, Signal.LOGS, log_request("svc-a", [{"x": 1}]))
    assert unknown_items("svc-a", "normalize/cap") == 2
    assert unknown_items("svc-b", "normalize/cap") == 1
    assert unknown_items("svc-c", "normalize/cap") == 0
    assert unknown_items("_other", "normalize/cap") == 2
    request = LogsData()
    request.resource_logs.add().scope_logs.add().log_records.add()
    run(proc, Signal.LOGS, request)
    assert unknown_items("_none", "normalize/cap") == 1


def test_service_name_override() -> None:
    proc = processor(service_names={"acme-claude": "claude_code"})
    (call,) = events(run(proc, Signal.LOGS, log_request("acme-claude", [API_REQUEST])))
    assert call[am.AGENT] == "claude_code" and call[am.INPUT_TOKENS] == 1203


def test_vendor_keys_are_kept_and_never_overwritten() -> None:
    request = log_request("claude-code", [{**API_REQUEST, "gen_ai.request.model": "as-sent"}])
    vendor_keys = set(records(request).__next__())
    out = run(processor(), Signal.LOGS, request)
    (record,) = records(out)
    assert vendor_keys <= set(record)
    assert record["input_tokens"] == "1203"  # the raw tables keep the vendor's number
    assert record["gen_ai.request.model"] == "as-sent"
    assert record["gen_ai.response.model"] == "claude-sonnet-4-5"


# --- directory ----------------------------------------------------------------------------------
def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


YAML_LIST = """
users:
  - email: alice@example.com
    team: payments
    cost_center: cc-100
    display_name: Alice A.
  - user_id: b5bd959f-install
    team: search
"""
YAML_MAP = """
alice@example.com: {team: payments, cost_center: cc-100, display_name: Alice A.}
acct-42: {team: infra}
"""
CSV = """email,account_id,user_id,team,cost_center,display_name,manager
alice@example.com,,,payments,cc-100,Alice A.,Zoe
,acct-42,,infra,,,
"""


@pytest.mark.parametrize(
    ("name", "text"), [("d.yaml", YAML_LIST), ("d.yml", YAML_MAP), ("d.csv", CSV)]
)
def test_directory_enriches_and_wins_over_resource_attributes(
    tmp_path: Path, name: str, text: str
) -> None:
    path = write(tmp_path, name, text)
    proc = processor(directory_file=str(path))
    proc.start(Host(str(tmp_path)))
    (call,) = events(run(proc, Signal.LOGS, log_request("claude-code", [API_REQUEST])))
    assert (call[am.TEAM], call[am.COST_CENTER], call[USER_DISPLAY_NAME]) == (
        "payments",
        "cc-100",
        "Alice A.",
    )


def test_directory_groups_users_without_email(tmp_path: Path) -> None:
    directory = Directory.load(write(tmp_path, "d.yaml", YAML_LIST))
    entry = directory.lookup(None, None, "b5bd959f-install")
    assert entry is not None and entry.team == "search"
    assert directory.lookup("ALICE@example.com ", None, None) is not None
    assert directory.lookup("bob@example.com", "nope", "nope") is None
    by_account = Directory.load(write(tmp_path, "m.yaml", YAML_MAP)).lookup(None, "acct-42", None)
    assert by_account is not None and by_account.team == "infra"


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("bad.yaml", "users:\n  - team: x\n", "entry 0: needs one of email, account_id, user_id"),
        ("bad.yaml", "users: [\n", "not valid YAML"),
        ("bad.csv", "team,cost_center\nx,y\n", "needs one of email, account_id, user_id"),
        ("bad.csv", "email,team\na@b.c,\n", "line 2: needs one of team, cost_center"),
        ("bad.json", "{}", "use a .yaml, .yml or .csv file"),
    ],
)
def test_directory_errors_name_the_config_key_and_the_file(
    tmp_path: Path, name: str, text: str, problem: str
) -> None:
    path = write(tmp_path, name, text)
    config = NormalizeConfig(directory_file=str(path))
    errors = config.check("processors.normalize", ConfigContext(str(tmp_path), str(tmp_path)))
    assert errors and all(e.startswith("processors.normalize.directory_file: ") for e in errors)
    assert any(str(path) in e and problem in e for e in errors), errors


def test_missing_directory_file(tmp_path: Path) -> None:
    config = NormalizeConfig(directory_file=str(tmp_path / "nope.yaml"))
    (error,) = config.check("processors.normalize/x", ConfigContext(".", "."))
    assert error.startswith("processors.normalize/x.directory_file: ")
    assert "nope.yaml: cannot read" in error
    with pytest.raises(DirectoryError):
        NormalizeProcessor("n", config).start(Host(str(tmp_path)))


# --- factory and registry ---------------------------------------------------------------------
def test_factory_and_registry() -> None:
    factory = registry.factory("processor", "normalize")
    assert factory is FACTORY and factory.config_class is NormalizeConfig
    built = factory.create("normalize/x", NormalizeConfig())
    assert isinstance(built, NormalizeProcessor)
    with pytest.raises(ValueError):
        NormalizeConfig.model_validate({"drop_chunks": True})  # unknown keys are errors


# --- derived data hooks -------------------------------------------------------------------------
def test_token_histogram_buckets_and_sums() -> None:
    proc = processor()
    hooks = Hooks(proc)
    run(proc, Signal.LOGS, log_request("claude-code", [API_REQUEST]))
    (data,) = hooks.metrics
    metrics = {m.name: m for m in data.resource_metrics[0].scope_metrics[0].metrics}
    usage = metrics["gen_ai.client.token.usage"].histogram.data_points
    by_type = {
        {a.key: a.value.string_value for a in p.attributes}["gen_ai.token.type"]: p for p in usage
    }
    inp = by_type["input"]
    assert inp.sum == 1203 + 15011 + 3007 and inp.count == 1
    assert list(inp.bucket_counts).index(1) == 8  # (16384, 65536]
    assert by_type["output"].sum == 57
    assert list(by_type["output"].bucket_counts).index(1) == 3  # (16, 64]
    (duration,) = metrics["gen_ai.client.operation.duration"].histogram.data_points
    assert duration.sum == 1.5
    assert list(duration.bucket_counts).index(1) == 8  # (1.28, 2.56]
    assert metrics["gen_ai.client.operation.duration"].unit == "s"
    assert metrics["gen_ai.client.token.usage"].unit == "{token}"


def test_no_hooks_no_derivation() -> None:
    proc = processor()
    out = run(proc, Signal.LOGS, log_request("claude-code", [API_REQUEST]))
    assert events(out, "api_call")  # normalisation itself does not need the hooks


def test_a_failing_derived_pipeline_is_counted_and_the_logs_go_on() -> None:
    proc = NormalizeProcessor("normalize/refusing", NormalizeConfig())

    def refuse(_: MetricsData) -> None:
        raise RuntimeError("a processor of the metrics pipeline failed")

    proc.emit_metrics = refuse
    before = telemetry.value(
        "agentwatch_processor_dropped_items_total",
        processor="normalize/refusing",
        signal="metrics",
        reason="derived_not_accepted",
    )
    out = run(proc, Signal.LOGS, log_request("claude-code", [API_REQUEST]))
    assert events(out, "api_call")
    after = telemetry.value(
        "agentwatch_processor_dropped_items_total",
        processor="normalize/refusing",
        signal="metrics",
        reason="derived_not_accepted",
    )
    assert after - before == 3  # input, output, duration points


def test_refused_derived_data_refuses_the_request_it_came_from() -> None:
    proc = processor()

    def refuse(_: Telemetry) -> None:
        raise Refused("exporter queue full: recording")

    proc.emit_metrics = refuse
    proc.emit_logs = refuse
    with pytest.raises(Refused):
        run(proc, Signal.LOGS, log_request("claude-code", [API_REQUEST]))
    with pytest.raises(Refused):
        run(proc, Signal.METRICS, claude_token_metrics())


def token_metrics(
    service: str,
    metric_name: str,
    counts: dict[str, int],
    *,
    cumulative: bool = False,
    interval: int = 1,
) -> MetricsData:
    """One export interval of an agent's token counter for one session and model."""
    data = MetricsData()
    rm = data.resource_metrics.add()
    rm.resource.attributes.extend([kv("service.name", service)])
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = metric_name
    metric.sum.is_monotonic = True
    metric.sum.aggregation_temporality = (
        metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        if cumulative
        else metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    )
    start = 1_800_000_000 * 10**9
    for token_type, count in counts.items():
        point = metric.sum.data_points.add(
            as_int=count,
            start_time_unix_nano=start if cumulative else start + (interval - 1) * 60 * 10**9,
            time_unix_nano=start + interval * 60 * 10**9,
        )
        point.attributes.extend(
            [
                kv("type", token_type),
                kv("model", "some-model"),
                kv("session.id", "s-metrics-only"),
                kv("user.id", "u-1"),
            ]
        )
    return data


def claude_token_metrics() -> MetricsData:
    return token_metrics("claude-code", "claude_code.token.usage", {"input": 1200, "output": 57})


@pytest.mark.parametrize(
    ("service", "metric_name", "cumulative"),
    [
        ("claude-code", "claude_code.token.usage", False),
        ("gemini-cli", "gemini_cli.token.usage", True),  # through cumulative-to-delta
    ],
)
def test_usage_rows_refused_by_full_queues_arrive_with_the_clients_retry(
    tmp_path: Path, service: str, metric_name: str, cumulative: bool
) -> None:
    """A metrics request whose derived api_usage rows meet a full logs queue is refused as a
    whole (not answered 200 with the rows lost); the client's retry stores metrics and rows
    once, with the same deltas when cumulative-to-delta ran on the refused request."""
    metrics_processors = ["cumulative_to_delta", "normalize"] if cumulative else ["normalize"]
    raw = {
        "receivers": {"inject": {}},
        "processors": {"normalize": {}, "cumulative_to_delta": {"initial_value": "keep"}},
        "exporters": {
            "recording/usage-logs": {"sending_queue": {"queue_size": 1, "batch_timeout": 0}},
            "recording/usage-metrics": {"sending_queue": {"batch_timeout": 0}},
        },
        "service": {
            "data_dir": str(tmp_path / "data"),
            "pipelines": {
                "logs": {
                    "receivers": ["inject"],
                    "processors": ["normalize"],
                    "exporters": ["recording/usage-logs"],
                },
                "metrics": {
                    "receivers": ["inject"],
                    "processors": metrics_processors,
                    "exporters": ["recording/usage-metrics"],
                },
            },
        },
    }
    svc = Service(parse(raw, source="test", env={}, base_dir=str(tmp_path)))
    svc.start()
    try:
        receiver = svc.receivers["inject"]
        assert isinstance(receiver, InjectReceiver)
        logs_out = RecordingExporter.instances["recording/usage-logs"]
        metrics_out = RecordingExporter.instances["recording/usage-metrics"]
        first = {"input": 1000, "output": 50}
        receiver.push(token_metrics(service, metric_name, first, cumulative=cumulative))
        wait_for(lambda: len(logs_out.delivered) == 1 and len(metrics_out.delivered) == 1)

        logs_out.gate.clear()  # the logs destination stalls: its queue of one item fills
        receiver.push(log_request("some-other-app", [{"event.name": "x"}]))
        second = {"input": 1600, "output": 80} if cumulative else {"input": 600, "output": 30}
        request = token_metrics(service, metric_name, second, cumulative=cumulative, interval=2)
        refused = {"receiver": "inject", "signal": "metrics", "reason": "derived_queue_full"}
        before = telemetry.value("agentwatch_receiver_refused_items_total", **refused)
        with pytest.raises(Refused):
            receiver.push(copy.deepcopy(request))
        after = telemetry.value("agentwatch_receiver_refused_items_total", **refused)
        assert after - before == count_items(request)
        logs_out.gate.set()
        wait_for(lambda: len(logs_out.delivered) == 2)
        runner = next(r for p in svc.pipelines for r in p.runners if r.name == logs_out.name)
        wait_for(lambda: runner.queue.items == 0)

        receiver.push(copy.deepcopy(request))  # the client's retry
        wait_for(lambda: len(logs_out.delivered) == 3 and len(metrics_out.delivered) == 2)
        usage = [
            (u[am.SESSION_ID], u[am.INPUT_TOKENS], u[am.OUTPUT_TOKENS])
            for _, data, _ in logs_out.delivered
            for u in events(data, "api_usage")
        ]
        assert usage == [("s-metrics-only", 1000, 50), ("s-metrics-only", 600, 30)]
    finally:
        assert svc.shutdown()


def test_derived_records_are_not_normalised_again() -> None:
    proc = processor()
    hooks = Hooks(proc)
    for signal, data in load_capture(CAPTURED / "claude" / "retry-tools-grpc.json"):
        if signal is Signal.METRICS:
            run(proc, signal, data)
    assert hooks.logs
    for logs in hooks.logs:
        again = copy.deepcopy(logs)
        run(proc, Signal.LOGS, again)
        assert again.to_proto().SerializeToString() == logs.to_proto().SerializeToString()
    for metrics in hooks.metrics:
        again_m = copy.deepcopy(metrics)
        run(proc, Signal.METRICS, again_m)
        assert again_m.SerializeToString() == metrics.SerializeToString()


def test_usage_records_from_a_redelivered_metric_batch_keep_their_ids() -> None:
    batches = [
        d
        for s, d in load_capture(CAPTURED / "claude" / "retry-tools-grpc.json")
        if s is Signal.METRICS
    ]
    ids = []
    for _ in range(2):
        proc = processor()
        hooks = Hooks(proc)
        for data in batches:
            run(proc, Signal.METRICS, copy.deepcopy(data))
        ids.append(sorted(r[am.EVENT_ID] for logs in hooks.logs for r in events(logs)))
    assert ids[0] and ids[0] == ids[1]


def test_metric_points_get_identity_not_events() -> None:
    data = MetricsData()
    rm = data.resource_metrics.add()
    rm.resource.attributes.extend([kv("service.name", "claude-code"), kv("team", "platform")])
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = "claude_code.session.count"
    metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    point = metric.sum.data_points.add(as_double=1.0)
    point.attributes.extend([kv("session.id", "s-9"), kv("user.id", "u-9"), kv("prompt.id", "p")])
    out = run(processor(), Signal.METRICS, data)
    (attrs,) = records(out)
    assert (attrs[am.AGENT], attrs[am.SESSION_ID], attrs[am.USER_ID], attrs[am.TEAM]) == (
        "claude_code",
        "s-9",
        "u-9",
        "platform",
    )
    assert am.PROMPT_ID not in attrs and am.EVENT not in attrs


@settings(max_examples=60, deadline=None)
@given(
    cached=st.integers(0, 10**7),
    uncached=st.integers(0, 10**7),
    reasoning=st.integers(0, 10**5),
    visible=st.integers(0, 10**5),
    form=st.sampled_from(["int", "str", "float-str"]),
)
def test_codex_tokens_in_any_form(
    cached: int, uncached: int, reasoning: int, visible: int, form: str
) -> None:
    def encode(n: int) -> object:
        return n if form == "int" else (str(n) if form == "str" else f"{n}.0")

    record = {
        "event.name": "codex.sse_event",
        "event.kind": "response.completed",
        "conversation.id": "c",
        "input_token_count": encode(uncached + cached),
        "cached_token_count": encode(cached),
        "output_token_count": encode(visible + reasoning),
        "reasoning_token_count": encode(reasoning),
    }
    (call,) = events(run(processor(), Signal.LOGS, log_request("codex_exec", [record])))
    assert (call[am.INPUT_TOKENS], call[am.CACHE_READ_TOKENS], call[am.OUTPUT_TOKENS]) == (
        uncached,
        cached,
        visible + reasoning,
    )
    assert call["gen_ai.usage.input_tokens"] == uncached + cached


def test_odd_values_are_read_as_well_as_they_can_be() -> None:
    """The values that used to fail a whole request (issue 10): a bytes session id is its
    base64 text (as the raw tables show it), a count beyond int64 or a NaN is not reported,
    never clamped, and a map holding bytes is JSON with the bytes in base64."""
    from processors.vendors import to_float, to_int, to_str

    assert to_str(b"\xde\xad\xbe\xef") == "3q2+7w=="
    assert to_str({"raw": b"\xff", "n": float("nan")}) == '{"n":NaN,"raw":"/w=="}'
    assert to_int("1e30") is None and to_int(str(2**64)) is None and to_int(1e300) is None
    assert to_int(2**63 - 1) == 2**63 - 1 and to_int("1200.0") == 1200
    assert to_int(float("inf")) is None and to_int("nan") is None and to_int("9" * 5000) is None
    assert to_float("nan") is None and to_float(float("-inf")) is None
    assert to_float("1e400") is None and to_float(" 1.5 ") == 1.5


def test_an_event_id_the_record_already_carries_is_kept() -> None:
    """The session-file importer names a call after its stored OTLP twin (and an upstream
    agentwatch re-exports its ids): the normaliser keeps that id; without one it derives it."""
    completed = {
        "event.name": "codex.sse_event",
        "event.kind": "response.completed",
        "conversation.id": "c-1",
        "input_token_count": "100",
        "output_token_count": "5",
    }
    named = {**completed, am.EVENT_ID: "0123456789abcdef0123456789abcdef"}
    out = run(processor(), Signal.LOGS, log_request("codex_exec", [completed, named]))
    first, second = events(out, "api_call")
    assert second[am.EVENT_ID] == "0123456789abcdef0123456789abcdef"
    assert first[am.EVENT_ID] not in ("", second[am.EVENT_ID])
