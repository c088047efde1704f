"""Security detections: rules over normalised agent events, each match a new log record.

The processor sits before redaction, so rules see the command lines and paths an agent ran;
what a detection stores as evidence is scrubbed of secrets and truncated first. Detections are
ordinary OTLP log records (scope ``agentwatch.detections``, ``event.name=agentwatch.detection``)
appended to the batch, so every exporter stores or forwards them like any event.

Rules are YAML data (``rules/default.yaml``; format in docs/detections.md). ``test_rules`` runs a
rule file against sample events for ``agentwatch rules test``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ScopeLogs, SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from pydantic import Field

from collector import agent_model as am
from collector import telemetry
from collector.component import (
    ComponentConfig,
    ConfigContext,
    Factory,
    LogsData,
    Processor,
    TracesData,
)
from collector.otlp_values import text as value_text
from processors.secrets import PatternFileError, SecretScrubber, truncate

DEFAULT_RULES_FILE = Path(__file__).with_name("rules") / "default.yaml"
SCOPE_NAME = "agentwatch.detections"
EVENT_NAME = "agentwatch.detection"
SOURCE_EVENT_ID = am.SOURCE_EVENT_ID
"""The ``agentwatch.event_id`` of the record a detection was raised on (proposed model key)."""

DETECTIONS = telemetry.counter(
    "agentwatch_detections_raised",
    "Detections a detections processor raised, by rule, severity and agent (the Prometheus "
    "exporter derives its own agentwatch_detections_total from the stored records).",
    ("processor", "rule_id", "severity", "agent"),
)

Severity = Literal["low", "medium", "high", "critical"]
SEVERITY_NUMBERS: dict[str, int] = {
    "low": SeverityNumber.SEVERITY_NUMBER_INFO,
    "medium": SeverityNumber.SEVERITY_NUMBER_WARN,
    "high": SeverityNumber.SEVERITY_NUMBER_ERROR,
    "critical": SeverityNumber.SEVERITY_NUMBER_FATAL,
}

FIELDS: dict[str, str] = {
    "event": am.EVENT,
    "agent": am.AGENT,
    "tool_name": am.TOOL_NAME,
    "command": am.COMMAND,
    "file_path": am.FILE_PATH,
    "mcp_server": am.MCP_SERVER,
    "mcp_servers": am.MCP_SERVERS,
    "decision": am.DECISION,
    "decision_source": am.DECISION_SOURCE,
    "permission_mode": am.PERMISSION_MODE,
    "approval_policy": am.APPROVAL_POLICY,
    "sandbox": am.SANDBOX,
    "tool_arguments": am.TOOL_ARGUMENTS,
    "prompt_text": am.PROMPT_TEXT,
}
"""Rule field name -> the normalised attribute it reads."""
_FIELD_OF_KEY = {key: name for name, key in FIELDS.items()}
_LIST_FIELDS = frozenset({"mcp_servers"})
"""Comma-separated attributes: a condition holds when it holds for some element."""

CONTEXT_KEYS = (
    am.AGENT,
    am.AGENT_VERSION,
    am.SESSION_ID,
    am.PROMPT_ID,
    am.USER_ID,
    am.USER_EMAIL,
    am.USER_ACCOUNT,
    am.ORGANIZATION,
    am.TEAM,
    am.COST_CENTER,
    am.HOST,
    am.TOOL_NAME,
    am.TOOL_CALL_ID,
    am.MCP_SERVER,
)
"""Keys copied from the source record onto its detection (who, where, which call)."""

EVENT_TYPES = frozenset(e.value for e in am.EventType)
OPERATORS = ("equals", "in", "not_in", "regex", "contains", "exists", "in_list", "not_in_list")
RULE_KEYS = frozenset(
    {
        "id",
        "severity",
        "description",
        "events",
        "match",
        "sensitive",
        "when_sensitive",
        "once_per_session",
        "enabled",
        "tags",
    }
)
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,99}")


class RuleFileError(ValueError):
    """A rule file that cannot be used; the message names the file, the rule and the problem."""


# --- the rule model ---------------------------------------------------------------------------

Values = tuple[str, ...]
"""A field's values: one for ordinary fields, several for comma-separated lists, none if absent."""


