"""collector.wire: request bytes into the record model, compiled and Python twin alike.

The twin (upb's ``FromString`` then ``from_proto``) is the reference: every implementation must
give the same model for every input, raise ``DecodeError`` for the same inputs, and never
crash. Each test runs once per implementation (the ``decoders`` fixture), so the twin passes
the same tests the compiled decoder does.
"""

from __future__ import annotations

import importlib
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from collector import wire
from collector.component import Signal
from collector.records import Logs, Traces
from collector.records import Resource as ModelResource
from collector.records import Scope as ModelScope
from collector.wire import IMPLEMENTATIONS, Decoders, twin
from tests.support.normalize_support import _capture_bytes

CAPTURES = sorted((Path(__file__).parents[1] / "data" / "captured").glob("*/*.json"))
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", params=sorted(IMPLEMENTATIONS))
def decoders(request: pytest.FixtureRequest) -> Decoders:
    return IMPLEMENTATIONS[request.param]


# --- comparing models ---------------------------------------------------------------------------
def canon(value: Any, contexts: dict[int, int]) -> Any:
    """A comparable picture of a model: types kept (True is not 1), floats by repr (NaN equals
    NaN), dict order kept, a Resource/Scope also by which shared object it is."""
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, list):
        return ("list", [canon(v, contexts) for v in value])
    if isinstance(value, dict):
        return ("dict", [(canon(k, contexts), canon(v, contexts)) for k, v in value.items()])
    if isinstance(value, bool | int | str | bytes) or value is None:
        return (type(value).__name__, value)
    fields = [(name, canon(getattr(value, name), contexts)) for name in type(value).__slots__]
    if isinstance(value, ModelResource | ModelScope):
        fields.append(("shared", contexts.setdefault(id(value), len(contexts))))
    return (type(value).__name__, fields)


def picture(model: Logs | Traces) -> Any:
    return canon(model.items(), {})


def outcome(decode: Callable[[bytes], Logs | Traces], body: bytes) -> Any:
    """The model's picture, or "DecodeError"; any other exception fails the test."""
    try:
        return picture(decode(body))
    except DecodeError:
        return "DecodeError"


def assert_same(decoders: Decoders, body: bytes, signal: Signal) -> Any:
    if signal is Signal.LOGS:
        expected = outcome(twin.decode_logs, body)
        assert outcome(decoders.decode_logs, body) == expected
    else:
        expected = outcome(twin.decode_traces, body)
        assert outcome(decoders.decode_traces, body) == expected
    return expected


# --- the module --------------------------------------------------------------------------------
def test_the_public_functions_are_the_chosen_implementation() -> None:
    assert (wire.decode_logs, wire.decode_traces) == IMPLEMENTATIONS[wire.IMPLEMENTATION]


def test_the_environment_can_ask_for_the_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(wire.ENV_VAR, "python")
    try:
        reloaded = importlib.reload(wire)
        assert reloaded.IMPLEMENTATION == "python"
        assert reloaded.decode_logs is twin.decode_logs
    finally:
        monkeypatch.delenv(wire.ENV_VAR)
        importlib.reload(wire)


def test_the_compiled_decoder_is_built() -> None:
    if "compiled" not in IMPLEMENTATIONS:
        pytest.skip("collector.wire.compiled not built (no Cython or C compiler at install)")
    assert wire.IMPLEMENTATION in ("compiled", "python")


# --- captured requests -------------------------------------------------------------------------
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_captured_requests_decode_as_the_twin(decoders: Decoders, path: Path) -> None:
    seen = 0
    for signal, body in _capture_bytes(path):
        if signal in (Signal.LOGS, Signal.TRACES):
            expected = assert_same(decoders, body, signal)
            assert expected != "DecodeError"
            seen += 1
    assert seen


# --- exact expectations ------------------------------------------------------------------------
def kv(key: str, value: AnyValue | None = None) -> KeyValue:
    return KeyValue(key=key) if value is None else KeyValue(key=key, value=value)


