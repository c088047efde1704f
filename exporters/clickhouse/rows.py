"""Logs and traces records (and metrics requests) to ClickHouse column arrays.

This is the exporter's hot path. The record model has already decoded every attribute once;
here each record's attributes become a ``{key: text}`` dict exactly once (the raw tables store
text) and the agent columns are read from the same record, typed values straight from the
model. Whatever belongs to a resource or a scope (its text attributes, service name, its
``agentwatch.*`` fallbacks) is computed once per shared object, not once per record. Raw rows
are built column by column (one list per column) and agent rows are pivoted once per batch,
because clickhouse-connect's column-oriented insert serialises columns as they are.

Values become text as the Go ``clickhouseexporter`` does (``pcommon.Value.AsString``): strings
as they are, integers in decimal, doubles in shortest form, booleans ``true``/``false``, bytes
in base64, arrays and maps as compact JSON.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from collector import agent_model as am
from collector.component import MetricsData
from collector.otlp_values import decode_attributes
from collector.records import LogRecord, Logs, Resource, Scope, Span, Traces
from exporters.clickhouse import schema

SERVICE_NAME = "service.name"
UINT64_MAX = 2**64 - 1
MAX_TIME_NS = 2**32 * 10**9 - 1
"""The last instant every time column holds: DateTime64(9) ends at 2^63 ns (2262) and the
tables derive DateTime from it for partitions, sort keys and TTLs, which wraps after 2^32 s
(2106). A later time (valid OTLP, up to 2^64-1) is replaced, see docs/data-model.md."""

_SPAN_KIND = {v.number: v.name for v in SpanProto.SpanKind.DESCRIPTOR.values}
_STATUS_CODE = {v.number: v.name for v in Status.StatusCode.DESCRIPTOR.values}


_FLOAT_SPECIALS = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}


def float_text(value: float) -> str:
    """Shortest text that reads back as the same double; integral values without ``.0``.

    ``repr`` writes every integral double below 1e16 as digits and ``.0`` and larger ones
    with an exponent, so one ``repr`` and a look at its end is all it takes."""
    text = repr(value)
    if text[-2:] == ".0":
        return text[:-2] if value else "0"  # -0.0 is "0"
    if text[-1] in "nf":  # nan, inf, -inf
        return _FLOAT_SPECIALS[text]
    return text


def _times(times: list[int], fallback: int) -> list[int]:
    """An Array(DateTime64(9)) value with times past MAX_TIME_NS replaced by ``fallback``."""
    if times and max(times) > MAX_TIME_NS:
        return [t if t <= MAX_TIME_NS else fallback for t in times]
    return times


def _json_bytes(value: Any) -> Any:
    """Bytes inside an array or map as base64, as the Go exporter writes them."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    return str(value)


def value_text(value: Any) -> str:
    """An attribute's (or body's) Python value as the raw tables store it; ``None`` (an empty
    ``AnyValue``) is the empty string."""
    cls = value.__class__
    if cls is str:
        return value  # type: ignore[no-any-return]
    if cls is int:
        return str(value)
    if cls is float:
        return float_text(value)
    if cls is bool:
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):  # an int subclass (an enum) is written as its number
        return str(int(value))
    if isinstance(value, float):
        return float_text(float(value))
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_bytes)
    return str(value)


def attributes_text(attributes: dict[str, Any]) -> dict[str, str]:
    """``{key: text}`` of a decoded attribute dict. Strings dominate, so they are taken
    without a call."""
    return {
        key: value if value.__class__ is str else value_text(value)
        for key, value in attributes.items()
    }


def flat_columns(table: schema.Table) -> list[tuple[str, str]]:
    """Insertable (name, type) pairs with each Nested column split into its Array columns."""
    out: list[tuple[str, str]] = []
    for column in table.insert_columns:
        if column.type.startswith("Nested"):
            inner = column.type[column.type.index("(") + 1 : column.type.rindex(")")]
            for part in _split_top_level(inner):
                name, type_ = part.strip().split(" ", 1)
                out.append((f"{column.name}.{name}", f"Array({type_.strip()})"))
        else:
            out.append((column.name, column.type))
    return out


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


