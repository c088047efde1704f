"""The component model: receivers, processors and exporters, as in the OpenTelemetry Collector.

Receivers hand on the OTLP protobuf export requests they parsed (``ExportLogsServiceRequest``
and friends). The pipeline decodes logs and traces once into the record model
(:mod:`collector.records`) that every processor and exporter then shares; metrics stay protobuf.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from collector.records import Logs, Records, Traces

LogsData = ExportLogsServiceRequest
MetricsData = ExportMetricsServiceRequest
TracesData = ExportTraceServiceRequest
Telemetry = LogsData | MetricsData | TracesData


class Signal(enum.StrEnum):
    LOGS = "logs"
    METRICS = "metrics"
    TRACES = "traces"


REQUEST_TYPES: dict[Signal, type[Telemetry]] = {
    Signal.LOGS: LogsData,
    Signal.METRICS: MetricsData,
    Signal.TRACES: TracesData,
}


def signal_of(data: Telemetry | Records) -> Signal:
    if isinstance(data, LogsData | Logs):
        return Signal.LOGS
    if isinstance(data, MetricsData):
        return Signal.METRICS
    return Signal.TRACES


def count_items(data: Telemetry | Records) -> int:
    """Log records, metric data points or spans: the unit the OTLP spec counts rejections in."""
    if isinstance(data, Logs | Traces):
        return len(data)
    if isinstance(data, LogsData):
        return sum(len(s.log_records) for r in data.resource_logs for s in r.scope_logs)
    if isinstance(data, TracesData):
        return sum(len(s.spans) for r in data.resource_spans for s in r.scope_spans)
    n = 0
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind is not None:
                    n += len(getattr(m, kind).data_points)
    return n


class ComponentConfig(BaseModel):
    """Base of every component's typed config: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        """Semantic checks pydantic cannot express (files exist, ranges relate); returns errors."""
        return []


@dataclass(frozen=True)
class ConfigContext:
    """What a config check may need to know about its surroundings."""

    base_dir: str
    data_dir: str


def parse_duration(value: object) -> float:
    """Seconds from ``1.5``, ``"500ms"``, ``"10s"``, ``"5m"``, ``"2h"`` or ``"1d"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10s or 500ms")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.fullmatch(value.strip())
        if not m:
            raise ValueError(
                f"invalid duration {value!r}: use a number of seconds or e.g. 500ms, 10s, 5m, 2h"
            )
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
    else:
        raise ValueError("expected a duration such as 10s or 500ms")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """A listening endpoint: ``host:port``, ``[v6]:port`` or ``:port`` (all interfaces) to
    (host, port); every server of the collector (receivers, scrape endpoint, console) reads its
    ``endpoint`` with this one function."""
    host, sep, port_text = endpoint.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"{endpoint!r} is not host:port")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", port


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in config as a number or with a unit."""


class RetryConfig(ComponentConfig):
    enabled: bool = True
    initial_interval: Duration = 0.5
    max_interval: Duration = 30.0
    max_elapsed_time: Duration = Field(
        default=0.0, description="Give up (and count a drop) after this long; 0 retries forever."
    )


class QueueConfig(ComponentConfig):
    storage: Literal["memory", "wal"] = Field(
        default="memory",
        description="memory: lost on crash; wal: write-ahead log under the data directory.",
    )
    queue_size: int = Field(
        default=50_000,
        gt=0,
        description="Items (records, points, spans) each signal's queue holds before pushing back.",
    )
    max_bytes: int = Field(default=256 * 1024 * 1024, gt=0, description="Byte bound of the wal.")
    on_full: Literal["refuse", "drop"] = Field(
        default="refuse",
        description="refuse: receivers answer 429/503 so clients retry; drop: this exporter "
        "drops the batch (counted) and the others go on.",
    )
    batch_max_items: int = Field(
        default=10_000, gt=0, description="Most items merged into one delivery."
    )
    batch_timeout: Duration = Field(
        default=0.2, description="How long a delivery waits for more items before it goes."
    )
    fsync: Literal["interval", "always"] = Field(
        default="interval",
        description="wal only. interval: fsync once a second (survives kill -9, loses up to a "
        "second on power loss); always: fsync before acknowledging each request.",
    )


class ExporterConfig(ComponentConfig):
    """Settings every exporter shares: its own queue and retry policy."""

    sending_queue: QueueConfig = Field(default_factory=QueueConfig)
    retry_on_failure: RetryConfig = Field(default_factory=RetryConfig)


class ExportError(Exception):
    """Raised by an exporter when a batch could not be delivered."""

    retryable: bool = True

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class PermanentExportError(ExportError):
    def __init__(self, message: str):
        super().__init__(message, retryable=False)


class Component:
    """Lifecycle shared by all components; ``name`` is the config key (``clickhouse/archive``)."""

    kind: ClassVar[str] = "component"

    def __init__(self, name: str, config: ComponentConfig) -> None:
        self.name = name
        self.config = config

    def start(self, host: Host) -> None:
        """Acquire resources; raise to refuse to start."""

    def shutdown(self) -> None:
        """Release resources; must be idempotent."""