def test_values_of_every_kind(decoders: Decoders) -> None:
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[kv("service.name", AnyValue(string_value="x"))]),
                schema_url="r",
                scope_logs=[
                    ScopeLogs(
                        scope=InstrumentationScope(name="s", version="1"),
                        log_records=[
                            LogRecord(
                                time_unix_nano=2**64 - 1,
                                severity_number=-5,  # type: ignore[arg-type]
                                flags=2**32 - 1,
                                trace_id=b"\x00" * 16,
                                attributes=[
                                    kv("s", AnyValue(string_value="")),
                                    kv("i", AnyValue(int_value=-(2**63))),
                                    kv("d", AnyValue(double_value=math.nan)),
                                    kv("b", AnyValue(bool_value=False)),
                                    kv("y", AnyValue(bytes_value=b"\xff")),
                                    kv("none", AnyValue()),
                                    kv("unset"),
                                    kv("s", AnyValue(int_value=1)),
                                    kv(
                                        "a",
                                        AnyValue(
                                            array_value=ArrayValue(
                                                values=[AnyValue(), AnyValue(int_value=2)]
                                            )
                                        ),
                                    ),
                                    kv(
                                        "m",
                                        AnyValue(
                                            kvlist_value=KeyValueList(
                                                values=[kv("k", AnyValue(bool_value=True))]
                                            )
                                        ),
                                    ),
                                ],
                            ),
                            LogRecord(body=AnyValue()),
                        ],
                    )
                ],
            )
        ]
    )
    logs = decoders.decode_logs(request.SerializeToString())
    first, second = logs.records
    assert first.resource is second.resource and first.scope is second.scope
    assert first.resource.attributes == {"service.name": "x"}
    assert first.resource.schema_url == "r"
    assert (first.scope.name, first.scope.version) == ("s", "1")
    assert (first.time_unix_nano, first.severity_number, first.flags) == (2**64 - 1, -5, 2**32 - 1)
    assert first.trace_id == b"\x00" * 16 and first.span_id == b""
    assert list(first.attributes) == ["s", "i", "d", "b", "y", "none", "unset", "a", "m"]
    assert first.attributes["s"] == 1  # a repeated key: last value, first place
    assert first.attributes["i"] == -(2**63)
    assert math.isnan(first.attributes["d"])
    assert first.attributes["b"] is False
    assert first.attributes["y"] == b"\xff"
    assert first.attributes["none"] is None and first.attributes["unset"] is None
    assert first.attributes["a"] == [None, 2]
    assert first.attributes["m"] == {"k": True}
    assert first.body is None and second.body is None


def varint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def logs_request(*records: bytes, resource: bytes = b"", scope: bytes = b"") -> bytes:
    scope_logs = (field(1, scope) if scope else b"") + b"".join(field(2, r) for r in records)
    return field(1, (field(1, resource) if resource else b"") + field(2, scope_logs))


def test_protobuf_merge_rules(decoders: Decoders) -> None:
    """A singular message field seen twice merges, a scalar takes its last value, a oneof
    takes its last member, and the same array/kvlist member twice in a row merges."""
    array = field(5, field(1, field(1, b"a")))
    kvlist = field(6, field(1, field(1, b"k") + field(2, field(1, b"v"))))
    record = (
        field(6, field(1, b"x") + field(2, array) + field(2, array))  # [a, a]
        + field(6, field(1, b"y") + field(2, field(1, b"s")) + field(2, b""))  # stays "s"
        + field(6, field(1, b"z") + field(2, array + field(1, b"t") + array))  # [a]
        + field(6, field(1, b"w") + field(2, kvlist) + field(2, kvlist))  # {k: v}
        + field(5, field(1, b"body"))
        + field(5, varint(2 << 3) + varint(7))  # body: oneof's last member, True
        + varint(7 << 3)
        + varint(3)
        + varint(7 << 3)
        + varint(2**32 + 9)  # uint32: 9
    )
    resource = field(1, field(1, b"r1") + field(2, field(1, b"1")))
    resource_again = field(1, field(1, b"r2") + field(2, field(1, b"2")))
    body = field(
        1,
        field(1, resource)
        + field(2, field(1, field(1, b"n")) + field(2, record) + field(1, field(2, b"v")))
        + field(1, resource_again),
    )
    (only,) = decoders.decode_logs(body).records
    assert only.attributes == {"x": ["a", "a"], "y": "s", "z": ["a"], "w": {"k": "v"}}
    assert only.body is True
    assert only.dropped_attributes_count == 9
    assert only.resource.attributes == {"r1": "1", "r2": "2"}
    assert (only.scope.name, only.scope.version) == ("n", "v")