@dataclass
class TableRows:
    """Rows for one table, column-oriented, in the order of ``names``."""

    table: str
    names: list[str]
    types: list[str]
    columns: list[list[Any]]

    @classmethod
    def for_table(cls, table: schema.Table) -> TableRows:
        flat = flat_columns(table)
        return cls(table.name, [n for n, _ in flat], [t for _, t in flat], [[] for _ in flat])

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def select(self, keep: list[int]) -> TableRows:
        """Only the rows at the given positions (used to drop already-stored agent events)."""
        return TableRows(
            self.table, self.names, self.types, [[col[i] for i in keep] for col in self.columns]
        )


@dataclass
class AgentRows(TableRows):
    event_ids: list[str] = field(default_factory=list)


@dataclass
class Batch:
    """Everything one export request becomes."""

    raw: list[TableRows]
    agent: dict[str, AgentRows]
    invalid_values: int = 0
    """Agent attributes whose text did not parse as the column's type (stored as NULL/0; the
    raw tables keep the original text)."""


# --- agent events ---------------------------------------------------------------------------


def _uint(text: str, limit: int) -> tuple[int, bool]:
    try:
        number = int(text)
    except ValueError:
        try:
            number = int(float(text))
        except (ValueError, OverflowError):
            return 0, False
    return min(max(number, 0), limit), number >= 0


def _bool(text: str) -> tuple[bool | None, bool]:
    low = text.strip().lower()
    if low in ("true", "1", "yes"):
        return True, True
    if low in ("false", "0", "no"):
        return False, True
    return None, False


def _uint_column(
    texts: Sequence[str], values: Sequence[Any], limit: int, nullable: bool
) -> tuple[list[Any], int]:
    """A UInt column and how many values were invalid: an int value is clamped as it is,
    anything else is parsed from its text; empty is 0 (NULL when ``nullable``)."""
    out: list[Any] = []
    invalid = 0
    append = out.append
    for text, value in zip(texts, values, strict=True):
        if value.__class__ is int:
            if 0 <= value <= limit:
                append(value)
            else:
                append(0 if value < 0 else limit)
                invalid += value < 0
        elif not text:
            append(None if nullable else 0)
        else:
            number, ok = _uint(text, limit)
            append(number)
            invalid += not ok
    return out, invalid


def _float_column(texts: Sequence[str], values: Sequence[Any]) -> tuple[list[Any], int]:
    """A Nullable(Float64) column: a float or int value as it is (``-0.0`` as ``0.0``, which
    is what its text ``"0"`` reads as), anything else parsed from its text; empty is NULL."""
    out: list[Any] = []
    invalid = 0
    append = out.append
    for text, value in zip(texts, values, strict=True):
        cls = value.__class__
        if cls is float:
            append(value if value else 0.0)
        elif cls is int:
            append(float(value))
        elif not text:
            append(None)
        else:
            try:
                append(float(text))
            except ValueError:
                append(None)
                invalid += 1
    return out, invalid


def _bool_column(texts: Sequence[str], values: Sequence[Any]) -> tuple[list[Any], int]:
    """A Nullable(Bool) column: a bool value as it is, text ``true``/``1``/``yes`` and
    ``false``/``0``/``no`` otherwise; empty or anything else is NULL."""
    out: list[Any] = []
    invalid = 0
    for text, value in zip(texts, values, strict=True):
        if value.__class__ is bool:
            out.append(value)
        elif not text:
            out.append(None)
        else:
            flag, ok = _bool(text)
            out.append(flag)
            invalid += not ok
    return out, invalid


def _list_column(texts: Sequence[str]) -> list[list[str]]:
    """An Array(String) column from comma-separated text."""
    return [[part.strip() for part in text.split(",") if part.strip()] for text in texts]


_EMPTY = itertools.repeat("")
"""The default of every ``text.get`` of an agent row: an absent attribute is empty text."""


