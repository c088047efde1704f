"""Components for exercising the runtime in tests: a receiver a test pushes into directly, and
an exporter whose destination a test can stall, fail or inspect."""

from __future__ import annotations

import threading
from typing import ClassVar

from collector import registry
from collector.component import (
    ComponentConfig,
    ConsumeResult,
    Exporter,
    ExporterConfig,
    ExportError,
    Extension,
    Factory,
    Host,
    Receiver,
    Signal,
    Telemetry,
)


class InjectConfig(ComponentConfig):
    pass


class InjectReceiver(Receiver):
    def push(self, data: Telemetry) -> ConsumeResult:
        from collector.component import signal_of

        return self.consumers[signal_of(data)].consume(signal_of(data), data)


class RecordingConfig(ExporterConfig):
    fail_times: int = 0
    permanent: bool = False


class RecordingExporter(Exporter):
    """Keeps every delivered batch; ``gate`` stalls delivery until a test opens it."""

    instances: ClassVar[dict[str, RecordingExporter]] = {}

    def __init__(self, name: str, config: RecordingConfig) -> None:
        super().__init__(name, config)
        self.cfg = config
        self.gate = threading.Event()
        self.gate.set()
        self.delivered: list[tuple[Signal, Telemetry, str]] = []
        self.attempts = 0
        RecordingExporter.instances[name] = self

    def export(self, signal: Signal, data: Telemetry, batch_id: str) -> None:
        self.gate.wait()
        self.attempts += 1
        if self.attempts <= self.cfg.fail_times:
            raise ExportError(
                "injected failure", retryable=not self.cfg.permanent, retry_after=0.01
            )
        self.delivered.append((signal, data, batch_id))


class ProbeConfig(ComponentConfig):
    reads: str = "recording"


class ProbeExtension(Extension):
    """Records its lifecycle and which exporter it found, so tests can check start order."""

    events: ClassVar[list[str]] = []

    def start(self, host: Host) -> None:
        assert isinstance(self.config, ProbeConfig)
        found = host.exporter(self.config.reads)
        ProbeExtension.events.append(f"start {self.name} reads {found.name}")

    def shutdown(self) -> None:
        ProbeExtension.events.append(f"shutdown {self.name}")


INJECT = Factory("inject", "receiver", InjectConfig, lambda n, c: InjectReceiver(n, c))
RECORDING = Factory("recording", "exporter", RecordingConfig, lambda n, c: RecordingExporter(n, c))

PROBE = Factory("probe", "extension", ProbeConfig, lambda n, c: ProbeExtension(n, c))

registry.register("receiver", "inject", "tests.components:INJECT")
registry.register("extension", "probe", "tests.components:PROBE")
registry.register("exporter", "recording", "tests.components:RECORDING")
