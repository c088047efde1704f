"""Prometheus exporter: derived metrics from normalised agent events, plus the self-metrics.

Prometheus pulls, so this exporter keeps counters in memory and serves them on its own HTTP
endpoint. The numbers are derived from the normalised agent events (log records and spans
carrying ``agentwatch.event``, see ``collector/agent_model.py``), never from a vendor's dialect,
with one exception kept in one place: Claude Code sends lines of code, commits, pull requests and
active time only as delta metrics, so :class:`ClaudeCodeMetrics` reads those points, and
``claude_code_compat`` re-exposes the names the community Grafana dashboard 25255 queries.

Cardinality is bounded by construction: the ``user`` label is an e-mail, an HMAC of it, or
absent; session, prompt and request ids are never labels (unless ``claude_code_compat_session_id``
opts in for the dashboard's session panels); and every metric folds label sets beyond
``max_series_per_metric`` into one ``__overflow__`` series, counted in
``agentwatch_prometheus_series_folded_total``. Counters restart from zero with the process, the
standard Prometheus behaviour that ``rate()`` and ``increase()`` handle.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from wsgiref.simple_server import WSGIRequestHandler, make_server

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from prometheus_client.utils import floatToGoString
from pydantic import Field, field_validator

from collector import agent_model as am
from collector import telemetry
from collector.component import (
    ConfigContext,
    Duration,
    Exporter,
    ExporterConfig,
    Factory,
    Host,
    LogsData,
    MetricsData,
    Signal,
    TracesData,
)
from collector.isolation import describe
from collector.otlp_values import Scalar, scalar, scalar_text

log = logging.getLogger("agentwatch.exporter.prometheus")

OVERFLOW = "__overflow__"
"""Label value of the series that absorbs label sets beyond the per-metric cap."""

DEFAULT_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
"""Model API calls take from a fraction of a second (cache hits) to minutes (long outputs)."""

SERIES_FOLDED = telemetry.counter(
    "agentwatch_prometheus_series_folded",
    "Updates of a derived metric whose new label set exceeded max_series_per_metric and was "
    "folded into the __overflow__ series.",
    ("exporter", "metric"),
)
SKIPPED = telemetry.counter(
    "agentwatch_prometheus_skipped_items",
    "Log records, spans or metric points the Prometheus exporter did not count, by reason "
    "(not an agent event, duplicate event id, unsupported or non-delta metric, a NaN or "
    "infinite value, or an error counting it).",
    ("exporter", "signal", "reason"),
)


class PrometheusConfig(ExporterConfig):
    endpoint: str = Field(
        default="0.0.0.0:9464",
        description="host:port to serve on; port 0 picks a free port (tests).",
    )
    path: str = Field(default="/metrics", description="HTTP path of the exposition.")
    user_label: Literal["email", "hashed", "none"] = Field(
        default="hashed",
        description="email: the user's e-mail (or vendor user id when there is none); hashed: "
        "HMAC-SHA256 of it with user_hash_key, truncated hex; none: no user label at all.",
    )
    user_hash_key: str | None = Field(
        default=None,
        description="Secret for user_label: hashed (use ${env:...}). When unset, a random key "
        "is created once under the data directory so hashes stay stable across restarts.",
    )
    user_hash_length: int = Field(default=16, ge=8, le=64, description="Hex characters kept.")
    max_series_per_metric: int = Field(
        default=1000,
        gt=0,
        description="Label sets per metric before new ones fold into the __overflow__ series.",
    )
    active_users_window: Duration = Field(
        default=900.0, description="agentwatch_active_users counts users seen this recently."
    )
    latency_buckets: list[float] = Field(
        default_factory=lambda: list(DEFAULT_LATENCY_BUCKETS),
        description="Upper bounds (seconds) of agentwatch_api_call_duration_seconds.",
    )
    dedup_cache_size: int = Field(
        default=100_000, gt=0, description="Recent event ids remembered to ignore redeliveries."
    )
    session_cache_size: int = Field(
        default=100_000, gt=0, description="Recent session ids remembered to count sessions."
    )
    claude_code_compat: bool = Field(
        default=False,
        description="Also expose Claude Code's own metric names (claude_code_*_total) as "
        "Grafana dashboard 25255 queries them, derived from claude_code events.",
    )
    claude_code_compat_session_id: bool = Field(
        default=False,
        description="Put session_id on claude_code_session_count_total and "
        "claude_code_cost_usage_USD_total as the dashboard's session panels expect: one "
        "series per session, still bounded by max_series_per_metric.",
    )

    @field_validator("latency_buckets")
    @classmethod
    def _buckets_ascending(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("needs at least one bucket")
        if any(b <= 0 or math.isinf(b) for b in v) or sorted(set(v)) != v:
            raise ValueError("buckets must be positive, finite and strictly ascending")
        return v

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        errors = []
        try:
            parse_endpoint(self.endpoint)
        except ValueError as exc:
            errors.append(f"{path}.endpoint: {exc}")
        if not self.path.startswith("/"):
            errors.append(f"{path}.path: must start with /")
        if self.user_label == "hashed" and self.user_hash_key == "":
            errors.append(f"{path}.user_hash_key: is empty; unset it to use a generated key")
        return errors


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port``, ``:port`` or ``[v6]:port`` to (host, port)."""
    host, sep, port_text = endpoint.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{endpoint!r} is not host:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


