"""Shared helpers of the normalisation tests (no tests here).

Captured and sample files are OTLP/JSON; they are decoded with the collector's own codec
(``collector.otlp_json``), which knows that OTLP/JSON ids are hex, unlike ``json_format``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from collector import agent_model as am
from collector import otlp_json
from collector.component import (
    REQUEST_TYPES,
    LogsData,
    MetricsData,
    Signal,
    Telemetry,
    TracesData,
)
from collector.otlp_values import decode_attributes
from collector.records import Logs, Traces
from processors.normalize import NormalizeConfig, NormalizeProcessor

ROOT = Path(__file__).resolve().parents[2]
CAPTURED = ROOT / "tests" / "data" / "captured"
COPILOT_DATA = ROOT / "tests" / "data" / "copilot"
SAMPLES = ROOT.parent / "shared" / "samples"  # ../shared beside the checkout, as CI has it


def kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if value is None:
        return KeyValue(key=key)
    return KeyValue(key=key, value=AnyValue(string_value=value))


def log_request(
    service: str,
    records: list[dict[str, Any]],
    *,
    resource: dict[str, Any] | None = None,
    body_prefix: str = "",
) -> LogsData:
    """One resource, one scope, a record per attribute dict (``_time`` sets the timestamp)."""
    out = []
    for i, attrs in enumerate(records):
        attrs = dict(attrs)
        when = attrs.pop("_time", 1_790_000_000_000_000_000 + i * 1_000_000)
        name = attrs.get("event.name", "")
        out.append(
            LogRecord(
                time_unix_nano=when,
                body=AnyValue(string_value=f"{body_prefix}{name}"),
                attributes=[kv(k, v) for k, v in attrs.items()],
            )
        )
    res = {"service.name": service, **(resource or {})}
    return LogsData(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[kv(k, v) for k, v in res.items()]),
                scope_logs=[ScopeLogs(log_records=out)],
            )
        ]
    )


def processor(**config: Any) -> NormalizeProcessor:
    return NormalizeProcessor("normalize/test", NormalizeConfig(**config))


def run(proc: NormalizeProcessor, signal: Signal, data: Telemetry | Logs | Traces) -> Any:
    """``proc.process`` on the record model, as the pipeline runs it: logs and traces requests
    are decoded into records first and the output is protobuf again (metrics stay protobuf)."""
    if isinstance(data, LogsData):
        data = Logs.from_proto(data)
    elif isinstance(data, TracesData):
        data = Traces.from_proto(data)
    out = proc.process(signal, data)
    return out.to_proto() if isinstance(out, Logs | Traces) else out


class Hooks:
    """Collects what the processor hands to other pipelines."""

    def __init__(self, proc: NormalizeProcessor) -> None:
        self.metrics: list[MetricsData] = []
        self.logs: list[LogsData] = []
        proc.emit_metrics = self.metrics.append
        proc.emit_logs = self.logs.append


@functools.cache
def _capture_bytes(path: Path) -> list[tuple[Signal, bytes]]:
    entries = json.loads(path.read_text())
    return [
        (
            Signal(e["signal"]),
            otlp_json.decode(Signal(e["signal"]), json.dumps(e["request"])).SerializeToString(),
        )
        for e in entries
    ]


def load_capture(path: Path) -> list[tuple[Signal, Telemetry]]:
    """A captured run: each export request the CLI sent, freshly decoded (tests mutate them)."""
    return [
        (signal, REQUEST_TYPES[signal].FromString(blob)) for signal, blob in _capture_bytes(path)
    ]


def load_sample(path: Path) -> Telemetry:
    """A public sample: the OTLP/JSON export request under ``payload``."""
    payload = json.loads(path.read_text())["payload"]
    if "resourceLogs" in payload:
        signal = Signal.LOGS
    elif "resourceSpans" in payload:
        signal = Signal.TRACES
    else:
        signal = Signal.METRICS
    return otlp_json.decode(signal, json.dumps(payload))


def records(data: Telemetry | Logs | Traces | None) -> Iterator[dict[str, Any]]:
    """Attributes of every log record, metric point or span, as dicts."""
    if data is None:
        return
    if isinstance(data, Logs | Traces):
        data = data.to_proto()
    if isinstance(data, LogsData):
        for rl in data.resource_logs:
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    yield decode_attributes(r.attributes)
    elif isinstance(data, MetricsData):
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if kind is not None:
                        for p in getattr(m, kind).data_points:
                            yield decode_attributes(p.attributes)
    else:
        for rs in data.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    yield decode_attributes(s.attributes)


def events(data: Telemetry | None, kind: str | None = None) -> list[dict[str, Any]]:
    if data is None:
        return []
    return [r for r in records(data) if am.EVENT in r and (kind is None or r[am.EVENT] == kind)]


def token_row(event: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """(input, cache read, cache write, output, reasoning) of one api_call event."""
    return (
        event[am.INPUT_TOKENS],
        event[am.CACHE_READ_TOKENS],
        event[am.CACHE_WRITE_TOKENS],
        event[am.OUTPUT_TOKENS],
        event.get(am.REASONING_TOKENS, 0),
    )
