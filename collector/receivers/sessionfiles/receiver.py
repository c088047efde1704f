"""The ``sessionfiles`` receiver: follows the agents' session-file directories inside
``agentwatch serve`` and feeds what is new to its logs pipelines."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from collector.component import Factory, Host, LogsData, Receiver, Refused, Signal
from collector.receivers.sessionfiles.config import SessionFilesConfig
from collector.receivers.sessionfiles.follower import Follower, FollowerThread
from collector.receivers.sessionfiles.internal import twins
from collector.receivers.sessionfiles.internal.events import Session


class SessionFilesReceiver(Receiver):
    config: SessionFilesConfig

    def __init__(self, name: str, config: SessionFilesConfig) -> None:
        super().__init__(name, config)
        self._thread: FollowerThread | None = None

    def start(self, host: Host) -> None:
        if Signal.LOGS not in self.consumers:
            raise ValueError(f"{self.name}: session files are logs; put it in a logs pipeline")
        roots: dict[str, Path] = {agent: Path(path) for agent, path in self.config.paths.items()}
        follower = Follower(
            list(self.config.agents),
            roots,
            host.data_dir,
            self._feed,
            self.config.settle,
            self._twin_finder(),
        )
        self._thread = FollowerThread(follower, self.config.poll_interval)
        self._thread.start()

    def _twin_finder(self) -> Callable[[str, list[Session]], int] | None:
        """Matching against the calls stored by the first ClickHouse exporter this receiver
        feeds (so a call that came over OTLP first is stored once); None without one."""
        from exporters.clickhouse.exporter import ClickHouseExporter, connect

        consumer = self.consumers[Signal.LOGS]
        for pipeline in getattr(consumer, "pipelines", []):
            for runner in pipeline.runners:
                exporter = runner.exporter
                if isinstance(exporter, ClickHouseExporter) and exporter.url:
                    client = connect(exporter.config, exporter.url)
                    database = exporter.config.database
                    return lambda agent, sessions: twins.align(client, agent, sessions, database)
        return None

    def _feed(self, request: LogsData) -> None:
        consumer = self.consumers[Signal.LOGS]
        while True:
            try:
                consumer.consume(Signal.LOGS, request)
                return
            except Refused as exc:  # queues full: wait, as an OTLP client would
                time.sleep(exc.retry_after)

    def shutdown(self) -> None:
        if self._thread is not None:
            self._thread.stop()


FACTORY = Factory(
    type_name="sessionfiles",
    kind="receiver",
    config_class=SessionFilesConfig,
    create=lambda name, config: SessionFilesReceiver(name, config),
    signals=frozenset({Signal.LOGS}),
)
