"""The record model: one OTLP logs or traces request, decoded once, shared by every component.

A receiver's protobuf request is decoded here exactly once (``Logs.from_proto``); processors
then read and change plain Python (``record.attributes`` is a ``dict``), exporters build their
columns from the same objects, and protobuf is encoded again only where telemetry leaves as
OTLP (``to_proto``). The write-ahead log stores the model itself (``dump``/``load``), which costs
a fraction of a protobuf round trip.

Records of one OTLP ``ResourceLogs`` share one :class:`Resource` and records of one
``ScopeLogs`` one :class:`Scope`, as in protobuf: a change to ``record.resource.attributes``
is a change for all of them. Metrics are not part of the model yet: they arrive at a low rate
(one point per series and export interval) and stay ``ExportMetricsServiceRequest``.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Self

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from collector.otlp_values import decode_attributes, decode_value, encode_attributes, encode_value

Attributes = dict[str, Any]


class Resource:
    __slots__ = ("attributes", "dropped_attributes_count", "schema_url")

    def __init__(
        self,
        attributes: Attributes | None = None,
        dropped_attributes_count: int = 0,
        schema_url: str = "",
    ) -> None:
        self.attributes = {} if attributes is None else attributes
        self.dropped_attributes_count = dropped_attributes_count
        self.schema_url = schema_url

    def __repr__(self) -> str:
        return f"Resource({self.attributes!r})"


class Scope:
    __slots__ = ("attributes", "dropped_attributes_count", "name", "schema_url", "version")

    def __init__(
        self,
        name: str = "",
        version: str = "",
        attributes: Attributes | None = None,
        dropped_attributes_count: int = 0,
        schema_url: str = "",
    ) -> None:
        self.name = name
        self.version = version
        self.attributes = {} if attributes is None else attributes
        self.dropped_attributes_count = dropped_attributes_count
        self.schema_url = schema_url

    def __repr__(self) -> str:
        return f"Scope({self.name!r}, {self.version!r})"


class LogRecord:
    __slots__ = (
        "attributes",
        "body",
        "dropped_attributes_count",
        "event_name",
        "flags",
        "observed_time_unix_nano",
        "resource",
        "scope",
        "severity_number",
        "severity_text",
        "span_id",
        "time_unix_nano",
        "trace_id",
    )

    def __init__(
        self,
        resource: Resource,
        scope: Scope,
        time_unix_nano: int = 0,
        observed_time_unix_nano: int = 0,
        severity_number: int = 0,
        severity_text: str = "",
        body: Any = None,
        attributes: Attributes | None = None,
        dropped_attributes_count: int = 0,
        flags: int = 0,
        trace_id: bytes = b"",
        span_id: bytes = b"",
        event_name: str = "",
    ) -> None:
        self.resource = resource
        self.scope = scope
        self.time_unix_nano = time_unix_nano
        self.observed_time_unix_nano = observed_time_unix_nano
        self.severity_number = severity_number
        self.severity_text = severity_text
        self.body = body
        self.attributes = {} if attributes is None else attributes
        self.dropped_attributes_count = dropped_attributes_count
        self.flags = flags
        self.trace_id = trace_id
        self.span_id = span_id
        self.event_name = event_name

    def __repr__(self) -> str:
        return f"LogRecord({self.event_name!r}, {self.attributes!r})"


class SpanEvent:
    __slots__ = ("attributes", "dropped_attributes_count", "name", "time_unix_nano")

    def __init__(
        self,
        time_unix_nano: int = 0,
        name: str = "",
        attributes: Attributes | None = None,
        dropped_attributes_count: int = 0,
    ) -> None:
        self.time_unix_nano = time_unix_nano
        self.name = name
        self.attributes = {} if attributes is None else attributes
        self.dropped_attributes_count = dropped_attributes_count


class SpanLink:
    __slots__ = (
        "attributes",
        "dropped_attributes_count",
        "flags",
        "span_id",
        "trace_id",
        "trace_state",
    )

    def __init__(
        self,
        trace_id: bytes = b"",
        span_id: bytes = b"",
        trace_state: str = "",
        attributes: Attributes | None = None,
        dropped_attributes_count: int = 0,
        flags: int = 0,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.trace_state = trace_state
        self.attributes = {} if attributes is None else attributes
        self.dropped_attributes_count = dropped_attributes_count
        self.flags = flags


class Span:
    __slots__ = (
        "attributes",
        "dropped_attributes_count",
        "dropped_events_count",
        "dropped_links_count",
        "end_time_unix_nano",
        "events",
        "flags",
        "kind",
        "links",
        "name",
        "parent_span_id",
        "resource",
        "scope",
        "span_id",
        "start_time_unix_nano",
        "status_code",
        "status_message",
        "trace_id",
        "trace_state",
    )

    def __init__(
        self,
        resource: Resource,
        scope: Scope,
        trace_id: bytes = b"",
        span_id: bytes = b"",
        trace_state: str = "",
        parent_span_id: bytes = b"",
        flags: int = 0,
        name: str = "",
        kind: int = 0,
        start_time_unix_nano: int = 0,
        end_time_unix_nano: int = 0,
        attributes: Attributes | None = None,
        dropped_attributes_count: int = 0,
        events: list[SpanEvent] | None = None,
        dropped_events_count: int = 0,
        links: list[SpanLink] | None = None,
        dropped_links_count: int = 0,
        status_code: int = 0,
        status_message: str = "",
    ) -> None:
        self.resource = resource
        self.scope = scope
        self.trace_id = trace_id
        self.span_id = span_id
        self.trace_state = trace_state
        self.parent_span_id = parent_span_id
        self.flags = flags
        self.name = name
        self.kind = kind
        self.start_time_unix_nano = start_time_unix_nano
        self.end_time_unix_nano = end_time_unix_nano
        self.attributes = {} if attributes is None else attributes
        self.dropped_attributes_count = dropped_attributes_count
        self.events = [] if events is None else events
        self.dropped_events_count = dropped_events_count
        self.links = [] if links is None else links
        self.dropped_links_count = dropped_links_count
        self.status_code = status_code
        self.status_message = status_message

    def __repr__(self) -> str:
        return f"Span({self.name!r}, {self.attributes!r})"


# --- protobuf <-> model: resource and scope ---------------------------------------------------
def _resource(message: resource_pb2.Resource, schema_url: str) -> Resource:
    return Resource(
        decode_attributes(message.attributes), message.dropped_attributes_count, schema_url
    )


def _scope(message: InstrumentationScope, schema_url: str) -> Scope:
    return Scope(
        message.name,
        message.version,
        decode_attributes(message.attributes),
        message.dropped_attributes_count,
        schema_url,
    )


def _fill_resource(resource: Resource, out: resource_pb2.Resource) -> None:
    encode_attributes(resource.attributes, out.attributes)
    out.dropped_attributes_count = resource.dropped_attributes_count


def _fill_scope(scope: Scope, out: InstrumentationScope) -> None:
    out.name = scope.name
    out.version = scope.version
    encode_attributes(scope.attributes, out.attributes)
    out.dropped_attributes_count = scope.dropped_attributes_count


class _Batch:
    """What logs and traces share: decoding, encoding, the wal encoding, concatenation. A signal
    says where its items sit in the OTLP request and how one item is read and written."""

    __slots__ = ()
    _items: ClassVar[str]
    _request: ClassVar[type[ExportLogsServiceRequest] | type[ExportTraceServiceRequest]]
    _path: ClassVar[tuple[str, str, str]]
    """The request's resource groups, a group's scope groups, a scope group's items."""
    _FORMAT: ClassVar[int] = 1

    def __init__(self, items: list[Any] | None = None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def items(self) -> list[Any]:
        return getattr(self, self._items)  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self.items())

    @classmethod
    def _decode(cls, message: Any, resource: Resource, scope: Scope) -> Any:
        raise NotImplementedError

    @staticmethod
    def _encode(item: Any, out: Any) -> None:
        raise NotImplementedError

    @staticmethod
    def _row(item: Any, resource: int, scope: int) -> tuple[Any, ...]:
        raise NotImplementedError

    @staticmethod
    def _from_row(resource: Resource, scope: Scope, row: tuple[Any, ...]) -> Any:
        raise NotImplementedError

    @classmethod
    def from_proto(cls, request: Any) -> Self:
        resources_key, scopes_key, items_key = cls._path
        items: list[Any] = []
        decode = cls._decode
        for group in getattr(request, resources_key):
            resource = _resource(group.resource, group.schema_url)
            for scope_group in getattr(group, scopes_key):
                scope = _scope(scope_group.scope, scope_group.schema_url)
                items.extend(decode(m, resource, scope) for m in getattr(scope_group, items_key))
        return cls(items)

    def to_proto(self) -> Any:
        resources_key, scopes_key, items_key = self._path
        request = self._request()
        resource: Resource | None = None
        scope: Scope | None = None
        group: Any = None
        scope_group: Any = None
        for item in self.items():
            if item.resource is not resource or group is None:
                resource, scope = item.resource, None
                group = getattr(request, resources_key).add(schema_url=resource.schema_url)
                _fill_resource(resource, group.resource)
            if item.scope is not scope or scope_group is None:
                scope = item.scope
                scope_group = getattr(group, scopes_key).add(schema_url=scope.schema_url)
                _fill_scope(scope, scope_group.scope)
            self._encode(item, getattr(scope_group, items_key))
        return request

    def dump(self) -> bytes:
        """The wal encoding: plain tuples pickled, resources and scopes written once."""
        resources: dict[int, Resource] = {}
        scopes: dict[int, Scope] = {}
        resource_index: dict[int, int] = {}
        scope_index: dict[int, int] = {}
        rows = []
        row = self._row
        for item in self.items():
            r = resource_index.get(id(item.resource))
            if r is None:
                r = resource_index[id(item.resource)] = len(resources)
                resources[r] = item.resource
            s = scope_index.get(id(item.scope))
            if s is None:
                s = scope_index[id(item.scope)] = len(scopes)
                scopes[s] = item.scope
            rows.append(row(item, r, s))
        return pickle.dumps(
            (
                self._FORMAT,
                [
                    (x.attributes, x.dropped_attributes_count, x.schema_url)
                    for x in resources.values()
                ],
                [
                    (x.name, x.version, x.attributes, x.dropped_attributes_count, x.schema_url)
                    for x in scopes.values()
                ],
                rows,
            ),
            protocol=5,
        )

    @classmethod
    def load(cls, payload: bytes) -> Self:
        _format, resources, scopes, rows = pickle.loads(payload)
        res = [Resource(*x) for x in resources]
        sco = [Scope(*x) for x in scopes]
        from_row = cls._from_row
        return cls([from_row(res[row[0]], sco[row[1]], row) for row in rows])

    @classmethod
    def concat(cls, parts: Iterable[Self]) -> Self:
        return cls([item for part in parts for item in part.items()])

    def singles(self) -> Iterator[Self]:
        for item in self.items():
            yield type(self)([item])


