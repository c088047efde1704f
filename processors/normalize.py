"""The ``normalize`` processor: four agents' dialects in, one agent event model out.

Each ``ResourceLogs``/``ResourceSpans``/``ResourceMetrics`` goes to the normaliser of its
``service.name`` (``processors/vendors``). The normaliser's ``agentwatch.*`` keys, the
directory's team and cost centre and the GenAI semantic-convention ``gen_ai.*`` keys are
ADDED to the record; nothing the agent sent is removed or changed, so the raw tables keep the
vendor's numbers. Unknown services pass through untouched and are counted.

Two kinds of data are derived here but belong to another signal's pipeline, so they leave
through hooks the service wires (``emit_metrics``, ``emit_logs``); unwired, nothing is derived:

* ``gen_ai.client.token.usage`` / ``gen_ai.client.operation.duration`` histograms from the log
  events of agents that do not emit them (Claude Code, Codex);
* ``api_usage`` and ``code_change`` log records from the token, cost and code-change metrics
  of Claude Code, Gemini CLI and Copilot Chat, so a session whose user enabled metrics only
  still has its tokens in the agent tables (see docs/genai-semconv.md, "Metrics only").

When the other signal's pipelines refuse derived data (their queues are full: refused before
any of their processors ran, queued nowhere), the request it came from is refused too, so the
client retries both; backpressure on metrics thus also holds back the Claude Code and Codex
logs that feed them. A retry derives the same ``api_usage``/``code_change`` records (stable
event ids, which the stores de-duplicate on). The derived histograms carry no id: they count
twice only when they were accepted and the request they came from was refused afterwards (a
later processor failing, another processor's hook refused on the same request, or the
request's own write-ahead log failing), never in the common case of a refused derivation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from pydantic import Field

from collector import agent_model as am
from collector import telemetry
from collector.agent_model import Agent, EventType
from collector.component import (
    ComponentConfig,
    ConfigContext,
    Factory,
    Host,
    MetricsData,
    Processor,
    Refused,
    Signal,
    count_items,
)
from collector.otlp_values import decode_attributes, encode_attributes, encode_value, metric_points
from collector.records import LogRecord, Logs, Resource, Scope, Span, Traces
from processors import genai_semconv
from processors.directory import Directory, DirectoryError
from processors.vendors import (
    API_USAGE,
    DERIVED_FROM,
    DERIVED_SCOPE,
    Attrs,
    Result,
    Scalar,
    SpanBatch,
    UsageTotals,
    Vendor,
    event_id,
    first_text,
    to_str,
    vendor_for,
    vendor_for_scope,
)

log = logging.getLogger("agentwatch.normalize")

EMITTED = Callable[[MetricsData], object]
EMITTED_LOGS = Callable[[Logs], object]
Item = TypeVar("Item", LogRecord, Span)

UNKNOWN_SERVICE = telemetry.counter(
    "agentwatch_normalize_unknown_service_items",
    "Items from a service.name no normaliser knows, passed through untouched.",
    ("processor", "signal", "service_name"),
)
EVENTS = telemetry.counter(
    "agentwatch_normalize_events",
    "Agent events the normaliser recognised, by agent and event type.",
    ("processor", "agent", "event"),
)
DERIVED = telemetry.counter(
    "agentwatch_normalize_derived_items",
    "Records or metric points the normaliser derived and handed to another pipeline.",
    ("processor", "kind"),
)
NOT_DERIVED = telemetry.counter(
    "agentwatch_normalize_usage_skipped_points",
    "Usage metric points not turned into api_usage records, by reason (e.g. cumulative).",
    ("processor", "agent", "reason"),
)

OTHER_SERVICES = "_other"
NO_SERVICE = "_none"
IDENTITY_ONLY = (
    am.AGENT,
    am.AGENT_VERSION,
    am.SESSION_ID,
    am.USER_ID,
    am.USER_EMAIL,
    am.USER_ACCOUNT,
    am.ORGANIZATION,
    am.TEAM,
    am.COST_CENTER,
)
"""Keys put on metric points: who and which session, never per-event facts."""


class NormalizeConfig(ComponentConfig):
    directory_file: str | None = Field(
        default=None,
        description="YAML or CSV mapping e-mail / account id / user id to team, cost_center "
        "and display_name; enriches every agent record (relative paths: working directory).",
    )
    drop_stream_chunks: bool = Field(
        default=True,
        description="Drop Codex's per-chunk codex.sse_event records and the count-less "
        "duplicate response.completed (counted); the token-bearing one is always kept.",
    )
    derive_genai_metrics: bool = Field(
        default=True,
        description="Emit gen_ai.client.token.usage / operation.duration for agents that do "
        "not (Claude Code, Codex) through the emit_metrics hook.",
    )
    derive_usage_from_metrics: bool = Field(
        default=True,
        description="Emit api_usage and code_change records from DELTA token/cost/lines "
        "metrics through the emit_logs hook (put cumulativetodelta before normalize).",
    )
    service_names: dict[str, Agent] = Field(
        default_factory=dict,
        description="Extra service.name -> agent, for agents run with OTEL_SERVICE_NAME set.",
    )
    max_unknown_service_labels: int = Field(
        default=50,
        ge=1,
        description="Distinct service_name label values of the unknown-service counter; the "
        "rest are counted as _other.",
    )

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        if not self.directory_file:
            return []
        try:
            Directory.load(self.directory_file)
        except DirectoryError as err:
            return [f"{path}.directory_file: {problem}" for problem in err.problems]
        return []


@dataclass
class _UsageGroup:
    resource: resource_pb2.Resource
    vendor: Vendor
    kind: str
    identity: dict[str, Scalar]
    model: str | None
    time_unix_nano: int
    totals: UsageTotals = field(default_factory=UsageTotals)


class NormalizeProcessor(Processor):
    """See the module docstring. ``emit_metrics``/``emit_logs`` are set by the service."""

    def __init__(self, name: str, config: NormalizeConfig) -> None:
        super().__init__(name, config)
        self.config: NormalizeConfig = config
        self.directory: Directory | None = None
        self.emit_metrics: EMITTED | None = None
        self.emit_logs: EMITTED_LOGS | None = None
        self._overrides = {k: v.value for k, v in config.service_names.items()}
        self._unknown_labels: set[str] = set()
        self._labels_lock = threading.Lock()

    def start(self, host: Host) -> None:
        if self.config.directory_file:
            self.directory = Directory.load(self.config.directory_file)
            log.info(
                "identity directory loaded",
                extra={"component": self.name, "entries": len(self.directory)},
            )

    # --- dispatch -----------------------------------------------------------------------------
    def _vendor(
        self, service: str, signal: Signal, items: int, scopes: Iterable[str] = ()
    ) -> Vendor | None:
        """By ``service.name`` first, else by an instrumentation scope a vendor owns."""
        vendor = vendor_for(service, self._overrides) if service else None
        if vendor is None:
            vendor = vendor_for_scope(scopes)
        if vendor is None:
            UNKNOWN_SERVICE.labels(self.name, signal.value, self._service_label(service)).inc(items)
        return vendor

    def _by_vendor(
        self, items: Sequence[Item], signal: Signal
    ) -> Iterator[tuple[Vendor, Resource, list[Item]]]:
        """The items of each resource a vendor knows, with that vendor; the items this
        processor derived itself (its own scope) are left out."""
        by_resource: dict[int, list[Item]] = {}
        current: list[Item] = []
        resource: Resource | None = None
        for item in items:  # the items of one resource are usually adjacent: one test each
            if item.resource is not resource:
                resource = item.resource
                current = by_resource.setdefault(id(resource), [])
            current.append(item)
        for members in by_resource.values():
            resource = members[0].resource
            service = resource.attributes.get("service.name")
            scopes = (m.scope.name for m in members)
            vendor = self._vendor(
                service if type(service) is str else "", signal, len(members), scopes
            )
            if vendor is not None:
                yield vendor, resource, [m for m in members if m.scope.name != DERIVED_SCOPE]

    def _service_label(self, service: str) -> str:
        if not service:
            return NO_SERVICE
        with self._labels_lock:
            if service in self._unknown_labels:
                return service
            if len(self._unknown_labels) < self.config.max_unknown_service_labels:
                self._unknown_labels.add(service)
                return service
        return OTHER_SERVICES

    def _record_keys(
        self, vendor: Vendor, resource_identity: dict[str, str], attrs: Attrs, result: Result | None
    ) -> dict[str, Scalar]:
        """Identity, then the event's own keys, then directory, then semconv keys."""
        keys = vendor.identity(resource_identity, attrs)
        if result is not None:
            keys.update(result.attributes)
        if self.directory is not None:
            self.directory.enrich(keys)
        preset = attrs.get(am.EVENT_ID)
        if am.EVENT_ID in keys and isinstance(preset, str) and preset:
            # Named already: by the session-file importer after the call's stored OTLP twin,
            # or by an upstream agentwatch. The same call keeps one id, whatever its source.
            keys[am.EVENT_ID] = preset
        if am.EVENT in keys:
            keys.update(
                genai_semconv.semconv_attributes(keys, vendor.provider, vendor.genai_operation)
            )
        return keys

    def _normalise(
        self,
        vendor: Vendor,
        resource: Resource,
        identity: dict[str, str],
        item: LogRecord | Span,
        result: Result | None,
        when: int,
        derived: genai_semconv.DerivedClientMetrics | None,
        events: Counter[tuple[str, str]],
    ) -> None:
        """Add the keys of one record or span, count its event, derive its GenAI metrics."""
        keys = self._record_keys(vendor, identity, item.attributes, result)
        item.attributes = add_keys(item.attributes, keys)
        event = keys.get(am.EVENT)
        if isinstance(event, str):
            events[(vendor.agent_name, event)] += 1
        if derived is not None and vendor.derives_genai_metrics:
            _derive_from_event(derived, resource, vendor, keys, result, when or time.time_ns())

    def _derived_metrics(self) -> genai_semconv.DerivedClientMetrics | None:
        if self.config.derive_genai_metrics and self.emit_metrics is not None:
            return genai_semconv.DerivedClientMetrics()
        return None

    # --- logs ---------------------------------------------------------------------------------
    def consume_logs(self, data: Logs) -> Logs | None:
        derived = self._derived_metrics()
        dropped: Counter[str] = Counter()
        events: Counter[tuple[str, str]] = Counter()
        drop: set[int] = set()
        for vendor, resource, records in self._by_vendor(data.records, Signal.LOGS):
            identity = vendor.resource_identity(resource.attributes)
            for record in records:
                result = vendor.log_event(resource.attributes, record.attributes, record)
                if result is not None and result.drop_reason is not None:
                    if self.config.drop_stream_chunks:
                        drop.add(id(record))
                        dropped[result.drop_reason] += 1
                        continue
                    result = None
                when = record.time_unix_nano or record.observed_time_unix_nano
                self._normalise(vendor, resource, identity, record, result, when, derived, events)
        if drop:
            data.records = [r for r in data.records if id(r) not in drop]
        for reason, n in dropped.items():
            telemetry.PROCESSOR_DROPPED.labels(self.name, Signal.LOGS.value, reason).inc(n)
        self._count_events(events)
        if derived:
            self._emit_metrics(derived.build())
        if drop and not data.records:
            return None
        return data

    def _count_events(self, events: Counter[tuple[str, str]]) -> None:
        for (agent, event), n in events.items():
            EVENTS.labels(self.name, agent, event).inc(n)

    def _emit_metrics(self, metrics: MetricsData) -> None:
        emit = self.emit_metrics
        n = count_items(metrics)
        if emit is None or n == 0:
            return
        try:
            emit(metrics)
        except Refused:
            raise  # see _emit_usage
        except Exception as err:
            telemetry.PROCESSOR_DROPPED.labels(
                self.name, Signal.METRICS.value, "derived_not_accepted"
            ).inc(n)
            log.warning(
                "derived metrics not accepted", extra={"component": self.name, "error": str(err)}
            )
            return
        DERIVED.labels(self.name, "genai_metric_points").inc(n)

    # --- traces -------------------------------------------------------------------------------
    def consume_traces(self, data: Traces) -> Traces | None:
        derived = self._derived_metrics()
        events: Counter[tuple[str, str]] = Counter()
        for vendor, resource, spans in self._by_vendor(data.spans, Signal.TRACES):
            identity = vendor.resource_identity(resource.attributes)
            batch = SpanBatch()
            user_keys = vendor.identity_keys.get(am.USER_ID, ())
            for span in spans:
                conversation = to_str(span.attributes.get("gen_ai.conversation.id"))
                if conversation:
                    batch.conversation_by_trace.setdefault(span.trace_id, conversation)
                user = first_text(span.attributes, user_keys)
                if user:
                    batch.user_by_trace.setdefault(span.trace_id, user)
            for span in spans:
                result = vendor.span_event(resource.attributes, span.attributes, span, batch)
                when = span.end_time_unix_nano
                self._normalise(vendor, resource, identity, span, result, when, derived, events)
        self._count_events(events)
        if derived:
            self._emit_metrics(derived.build())
        return data

    # --- metrics ------------------------------------------------------------------------------
    def consume_metrics(self, data: MetricsData) -> MetricsData | None:
        derive = self.config.derive_usage_from_metrics and self.emit_logs is not None
        groups: dict[tuple[object, ...], _UsageGroup] = {}
        skipped: Counter[tuple[str, str]] = Counter()
        for rm in data.resource_metrics:
            resource = decode_attributes(rm.resource.attributes)
            service = resource.get("service.name")
            scopes = (sm.scope.name for sm in rm.scope_metrics)
            vendor = self._vendor(
                service if type(service) is str else "", Signal.METRICS, metric_points(rm), scopes
            )
            if vendor is None:
                continue
            identity = vendor.resource_identity(resource)
            for sm in rm.scope_metrics:
                if sm.scope.name == DERIVED_SCOPE:
                    continue
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    body = getattr(metric, kind)
                    rule = vendor.metric_rules.get(metric.name) if derive else None
                    delta = (
                        getattr(body, "aggregation_temporality", 0)
                        == metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
                    )
                    if rule is not None and not delta:
                        skipped[(vendor.agent_name, "not_delta")] += len(body.data_points)
                        rule = None
                    for point in body.data_points:
                        attrs = decode_attributes(point.attributes)
                        keys = vendor.identity(identity, attrs)
                        keys = {k: v for k, v in keys.items() if k in IDENTITY_ONLY}
                        if self.directory is not None:
                            self.directory.enrich(keys)
                        write_point_attributes(point.attributes, attrs, keys)
                        if rule is None or kind not in ("sum", "gauge"):
                            continue
                        name = (rule.by_type or {}).get(str(attrs.get("type"))) or rule.name
                        if name is None:
                            continue
                        value = point.as_double if point.HasField("as_double") else point.as_int
                        model = to_str(attrs.get("model")) if rule.kind == "usage" else None
                        group_key = (
                            rule.kind,
                            vendor.agent_name,
                            tuple(sorted(keys.items())),
                            model,
                            point.time_unix_nano,
                        )
                        group = groups.get(group_key)
                        if group is None:
                            group = groups[group_key] = _UsageGroup(
                                rm.resource, vendor, rule.kind, keys, model, point.time_unix_nano
                            )
                        group.totals.add(name, float(value))
        for (agent, reason), n in skipped.items():
            NOT_DERIVED.labels(self.name, agent, reason).inc(n)
        if groups:
            self._emit_usage(groups.values())
        return data

    def _emit_usage(self, groups: Iterable[_UsageGroup]) -> None:
        by_resource: dict[bytes, list[LogRecord]] = {}
        for group in groups:
            keys = dict(group.identity)
            session = to_str(keys.get(am.SESSION_ID))
            if group.kind == "usage":
                keys.update(group.vendor.usage_record(group.totals))
                if group.model:
                    keys[am.MODEL] = group.model
                keys[am.PROVIDER] = group.vendor.provider_for(group.model)
                keys[am.EVENT] = API_USAGE
                keys[am.EVENT_ID] = event_id(
                    group.vendor.agent_name, session, API_USAGE, group.model, group.time_unix_nano
                )
            else:
                keys.update(code_change_keys(group.totals))
                keys[am.EVENT] = EventType.CODE_CHANGE.value
                keys[am.EVENT_ID] = event_id(
                    group.vendor.agent_name,
                    session,
                    EventType.CODE_CHANGE.value,
                    group.time_unix_nano,
                )
            keys[DERIVED_FROM] = "metrics"
            resource_key = group.resource.SerializeToString(deterministic=True)
            records = by_resource.get(resource_key)
            if records is None:
                records = by_resource[resource_key] = []
                resource = Resource(
                    decode_attributes(group.resource.attributes),
                    group.resource.dropped_attributes_count,
                )
                scope = Scope(DERIVED_SCOPE)
            else:
                resource, scope = records[0].resource, records[0].scope
            attributes = add_keys({}, keys)
            records.append(
                LogRecord(
                    resource,
                    scope,
                    time_unix_nano=group.time_unix_nano,
                    observed_time_unix_nano=group.time_unix_nano or time.time_ns(),
                    body=f"agentwatch.{keys[am.EVENT]}",
                    attributes=attributes,
                )
            )
        logs = Logs([record for records in by_resource.values() for record in records])
        n = count_items(logs)
        emit = self.emit_logs
        if emit is None or n == 0:
            return
        try:
            emit(logs)
        except Refused:
            # Full queues refused the derived data before it was processed or queued anywhere:
            # refuse the request it came from too, so the client retries both instead of
            # getting a 200 for rows that were never stored. A retry derives the same records
            # (stable event ids; cumulative-to-delta answers an exact re-send with the same
            # deltas). Any other failure of the derived pipeline is counted and the request
            # goes on: refusing it would not make that pipeline work.
            raise
        except Exception as err:
            telemetry.PROCESSOR_DROPPED.labels(
                self.name, Signal.LOGS.value, "derived_not_accepted"
            ).inc(n)
            log.warning(
                "derived usage records not accepted",
                extra={"component": self.name, "error": str(err)},
            )
            return
        DERIVED.labels(self.name, "usage_records").inc(n)


