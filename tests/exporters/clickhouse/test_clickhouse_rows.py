"""OTLP to rows without a server: value text, agent routing, ids and column layout."""

from __future__ import annotations

import math
import time

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from collector import agent_model as am
from collector.otlp_values import decode_attributes
from collector.records import Logs
from exporters.clickhouse import rows, schema
from tests.support.clickhouse_fixture import agent_record, kv, logs_request


def test_attribute_text_matches_the_go_exporter() -> None:
    attributes = [
        kv("s", "text"),
        KeyValue(key="empty", value=AnyValue(string_value="")),
        kv("i", -42),
        kv("d", 0.1),
        kv("whole", 2.0),
        kv("t", True),
        kv("f", False),
        KeyValue(key="b", value=AnyValue(bytes_value=b"\x00\xff")),
        KeyValue(
            key="arr",
            value=AnyValue(
                array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(string_value="x")])
            ),
        ),
        KeyValue(
            key="map",
            value=AnyValue(
                kvlist_value=KeyValueList(values=[kv("k", "v"), kv("n", 1.5), kv("é", "ü")])
            ),
        ),
        KeyValue(key="unset", value=AnyValue()),
    ]
    assert rows.attributes_text(decode_attributes(attributes)) == {
        "s": "text",
        "empty": "",
        "i": "-42",
        "d": "0.1",
        "whole": "2",
        "t": "true",
        "f": "false",
        "b": "AP8=",
        "arr": '[1,"x"]',
        "map": '{"k":"v","n":1.5,"é":"ü"}',
        "unset": "",
    }


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_reads_back_exactly(value: float) -> None:
    assert float(rows.float_text(value)) == value


def test_float_text_special_values() -> None:
    assert [rows.float_text(v) for v in (math.nan, math.inf, -math.inf, 1e20)] == [
        "NaN",
        "+Inf",
        "-Inf",
        "1e+20",
    ]


def test_nested_columns_are_split_into_arrays() -> None:
    flat = dict(rows.flat_columns(schema.OTEL_TRACES))
    assert flat["Events.Timestamp"] == "Array(DateTime64(9))"
    assert flat["Links.Attributes"] == "Array(Map(LowCardinality(String), String))"
    assert "TimestampTime" not in dict(rows.flat_columns(schema.OTEL_LOGS))  # a DEFAULT column


def test_agent_routing_ids_and_fallbacks() -> None:
    unknown = agent_record("telepathy", "u-1", 5)
    no_id = agent_record("api_call", "", 6, session_id="s", input_tokens=3)
    same_again = agent_record("api_call", "", 6, session_id="s", input_tokens=3)
    other = agent_record("api_call", "", 6, session_id="s", input_tokens=4)
    twice = agent_record("tool_call", "t-1", 7, tool_name="Read")
    request = logs_request([unknown, no_id, same_again, other, twice, twice])
    request.resource_logs[0].resource.attributes.append(kv(am.TEAM, "from-resource"))
    batch = rows.convert_logs(Logs.from_proto(request))

    assert len(batch.raw[0]) == 6  # every record reaches the raw table
    assert set(batch.agent) == {"agent_api_calls", "agent_tool_calls"}
    api = batch.agent["agent_api_calls"]
    # No event id: a digest of the record, equal for an identical resend, so the copy is
    # dropped within the batch; a record that differs gets another id.
    assert len(api.event_ids) == 2 and len(set(api.event_ids)) == 2
    assert all(len(event_id) == 32 for event_id in api.event_ids)
    columns = dict(zip(api.names, api.columns, strict=True))
    assert columns["input_tokens"] == [3, 4]
    assert columns["team"] == ["from-resource", "from-resource"]
    assert columns["cost_usd"] == [None, None]
    assert columns["record_kind"] == ["log", "log"]
    assert batch.agent["agent_tool_calls"].event_ids == ["t-1"]
    assert len(batch.agent["agent_tool_calls"]) == 1


def test_agent_columns_follow_the_table_layout() -> None:
    for event, table in schema.AGENT_TABLES.items():
        batch = rows.convert_logs(
            Logs.from_proto(logs_request([agent_record(event, f"id-{event}", 1)]))
        )
        agent_rows = batch.agent[table.table]
        # Every insertable column, each once; named, so columns added later need no position.
        assert sorted(agent_rows.names) == sorted(n for n, _ in rows.flat_columns(table.spec()))
        assert len(set(agent_rows.names)) == len(agent_rows.names)
        assert dict(zip(agent_rows.names, agent_rows.types, strict=True)) == dict(
            rows.flat_columns(table.spec())
        )
        assert all(len(column) == 1 for column in agent_rows.columns)


def test_times_past_what_the_tables_hold_are_replaced() -> None:
    """The last instant DateTime can hold is kept; one nanosecond later falls back to the
    observed time, and with no usable observed time to the time of conversion."""
    last = rows.MAX_TIME_NS
    kept = agent_record("api_call", "kept", last)
    late = agent_record("api_call", "late", last + 1)
    late.observed_time_unix_nano = 42
    no_observed = agent_record("api_call", "none", last + 1)
    no_observed.observed_time_unix_nano = 0
    before = time.time_ns()
    batch = rows.convert_logs(Logs.from_proto(logs_request([kept, late, no_observed])))
    after = time.time_ns()
    stamps = batch.raw[0].columns[batch.raw[0].names.index("Timestamp")]
    assert stamps[:2] == [last, 42]
    assert before <= stamps[2] <= after
    api = batch.agent["agent_api_calls"]
    assert api.columns[api.names.index("timestamp")] == stamps