@dataclass
class _TablePlan:
    """How one agent table's rows are built. Per record, the fields' text is read with one
    ``map(text.get, keys)`` and the typed fields' own values with one ``map(attrs.get, ...)``;
    rows are turned into columns once per batch (``zip``), and typed columns are converted a
    column at a time, taking the record's value where it already has the column's type (what
    the normaliser writes) and parsing the text otherwise: the same result as parsing the
    text of every value, at a fraction of the cost."""

    table: schema.AgentTable
    keys: list[str]
    typed_keys: list[str]
    typed: list[tuple[int, str, int]]
    """(position, kind, upper bound) of every field that is not plain text, in the order of
    ``typed_keys``."""
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    typed_values: list[list[Any]] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, spec: schema.AgentTable) -> _TablePlan:
        fields = spec.all_fields
        typed = [
            (i, f.kind, UINT64_MAX if "UInt64" in f.type else 2**32 - 1)
            for i, f in enumerate(fields)
            if f.kind != "str"
        ]
        return cls(spec, [f.key for f in fields], [fields[i].key for i, _, _ in typed], typed)

    def finish(self) -> tuple[AgentRows, int]:
        """The rows as columns, and how many typed values were invalid."""
        types = dict(flat_columns(self.table.spec()))
        names = [
            *(c.name for c in schema.ENVELOPE_COLUMNS),
            *(f.column for f in self.table.all_fields),
            *(c.name for c in schema.TRAILER_COLUMNS),
        ]  # the row tuple's order; columns a later migration added are named, not positional
        columns = [list(column) for column in zip(*self.rows, strict=True)]
        typed_columns = zip(*self.typed_values, strict=True)
        invalid = 0
        for (i, kind, limit), values in zip(self.typed, typed_columns, strict=True):
            texts = columns[2 + i]
            if kind == "uint" or kind == "nullable_uint":
                columns[2 + i], bad = _uint_column(texts, values, limit, kind == "nullable_uint")
            elif kind == "float":
                columns[2 + i], bad = _float_column(texts, values)
            elif kind == "bool":
                columns[2 + i], bad = _bool_column(texts, values)
            else:
                columns[2 + i], bad = _list_column(texts), 0
            invalid += bad
        rows = AgentRows(
            self.table.table, names, [types[n] for n in names], columns, event_ids=self.event_ids
        )
        return rows, invalid


class AgentRowBuilder:
    """Routes agent events to their table's rows; typed fields are converted per column."""

    def __init__(self) -> None:
        self.invalid = 0
        self._seen: set[str] = set()
        self._plans: dict[str, _TablePlan | None] = {}
        """Per ``agentwatch.event`` text: its table's plan, None for a type without one."""

    def finish(self) -> dict[str, AgentRows]:
        """The rows gathered so far, per agent table, as columns."""
        out: dict[str, AgentRows] = {}
        for plan in self._plans.values():
            if plan is not None and plan.rows:
                out[plan.table.table], invalid = plan.finish()
                self.invalid += invalid
        return out

    def _plan(self, event: str) -> _TablePlan | None:
        try:
            spec = schema.AGENT_TABLES.get(am.EventType(event))
        except ValueError:
            spec = None
        plan = self._plans[event] = None if spec is None else _TablePlan.of(spec)
        return plan

    def add(
        self,
        attrs: dict[str, Any],
        text: dict[str, str],
        resource: dict[str, str],
        timestamp: int,
        fallback_id: Callable[[], str],
        service: str,
        trace_id: str,
        span_id: str,
        record_kind: str,
        defaults: dict[str, str] | None = None,
    ) -> bool:
        """Add one record carrying ``agentwatch.event``; False when its type has no table.

        ``attrs`` are the record's attributes and ``text`` the same as text; ``resource``
        holds only the resource's ``agentwatch.*`` keys as text (fallbacks for the record's
        own); ``defaults`` fills what neither has (a span's duration).
        """
        event = text[am.EVENT]
        plan = self._plans[event] if event in self._plans else self._plan(event)
        if plan is None:  # a type without a table: raw tables only
            return False
        event_id = text.get(am.EVENT_ID) or fallback_id()
        if event_id in self._seen:  # the same event twice in one batch: keep the first
            return True
        self._seen.add(event_id)
        keys = plan.keys
        if resource or defaults:
            values: list[Any] = list(map(text.get, keys))
            for fallback in (resource, defaults):
                if fallback:
                    values = [
                        fallback.get(key) if value is None else value
                        for key, value in zip(keys, values, strict=True)
                    ]
            values = ["" if value is None else value for value in values]
        else:
            values = list(map(text.get, keys, _EMPTY))
        plan.rows.append((timestamp, event_id, *values, service, trace_id, span_id, record_kind))
        plan.typed_values.append(list(map(attrs.get, plan.typed_keys)))
        plan.event_ids.append(event_id)
        return True


def _digest(message: Any) -> str:
    """Event id of a record that has none: a digest of its OTLP bytes, equal for an exact
    resend (and to what earlier versions, which read protobuf, computed)."""
    return hashlib.blake2b(
        message.SerializeToString(deterministic=True), digest_size=16
    ).hexdigest()


