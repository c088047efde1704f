"""Self-telemetry: what the collector accepted, refused, dropped and queued.

Every component records into one prometheus-client registry, so the numbers are readable in
process now (``value()``) and the Prometheus exporter serves the very same objects later. Every
drop anywhere must be counted here: an uncounted drop is a bug.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # the *_created series only add noise to every scrape

REGISTRY = CollectorRegistry(auto_describe=True)
_LOCK = threading.Lock()
_METRICS: dict[str, Counter | Gauge | Histogram] = {}


def counter(name: str, documentation: str, labels: tuple[str, ...]) -> Counter:
    """Get or create a counter; ``name`` without the ``_total`` suffix prometheus-client adds."""
    with _LOCK:
        metric = _METRICS.get(name)
        if metric is None:
            metric = Counter(name, documentation, labels, registry=REGISTRY)
            _METRICS[name] = metric
    assert isinstance(metric, Counter)
    return metric


def gauge(name: str, documentation: str, labels: tuple[str, ...]) -> Gauge:
    with _LOCK:
        metric = _METRICS.get(name)
        if metric is None:
            metric = Gauge(name, documentation, labels, registry=REGISTRY)
            _METRICS[name] = metric
    assert isinstance(metric, Gauge)
    return metric


def histogram(
    name: str, documentation: str, labels: tuple[str, ...], buckets: tuple[float, ...]
) -> Histogram:
    with _LOCK:
        metric = _METRICS.get(name)
        if metric is None:
            metric = Histogram(name, documentation, labels, buckets=buckets, registry=REGISTRY)
            _METRICS[name] = metric
    assert isinstance(metric, Histogram)
    return metric


def value(name: str, **labels: str) -> float:
    """Current value of one series (0 when it has never been touched); for tests and /ready."""
    v = REGISTRY.get_sample_value(name, labels)
    return 0.0 if v is None else v


RECEIVER_ACCEPTED = counter(
    "agentwatch_receiver_accepted_items",
    "Log records, metric points or spans a receiver accepted into a pipeline.",
    ("receiver", "signal"),
)
RECEIVER_REFUSED = counter(
    "agentwatch_receiver_refused_items",
    "Items a receiver refused, by reason; the client was told and keeps them.",
    ("receiver", "signal", "reason"),
)
RECEIVER_REQUESTS_REFUSED = counter(
    "agentwatch_receiver_refused_requests",
    "Requests a receiver refused before decoding any item (bad payload, auth, size, method).",
    ("receiver", "transport", "reason"),
)
EXPORTER_SENT = counter(
    "agentwatch_exporter_sent_items",
    "Items an exporter delivered.",
    ("exporter", "signal"),
)
EXPORTER_DROPPED = counter(
    "agentwatch_exporter_dropped_items",
    "Items an exporter gave up on after accepting them, by reason.",
    ("exporter", "signal", "reason"),
)
EXPORTER_FAILED_ATTEMPTS = counter(
    "agentwatch_exporter_failed_attempts",
    "Delivery attempts that failed and were retried or dropped.",
    ("exporter", "signal", "retryable"),
)
EXPORTER_QUEUE_SIZE = gauge(
    "agentwatch_exporter_queue_size",
    "Items waiting in an exporter's queue of one signal.",
    ("exporter", "signal"),
)
EXPORTER_QUEUE_CAPACITY = gauge(
    "agentwatch_exporter_queue_capacity",
    "Items an exporter's queue of one signal may hold before it pushes back.",
    ("exporter", "signal"),
)
EXPORTER_WAL_BYTES = gauge(
    "agentwatch_exporter_wal_bytes",
    "Bytes of undelivered records in an exporter's write-ahead log of one signal.",
    ("exporter", "signal"),
)
EXPORTER_WAL_MAX_BYTES = gauge(
    "agentwatch_exporter_wal_max_bytes",
    "The bound of an exporter's write-ahead log of one signal (sending_queue.max_bytes); "
    "at it, the exporter pushes back or drops (on_full).",
    ("exporter", "signal"),
)
EXPORTER_SEND_SECONDS = histogram(
    "agentwatch_exporter_send_duration_seconds",
    "Time one delivery attempt of one batch took.",
    ("exporter", "signal"),
    (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0),
)
PROCESSOR_DROPPED = counter(
    "agentwatch_processor_dropped_items",
    "Items a processor removed on purpose (filtering, dedup), by reason.",
    ("processor", "signal", "reason"),
)
