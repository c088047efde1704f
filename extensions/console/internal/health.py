"""Pipeline health from agentwatch's own counters (collector/telemetry.py's registry)."""

from __future__ import annotations

from typing import Any

from collector import telemetry

SHOWN = {
    "agentwatch_receiver_accepted_items": "accepted",
    "agentwatch_receiver_refused_items": "refused",
    "agentwatch_receiver_refused_requests": "refused_requests",
    "agentwatch_exporter_sent_items": "sent",
    "agentwatch_exporter_dropped_items": "dropped",
    "agentwatch_exporter_failed_attempts": "failed_attempts",
    "agentwatch_processor_dropped_items": "processor_dropped",
    "agentwatch_exporter_queue_size": "queue_size",
    "agentwatch_exporter_queue_capacity": "queue_capacity",
    "agentwatch_exporter_wal_bytes": "wal_bytes",
}
"""Self-metric (as registered, without ``_total``) -> its key in the health answer."""


def self_metrics() -> dict[str, list[dict[str, Any]]]:
    """Every series of the shown metrics, as ``{"labels...": ..., "value": v}`` rows."""
    out: dict[str, list[dict[str, Any]]] = {key: [] for key in SHOWN.values()}
    for metric in telemetry.REGISTRY.collect():
        key = SHOWN.get(metric.name)
        if key is None:
            continue
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue
            out[key].append({**sample.labels, "value": sample.value})
    for rows in out.values():
        rows.sort(key=lambda r: tuple(str(v) for k, v in r.items() if k != "value"))
    return out