class Logs(_Batch):
    """The log records of one request (or of several merged), in arrival order. ``source`` is
    the request's wire bytes when the records were decoded from them: what the pipeline decodes
    again if a processor fails on the records it changed."""

    __slots__ = ("records", "source")
    _items = "records"
    _request = ExportLogsServiceRequest
    _path = ("resource_logs", "scope_logs", "log_records")

    def __init__(self, records: list[LogRecord] | None = None) -> None:
        self.records = [] if records is None else records
        self.source: bytes | None = None

    @classmethod
    def _decode(cls, lr: logs_pb2.LogRecord, resource: Resource, scope: Scope) -> LogRecord:
        return LogRecord(
            resource,
            scope,
            lr.time_unix_nano,
            lr.observed_time_unix_nano,
            lr.severity_number,
            lr.severity_text,
            decode_value(lr.body) if lr.HasField("body") else None,
            decode_attributes(lr.attributes),
            lr.dropped_attributes_count,
            lr.flags,
            lr.trace_id,
            lr.span_id,
            lr.event_name,
        )

    @staticmethod
    def _encode(r: LogRecord, out: Any) -> None:
        record = out.add(
            time_unix_nano=r.time_unix_nano,
            observed_time_unix_nano=r.observed_time_unix_nano,
            severity_number=r.severity_number,
            severity_text=r.severity_text,
            dropped_attributes_count=r.dropped_attributes_count,
            flags=r.flags,
            trace_id=r.trace_id,
            span_id=r.span_id,
            event_name=r.event_name,
        )
        if r.body is not None:
            encode_value(r.body, record.body)
        encode_attributes(r.attributes, record.attributes)

    @staticmethod
    def _row(r: LogRecord, resource: int, scope: int) -> tuple[Any, ...]:
        return (
            resource,
            scope,
            r.time_unix_nano,
            r.observed_time_unix_nano,
            r.severity_number,
            r.severity_text,
            r.body,
            r.attributes,
            r.dropped_attributes_count,
            r.flags,
            r.trace_id,
            r.span_id,
            r.event_name,
        )

    @staticmethod
    def _from_row(resource: Resource, scope: Scope, row: tuple[Any, ...]) -> LogRecord:
        return LogRecord(resource, scope, *row[2:])


