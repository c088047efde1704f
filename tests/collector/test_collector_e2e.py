"""The collector as a user runs it: ``agentwatch serve``, fed by the OTel SDK's exporters."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.support.collector_process import CollectorProcess, otlp_config, read_debug


def _exporters(protocol: str, endpoint: str) -> tuple[Any, Any, Any]:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (
            OTLPLogExporter(endpoint=endpoint, insecure=True),
            OTLPMetricExporter(endpoint=endpoint, insecure=True),
            OTLPSpanExporter(endpoint=endpoint, insecure=True),
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HLog
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HMet
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HSpan

    return (
        HLog(endpoint=f"{endpoint}/v1/logs"),
        HMet(endpoint=f"{endpoint}/v1/metrics"),
        HSpan(endpoint=f"{endpoint}/v1/traces"),
    )


def _attrs(kvs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        ((vtype, value),) = kv["value"].items()
        out[kv["key"]] = int(value) if vtype == "intValue" else value
    return out


def _send_all(protocol: str, endpoint: str, tag: str) -> None:
    resource = Resource.create({"service.name": "sdk-test", "team": "platform", "run": tag})
    log_exp, metric_exp, span_exp = _exporters(protocol, endpoint)

    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(log_exp))
    logger = lp.get_logger("test.scope", "1.2.3")
    for i in range(3):
        logger.emit(
            LogRecord(
                timestamp=1_760_000_000_000_000_000 + i,
                body=f"event {i}",
                severity_number=SeverityNumber.INFO,
                attributes={
                    "event.name": "api_request",
                    "i": i,
                    "model": "m-1",
                    "ok": True,
                    "x": 1.5,
                },
            )
        )
    lp.shutdown()

    reader = PeriodicExportingMetricReader(metric_exp, export_interval_millis=60_000)
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    meter = mp.get_meter("test.meter")
    meter.create_counter("tokens", unit="{token}").add(42, {"type": "input"})
    meter.create_histogram("latency", unit="s").record(0.25, {"route": "a"})
    mp.shutdown()

    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(span_exp))
    tracer = tp.get_tracer("test.tracer")
    with (
        tracer.start_as_current_span("parent", attributes={"k": "v"}),
        tracer.start_as_current_span("child"),
    ):
        pass
    tp.shutdown()


def _wait_lines(path: Path, predicate: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = read_debug(path)
        if predicate(lines):
            return lines
        time.sleep(0.1)
    raise AssertionError(f"debug output never matched; got {read_debug(path)!r}")


def _by_signal(lines: list[dict[str, Any]], signal_name: str) -> list[dict[str, Any]]:
    return [line["request"] for line in lines if line["signal"] == signal_name]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sdk_exporters_arrive_attribute_by_attribute(tmp_path: Path, protocol: str) -> None:
    out = tmp_path / "debug.jsonl"
    cfg = otlp_config(
        tmp_path, {"debug": {"path": str(out), "sending_queue": {"batch_timeout": 0}}}
    )
    col = CollectorProcess(cfg, tmp_path).start()
    try:
        endpoint = (
            f"127.0.0.1:{col.grpc_port}"
            if protocol == "grpc"
            else f"http://127.0.0.1:{col.http_port}"
        )
        _send_all(protocol, endpoint, protocol)

        def complete(lines: list[dict[str, Any]]) -> bool:
            logs = sum(
                len(sl.get("logRecords", []))
                for r in _by_signal(lines, "logs")
                for rl in r["resourceLogs"]
                for sl in rl["scopeLogs"]
            )
            spans = sum(
                len(ss.get("spans", []))
                for r in _by_signal(lines, "traces")
                for rs in r["resourceSpans"]
                for ss in rs["scopeSpans"]
            )
            return logs == 3 and bool(_by_signal(lines, "metrics")) and spans == 2

        lines = _wait_lines(out, complete)
    finally:
        assert col.stop() == 0, col.logs()

    records = [
        (rl, sl, rec)
        for r in _by_signal(lines, "logs")
        for rl in r["resourceLogs"]
        for sl in rl["scopeLogs"]
        for rec in sl["logRecords"]
    ]
    assert len(records) == 3
    for i, (rl, sl, rec) in enumerate(sorted(records, key=lambda t: int(t[2]["timeUnixNano"]))):
        res = _attrs(rl["resource"]["attributes"])
        assert (
            res["service.name"] == "sdk-test"
            and res["team"] == "platform"
            and res["run"] == protocol
        )
        assert sl["scope"] == {"name": "test.scope", "version": "1.2.3"}
        assert rec["body"] == {"stringValue": f"event {i}"}
        assert int(rec["timeUnixNano"]) == 1_760_000_000_000_000_000 + i
        assert rec["severityNumber"] == 9
        assert _attrs(rec["attributes"]) == {
            "event.name": "api_request",
            "i": i,
            "model": "m-1",
            "ok": True,
            "x": 1.5,
        }

    metrics = {
        m["name"]: m
        for r in _by_signal(lines, "metrics")
        for rm in r["resourceMetrics"]
        for sm in rm["scopeMetrics"]
        for m in sm["metrics"]
    }
    tokens = metrics["tokens"]
    assert tokens["unit"] == "{token}"
    point = tokens["sum"]["dataPoints"][0]
    assert int(point["asInt"]) == 42 and _attrs(point["attributes"]) == {"type": "input"}
    assert tokens["sum"]["isMonotonic"] is True
    hist = metrics["latency"]["histogram"]["dataPoints"][0]
    assert int(hist["count"]) == 1 and hist["sum"] == 0.25

    spans = [
        s
        for r in _by_signal(lines, "traces")
        for rs in r["resourceSpans"]
        for ss in rs["scopeSpans"]
        for s in ss["spans"]
    ]
    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"parent", "child"}
    assert by_name["child"]["parentSpanId"] == by_name["parent"]["spanId"]
    assert by_name["child"]["traceId"] == by_name["parent"]["traceId"]
    assert len(by_name["parent"]["traceId"]) == 32  # hex, per the OTLP JSON mapping
    assert _attrs(by_name["parent"]["attributes"]) == {"k": "v"}


def test_sigterm_flushes_queued_data(tmp_path: Path) -> None:
    out = tmp_path / "debug.jsonl"
    # A long batch timeout keeps accepted data queued until shutdown forces it out.
    cfg = otlp_config(
        tmp_path, {"debug": {"path": str(out), "sending_queue": {"batch_timeout": "10m"}}}
    )
    col = CollectorProcess(cfg, tmp_path).start()
    _send_all("http", f"http://127.0.0.1:{col.http_port}", "flush")
    assert read_debug(out) == []
    assert col.stop(signal.SIGTERM) == 0, col.logs()
    lines = read_debug(out)
    assert {line["signal"] for line in lines} == {"logs", "metrics", "traces"}
    n_logs = sum(
        len(sl["logRecords"])
        for r in _by_signal(lines, "logs")
        for rl in r["resourceLogs"]
        for sl in rl["scopeLogs"]
    )
    assert n_logs == 3


def test_invalid_config_refuses_to_start(tmp_path: Path) -> None:
    cfg = otlp_config(tmp_path, {"debug": {"path": str(tmp_path / "x"), "no_such_key": 1}})
    col = CollectorProcess(cfg, tmp_path)
    with pytest.raises(RuntimeError, match="no_such_key: unknown key"):
        col.start(timeout=20)