def test_unknown_fields_are_skipped(decoders: Decoders) -> None:
    unknown = (
        varint(99 << 3)
        + varint(1)
        + varint(98 << 3 | 1)
        + b"\x00" * 8
        + field(97, b"\xff\xfe")  # not UTF-8, but unknown: never read as text
        + varint(96 << 3 | 5)
        + b"\x00" * 4
        + varint(95 << 3 | 3)
        + varint(1 << 3)
        + varint(5)
        + varint(95 << 3 | 4)  # a group
        + varint(1 << 3)
        + varint(5)  # a known field with another wire type
    )
    record = field(3, b"INFO") + unknown + field(6, field(1, b"k") + unknown)
    (only,) = decoders.decode_logs(logs_request(record + unknown)).records
    assert only.severity_text == "INFO" and only.attributes == {"k": None}


def test_spans_with_events_links_and_status(decoders: Decoders) -> None:
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                scope_spans=[
                    ScopeSpans(
                        spans=[
                            Span(
                                name="call",
                                kind=Span.SPAN_KIND_CLIENT,
                                flags=0x101,
                                start_time_unix_nano=1,
                                end_time_unix_nano=2**63,
                                events=[Span.Event(name="e", attributes=[kv("a")])],
                                links=[Span.Link(trace_id=b"t", flags=3)],
                                status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
                            ),
                            Span(name="bare"),
                        ]
                    )
                ]
            )
        ]
    )
    call, bare = decoders.decode_traces(request.SerializeToString()).spans
    assert (call.name, call.kind, call.flags) == ("call", 3, 0x101)
    assert (call.start_time_unix_nano, call.end_time_unix_nano) == (1, 2**63)
    assert [(e.name, e.attributes) for e in call.events] == [("e", {"a": None})]
    assert [(k.trace_id, k.flags) for k in call.links] == [(b"t", 3)]
    assert (call.status_code, call.status_message) == (2, "boom")
    assert (bare.status_code, bare.status_message, bare.events, bare.links) == (0, "", [], [])


def test_an_empty_body_is_an_empty_batch(decoders: Decoders) -> None:
    assert len(decoders.decode_logs(b"")) == 0
    assert len(decoders.decode_traces(b"")) == 0


# --- invalid input -----------------------------------------------------------------------------
def nested_arrays(depth: int) -> bytes:
    """An AnyValue holding an array holding an array ... ``depth`` deep."""
    value = field(1, b"leaf")
    for _ in range(depth):
        value = field(5, field(1, value))
    return value


