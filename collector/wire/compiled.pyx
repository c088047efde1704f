# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True, embedsignature=True
"""OTLP logs and traces requests decoded from protobuf wire bytes straight into the record model.

``Logs.from_proto(ExportLogsServiceRequest.FromString(body))`` builds a upb message and then
reads every attribute through a Python wrapper object; this module walks the wire format once
and builds the same ``Logs``/``Traces`` directly. It must agree with that twin (collector/wire/
twin.py) on every input, so it follows upb's decoding rules, not only the happy path:

* a singular message field seen twice is merged (``resource``, ``scope``, ``body``, a
  ``KeyValue``'s ``value``, ``status``; an ``AnyValue``'s array or kvlist when the same oneof
  member repeats), scalars take the last value, a oneof takes its last member;
* unknown fields and known fields with another wire type are skipped (groups included, with
  matching end tags), wire types 6 and 7, a stray end-group tag, field number 0, a varint
  longer than 10 bytes, a tag longer than 5 bytes, a length past the end and invalid UTF-8 in
  a string field raise ``DecodeError``; nesting deeper than upb's limit raises too.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_SetItem
from cpython.list cimport PyList_Append
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

from google.protobuf.message import DecodeError

from collector.records import LogRecord, Logs, Resource, Scope, Span, SpanEvent, SpanLink, Traces

ctypedef const uint8_t* cptr

cdef extern from *:
    """
    /* CPython's presized dict: public until 3.12, private from 3.13 */
    #if PY_VERSION_HEX < 0x030D0000
    #define agentwatch_presized_dict(n) _PyDict_NewPresized(n)
    #else
    #define agentwatch_presized_dict(n) PyDict_New()
    #endif
    """
    dict agentwatch_presized_dict(Py_ssize_t minused)

# A record's attribute dict starts at the size the previous record's needed: no resizing while
# 25 attributes go in, one after another.
cdef Py_ssize_t _attributes_hint = 8

cdef object _new = object.__new__

# upb's default nesting limit for Python's FromString: the request is decoded at this depth and
# every submessage or group one below it; below zero is an error.
cdef int DEPTH_LIMIT = 100

# AnyValue oneof cases, 0 = nothing set
cdef enum:
    NONE = 0
    STRING = 1
    BOOL = 2
    INT = 3
    DOUBLE = 4
    ARRAY = 5
    KVLIST = 6
    BYTES = 7


# --- wire primitives ----------------------------------------------------------------------------
cdef cptr _varint_slow(cptr p, cptr end, uint64_t* out) except NULL:
    cdef uint64_t result = 0
    cdef uint64_t byte
    cdef int shift = 0
    while True:
        if p >= end:
            raise DecodeError("truncated varint")
        byte = p[0]
        p += 1
        if shift < 64:
            result |= (byte & 0x7F) << shift
        if byte < 0x80:
            out[0] = result
            return p
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


cdef inline cptr _varint(cptr p, cptr end, uint64_t* out) except NULL:
    if p < end and p[0] < 0x80:
        out[0] = p[0]
        return p + 1
    return _varint_slow(p, end, out)


cdef inline cptr _tag(cptr p, cptr end, uint32_t* out) except NULL:
    cdef uint64_t value
    cdef cptr start = p
    if p[0] < 0x80:  # callers guarantee p < end
        out[0] = p[0]
        return p + 1
    p = _varint_slow(p, end, &value)
    if p - start > 5 or value > 0xFFFFFFFF:
        raise DecodeError("invalid tag")
    out[0] = <uint32_t>value
    return p


cdef inline cptr _length(cptr p, cptr end, cptr* stop) except NULL:
    cdef uint64_t size
    p = _varint(p, end, &size)
    if size > <uint64_t>(end - p):
        raise DecodeError("length past the end of the message")
    stop[0] = p + size
    return p


cdef inline cptr _fixed64(cptr p, cptr end, uint64_t* out) except NULL:
    if end - p < 8:
        raise DecodeError("truncated fixed64")
    memcpy(out, p, 8)  # little-endian hosts only (x86-64, arm64)
    return p + 8


cdef inline cptr _fixed32(cptr p, cptr end, uint32_t* out) except NULL:
    if end - p < 4:
        raise DecodeError("truncated fixed32")
    memcpy(out, p, 4)
    return p + 4


cdef inline str _text(cptr p, cptr stop):
    # strict UTF-8, as upb validates proto3 strings; UnicodeDecodeError becomes DecodeError
    # in the public functions
    return PyUnicode_DecodeUTF8(<const char*>p, stop - p, NULL)


# Attribute keys, and short values, repeat from record to record: a direct-mapped cache of the
# str objects made for recent byte strings saves decoding them again (and their hash is kept).
cdef enum:
    CACHE_SLOTS = 1024  # a power of two
    CACHED_KEY_MAX = 48
    CACHED_VALUE_MAX = 24

cdef struct CacheEntry:
    Py_ssize_t length
    PyObject* text
    uint8_t data[CACHED_KEY_MAX]

cdef CacheEntry _key_cache[CACHE_SLOTS]
cdef CacheEntry _value_cache[CACHE_SLOTS]


cdef inline str _cached_text(cptr p, cptr stop, CacheEntry* cache, Py_ssize_t longest):
    cdef Py_ssize_t length = stop - p
    cdef Py_ssize_t i
    cdef uint32_t digest = 2166136261  # FNV-1a for short ones
    cdef CacheEntry* entry
    cdef str text
    cdef uint64_t head, tail
    if length > longest:
        return _text(p, stop)
    if length >= 8:  # the first and last eight bytes tell recent keys apart well enough
        memcpy(&head, p, 8)
        memcpy(&tail, stop - 8, 8)
        digest = <uint32_t>(((head * 0x9E3779B97F4A7C15ULL) ^ (tail * 0xC2B2AE3D27D4EB4FULL)) >> 32)
        digest ^= <uint32_t>length
    else:
        for i in range(length):
            digest = (digest ^ p[i]) * 16777619
    entry = &cache[digest & (CACHE_SLOTS - 1)]
    if entry.text != NULL and entry.length == length and memcmp(entry.data, p, length) == 0:
        return <str>entry.text
    text = _text(p, stop)
    Py_XDECREF(entry.text)
    Py_INCREF(text)
    entry.text = <PyObject*>text
    entry.length = length
    memcpy(entry.data, p, length)
    return text


cdef inline bytes _bytes(cptr p, cptr stop):
    return PyBytes_FromStringAndSize(<const char*>p, stop - p)


cdef cptr _skip_group(cptr p, cptr end, uint32_t number, int depth) except NULL:
    cdef uint32_t tag
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag & 7 == 4:
            if tag >> 3 != number:
                raise DecodeError("mismatched end-group tag")
            return p
        p = _unknown(p, end, tag, depth)
    raise DecodeError("unterminated group")


cdef cptr _unknown(cptr p, cptr end, uint32_t tag, int depth) except NULL:
    """Skip one field this model does not read (or reads with another wire type)."""
    cdef uint32_t wire_type = tag & 7
    cdef uint64_t ignored
    cdef cptr stop
    if tag >> 3 == 0:
        raise DecodeError("field number 0")
    if wire_type == 0:
        return _varint(p, end, &ignored)
    if wire_type == 1:
        if end - p < 8:
            raise DecodeError("truncated fixed64")
        return p + 8
    if wire_type == 2:
        _length(p, end, &stop)
        return stop
    if wire_type == 5:
        if end - p < 4:
            raise DecodeError("truncated fixed32")
        return p + 4
    if wire_type == 3:
        return _skip_group(p, end, tag >> 3, depth - 1)
    if wire_type == 4:
        raise DecodeError("end-group tag outside a group")
    raise DecodeError("invalid wire type")


# --- common: AnyValue, KeyValue ------------------------------------------------------------------
cdef object _any(cptr p, cptr end, int depth, int* kind, object value):
    """Merge one AnyValue message into (kind, value); returns the new value."""
    cdef uint32_t tag
    cdef uint64_t number
    cdef double real
    cdef cptr stop
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x0A:  # string_value
            p = _length(p, end, &stop)
            value = _cached_text(p, stop, _value_cache, CACHED_VALUE_MAX)
            kind[0] = STRING
            p = stop
        elif tag == 0x10:  # bool_value
            p = _varint(p, end, &number)
            value = number != 0
            kind[0] = BOOL
        elif tag == 0x18:  # int_value
            p = _varint(p, end, &number)
            value = <int64_t>number
            kind[0] = INT
        elif tag == 0x21:  # double_value
            p = _fixed64(p, end, <uint64_t*>&real)
            value = real
            kind[0] = DOUBLE
        elif tag == 0x2A:  # array_value
            p = _length(p, end, &stop)
            if kind[0] != ARRAY:
                value = []
                kind[0] = ARRAY
            _array(p, stop, depth - 1, value)
            p = stop
        elif tag == 0x32:  # kvlist_value
            p = _length(p, end, &stop)
            if kind[0] != KVLIST:
                value = {}
                kind[0] = KVLIST
            _key_values(p, stop, depth - 1, value)
            p = stop
        elif tag == 0x3A:  # bytes_value
            p = _length(p, end, &stop)
            value = _bytes(p, stop)
            kind[0] = BYTES
            p = stop
        else:
            p = _unknown(p, end, tag, depth)
    return value


cdef int _array(cptr p, cptr end, int depth, list out) except -1:
    cdef uint32_t tag
    cdef cptr stop
    cdef int kind
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x0A:
            p = _length(p, end, &stop)
            kind = NONE
            PyList_Append(out, _any(p, stop, depth - 1, &kind, None))
            p = stop
        else:
            p = _unknown(p, end, tag, depth)
    return 0


cdef int _key_values(cptr p, cptr end, int depth, dict out) except -1:
    """A KeyValueList's body: its entries go into ``out``."""
    cdef uint32_t tag
    cdef cptr stop
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x0A:
            p = _length(p, end, &stop)
            _key_value(p, stop, depth - 1, out)
            p = stop
        else:
            p = _unknown(p, end, tag, depth)
    return 0


