"""Builders of small OTLP requests for tests."""

from __future__ import annotations

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from collector.component import LogsData
from collector.records import Logs


def attr(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def logs(
    n: int, *, service: str = "test", start: int = 0, **attrs: str | int | float | bool
) -> LogsData:
    """``n`` log records whose ``seq`` attribute numbers them from ``start``."""
    records = [
        LogRecord(
            time_unix_nano=1_700_000_000_000_000_000 + i,
            body=AnyValue(string_value=f"record {i}"),
            attributes=[attr("seq", i), *(attr(k, v) for k, v in attrs.items())],
        )
        for i in range(start, start + n)
    ]
    return LogsData(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[attr("service.name", service)]),
                scope_logs=[ScopeLogs(log_records=records)],
            )
        ]
    )


def seqs(data: LogsData | Logs) -> list[int]:
    if isinstance(data, Logs):
        return [r.attributes["seq"] for r in data.records]
    return [
        next(a.value.int_value for a in r.attributes if a.key == "seq")
        for rl in data.resource_logs
        for sl in rl.scope_logs
        for r in sl.log_records
    ]
