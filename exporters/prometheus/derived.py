"""Turning normalised agent events, and a vendor's delta metrics, into derived metric updates.

The numbers come from the normalised agent events (log records and spans carrying
``agentwatch.event``, see ``collector/agent_model.py``), never from a vendor's dialect, with one
exception whose names live on the vendor class: facts an agent sends only as delta metrics
(``Vendor.delta_metrics``: Claude Code's lines of code, commits, pull requests and active time)
are read from those points.

Session, prompt and request ids are never labels (unless ``claude_code_compat_session_id`` opts
in for the dashboard's session panels). Counters restart from zero with the process, the
standard Prometheus behaviour that ``rate()`` and ``increase()`` handle.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from prometheus_client.core import GaugeMetricFamily, Metric

from collector import agent_model as am
from collector import telemetry
from collector.component import MetricsData, Signal
from collector.isolation import describe
from collector.otlp_values import decode_attributes
from collector.records import LogRecord, Logs, Span, Traces
from exporters.prometheus.claude_compat import ClaudeCompat, claude_code_vendor
from exporters.prometheus.config import PrometheusConfig
from exporters.prometheus.families import AgentwatchFamilies, Counter, Family
from processors.vendors import Vendor, all_vendors

log = logging.getLogger("agentwatch.exporter.prometheus")

SKIPPED = telemetry.counter(
    "agentwatch_prometheus_skipped_items",
    "Log records, spans or metric points the Prometheus exporter did not count, by reason "
    "(not an agent event, duplicate event id, unsupported or non-delta metric, a NaN or "
    "infinite value, or an error counting it).",
    ("exporter", "signal", "reason"),
)

Event = Mapping[str, Any]
"""An agent event's attributes: a record's own dict, or merged over its resource's."""

SCALAR_TYPES = frozenset((str, int, float, bool))
"""The values a label or a count is read from; lists, maps, bytes and None are absent."""


def text(v: Any) -> str:
    """A scalar as label text, booleans as ``true``/``false`` (as OTLP JSON writes them); ""
    for anything else."""
    if v.__class__ is str:
        return v  # type: ignore[no-any-return]
    if v.__class__ is bool:
        return "true" if v else "false"
    if v.__class__ is int or v.__class__ is float:
        return str(v)
    return ""