cdef int _key_value(cptr p, cptr end, int depth, dict out) except -1:
    """One KeyValue into ``out``: a repeated key keeps its first place and takes this value."""
    cdef uint32_t tag
    cdef cptr stop
    cdef int kind = NONE
    cdef object key = ""
    cdef object value = None
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x0A:
            p = _length(p, end, &stop)
            key = _cached_text(p, stop, _key_cache, CACHED_KEY_MAX)
            p = stop
        elif tag == 0x12:
            p = _length(p, end, &stop)
            value = _any(p, stop, depth - 1, &kind, value)
            p = stop
        else:
            p = _unknown(p, end, tag, depth)
    PyDict_SetItem(out, key, value)
    return 0


cdef int _resource(cptr p, cptr end, int depth, object resource) except -1:
    cdef uint32_t tag
    cdef uint64_t number
    cdef cptr stop
    cdef dict attributes = resource.attributes
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x0A:
            p = _length(p, end, &stop)
            _key_value(p, stop, depth - 1, attributes)
            p = stop
        elif tag == 0x10:
            p = _varint(p, end, &number)
            resource.dropped_attributes_count = <uint32_t>number
        else:
            p = _unknown(p, end, tag, depth)
    return 0


cdef int _scope(cptr p, cptr end, int depth, object scope) except -1:
    cdef uint32_t tag
    cdef uint64_t number
    cdef cptr stop
    cdef dict attributes = scope.attributes
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x0A:
            p = _length(p, end, &stop)
            scope.name = _text(p, stop)
            p = stop
        elif tag == 0x12:
            p = _length(p, end, &stop)
            scope.version = _text(p, stop)
            p = stop
        elif tag == 0x1A:
            p = _length(p, end, &stop)
            _key_value(p, stop, depth - 1, attributes)
            p = stop
        elif tag == 0x20:
            p = _varint(p, end, &number)
            scope.dropped_attributes_count = <uint32_t>number
        else:
            p = _unknown(p, end, tag, depth)
    return 0


