"""What every vendor normaliser shares: reading OTLP attributes, identity, event ids.

Each agent's quirks live in its own module (``claude_code``, ``codex``, ``gemini_cli``,
``copilot``); this module only holds the vocabulary they have in common, so a reader of one
vendor file never has to know another vendor's dialect.

A normaliser never removes or rewrites what the agent sent. It returns the ``agentwatch.*``
keys of :mod:`collector.agent_model` to add to the record; :mod:`processors.normalize` writes
them, so the raw tables keep the vendor's own numbers next to the normalised ones.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from collector import agent_model as am
from collector.agent_model import Agent, EventType
from collector.otlp_values import bytes_text, json_text
from collector.records import LogRecord, Span

Attrs = dict[str, Any]
"""OTLP attributes as plain Python values (str, bool, int, float, list, dict or None)."""

Scalar = str | bool | int | float

TOOL_PHASE = am.TOOL_PHASE
USER_DISPLAY_NAME = am.USER_DISPLAY_NAME
DERIVED_FROM = am.DERIVED_FROM
API_USAGE = am.EventType.API_USAGE.value

DERIVED_SCOPE = "agentwatch.normalize"
"""Instrumentation scope of everything the normalize processor derives; it skips this scope
when the derived data comes back through a pipeline it sits in."""

TOOL_DECISION = "decision"
TOOL_RESULT = "result"


# --- reading attribute values ---------------------------------------------------------------
def to_str(value: Any) -> str | None:
    """A non-empty string, or ``None``: agents send identity keys with no value at all."""
    if type(value) is str:  # nearly always: one test
        return value or None
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, bytes):
        return bytes_text(value) or None
    return json_text(value)


INT64_MAX = 2**63 - 1


def to_int(value: Any) -> int | None:
    """Token counts arrive as ints, doubles or strings ("1200", "1200.0") depending on agent.

    ``None`` for what is no count: not a number, NaN, infinite, or beyond int64 (``"1e30"``).
    """
    if type(value) is int:  # nearly always one of these two tests
        number = value
    elif type(value) is str:
        try:
            number = int(value)  # int() skips surrounding white space itself
        except ValueError:
            parsed = to_float(value)
            if parsed is None:
                return None
            number = int(parsed)
    elif value is None or isinstance(value, bool):
        return None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        number = int(value)
    elif isinstance(value, str):
        return to_int(str(value))
    else:
        return None
    return number if -INT64_MAX <= number <= INT64_MAX else None


def to_float(value: Any) -> float | None:
    """A finite number, or ``None``: NaN and infinities are no duration or price."""
    if type(value) is float:  # nearly always one of these two tests
        number = value
    elif type(value) is str:
        try:
            number = float(value)  # float() skips surrounding white space itself
        except (ValueError, OverflowError):
            return None
    elif value is None or isinstance(value, bool):
        return None
    elif isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        return to_float(str(value))
    else:
        return None
    return number if math.isfinite(number) else None


def to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
    if isinstance(value, int):
        return value != 0
    return None


def json_object(value: Any) -> dict[str, Any] | None:
    """A JSON object from a string attribute (tool arguments), or the dict itself."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str) or not value.startswith("{"):
        return None
    try:  # json.loads without its wrappers: the scanner, then only JSON white space after
        parsed, end = _JSON.raw_decode(value)
    except ValueError:
        return None
    if end != len(value) and value[end:].strip(JSON_WHITESPACE):
        return None
    return parsed if isinstance(parsed, dict) else None


_JSON = json.JSONDecoder()
JSON_WHITESPACE = " \t\n\r"


def first(attrs: Mapping[str, Any], keys: Iterable[str]) -> Any:
    """The first present, non-empty value among ``keys``."""
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def first_text(attrs: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    """The first present, non-empty value among ``keys`` as text (``to_str(first(...))`` in
    one pass: identity lookups run on every record)."""
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value if type(value) is str else to_str(value)
    return None


Converter = Callable[[Any], Any]
AttributeMap = Mapping[str, tuple[str, Converter]]
"""vendor key -> (agentwatch key, converter): the table-driven part of every normaliser."""


Columns = tuple[tuple[str, str, Converter], ...]
"""An ``AttributeMap`` as (vendor key, agentwatch key, converter) rows, ready to read."""


def columns_of(table: AttributeMap) -> Columns:
    return tuple((vendor_key, key, convert) for vendor_key, (key, convert) in table.items())


def read_columns(attrs: Mapping[str, Any], columns: Columns, out: dict[str, Scalar]) -> None:
    """``apply_map`` on ready rows: the per-record loop of every log event."""
    get = attrs.get
    for vendor_key, key, convert in columns:
        value = get(vendor_key)
        if value is None:
            continue
        if convert is to_str and type(value) is str:  # most values: no call
            if value:
                out[key] = value
            continue
        converted = convert(value)
        if converted is not None:
            out[key] = converted


def apply_map(attrs: Mapping[str, Any], table: AttributeMap, out: dict[str, Scalar]) -> None:
    read_columns(attrs, columns_of(table), out)


def event_id(agent: str, session: str | None, *discriminators: object) -> str:
    """Stable idempotency key: the same event delivered twice gets the same id."""
    parts = [agent, session or ""]
    parts.extend("" if d is None else d if type(d) is str else str(d) for d in discriminators)
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def content_key(attrs: Mapping[str, Any]) -> str:
    """Last-resort discriminator when a record has no id, sequence or timestamp at all."""
    return json.dumps(attrs, sort_keys=True, default=str, separators=(",", ":"))


def record_time_key(record: LogRecord, attrs: Mapping[str, Any]) -> str:
    """A per-record discriminator that survives redelivery: the vendor's own timestamps."""
    if record.time_unix_nano:
        return str(record.time_unix_nano)
    if record.observed_time_unix_nano:
        return "o" + str(record.observed_time_unix_nano)
    stamp = to_str(attrs.get("event.timestamp"))
    if stamp:
        return stamp
    return content_key(attrs)


def mcp_servers_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    """The MCP servers a session starts with, from a comma-separated ``mcp_servers``."""
    servers = attrs.get("mcp_servers")
    if isinstance(servers, str):  # "" is a fact too: no MCP servers configured
        out[am.MCP_SERVERS] = ",".join(s.strip() for s in servers.split(",") if s.strip())
    return ()


# --- tool arguments ---------------------------------------------------------------------------
COMMAND_KEYS = ("full_command", "command", "cmd", "bash_command", "commandLine")
FILE_PATH_KEYS = ("file_path", "absolute_path", "filePath", "path", "notebook_path", "target_file")
COMMAND_KEY_SET = frozenset(COMMAND_KEYS)
FILE_PATH_KEY_SET = frozenset(FILE_PATH_KEYS)


def tool_argument_facts(
    arguments: Any, out: dict[str, Scalar], parsed: Mapping[str, Any] | None = None
) -> None:
    """Command, file path and size from a tool's JSON arguments, whatever the agent named them.

    ``parsed``: the arguments' object when the caller has parsed them already.
    """
    if arguments is None:
        return
    text = arguments if isinstance(arguments, str) else to_str(arguments) or ""
    if text and text not in PLACEHOLDERS:
        out.setdefault(am.TOOL_ARGUMENTS, text)
        out.setdefault(am.TOOL_ARGUMENTS_SIZE, len(text) if text.isascii() else len(text.encode()))
    if parsed is None:
        parsed = json_object(arguments)
        if parsed is None:
            return
    # Arguments have a key or two: a set test in C skips most of the name lists.
    command = None if COMMAND_KEY_SET.isdisjoint(parsed) else first(parsed, COMMAND_KEYS)
    if isinstance(command, list):
        command = " ".join(str(part) for part in command)
    if isinstance(command, str) and command:
        out.setdefault(am.COMMAND, command)
    path = None if FILE_PATH_KEY_SET.isdisjoint(parsed) else first(parsed, FILE_PATH_KEYS)
    if isinstance(path, str) and path:
        out.setdefault(am.FILE_PATH, path)


# --- content: what redaction removes ---------------------------------------------------------
class ContentClass(enum.StrEnum):
    """What a value reveals; redaction keeps it only when the config allows its classes."""

    PROMPTS = "prompts"
    RESPONSES = "responses"
    TOOL_OUTPUT = "tool_output"
    TOOL_ARGUMENTS = "tool_arguments"


ALL_CONTENT = frozenset(ContentClass)
"""A whole request or conversation history carries every class."""


@dataclass(frozen=True, slots=True)
class ContentKey:
    """An attribute (or body) that carries content; kept only if every class in it is allowed."""

    key: str
    classes: frozenset[ContentClass]
    events: frozenset[str] = frozenset()
    """Event names this applies to; empty means every event."""
    length_key: str | None = None
    """Where the removed value's size goes (default ``<key>.length``); set only if absent."""
    size_in_bytes: bool = False

    @classmethod
    def of(
        cls,
        key: str,
        *classes: ContentClass,
        events: Iterable[str] = (),
        length_key: str | None = None,
        size_in_bytes: bool = False,
    ) -> ContentKey:
        return cls(key, frozenset(classes), frozenset(events), length_key, size_in_bytes)


# --- the vendor interface ---------------------------------------------------------------------
@dataclass(slots=True)
class DurationSample:
    """One observation for ``gen_ai.client.operation.duration``."""

    seconds: float
    model: str | None
    error_type: str | None = None


@dataclass(slots=True)
class Result:
    """What a normaliser decided about one record."""

    attributes: dict[str, Scalar] = field(default_factory=dict)
    drop_reason: str | None = None
    duration_sample: DurationSample | None = None


@dataclass(slots=True)
class UsageTotals:
    """Token, cost and code-change sums a vendor reported as metrics, in vendor terms."""

    values: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, amount: float) -> None:
        if math.isfinite(amount):  # a NaN or infinite point is no usage; it stays raw
            self.values[name] = self.values.get(name, 0.0) + amount


@dataclass(frozen=True, slots=True)
class MetricUsageRule:
    """How one vendor metric feeds derived ``api_usage`` / ``code_change`` records.

    ``by_type`` maps the point's ``type`` attribute to a vendor class name; ``name`` is used
    when the metric has no type split.
    """

    kind: str  # "usage" or "code_change"
    by_type: Mapping[str, str] | None = None
    name: str | None = None


Facts = Callable[[Attrs, dict[str, Scalar]], tuple[object, ...] | None]
"""A vendor's quirks for one event, after its attribute map: adds keys to ``out`` and returns
the event's extra id discriminators, or ``None`` when the record is no event after all."""


@dataclass(frozen=True, slots=True)
class LogEvent:
    """How one named log event becomes an agent event: the table row of ``log_event``.

    The event id is made of ``tag``, what ``facts`` returns, and last the value of ``id_key``
    in the result (a request or tool call id) or, without one, ``fallback`` of the record's
    time key (the time key itself by default).
    """

    event: EventType
    attributes: AttributeMap = field(default_factory=dict)
    facts: Facts | None = None
    phase: str | None = None
    """``agentwatch.tool.phase`` of a tool event (decision or result)."""
    tag: tuple[str, ...] = ()
    id_key: str | None = None
    fallback: Callable[[Attrs, str], str] | None = None
    columns: Columns = field(init=False)
    event_name: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", columns_of(self.attributes))
        object.__setattr__(self, "event_name", self.event.value)

    @classmethod
    def tool(
        cls,
        phase: str,
        attributes: AttributeMap,
        facts: Facts,
        fallback: Callable[[Attrs, str], str] | None = None,
    ) -> LogEvent:
        """A tool call's decision or result, named by its phase and call id."""
        return cls(
            EventType.TOOL_CALL, attributes, facts, phase, (phase,), am.TOOL_CALL_ID, fallback
        )


Chooser = Callable[[Attrs], LogEvent | Result | None]
"""For an event name that means different events by its attributes: the row that applies, or
the ``Result`` (a drop, a duration sample) or ``None`` to return as it is."""


class Vendor:
    """One agent's dialect. Subclasses fill the tables and override the hooks they need."""

    agent: ClassVar[Agent]
    service_names: ClassVar[frozenset[str]] = frozenset()
    service_prefixes: ClassVar[tuple[str, ...]] = ()
    scope_names: ClassVar[frozenset[str]] = frozenset()
    """Instrumentation scopes that are this agent's whatever ``service.name`` says (a user may
    rename the service with ``OTEL_SERVICE_NAME``)."""
    provider: ClassVar[str] = ""
    """``agentwatch.provider`` and ``gen_ai.provider.name`` unless a record says otherwise."""
    genai_operation: ClassVar[str] = "chat"
    derives_genai_metrics: ClassVar[bool] = False
    """True when the agent does not emit ``gen_ai.client.*`` metrics itself."""
    delta_metrics: ClassVar[Mapping[str, str]] = {}
    """The agent's delta metrics the Prometheus exporter counts itself -> the fact each carries
    (``lines``, split by the point's ``type`` added/removed, ``commits``, ``pull_requests``,
    ``active_time``): facts the agent reports only as metrics."""
    compat_metric_names: ClassVar[Mapping[str, str]] = {}
    """Derived fact -> the agent's own Prometheus metric name, as community dashboards query
    it; the Prometheus exporter's compatibility option exposes these."""
    compat_token_types: ClassVar[Mapping[str, str]] = {}
    """The agent's own token ``type`` label values -> agentwatch token keys, in that order."""
    compat_edit_tools: ClassVar[frozenset[str]] = frozenset()
    """Tools whose permission decisions the agent's own metrics count as code edits."""
    identity_keys: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """agentwatch identity key -> vendor keys, looked up on the record, then the resource."""
    version_keys: ClassVar[tuple[str, ...]] = ("service.version",)
    metric_rules: ClassVar[Mapping[str, MetricUsageRule]] = {}
    content_keys: ClassVar[tuple[ContentKey, ...]] = ()
    """The agent's own keys that carry content (the GenAI conventions' are redaction's)."""
    redacted_placeholder: ClassVar[str | None] = None
    """What the agent sends in place of content it was told not to log: no content, no size."""
    log_events: ClassVar[Mapping[str, LogEvent | Chooser]] = {}
    """Log event name -> how it becomes an agent event; other names are context only."""
    body_prefix: ClassVar[str] = ""
    """A record without ``event.name`` is named by its body, less this prefix (which a body
    must then start with)."""
    session_keys: ClassVar[tuple[str, ...]] = ("session.id",)
    """Where a log event's session is, on the record; then ``resource_session_key``."""
    resource_session_key: ClassVar[str | None] = "session.id"

    def __init__(self) -> None:
        self.agent_name: str = self.agent.value
        """``agent.value`` as plain text, read on every record."""
        self._identity_rows = tuple(
            (key, vendor_keys[0], vendor_keys[1:])
            for key, vendor_keys in self.identity_keys.items()
            if vendor_keys
        )

    def resource_identity(self, resource: Attrs) -> dict[str, str]:
        """The identity a resource carries, looked up once for all its records."""
        out: dict[str, str] = {}
        for key, vendor_keys in self.identity_keys.items():
            value = first_text(resource, vendor_keys)
            if value is not None:
                out[key] = value
        version = first_text(resource, self.version_keys)
        if version is not None:
            out[am.AGENT_VERSION] = version
        return out

    def identity(self, resource_identity: Mapping[str, str], attrs: Attrs) -> dict[str, Scalar]:
        """Who and which session: the record's own keys first, then its resource's."""
        out: dict[str, Scalar] = {am.AGENT: self.agent_name}
        get = attrs.get
        for key, vendor_key, more_keys in self._identity_rows:  # first_text, inlined
            value = get(vendor_key)
            if value is None or value == "":
                value = first(attrs, more_keys) if more_keys else None
            if value is not None and type(value) is not str:
                value = to_str(value)
            if value is None:
                value = resource_identity.get(key)
            if value is not None:
                out[key] = value
        version = first_text(attrs, self.version_keys) or resource_identity.get(am.AGENT_VERSION)
        if version is not None:
            out[am.AGENT_VERSION] = version
        return out

    def log_event(self, resource: Attrs, attrs: Attrs, record: LogRecord) -> Result | None:
        """The agent event this log record is, ``None`` when it is context only."""
        name = attrs.get("event.name")
        if not isinstance(name, str) or not name:
            body = record.body
            name = to_str(name) or self._body_name(body if type(body) is str else "")
        row = self.log_events.get(name) if name else None
        if row is None:
            return None
        if not isinstance(row, LogEvent):
            chosen = row(attrs)
            if not isinstance(chosen, LogEvent):
                return chosen
            row = chosen
        out: dict[str, Scalar] = {}
        read_columns(attrs, row.columns, out)
        extra = row.facts(attrs, out) if row.facts is not None else ()
        if extra is None:
            return None
        if row.phase is not None:
            out[TOOL_PHASE] = row.phase
        known = out.get(row.id_key) if row.id_key is not None else None
        if not known:
            when = self.record_key(record, attrs)
            known = when if row.fallback is None else row.fallback(attrs, when)
        session = first_text(attrs, self.session_keys)
        if session is None and self.resource_session_key is not None:
            session = to_str(resource.get(self.resource_session_key))
        return self.finish(out, row.event_name, session, *row.tag, *extra, known)

    def _body_name(self, body: str) -> str | None:
        if not self.body_prefix:
            return body or None
        return body.removeprefix(self.body_prefix) if body.startswith(self.body_prefix) else None

    def record_key(self, record: LogRecord, attrs: Attrs) -> str:
        """A log record's discriminator among its session's events (see ``record_time_key``)."""
        return record_time_key(record, attrs)

    def span_event(
        self, resource: Attrs, attrs: Attrs, span: Span, batch: SpanBatch
    ) -> Result | None:
        return None

    def provider_for(self, model: str | None) -> str:
        return self.provider

    def usage_record(self, totals: UsageTotals) -> dict[str, Scalar]:
        """Uniform token classes from summed metric points (vendor classes -> agentwatch keys)."""
        return {}

    # helpers for subclasses
    def finish(
        self,
        out: dict[str, Scalar],
        event: EventType | str,
        session: str | None,
        *discriminators: object,
    ) -> Result:
        name = str(event)
        out[am.EVENT] = name
        out[am.EVENT_ID] = event_id(self.agent_name, session, name, *discriminators)
        return Result(out)


@dataclass(slots=True)
class SpanBatch:
    """Facts gathered from all spans of one request before normalising any of them.

    Copilot puts ``gen_ai.conversation.id`` on ``chat`` and ``invoke_agent`` spans but not on
    every ``execute_tool`` span; spans of one trace usually travel together, so a tool span
    borrows the conversation of its trace.
    """

    conversation_by_trace: dict[bytes, str] = field(default_factory=dict)
    user_by_trace: dict[bytes, str] = field(default_factory=dict)
    """The user id one span of a trace carries (Copilot: only its ``invoke_agent`` span)."""


def ensure_token_classes(out: dict[str, Scalar]) -> None:
    """Every api_call carries all four billed classes, so sums need no NULLs.

    Reasoning is left out when the agent does not report it: unknown is not zero.
    """
    for key in am.TOKEN_KEYS:
        out.setdefault(key, 0)


def non_negative(value: int) -> int:
    return value if value > 0 else 0


_REGISTRY: list[Vendor] = []


def register(vendor: Vendor) -> Vendor:
    _REGISTRY.append(vendor)
    return vendor


def all_vendors() -> list[Vendor]:
    return list(_REGISTRY)


def vendor_for(service_name: str, overrides: Mapping[str, str] | None = None) -> Vendor | None:
    """The normaliser of a ``service.name``: exact names first, then prefixes, then overrides."""
    if overrides and service_name in overrides:
        wanted = overrides[service_name]
        return next((v for v in _REGISTRY if v.agent_name == wanted), None)
    for vendor in _REGISTRY:
        if service_name in vendor.service_names:
            return vendor
    for vendor in _REGISTRY:
        if vendor.service_prefixes and service_name.startswith(vendor.service_prefixes):
            return vendor
    return None


def vendor_for_scope(scope_names: Iterable[str]) -> Vendor | None:
    """The normaliser owning one of these instrumentation scopes, for a service name no
    vendor claims."""
    names = set(scope_names)
    for vendor in _REGISTRY:
        if vendor.scope_names & names:
            return vendor
    return None


# The built-in vendors register themselves when imported. Importing them here, at the end of
# the package, means nothing can use the registry before it is complete: Python's import lock
# makes a concurrent importer wait for the whole package (a lazy first-use load let requests
# racing the first one see an empty registry and store agent events as unknown services).
from processors.vendors import claude_code, codex, copilot, gemini_cli  # noqa: E402, F401

PLACEHOLDERS = frozenset(v.redacted_placeholder for v in _REGISTRY if v.redacted_placeholder)
"""Every agent's placeholder for content it did not send."""
