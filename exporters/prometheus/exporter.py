"""The ``prometheus`` exporter: derived metrics from normalised agent events, plus the
self-metrics, on its own scrape endpoint.

Prometheus pulls, so this exporter keeps counters in memory (:mod:`.derived`) and serves them
(:mod:`.server`). The ``user`` label is an e-mail, an HMAC of it, or absent.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from collector import telemetry
from collector.component import Exporter, Host, MetricsData, parse_endpoint
from collector.records import Logs, Traces
from exporters.prometheus.config import PrometheusConfig
from exporters.prometheus.derived import DerivedMetrics
from exporters.prometheus.server import Forward, ScrapeServer

log = logging.getLogger("agentwatch.exporter.prometheus")


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
    config: PrometheusConfig

    def __init__(
        self, name: str, config: PrometheusConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(name, config)
        self._clock = clock
        self.metrics: DerivedMetrics | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self._server = ScrapeServer(self.registry, config.path)

    @property
    def port(self) -> int:
        """The port served on (the one picked when the endpoint says port 0)."""
        return self._server.port

    def start(self, host: Host) -> None:
        self.metrics = DerivedMetrics(
            self.name, self.config, load_user_key(self.config, host.data_dir), self._clock
        )
        self.registry.register(self.metrics)  # type: ignore[arg-type]
        self.registry.register(Forward(telemetry.REGISTRY))  # type: ignore[arg-type]
        bind_host, port = parse_endpoint(self.config.endpoint)
        self._server.start(bind_host, port, f"prometheus:{self.name}")
        log.info(
            "serving metrics",
            extra={"component": self.name, "address": f"{bind_host}:{self.port}{self.config.path}"},
        )

    def consume_logs(self, data: Logs, batch_id: str) -> None:
        assert self.metrics is not None, "exporter not started"
        self.metrics.consume_logs(data)

    def consume_metrics(self, data: MetricsData, batch_id: str) -> None:
        assert self.metrics is not None, "exporter not started"
        self.metrics.consume_metrics(data)

    def consume_traces(self, data: Traces, batch_id: str) -> None:
        assert self.metrics is not None, "exporter not started"
        self.metrics.consume_traces(data)

    def shutdown(self) -> None:
        self._server.stop()