# --- logs ----------------------------------------------------------------------------------------
cdef int _log_record(cptr p, cptr end, int depth, object resource, object scope,
                     list out) except -1:
    cdef object record
    cdef uint32_t tag
    cdef uint64_t number
    cdef uint64_t time_unix_nano = 0
    cdef uint64_t observed_time_unix_nano = 0
    cdef int32_t severity_number = 0
    cdef uint32_t dropped_attributes_count = 0
    cdef uint32_t flags = 0
    cdef int body_kind = NONE
    cdef object body = None
    cdef object severity_text = ""
    cdef object event_name = ""
    cdef object trace_id = b""
    cdef object span_id = b""
    cdef dict attributes = agentwatch_presized_dict(_attributes_hint)
    cdef cptr stop
    global _attributes_hint
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x32:  # attributes
            p = _length(p, end, &stop)
            _key_value(p, stop, depth - 1, attributes)
            p = stop
        elif tag == 0x09:
            p = _fixed64(p, end, &time_unix_nano)
        elif tag == 0x59:
            p = _fixed64(p, end, &observed_time_unix_nano)
        elif tag == 0x10:
            p = _varint(p, end, &number)
            severity_number = <int32_t>number
        elif tag == 0x1A:
            p = _length(p, end, &stop)
            severity_text = _text(p, stop)
            p = stop
        elif tag == 0x2A:
            p = _length(p, end, &stop)
            body = _any(p, stop, depth - 1, &body_kind, body)
            p = stop
        elif tag == 0x38:
            p = _varint(p, end, &number)
            dropped_attributes_count = <uint32_t>number
        elif tag == 0x45:
            p = _fixed32(p, end, &flags)
        elif tag == 0x4A:
            p = _length(p, end, &stop)
            trace_id = _bytes(p, stop)
            p = stop
        elif tag == 0x52:
            p = _length(p, end, &stop)
            span_id = _bytes(p, stop)
            p = stop
        elif tag == 0x62:
            p = _length(p, end, &stop)
            event_name = _text(p, stop)
            p = stop
        else:
            p = _unknown(p, end, tag, depth)
    _attributes_hint = min(len(attributes), 128)
    # __new__ and the slots, not the keyword constructor: a Python call per record is a
    # sizable part of this decoder's time (tests compare every slot with the twin's)
    record = _new(LogRecord)
    record.resource = resource
    record.scope = scope
    record.time_unix_nano = time_unix_nano
    record.observed_time_unix_nano = observed_time_unix_nano
    record.severity_number = severity_number
    record.severity_text = severity_text
    record.body = body
    record.attributes = attributes
    record.dropped_attributes_count = dropped_attributes_count
    record.flags = flags
    record.trace_id = trace_id
    record.span_id = span_id
    record.event_name = event_name
    PyList_Append(out, record)
    return 0


