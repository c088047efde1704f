"""The pure-Python twin of the compiled decoder, and the reference it is tested against.

upb parses the request, ``Logs.from_proto``/``Traces.from_proto`` read it into the record
model. Used where the extension is not built (no compiler at install time) or when
``AGENTWATCH_WIRE=python`` asks for it.
"""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.records import Logs, Traces


def decode_logs(body: bytes) -> Logs:
    """An ``ExportLogsServiceRequest``'s wire bytes as ``Logs``; ``DecodeError`` if invalid."""
    return Logs.from_proto(ExportLogsServiceRequest.FromString(body))


def decode_traces(body: bytes) -> Traces:
    """An ``ExportTraceServiceRequest``'s wire bytes as ``Traces``; ``DecodeError`` if
    invalid."""
    return Traces.from_proto(ExportTraceServiceRequest.FromString(body))
