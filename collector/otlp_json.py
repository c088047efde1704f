"""OTLP JSON codec: the OTLP/HTTP JSON mapping to and from the OTLP protobuf classes.

OTLP JSON is proto3 JSON with three differences that ``google.protobuf.json_format`` does not
know: trace and span ids are hex, not base64; enums are integers; and keys may be lowerCamelCase
or the proto field names. ``json_format`` is also several times slower (``bench/otlp_json.py``),
so this module maps ``orjson.loads`` (or ``json.loads``) output onto the message classes
directly: a per-message table, built once from the descriptors, turns each JSON object into
constructor keyword arguments, and one constructor call at the top lets the C protobuf runtime
build the whole tree. Attributes
(KeyValue/AnyValue), which are most of every payload, have hand-written converters.

Decoding is lenient where the spec says so (unknown keys and ``null`` are ignored, int64 as a
string or a number, enums as integers or names) and strict where a silent guess would corrupt
data (ids must be hex of the exact length, strings must be strings, integers must fit).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from collector.component import REQUEST_TYPES, Signal, Telemetry


def stdlib_loads(body: bytes | bytearray | str) -> Any:
    return json.loads(body)


def stdlib_dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


_loads: Callable[[bytes | bytearray | str], Any] = stdlib_loads
_dumps: Callable[[Any], bytes] = stdlib_dumps
try:  # orjson writes ~15x and parses ~2x faster than the stdlib; the stdlib is the fallback
    import orjson

    _loads = orjson.loads
    _dumps = orjson.dumps
except ImportError:  # pragma: no cover - where orjson is not installed
    pass

__all__ = ["OtlpJsonError", "decode", "decode_message", "encode", "encode_dict"]

ID_FIELDS = {"trace_id": 16, "span_id": 8, "parent_span_id": 8}
"""Bytes fields OTLP JSON writes as hex, with their exact length in bytes (0 means unset)."""

MAX_ANY_VALUE_DEPTH = 20
"""Nesting of array/kvlist values accepted in JSON. Each level is 2-3 protobuf message levels and
protobuf refuses to parse more than 100, so a deeper value decoded from JSON could be stored
(e.g. in a write-ahead log) but never read back."""


class OtlpJsonError(ValueError):
    """An OTLP JSON payload that cannot be decoded; ``str()`` names the offending field path."""

    def __init__(self, problem: str, path: list[str | int] | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str | int] = path if path is not None else []

    def __str__(self) -> str:
        if not self.path:
            return self.problem
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return f"{text}: {self.problem}"


# --------------------------------------------------------------------------------------------
# Decoding: JSON values -> protobuf constructor arguments
# --------------------------------------------------------------------------------------------

Converter = Callable[[Any], Any]

_INT_STRING = re.compile(r"-?[0-9]+")
_INT_RANGES = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


def _int_converter(lo: int, hi: int) -> Converter:
    def convert(value: Any) -> int:
        cls = value.__class__
        if cls is int:
            number = value
        elif (cls is str and _INT_STRING.fullmatch(value)) or (cls is float and value.is_integer()):
            number = int(value)
        else:
            raise OtlpJsonError(f"expected an integer, got {_type_name(value)} {value!r:.40}")
        if not lo <= number <= hi:
            raise OtlpJsonError(f"integer {number} out of range [{lo}, {hi}]")
        return number

    return convert


def _to_double(value: Any) -> float:
    cls = value.__class__
    if cls is float or cls is int:
        return float(value)
    if cls is str:
        special = _SPECIAL_FLOATS.get(value)
        if special is not None:
            return special
        try:
            return float(value)
        except ValueError:
            pass
    raise OtlpJsonError(f"expected a number, got {_type_name(value)} {value!r:.40}")


def _to_string(value: Any) -> str:
    if value.__class__ is not str:
        raise OtlpJsonError(f"expected a string, got {_type_name(value)}")
    return value  # type: ignore[no-any-return]


def _to_bool(value: Any) -> bool:
    if value.__class__ is not bool:
        raise OtlpJsonError(f"expected true or false, got {_type_name(value)}")
    return value  # type: ignore[no-any-return]


def _to_bytes(value: Any) -> bytes:
    if value.__class__ is not str:
        raise OtlpJsonError(f"expected a base64 string, got {_type_name(value)}")
    text = value.replace("-", "+").replace("_", "/")  # proto3 JSON accepts both alphabets
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise OtlpJsonError(f"invalid base64: {exc}") from None


def _id_converter(field_name: str, size: int) -> Converter:
    digits = size * 2

    def convert(value: Any) -> bytes:
        if value.__class__ is not str:
            raise OtlpJsonError(f"expected a hex string, got {_type_name(value)}")
        if not value:
            return b""
        if len(value) != digits:
            raise OtlpJsonError(
                f"{field_name} must be {digits} hex digits (OTLP JSON ids are hex, not base64),"
                f" got {len(value)} characters"
            )
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) != size:
            raise OtlpJsonError(f"{field_name} is not hex: {value!r} (OTLP JSON ids are hex)")
        return raw

    return convert


def _enum_converter(field: FieldDescriptor) -> Converter:
    by_name = {v.name: v.number for v in field.enum_type.values}
    as_int = _int_converter(-(2**31), 2**31 - 1)

    def convert(value: Any) -> int:
        if value.__class__ is str and value in by_name:
            return by_name[value]
        return as_int(value)

    return convert


def _repeated(convert: Converter) -> Converter:
    def convert_all(values: Any) -> list[Any]:
        if values.__class__ is not list:
            raise OtlpJsonError(f"expected an array, got {_type_name(values)}")
        out = []
        for index, item in enumerate(values):
            if item is None:
                raise OtlpJsonError("null is not allowed in an array", [index])
            try:
                out.append(convert(item))
            except OtlpJsonError as exc:
                exc.path.insert(0, index)
                raise
        return out

    return convert_all


FieldTable = dict[str, tuple[str, Converter]]
_TABLES: dict[str, FieldTable] = {}


def _table(descriptor: Descriptor) -> FieldTable:
    """JSON key (lowerCamelCase and proto name) -> (constructor keyword, converter)."""
    table = _TABLES.get(descriptor.full_name)
    if table is not None:
        return table
    table = {}
    _TABLES[descriptor.full_name] = table  # before recursing, in case a message nests itself
    for field in descriptor.fields:
        convert = _field_converter(field)
        if field.is_repeated:
            convert = _key_values if convert is _key_value_checked else _repeated(convert)
        table[field.json_name] = (field.name, convert)
        table[field.name] = (field.name, convert)
    return table


def _field_converter(field: FieldDescriptor) -> Converter:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        full_name = field.message_type.full_name
        if full_name == "opentelemetry.proto.common.v1.KeyValue":
            return _key_value_checked  # repeated KeyValue fields use _key_values directly
        if full_name == "opentelemetry.proto.common.v1.AnyValue":
            return _any_value_top
        return _message_converter(field.message_type)
    if kind == FieldDescriptor.TYPE_BYTES:
        if field.name in ID_FIELDS:
            return _id_converter(field.json_name, ID_FIELDS[field.name])
        return _to_bytes
    if kind == FieldDescriptor.TYPE_STRING:
        return _to_string
    if kind == FieldDescriptor.TYPE_BOOL:
        return _to_bool
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _to_double
    if kind == FieldDescriptor.TYPE_ENUM:
        return _enum_converter(field)
    lo, hi = _INT_RANGES[kind]
    return _int_converter(lo, hi)


def _message_converter(descriptor: Descriptor) -> Converter:
    table: FieldTable | None = None

    def convert(value: Any) -> dict[str, Any]:
        nonlocal table
        if table is None:
            table = _table(descriptor)
        return _convert_object(table, value)

    return convert


def _convert_object(table: FieldTable, obj: Any) -> dict[str, Any]:
    if obj.__class__ is not dict:
        raise OtlpJsonError(f"expected an object, got {_type_name(obj)}")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        spec = table.get(key)
        if spec is None or value is None:
            continue  # unknown keys are ignored; null means "not set" in proto3 JSON
        name, convert = spec
        try:
            out[name] = convert(value)
        except OtlpJsonError as exc:
            exc.path.insert(0, key)
            raise
    return out


# Attributes are the bulk of every payload: hand-written converters for KeyValue and AnyValue.

_as_int64 = _int_converter(-(2**63), 2**63 - 1)
_as_int32 = _int_converter(-(2**31), 2**31 - 1)

_ANY_SCALARS: dict[str, tuple[str, Converter]] = {}
for _name, _json_name, _convert in (
    ("string_value", "stringValue", _to_string),
    ("bool_value", "boolValue", _to_bool),
    ("int_value", "intValue", _as_int64),
    ("double_value", "doubleValue", _to_double),
    ("bytes_value", "bytesValue", _to_bytes),
    ("string_value_strindex", "stringValueStrindex", _as_int32),
):
    _ANY_SCALARS[_name] = _ANY_SCALARS[_json_name] = (_name, _convert)
_ANY_NESTED = {
    "arrayValue": "array_value",
    "array_value": "array_value",
    "kvlistValue": "kvlist_value",
    "kvlist_value": "kvlist_value",
}


def _any_value_top(value: Any) -> dict[str, Any]:
    return _any_value(value, 0)


def _any_value(value: Any, depth: int) -> dict[str, Any]:
    if value.__class__ is not dict:
        raise OtlpJsonError(f"expected an object, got {_type_name(value)}")
    if len(value) == 1:
        text = value.get("stringValue")
        if text.__class__ is str:
            return {"string_value": text}
    out: dict[str, Any] = {}
    for key, item in value.items():
        if item is None:
            continue
        scalar = _ANY_SCALARS.get(key)
        try:
            if scalar is not None:
                out[scalar[0]] = scalar[1](item)
                continue
            nested = _ANY_NESTED.get(key)
            if nested is None:
                continue
            if depth >= MAX_ANY_VALUE_DEPTH:
                raise OtlpJsonError(f"values nested deeper than {MAX_ANY_VALUE_DEPTH} levels")
            out[nested] = _value_list(item, depth + 1, nested == "kvlist_value")
        except OtlpJsonError as exc:
            exc.path.insert(0, key)
            raise
    return out


def _value_list(obj: Any, depth: int, key_values: bool) -> dict[str, Any]:
    """ArrayValue or KeyValueList: ``{"values": [...]}``."""
    if obj.__class__ is not dict:
        raise OtlpJsonError(f"expected an object, got {_type_name(obj)}")
    values = obj.get("values")
    if values is None:
        return {}
    if values.__class__ is not list:
        raise OtlpJsonError(f"expected an array, got {_type_name(values)}", ["values"])
    out = []
    for index, item in enumerate(values):
        try:
            if item is None:
                raise OtlpJsonError("null is not allowed in an array")
            out.append(_key_value(item, depth) if key_values else _any_value(item, depth))
        except OtlpJsonError as exc:
            exc.path[0:0] = ["values", index]
            raise
    return {"values": out}


def _key_values(values: Any) -> list[dict[str, Any]]:
    """A list of attributes: ``{"key": k, "value": {...}}`` inline, anything else the long way."""
    if values.__class__ is not list:
        raise OtlpJsonError(f"expected an array, got {_type_name(values)}")
    out: list[dict[str, Any]] = []
    append = out.append
    for index, obj in enumerate(values):
        try:
            if obj.__class__ is dict and len(obj) == 2:
                key = obj.get("key")
                value = obj.get("value")
                if key.__class__ is str and value.__class__ is dict:
                    text = value.get("stringValue") if len(value) == 1 else None
                    if text.__class__ is str:
                        append({"key": key, "value": {"string_value": text}})
                        continue
                    try:
                        append({"key": key, "value": _any_value(value, 0)})
                    except OtlpJsonError as exc:
                        exc.path.insert(0, "value")
                        raise
                    continue
            if obj is None:
                raise OtlpJsonError("null is not allowed in an array")
            append(_key_value(obj, 0))
        except OtlpJsonError as exc:
            exc.path.insert(0, index)
            raise
    return out


def _key_value_checked(obj: Any) -> dict[str, Any]:
    return _key_value(obj, 0)


def _key_value(obj: Any, depth: int) -> dict[str, Any]:
    if obj.__class__ is not dict:
        raise OtlpJsonError(f"expected an object, got {_type_name(obj)}")
    out: dict[str, Any] = {}
    key = obj.get("key")
    if key is not None:
        if key.__class__ is not str:
            raise OtlpJsonError(f"expected a string, got {_type_name(key)}", ["key"])
        out["key"] = key
    value = obj.get("value")
    if value is not None:
        try:
            out["value"] = _any_value(value, depth)
        except OtlpJsonError as exc:
            exc.path.insert(0, "value")
            raise
    # more keys than converted: a null, an unknown key, or the rare key_strindex
    strindex = obj.get("keyStrindex", obj.get("key_strindex")) if len(obj) > len(out) else None
    if strindex is not None:
        try:
            out["key_strindex"] = _as_int32(strindex)
        except OtlpJsonError as exc:
            exc.path.insert(0, "keyStrindex")
            raise
    return out


def decode_message(message_class: type[Message], body: bytes | bytearray | str) -> Message:
    """Decode any OTLP request or response message from OTLP JSON."""
    try:
        obj = _loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise OtlpJsonError(f"invalid JSON: {exc}") from None
    if obj.__class__ is not dict:
        raise OtlpJsonError(f"expected a JSON object at the top level, got {_type_name(obj)}")
    try:
        kwargs = _convert_object(_table(message_class.DESCRIPTOR), obj)
        return message_class(**kwargs)
    except OtlpJsonError:
        raise
    except RecursionError:
        raise OtlpJsonError("payload nested too deeply") from None
    except (ValueError, TypeError) as exc:  # whatever the protobuf runtime still refuses
        raise OtlpJsonError(f"invalid {message_class.DESCRIPTOR.name}: {exc}") from None


def decode(signal: Signal, body: bytes | bytearray | str) -> Telemetry:
    """Decode an ``Export{Logs,Metrics,Trace}ServiceRequest`` sent as OTLP JSON."""
    return decode_message(REQUEST_TYPES[signal], body)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Encoding: protobuf -> OTLP JSON
# --------------------------------------------------------------------------------------------

Encoder = Callable[[Any], Any]
_ENCODERS: dict[str, dict[str, tuple[str, Encoder]]] = {}


def _encode_double(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _encode_bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _encode_hex(value: bytes) -> str:
    return value.hex()


def _identity(value: Any) -> Any:
    return value


def _field_encoder(field: FieldDescriptor) -> Encoder:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        full_name = field.message_type.full_name
        if full_name == "opentelemetry.proto.common.v1.KeyValue":
            return _encode_key_value
        if full_name == "opentelemetry.proto.common.v1.AnyValue":
            return _encode_any_value
        if full_name.startswith("google.protobuf."):  # well-known types have special mappings
            return json_format.MessageToDict
        return encode_dict
    if kind == FieldDescriptor.TYPE_BYTES:
        return _encode_hex if field.name in ID_FIELDS else _encode_bytes
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _encode_double
    if kind in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED64,
    ):
        return str  # proto3 JSON writes 64-bit integers as strings (JS numbers lose precision)
    return _identity  # strings, bools, 32-bit integers, enums (OTLP JSON: as integers)


def _encoders(descriptor: Descriptor) -> dict[str, tuple[str, Encoder]]:
    encoders = _ENCODERS.get(descriptor.full_name)
    if encoders is None:
        encoders = {}
        for field in descriptor.fields:
            encode_one = _field_encoder(field)
            if field.is_repeated:
                if encode_one is _encode_key_value:
                    encode_one = _encode_key_values
                else:
                    encode_one = _encode_list(encode_one)
            encoders[field.name] = (field.json_name, encode_one)
        _ENCODERS[descriptor.full_name] = encoders
    return encoders


def _encode_list(encode_one: Encoder) -> Encoder:
    def encode_all(values: Any) -> list[Any]:
        return [encode_one(v) for v in values]

    return encode_all


def encode_dict(message: Message) -> dict[str, Any]:
    """The OTLP JSON object of a message, before serialisation (for callers that embed it)."""
    encoders = _encoders(message.DESCRIPTOR)
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        json_name, encode_one = encoders[field.name]
        out[json_name] = encode_one(value)
    return out


def _encode_any_value(value: Any) -> dict[str, Any]:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return {"stringValue": value.string_value}
    if kind is None:
        return {}
    if kind == "int_value":
        return {"intValue": str(value.int_value)}
    if kind == "bool_value":
        return {"boolValue": value.bool_value}
    if kind == "double_value":
        return {"doubleValue": _encode_double(value.double_value)}
    if kind == "array_value":
        return {"arrayValue": {"values": [_encode_any_value(v) for v in value.array_value.values]}}
    if kind == "kvlist_value":
        return {"kvlistValue": {"values": _encode_key_values(value.kvlist_value.values)}}
    return encode_dict(value)  # bytes and any value kind added later


def _encode_key_values(values: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    append = out.append
    for kv in values:
        value = kv.value
        if value.WhichOneof("value") == "string_value" and not kv.key_strindex:
            append({"key": kv.key, "value": {"stringValue": value.string_value}})
        else:
            append(_encode_key_value(kv))
    return out


def _encode_key_value(kv: Any) -> dict[str, Any]:
    if kv.key_strindex:
        return encode_dict(kv)
    if kv.HasField("value"):
        return {"key": kv.key, "value": _encode_any_value(kv.value)}
    return {"key": kv.key}


def encode(message: Message) -> bytes:
    """Serialise any OTLP message (requests, responses, ``google.rpc.Status``) as OTLP JSON."""
    return _dumps(encode_dict(message))