cdef int _event(cptr p, cptr end, int depth, list out) except -1:
    cdef uint32_t tag
    cdef uint64_t number
    cdef uint64_t time_unix_nano = 0
    cdef uint32_t dropped_attributes_count = 0
    cdef object name = ""
    cdef dict attributes = {}
    cdef cptr stop
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x1A:
            p = _length(p, end, &stop)
            _key_value(p, stop, depth - 1, attributes)
            p = stop
        elif tag == 0x09:
            p = _fixed64(p, end, &time_unix_nano)
        elif tag == 0x12:
            p = _length(p, end, &stop)
            name = _text(p, stop)
            p = stop
        elif tag == 0x20:
            p = _varint(p, end, &number)
            dropped_attributes_count = <uint32_t>number
        else:
            p = _unknown(p, end, tag, depth)
    PyList_Append(out, SpanEvent(time_unix_nano, name, attributes, dropped_attributes_count))
    return 0


cdef int _link(cptr p, cptr end, int depth, list out) except -1:
    cdef uint32_t tag
    cdef uint64_t number
    cdef uint32_t dropped_attributes_count = 0
    cdef uint32_t flags = 0
    cdef object trace_id = b""
    cdef object span_id = b""
    cdef object trace_state = ""
    cdef dict attributes = {}
    cdef cptr stop
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x22:
            p = _length(p, end, &stop)
            _key_value(p, stop, depth - 1, attributes)
            p = stop
        elif tag == 0x0A:
            p = _length(p, end, &stop)
            trace_id = _bytes(p, stop)
            p = stop
        elif tag == 0x12:
            p = _length(p, end, &stop)
            span_id = _bytes(p, stop)
            p = stop
        elif tag == 0x1A:
            p = _length(p, end, &stop)
            trace_state = _text(p, stop)
            p = stop
        elif tag == 0x28:
            p = _varint(p, end, &number)
            dropped_attributes_count = <uint32_t>number
        elif tag == 0x35:
            p = _fixed32(p, end, &flags)
        else:
            p = _unknown(p, end, tag, depth)
    PyList_Append(
        out,
        SpanLink(trace_id, span_id, trace_state, attributes, dropped_attributes_count, flags),
    )
    return 0


