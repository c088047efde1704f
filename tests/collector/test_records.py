"""The record model: every OTLP field survives decode, encode and the wal encoding."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from collector.component import Signal
from collector.otlp_values import decode_value, encode_value
from collector.records import Logs, Resource, Scope, Traces
from tests.support.normalize_support import load_capture

CAPTURED = Path(__file__).parents[1] / "data" / "captured"
CAPTURES = sorted(CAPTURED.glob("*/*.json"))


def test_there_are_captures() -> None:
    assert len(CAPTURES) >= 5


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_captured_requests_round_trip_unchanged(path: Path) -> None:
    seen = 0
    for signal, request in load_capture(path):
        if signal is Signal.LOGS:
            logs = Logs.from_proto(request)  # type: ignore[arg-type]
            assert logs.to_proto() == request
            assert Logs.load(logs.dump()).to_proto() == request
            seen += len(logs)
        elif signal is Signal.TRACES:
            traces = Traces.from_proto(request)  # type: ignore[arg-type]
            _with_status(request)  # type: ignore[arg-type]
            assert traces.to_proto() == request
            assert Traces.load(traces.dump()).to_proto() == request
            seen += len(traces)
    assert seen > 0


def _with_status(request: ExportTraceServiceRequest) -> None:
    """An absent span status and an empty one both mean UNSET; the model writes it always.
    Attribute keys must be unique (OTLP); where an agent repeats one (Codex's ``thread.id``),
    the last value wins at the first one's place, as in every table since the first release."""
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.status.SetInParent()
                _last_value_wins(span.attributes)


def _last_value_wins(attributes: Any) -> None:
    kept: dict[str, Any] = {}
    for kv in attributes:
        if kv.key in kept:
            kept[kv.key].value.CopyFrom(kv.value)
        else:
            kept[kv.key] = kv
    if len(kept) < len(attributes):
        copies = [type(kv)() for kv in kept.values()]
        for copy, kv in zip(copies, kept.values(), strict=True):
            copy.CopyFrom(kv)
        del attributes[:]
        attributes.extend(copies)


def test_records_of_one_resource_share_it_and_every_field_is_read() -> None:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add(schema_url="https://r")
    rl.resource.attributes.add(key="service.name").value.string_value = "claude-code"
    rl.resource.dropped_attributes_count = 2
    sl = rl.scope_logs.add(schema_url="https://s")
    sl.scope.name, sl.scope.version = "com.anthropic.claude_code", "2.1"
    for i in range(2):
        lr = sl.log_records.add(
            time_unix_nano=10 + i,
            observed_time_unix_nano=20,
            severity_number=9,  # type: ignore[arg-type]
            severity_text="INFO",
            dropped_attributes_count=1,
            flags=1,
            trace_id=b"\x01" * 16,
            span_id=b"\x02" * 8,
            event_name="claude_code.api_request",
        )
        lr.body.string_value = "body"
        lr.attributes.add(key="n").value.int_value = i
    logs = Logs.from_proto(request)
    first, second = logs.records
    assert first.resource is second.resource and first.scope is second.scope
    assert first.resource.attributes == {"service.name": "claude-code"}
    assert (first.resource.schema_url, first.scope.schema_url) == ("https://r", "https://s")
    assert (first.scope.name, first.scope.version) == ("com.anthropic.claude_code", "2.1")
    assert (second.time_unix_nano, second.severity_text, second.body) == (11, "INFO", "body")
    assert (second.trace_id, second.event_name, second.attributes) == (
        b"\x01" * 16,
        "claude_code.api_request",
        {"n": 1},
    )
    first.resource.attributes["team"] = "a"
    assert second.resource.attributes["team"] == "a"
    assert logs.to_proto().resource_logs[0].resource.attributes[1].key == "team"


def test_records_from_two_resources_keep_their_resources_after_concat_and_wal() -> None:
    a, b = Resource({"service.name": "a"}), Resource({"service.name": "b"})
    scope = Scope("s")
    from collector.records import LogRecord

    logs = Logs.concat(
        [Logs([LogRecord(a, scope, attributes={"k": 1})]), Logs([LogRecord(b, scope)])]
    )
    back = Logs.load(logs.dump())
    assert [r.resource.attributes["service.name"] for r in back.records] == ["a", "b"]
    request = back.to_proto()
    assert [rl.resource.attributes[0].value.string_value for rl in request.resource_logs] == [
        "a",
        "b",
    ]


def test_span_events_links_and_status_round_trip() -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.SetInParent()
    ss = rs.scope_spans.add()
    ss.scope.SetInParent()
    span = ss.spans.add(name="chat", kind=3)  # type: ignore[arg-type]
    span.events.add(name="e", time_unix_nano=5).attributes.add(key="x").value.bool_value = True
    span.links.add(trace_id=b"t" * 16, span_id=b"s" * 8, flags=1)
    span.status.code = 2  # type: ignore[assignment]
    span.status.message = "boom"
    _with_status(request)
    traces = Traces.from_proto(request)
    (s,) = traces.spans
    assert (s.name, s.kind, s.status_code, s.status_message) == ("chat", 3, 2, "boom")
    assert s.events[0].attributes == {"x": True}
    assert traces.to_proto() == request
    assert Traces.load(traces.dump()).to_proto() == request


values = st.recursive(
    st.none()
    | st.text()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@given(values)
def test_every_python_value_encodes_and_decodes_to_itself(value: object) -> None:
    out = AnyValue()
    encode_value(value, out)
    assert decode_value(AnyValue.FromString(out.SerializeToString())) == value


def test_values_protobuf_cannot_hold_are_written_as_text() -> None:
    out = AnyValue()
    encode_value(2**70, out)
    assert out.string_value == str(2**70)
    nan = AnyValue()
    encode_value(math.nan, nan)
    assert math.isnan(decode_value(nan))
    empty = AnyValue()
    encode_value([], empty)
    assert empty.HasField("array_value") and decode_value(empty) == []
