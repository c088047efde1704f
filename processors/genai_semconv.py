"""OpenTelemetry GenAI semantic conventions, derived from the unified agent event keys.

Every vendor normaliser first produces ``agentwatch.*`` keys; this module turns those into the
``gen_ai.*`` attributes a GenAI-aware backend expects, so the mapping is written once and not
per vendor. It follows the GenAI conventions in ``opentelemetry-semantic-conventions`` 0.66b2
(the attribute set of the last revision in open-telemetry/semantic-conventions before the
GenAI conventions moved to their own repository; see docs/genai-semconv.md).

The conventions count tokens differently from agentwatch: ``gen_ai.usage.input_tokens``
includes the cache-read and cache-creation tokens, which agentwatch keeps apart.

It also builds the two client histograms, ``gen_ai.client.token.usage`` and
``gen_ai.client.operation.duration``, for agents that do not emit them (Claude Code, Codex).
"""

from __future__ import annotations

import bisect
import functools
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

from collector import agent_model as am
from collector.agent_model import EventType
from collector.component import MetricsData
from collector.otlp_values import encode_attributes
from collector.records import Resource
from processors.vendors import DERIVED_SCOPE

Scalar = str | bool | int | float

TOKEN_USAGE_METRIC = "gen_ai.client.token.usage"
OPERATION_DURATION_METRIC = "gen_ai.client.operation.duration"
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
"""Bucket boundaries the conventions recommend for the two histograms."""

_CALL_EVENTS = (EventType.API_CALL.value, EventType.API_ERROR.value)


def semconv_attributes(
    event: Mapping[str, Scalar], provider: str, operation: str
) -> dict[str, Scalar]:
    """``gen_ai.*`` attributes of one normalised agent event (``agentwatch.*`` keys)."""
    out: dict[str, Scalar] = {}
    kind = event.get(am.EVENT)
    out[ga.GEN_AI_PROVIDER_NAME] = event.get(am.PROVIDER) or provider
    session = event.get(am.SESSION_ID)
    if session:
        out[ga.GEN_AI_CONVERSATION_ID] = session
    if kind in _CALL_EVENTS:
        out[ga.GEN_AI_OPERATION_NAME] = operation
        model = event.get(am.MODEL)
        if model:
            out[ga.GEN_AI_REQUEST_MODEL] = model
            out[ga.GEN_AI_RESPONSE_MODEL] = model
        request_id = event.get(am.REQUEST_ID)
        if request_id:
            out[ga.GEN_AI_RESPONSE_ID] = request_id
        if kind == EventType.API_ERROR.value:
            out[ERROR_TYPE] = str(event.get(am.STATUS) or "_OTHER")
        else:
            out.update(usage_attributes(event))
    elif kind == EventType.TOOL_CALL.value:
        out[ga.GEN_AI_OPERATION_NAME] = "execute_tool"
        name = event.get(am.TOOL_NAME)
        if name:
            out[ga.GEN_AI_TOOL_NAME] = name
        call_id = event.get(am.TOOL_CALL_ID)
        if call_id:
            out[ga.GEN_AI_TOOL_CALL_ID] = call_id
        out[ga.GEN_AI_TOOL_TYPE] = "extension" if event.get(am.MCP_SERVER) else "function"
    return out