@dataclass(frozen=True)
class Condition:
    """One field tested with one or more operators (all must hold)."""

    field: str
    tests: tuple[tuple[str, Any], ...]

    def evaluate(self, values: Values, lists: Mapping[str, frozenset[str]]) -> Values | None:
        """The values that satisfy every test (evidence), or ``None`` when the condition fails."""
        hits: Values = values
        for op, arg in self.tests:
            if op == "exists":
                if bool(values) != arg:
                    return None
                continue
            hits = tuple(v for v in hits if _test(op, arg, v, lists))
            if not hits:
                return None
        return hits


def _test(op: str, arg: Any, value: str, lists: Mapping[str, frozenset[str]]) -> bool:
    if op == "regex":
        return arg.search(value) is not None
    low = value.strip().lower()
    if op == "equals":
        return bool(low == arg)
    if op == "in":
        return low in arg
    if op == "not_in":
        return low not in arg
    if op == "contains":
        return arg in low
    if op == "in_list":
        return low in lists[arg]
    if op == "not_in_list":
        return low not in lists[arg]
    raise AssertionError(op)  # pragma: no cover


@dataclass(frozen=True)
class Node:
    """``all`` / ``any`` / ``not`` over children, or a single field condition."""

    kind: Literal["all", "any", "not", "field"]
    children: tuple[Node, ...] = ()
    condition: Condition | None = None

    def evaluate(
        self, fields: Mapping[str, Values], lists: Mapping[str, frozenset[str]]
    ) -> list[tuple[str, Values]] | None:
        """Evidence (field, matching values) when the node holds, else ``None``."""
        if self.kind == "field":
            assert self.condition is not None
            hits = self.condition.evaluate(fields.get(self.condition.field, ()), lists)
            return None if hits is None else ([(self.condition.field, hits)] if hits else [])
        if self.kind == "not":
            return [] if self.children[0].evaluate(fields, lists) is None else None
        if self.kind == "any":  # every branch that holds adds its evidence
            results = [child.evaluate(fields, lists) for child in self.children]
            held = [r for r in results if r is not None]
            return [e for r in held for e in r] if held else None
        evidence: list[tuple[str, Values]] = []
        for child in self.children:
            found = child.evaluate(fields, lists)
            if found is None:
                return None
            evidence.extend(found)
        return evidence

    def list_names(self) -> set[str]:
        names: set[str] = set()
        if self.condition is not None:
            names.update(arg for op, arg in self.condition.tests if op.endswith("in_list"))
        for child in self.children:
            names.update(child.list_names())
        return names


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    description: str
    match: Node
    events: frozenset[str] = frozenset({am.EventType.TOOL_CALL.value})
    sensitive: bool = False
    when_sensitive: bool = False
    once_per_session: bool = False
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Match:
    rule: Rule
    evidence: list[tuple[str, Values]]


