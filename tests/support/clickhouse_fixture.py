"""pytest plugin: a real ClickHouse (embedded, from chdb-core) for the whole test session.

``clickhouse_server`` starts one server on a random free port with a temporary data directory
and tears it down by PID. ``clickhouse_db`` gives each test a fresh database (dropped after),
so tests stay independent without paying a server start each; ``clickhouse_schema`` is that
database with every migration applied.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from collector import agent_model as am
from collector.component import Host, LogsData
from exporters.clickhouse import rows, schema
from exporters.clickhouse.config import ClickHouseExporterConfig
from exporters.clickhouse.embedded import EmbeddedClickHouse
from exporters.clickhouse.exporter import ClickHouseExporter


@dataclass
class ClickHouseDatabase:
    """One test's database on the session's server."""

    name: str
    client: Client
    server: EmbeddedClickHouse

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def settings(self) -> schema.SchemaSettings:
        return schema.SchemaSettings(database=self.name)

    def scalar(self, sql: str) -> Any:
        return self.client.query(sql).result_rows[0][0]

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.client.query(sql).result_rows]


def new_client(server: EmbeddedClickHouse, database: str | None = None) -> Client:
    kwargs: dict[str, Any] = {}
    if database:
        kwargs["database"] = database
    return clickhouse_connect.get_client(
        host="127.0.0.1",
        port=server.port,
        autogenerate_session_id=False,
        dedicated_pool=True,
        **kwargs,
    )


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedClickHouse]:
    root: Path = tmp_path_factory.mktemp("clickhouse")
    server = EmbeddedClickHouse(root, stop_timeout=5.0)
    server.start()
    pid = server.pid
    try:
        yield server
    finally:
        server.stop()
        # Belt and braces: never leave a 300 MB server behind, but only kill that pid while
        # it is still our server (a pid can be reused once the process is gone).
        if pid is not None and str(server.root).encode() in _cmdline(pid):
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.fixture
def clickhouse_db(clickhouse_server: EmbeddedClickHouse) -> Iterator[ClickHouseDatabase]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    client = new_client(clickhouse_server)
    client.command(f"CREATE DATABASE {name}")
    try:
        yield ClickHouseDatabase(name, client, clickhouse_server)
    finally:
        with contextlib.suppress(Exception):
            client.command(f"DROP DATABASE IF EXISTS {name} SYNC")
        client.close()


@pytest.fixture
def clickhouse_schema(clickhouse_db: ClickHouseDatabase) -> ClickHouseDatabase:
    schema.migrate(clickhouse_db.client, clickhouse_db.settings)
    return clickhouse_db


# --- helpers shared by the ClickHouse tests -----------------------------------------------


def make_exporter(
    db: ClickHouseDatabase, data_dir: str, name: str = "clickhouse", **config: Any
) -> ClickHouseExporter:
    """A started exporter writing to ``db`` on the session server (schema applied on start)."""
    cfg = ClickHouseExporterConfig.model_validate(
        {"endpoint": db.url, "database": db.name, **config}
    )
    exporter = ClickHouseExporter(name, cfg)
    exporter.start(Host(data_dir))
    return exporter


def kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def agent_record(
    event: str, event_id: str, timestamp_ns: int, **attributes: str | int | float | bool
) -> LogRecord:
    """A log record as a normaliser leaves it: vendor keys plus ``agentwatch.*`` keys.

    Keyword names are agentwatch keys without the prefix (``session_id=...``).
    """
    attrs = [kv("event.name", f"vendor.{event}"), kv(am.EVENT, event), kv(am.EVENT_ID, event_id)]
    attrs += [kv(am.P + key, value) for key, value in attributes.items()]
    return LogRecord(
        time_unix_nano=timestamp_ns,
        observed_time_unix_nano=timestamp_ns + 1,
        body=AnyValue(string_value=f"vendor.{event}"),
        attributes=attrs,
    )


def logs_request(records: list[LogRecord], service: str = "claude-code") -> LogsData:
    return LogsData(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[kv("service.name", service)]),
                scope_logs=[
                    ScopeLogs(scope=InstrumentationScope(name="agent"), log_records=records)
                ],
            )
        ]
    )


class ResponseDroppingProxy:
    """A loopback TCP proxy in front of ClickHouse that, while armed, lets an INSERT whose
    request mentions ``table`` reach the server and run to completion, then closes the
    client's connection instead of forwarding the answer: the server committed, the client
    saw a failure."""

    def __init__(self, upstream_port: int, database: str, listen_port: int = 0) -> None:
        self.upstream_port = upstream_port
        self.database = database
        self.listener = socket.create_server(("127.0.0.1", listen_port))
        self.port = self.listener.getsockname()[1]
        self.cut_table: str | None = None
        self.remaining = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self, table: str, times: int) -> None:
        """Drop the answers of the next ``times`` inserts into ``table``."""
        with self._lock:
            self.cut_table, self.remaining = table, times

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            state = {"cut": False}
            for target in (self._requests, self._responses):
                thread = threading.Thread(
                    target=target, args=(client, upstream, state), daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _requests(
        self, client: socket.socket, upstream: socket.socket, state: dict[str, bool]
    ) -> None:
        with contextlib.suppress(OSError):
            while chunk := client.recv(65536):
                # Uncompressed inserts carry "INSERT INTO `db`.`table`" at the body's start.
                head = chunk[:4096].decode("latin-1")
                with self._lock:
                    if (
                        self.cut_table
                        and f"INSERT INTO `{self.database}`.`{self.cut_table}`" in head
                    ):
                        state["cut"] = True
                        self.remaining -= 1
                        if self.remaining == 0:
                            self.cut_table = None
                upstream.sendall(chunk)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _responses(
        self, client: socket.socket, upstream: socket.socket, state: dict[str, bool]
    ) -> None:
        with contextlib.suppress(OSError):
            while chunk := upstream.recv(65536):
                if state["cut"]:
                    # wait_end_of_query=1: the first response byte means the insert is done.
                    self.cuts += 1
                    break
                client.sendall(chunk)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed.set()
        self.listener.close()


def as_of_version(table_rows: rows.AgentRows, version: int) -> rows.AgentRows:
    """The columns an agentwatch at schema ``version`` inserted (later ones left out)."""
    table = next(t for t in schema.AGENT_TABLES.values() if t.table == table_rows.table)
    known = {c.name for c in table.spec(version).columns}
    keep = [i for i, name in enumerate(table_rows.names) if name in known]
    return rows.AgentRows(
        table_rows.table,
        [table_rows.names[i] for i in keep],
        [table_rows.types[i] for i in keep],
        [table_rows.columns[i] for i in keep],
        event_ids=table_rows.event_ids,
    )
