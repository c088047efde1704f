"""The OTLP JSON codec against protobuf's own JSON parser (``json_format``) as the reference.

``json_format`` knows proto3 JSON but not OTLP's hex ids, so the reference is fed the same JSON
with ids rewritten to base64; everything else (int64 as strings, enums as integers, camelCase and
snake_case keys, unknown fields) it must agree on exactly.
"""

from __future__ import annotations

import base64
import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from collector import otlp_json
from collector.component import REQUEST_TYPES, LogsData, Signal

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"
PARENT_ID = "0102030405060708"
ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


def hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode()
            if k in ID_KEYS and isinstance(v, str)
            else hex_ids_to_base64(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [hex_ids_to_base64(v) for v in node]
    return node


def reference(signal: Signal, obj: Any) -> Message:
    message = REQUEST_TYPES[signal]()
    json_format.Parse(json.dumps(hex_ids_to_base64(obj)), message, ignore_unknown_fields=True)
    return message


def assert_same_as_reference(signal: Signal, obj: Any) -> Message:
    decoded = otlp_json.decode(signal, json.dumps(obj).encode())
    expected = reference(signal, obj)
    assert decoded == expected
    assert decoded.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
    return decoded


def kv(key: str, value: dict[str, Any] | None) -> dict[str, Any]:
    return {"key": key} if value is None else {"key": key, "value": value}


NESTED_VALUE = {
    "kvlistValue": {
        "values": [
            kv("tools", {"arrayValue": {"values": [
                {"stringValue": "Bash"},
                {"intValue": 3},
                {"kvlistValue": {"values": [kv("deep", {"boolValue": False}),
                                            kv("nothing", None)]}},
                {"arrayValue": {"values": []}},
                {},
            ]}}),
            kv("ratio", {"doubleValue": "Infinity"}),
            kv("blob", {"bytesValue": base64.b64encode(b"\x00\xffbinary").decode()}),
        ]
    }
}

LOGS_JSON: dict[str, Any] = {
    "resourceLogs": [
        {
            "resource": {
                "attributes": [
                    kv("service.name", {"stringValue": "claude-code"}),
                    kv("host.arch", {"stringValue": "amd64"}),
                ],
                "droppedAttributesCount": 1,
            },
            "scopeLogs": [
                {
                    "scope": {
                        "name": "com.anthropic.claude_code.events",
                        "version": "2.1.328",
                        "attributes": [kv("scope.attr", {"intValue": "-7"})],
                    },
                    "logRecords": [
                        {
                            "timeUnixNano": "1790501729814000000",
                            "observedTimeUnixNano": 1790501729815000000,
                            "severityNumber": 9,
                            "severityText": "INFO",
                            "eventName": "api_request",
                            "body": {"stringValue": "claude_code.api_request"},
                            "attributes": [
                                kv("input_tokens", {"intValue": "1200"}),
                                kv("output_tokens", {"intValue": 57}),
                                kv("cost_usd", {"doubleValue": 0.020205}),
                                kv("success", {"boolValue": True}),
                                kv("big", {"intValue": "-9223372036854775808"}),
                                kv("nested", NESTED_VALUE),
                                kv("user.email", None),
                            ],
                            "droppedAttributesCount": 2,
                            "flags": 1,
                            "traceId": TRACE_ID,
                            "spanId": SPAN_ID,
                        },
                        {"body": NESTED_VALUE, "timeUnixNano": "0"},
                        {},
                    ],
                    "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                }
            ],
        }
    ]
}

METRICS_JSON: dict[str, Any] = {
    "resourceMetrics": [
        {
            "resource": {"attributes": [kv("service.name", {"stringValue": "gemini-cli"})]},
            "scopeMetrics": [
                {
                    "scope": {"name": "gemini-cli", "version": "0.61.0"},
                    "metrics": [
                        {
                            "name": "gemini_cli.token.usage",
                            "unit": "{token}",
                            "description": "tokens",
                            "sum": {
                                "aggregationTemporality": 2,
                                "isMonotonic": True,
                                "dataPoints": [
                                    {
                                        "attributes": [kv("type", {"stringValue": "input"})],
                                        "startTimeUnixNano": "1790501700000000000",
                                        "timeUnixNano": "1790501729000000000",
                                        "asInt": "18446744073709551",
                                        "flags": 0,
                                    }
                                ],
                            },
                        },
                        {
                            "name": "process.cpu",
                            "gauge": {
                                "dataPoints": [
                                    {
                                        "timeUnixNano": "1",
                                        "asDouble": 0.25,
                                        "exemplars": [
                                            {
                                                "timeUnixNano": "1",
                                                "asDouble": "NaN",
                                                "traceId": TRACE_ID,
                                                "spanId": SPAN_ID,
                                                "filteredAttributes": [
                                                    kv("k", {"stringValue": "v"})
                                                ],
                                            }
                                        ],
                                    },
                                    {"timeUnixNano": "2", "asDouble": "-Infinity"},
                                    {"timeUnixNano": "3", "asInt": -5},
                                ]
                            },
                            "metadata": [kv("meta", {"boolValue": True})],
                        },
                        {
                            "name": "gemini_cli.api.request.latency",
                            "unit": "ms",
                            "histogram": {
                                "aggregationTemporality": 1,
                                "dataPoints": [
                                    {
                                        "startTimeUnixNano": "1",
                                        "timeUnixNano": "2",
                                        "count": "6",
                                        "sum": 0,
                                        "min": 1.5,
                                        "max": 2600,
                                        "bucketCounts": ["1", 2, "0", "3"],
                                        "explicitBounds": [10, 100.5, 1000],
                                        "exemplars": [{"asInt": "4", "spanId": SPAN_ID}],
                                    }
                                ],
                            },
                        },
                        {
                            "name": "gen_ai.client.operation.duration",
                            "exponentialHistogram": {
                                "aggregationTemporality": 2,
                                "dataPoints": [
                                    {
                                        "timeUnixNano": "2",
                                        "count": "10",
                                        "sum": 12.5,
                                        "scale": -3,
                                        "zeroCount": "1",
                                        "zeroThreshold": 0.001,
                                        "positive": {"offset": -2, "bucketCounts": ["4", "3"]},
                                        "negative": {"offset": 1, "bucketCounts": [2]},
                                        "min": -4.0,
                                        "max": 9.0,
                                    }
                                ],
                            },
                        },
                        {
                            "name": "rpc.latency",
                            "summary": {
                                "dataPoints": [
                                    {
                                        "timeUnixNano": "5",
                                        "count": "3",
                                        "sum": 6.0,
                                        "quantileValues": [
                                            {"quantile": 0.5, "value": 2},
                                            {"quantile": 0.99, "value": 3.5},
                                        ],
                                    }
                                ]
                            },
                        },
                    ],
                }
            ],
        }
    ]
}

TRACES_JSON: dict[str, Any] = {
    "resourceSpans": [
        {
            "resource": {"attributes": [kv("service.name", {"stringValue": "copilot-chat"})]},
            "scopeSpans": [
                {
                    "scope": {"name": "copilot"},
                    "spans": [
                        {
                            "traceId": TRACE_ID,
                            "spanId": SPAN_ID,
                            "parentSpanId": PARENT_ID,
                            "traceState": "vendor=1",
                            "flags": 257,
                            "name": "chat gpt-5",
                            "kind": 3,
                            "startTimeUnixNano": "1790501729814000000",
                            "endTimeUnixNano": "1790501731073341125",
                            "attributes": [kv("gen_ai.usage.input_tokens", {"intValue": "812"})],
                            "droppedAttributesCount": 0,
                            "events": [
                                {
                                    "timeUnixNano": "1790501730000000000",
                                    "name": "gen_ai.client.inference.operation.details",
                                    "attributes": [kv("gen_ai.input.messages", NESTED_VALUE)],
                                    "droppedAttributesCount": 3,
                                }
                            ],
                            "droppedEventsCount": 1,
                            "links": [
                                {
                                    "traceId": "00000000000000000000000000000210",
                                    "spanId": "0000000000000211",
                                    "traceState": "a=b",
                                    "attributes": [kv("link", {"stringValue": "x"})],
                                    "flags": 1,
                                }
                            ],
                            "droppedLinksCount": 2,
                            "status": {"code": 2, "message": "rate limited"},
                        },
                        {"traceId": TRACE_ID, "spanId": PARENT_ID, "parentSpanId": "",
                         "name": "invoke_agent", "kind": 1, "status": {}},
                    ],
                }
            ],
        }
    ]
}


# --------------------------------------------------------------------------------------------
# Equivalence with the reference
# --------------------------------------------------------------------------------------------


def test_logs_decode_like_the_reference_and_like_the_protobuf_path() -> None:
    decoded = assert_same_as_reference(Signal.LOGS, LOGS_JSON)
    assert isinstance(decoded, LogsData)
    record = decoded.resource_logs[0].scope_logs[0].log_records[0]
    # the same record built the way a protobuf client would send it
    expected = LogRecord(
        time_unix_nano=1790501729814000000,
        observed_time_unix_nano=1790501729815000000,
        severity_number=9,
        severity_text="INFO",
        event_name="api_request",
        body=AnyValue(string_value="claude_code.api_request"),
        dropped_attributes_count=2,
        flags=1,
        trace_id=bytes.fromhex(TRACE_ID),
        span_id=bytes.fromhex(SPAN_ID),
        attributes=[
            KeyValue(key="input_tokens", value=AnyValue(int_value=1200)),
            KeyValue(key="output_tokens", value=AnyValue(int_value=57)),
            KeyValue(key="cost_usd", value=AnyValue(double_value=0.020205)),
            KeyValue(key="success", value=AnyValue(bool_value=True)),
            KeyValue(key="big", value=AnyValue(int_value=-(2**63))),
            KeyValue(
                key="nested",
                value=AnyValue(
                    kvlist_value=KeyValueList(
                        values=[
                            KeyValue(
                                key="tools",
                                value=AnyValue(
                                    array_value=ArrayValue(
                                        values=[
                                            AnyValue(string_value="Bash"),
                                            AnyValue(int_value=3),
                                            AnyValue(
                                                kvlist_value=KeyValueList(
                                                    values=[
                                                        KeyValue(
                                                            key="deep",
                                                            value=AnyValue(bool_value=False),
                                                        ),
                                                        KeyValue(key="nothing"),
                                                    ]
                                                )
                                            ),
                                            AnyValue(array_value=ArrayValue()),
                                            AnyValue(),
                                        ]
                                    )
                                ),
                            ),
                            KeyValue(key="ratio", value=AnyValue(double_value=math.inf)),
                            KeyValue(key="blob", value=AnyValue(bytes_value=b"\x00\xffbinary")),
                        ]
                    )
                ),
            ),
            KeyValue(key="user.email"),
        ],
    )
    assert record == expected
    assert LogRecord.FromString(expected.SerializeToString()) == record
    assert decoded.resource_logs[0].scope_logs[0].log_records[2] == LogRecord()


def test_every_metric_type_decodes_like_the_reference() -> None:
    decoded = assert_same_as_reference(Signal.METRICS, METRICS_JSON)
    metrics = decoded.resource_metrics[0].scope_metrics[0].metrics  # type: ignore[union-attr]
    assert [m.WhichOneof("data") for m in metrics] == [
        "sum", "gauge", "histogram", "exponential_histogram", "summary"
    ]
    assert metrics[2].histogram.data_points[0].HasField("sum")  # "sum": 0 is present, not unset
    assert list(metrics[2].histogram.data_points[0].bucket_counts) == [1, 2, 0, 3]
    assert math.isnan(metrics[1].gauge.data_points[0].exemplars[0].as_double)


def test_spans_with_events_links_and_status_decode_like_the_reference() -> None:
    decoded = assert_same_as_reference(Signal.TRACES, TRACES_JSON)
    span = decoded.resource_spans[0].scope_spans[0].spans[0]  # type: ignore[union-attr]
    assert span.links[0].span_id == bytes.fromhex("0000000000000211")
    assert span.parent_span_id == bytes.fromhex(PARENT_ID)


def snake_case(node: Any) -> Any:
    def snake(key: str) -> str:
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)

    if isinstance(node, dict):
        return {snake(k): snake_case(v) for k, v in node.items()}
    if isinstance(node, list):
        return [snake_case(v) for v in node]
    return node


@pytest.mark.parametrize(
    ("signal", "obj"),
    [(Signal.LOGS, LOGS_JSON), (Signal.METRICS, METRICS_JSON), (Signal.TRACES, TRACES_JSON)],
)
def test_snake_case_keys_decode_the_same(signal: Signal, obj: dict[str, Any]) -> None:
    snake = snake_case(obj)
    assert "resource_logs" in snake or "resource_metrics" in snake or "resource_spans" in snake
    assert otlp_json.decode(signal, json.dumps(snake)) == otlp_json.decode(signal, json.dumps(obj))
    assert otlp_json.decode(signal, json.dumps(snake)) == reference(signal, snake)


def test_unknown_fields_and_nulls_are_ignored_everywhere() -> None:
    obj = copy.deepcopy(LOGS_JSON)
    obj["futureTopLevel"] = {"x": 1}
    rl = obj["resourceLogs"][0]
    rl["resource"]["entityRefs"] = None
    rl["newResourceField"] = [1, 2]
    record = rl["scopeLogs"][0]["logRecords"][0]
    record["someNewField"] = "v"
    record["body"] = None
    record["attributes"][0]["value"]["futureKind"] = 1
    record["attributes"][1]["extra"] = True
    decoded = otlp_json.decode(Signal.LOGS, json.dumps(obj))
    assert decoded == reference(Signal.LOGS, obj)
    got = decoded.resource_logs[0].scope_logs[0].log_records[0]  # type: ignore[union-attr]
    assert not got.HasField("body")
    assert got.attributes[0].value.int_value == 1200


@pytest.mark.parametrize(
    ("signal", "obj"),
    [(Signal.LOGS, LOGS_JSON), (Signal.METRICS, METRICS_JSON), (Signal.TRACES, TRACES_JSON)],
)
def test_stdlib_json_fallback_gives_the_same_results(
    signal: Signal, obj: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What runs where orjson is not installed."""
    fast = otlp_json.decode(signal, json.dumps(obj))
    fast_encoded = otlp_json.encode(fast)
    monkeypatch.setattr(otlp_json, "_loads", otlp_json.stdlib_loads)
    monkeypatch.setattr(otlp_json, "_dumps", otlp_json.stdlib_dumps)
    slow = otlp_json.decode(signal, json.dumps(obj))
    assert slow.SerializeToString(deterministic=True) == fast.SerializeToString(
        deterministic=True
    )  # bytes, not ==, because the metrics sample holds a NaN
    slow_encoded = otlp_json.encode(slow)
    assert json.loads(slow_encoded) == json.loads(fast_encoded)
    assert otlp_json.decode(signal, slow_encoded).SerializeToString(deterministic=True) == (
        fast.SerializeToString(deterministic=True)
    )


def test_enum_names_are_accepted_as_well_as_integers() -> None:
    obj = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"kind": "SPAN_KIND_SERVER", "status": {"code": "STATUS_CODE_ERROR"}}
    ]}]}]}
    request = otlp_json.decode(Signal.TRACES, json.dumps(obj))
    span = request.resource_spans[0].scope_spans[0].spans[0]  # type: ignore[union-attr]
    assert (span.kind, span.status.code) == (2, 2)


@pytest.mark.parametrize(
    "sample",
    [
        "claude/t4avenger__claude-code-2.1.268-token-usage-metrics.otlp.json",
        "claude/t4avenger__claude-code-2.1.283-log-conversation.otlp.json",
        "claude/t4avenger__claude-code-2.1.283-trace-conversation.otlp.json",
        "codex/t4avenger__codex-0.145.0-logs.otlp.json",
    ],
)
def test_real_agent_samples_decode_like_the_reference_and_round_trip(sample: str) -> None:
    payload = json.loads((SAMPLES / sample).read_text())["payload"]
    signal = Signal.TRACES if "resourceSpans" in payload else (
        Signal.METRICS if "resourceMetrics" in payload else Signal.LOGS
    )
    decoded = assert_same_as_reference(signal, payload)
    assert otlp_json.decode(signal, otlp_json.encode(decoded)) == decoded


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def test_encode_writes_the_otlp_json_mapping() -> None:
    request = LogsData(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[KeyValue(key="service.name",
                                                       value=AnyValue(string_value="codex"))]),
                scope_logs=[
                    ScopeLogs(
                        scope=InstrumentationScope(name="s"),
                        log_records=[
                            LogRecord(
                                time_unix_nano=1790501729814000000,
                                severity_number=9,
                                trace_id=bytes.fromhex(TRACE_ID),
                                span_id=bytes.fromhex(SPAN_ID),
                                body=AnyValue(double_value=math.nan),
                                attributes=[
                                    KeyValue(key="n", value=AnyValue(int_value=7)),
                                    KeyValue(key="b", value=AnyValue(bytes_value=b"\x01\x02")),
                                    KeyValue(key="empty"),
                                ],
                            )
                        ],
                    )
                ],
            )
        ]
    )
    assert json.loads(otlp_json.encode(request)) == {
        "resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name",
                                         "value": {"stringValue": "codex"}}]},
            "scopeLogs": [{
                "scope": {"name": "s"},
                "logRecords": [{
                    "timeUnixNano": "1790501729814000000",
                    "severityNumber": 9,
                    "traceId": TRACE_ID,
                    "spanId": SPAN_ID,
                    "body": {"doubleValue": "NaN"},
                    "attributes": [
                        {"key": "n", "value": {"intValue": "7"}},
                        {"key": "b", "value": {"bytesValue": "AQI="}},
                        {"key": "empty"},
                    ],
                }],
            }],
        }]
    }
    assert b" " not in otlp_json.encode(request)  # compact


def test_encode_responses_and_rpc_status() -> None:
    response = ExportLogsServiceResponse(
        partial_success=ExportLogsPartialSuccess(rejected_log_records=3, error_message="bad")
    )
    assert json.loads(otlp_json.encode(response)) == {
        "partialSuccess": {"rejectedLogRecords": "3", "errorMessage": "bad"}
    }
    assert otlp_json.decode_message(ExportLogsServiceResponse, otlp_json.encode(response)) == (
        response
    )
    status = status_pb2.Status(code=8, message="slow down")
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromMilliseconds(1500)
    status.details.add().Pack(info)
    assert json.loads(otlp_json.encode(status)) == {
        "code": 8,
        "message": "slow down",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.500s"}],
    }


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def spans_with(**span: Any) -> bytes:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


def log_with(**record: Any) -> bytes:
    return json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}).encode()


def deep_value(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(levels):
        value = {"arrayValue": {"values": [value]}}
    return value


SPAN_PATH = "resourceSpans[0].scopeSpans[0].spans[0]"
LOG_PATH = "resourceLogs[0].scopeLogs[0].logRecords[0]"
ERRORS: list[tuple[str, Signal, bytes, str]] = [
    ("not json", Signal.LOGS, b"{nope", "invalid JSON"),
    ("empty", Signal.LOGS, b"", "invalid JSON"),
    ("not utf-8", Signal.LOGS, b'{"resourceLogs": "\xff"}', "invalid JSON"),
    ("top level array", Signal.LOGS, b"[]",
     "expected a JSON object at the top level, got an array"),
    ("base64 trace id", Signal.TRACES,
     spans_with(traceId=base64.b64encode(bytes.fromhex(TRACE_ID)).decode()),
     f"{SPAN_PATH}.traceId: traceId must be 32 hex digits (OTLP JSON ids are hex, not base64),"
     " got 24 characters"),
    ("non-hex id", Signal.TRACES, spans_with(spanId="zz" * 8),
     f"{SPAN_PATH}.spanId: spanId is not hex: '{'zz' * 8}' (OTLP JSON ids are hex)"),
    ("short parent id", Signal.TRACES, spans_with(parentSpanId="0102"),
     f"{SPAN_PATH}.parentSpanId: parentSpanId must be 16 hex digits (OTLP JSON ids are hex,"
     " not base64), got 4 characters"),
    ("int64 overflow", Signal.LOGS,
     log_with(attributes=[{"key": "k", "value": {"intValue": "9223372036854775808"}}]),
     f"{LOG_PATH}.attributes[0].value.intValue: integer 9223372036854775808 out of range"
     " [-9223372036854775808, 9223372036854775807]"),
    ("negative uint64", Signal.LOGS, log_with(timeUnixNano="-1"),
     f"{LOG_PATH}.timeUnixNano: integer -1 out of range [0, 18446744073709551615]"),
    ("fractional int", Signal.LOGS, log_with(timeUnixNano=1.5),
     f"{LOG_PATH}.timeUnixNano: expected an integer, got a number 1.5"),
    ("int with underscores", Signal.LOGS, log_with(timeUnixNano="1_000"),
     f"{LOG_PATH}.timeUnixNano: expected an integer, got a string '1_000'"),
    ("bool as int", Signal.LOGS, log_with(severityNumber=True),
     f"{LOG_PATH}.severityNumber: expected an integer, got a boolean True"),
    ("string as bool", Signal.LOGS,
     log_with(attributes=[{"key": "k", "value": {"boolValue": "true"}}]),
     f"{LOG_PATH}.attributes[0].value.boolValue: expected true or false, got a string"),
    ("number as string", Signal.LOGS, log_with(severityText=5),
     f"{LOG_PATH}.severityText: expected a string, got a number"),
    ("number as key", Signal.LOGS, log_with(attributes=[{"key": 5}]),
     f"{LOG_PATH}.attributes[0].key: expected a string, got a number"),
    ("object as list", Signal.LOGS, b'{"resourceLogs": {"scopeLogs": []}}',
     "resourceLogs: expected an array, got an object"),
    ("list as object", Signal.LOGS, b'{"resourceLogs": [{"resource": []}]}',
     "resourceLogs[0].resource: expected an object, got an array"),
    ("null in a list", Signal.LOGS, b'{"resourceLogs": [null]}',
     "resourceLogs[0]: null is not allowed in an array"),
    ("bad base64", Signal.LOGS,
     log_with(body={"bytesValue": "not base64!"}),
     f"{LOG_PATH}.body.bytesValue: invalid base64"),
    ("unknown enum name", Signal.LOGS, log_with(severityNumber="SEVERITY_NUMBER_LOUD"),
     f"{LOG_PATH}.severityNumber: expected an integer, got a string 'SEVERITY_NUMBER_LOUD'"),
    ("too deep", Signal.LOGS, log_with(body=deep_value(25)),
     f"{LOG_PATH}.body" + ".arrayValue.values[0]" * 20 + ".arrayValue: values nested deeper than"
     " 20 levels"),
    ("bad double", Signal.METRICS,
     b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":'
     b'[{"asDouble":"lots"}]}}]}]}]}',
     "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].asDouble:"
     " expected a number, got a string 'lots'"),
]


@pytest.mark.parametrize(
    ("signal", "body", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors_name_the_field_and_the_problem(signal: Signal, body: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        otlp_json.decode(signal, body)
    assert isinstance(info.value, otlp_json.OtlpJsonError)
    assert str(info.value).startswith(message), str(info.value)


def test_nesting_up_to_the_limit_is_accepted_and_survives_protobuf() -> None:
    body = log_with(body=deep_value(otlp_json.MAX_ANY_VALUE_DEPTH))
    request = otlp_json.decode(Signal.LOGS, body)
    assert LogsData.FromString(request.SerializeToString()) == request


# --------------------------------------------------------------------------------------------
# Round trip of random requests
# --------------------------------------------------------------------------------------------

uint64 = st.integers(0, 2**64 - 1)
uint32 = st.integers(0, 2**32 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
doubles = st.floats(allow_nan=False)  # NaN != NaN, so NaN is tested on its own above
text = st.text(max_size=12)
trace_ids = st.one_of(st.just(b""), st.binary(min_size=16, max_size=16))
span_ids = st.one_of(st.just(b""), st.binary(min_size=8, max_size=8))

any_values = st.recursive(
    st.one_of(
        st.builds(dict),
        st.builds(lambda v: {"string_value": v}, text),
        st.builds(lambda v: {"bool_value": v}, st.booleans()),
        st.builds(lambda v: {"int_value": v}, int64),
        st.builds(lambda v: {"double_value": v}, doubles),
        st.builds(lambda v: {"bytes_value": v}, st.binary(max_size=8)),
    ),
    lambda children: st.one_of(
        st.builds(lambda vs: {"array_value": {"values": vs}}, st.lists(children, max_size=3)),
        st.builds(
            lambda kvs: {"kvlist_value": {"values": kvs}},
            st.lists(st.builds(lambda k, v: {"key": k, "value": v}, text, children), max_size=3),
        ),
    ),
    max_leaves=8,
)
key_values = st.lists(
    st.one_of(
        st.builds(lambda k, v: {"key": k, "value": v}, text, any_values),
        st.builds(lambda k: {"key": k}, text),
    ),
    max_size=4,
)
scope = st.fixed_dictionaries({}, optional={"name": text, "version": text,
                                            "attributes": key_values})
resource = st.fixed_dictionaries({}, optional={"attributes": key_values,
                                               "dropped_attributes_count": uint32})

log_record = st.fixed_dictionaries(
    {},
    optional={
        "time_unix_nano": uint64,
        "observed_time_unix_nano": uint64,
        "severity_number": st.integers(0, 24),
        "severity_text": text,
        "body": any_values,
        "attributes": key_values,
        "dropped_attributes_count": uint32,
        "flags": uint32,
        "trace_id": trace_ids,
        "span_id": span_ids,
        "event_name": text,
    },
)
span = st.fixed_dictionaries(
    {"trace_id": trace_ids, "span_id": span_ids},
    optional={
        "trace_state": text,
        "parent_span_id": span_ids,
        "flags": uint32,
        "name": text,
        "kind": st.integers(0, 5),
        "start_time_unix_nano": uint64,
        "end_time_unix_nano": uint64,
        "attributes": key_values,
        "events": st.lists(st.fixed_dictionaries(
            {}, optional={"time_unix_nano": uint64, "name": text, "attributes": key_values,
                          "dropped_attributes_count": uint32}), max_size=2),
        "links": st.lists(st.fixed_dictionaries(
            {"trace_id": trace_ids, "span_id": span_ids},
            optional={"trace_state": text, "attributes": key_values, "flags": uint32}),
            max_size=2),
        "status": st.fixed_dictionaries({}, optional={"message": text,
                                                      "code": st.integers(0, 2)}),
        "dropped_links_count": uint32,
    },
)
exemplar = st.fixed_dictionaries(
    {},
    optional={"time_unix_nano": uint64, "as_double": doubles, "span_id": span_ids,
              "trace_id": trace_ids, "filtered_attributes": key_values},
)
number_point = st.fixed_dictionaries(
    {"attributes": key_values},
    optional={"start_time_unix_nano": uint64, "time_unix_nano": uint64, "flags": uint32,
              "exemplars": st.lists(exemplar, max_size=2)},
).flatmap(lambda p: st.one_of(
    st.just(p),
    st.builds(lambda v: {**p, "as_int": v}, int64),
    st.builds(lambda v: {**p, "as_double": v}, doubles),
))
histogram_point = st.fixed_dictionaries(
    {"bucket_counts": st.lists(uint64, max_size=4),
     "explicit_bounds": st.lists(doubles, max_size=3)},
    optional={"count": uint64, "sum": doubles, "min": doubles, "max": doubles,
              "attributes": key_values, "time_unix_nano": uint64},
)
buckets = st.fixed_dictionaries(
    {}, optional={"offset": st.integers(-(2**31), 2**31 - 1),
                  "bucket_counts": st.lists(uint64, max_size=3)})
exponential_point = st.fixed_dictionaries(
    {},
    optional={"count": uint64, "sum": doubles, "scale": st.integers(-10, 20),
              "zero_count": uint64, "positive": buckets, "negative": buckets,
              "zero_threshold": doubles, "min": doubles, "max": doubles},
)
summary_point = st.fixed_dictionaries(
    {},
    optional={"count": uint64, "sum": doubles, "quantile_values": st.lists(
        st.fixed_dictionaries({"quantile": doubles, "value": doubles}), max_size=3)},
)
temporality = st.integers(0, 2)
metric_data = st.one_of(
    st.builds(lambda ps: {"gauge": {"data_points": ps}}, st.lists(number_point, max_size=3)),
    st.builds(lambda ps, t, m: {"sum": {"data_points": ps, "aggregation_temporality": t,
                                        "is_monotonic": m}},
              st.lists(number_point, max_size=3), temporality, st.booleans()),
    st.builds(lambda ps, t: {"histogram": {"data_points": ps, "aggregation_temporality": t}},
              st.lists(histogram_point, max_size=2), temporality),
    st.builds(lambda ps, t: {"exponential_histogram": {"data_points": ps,
                                                       "aggregation_temporality": t}},
              st.lists(exponential_point, max_size=2), temporality),
    st.builds(lambda ps: {"summary": {"data_points": ps}}, st.lists(summary_point, max_size=2)),
)
metric = st.builds(
    lambda name, unit, data, meta: {"name": name, "unit": unit, "metadata": meta, **data},
    text, text, metric_data, key_values,
)


def request_of(signal: Signal, items: st.SearchStrategy[Any]) -> st.SearchStrategy[Message]:
    resources, scopes, item_key = {
        Signal.LOGS: ("resource_logs", "scope_logs", "log_records"),
        Signal.METRICS: ("resource_metrics", "scope_metrics", "metrics"),
        Signal.TRACES: ("resource_spans", "scope_spans", "spans"),
    }[signal]
    scope_entry = st.builds(
        lambda sc, its, url: {"scope": sc, item_key: its, "schema_url": url},
        scope, st.lists(items, max_size=3), text,
    )
    resource_entry = st.builds(
        lambda r, ss: {"resource": r, scopes: ss}, resource, st.lists(scope_entry, max_size=2)
    )
    return st.builds(
        lambda rs: REQUEST_TYPES[signal](**{resources: rs}),
        st.lists(resource_entry, min_size=1, max_size=2),
    )


requests_strategy = st.one_of(
    request_of(Signal.LOGS, log_record),
    request_of(Signal.TRACES, span),
    request_of(Signal.METRICS, metric),
)


@settings(max_examples=200, deadline=None)
@given(request=requests_strategy)
def test_encode_then_decode_is_identity_and_agrees_with_the_reference(request: Message) -> None:
    signal = next(s for s, t in REQUEST_TYPES.items() if isinstance(request, t))
    encoded = otlp_json.encode(request)
    assert otlp_json.decode(signal, encoded) == request
    assert reference(signal, json.loads(encoded)) == request
