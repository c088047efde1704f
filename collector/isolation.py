"""One record's failure must not cost its siblings: split a request into single-item requests.

Processors and exporters work on whole export requests, which is fast. When one of them raises
on a request, the caller falls back to the request's items one by one (each with its own
resource and scope), so the item that fails is set aside and every other item goes on. The
fallback only runs after a failure; the common path never pays for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from collector.component import LogsData, MetricsData, Telemetry, TracesData
from collector.records import Logs, Traces

T = TypeVar("T", LogsData, MetricsData, TracesData)
Convertible = TypeVar("Convertible", Logs, Traces, LogsData, MetricsData, TracesData)


def items(data: Telemetry) -> Iterator[Any]:
    """Every log record, span or metric data point of ``data``, in order."""
    if isinstance(data, LogsData):
        for rl in data.resource_logs:
            for sl in rl.scope_logs:
                yield from sl.log_records
    elif isinstance(data, TracesData):
        for rs in data.resource_spans:
            for ss in rs.scope_spans:
                yield from ss.spans
    else:
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is not None:
                        yield from getattr(metric, kind).data_points


def singles(data: T) -> Iterator[T]:
    """Every log record, span or metric data point of ``data`` as a request of its own."""
    if isinstance(data, LogsData):
        yield from _singles(data, "resource_logs", "scope_logs", "log_records")
    elif isinstance(data, TracesData):
        yield from _singles(data, "resource_spans", "scope_spans", "spans")
    else:
        yield from _metric_singles(data)


def _singles(data: Any, resources_key: str, scopes_key: str, items_key: str) -> Iterator[Any]:
    for resource in getattr(data, resources_key):
        for scope in getattr(resource, scopes_key):
            for item in getattr(scope, items_key):
                one = type(data)()
                r = getattr(one, resources_key).add()
                r.resource.CopyFrom(resource.resource)
                r.schema_url = resource.schema_url
                s = getattr(r, scopes_key).add()
                s.scope.CopyFrom(scope.scope)
                s.schema_url = scope.schema_url
                getattr(s, items_key).add().CopyFrom(item)
                yield one


def _metric_singles(data: MetricsData) -> Iterator[MetricsData]:
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                for point in getattr(metric, kind).data_points:
                    one = MetricsData()
                    r = one.resource_metrics.add()
                    r.resource.CopyFrom(rm.resource)
                    r.schema_url = rm.schema_url
                    s = r.scope_metrics.add()
                    s.scope.CopyFrom(sm.scope)
                    s.schema_url = sm.schema_url
                    m = s.metrics.add()
                    m.name, m.description, m.unit = metric.name, metric.description, metric.unit
                    m.metadata.extend(metric.metadata)
                    body = getattr(m, kind)
                    source = getattr(metric, kind)
                    for field in ("aggregation_temporality", "is_monotonic"):
                        if hasattr(source, field):
                            setattr(body, field, getattr(source, field))
                    body.data_points.add().CopyFrom(point)
                    yield one


def merge(parts: list[T], empty: T) -> T:
    """One request of all ``parts`` (their resource entries concatenate); ``empty`` if none."""
    if not parts:
        return empty
    if len(parts) == 1:
        return parts[0]
    merged = type(parts[0])()
    for part in parts:
        merged.MergeFrom(part)
    return merged


def partition(
    data: Convertible, attempt: Callable[[Convertible], object]
) -> tuple[Convertible, list[BaseException]]:
    """``data`` (records or a protobuf request) without the items on which ``attempt`` raises,
    and what each one raised.

    ``attempt`` must have no side effects (a conversion): it runs once per item.
    """
    parts: Iterator[Convertible] = (
        data.singles() if isinstance(data, Logs | Traces) else singles(data)
    )
    good: list[Convertible] = []
    errors: list[BaseException] = []
    for one in parts:
        try:
            attempt(one)
        except Exception as exc:
            errors.append(exc)
            continue
        good.append(one)
    if isinstance(data, Logs | Traces):
        return type(data).concat(good), errors
    return merge(good, type(data)()), errors


def describe(exc: BaseException) -> str:
    """An error for logs without the record's content: its type and where it was raised."""
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        where = f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
        tb = tb.tb_next
    return f"{type(exc).__name__} at {where}" if where else type(exc).__name__


__all__ = ["Telemetry", "describe", "items", "merge", "partition", "singles"]
