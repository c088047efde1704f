"""Writes what reaches it as OTLP JSON lines, for troubleshooting and for tests.

Each line is ``{"signal": ..., "batch_id": ..., "request": <OTLP JSON>}``, so a test can read back
exactly what arrived, attribute by attribute, in the format the OTLP spec defines.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import TextIO

from pydantic import Field

from collector.component import (
    ConfigContext,
    Exporter,
    ExporterConfig,
    Factory,
    Host,
    MetricsData,
    Signal,
    Telemetry,
)
from collector.config import resolve_path
from collector.records import Logs, Traces


class DebugConfig(ExporterConfig):
    path: str = Field(default="-", description="File to append JSON lines to; '-' is stdout.")

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        if self.path != "-":
            parent = resolve_path(self.path, ctx.base_dir).parent
            if not parent.is_dir():
                return [f"{path}.path: directory {parent} does not exist"]
        return []


class DebugExporter(Exporter):
    config: DebugConfig

    """Takes records and writes them as OTLP JSON, encoded once per batch."""

    def __init__(self, name: str, config: DebugConfig) -> None:
        super().__init__(name, config)
        self._out: TextIO | None = None
        self._lock = threading.Lock()

    def start(self, host: Host) -> None:
        if self.config.path == "-":
            self._out = sys.stdout
        else:
            target = Path(self.config.path).expanduser()
            self._out = open(target, "a", encoding="utf-8")  # noqa: SIM115 - open for the run

    def _write(self, signal: Signal, data: Telemetry, batch_id: str) -> None:
        from collector import otlp_json

        line = json.dumps(
            {
                "signal": signal.value,
                "batch_id": batch_id,
                "request": json.loads(otlp_json.encode(data)),
            },
            separators=(",", ":"),
        )
        with self._lock:
            assert self._out is not None
            self._out.write(line + "\n")
            self._out.flush()

    def consume_logs(self, data: Logs, batch_id: str) -> None:
        self._write(Signal.LOGS, data.to_proto(), batch_id)

    def consume_metrics(self, data: MetricsData, batch_id: str) -> None:
        self._write(Signal.METRICS, data, batch_id)

    def consume_traces(self, data: Traces, batch_id: str) -> None:
        self._write(Signal.TRACES, data.to_proto(), batch_id)

    def shutdown(self) -> None:
        with self._lock:
            if self._out is not None and self._out is not sys.stdout:
                self._out.close()
            self._out = None


FACTORY = Factory(
    type_name="debug",
    kind="exporter",
    config_class=DebugConfig,
    create=lambda name, config: DebugExporter(name, config),
)