def _log_digest(record: LogRecord) -> Callable[[], str]:
    """The digest of ``record`` as OTLP, encoded only when asked (records rarely lack ids)."""
    return lambda: _digest(Logs([record]).to_proto().resource_logs[0].scope_logs[0].log_records[0])


def _span_digest(span: Span) -> Callable[[], str]:
    """The digest of ``span`` as OTLP, encoded only when asked."""
    return lambda: _digest(Traces([span]).to_proto().resource_spans[0].scope_spans[0].spans[0])


@dataclass
class _ResourceValues:
    """What every record of one resource shares, computed once per resource object."""

    text: dict[str, str]
    agent: dict[str, str]
    """The resource's ``agentwatch.*`` attributes (fallbacks for its records'): usually none,
    so per-record lookups are skipped."""
    service: str

    @classmethod
    def of(cls, resource: Resource) -> _ResourceValues:
        text = attributes_text(resource.attributes)
        agent = {k: v for k, v in text.items() if k.startswith(am.P)}
        return cls(text, agent, text.get(SERVICE_NAME, ""))


Shared = TypeVar("Shared")


def _once(cache: dict[int, Shared], shared: Any, compute: Callable[[Any], Shared]) -> Shared:
    """``compute(shared)`` once per resource or scope object of a batch (the objects live as
    long as the batch, so their ids are stable keys)."""
    value = cache.get(id(shared))
    if value is None:
        value = cache[id(shared)] = compute(shared)
    return value


def _scope_text(scope: Scope) -> dict[str, str]:
    return attributes_text(scope.attributes)


# --- logs -----------------------------------------------------------------------------------


def convert_logs(data: Logs) -> Batch:
    raw = TableRows.for_table(schema.OTEL_LOGS)
    (
        ts,
        trace,
        span,
        flags,
        sev_text,
        sev_num,
        service_col,
        body,
        res_url,
        res_attrs,
        scope_url,
        scope_name,
        scope_version,
        scope_attrs,
        log_attrs,
        event_name,
    ) = raw.columns
    agents = AgentRowBuilder()
    event_key = am.EVENT
    now = time.time_ns()
    resources: dict[int, _ResourceValues] = {}
    scopes: dict[int, dict[str, str]] = {}
    resource: Resource | None = None
    scope: Scope | None = None
    shared = _ResourceValues({}, {}, "")
    scope_text: dict[str, str] = {}
    for record in data.records:
        if record.resource is not resource:
            resource = record.resource
            shared = _once(resources, resource, _ResourceValues.of)
        if record.scope is not scope:
            scope = record.scope
            scope_text = _once(scopes, scope, _scope_text)
        attrs = record.attributes
        text = attributes_text(attrs)
        timestamp = record.time_unix_nano or record.observed_time_unix_nano
        if timestamp > MAX_TIME_NS:
            observed = record.observed_time_unix_nano
            timestamp = observed if 0 < observed <= MAX_TIME_NS else now
        trace_hex = record.trace_id.hex()
        span_hex = record.span_id.hex()
        ts.append(timestamp)
        trace.append(trace_hex)
        span.append(span_hex)
        flags.append(record.flags & 0xFF)
        sev_text.append(record.severity_text)
        sev_num.append(record.severity_number & 0xFF)
        service_col.append(shared.service)
        value = record.body
        body.append(value if value.__class__ is str else value_text(value))
        res_url.append(resource.schema_url)
        res_attrs.append(shared.text)
        scope_url.append(scope.schema_url)
        scope_name.append(scope.name)
        scope_version.append(scope.version)
        scope_attrs.append(scope_text)
        log_attrs.append(text)
        event_name.append(record.event_name)
        if event_key in attrs:
            agents.add(
                attrs,
                text,
                shared.agent,
                timestamp,
                _log_digest(record),
                shared.service,
                trace_hex,
                span_hex,
                "log",
            )
    return Batch([raw] if len(raw) else [], agents.finish(), agents.invalid)


# --- traces ---------------------------------------------------------------------------------