class Processor(Component):
    """Transforms a batch in the receiver's thread. Return ``None`` to drop the batch entirely.

    Processors run in order inside ``Pipeline.consume``; they must be cheap and never block on I/O.
    """

    kind = "processor"

    def consume_logs(self, data: Logs) -> Logs | None:
        return data

    def consume_metrics(self, data: MetricsData) -> MetricsData | None:
        return data

    def consume_traces(self, data: Traces) -> Traces | None:
        return data

    def process(self, signal: Signal, data: Any) -> Any:
        """``Logs``/``Traces`` for logs and traces, the protobuf request for metrics."""
        if signal is Signal.LOGS:
            return self.consume_logs(data)  # type: ignore[arg-type]
        if signal is Signal.METRICS:
            return self.consume_metrics(data)  # type: ignore[arg-type]
        return self.consume_traces(data)  # type: ignore[arg-type]


class Exporter(Component):
    """Delivers batches, called from its own queue worker thread, never from a receiver.

    ``batch_id`` is stable for one batch across retries and, with a ``wal`` queue, across
    restarts: exporters that can deduplicate (ClickHouse's ``insert_deduplication_token``) key on
    it so a retried batch is never counted twice. Raise ``ExportError`` (retryable) or
    ``PermanentExportError``; the queue retries the first with backoff and drops-and-counts
    the second.
    """

    kind = "exporter"

    def consume_logs(self, data: Logs, batch_id: str) -> None:
        pass

    def consume_metrics(self, data: MetricsData, batch_id: str) -> None:
        pass

    def consume_traces(self, data: Traces, batch_id: str) -> None:
        pass

    def export(self, signal: Signal, data: Any, batch_id: str) -> None:
        if signal is Signal.LOGS:
            self.consume_logs(data, batch_id)  # type: ignore[arg-type]
        elif signal is Signal.METRICS:
            self.consume_metrics(data, batch_id)  # type: ignore[arg-type]
        else:
            self.consume_traces(data, batch_id)  # type: ignore[arg-type]

    def ready(self) -> bool:
        """Readiness: is the destination reachable? Used by ``GET /ready``."""
        return True


class Receiver(Component):
    """Accepts telemetry from outside and hands it to the ``Consumer`` of each signal's pipeline."""

    kind = "receiver"

    def __init__(self, name: str, config: ComponentConfig) -> None:
        super().__init__(name, config)
        self.consumers: dict[Signal, Consumer] = {}

    def attach(self, signal: Signal, consumer: Consumer) -> None:
        self.consumers[signal] = consumer


class Extension(Component):
    """Runs beside the pipelines, never in the data path (a web console, budget alerts).

    Started after the exporters and pipelines, so it can read what they store, and before the
    receivers; shut down right after the receivers, before queues drain, so it never holds a
    store open that an exporter is closing.
    """

    kind = "extension"


class Refused(Exception):
    """The pipeline refuses a batch it cannot queue; receivers turn this into 429/503 or
    RESOURCE_EXHAUSTED/UNAVAILABLE with a retry hint, and the client keeps the data."""

    def __init__(self, reason: str, retry_after: float = 1.0):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class ConsumeResult:
    """Outcome of a pipeline consume that was accepted: how many items were rejected as invalid."""

    rejected: int = 0
    message: str = ""


class Consumer:
    """What a receiver talks to: a pipeline (or a fan-in of several pipelines)."""

    def consume(
        self, signal: Signal, data: Telemetry | Records
    ) -> ConsumeResult:  # pragma: no cover
        raise NotImplementedError


class Host:
    """What components may ask of the running service."""

    def __init__(self, data_dir: str, ready: Callable[[], bool] | None = None) -> None:
        self.data_dir = data_dir
        self._ready = ready or (lambda: True)
        self.extras: dict[str, Any] = {}
        self.exporters: dict[str, Exporter] = {}

    def ready(self) -> bool:
        return self._ready()

    def exporter(self, type_name: str, name: str | None = None) -> Exporter:
        """The running exporter an extension reads from: ``name`` if given, else the only
        exporter of ``type_name``; ``LookupError`` says which names there are."""
        found = [
            n
            for n in self.exporters
            if n.split("/", 1)[0] == type_name and (name is None or n == name)
        ]
        if len(found) != 1:
            which = f"'{name}'" if name else f"exactly one {type_name} exporter"
            raise LookupError(
                f"needs {which} in the configuration (found: {', '.join(found) or 'none'})"
            )
        return self.exporters[found[0]]


C = TypeVar("C", bound=Component)
CfgT = TypeVar("CfgT", bound=ComponentConfig)


@dataclass(frozen=True)
class Factory(Generic[C]):
    """Builds one component type from its typed config section."""

    type_name: str
    kind: str
    config_class: type[ComponentConfig]
    create: Callable[[str, Any], C]
    signals: frozenset[Signal] = frozenset(Signal)