def code_change_keys(totals: UsageTotals) -> dict[str, Scalar]:
    names = {
        "lines_added": am.LINES_ADDED,
        "lines_removed": am.LINES_REMOVED,
        "commits": am.COMMITS,
        "pull_requests": am.PULL_REQUESTS,
    }
    return {key: int(totals.values[name]) for name, key in names.items() if name in totals.values}


def _derive_from_event(
    derived: genai_semconv.DerivedClientMetrics,
    resource: Resource,
    vendor: Vendor,
    keys: dict[str, Scalar],
    result: Result | None,
    when: int,
) -> None:
    event = keys.get(am.EVENT)
    sample = result.duration_sample if result is not None else None
    if sample is None and event != API_CALL and event != API_ERROR:
        return
    group = derived.group(resource, keys, vendor.provider, vendor.genai_operation)
    if event == API_CALL:
        group.add_call(keys, when)
    if sample is not None:
        if sample.model:
            event_keys = dict(keys)
            event_keys[am.MODEL] = sample.model
            group = derived.group(resource, event_keys, vendor.provider, vendor.genai_operation)
        group.add_duration(sample.seconds, sample.error_type, when)
    else:
        millis = keys.get(am.DURATION_MS)
        if isinstance(millis, int | float) and not isinstance(millis, bool):
            error = str(keys.get(am.STATUS)) if event == API_ERROR else None
            group.add_duration(float(millis) / 1000.0, error, when)


