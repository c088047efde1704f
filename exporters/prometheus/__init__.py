"""The ``prometheus`` exporter: agentwatch's derived metrics and self-metrics for scraping.

``config`` holds its settings, ``families`` the exposed metric families, ``derived`` how agent
events become metric updates, ``claude_compat`` Claude Code's own metric names (from the vendor
class), ``server`` the scrape endpoint, and ``exporter`` the component itself.
"""

from __future__ import annotations

from collector.component import Factory, Signal
from exporters.prometheus.config import PrometheusConfig
from exporters.prometheus.exporter import PrometheusExporter

FACTORY: Factory[PrometheusExporter] = Factory(
    type_name="prometheus",
    kind="exporter",
    config_class=PrometheusConfig,
    create=lambda name, config: PrometheusExporter(name, config),
    signals=frozenset((Signal.LOGS, Signal.METRICS, Signal.TRACES)),
)

__all__ = ["FACTORY", "PrometheusConfig", "PrometheusExporter"]