def number(v: Any) -> float | None:
    """Numbers may arrive as int, double or numeric string; anything else is absent."""
    cls = v.__class__
    if cls is int or cls is float:
        return float(v) if math.isfinite(v) else None
    if cls is not str:
        return None
    try:
        f = float(v)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def scalars(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    """A metric point's (or its resource's) scalar attributes."""
    return {k: v for k, v in decode_attributes(kvs).items() if v.__class__ in SCALAR_TYPES}


def agentwatch_scalars(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The ``agentwatch.*`` keys with scalar values: what an event reads from its resource."""
    return {
        k: v for k, v in attributes.items() if k.startswith(am.P) and v.__class__ in SCALAR_TYPES
    }


TOKEN_TYPES = (
    ("input", am.INPUT_TOKENS),
    ("cache_read", am.CACHE_READ_TOKENS),
    ("cache_write", am.CACHE_WRITE_TOKENS),
    ("output", am.OUTPUT_TOKENS),
    ("reasoning", am.REASONING_TOKENS),
)
"""Token type label values; reasoning is the part of output spent on reasoning, so summing over
all types counts it twice: ``sum(agentwatch_tokens_total{type!="reasoning"})`` is every token
billed."""


REFUSED_DECISIONS = frozenset({"reject"})
"""Normalised decisions after which no result follows (collector/agent_model.py)."""

DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


class BoundedSet:
    """Membership of recently seen keys, forgetting the oldest beyond ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> bool:
        """True if ``key`` was not remembered (and is now). A key seen again counts as recent:
        a detection re-raised in every batch of a long session must stay remembered."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return True

    def __contains__(self, key: str) -> bool:
        return key in self._keys


class Who:
    """The identity labels of one event or metric point."""

    __slots__ = (
        "agent",
        "identity",
        "key",
        "organization",
        "session",
        "team",
        "team_user",
        "terminal",
        "user",
    )

    def __init__(
        self,
        agent: str,
        team: str,
        user: str,
        identity: str,
        organization: str,
        terminal: str,
        session: str,
        user_labelled: bool = True,
    ) -> None:
        self.agent = agent
        self.team = team
        self.user = user
        """Label value as configured (email, hash or "")."""
        self.identity = identity
        """Raw e-mail / user id, for counting distinct active users."""
        self.organization = organization
        self.terminal = terminal
        self.session = session
        self.team_user = (team, user) if user_labelled else (team,)
        """The ``team[, user]`` label values, as every per-user family ends its labels."""
        self.key = (agent, *self.team_user)
        """The ``agent, team[, user]`` series key of the per-user families."""


NO_FALLBACK: Mapping[str, tuple[str, ...]] = {}

USER_LABEL_CACHE = 10_000
"""Hashed user labels kept; the cache starts over when full (a few thousand users is typical)."""


class DerivedMetrics:
    """State of every derived metric; the prometheus-client collector of the endpoint."""

    def __init__(
        self,
        exporter: str,
        config: PrometheusConfig,
        user_key: bytes | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._name = exporter
        self._clock = clock
        self._user_key = user_key
        self._lock = threading.Lock()
        self._events = BoundedSet(config.dedup_cache_size)
        self._sessions = BoundedSet(config.session_cache_size)
        self._tools_counted = BoundedSet(config.dedup_cache_size)
        self._tools_pending: OrderedDict[str, str] = OrderedDict()
        """Accepted tool calls whose result has not come yet: call -> decision."""
        self._active: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._user_labels: dict[str, str] = {}
        """identity -> its hashed label: an HMAC per event would cost more than the event."""
        self._user_labelled = config.user_label != "none"
        self._delta_metrics: dict[str, tuple[Vendor, str]] = {
            name: (vendor, fact)
            for vendor in all_vendors()
            for name, fact in vendor.delta_metrics.items()
        }
        """Vendor delta metric name -> (its vendor, the fact it carries)."""
        cap = config.max_series_per_metric

        def counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
            return Counter(name, doc, labels, cap, exporter)

        self.agentwatch = AgentwatchFamilies(exporter, config, counter)
        self.families: list[Family] = list(self.agentwatch.all)
        self.claude: ClaudeCompat | None = None
        if config.claude_code_compat:
            self.claude = ClaudeCompat(claude_code_vendor(), config, counter)
            self.families.extend(self.claude.families)

    # --- identity ---------------------------------------------------------------------------
    def _who(
        self,
        attrs: Event,
        fallback: Mapping[str, tuple[str, ...]] = NO_FALLBACK,
        agent: str = "",
    ) -> Who:
        """Identity from the agentwatch keys, else (metric points) the vendor's own keys and
        ``agent``."""
        if fallback:
            attrs = with_fallback(attrs, fallback)
        get = attrs.get
        identity = text(get(am.USER_EMAIL)) or text(get(am.USER_ID)) or text(get(am.USER_ACCOUNT))
        return Who(
            agent=text(get(am.AGENT)) or agent,
            team=text(get(am.TEAM)),
            user=self.user_label(identity),
            identity=identity,
            organization=text(get(am.ORGANIZATION)),
            terminal=text(get(am.TERMINAL)),
            session=text(get(am.SESSION_ID)),
            user_labelled=self._user_labelled,
        )

    def user_label(self, identity: str) -> str:
        mode = self.config.user_label
        if mode == "none" or not identity:
            return ""
        if mode == "email":
            return identity
        label = self._user_labels.get(identity)
        if label is None:
            assert self._user_key is not None
            digest = hmac.new(self._user_key, identity.encode(), hashlib.sha256).hexdigest()
            label = digest[: self.config.user_hash_length]
            if len(self._user_labels) >= USER_LABEL_CACHE:
                self._user_labels.clear()
            self._user_labels[identity] = label
        return label

    def _seen(self, who: Who, now: float) -> None:
        if who.session and self._sessions.add(f"{who.agent}\x00{who.session}"):
            self.agentwatch.sessions.inc(who.key)
            if self.claude is not None and who.agent == self.claude.agent:
                self.claude.session(who)
        if who.identity:
            key = (who.agent, who.team, who.identity)
            self._active[key] = now
            self._active.move_to_end(key)
            if len(self._active) > self.config.dedup_cache_size:
                self._active.popitem(last=False)

    # --- events -----------------------------------------------------------------------------
    def consume_logs(self, data: Logs) -> None:
        self._count_events(data.records, Signal.LOGS)

    def consume_traces(self, data: Traces) -> None:
        """Spans that carry ``agentwatch.event``: Copilot reports its model and tool calls only
        as spans. A span that merely shares an event's id (Claude Code's ``llm_request``, the
        twin of an ``api_request`` log) has no event type and is skipped, and an event id
        already counted from the other signal is a duplicate."""
        self._count_events(data.spans, Signal.TRACES)

    def _count_events(self, items: list[LogRecord] | list[Span], signal: Signal) -> None:
        """Count every record that is an agent event (its keys over its resource's), once."""
        skipped: dict[str, int] = {}
        resources: dict[int, dict[str, Any]] = {}
        """id(resource) -> its agentwatch keys; records of one resource share the object."""
        with self._lock:
            now = self._clock()
            for item in items:
                ev: Event = item.attributes
                if ev.get(am.EVENT).__class__ not in SCALAR_TYPES:
                    skipped["not_agent_event"] = skipped.get("not_agent_event", 0) + 1
                    continue
                resource = resources.get(id(item.resource))
                if resource is None:
                    resource = agentwatch_scalars(item.resource.attributes)
                    resources[id(item.resource)] = resource
                if resource:
                    ev = {**resource, **agentwatch_scalars(ev)}
                event_id = text(ev.get(am.EVENT_ID))
                if event_id and not self._events.add(event_id):
                    skipped["duplicate"] = skipped.get("duplicate", 0) + 1
                    continue
                try:
                    self._event(ev, now)
                except Exception as exc:  # one odd event must not cost the batch its counts
                    skipped["error"] = skipped.get("error", 0) + 1
                    log.error(
                        "cannot count an event",
                        extra={"component": self._name, "error": describe(exc)},
                    )
        for reason, n in skipped.items():
            SKIPPED.labels(self._name, signal.value, reason).inc(n)

    def _tool_call(self, ev: Event, who: Who) -> None:
        """Count a tool invocation once, although its decision and its result are two events.

        An invocation is counted when its result arrives (with the decision seen before it),
        or at its decision when that refused it (no result follows). An accepted call whose
        result has not arrived is not counted yet. Events without a call id are one each.
        """
        tool = text(ev.get(am.TOOL_NAME))
        decision = text(ev.get(am.DECISION))
        success = text(ev.get(am.SUCCESS))
        if self.claude is not None and who.agent == self.claude.agent and decision:
            self.claude.tool_decision(who, tool, decision)
        call = text(ev.get(am.TOOL_CALL_ID))
        if call:
            key = "\x1f".join((who.agent, text(ev.get(am.SESSION_ID)), call))
            if key in self._tools_counted:
                return
            is_result = success != "" or text(ev.get(am.TOOL_PHASE)) == "result"
            if not is_result and decision not in REFUSED_DECISIONS:
                self._tools_pending[key] = decision
                if len(self._tools_pending) > self.config.dedup_cache_size:
                    self._tools_pending.popitem(last=False)
                return
            decision = decision or self._tools_pending.pop(key, "")
            self._tools_counted.add(key)
        self.agentwatch.tool_calls.inc((who.agent, tool, decision, success))

    def _event(self, ev: Event, now: float) -> None:
        who = self._who(ev)
        self._seen(who, now)
        kind = ev.get(am.EVENT)
        families = self.agentwatch
        if kind == am.EventType.API_CALL:
            self._api_call(ev, who)
        elif kind == am.EventType.API_ERROR:
            model = text(ev.get(am.MODEL))
            status = text(ev.get(am.STATUS)) or "error"
            call = (who.agent, model, status)
            families.api_calls.inc(call)
            families.api_errors.inc(call)
            duration = number(ev.get(am.DURATION_MS))
            if duration is not None:
                families.latency.observe(call, duration / 1000.0)
        elif kind == am.EventType.TOOL_CALL:
            self._tool_call(ev, who)
        elif kind == am.EventType.USER_PROMPT:
            families.prompts.inc(who.key)
        elif kind == am.EventType.CODE_CHANGE:
            self.code_change(
                who,
                added=number(ev.get(am.LINES_ADDED)),
                removed=number(ev.get(am.LINES_REMOVED)),
                commits=number(ev.get(am.COMMITS)),
                pull_requests=number(ev.get(am.PULL_REQUESTS)),
            )
        elif kind == am.EventType.DETECTION:
            families.detections.inc(
                (who.agent, text(ev.get(am.RULE_ID)), text(ev.get(am.SEVERITY)))
            )

    def _api_call(self, ev: Event, who: Who) -> None:
        families = self.agentwatch
        model = text(ev.get(am.MODEL))
        tokens = {key: number(ev.get(key)) for _, key in TOKEN_TYPES}
        agent, team_user = who.agent, who.team_user
        for token_type, key in TOKEN_TYPES:
            n = tokens[key]
            if n:
                families.tokens.inc((agent, model, token_type, *team_user), n)
        spend = (agent, model, *team_user)
        cost = number(ev.get(am.COST_USD))
        if cost is None:
            families.unpriced.inc(spend)
        else:
            families.cost.inc(spend, cost)
        premium = number(ev.get(am.PREMIUM_REQUESTS))
        if premium:
            families.premium_requests.inc(spend, premium)
        nano_aiu = number(ev.get(am.NANO_AIU))
        if nano_aiu:
            families.ai_credits.inc(spend, nano_aiu / 1e9)
        call = (agent, model, text(ev.get(am.STATUS)) or "ok")
        families.api_calls.inc(call)
        duration = number(ev.get(am.DURATION_MS))
        if duration is not None:
            families.latency.observe(call, duration / 1000.0)
        if self.claude is not None and who.agent == self.claude.agent:
            self.claude.api_call(who, model, tokens, cost)

    def code_change(
        self,
        who: Who,
        *,
        added: float | None = None,
        removed: float | None = None,
        commits: float | None = None,
        pull_requests: float | None = None,
    ) -> None:
        families = self.agentwatch
        if added:
            families.lines.inc((*who.key, "added"), added)
        if removed:
            families.lines.inc((*who.key, "removed"), removed)
        if commits:
            families.commits.inc(who.key, commits)
        if pull_requests:
            families.pull_requests.inc(who.key, pull_requests)
        if self.claude is not None and who.agent == self.claude.agent:
            self.claude.code_change(who, added, removed, commits, pull_requests)

    # --- metrics ----------------------------------------------------------------------------
    def consume_metrics(self, data: MetricsData) -> None:
        skipped: dict[str, int] = {}
        with self._lock:
            now = self._clock()
            for rm in data.resource_metrics:
                resource = scalars(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        kind = metric.WhichOneof("data")
                        points = len(getattr(metric, kind).data_points) if kind else 0
                        counted = self._delta_metrics.get(metric.name)
                        reason = _unsupported(metric) if counted else "unsupported_metric"
                        if counted is None or reason:
                            skipped[reason] = skipped.get(reason, 0) + points
                            continue
                        vendor, fact = counted
                        for point in metric.sum.data_points:
                            attrs = {**resource, **scalars(point.attributes)}
                            try:
                                reason = self._point(vendor, fact, metric.name, point, attrs, now)
                            except Exception as exc:  # as in _count_events
                                reason = "error"
                                log.error(
                                    "cannot count a metric point",
                                    extra={"component": self._name, "error": describe(exc)},
                                )
                            if reason:
                                skipped[reason] = skipped.get(reason, 0) + 1
        for reason, n in skipped.items():
            SKIPPED.labels(self._name, Signal.METRICS.value, reason).inc(n)

    def _point(
        self,
        vendor: Vendor,
        fact: str,
        name: str,
        point: Any,
        attrs: dict[str, Any],
        now: float,
    ) -> str:
        """Count one vendor delta point; the reason it was not counted, or ""."""
        if am.AGENT in attrs and fact != "active_time":
            # The normalize processor marked this point and derives a code_change event from it,
            # which this exporter counts when it is on the logs pipeline too.
            return "normalised_as_events"
        if not self._events.add(_point_key(name, point, attrs)):
            return "duplicate"
        value = float(point.as_int) if point.WhichOneof("value") == "as_int" else point.as_double
        if not math.isfinite(value):  # NaN or infinity would poison the counter for good
            return "invalid_value"
        who = self._who(attrs, fallback=vendor.identity_keys, agent=vendor.agent.value)
        self._seen(who, now)
        if not self._delta_point(vendor, fact, text(attrs.get("type")), who, value):
            return "unused_metric"
        return ""

    def _delta_point(
        self, vendor: Vendor, fact: str, point_type: str, who: Who, value: float
    ) -> bool:
        if fact == "lines":
            if point_type == "added":
                self.code_change(who, added=value)
            elif point_type == "removed":
                self.code_change(who, removed=value)
            else:
                return False
        elif fact == "commits":
            self.code_change(who, commits=value)
        elif fact == "pull_requests":
            self.code_change(who, pull_requests=value)
        elif fact == "active_time":
            if self.claude is None or vendor.agent.value != self.claude.agent:
                return False
            self.claude.active_time(who, point_type, value)
        else:
            return False
        return True

    # --- exposition -------------------------------------------------------------------------
    def active_users(self) -> dict[tuple[str, str], int]:
        cutoff = self._clock() - self.config.active_users_window
        while self._active:
            _, seen = next(iter(self._active.items()))
            if seen >= cutoff:
                break
            self._active.popitem(last=False)
        counts: dict[tuple[str, str], int] = {}
        for agent, team, _ in self._active:
            counts[(agent, team)] = counts.get((agent, team), 0) + 1
        return counts

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            out = [f.collect() for f in self.families]
            gauge = GaugeMetricFamily(
                "agentwatch_active_users",
                "Distinct users with an agent event in the last "
                f"{self.config.active_users_window:g} seconds.",
                labels=("agent", "team"),
            )
            for (agent, team), n in sorted(self.active_users().items()):
                gauge.add_metric([agent, team], n)
            out.append(gauge)
        yield from out


def with_fallback(attrs: Event, fallback: Mapping[str, tuple[str, ...]]) -> Event:
    """``attrs`` with each empty agentwatch key filled from the first non-empty vendor key."""
    out = dict(attrs)
    for key, vendor_keys in fallback.items():
        v = attrs.get(key)
        for k in vendor_keys:
            if v is not None and v != "":
                break
            v = attrs.get(k)
        out[key] = v
    return out


def _unsupported(metric: Any) -> str:
    """Why a vendor delta metric cannot be counted ("" if it can)."""
    if metric.WhichOneof("data") != "sum":
        return "unsupported_metric"
    if metric.sum.aggregation_temporality != DELTA:
        return "not_delta"
    return ""


def _point_key(name: str, point: Any, attrs: dict[str, Any]) -> str:
    """Idempotency key of a delta point: the same point delivered twice has the same key."""
    h = hashlib.sha256(name.encode())
    for k in sorted(attrs):
        h.update(f"\x00{k}\x01{attrs[k]!r}".encode())
    h.update(f"\x02{point.start_time_unix_nano}:{point.time_unix_nano}".encode())
    h.update(point.SerializeToString(deterministic=True))
    return "m:" + h.hexdigest()[:32]