API_CALL = EventType.API_CALL.value
API_ERROR = EventType.API_ERROR.value
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def add_keys(attributes: Attrs, keys: dict[str, Scalar]) -> Attrs:
    """``attributes`` with ``keys`` added: our own ``agentwatch.*`` keys are replaced, any other
    key present wins. Returns a new dict (built in one go, cheaper than growing the old one).

    Replacing our keys makes normalising twice (a re-delivered or re-exported batch) give the
    same record; never overwriting other keys keeps the agent's values authoritative. A sum
    beyond int64 is added as its decimal text, as OTLP carries it to every later component.
    """
    for value in keys.values():
        if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
            keys = {k: _int64_or_text(v) for k, v in keys.items()}
            break
    if attributes.keys().isdisjoint(keys):  # nearly always: one pass in C
        return {**attributes, **keys}
    merged = dict(attributes)
    for key, value in keys.items():
        if key not in merged or key.startswith(am.P):
            merged[key] = value
    return merged


def _int64_or_text(value: Scalar) -> Scalar:
    if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
        return str(value)
    return value


def write_point_attributes(
    key_values: RepeatedCompositeFieldContainer[KeyValue],
    existing: Attrs,
    keys: dict[str, Scalar],
) -> None:
    """``add_keys`` for a metric point, which stays protobuf: existing keys change in place."""
    to_write = {k: v for k, v in keys.items() if k.startswith(am.P) or k not in existing}
    if any(k in existing for k in to_write):  # rare: already normalised once; update in place
        for kv in key_values:
            if kv.key in to_write:
                kv.value.Clear()
                encode_value(to_write.pop(kv.key), kv.value)
    encode_attributes(to_write, key_values)


FACTORY: Factory[NormalizeProcessor] = Factory(
    type_name="normalize",
    kind="processor",
    config_class=NormalizeConfig,
    create=lambda name, config: NormalizeProcessor(name, config),
)