cdef tuple _status(cptr p, cptr end, int depth, int32_t code, object message):
    """Merge one Status message into (code, message)."""
    cdef uint32_t tag
    cdef uint64_t number
    cdef cptr stop
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x12:
            p = _length(p, end, &stop)
            message = _text(p, stop)
            p = stop
        elif tag == 0x18:
            p = _varint(p, end, &number)
            code = <int32_t>number
        else:
            p = _unknown(p, end, tag, depth)
    return code, message


cdef int _span(cptr p, cptr end, int depth, object resource, object scope, list out) except -1:
    cdef uint32_t tag
    cdef uint64_t number
    cdef uint64_t start_time_unix_nano = 0
    cdef uint64_t end_time_unix_nano = 0
    cdef int32_t kind = 0
    cdef int32_t status_code = 0
    cdef uint32_t flags = 0
    cdef uint32_t dropped_attributes_count = 0
    cdef uint32_t dropped_events_count = 0
    cdef uint32_t dropped_links_count = 0
    cdef object trace_id = b""
    cdef object span_id = b""
    cdef object parent_span_id = b""
    cdef object trace_state = ""
    cdef object name = ""
    cdef object status_message = ""
    cdef dict attributes = {}
    cdef list events = []
    cdef list links = []
    cdef tuple status
    cdef cptr stop
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x4A:  # attributes
            p = _length(p, end, &stop)
            _key_value(p, stop, depth - 1, attributes)
            p = stop
        elif tag == 0x0A:
            p = _length(p, end, &stop)
            trace_id = _bytes(p, stop)
            p = stop
        elif tag == 0x12:
            p = _length(p, end, &stop)
            span_id = _bytes(p, stop)
            p = stop
        elif tag == 0x1A:
            p = _length(p, end, &stop)
            trace_state = _text(p, stop)
            p = stop
        elif tag == 0x22:
            p = _length(p, end, &stop)
            parent_span_id = _bytes(p, stop)
            p = stop
        elif tag == 0x2A:
            p = _length(p, end, &stop)
            name = _text(p, stop)
            p = stop
        elif tag == 0x30:
            p = _varint(p, end, &number)
            kind = <int32_t>number
        elif tag == 0x39:
            p = _fixed64(p, end, &start_time_unix_nano)
        elif tag == 0x41:
            p = _fixed64(p, end, &end_time_unix_nano)
        elif tag == 0x50:
            p = _varint(p, end, &number)
            dropped_attributes_count = <uint32_t>number
        elif tag == 0x5A:
            p = _length(p, end, &stop)
            _event(p, stop, depth - 1, events)
            p = stop
        elif tag == 0x60:
            p = _varint(p, end, &number)
            dropped_events_count = <uint32_t>number
        elif tag == 0x6A:
            p = _length(p, end, &stop)
            _link(p, stop, depth - 1, links)
            p = stop
        elif tag == 0x70:
            p = _varint(p, end, &number)
            dropped_links_count = <uint32_t>number
        elif tag == 0x7A:
            p = _length(p, end, &stop)
            status = _status(p, stop, depth - 1, status_code, status_message)
            status_code = status[0]
            status_message = status[1]
            p = stop
        elif tag == 0x85:  # field 16, fixed32: a two-byte tag
            p = _fixed32(p, end, &flags)
        else:
            p = _unknown(p, end, tag, depth)
    PyList_Append(
        out,
        Span(
            resource,
            scope,
            trace_id,
            span_id,
            trace_state,
            parent_span_id,
            flags,
            name,
            kind,
            start_time_unix_nano,
            end_time_unix_nano,
            attributes,
            dropped_attributes_count,
            events,
            dropped_events_count,
            links,
            dropped_links_count,
            status_code,
            status_message,
        ),
    )
    return 0