def convert_traces(data: Traces) -> Batch:
    raw = TableRows.for_table(schema.OTEL_TRACES)
    (
        ts,
        trace,
        span_col,
        parent,
        state,
        name,
        kind,
        service_col,
        res_attrs,
        scope_name,
        scope_version,
        span_attrs,
        duration,
        status_code,
        status_message,
        ev_ts,
        ev_name,
        ev_attrs,
        ln_trace,
        ln_span,
        ln_state,
        ln_attrs,
    ) = raw.columns
    agents = AgentRowBuilder()
    event_key = am.EVENT
    now = time.time_ns()
    resources: dict[int, _ResourceValues] = {}
    resource: Resource | None = None
    shared = _ResourceValues({}, {}, "")
    for span in data.spans:
        if span.resource is not resource:
            resource = span.resource
            shared = _once(resources, resource, _ResourceValues.of)
        attrs = span.attributes
        text = attributes_text(attrs)
        start, end = span.start_time_unix_nano, span.end_time_unix_nano
        trace_hex, span_hex = span.trace_id.hex(), span.span_id.hex()
        stored_start = start if start <= MAX_TIME_NS else now
        ts.append(stored_start)
        trace.append(trace_hex)
        span_col.append(span_hex)
        parent.append(span.parent_span_id.hex())
        state.append(span.trace_state)
        name.append(span.name)
        kind.append(_SPAN_KIND.get(span.kind, ""))
        service_col.append(shared.service)
        res_attrs.append(shared.text)
        scope_name.append(span.scope.name)
        scope_version.append(span.scope.version)
        span_attrs.append(text)
        duration.append(max(end - start, 0))
        status_code.append(_STATUS_CODE.get(span.status_code, ""))
        status_message.append(span.status_message)
        events, links = span.events, span.links
        ev_ts.append(_times([e.time_unix_nano for e in events], stored_start))
        ev_name.append([e.name for e in events])
        ev_attrs.append([attributes_text(e.attributes) for e in events])
        ln_trace.append([link.trace_id.hex() for link in links])
        ln_span.append([link.span_id.hex() for link in links])
        ln_state.append([link.trace_state for link in links])
        ln_attrs.append([attributes_text(link.attributes) for link in links])
        if event_key in attrs:
            defaults = {am.DURATION_MS: float_text(max(end - start, 0) / 1e6)}
            agents.add(
                attrs,
                text,
                shared.agent,
                stored_start,
                _span_digest(span),
                shared.service,
                trace_hex,
                span_hex,
                "span",
                defaults,
            )
    return Batch([raw] if len(raw) else [], agents.finish(), agents.invalid)


# --- metrics --------------------------------------------------------------------------------


def _proto_text(attributes: Any) -> dict[str, str]:
    """Text of a protobuf attribute list (metrics are not in the record model yet)."""
    return attributes_text(decode_attributes(attributes))


def _exemplars(point: Any, columns: list[list[Any]], first: int) -> None:
    exemplars = point.exemplars
    columns[first].append([_proto_text(e.filtered_attributes) for e in exemplars])
    point_time = columns[13][-1]  # already within range
    columns[first + 1].append(_times([e.time_unix_nano for e in exemplars], point_time))
    columns[first + 2].append(
        [
            e.as_double if e.WhichOneof("value") == "as_double" else float(e.as_int)
            for e in exemplars
        ]
    )
    columns[first + 3].append([e.span_id.hex() for e in exemplars])
    columns[first + 4].append([e.trace_id.hex() for e in exemplars])


def _number(point: Any) -> float:
    return float(point.as_double if point.WhichOneof("value") == "as_double" else point.as_int)


METRIC_TABLES = {
    "gauge": schema.OTEL_METRICS_GAUGE,
    "sum": schema.OTEL_METRICS_SUM,
    "histogram": schema.OTEL_METRICS_HISTOGRAM,
    "exponential_histogram": schema.OTEL_METRICS_EXP_HISTOGRAM,
    "summary": schema.OTEL_METRICS_SUMMARY,
}
_COMMON = 14  # leading columns shared by every metric table, see schema._metric_common


def convert_metrics(data: MetricsData) -> Batch:
    tables = {kind: TableRows.for_table(table) for kind, table in METRIC_TABLES.items()}
    now = time.time_ns()
    for resource_metrics in data.resource_metrics:
        resource = _proto_text(resource_metrics.resource.attributes)
        service = resource.get(SERVICE_NAME, "")
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            head = (
                resource,
                resource_metrics.schema_url,
                scope.name,
                scope.version,
                _proto_text(scope.attributes),
                scope.dropped_attributes_count,
                scope_metrics.schema_url,
                service,
            )
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                rows = tables[kind]
                columns = rows.columns
                body = getattr(metric, kind)
                common = (*head, metric.name, metric.description, metric.unit)
                for point in body.data_points:
                    for i, value in enumerate(common):
                        columns[i].append(value)
                    columns[11].append(_proto_text(point.attributes))
                    start_time, point_time = point.start_time_unix_nano, point.time_unix_nano
                    columns[12].append(start_time if start_time <= MAX_TIME_NS else now)
                    columns[13].append(point_time if point_time <= MAX_TIME_NS else now)
                    _POINT_WRITERS[kind](point, body, columns)
    return Batch([rows for rows in tables.values() if len(rows)], {})