def usage_attributes(event: Mapping[str, Scalar]) -> dict[str, int]:
    """Token attributes in the conventions' sense: input includes both cache classes."""
    uncached = event.get(am.INPUT_TOKENS)
    uncached = uncached if type(uncached) is int else _int(uncached)  # ints: no call
    cache_read = event.get(am.CACHE_READ_TOKENS)
    cache_read = cache_read if type(cache_read) is int else _int(cache_read)
    cache_write = event.get(am.CACHE_WRITE_TOKENS)
    cache_write = cache_write if type(cache_write) is int else _int(cache_write)
    output = event.get(am.OUTPUT_TOKENS)
    out = {
        ga.GEN_AI_USAGE_INPUT_TOKENS: uncached + cache_read + cache_write,
        ga.GEN_AI_USAGE_OUTPUT_TOKENS: output if type(output) is int else _int(output),
        ga.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: cache_read,
        ga.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: cache_write,
    }
    if am.REASONING_TOKENS in event:
        out[ga.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = _int(event.get(am.REASONING_TOKENS))
    return out


def _int(value: Scalar | None) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


# --- derived client metrics -------------------------------------------------------------------
class _Histogram:
    """The observations of one histogram point; bucketed once, when the batch is built."""

    __slots__ = ("bounds", "times", "values")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.values: list[float] = []
        self.times: list[int] = []

    def point(self, point: metrics_pb2.HistogramDataPoint) -> None:
        """Fill a DELTA point: bucket counts, count, sum, min, max and the time range."""
        values, times = self.values, self.times
        ordered = sorted(values)  # bucket i holds bounds[i-1] < value <= bounds[i]
        below = [bisect.bisect_right(ordered, bound) for bound in self.bounds]
        counts = [b - a for a, b in zip([0, *below], [*below, len(ordered)], strict=True)]
        total = functools.reduce(operator.add, values, 0.0)  # in arrival order, as always
        end = max(times)
        if 0 in times:  # a time of 0 is left out of the start unless it comes first
            start = 0
            for when in times:
                start = when if not start else min(start, when)
        else:
            start = min(times)
        point.start_time_unix_nano = start
        point.time_unix_nano = end
        point.count = len(self.values)
        point.sum = total
        point.min = min(self.values)
        point.max = max(self.values)
        point.explicit_bounds.extend(float(b) for b in self.bounds)
        point.bucket_counts.extend(counts)


_HistogramKey = tuple[str, tuple[tuple[str, Scalar], ...]]
"""(metric name, sorted attributes): one histogram point."""


@dataclass
class _ResourceSeries:
    resource: resource_pb2.Resource
    histograms: dict[_HistogramKey, _Histogram] = field(default_factory=dict)


class _Group:
    """The histograms of one resource and low-cardinality attribute set (provider, model,
    agent, team, cost centre): what every call of a batch with those values adds to."""

    __slots__ = ("base", "histograms", "input_tokens", "output_tokens", "series")

    def __init__(self, series: _ResourceSeries, base: dict[str, Scalar]) -> None:
        self.series = series
        self.base = base
        self.histograms: dict[tuple[str, str | None], _Histogram] = {}
        self.input_tokens: _Histogram | None = None  # made on the first call: a group of
        self.output_tokens: _Histogram | None = None  # errors only has no token points

    def histogram(self, metric: str, extra: str | None) -> _Histogram:
        """``extra``: the token type of a usage point, the error type of a duration point."""
        found = self.histograms.get((metric, extra))
        if found is None:
            attrs = dict(self.base)
            if extra:
                attrs[ga.GEN_AI_TOKEN_TYPE if metric == TOKEN_USAGE_METRIC else ERROR_TYPE] = extra
            key = (metric, tuple(sorted(attrs.items())))
            found = self.series.histograms.get(key)
            if found is None:
                bounds = TOKEN_BUCKETS if metric == TOKEN_USAGE_METRIC else DURATION_BUCKETS
                found = self.series.histograms[key] = _Histogram(bounds)
            self.histograms[(metric, extra)] = found
        return found

    def add_call(self, event: Mapping[str, Scalar], time_unix_nano: int) -> None:
        """Token usage of one ``api_call`` event (input counted the conventions' way)."""
        uncached = event.get(am.INPUT_TOKENS)
        cache_read = event.get(am.CACHE_READ_TOKENS)
        cache_write = event.get(am.CACHE_WRITE_TOKENS)
        output = event.get(am.OUTPUT_TOKENS)
        total = (
            (uncached if type(uncached) is int else _int(uncached))
            + (cache_read if type(cache_read) is int else _int(cache_read))
            + (cache_write if type(cache_write) is int else _int(cache_write))
        )
        input_tokens, output_tokens = self.input_tokens, self.output_tokens
        if input_tokens is None or output_tokens is None:
            input_tokens = self.input_tokens = self.histogram(TOKEN_USAGE_METRIC, "input")
            output_tokens = self.output_tokens = self.histogram(TOKEN_USAGE_METRIC, "output")
        input_tokens.values.append(float(total))
        input_tokens.times.append(time_unix_nano)
        output_tokens.values.append(float(output if type(output) is int else _int(output)))
        output_tokens.times.append(time_unix_nano)

    def add_duration(self, seconds: float, error_type: str | None, time_unix_nano: int) -> None:
        hist = self.histogram(OPERATION_DURATION_METRIC, error_type)
        hist.values.append(seconds)
        hist.times.append(time_unix_nano)


class DerivedClientMetrics:
    """Accumulates one batch's calls into the two GenAI client histograms (DELTA).

    Points are aggregated per resource and attribute set, so a batch of a hundred calls of one
    model becomes one histogram point per token type, not a hundred.
    """

    def __init__(self) -> None:
        self._by_resource: dict[bytes, _ResourceSeries] = {}
        self._by_object: dict[int, tuple[Resource, _ResourceSeries]] = {}
        self._groups: dict[tuple[object, ...], _Group] = {}

    def __bool__(self) -> bool:
        return bool(self._by_resource)

    def _series(self, resource: Resource) -> _ResourceSeries:
        """The series of a resource: records of one request share their resource object, and
        equal resources of different requests (or objects) share one series."""
        known = self._by_object.get(id(resource))
        if known is not None and known[0] is resource:
            return known[1]
        message = resource_pb2.Resource(dropped_attributes_count=resource.dropped_attributes_count)
        encode_attributes(resource.attributes, message.attributes)
        key = message.SerializeToString(deterministic=True)
        series = self._by_resource.get(key)
        if series is None:
            series = self._by_resource[key] = _ResourceSeries(message)
        self._by_object[id(resource)] = (resource, series)
        return series

    def group(
        self, resource: Resource, event: Mapping[str, Scalar], provider: str, operation: str
    ) -> _Group:
        """The histograms an event adds to, looked up once per event (one tuple, one dict
        get); the resource object is kept alive by the batch, so its id is stable."""
        memo = (
            id(resource),
            event.get(am.PROVIDER) or provider,
            operation,
            event.get(am.MODEL),
            event.get(am.AGENT),
            event.get(am.TEAM),
            event.get(am.COST_CENTER),
        )
        found = self._groups.get(memo)
        if found is None:
            base = _metric_attributes(event, provider, operation)
            found = self._groups[memo] = _Group(self._series(resource), base)
        return found

    def build(self, scope_version: str = "") -> MetricsData:
        data = MetricsData()
        for series in self._by_resource.values():
            rm = data.resource_metrics.add()
            rm.resource.CopyFrom(series.resource)
            sm = rm.scope_metrics.add()
            sm.scope.CopyFrom(InstrumentationScope(name=DERIVED_SCOPE, version=scope_version))
            metrics: dict[str, metrics_pb2.Metric] = {}
            for (name, attributes), hist in series.histograms.items():
                metric = metrics.get(name)
                if metric is None:
                    metric = metrics[name] = sm.metrics.add()
                    metric.name = name
                    metric.unit = "{token}" if name == TOKEN_USAGE_METRIC else "s"
                    metric.description = _DESCRIPTIONS[name]
                    metric.histogram.aggregation_temporality = (
                        metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
                    )
                point = metric.histogram.data_points.add()
                encode_attributes(dict(attributes), point.attributes)
                hist.point(point)
        return data


_DESCRIPTIONS = {
    TOKEN_USAGE_METRIC: "Number of input and output tokens used (derived by agentwatch).",
    OPERATION_DURATION_METRIC: "GenAI operation duration (derived by agentwatch).",
}


def _metric_attributes(
    event: Mapping[str, Scalar], provider: str, operation: str
) -> dict[str, Scalar]:
    """Low-cardinality attributes only: no session or user ids on a histogram."""
    attrs: dict[str, Scalar] = {
        ga.GEN_AI_OPERATION_NAME: operation,
        ga.GEN_AI_PROVIDER_NAME: str(event.get(am.PROVIDER) or provider),
    }
    model = event.get(am.MODEL)
    if model:
        attrs[ga.GEN_AI_REQUEST_MODEL] = model
        attrs[ga.GEN_AI_RESPONSE_MODEL] = model
    for key in (am.AGENT, am.TEAM, am.COST_CENTER):
        value = event.get(key)
        if value:
            attrs[key] = value
    return attrs
