"""Session-file events encoded as the OTLP logs export request the CLI would have sent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from collector.receivers.sessionfiles.internal.events import (
    SOURCE_ATTRIBUTE,
    SOURCE_VALUE,
    Scalar,
    Session,
)

SCOPE = "agentwatch.sessionfiles"


def _put(target: object, attributes: Mapping[str, Scalar]) -> None:
    items = target.add  # type: ignore[attr-defined]
    for key, value in attributes.items():
        kv: KeyValue = items()
        kv.key = key
        if isinstance(value, bool):
            kv.value.bool_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        elif isinstance(value, float):
            kv.value.double_value = value
        else:
            kv.value.string_value = value


def encode(sessions: Iterable[Session]) -> ExportLogsServiceRequest:
    """One resource per session, every record marked with its source."""
    request = ExportLogsServiceRequest()
    for session in sessions:
        if not session.events:
            continue
        resource_logs = request.resource_logs.add()
        _put(resource_logs.resource.attributes, session.resource)
        scope_logs = resource_logs.scope_logs.add()
        scope_logs.scope.name = SCOPE
        for event in session.events:
            record = scope_logs.log_records.add()
            record.time_unix_nano = event.time_ns
            record.observed_time_unix_nano = event.time_ns
            record.body.string_value = event.body
            _put(record.attributes, {**event.attributes, SOURCE_ATTRIBUTE: SOURCE_VALUE})
    return request