@dataclass
class RuleSet:
    rules: list[Rule]
    lists: dict[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.event_types = frozenset(e for r in self.rules for e in r.events)
        self._plain = [r for r in self.rules if not r.when_sensitive]
        self._escalations = [r for r in self.rules if r.when_sensitive]

    def evaluate(self, fields: Mapping[str, Values]) -> list[Match]:
        event = fields.get("event", ("",))[0]
        matches: list[Match] = []
        for rule in self._plain:
            if event in rule.events:
                evidence = rule.match.evaluate(fields, self.lists)
                if evidence is not None:
                    matches.append(Match(rule, evidence))
        sensitive = [m.rule.id for m in matches if m.rule.sensitive]
        if sensitive:
            for rule in self._escalations:
                if event in rule.events:
                    evidence = rule.match.evaluate(fields, self.lists)
                    if evidence is not None:
                        matches.append(
                            Match(rule, [("sensitive_rules", tuple(sensitive)), *evidence])
                        )
        return matches

    def check_lists(self) -> list[str]:
        """Rules that name a list nobody defined."""
        problems = []
        for index, rule in enumerate(self.rules, start=1):
            for name in sorted(rule.match.list_names() - set(self.lists)):
                problems.append(f"rule {index} (id {rule.id!r}): list {name!r} is not defined")
        return problems


# --- loading ------------------------------------------------------------------------------------


def load_rules(path: str | Path) -> tuple[list[Rule], dict[str, frozenset[str]]]:
    """Parse one rule file; ``RuleFileError`` names the file, the rule and what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise RuleFileError(f"{path}: cannot read: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise RuleFileError(f"{path}: not valid YAML: {e}") from e
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise RuleFileError(f"{path}: expected a mapping with 'rules' (and optional 'lists')")
    unknown = sorted(set(doc) - {"rules", "lists"})
    if unknown:
        raise RuleFileError(f"{path}: unknown top-level key {unknown[0]!r}")
    raw_lists = doc.get("lists") or {}
    if not isinstance(raw_lists, dict):
        raise RuleFileError(f"{path}: 'lists' must map names to lists of strings")
    lists = {}
    for name, items in raw_lists.items():
        if not isinstance(items, list) or not all(isinstance(i, str | int) for i in items):
            raise RuleFileError(f"{path}: list {name!r} must be a list of strings")
        lists[str(name)] = frozenset(str(i).strip().lower() for i in items)
    raw_rules = doc.get("rules") or []
    if not isinstance(raw_rules, list):
        raise RuleFileError(f"{path}: 'rules' must be a list")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules, start=1):
        rule = _parse_rule(raw, f"{path}: rule {index}")
        if rule.id in seen:
            raise RuleFileError(f"{path}: rule {index} (id {rule.id!r}): duplicate id")
        seen.add(rule.id)
        rules.append(rule)
    return rules, lists


def _parse_rule(raw: object, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise RuleFileError(f"{where}: expected a mapping")
    if isinstance(raw.get("id"), str):
        where += f" (id {raw['id']!r})"
    unknown = sorted(set(raw) - RULE_KEYS)
    if unknown:
        raise RuleFileError(f"{where}: unknown rule key {unknown[0]!r}")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
        raise RuleFileError(f"{where}: 'id' must be lower-case letters, digits, '-', '_', '.'")
    severity = raw.get("severity")
    if severity not in SEVERITY_NUMBERS:
        raise RuleFileError(f"{where}: 'severity' must be one of low, medium, high, critical")
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise RuleFileError(f"{where}: 'description' is required")
    events = raw.get("events", [am.EventType.TOOL_CALL.value])
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list) or not events:
        raise RuleFileError(f"{where}: 'events' must be a list of event types")
    for event in events:
        if event not in EVENT_TYPES:
            raise RuleFileError(f"{where}: unknown event type {event!r}")
    flags = {}
    for flag in ("sensitive", "when_sensitive", "once_per_session", "enabled"):
        value = raw.get(flag, flag == "enabled")
        if not isinstance(value, bool):
            raise RuleFileError(f"{where}: {flag!r} must be true or false")
        flags[flag] = value
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RuleFileError(f"{where}: 'tags' must be a list of strings")
    if "match" not in raw:
        raise RuleFileError(f"{where}: 'match' is required")
    node = _parse_node(raw["match"], where)
    rule = Rule(
        id=rule_id,
        severity=severity,
        description=" ".join(description.split()),
        match=node,
        events=frozenset(events),
        sensitive=flags["sensitive"],
        when_sensitive=flags["when_sensitive"],
        once_per_session=flags["once_per_session"],
        tags=tuple(tags),
    )
    return rule if flags["enabled"] else _disabled(rule)


def _disabled(rule: Rule) -> Rule:
    """A disabled rule matches nothing (kept so its id stays reserved and validated)."""
    return Rule(rule.id, rule.severity, rule.description, Node("any"), frozenset(), tags=rule.tags)


def _parse_node(raw: object, where: str) -> Node:
    if not isinstance(raw, dict) or not raw:
        raise RuleFileError(f"{where}: a match must be a non-empty mapping")
    parts: list[Node] = []
    for key, value in raw.items():
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise RuleFileError(f"{where}: {key!r} must be a non-empty list of matches")
            parts.append(Node(key, tuple(_parse_node(v, where) for v in value)))
        elif key == "not":
            parts.append(Node("not", (_parse_node(value, where),)))
        elif key in FIELDS:
            parts.append(Node("field", condition=_parse_condition(key, value, where)))
        else:
            raise RuleFileError(f"{where}: unknown match field {key!r}")
    return parts[0] if len(parts) == 1 else Node("all", tuple(parts))


def _parse_condition(name: str, raw: object, where: str) -> Condition:
    if isinstance(raw, str | int | bool):
        raw = {"equals": raw}
    elif isinstance(raw, list):
        raw = {"in": raw}
    if not isinstance(raw, dict) or not raw:
        raise RuleFileError(f"{where}: field {name!r}: expected a value, a list or operators")
    tests: list[tuple[str, Any]] = []
    for op, arg in raw.items():
        if op not in OPERATORS:
            raise RuleFileError(
                f"{where}: field {name!r}: unknown operator {op!r} (use {', '.join(OPERATORS)})"
            )
        tests.append((op, _parse_argument(name, op, arg, where)))
    return Condition(name, tuple(tests))


def _parse_argument(name: str, op: str, arg: object, where: str) -> Any:
    if op == "regex":
        if not isinstance(arg, str) or not arg:
            raise RuleFileError(f"{where}: field {name!r}: regex must be non-empty text")
        try:
            return re.compile(arg)
        except re.error as e:
            raise RuleFileError(f"{where}: field {name!r}: invalid regex: {e}") from e
    if op == "exists":
        if not isinstance(arg, bool):
            raise RuleFileError(f"{where}: field {name!r}: exists must be true or false")
        return arg
    if op in ("in", "not_in"):
        if not isinstance(arg, list) or not all(isinstance(a, str | int) for a in arg):
            raise RuleFileError(f"{where}: field {name!r}: {op} must be a list of values")
        return frozenset(str(a).strip().lower() for a in arg)
    if op in ("in_list", "not_in_list"):
        if not isinstance(arg, str) or not arg:
            raise RuleFileError(f"{where}: field {name!r}: {op} must name a list")
        return arg
    if not isinstance(arg, str | int) or isinstance(arg, bool):
        raise RuleFileError(f"{where}: field {name!r}: {op} must be a value")
    return str(arg).strip().lower()


def build_rule_set(
    rule_files: Sequence[str | Path],
    lists: Mapping[str, Sequence[str]] | None = None,
    disabled: Iterable[str] = (),
) -> RuleSet:
    """Rules of every file in order (ids unique across files); config ``lists`` win."""
    rules: list[Rule] = []
    merged: dict[str, frozenset[str]] = {}
    owner: dict[str, str] = {}
    for path in rule_files:
        file_rules, file_lists = load_rules(path)
        for rule in file_rules:
            if rule.id in owner:
                raise RuleFileError(
                    f"{path}: rule id {rule.id!r} is already defined in {owner[rule.id]}"
                )
            owner[rule.id] = str(path)
        rules.extend(file_rules)
        merged.update(file_lists)
    for name, items in (lists or {}).items():
        merged[name] = frozenset(str(i).strip().lower() for i in items)
    off = set(disabled)
    rule_set = RuleSet([r for r in rules if r.id not in off], merged)
    problems = rule_set.check_lists()
    if problems:
        raise RuleFileError(f"{rule_files[-1] if rule_files else 'rules'}: {problems[0]}")
    return rule_set


# --- reading records ----------------------------------------------------------------------------


def record_fields(attributes: Iterable[Any]) -> tuple[dict[str, Values], dict[str, str]]:
    """Rule fields and context keys of one record's attributes, in one pass."""
    fields: dict[str, Values] = {}
    context: dict[str, str] = {}
    roles = _KEY_ROLES
    for kv in attributes:
        key = kv.key
        role = roles.get(key)
        if role is None:  # most attributes: one dict look-up and on
            continue
        text = value_text(kv.value)
        if not text:
            continue
        name, is_context = role
        if is_context:
            context[key] = text
        if name is not None:
            if name in _LIST_FIELDS:
                fields[name] = tuple(p.strip() for p in text.split(",") if p.strip())
            else:
                fields[name] = (text,)
    return fields, context


_CONTEXT_SET = frozenset(CONTEXT_KEYS)
_KEY_ROLES: dict[str, tuple[str | None, bool]] = {
    key: (_FIELD_OF_KEY.get(key), key in _CONTEXT_SET or key == am.EVENT_ID)
    for key in (*_FIELD_OF_KEY, *_CONTEXT_SET, am.EVENT_ID)
}
"""Attribute key -> (rule field or None, context key?) for every key ``record_fields`` reads."""


# --- the processor ------------------------------------------------------------------------------


class DetectionsConfig(ComponentConfig):
    rules_file: str | None = Field(
        default=None, description="Your rule file, loaded after the default rules."
    )
    default_rules: bool = Field(default=True, description="Load the built-in rule set.")
    disabled_rules: list[str] = Field(default_factory=list, description="Rule ids to switch off.")
    lists: dict[str, list[str]] = Field(
        default_factory=dict, description="Named lists (e.g. mcp_allowlist); replace the files'."
    )
    evidence_max_chars: int = Field(default=512, ge=0)
    extra_patterns_file: str | None = Field(
        default=None, description="More secret patterns for scrubbing evidence."
    )

    def rule_files(self, base_dir: str = "") -> list[str]:
        files = [str(DEFAULT_RULES_FILE)] if self.default_rules else []
        if self.rules_file:
            files.append(_resolve(self.rules_file, base_dir))
        return files

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        errors: list[str] = []
        try:
            build_rule_set(self.rule_files(ctx.base_dir), self.lists, self.disabled_rules)
        except RuleFileError as e:
            errors.append(f"{path}.rules_file: {e}")
        if self.extra_patterns_file:
            try:
                SecretScrubber.from_files([_resolve(self.extra_patterns_file, ctx.base_dir)])
            except PatternFileError as e:
                errors.append(f"{path}.extra_patterns_file: {e}")
        return errors


def _resolve(path: str, base_dir: str) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() or not base_dir else Path(base_dir) / p)