# --- what logs and traces share ---------------------------------------------------------------
cdef int _scope_items(cptr p, cptr end, int depth, object resource, list out, bint traces) except -1:
    """A ScopeLogs or ScopeSpans: its scope, schema url and items (field 2 in both)."""
    cdef uint32_t tag
    cdef cptr stop
    cdef object scope = Scope()
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x12:
            p = _length(p, end, &stop)
            if traces:
                _span(p, stop, depth - 1, resource, scope, out)
            else:
                _log_record(p, stop, depth - 1, resource, scope, out)
            p = stop
        elif tag == 0x0A:
            p = _length(p, end, &stop)
            _scope(p, stop, depth - 1, scope)
            p = stop
        elif tag == 0x1A:
            p = _length(p, end, &stop)
            scope.schema_url = _text(p, stop)
            p = stop
        else:
            p = _unknown(p, end, tag, depth)
    return 0


cdef int _resource_items(cptr p, cptr end, int depth, list out, bint traces) except -1:
    """A ResourceLogs or ResourceSpans: its resource, schema url and scope groups."""
    cdef uint32_t tag
    cdef cptr stop
    cdef object resource = Resource()
    if depth < 0:
        raise DecodeError("message nested too deeply")
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x12:
            p = _length(p, end, &stop)
            _scope_items(p, stop, depth - 1, resource, out, traces)
            p = stop
        elif tag == 0x0A:
            p = _length(p, end, &stop)
            _resource(p, stop, depth - 1, resource)
            p = stop
        elif tag == 0x1A:
            p = _length(p, end, &stop)
            resource.schema_url = _text(p, stop)
            p = stop
        else:
            p = _unknown(p, end, tag, depth)
    return 0


# --- requests ------------------------------------------------------------------------------------
cdef int _request(const uint8_t[::1] view, bint traces, list out) except -1:
    cdef uint32_t tag
    cdef cptr stop
    cdef cptr p = &view[0] if view.shape[0] else NULL
    cdef cptr end = p + view.shape[0]
    while p < end:
        p = _tag(p, end, &tag)
        if tag == 0x0A:
            p = _length(p, end, &stop)
            _resource_items(p, stop, DEPTH_LIMIT - 1, out, traces)
            p = stop
        else:
            p = _unknown(p, end, tag, DEPTH_LIMIT)
    return 0


def decode_logs(body) -> Logs:
    """An ``ExportLogsServiceRequest``'s wire bytes as ``Logs``; ``DecodeError`` if invalid."""
    cdef list records = []
    try:
        _request(body, False, records)
    except UnicodeDecodeError as error:
        raise DecodeError(f"invalid UTF-8 in a string field: {error}") from None
    return Logs(records)


def decode_traces(body) -> Traces:
    """An ``ExportTraceServiceRequest``'s wire bytes as ``Traces``; ``DecodeError`` if
    invalid."""
    cdef list spans = []
    try:
        _request(body, True, spans)
    except UnicodeDecodeError as error:
        raise DecodeError(f"invalid UTF-8 in a string field: {error}") from None
    return Traces(spans)
