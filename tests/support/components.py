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
    Processor,
    Receiver,
    Signal,
    Telemetry,
)
from collector.isolation import items
from collector.records import Logs, Records, Traces


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

    def export(self, signal: Signal, data: Telemetry | Records, batch_id: str) -> None:
        """Keeps protobuf, which the tests read: records are encoded as an OTLP exporter would."""
        if isinstance(data, Logs | Traces):
            data = data.to_proto()
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


class FaultConfig(ComponentConfig):
    attribute: str = "fault"


class FaultProcessor(Processor):
    """Raises on any request holding an item with the ``attribute`` key (an injected processor
    bug), after marking every item it saw, as a processor that fails half-way would."""

    def __init__(self, name: str, config: FaultConfig) -> None:
        super().__init__(name, config)
        self.cfg = config

    def process(self, signal: Signal, data: Telemetry | Records) -> Telemetry | Records | None:
        if isinstance(data, Logs | Traces):
            if any(self.cfg.attribute in item.attributes for item in data.items()):
                for item in data.items():
                    item.attributes["half.processed"] = True
                raise ValueError("injected processor fault")
            return data
        if any(kv.key == self.cfg.attribute for item in items(data) for kv in item.attributes):
            for item in items(data):
                item.attributes.add(key="half.processed").value.bool_value = True
            raise ValueError("injected processor fault")
        return data


INJECT = Factory("inject", "receiver", InjectConfig, lambda n, c: InjectReceiver(n, c))
RECORDING = Factory("recording", "exporter", RecordingConfig, lambda n, c: RecordingExporter(n, c))

PROBE = Factory("probe", "extension", ProbeConfig, lambda n, c: ProbeExtension(n, c))
FAULT = Factory("fault", "processor", FaultConfig, lambda n, c: FaultProcessor(n, c))

registry.register("receiver", "inject", "tests.support.components:INJECT")
registry.register("extension", "probe", "tests.support.components:PROBE")
registry.register("processor", "fault", "tests.support.components:FAULT")
registry.register("exporter", "recording", "tests.support.components:RECORDING")