def _gauge(point: Any, body: Any, c: list[list[Any]]) -> None:
    c[14].append(_number(point))
    c[15].append(point.flags)
    _exemplars(point, c, 16)


def _sum(point: Any, body: Any, c: list[list[Any]]) -> None:
    _gauge(point, body, c)
    c[21].append(body.aggregation_temporality)
    c[22].append(body.is_monotonic)


def _histogram(point: Any, body: Any, c: list[list[Any]]) -> None:
    c[14].append(point.count)
    c[15].append(point.sum)
    c[16].append(list(point.bucket_counts))
    c[17].append(list(point.explicit_bounds))
    _exemplars(point, c, 18)
    c[23].append(point.flags)
    c[24].append(point.min)
    c[25].append(point.max)
    c[26].append(body.aggregation_temporality)


def _exponential_histogram(point: Any, body: Any, c: list[list[Any]]) -> None:
    c[14].append(point.count)
    c[15].append(point.sum)
    c[16].append(point.scale)
    c[17].append(point.zero_count)
    c[18].append(point.positive.offset)
    c[19].append(list(point.positive.bucket_counts))
    c[20].append(point.negative.offset)
    c[21].append(list(point.negative.bucket_counts))
    _exemplars(point, c, 22)
    c[27].append(point.flags)
    c[28].append(point.min)
    c[29].append(point.max)
    c[30].append(body.aggregation_temporality)


def _summary(point: Any, body: Any, c: list[list[Any]]) -> None:
    c[14].append(point.count)
    c[15].append(point.sum)
    c[16].append([q.quantile for q in point.quantile_values])
    c[17].append([q.value for q in point.quantile_values])
    c[18].append(point.flags)


_POINT_WRITERS: dict[str, Callable[[Any, Any, list[list[Any]]], None]] = {
    "gauge": _gauge,
    "sum": _sum,
    "histogram": _histogram,
    "exponential_histogram": _exponential_histogram,
    "summary": _summary,
}


def _check_layout() -> None:
    """Fail at import if a table's column order drifts from the writers' indexes above."""
    expected = {
        "gauge": ["Value", "Flags", "Exemplars.FilteredAttributes"],
        "sum": [
            "Value",
            "Flags",
            "Exemplars.FilteredAttributes",
            "Exemplars.TimeUnix",
            "Exemplars.Value",
            "Exemplars.SpanId",
            "Exemplars.TraceId",
            "AggregationTemporality",
            "IsMonotonic",
        ],
        "histogram": [
            "Count",
            "Sum",
            "BucketCounts",
            "ExplicitBounds",
            "Exemplars.FilteredAttributes",
            "Exemplars.TimeUnix",
            "Exemplars.Value",
            "Exemplars.SpanId",
            "Exemplars.TraceId",
            "Flags",
            "Min",
            "Max",
            "AggregationTemporality",
        ],
        "exponential_histogram": [
            "Count",
            "Sum",
            "Scale",
            "ZeroCount",
            "PositiveOffset",
            "PositiveBucketCounts",
            "NegativeOffset",
            "NegativeBucketCounts",
            "Exemplars.FilteredAttributes",
            "Exemplars.TimeUnix",
            "Exemplars.Value",
            "Exemplars.SpanId",
            "Exemplars.TraceId",
            "Flags",
            "Min",
            "Max",
            "AggregationTemporality",
        ],
        "summary": ["Count", "Sum", "ValueAtQuantiles.Quantile", "ValueAtQuantiles.Value", "Flags"],
    }
    for kind, names in expected.items():
        flat = [n for n, _ in flat_columns(METRIC_TABLES[kind])]
        assert flat[_COMMON : _COMMON + len(names)] == names, (kind, flat)
        assert flat[11:14] == ["Attributes", "StartTimeUnix", "TimeUnix"], flat


_check_layout()