VALID_RECORD = field(3, b"INFO") + field(6, field(1, b"k") + field(2, field(1, b"v")))
CORRUPT = {
    "wire type 6": logs_request(VALID_RECORD + varint(20 << 3 | 6)),
    "wire type 7": logs_request(VALID_RECORD + varint(20 << 3 | 7)),
    "stray end group": logs_request(VALID_RECORD + varint(20 << 3 | 4)),
    "unterminated group": logs_request(VALID_RECORD + varint(20 << 3 | 3)),
    "mismatched end group": logs_request(VALID_RECORD + varint(20 << 3 | 3) + varint(21 << 3 | 4)),
    "field number 0": logs_request(VALID_RECORD + varint(0) + varint(1)),
    "overlong varint": logs_request(VALID_RECORD + varint(2 << 3) + b"\xff" * 10 + b"\x01"),
    "overlong tag": logs_request(VALID_RECORD + b"\x80\x80\x80\x80\x80\x01" + varint(1)),
    "invalid UTF-8 key": logs_request(field(6, field(1, b"\xc3\x28"))),
    "invalid UTF-8 value": logs_request(field(6, field(1, b"k") + field(2, field(1, b"\xff")))),
    "surrogate in text": logs_request(field(3, b"\xed\xa0\x80")),
    "invalid UTF-8 scope name": logs_request(VALID_RECORD, scope=field(1, b"\xe2\x82")),
    "length past the end": logs_request(VALID_RECORD) + varint(1 << 3 | 2) + varint(100) + b"abc",
    "truncated fixed64": logs_request(VALID_RECORD + varint(1 << 3 | 1) + b"\x00" * 7),
    "nested too deeply": logs_request(field(5, nested_arrays(60))),
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_bodies_raise_decode_error(decoders: Decoders, name: str) -> None:
    with pytest.raises(DecodeError):
        decoders.decode_logs(CORRUPT[name])


@pytest.mark.parametrize("depth", range(44, 52))
def test_the_nesting_limit_is_upbs(decoders: Decoders, depth: int) -> None:
    """upb refuses messages nested more than 100 deep (here: arrays in an attribute value, and
    unknown groups at the top); the compiled decoder draws the line at the same place."""
    attribute = field(6, field(1, b"k") + field(2, nested_arrays(depth)))
    assert_same(decoders, logs_request(attribute), Signal.LOGS)
    groups = depth + 52
    body = varint(5 << 3 | 3) * groups + varint(5 << 3 | 4) * groups
    assert_same(decoders, body, Signal.TRACES)


def test_every_truncation_of_a_record_raises(decoders: Decoders) -> None:
    body = logs_request(VALID_RECORD + field(5, field(1, b"body")) + varint(1 << 3 | 1) + b"1" * 8)
    for cut in range(1, len(body)):
        with pytest.raises(DecodeError):
            decoders.decode_logs(body[:cut])


# --- random requests ---------------------------------------------------------------------------
INT64 = st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 2**31, -(2**31) - 1]) | st.integers(
    -(2**63), 2**63 - 1
)
UINT64 = st.sampled_from([0, 1, 2**63, 2**64 - 1]) | st.integers(0, 2**64 - 1)
UINT32 = st.sampled_from([0, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1)
INT32 = st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31)]) | st.integers(-(2**31), 2**31 - 1)
TEXT = st.sampled_from(["", "a", "é", "日本", "🙂", "\x00"]) | st.text(max_size=12)
KEYS = st.sampled_from(["a", "b", "", "ключ", "🙂"]) | st.text(max_size=6)
IDS = st.sampled_from([b"", b"\x00" * 8, b"\xff" * 16]) | st.binary(max_size=17)
DOUBLES = st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, -0.0, 5e-324]) | st.floats()
NAN_PAYLOAD = st.integers(0, 2**52 - 1).map(
    lambda bits: struct.unpack("<d", struct.pack("<Q", 0x7FF0_0000_0000_0001 | bits))[0]
)


def _scalar_values() -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        st.just(AnyValue()),
        TEXT.map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        INT64.map(lambda v: AnyValue(int_value=v)),
        (DOUBLES | NAN_PAYLOAD).map(lambda v: AnyValue(double_value=v)),
        IDS.map(lambda v: AnyValue(bytes_value=v)),
    )


def _nested(children: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        st.lists(children, max_size=4).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
        st.lists(st.tuples(KEYS, children), max_size=4).map(
            lambda kvs: AnyValue(
                kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])
            )
        ),
    )


ANY_VALUES = st.recursive(_scalar_values(), _nested, max_leaves=12)
ATTRIBUTES = st.lists(
    st.one_of(
        st.tuples(KEYS, ANY_VALUES).map(lambda t: KeyValue(key=t[0], value=t[1])),
        KEYS.map(lambda k: KeyValue(key=k)),  # no value at all
    ),
    max_size=6,
)
RESOURCES = st.builds(Resource, attributes=ATTRIBUTES, dropped_attributes_count=UINT32)
SCOPES = st.builds(
    InstrumentationScope,
    name=TEXT,
    version=TEXT,
    attributes=ATTRIBUTES,
    dropped_attributes_count=UINT32,
)
LOG_RECORDS = st.builds(
    LogRecord,
    time_unix_nano=UINT64,
    observed_time_unix_nano=UINT64,
    severity_number=INT32,
    severity_text=TEXT,
    body=st.none() | ANY_VALUES,
    attributes=ATTRIBUTES,
    dropped_attributes_count=UINT32,
    flags=UINT32,
    trace_id=IDS,
    span_id=IDS,
    event_name=TEXT,
)
LOGS_REQUESTS = st.builds(
    ExportLogsServiceRequest,
    resource_logs=st.lists(
        st.builds(
            ResourceLogs,
            resource=st.none() | RESOURCES,
            schema_url=TEXT,
            scope_logs=st.lists(
                st.builds(
                    ScopeLogs,
                    scope=st.none() | SCOPES,
                    schema_url=TEXT,
                    log_records=st.lists(LOG_RECORDS, max_size=3),
                ),
                max_size=3,
            ),
        ),
        max_size=3,
    ),
)
SPANS = st.builds(
    Span,
    trace_id=IDS,
    span_id=IDS,
    trace_state=TEXT,
    parent_span_id=IDS,
    flags=UINT32,
    name=TEXT,
    kind=INT32,
    start_time_unix_nano=UINT64,
    end_time_unix_nano=UINT64,
    attributes=ATTRIBUTES,
    dropped_attributes_count=UINT32,
    events=st.lists(
        st.builds(
            Span.Event,
            time_unix_nano=UINT64,
            name=TEXT,
            attributes=ATTRIBUTES,
            dropped_attributes_count=UINT32,
        ),
        max_size=2,
    ),
    dropped_events_count=UINT32,
    links=st.lists(
        st.builds(
            Span.Link,
            trace_id=IDS,
            span_id=IDS,
            trace_state=TEXT,
            attributes=ATTRIBUTES,
            dropped_attributes_count=UINT32,
            flags=UINT32,
        ),
        max_size=2,
    ),
    dropped_links_count=UINT32,
    status=st.none() | st.builds(Status, code=INT32, message=TEXT),
)
TRACES_REQUESTS = st.builds(
    ExportTraceServiceRequest,
    resource_spans=st.lists(
        st.builds(
            ResourceSpans,
            resource=st.none() | RESOURCES,
            schema_url=TEXT,
            scope_spans=st.lists(
                st.builds(
                    ScopeSpans,
                    scope=st.none() | SCOPES,
                    schema_url=TEXT,
                    spans=st.lists(SPANS, max_size=3),
                ),
                max_size=2,
            ),
        ),
        max_size=2,
    ),
)