@dataclass(frozen=True)
class _Origin:
    """When and in which trace the evaluated record happened."""

    time_unix_nano: int
    observed_time_unix_nano: int
    trace_id: bytes
    span_id: bytes

    @staticmethod
    def of_log(lr: LogRecord) -> _Origin:
        when = lr.time_unix_nano or lr.observed_time_unix_nano
        return _Origin(when, lr.observed_time_unix_nano, lr.trace_id, lr.span_id)

    @staticmethod
    def of_span(span: Span) -> _Origin:
        when = span.end_time_unix_nano or span.start_time_unix_nano
        return _Origin(when, when, span.trace_id, span.span_id)


class DetectionsProcessor(Processor):
    def __init__(self, name: str, config: DetectionsConfig) -> None:
        super().__init__(name, config)
        self.cfg = config
        self.rules = build_rule_set(config.rule_files(), config.lists, config.disabled_rules)
        extra = [config.extra_patterns_file] if config.extra_patterns_file else []
        self.scrubber = SecretScrubber.from_files(extra)
        self.emit_logs: Callable[[LogsData], object] | None = None
        """Set by the service: where detections raised on spans go (the logs pipelines)."""

    def consume_logs(self, data: LogsData) -> LogsData | None:
        if not self.rules.rules:
            return data
        raised: set[str] = set()
        for rl in data.resource_logs:
            found: list[LogRecord] = []
            present: set[str] = set()
            for sl in rl.scope_logs:
                if sl.scope.name == SCOPE_NAME:  # detections already made upstream
                    present.update(_event_ids(sl.log_records))
                    continue
                for lr in sl.log_records:
                    found.extend(self._detect(lr.attributes, _Origin.of_log(lr), raised))
            if present:
                found = [r for r in found if _event_ids([r])[0] not in present]
            if found:
                self._count(found)
                scope: ScopeLogs = rl.scope_logs.add()
                scope.scope.name = SCOPE_NAME
                scope.log_records.extend(found)
        return data

    def consume_traces(self, data: TracesData) -> TracesData | None:
        """Spans that carry agent events (Copilot) raise detections as log records, which can
        only leave through ``emit_logs``; unwired, spans are not evaluated."""
        if not self.rules.rules or self.emit_logs is None:
            return data
        out = LogsData()
        raised: set[str] = set()
        for rs in data.resource_spans:
            found: list[LogRecord] = []
            for ss in rs.scope_spans:
                for span in ss.spans:
                    found.extend(self._detect(span.attributes, _Origin.of_span(span), raised))
            if found:
                self._count(found)
                rl = out.resource_logs.add()
                rl.resource.CopyFrom(rs.resource)
                scope = rl.scope_logs.add()
                scope.scope.name = SCOPE_NAME
                scope.log_records.extend(found)
        if out.resource_logs:
            self.emit_logs(out)
        return data

    def _count(self, records: list[LogRecord]) -> None:
        for record in records:
            DETECTIONS.labels(self.name, *_labels(record)).inc()

    def _detect(
        self, attributes: Iterable[Any], origin: _Origin, raised: set[str]
    ) -> list[LogRecord]:
        """Detections of one record; ``raised`` holds the ids already raised in this batch.

        Nothing is remembered across batches: a batch may still be refused after this
        processor ran (a later processor failing), and its retry must raise the same
        detections again. Ids are stable, so the stores de-duplicate what repeats.
        """
        fields, context = record_fields(attributes)
        if fields.get("event", ("",))[0] not in self.rules.event_types:
            return []
        out = []
        for match in self.rules.evaluate(fields):
            event_id = detection_event_id(match, context)
            if event_id in raised:
                continue
            raised.add(event_id)
            out.append(self._record(match, origin, context, event_id))
        return out

    def _record(
        self, match: Match, origin: _Origin, context: Mapping[str, str], event_id: str
    ) -> LogRecord:
        rule = match.rule
        record = LogRecord(
            time_unix_nano=origin.time_unix_nano,
            observed_time_unix_nano=origin.observed_time_unix_nano,
            severity_number=SEVERITY_NUMBERS[rule.severity],  # type: ignore[arg-type]
            severity_text=rule.severity.upper(),
            trace_id=origin.trace_id,
            span_id=origin.span_id,
            event_name=EVENT_NAME,
        )
        record.body.string_value = rule.description
        attrs = {
            "event.name": EVENT_NAME,
            am.EVENT: am.EventType.DETECTION.value,
            am.EVENT_ID: event_id,
            am.RULE_ID: rule.id,
            am.SEVERITY: rule.severity,
            am.EVIDENCE: render_evidence(match, self.scrubber, self.cfg.evidence_max_chars),
        }
        if am.EVENT_ID in context:
            attrs[SOURCE_EVENT_ID] = context[am.EVENT_ID]
        for key in CONTEXT_KEYS:
            if key in context:
                attrs.setdefault(key, context[key])
        for key, value in attrs.items():
            record.attributes.add(key=key).value.string_value = value
        return record


