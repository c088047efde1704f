"""The ``detections`` processor: rules over normalised agent events, each match a log record.

The processor sits before redaction, so rules see the command lines and paths an agent ran;
what a detection stores as evidence is scrubbed of secrets and truncated first. Detections are
ordinary log records (scope ``agentwatch.detections``, ``event.name=agentwatch.detection``)
appended to the batch, so every exporter stores or forwards them like any event. Matching
itself is ``rules.RuleSet.evaluate``, a pure function of the event's fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ScopeLogs, SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collector import agent_model as am
from collector import telemetry
from collector.component import Factory, LogsData, Processor, TracesData
from collector.otlp_values import any_value
from processors.detections.config import DetectionsConfig
from processors.detections.rules import (
    FIELDS,
    Match,
    attribute_text,
    build_rule_set,
    event_fields,
    render_evidence,
)
from processors.secrets import SecretScrubber

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

SEVERITY_NUMBERS: dict[str, int] = {
    "low": SeverityNumber.SEVERITY_NUMBER_INFO,
    "medium": SeverityNumber.SEVERITY_NUMBER_WARN,
    "high": SeverityNumber.SEVERITY_NUMBER_ERROR,
    "critical": SeverityNumber.SEVERITY_NUMBER_FATAL,
}

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
_READ_KEYS = frozenset((*FIELDS.values(), *CONTEXT_KEYS, am.EVENT_ID))


def context_of(attributes: Mapping[str, Any]) -> dict[str, str]:
    """The source record's identity keys (``CONTEXT_KEYS`` and its event id) as text."""
    context: dict[str, str] = {}
    for key in (*CONTEXT_KEYS, am.EVENT_ID):
        text = attribute_text(attributes.get(key))
        if text:
            context[key] = text
    return context


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
        flat = [f"{name}={v}" for name, values in match.evidence for v in values]
        source = "\x1f".join(["evidence", session, *flat])
    digest = hashlib.sha256(f"{match.rule.id}\x1e{source}".encode()).hexdigest()
    return digest[:32]


def detection_attributes(
    match: Match, context: Mapping[str, str], event_id: str, evidence: str
) -> dict[str, str]:
    """The attributes of the detection record ``match`` raises on a source with ``context``."""
    rule = match.rule
    attributes = {
        "event.name": EVENT_NAME,
        am.EVENT: am.EventType.DETECTION.value,
        am.EVENT_ID: event_id,
        am.RULE_ID: rule.id,
        am.SEVERITY: rule.severity,
        am.EVIDENCE: evidence,
    }
    if am.EVENT_ID in context:
        attributes[SOURCE_EVENT_ID] = context[am.EVENT_ID]
    for key in CONTEXT_KEYS:
        if key in context:
            attributes.setdefault(key, context[key])
    return attributes


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
        self.evidence_max_chars = config.evidence_max_chars
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
        values = {kv.key: any_value(kv.value) for kv in attributes if kv.key in _READ_KEYS}
        if attribute_text(values.get(am.EVENT)) not in self.rules.event_types:
            return []
        matches = self.rules.evaluate(event_fields(values))
        if not matches:
            return []
        context = context_of(values)
        out = []
        for match in matches:
            event_id = detection_event_id(match, context)
            if event_id in raised:
                continue
            raised.add(event_id)
            evidence = render_evidence(match, self.scrubber, self.evidence_max_chars)
            attrs = detection_attributes(match, context, event_id, evidence)
            out.append(self._record(match, origin, attrs))
        return out

    def _record(self, match: Match, origin: _Origin, attributes: dict[str, str]) -> LogRecord:
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
        for key, value in attributes.items():
            record.attributes.add(key=key).value.string_value = value
        return record


def _labels(record: LogRecord) -> tuple[str, str, str]:
    """rule id, severity, agent of a detection record, for the counter."""
    attrs = {kv.key: kv.value.string_value for kv in record.attributes}
    return attrs[am.RULE_ID], attrs[am.SEVERITY], attrs.get(am.AGENT, "unknown")


def _event_ids(records: Iterable[LogRecord]) -> list[str]:
    return [kv.value.string_value for r in records for kv in r.attributes if kv.key == am.EVENT_ID]


FACTORY = Factory(
    type_name="detections",
    kind="processor",
    config_class=DetectionsConfig,
    create=lambda name, config: DetectionsProcessor(name, config),
)
