"""The ``sessionfiles`` receiver: follows the agents' session-file directories inside
``agentwatch serve`` and feeds what is new to its logs pipelines."""

from __future__ import annotations

import time
from pathlib import Path

from collector.component import Factory, Host, LogsData, Receiver, Refused, Signal
from collector.receivers.sessionfiles.config import SessionFilesConfig
from collector.receivers.sessionfiles.follower import Follower, FollowerThread


class SessionFilesReceiver(Receiver):
    def __init__(self, name: str, config: SessionFilesConfig) -> None:
        super().__init__(name, config)
        self.cfg = config
        self._thread: FollowerThread | None = None

    def start(self, host: Host) -> None:
        if Signal.LOGS not in self.consumers:
            raise ValueError(f"{self.name}: session files are logs; put it in a logs pipeline")
        roots: dict[str, Path] = {agent: Path(path) for agent, path in self.cfg.paths.items()}
        follower = Follower(
            list(self.cfg.agents), roots, host.data_dir, self._feed, self.cfg.settle
        )
        self._thread = FollowerThread(follower, self.cfg.poll_interval)
        self._thread.start()

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
    create=lambda name, cfg: SessionFilesReceiver(name, cfg),
    signals=frozenset({Signal.LOGS}),
)