def _labels(record: LogRecord) -> tuple[str, str, str]:
    """rule id, severity, agent of a detection record, for the counter."""
    attrs = {kv.key: kv.value.string_value for kv in record.attributes}
    return attrs[am.RULE_ID], attrs[am.SEVERITY], attrs.get(am.AGENT, "unknown")


def _event_ids(records: Iterable[LogRecord]) -> list[str]:
    return [kv.value.string_value for r in records for kv in r.attributes if kv.key == am.EVENT_ID]


def render_evidence(match: Match, scrubber: SecretScrubber, limit: int) -> str:
    """``field=value; ...`` of what matched, secrets scrubbed, then truncated."""
    parts = [f"{name}={','.join(values)}" for name, values in match.evidence if values]
    text = scrubber.scrub_text("; ".join(parts))
    return truncate(text, limit)[0]


def detection_event_id(match: Match, context: Mapping[str, str]) -> str:
    """Stable id: the same rule on the same source (tool call, event, or session for
    once-per-session rules) always gives the same id, across retries and restarts."""
    session = context.get(am.SESSION_ID, "")
    if match.rule.once_per_session:
        values = sorted(v for _, vs in match.evidence for v in vs)
        source = "\x1f".join(["session", session, *values])
    elif am.TOOL_CALL_ID in context:
        source = "\x1f".join(["tool_call", session, context[am.TOOL_CALL_ID]])
    elif am.EVENT_ID in context:
        source = "\x1f".join(["event", context[am.EVENT_ID]])
    else:
        source = "\x1f".join(["evidence", session, *(f"{k}={v}" for k, v in _flat(match))])
    digest = hashlib.sha256(f"{match.rule.id}\x1e{source}".encode()).hexdigest()
    return digest[:32]