class Traces(_Batch):
    """The spans of one request (or of several merged), in arrival order; ``source`` as for
    :class:`Logs`."""

    __slots__ = ("source", "spans")
    _items = "spans"
    _request = ExportTraceServiceRequest
    _path = ("resource_spans", "scope_spans", "spans")

    def __init__(self, spans: list[Span] | None = None) -> None:
        self.spans = [] if spans is None else spans
        self.source: bytes | None = None

    @classmethod
    def _decode(cls, s: trace_pb2.Span, resource: Resource, scope: Scope) -> Span:
        return Span(
            resource,
            scope,
            s.trace_id,
            s.span_id,
            s.trace_state,
            s.parent_span_id,
            s.flags,
            s.name,
            s.kind,
            s.start_time_unix_nano,
            s.end_time_unix_nano,
            decode_attributes(s.attributes),
            s.dropped_attributes_count,
            [
                SpanEvent(
                    e.time_unix_nano,
                    e.name,
                    decode_attributes(e.attributes),
                    e.dropped_attributes_count,
                )
                for e in s.events
            ],
            s.dropped_events_count,
            [
                SpanLink(
                    k.trace_id,
                    k.span_id,
                    k.trace_state,
                    decode_attributes(k.attributes),
                    k.dropped_attributes_count,
                    k.flags,
                )
                for k in s.links
            ],
            s.dropped_links_count,
            s.status.code,
            s.status.message,
        )

    @staticmethod
    def _encode(s: Span, out: Any) -> None:
        span = out.add(
            trace_id=s.trace_id,
            span_id=s.span_id,
            trace_state=s.trace_state,
            parent_span_id=s.parent_span_id,
            flags=s.flags,
            name=s.name,
            kind=s.kind,
            start_time_unix_nano=s.start_time_unix_nano,
            end_time_unix_nano=s.end_time_unix_nano,
            dropped_attributes_count=s.dropped_attributes_count,
            dropped_events_count=s.dropped_events_count,
            dropped_links_count=s.dropped_links_count,
        )
        encode_attributes(s.attributes, span.attributes)
        for e in s.events:
            event = span.events.add(
                time_unix_nano=e.time_unix_nano,
                name=e.name,
                dropped_attributes_count=e.dropped_attributes_count,
            )
            encode_attributes(e.attributes, event.attributes)
        for k in s.links:
            link = span.links.add(
                trace_id=k.trace_id,
                span_id=k.span_id,
                trace_state=k.trace_state,
                dropped_attributes_count=k.dropped_attributes_count,
                flags=k.flags,
            )
            encode_attributes(k.attributes, link.attributes)
        span.status.SetInParent()  # absent and empty status both mean UNSET
        span.status.code = s.status_code  # type: ignore[assignment]
        span.status.message = s.status_message

    @staticmethod
    def _row(s: Span, resource: int, scope: int) -> tuple[Any, ...]:
        return (
            resource,
            scope,
            s.trace_id,
            s.span_id,
            s.trace_state,
            s.parent_span_id,
            s.flags,
            s.name,
            s.kind,
            s.start_time_unix_nano,
            s.end_time_unix_nano,
            s.attributes,
            s.dropped_attributes_count,
            [
                (e.time_unix_nano, e.name, e.attributes, e.dropped_attributes_count)
                for e in s.events
            ],
            s.dropped_events_count,
            [
                (
                    k.trace_id,
                    k.span_id,
                    k.trace_state,
                    k.attributes,
                    k.dropped_attributes_count,
                    k.flags,
                )
                for k in s.links
            ],
            s.dropped_links_count,
            s.status_code,
            s.status_message,
        )

    @staticmethod
    def _from_row(resource: Resource, scope: Scope, row: tuple[Any, ...]) -> Span:
        span = Span(resource, scope, *row[2:])
        span.events = [SpanEvent(*e) for e in row[13]]
        span.links = [SpanLink(*k) for k in row[15]]
        return span


Records = Logs | Traces
