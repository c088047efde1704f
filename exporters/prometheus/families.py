"""The exposed metric families: bounded counters and histograms, and agentwatch's own metrics.

Cardinality is bounded by construction: every family folds label sets beyond
``max_series_per_metric`` into one ``__overflow__`` series, counted in
``agentwatch_prometheus_series_folded_total``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from collector import telemetry
from exporters.prometheus.config import PrometheusConfig

OVERFLOW = "__overflow__"
"""Label value of the series that absorbs label sets beyond the per-metric cap."""

SERIES_FOLDED = telemetry.counter(
    "agentwatch_prometheus_series_folded",
    "Updates of a derived metric whose new label set exceeded max_series_per_metric and was "
    "folded into the __overflow__ series.",
    ("exporter", "metric"),
)


class Family:
    """One metric's series, capped: a label set beyond the cap lands in the overflow series.

    Series are keyed by their label values in ``labels`` order: callers build that tuple
    directly (a label dict per update would cost more than the rest of counting an event).
    """

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

    def _admit(self, key: tuple[str, ...]) -> tuple[str, ...]:
        """A label set not seen before: its own series within the cap, else the overflow."""
        if self._admitted >= self.cap:
            self._folded.inc()
            return self.overflow_key
        self._admitted += 1
        return key

    def collect(self) -> Metric:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


class Counter(Family):
    def __init__(self, name: str, doc: str, labels: Sequence[str], cap: int, exporter: str):
        super().__init__(name, doc, labels, cap, exporter)
        self.values: dict[tuple[str, ...], float] = {}

    @property
    def exposed_name(self) -> str:
        return self.name + "_total"

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        """Count ``amount`` into the series of ``key`` (label values in label order)."""
        values = self.values
        old = values.get(key)
        if old is None:
            key = self._admit(key)
            old = values.get(key, 0.0)
        values[key] = old + amount

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in self.values.items():
            family.add_metric(list(key), value)
        return family


CounterMaker = Callable[[str, str, Sequence[str]], Counter]
"""Makes a counter of one exporter with its cap: (name, doc, labels) -> counter."""


@dataclass
class HistogramSeries:
    counts: list[int]
    total: float = 0.0


class Histogram(Family):
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
        self.series: dict[tuple[str, ...], HistogramSeries] = {}

    def observe(self, key: tuple[str, ...], value: float) -> None:
        """Observe ``value`` (finite) in the series of ``key`` (label values in label order)."""
        s = self.series.get(key)
        if s is None:
            key = self._admit(key)
            s = self.series.get(key)
            if s is None:
                s = self.series[key] = HistogramSeries([0] * len(self.bounds))
        s.counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value
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


class AgentwatchFamilies:
    """agentwatch's own derived metrics: names, help texts and labels, vendor-neutral.

    The label order is the key order :mod:`.derived` builds: who is ``agent, team[, user]``
    (``user`` unless ``user_label: none``).
    """

    def __init__(self, exporter: str, config: PrometheusConfig, counter: CounterMaker) -> None:
        user = ("user",) if config.user_label != "none" else ()
        who = ("agent", "team", *user)
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
        self.latency = Histogram(
            "agentwatch_api_call_duration_seconds",
            "Duration of model API calls.",
            ("agent", "model", "status"),
            config.max_series_per_metric,
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
        self.all: list[Family] = [
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