# --------------------------------------------------------------------------------------------
# Bounded metric families
# --------------------------------------------------------------------------------------------


class _Family:
    """One metric's series, capped: a label set beyond the cap lands in the overflow series."""

    def __init__(self, name: str, doc: str, labels: Sequence[str], cap: int, exporter: str):
        self.name = name
        self.doc = doc
        self.labels = tuple(labels)
        self.cap = cap
        self.overflow_key = (OVERFLOW,) * len(self.labels)
        self._folded = SERIES_FOLDED.labels(exporter, self.exposed_name)
        self._admitted = 0

    @property
    def exposed_name(self) -> str:
        return self.name

    def _key(self, series: dict[tuple[str, ...], Any], labels: dict[str, str]) -> tuple[str, ...]:
        key = tuple(labels.get(n, "") for n in self.labels)
        if key in series:
            return key
        if self._admitted >= self.cap:
            self._folded.inc()
            return self.overflow_key
        self._admitted += 1
        return key

    def collect(self) -> Metric:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


class _Counter(_Family):
    def __init__(self, name: str, doc: str, labels: Sequence[str], cap: int, exporter: str):
        super().__init__(name, doc, labels, cap, exporter)
        self.values: dict[tuple[str, ...], float] = {}

    @property
    def exposed_name(self) -> str:
        return self.name + "_total"

    def inc(self, labels: dict[str, str], amount: float = 1.0) -> None:
        key = self._key(self.values, labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in self.values.items():
            family.add_metric(list(key), value)
        return family


@dataclass
class _HistogramSeries:
    counts: list[int]
    total: float = 0.0


class _Histogram(_Family):
    def __init__(
        self,
        name: str,
        doc: str,
        labels: Sequence[str],
        cap: int,
        exporter: str,
        buckets: Sequence[float],
    ):
        super().__init__(name, doc, labels, cap, exporter)
        self.bounds = [*buckets, math.inf]
        self.series: dict[tuple[str, ...], _HistogramSeries] = {}

    def observe(self, labels: dict[str, str], value: float) -> None:
        key = self._key(self.series, labels)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = _HistogramSeries([0] * len(self.bounds))
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                s.counts[i] += 1
                break
        s.total += value

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, s in self.series.items():
            cumulative = 0
            buckets = []
            for bound, n in zip(self.bounds, s.counts, strict=True):
                cumulative += n
                buckets.append((floatToGoString(bound), float(cumulative)))
            family.add_metric(list(key), buckets, s.total)
        return family


# --------------------------------------------------------------------------------------------
# Reading agent events
# --------------------------------------------------------------------------------------------

Value = Scalar
_value = scalar


def _attributes(kvs: Iterable[KeyValue], prefix: str | None = am.P) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for kv in kvs:
        if prefix is None or kv.key.startswith(prefix):
            v = _value(kv.value)
            if v is not None:
                out[kv.key] = v
    return out


def _number(v: Value | None) -> float | None:
    """Numbers may arrive as int, double or numeric string; anything else is absent."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v) if math.isfinite(v) else None
    try:
        f = float(v)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


_text = scalar_text


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


class _BoundedSet:
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


@dataclass
class _Who:
    """The identity labels of one event or metric point."""

    agent: str
    team: str
    user: str  # label value as configured (email, hash or "")
    identity: str  # raw e-mail / user id, for counting distinct active users
    organization: str
    terminal: str
    session: str

    def labels(self, **extra: str) -> dict[str, str]:
        return {"agent": self.agent, "team": self.team, "user": self.user, **extra}


# --------------------------------------------------------------------------------------------
# The derived metrics
# --------------------------------------------------------------------------------------------


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
        self._events = _BoundedSet(config.dedup_cache_size)
        self._sessions = _BoundedSet(config.session_cache_size)
        self._tools_counted = _BoundedSet(config.dedup_cache_size)
        self._tools_pending: OrderedDict[str, str] = OrderedDict()
        """Accepted tool calls whose result has not come yet: call -> decision."""
        self._active: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        cap = config.max_series_per_metric
        user = ("user",) if config.user_label != "none" else ()
        who = ("agent", "team", *user)

        def counter(name: str, doc: str, labels: Sequence[str]) -> _Counter:
            return _Counter(name, doc, labels, cap, exporter)

        self.tokens = counter(
            "agentwatch_tokens",
            "Tokens of model API calls by type: input (uncached), cache_read, cache_write, "
            "output (reasoning included) and reasoning (the part of output spent reasoning).",
            ("agent", "model", "type", "team", *user),
        )
        self.cost = counter(
            "agentwatch_cost_usd",
            "Cost in USD of model API calls (agentwatch.cost_usd).",
            ("agent", "model", "team", *user),
        )
        self.unpriced = counter(
            "agentwatch_api_calls_unpriced",
            "Model API calls without a known cost (unknown model); not in agentwatch_cost_usd.",
            ("agent", "model", "team", *user),
        )
        self.premium_requests = counter(
            "agentwatch_premium_requests",
            "GitHub Copilot premium requests of model API calls (github.copilot.cost, the "
            "model's multiplier): the vendor's own allowance, not dollars.",
            ("agent", "model", "team", *user),
        )
        self.ai_credits = counter(
            "agentwatch_ai_credits",
            "GitHub Copilot AI credits of model API calls (github.copilot.nano_aiu / 1e9).",
            ("agent", "model", "team", *user),
        )
        self.sessions = counter("agentwatch_sessions", "Distinct agent sessions seen.", who)
        self.prompts = counter("agentwatch_user_prompts", "User prompts (turns).", who)
        self.api_calls = counter(
            "agentwatch_api_calls",
            "Model API calls, failed ones included, by status (ok, or the error status).",
            ("agent", "model", "status"),
        )
        self.api_errors = counter(
            "agentwatch_api_errors",
            "Model API calls that failed, by status.",
            ("agent", "model", "status"),
        )
        self.latency = _Histogram(
            "agentwatch_api_call_duration_seconds",
            "Duration of model API calls.",
            ("agent", "model", "status"),
            cap,
            exporter,
            config.latency_buckets,
        )
        self.tool_calls = counter(
            "agentwatch_tool_calls",
            "Tool invocations by tool, decision and success (empty when not known), each counted "
            "once: when its result arrives, or at its decision when that refused it.",
            ("agent", "tool", "decision", "success"),
        )
        self.lines = counter(
            "agentwatch_lines_of_code",
            "Lines of code the agent added or removed.",
            (*who, "type"),
        )
        self.commits = counter("agentwatch_commits", "Commits the agent created.", who)
        self.pull_requests = counter(
            "agentwatch_pull_requests", "Pull requests the agent created.", who
        )
        self.detections = counter(
            "agentwatch_detections",
            "Security detection rule matches.",
            ("agent", "rule", "severity"),
        )
        self.families: list[_Family] = [
            self.tokens,
            self.cost,
            self.unpriced,
            self.premium_requests,
            self.ai_credits,
            self.sessions,
            self.prompts,
            self.api_calls,
            self.api_errors,
            self.latency,
            self.tool_calls,
            self.lines,
            self.commits,
            self.pull_requests,
            self.detections,
        ]
        self.claude = ClaudeCodeMetrics(config, counter) if config.claude_code_compat else None
        if self.claude is not None:
            self.families.extend(self.claude.families)

    # --- identity ---------------------------------------------------------------------------
    def _who(self, attrs: dict[str, Value], fallback: dict[str, Value] | None = None) -> _Who:
        fb = fallback or {}

        def get(key: str, *vendor_keys: str) -> str:
            v = attrs.get(key)
            for k in vendor_keys:
                if v is not None and v != "":
                    break
                v = fb.get(k)
            return _text(v)

        identity = get(am.USER_EMAIL, "user.email") or get(am.USER_ID, "user.id")
        identity = identity or get(am.USER_ACCOUNT, "user.account_uuid")
        return _Who(
            agent=get(am.AGENT),
            team=get(am.TEAM, "team"),
            user=self.user_label(identity),
            identity=identity,
            organization=get(am.ORGANIZATION, "organization.id"),
            terminal=get(am.TERMINAL, "terminal.type"),
            session=get(am.SESSION_ID, "session.id"),
        )

    def user_label(self, identity: str) -> str:
        mode = self.config.user_label
        if mode == "none" or not identity:
            return ""
        if mode == "email":
            return identity
        assert self._user_key is not None
        digest = hmac.new(self._user_key, identity.encode(), hashlib.sha256).hexdigest()
        return digest[: self.config.user_hash_length]

    def _seen(self, who: _Who, now: float) -> None:
        if who.session and self._sessions.add(f"{who.agent}\x00{who.session}"):
            self.sessions.inc(who.labels())
            if self.claude is not None and who.agent == am.Agent.CLAUDE_CODE:
                self.claude.session(who)
        if who.identity:
            key = (who.agent, who.team, who.identity)
            self._active[key] = now
            self._active.move_to_end(key)
            if len(self._active) > self.config.dedup_cache_size:
                self._active.popitem(last=False)

    # --- events -----------------------------------------------------------------------------
    def consume_logs(self, data: LogsData) -> None:
        skipped: dict[str, int] = {}
        events: list[dict[str, Value]] = []
        for rl in data.resource_logs:
            resource = _attributes(rl.resource.attributes)
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    _collect(rec.attributes, resource, events, skipped)
        self._count_events(events, skipped, Signal.LOGS)

    def consume_traces(self, data: TracesData) -> None:
        """Spans that carry ``agentwatch.event``: Copilot reports its model and tool calls only
        as spans. A span that merely shares an event's id (Claude Code's ``llm_request``, the
        twin of an ``api_request`` log) has no event type and is skipped, and an event id
        already counted from the other signal is a duplicate."""
        skipped: dict[str, int] = {}
        events: list[dict[str, Value]] = []
        for rs in data.resource_spans:
            resource = _attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    _collect(span.attributes, resource, events, skipped)
        self._count_events(events, skipped, Signal.TRACES)

    def _count_events(
        self, events: list[dict[str, Value]], skipped: dict[str, int], signal: Signal
    ) -> None:
        with self._lock:
            now = self._clock()
            for ev in events:
                event_id = _text(ev.get(am.EVENT_ID))
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

    def _tool_call(self, ev: dict[str, Value], who: _Who) -> None:
        """Count a tool invocation once, although its decision and its result are two events.

        An invocation is counted when its result arrives (with the decision seen before it),
        or at its decision when that refused it (no result follows). An accepted call whose
        result has not arrived is not counted yet. Events without a call id are one each.
        """
        tool = _text(ev.get(am.TOOL_NAME))
        decision = _text(ev.get(am.DECISION))
        success = _text(ev.get(am.SUCCESS))
        if self.claude is not None and who.agent == am.Agent.CLAUDE_CODE and decision:
            self.claude.tool_decision(who, tool, decision)
        call = _text(ev.get(am.TOOL_CALL_ID))
        if call:
            key = "\x1f".join((who.agent, _text(ev.get(am.SESSION_ID)), call))
            if key in self._tools_counted:
                return
            is_result = success != "" or _text(ev.get(am.TOOL_PHASE)) == "result"
            if not is_result and decision not in REFUSED_DECISIONS:
                self._tools_pending[key] = decision
                if len(self._tools_pending) > self.config.dedup_cache_size:
                    self._tools_pending.popitem(last=False)
                return
            decision = decision or self._tools_pending.pop(key, "")
            self._tools_counted.add(key)
        self.tool_calls.inc(
            {"agent": who.agent, "tool": tool, "decision": decision, "success": success}
        )

    def _event(self, ev: dict[str, Value], now: float) -> None:
        who = self._who(ev)
        self._seen(who, now)
        kind = ev.get(am.EVENT)
        if kind == am.EventType.API_CALL:
            self._api_call(ev, who)
        elif kind == am.EventType.API_ERROR:
            model = _text(ev.get(am.MODEL))
            status = _text(ev.get(am.STATUS)) or "error"
            labels = {"agent": who.agent, "model": model, "status": status}
            self.api_calls.inc(labels)
            self.api_errors.inc(labels)
            duration = _number(ev.get(am.DURATION_MS))
            if duration is not None:
                self.latency.observe(labels, duration / 1000.0)
        elif kind == am.EventType.TOOL_CALL:
            self._tool_call(ev, who)
        elif kind == am.EventType.USER_PROMPT:
            self.prompts.inc(who.labels())
        elif kind == am.EventType.CODE_CHANGE:
            self.code_change(
                who,
                added=_number(ev.get(am.LINES_ADDED)),
                removed=_number(ev.get(am.LINES_REMOVED)),
                commits=_number(ev.get(am.COMMITS)),
                pull_requests=_number(ev.get(am.PULL_REQUESTS)),
            )
        elif kind == am.EventType.DETECTION:
            self.detections.inc(
                {
                    "agent": who.agent,
                    "rule": _text(ev.get(am.RULE_ID)),
                    "severity": _text(ev.get(am.SEVERITY)),
                }
            )

    def _api_call(self, ev: dict[str, Value], who: _Who) -> None:
        model = _text(ev.get(am.MODEL))
        for token_type, key in TOKEN_TYPES:
            n = _number(ev.get(key))
            if n:
                self.tokens.inc(who.labels(model=model, type=token_type), n)
        cost = _number(ev.get(am.COST_USD))
        if cost is None:
            self.unpriced.inc(who.labels(model=model))
        else:
            self.cost.inc(who.labels(model=model), cost)
        premium = _number(ev.get(am.PREMIUM_REQUESTS))
        if premium:
            self.premium_requests.inc(who.labels(model=model), premium)
        nano_aiu = _number(ev.get(am.NANO_AIU))
        if nano_aiu:
            self.ai_credits.inc(who.labels(model=model), nano_aiu / 1e9)
        status = _text(ev.get(am.STATUS)) or "ok"
        labels = {"agent": who.agent, "model": model, "status": status}
        self.api_calls.inc(labels)
        duration = _number(ev.get(am.DURATION_MS))
        if duration is not None:
            self.latency.observe(labels, duration / 1000.0)
        if self.claude is not None and who.agent == am.Agent.CLAUDE_CODE:
            self.claude.api_call(ev, who, model, cost)

    def code_change(
        self,
        who: _Who,
        *,
        added: float | None = None,
        removed: float | None = None,
        commits: float | None = None,
        pull_requests: float | None = None,
    ) -> None:
        if added:
            self.lines.inc(who.labels(type="added"), added)
        if removed:
            self.lines.inc(who.labels(type="removed"), removed)
        if commits:
            self.commits.inc(who.labels(), commits)
        if pull_requests:
            self.pull_requests.inc(who.labels(), pull_requests)
        if self.claude is not None and who.agent == am.Agent.CLAUDE_CODE:
            self.claude.code_change(who, added, removed, commits, pull_requests)

    # --- metrics ----------------------------------------------------------------------------
    def consume_metrics(self, data: MetricsData) -> None:
        skipped: dict[str, int] = {}
        with self._lock:
            now = self._clock()
            for rm in data.resource_metrics:
                resource = _attributes(rm.resource.attributes, prefix=None)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        kind = metric.WhichOneof("data")
                        points = len(getattr(metric, kind).data_points) if kind else 0
                        reason = ClaudeCodeMetrics.unsupported(metric)
                        if reason:
                            skipped[reason] = skipped.get(reason, 0) + points
                            continue
                        for point in metric.sum.data_points:
                            attrs = {**resource, **_attributes(point.attributes, prefix=None)}
                            try:
                                reason = self._point(metric.name, point, attrs, now)
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

    def _point(self, name: str, point: Any, attrs: dict[str, Value], now: float) -> str:
        """Count one Claude Code delta point; the reason it was not counted, or ""."""
        if am.AGENT in attrs and name != ClaudeCodeMetrics.ACTIVE_TIME:
            # The normalize processor marked this point and derives a code_change event from it,
            # which this exporter counts when it is on the logs pipeline too.
            return "normalised_as_events"
        if not self._events.add(_point_key(name, point, attrs)):
            return "duplicate"
        value = float(point.as_int) if point.WhichOneof("value") == "as_int" else point.as_double
        if not math.isfinite(value):  # NaN or infinity would poison the counter for good
            return "invalid_value"
        who = self._who(attrs, fallback=attrs)
        who.agent = who.agent or am.Agent.CLAUDE_CODE.value
        self._seen(who, now)
        if not self._claude_point(name, _text(attrs.get("type")), who, value):
            return "unused_metric"
        return ""

    def _claude_point(self, name: str, point_type: str, who: _Who, value: float) -> bool:
        if name == ClaudeCodeMetrics.LINES:
            if point_type == "added":
                self.code_change(who, added=value)
            elif point_type == "removed":
                self.code_change(who, removed=value)
            else:
                return False
        elif name == ClaudeCodeMetrics.COMMITS:
            self.code_change(who, commits=value)
        elif name == ClaudeCodeMetrics.PULL_REQUESTS:
            self.code_change(who, pull_requests=value)
        elif name == ClaudeCodeMetrics.ACTIVE_TIME:
            if self.claude is None:
                return False
            self.claude.active_time(who, point_type, value)
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


def _collect(
    kvs: Iterable[KeyValue],
    resource: dict[str, Value],
    events: list[dict[str, Value]],
    skipped: dict[str, int],
) -> None:
    """Add one record's agent event (its keys over the resource's) or count it skipped."""
    attrs = _attributes(kvs)
    if am.EVENT not in attrs:
        skipped["not_agent_event"] = skipped.get("not_agent_event", 0) + 1
        return
    events.append({**resource, **attrs} if resource else attrs)


def _point_key(name: str, point: Any, attrs: dict[str, Value]) -> str:
    """Idempotency key of a delta point: the same point delivered twice has the same key."""
    h = hashlib.sha256(name.encode())
    for k in sorted(attrs):
        h.update(f"\x00{k}\x01{attrs[k]!r}".encode())
    h.update(f"\x02{point.start_time_unix_nano}:{point.time_unix_nano}".encode())
    h.update(point.SerializeToString(deterministic=True))
    return "m:" + h.hexdigest()[:32]


# --------------------------------------------------------------------------------------------
# Claude Code: its delta metrics, and its own metric names for dashboard 25255
# --------------------------------------------------------------------------------------------


class ClaudeCodeMetrics:
    """Claude Code's metric names and labels, as Grafana dashboard 25255 queries them.

    The dashboard filters on ``organization_id`` and ``user_email`` and groups by ``model``,
    ``type``, ``decision`` and ``session_id``. Token types use Claude's names (``cacheRead``,
    ``cacheCreation``). Derived from ``claude_code`` events, so whatever reached agentwatch
    counts exactly once; Claude's own token and cost metrics (which repeat the events) are not
    read. Lines of code, commits, pull requests and active time exist only as Claude's delta
    metrics and are read from them.
    """

    LINES = "claude_code.lines_of_code.count"
    COMMITS = "claude_code.commit.count"
    PULL_REQUESTS = "claude_code.pull_request.count"
    ACTIVE_TIME = "claude_code.active_time.total"
    ACCEPTED = frozenset((LINES, COMMITS, PULL_REQUESTS, ACTIVE_TIME))
    TOKEN_TYPES = (
        ("input", am.INPUT_TOKENS),
        ("output", am.OUTPUT_TOKENS),
        ("cacheRead", am.CACHE_READ_TOKENS),
        ("cacheCreation", am.CACHE_WRITE_TOKENS),
    )
    EDIT_TOOLS = frozenset(("Edit", "MultiEdit", "Write", "NotebookEdit"))

    def __init__(
        self, config: PrometheusConfig, counter: Callable[[str, str, Sequence[str]], _Counter]
    ) -> None:
        self.user = ("user_email",) if config.user_label != "none" else ()
        who = ("organization_id", *self.user)
        session = ("session_id",) if config.claude_code_compat_session_id else ()
        self.tokens = counter(
            "claude_code_token_usage_tokens",
            "Claude Code tokens by type (input, output, cacheRead, cacheCreation).",
            ("type", "model", *who),
        )
        self.cost = counter(
            "claude_code_cost_usage_USD", "Claude Code cost in USD.", ("model", *who, *session)
        )
        self.sessions = counter(
            "claude_code_session_count",
            "Claude Code sessions started.",
            ("terminal_type", *who, *session),
        )
        self.lines = counter(
            "claude_code_lines_of_code_count",
            "Lines of code Claude Code added or removed.",
            ("type", *who),
        )
        self.commits = counter("claude_code_commit_count", "Commits by Claude Code.", who)
        self.pull_requests = counter(
            "claude_code_pull_request_count", "Pull requests by Claude Code.", who
        )
        self.active = counter(
            "claude_code_active_time_seconds", "Claude Code active time by type.", ("type", *who)
        )
        self.edit_decisions = counter(
            "claude_code_code_edit_tool_decision",
            "Claude Code edit tool permission decisions.",
            ("decision", "tool_name", *who),
        )
        self.families: list[_Family] = [
            self.tokens,
            self.cost,
            self.sessions,
            self.lines,
            self.commits,
            self.pull_requests,
            self.active,
            self.edit_decisions,
        ]

    @classmethod
    def unsupported(cls, metric: Any) -> str:
        """Why a metric is not read here ("" if it is)."""
        if metric.name not in cls.ACCEPTED:
            return "unsupported_metric"
        if metric.WhichOneof("data") != "sum":
            return "unsupported_metric"
        if (
            metric.sum.aggregation_temporality
            != AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
        ):
            return "not_delta"
        return ""

    @staticmethod
    def _who(who: _Who, **extra: str) -> dict[str, str]:
        return {
            "organization_id": who.organization,
            "user_email": who.user,
            "session_id": who.session,
            "terminal_type": who.terminal,
            **extra,
        }

    def api_call(self, ev: dict[str, Value], who: _Who, model: str, cost: float | None) -> None:
        for token_type, key in self.TOKEN_TYPES:
            n = _number(ev.get(key))
            if n:
                self.tokens.inc(self._who(who, type=token_type, model=model), n)
        if cost is not None:
            self.cost.inc(self._who(who, model=model), cost)

    def session(self, who: _Who) -> None:
        self.sessions.inc(self._who(who))

    def tool_decision(self, who: _Who, tool: str, decision: str) -> None:
        if tool in self.EDIT_TOOLS:
            self.edit_decisions.inc(self._who(who, decision=decision, tool_name=tool))

    def code_change(
        self,
        who: _Who,
        added: float | None,
        removed: float | None,
        commits: float | None,
        pull_requests: float | None,
    ) -> None:
        if added:
            self.lines.inc(self._who(who, type="added"), added)
        if removed:
            self.lines.inc(self._who(who, type="removed"), removed)
        if commits:
            self.commits.inc(self._who(who), commits)
        if pull_requests:
            self.pull_requests.inc(self._who(who), pull_requests)

    def active_time(self, who: _Who, kind: str, seconds: float) -> None:
        self.active.inc(self._who(who, type=kind), seconds)


# --------------------------------------------------------------------------------------------
# The exporter and its HTTP endpoint
# --------------------------------------------------------------------------------------------


class _Forward:
    """Serves another registry's metrics (the collector's self-telemetry) on this endpoint."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