@SETTINGS
@given(request=LOGS_REQUESTS)
def test_random_logs_requests_decode_as_the_twin(
    decoders: Decoders, request: ExportLogsServiceRequest
) -> None:
    assert assert_same(decoders, request.SerializeToString(), Signal.LOGS) != "DecodeError"


@SETTINGS
@given(request=TRACES_REQUESTS)
def test_random_traces_requests_decode_as_the_twin(
    decoders: Decoders, request: ExportTraceServiceRequest
) -> None:
    assert assert_same(decoders, request.SerializeToString(), Signal.TRACES) != "DecodeError"


# --- random wire bytes: repeated singular fields, unknown fields, wrong wire types, bad text --
# field number -> what the wire carries: a message name, or varint/fixed64/fixed32/text/bytes
SCHEMAS: dict[str, dict[int, str]] = {
    "LogsRequest": {1: "ResourceLogs"},
    "ResourceLogs": {1: "Resource", 2: "ScopeLogs", 3: "text"},
    "ScopeLogs": {1: "Scope", 2: "LogRecord", 3: "text"},
    "LogRecord": {
        1: "fixed64",
        2: "varint",
        3: "text",
        5: "AnyValue",
        6: "KeyValue",
        7: "varint",
        8: "fixed32",
        9: "bytes",
        10: "bytes",
        11: "fixed64",
        12: "text",
    },
    "TracesRequest": {1: "ResourceSpans"},
    "ResourceSpans": {1: "Resource", 2: "ScopeSpans", 3: "text"},
    "ScopeSpans": {1: "Scope", 2: "Span", 3: "text"},
    "Span": {
        1: "bytes",
        2: "bytes",
        3: "text",
        4: "bytes",
        5: "text",
        6: "varint",
        7: "fixed64",
        8: "fixed64",
        9: "KeyValue",
        10: "varint",
        11: "Event",
        12: "varint",
        13: "Link",
        14: "varint",
        15: "Status",
        16: "fixed32",
    },
    "Event": {1: "fixed64", 2: "text", 3: "KeyValue", 4: "varint"},
    "Link": {1: "bytes", 2: "bytes", 3: "text", 4: "KeyValue", 5: "varint", 6: "fixed32"},
    "Status": {2: "text", 3: "varint"},
    "Resource": {1: "KeyValue", 2: "varint"},
    "Scope": {1: "text", 2: "text", 3: "KeyValue", 4: "varint"},
    "KeyValue": {1: "text", 2: "AnyValue"},
    "AnyValue": {
        1: "text",
        2: "varint",
        3: "varint",
        4: "fixed64",
        5: "ArrayValue",
        6: "KeyValueList",
        7: "bytes",
    },
    "ArrayValue": {1: "AnyValue"},
    "KeyValueList": {1: "KeyValue"},
}
WIRE_TYPES = {"varint": 0, "fixed64": 1, "fixed32": 5, "text": 2, "bytes": 2}


