"""OTLP ``AnyValue`` to Python and back, and point counts, in one place: the value codec.

Processors and exporters read the same attributes with different needs: a normaliser wants
every value (lists and maps included), a rule engine and a metric label want text, a counter
wants a scalar. These helpers keep those readings consistent instead of each file carrying
its own copy.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, MutableSequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import ResourceMetrics

Scalar = str | int | float | bool

_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


def decode_value(value: AnyValue) -> Any:
    """The Python value of an ``AnyValue``: lists and dicts for arrays and maps, ``bytes`` for
    bytes, ``None`` for an empty one (Codex sends those)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [decode_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: decode_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def decode_attributes(key_values: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP attributes as a dict of Python values: the one per-attribute pass of a record."""
    out: dict[str, Any] = {}
    for kv in key_values:  # the hot loop: strings first, no extra call
        value = kv.value
        text = value.string_value
        if text:  # only a set string is non-empty: no WhichOneof for most values
            out[kv.key] = text
            continue
        kind = value.WhichOneof("value")
        if kind == "string_value":
            out[kv.key] = text
        elif kind is None:
            out[kv.key] = None
        elif kind == "array_value" or kind == "kvlist_value":
            out[kv.key] = decode_value(value)
        else:
            out[kv.key] = getattr(value, kind)
    return out


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def encode_value(value: Any, out: AnyValue) -> None:
    """Write a Python value into ``out``; ``None`` leaves it empty, ints beyond int64 and
    other types are written as their text so encoding never fails."""
    if isinstance(value, str):
        out.string_value = value
    elif value is None:
        return
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            out.int_value = value
        else:
            out.string_value = str(value)
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, bytes | bytearray):
        out.bytes_value = bytes(value)
    elif isinstance(value, list | tuple):
        array = out.array_value
        array.SetInParent()
        for item in value:
            encode_value(item, array.values.add())
    elif isinstance(value, dict):
        kvlist = out.kvlist_value
        kvlist.SetInParent()
        encode_attributes(value, kvlist.values)
    else:
        out.string_value = str(value)


def encode_attributes(attributes: Mapping[str, Any], out: MutableSequence[KeyValue]) -> None:
    """Append ``attributes`` to a repeated ``KeyValue`` field."""
    for key, value in attributes.items():
        kv = out.add(key=key)  # type: ignore[attr-defined]
        if isinstance(value, str):
            kv.value.string_value = value
        elif value is None:
            kv.value.SetInParent()  # an empty value, as agents send it
        else:
            encode_value(value, kv.value)


def bytes_text(value: bytes) -> str:
    """Bytes as text the way the raw tables show them (base64, as the Go exporter's
    ``AsString``), so a bytes identity reads the same in every table."""
    return base64.b64encode(value).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes_text(bytes(value))
    return str(value)


def json_text(value: Any) -> str:
    """Compact JSON of an attribute's Python value (``decode_value``); bytes anywhere inside are
    base64, NaN and infinities are written as JavaScript writes them, so any tree encodes."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=_json_default)


def scalar(value: AnyValue) -> Scalar | None:
    """A string, int, double or bool value; ``None`` for anything else (arrays, maps, bytes)."""
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in _SCALARS else None  # type: ignore[no-any-return]


def scalar_text(value: Scalar | None) -> str:
    """A scalar as text, booleans as ``true``/``false`` (as OTLP JSON writes them); "" for
    ``None``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def text(value: AnyValue) -> str:
    """``scalar_text(scalar(value))`` without the intermediate call: rule engines read many
    attributes per record."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value" or kind == "double_value":
        return str(getattr(value, kind))
    return ""


def metric_points(rm: ResourceMetrics) -> int:
    """Data points of one ``ResourceMetrics``: the unit OTLP counts metrics in."""
    n = 0
    for sm in rm.scope_metrics:
        for metric in sm.metrics:
            kind = metric.WhichOneof("data")
            if kind is not None:
                n += len(getattr(metric, kind).data_points)
    return n