def _server_class(host: str) -> type[ThreadingWSGIServer]:
    if ":" not in host:
        return ThreadingWSGIServer

    class V6Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6

    return V6Server


def load_user_key(config: PrometheusConfig, data_dir: str) -> bytes | None:
    """The HMAC key of ``user_label: hashed``: configured, or generated once and kept."""
    if config.user_label != "hashed":
        return None
    if config.user_hash_key:
        return config.user_hash_key.encode()
    path = Path(data_dir) / "prometheus_user_hash.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        log.info("generated a user hash key", extra={"path": str(path)})
    return path.read_text().strip().encode()


class PrometheusExporter(Exporter):
    def __init__(
        self, name: str, config: PrometheusConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(name, config)
        self.cfg = config
        self._clock = clock
        self.metrics: DerivedMetrics | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self._server: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self, host: Host) -> None:
        self.metrics = DerivedMetrics(
            self.name, self.cfg, load_user_key(self.cfg, host.data_dir), self._clock
        )
        self.registry.register(self.metrics)  # type: ignore[arg-type]
        self.registry.register(_Forward(telemetry.REGISTRY))  # type: ignore[arg-type]
        metrics_app = make_wsgi_app(self.registry)
        path = self.cfg.path

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != path:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [f"metrics are served at {path}\n".encode()]
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]

        bind_host, port = parse_endpoint(self.cfg.endpoint)
        server = make_server(
            bind_host, port, app, server_class=_server_class(bind_host), handler_class=_QuietHandler
        )
        self._server = server
        self.port = server.server_port
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name=f"prometheus:{self.name}", daemon=True
        )
        self._thread.start()
        log.info(
            "serving metrics",
            extra={"component": self.name, "address": f"{bind_host}:{self.port}{path}"},
        )

    def consume_logs(self, data: LogsData, batch_id: str) -> None:
        assert self.metrics is not None, "exporter not started"
        self.metrics.consume_logs(data)

    def consume_metrics(self, data: MetricsData, batch_id: str) -> None:
        assert self.metrics is not None, "exporter not started"
        self.metrics.consume_metrics(data)

    def consume_traces(self, data: TracesData, batch_id: str) -> None:
        assert self.metrics is not None, "exporter not started"
        self.metrics.consume_traces(data)

    def shutdown(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None


FACTORY = Factory(
    type_name="prometheus",
    kind="exporter",
    config_class=PrometheusConfig,
    create=lambda name, cfg: PrometheusExporter(name, cfg),
    signals=frozenset((Signal.LOGS, Signal.METRICS, Signal.TRACES)),
)