def _flat(match: Match) -> list[tuple[str, str]]:
    return [(name, v) for name, values in match.evidence for v in values]


def _create(name: str, cfg: DetectionsConfig) -> DetectionsProcessor:
    return DetectionsProcessor(name, cfg)


FACTORY = Factory(
    type_name="detections",
    kind="processor",
    config_class=DetectionsConfig,
    create=_create,
)


# --- agentwatch rules test ----------------------------------------------------------------------


@dataclass
class EventResult:
    line: int
    matched: list[tuple[str, str, str]]
    """(rule id, severity, evidence)"""
    expected: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.expected is None or sorted(self.expected) == sorted(
            r for r, _, _ in self.matched
        )


@dataclass
class RulesTestReport:
    rule_file: str
    events_file: str
    rules: int
    results: list[EventResult]

    @property
    def failures(self) -> list[EventResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failures

    def format(self) -> str:
        lines = [
            f"{self.rules} rules from {self.rule_file}; {len(self.results)} events from "
            f"{self.events_file}"
        ]
        for r in self.results:
            if not r.matched:
                lines.append(f"line {r.line}: no match")
            for rule_id, severity, evidence in r.matched:
                lines.append(f"line {r.line}: {rule_id} [{severity}] {evidence}")
            if not r.ok:
                got = sorted(rule for rule, _, _ in r.matched)
                lines.append(f"line {r.line}: FAIL expected {sorted(r.expected or [])}, got {got}")
        matched = sum(1 for r in self.results if r.matched)
        total = sum(len(r.matched) for r in self.results)
        checked = sum(1 for r in self.results if r.expected is not None)
        lines.append(
            f"{total} matches on {matched} of {len(self.results)} events; "
            f"{checked} expectations checked, {len(self.failures)} failed"
        )
        return "\n".join(lines)


EXPECT_KEY = "_expect"


def test_rules(
    rule_file: str | Path,
    events_file: str | Path,
    lists: Mapping[str, Sequence[str]] | None = None,
) -> RulesTestReport:
    """Run one rule file over sample events (JSON lines, see docs/detections.md).

    Each line is an object of attributes: full keys (``agentwatch.command``) or rule field names
    (``command``); ``"_expect": [rule ids]`` makes the line a check. Blank lines and lines
    starting with ``#`` are skipped. Rules are not deduplicated here: every match is shown.
    """
    rule_set = build_rule_set([rule_file], lists)
    scrubber = SecretScrubber()
    results: list[EventResult] = []
    with open(events_file, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                event = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{events_file}:{number}: not valid JSON: {e.msg}") from e
            if not isinstance(event, dict):
                raise ValueError(f"{events_file}:{number}: expected a JSON object")
            expected = event.pop(EXPECT_KEY, None)
            if expected is not None and not (
                isinstance(expected, list) and all(isinstance(e, str) for e in expected)
            ):
                raise ValueError(f"{events_file}:{number}: {EXPECT_KEY} must be a list of rule ids")
            record = event_record(event)
            fields, _ = record_fields(record.attributes)
            matched: list[tuple[str, str, str]] = [
                (m.rule.id, m.rule.severity, render_evidence(m, scrubber, 512))
                for m in rule_set.evaluate(fields)
            ]
            results.append(EventResult(number, matched, expected))
    return RulesTestReport(str(rule_file), str(events_file), len(rule_set.rules), results)


test_rules.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def event_record(event: Mapping[str, Any]) -> LogRecord:
    """A log record carrying ``event``'s attributes; rule field names become full keys."""
    record = LogRecord()
    for key, value in event.items():
        full = FIELDS.get(key, key)
        kv = record.attributes.add(key=full)
        _set_value(kv.value, value)
    return record


def _set_value(target: AnyValue, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            target.string_value = ",".join(value)
        else:
            for item in value:
                _set_value(target.array_value.values.add(), item)
    elif value is None:
        return
    else:
        target.string_value = str(value) if not isinstance(value, dict) else json.dumps(value)
