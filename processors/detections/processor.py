"""The ``detections`` processor: rules over normalised agent events, each match a log record.

The processor sits before redaction, so rules see the command lines and paths an agent ran;
what a detection stores as evidence is scrubbed of secrets and truncated first. Detections are
ordinary log records (scope ``agentwatch.detections``, ``event.name=agentwatch.detection``)
appended to the batch, so every exporter stores or forwards them like any event. Matching
itself is ``rules.RuleSet.evaluate``, a pure function of the event's fields.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from collector import agent_model as am
from collector import telemetry
from collector.component import Factory, Processor
from collector.records import LogRecord, Logs, Resource, Scope, Traces
from processors.detections.config import DetectionsConfig
from processors.detections.rules import (
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

SEVERITY_NUMBERS: dict[str, int] = {"low": 9, "medium": 13, "high": 17, "critical": 21}
"""OTLP severity numbers: INFO, WARN, ERROR, FATAL."""

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


def _copy(resource: Resource) -> Resource:
    """A resource of its own for records that leave through another pipeline, whose processors
    may change it."""
    return Resource(copy.deepcopy(resource.attributes), resource.dropped_attributes_count)


class DetectionsProcessor(Processor):
    def __init__(self, name: str, config: DetectionsConfig) -> None:
        super().__init__(name, config)
        self.evidence_max_chars = config.evidence_max_chars
        self.rules = build_rule_set(config.rule_files(), config.lists, config.disabled_rules)
        extra = [config.extra_patterns_file] if config.extra_patterns_file else []
        self.scrubber = SecretScrubber.from_files(extra)
        self.emit_logs: Callable[[Logs], object] | None = None
        """Set by the service: where detections raised on spans go (the logs pipelines)."""

    def consume_logs(self, data: Logs) -> Logs | None:
        """Appends a detection record after the last record of its source's resource."""
        if not self.rules.rules:
            return data
        raised: set[str] = set()
        found: list[LogRecord] = []
        upstream: set[tuple[int, str]] = set()
        scopes: dict[int, Scope] = {}
        event_types = self.rules.event_types
        scope: Scope | None = None
        ours = False
        for record in data.records:
            if record.scope is not scope:
                scope = record.scope
                ours = scope.name == SCOPE_NAME
            attributes = record.attributes
            if ours:  # detections already made upstream
                upstream.add((id(record.resource), attribute_text(attributes.get(am.EVENT_ID))))
                continue
            event = attributes.get(am.EVENT)
            if type(event) is not str or event not in event_types:
                continue  # most records: two look-ups and on
            for match, context, event_id in self._detect(attributes, raised):
                resource = record.resource
                detection_scope = scopes.get(id(resource))
                if detection_scope is None:
                    detection_scope = scopes[id(resource)] = Scope(SCOPE_NAME)
                found.append(
                    self._record(
                        match,
                        context,
                        event_id,
                        resource,
                        detection_scope,
                        record.time_unix_nano or record.observed_time_unix_nano,
                        record.observed_time_unix_nano,
                        record.trace_id,
                        record.span_id,
                    )
                )
        if upstream:
            found = [
                d for d in found if (id(d.resource), d.attributes[am.EVENT_ID]) not in upstream
            ]
        if found:
            self._count(found)
            data.records = _placed(data.records, found)
        return data

    def consume_traces(self, data: Traces) -> Traces | None:
        """Spans that carry agent events (Copilot) raise detections as log records, which can
        only leave through ``emit_logs``; unwired, spans are not evaluated."""
        if not self.rules.rules or self.emit_logs is None:
            return data
        raised: set[str] = set()
        found: list[LogRecord] = []
        contexts: dict[int, tuple[Resource, Scope]] = {}
        event_types = self.rules.event_types
        for span in data.spans:
            event = span.attributes.get(am.EVENT)
            if type(event) is not str or event not in event_types:
                continue
            for match, context, event_id in self._detect(span.attributes, raised):
                own = contexts.get(id(span.resource))
                if own is None:
                    own = contexts[id(span.resource)] = (_copy(span.resource), Scope(SCOPE_NAME))
                when = span.end_time_unix_nano or span.start_time_unix_nano
                found.append(
                    self._record(
                        match, context, event_id, *own, when, when, span.trace_id, span.span_id
                    )
                )
        if found:
            self._count(found)
            self.emit_logs(Logs(found))
        return data

    def _count(self, records: list[LogRecord]) -> None:
        for record in records:
            attributes = record.attributes
            DETECTIONS.labels(
                self.name,
                attributes[am.RULE_ID],
                attributes[am.SEVERITY],
                attributes.get(am.AGENT, "unknown"),
            ).inc()

    def _detect(
        self, attributes: Mapping[str, Any], raised: set[str]
    ) -> list[tuple[Match, dict[str, str], str]]:
        """(match, source context, detection id) of one record's new detections; ``raised``
        holds the ids already raised in this batch.

        Nothing is remembered across batches: a batch may still be refused after this
        processor ran (a later processor failing), and its retry must raise the same
        detections again. Ids are stable, so the stores de-duplicate what repeats.
        """
        matches = self.rules.evaluate(event_fields(attributes))
        if not matches:
            return []
        context = context_of(attributes)
        out = []
        for match in matches:
            event_id = detection_event_id(match, context)
            if event_id not in raised:
                raised.add(event_id)
                out.append((match, context, event_id))
        return out

    def _record(
        self,
        match: Match,
        context: Mapping[str, str],
        event_id: str,
        resource: Resource,
        scope: Scope,
        time_unix_nano: int,
        observed_time_unix_nano: int,
        trace_id: bytes,
        span_id: bytes,
    ) -> LogRecord:
        rule = match.rule
        evidence = render_evidence(match, self.scrubber, self.evidence_max_chars)
        return LogRecord(
            resource,
            scope,
            time_unix_nano=time_unix_nano,
            observed_time_unix_nano=observed_time_unix_nano,
            severity_number=SEVERITY_NUMBERS[rule.severity],
            severity_text=rule.severity.upper(),
            body=rule.description,
            attributes=detection_attributes(match, context, event_id, evidence),
            trace_id=trace_id,
            span_id=span_id,
            event_name=EVENT_NAME,
        )


def _placed(records: list[LogRecord], found: list[LogRecord]) -> list[LogRecord]:
    """``records`` with each detection after the last record of its resource (its source's
    ``ResourceLogs`` in OTLP)."""
    last_resource = records[-1].resource if records else None
    if all(d.resource is last_resource for d in found):
        return records + found
    last = {id(r.resource): i for i, r in enumerate(records)}
    after: dict[int, list[LogRecord]] = {}
    for d in found:
        after.setdefault(last[id(d.resource)], []).append(d)
    out: list[LogRecord] = []
    for i, record in enumerate(records):
        out.append(record)
        out.extend(after.get(i, ()))
    return out


FACTORY = Factory(
    type_name="detections",
    kind="processor",
    config_class=DetectionsConfig,
    create=lambda name, config: DetectionsProcessor(name, config),
)