def _varint_bytes(n: int, padding: int) -> bytes:
    """A varint, optionally with redundant continuation bytes (still at most 10 bytes)."""
    encoded = bytearray(varint(n))
    for _ in range(min(padding, 10 - len(encoded))):
        encoded[-1] |= 0x80
        encoded.append(0)
    return bytes(encoded)


@st.composite
def _unknown_field(draw: st.DrawFn, depth: int) -> bytes:
    number = draw(st.sampled_from([17, 18, 100, 536870911]))
    wire_type = draw(st.sampled_from([0, 1, 2, 5, 3] if depth > 0 else [0, 1, 2, 5]))
    tag = varint(number << 3 | wire_type)
    if wire_type == 0:
        return tag + _varint_bytes(draw(UINT64), draw(st.integers(0, 2)))
    if wire_type == 1:
        return tag + draw(st.binary(min_size=8, max_size=8))
    if wire_type == 5:
        return tag + draw(st.binary(min_size=4, max_size=4))
    if wire_type == 2:
        payload = draw(st.binary(max_size=6))
        return tag + varint(len(payload)) + payload
    inner = b"".join(draw(st.lists(_unknown_field(depth - 1), max_size=2)))
    return tag + inner + varint(number << 3 | 4)


@st.composite
def wire_message(draw: st.DrawFn, name: str, depth: int) -> bytes:
    schema = SCHEMAS[name]
    numbers = [n for n, kind in schema.items() if kind in WIRE_TYPES or depth > 0]
    parts = []
    for _ in range(draw(st.integers(0, 5 if depth > 0 else 3))):
        choice = draw(st.integers(0, 9))
        if choice == 0 or not numbers:
            parts.append(draw(_unknown_field(2)))
            continue
        number = draw(st.sampled_from(numbers))
        kind = schema[number]
        wrong = choice == 1  # a known field with another wire type: an unknown field
        wire_type = WIRE_TYPES.get(kind, 2)
        if wrong:
            wire_type = draw(st.sampled_from([t for t in (0, 1, 2, 5) if t != wire_type]))
            kind = {0: "varint", 1: "fixed64", 2: "bytes", 5: "fixed32"}[wire_type]
        tag = varint(number << 3 | wire_type)
        if kind == "varint":
            parts.append(tag + _varint_bytes(draw(UINT64), draw(st.integers(0, 2))))
        elif kind == "fixed64":
            parts.append(tag + draw(st.binary(min_size=8, max_size=8)))
        elif kind == "fixed32":
            parts.append(tag + draw(st.binary(min_size=4, max_size=4)))
        else:
            if kind == "text":
                invalid = draw(st.integers(0, 59)) == 0  # now and then, not UTF-8
                payload = draw(
                    st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])
                    if invalid
                    else TEXT.map(str.encode)
                )
            elif kind == "bytes":
                payload = draw(st.binary(max_size=8))
            else:
                payload = draw(wire_message(kind, depth - 1))
            parts.append(tag + varint(len(payload)) + payload)
    return b"".join(parts)


@SETTINGS
@given(body=wire_message("LogsRequest", 7))
def test_random_logs_wire_bytes_decode_as_the_twin(decoders: Decoders, body: bytes) -> None:
    assert_same(decoders, body, Signal.LOGS)


@SETTINGS
@given(body=wire_message("TracesRequest", 7))
def test_random_traces_wire_bytes_decode_as_the_twin(decoders: Decoders, body: bytes) -> None:
    assert_same(decoders, body, Signal.TRACES)


@SETTINGS
@given(
    request=LOGS_REQUESTS,
    edits=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=3),
    cut=st.integers(0, 2**16),
)
def test_corrupted_bytes_fail_or_decode_as_the_twin(
    decoders: Decoders,
    request: ExportLogsServiceRequest,
    edits: list[tuple[int, int]],
    cut: int,
) -> None:
    body = bytearray(request.SerializeToString())
    if not body:
        return
    for position, byte in edits:
        body[position % len(body)] = byte
    assert_same(decoders, bytes(body), Signal.LOGS)
    assert_same(decoders, bytes(body[: cut % len(body)]), Signal.LOGS)
    assert_same(decoders, bytes(body), Signal.TRACES)
