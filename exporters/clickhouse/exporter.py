"""The ``clickhouse`` exporter: raw OTel tables plus agent tables, inserted idempotently.

Exactly-once, in two layers:

* a retried batch (same ``batch_id``) is recognised by ClickHouse itself: every insert carries
  ``insert_deduplication_token = "<batch_id>:<table>"``, tables keep a deduplication window and
  ``deduplicate_blocks_in_dependent_materialized_views`` extends that to sessions and rollups;
  this holds even when the server committed and only the answer was lost;
* the same agent event re-sent by a client in a *different* batch is recognised by its
  ``agentwatch.event_id``: before inserting, the exporter looks the batch's ids up in
  ``agent_event_ids`` (a primary-key lookup) and leaves out those already stored. This relies
  on one writer per database, which is how agentwatch deploys; the agent tables are
  ReplacingMergeTree on ``event_id`` and the public views read FINAL as a backstop.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError
from clickhouse_connect.driver.external import ExternalData

from collector import telemetry
from collector.component import (
    Exporter,
    ExportError,
    Host,
    MetricsData,
    PermanentExportError,
    Signal,
)
from collector.isolation import Convertible, describe, partition
from collector.records import Logs, Traces
from exporters.clickhouse import rows, schema
from exporters.clickhouse.config import ClickHouseExporterConfig
from exporters.clickhouse.embedded import PID_FILE, EmbeddedClickHouse, ping

log = logging.getLogger(__name__)

DUPLICATE_EVENTS = telemetry.counter(
    "agentwatch_clickhouse_duplicate_agent_events",
    "Agent events left out of agent tables because their event_id was already stored.",
    ("exporter", "table"),
)
INVALID_VALUES = telemetry.counter(
    "agentwatch_clickhouse_invalid_agent_values",
    "agentwatch.* attribute values that did not parse as their column's type (NULL/0 stored; "
    "the raw tables keep the text).",
    ("exporter",),
)
ROWS_INSERTED = telemetry.counter(
    "agentwatch_clickhouse_inserted_rows",
    "Rows sent to ClickHouse per table (a deduplicated retry counts again).",
    ("exporter", "table"),
)
EMBEDDED_RESTARTS = telemetry.gauge(
    "agentwatch_clickhouse_embedded_restarts",
    "Times the supervisor restarted the embedded ClickHouse after a crash.",
    ("exporter",),
)

# ClickHouse error codes that say the data itself is bad: retrying the same batch cannot help.
# Everything else (network, timeouts, overload, missing tables, auth) is worth retrying.
PERMANENT_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        190,  # SIZES_OF_ARRAYS_DONT_MATCH
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    }
)


def classify(exc: BaseException, what: str) -> ExportError:
    """The ExportError the queue should see for a failure of ``what``."""
    if isinstance(exc, ExportError):
        return exc
    if isinstance(exc, OperationalError):  # transport: refused, reset, timeout, lost answer
        return ExportError(f"{what}: ClickHouse unreachable: {exc}")
    if isinstance(exc, DatabaseError):
        code = getattr(exc, "code", None)
        if code is None and isinstance(exc, DataError):  # the client could not encode a value
            return PermanentExportError(f"{what}: cannot serialise the batch: {exc}")
        if code in PERMANENT_CODES:
            return PermanentExportError(f"{what}: ClickHouse rejected the data: {exc}")
        return ExportError(f"{what}: ClickHouse error: {exc}")
    if isinstance(exc, (TypeError, ValueError, OverflowError, UnicodeError)):
        return PermanentExportError(f"{what}: cannot serialise the batch: {exc!r}")
    return ExportError(f"{what}: {exc!r}")


def _tsv_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def connect(config: ClickHouseExporterConfig, url: str) -> Client:
    """A clickhouse-connect client for ``url`` with the config's credentials, TLS and timeouts.

    The client has no default database, so it works before migrations create one; the
    exporter always qualifies table names.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    kwargs: dict[str, Any] = {
        "host": parts.hostname,
        "port": parts.port or (8443 if secure else 8123),
        "username": config.username,
        "password": config.password.get_secret_value(),
        "secure": secure,
        "connect_timeout": config.connect_timeout,
        "send_receive_timeout": config.send_timeout,
        "compress": False if config.compression == "none" else config.compression,
        "autogenerate_session_id": False,  # one client serves several threads
        "dedicated_pool": True,  # close() really closes: the embedded server stops at once
        "query_retries": 0,
    }
    if parts.path and parts.path != "/":
        kwargs["proxy_path"] = parts.path.rstrip("/")
    if secure:
        kwargs["verify"] = config.tls.verify
        base_dir = os.getcwd()  # what config.load checked relative paths against
        if config.tls.ca_file:
            kwargs["ca_cert"] = config.tls.file("ca_file", base_dir)
        if config.tls.cert_file:
            kwargs["client_cert"] = config.tls.file("cert_file", base_dir)
            kwargs["client_cert_key"] = config.tls.file("key_file", base_dir)
    return clickhouse_connect.get_client(**kwargs)


def embedded_root(config: ClickHouseExporterConfig, data_dir: str) -> Path:
    return Path(config.embedded.dir) if config.embedded.dir else Path(data_dir) / "clickhouse"


def running_embedded_url(root: Path) -> str | None:
    """URL of an embedded server another agentwatch process is serving from ``root``, if any."""
    try:
        pid = int((root / PID_FILE).read_text().strip())
        config = (root / "config.xml").read_text()
        port = int(config.split("<http_port>")[1].split("</http_port>")[0])
    except (OSError, ValueError, IndexError):
        return None
    if Path(f"/proc/{pid}").exists() and ping(port):
        return f"http://127.0.0.1:{port}"
    return None


@contextlib.contextmanager
def open_store(config: ClickHouseExporterConfig, data_dir: str) -> Iterator[Client]:
    """A client for CLI commands (``db migrate|status``, ``query``) on the configured store.

    With no endpoint it joins the embedded server of a running ``agentwatch serve`` or, if
    none runs, starts one for the duration of the block. The client's default database is
    the configured one once it exists, so ``SELECT * FROM api_calls`` works unqualified.
    """
    server: EmbeddedClickHouse | None = None
    url = config.endpoint
    if not url:
        root = embedded_root(config, data_dir)
        url = running_embedded_url(root) or ""
        if not url:
            server = EmbeddedClickHouse(
                root, port=config.embedded.port, startup_timeout=config.embedded.startup_timeout
            )
            server.start()
            url = server.url
    try:
        client = connect(config, url)
        try:
            exists = client.query(
                "SELECT count() FROM system.databases WHERE name = {db:String}",
                parameters={"db": config.database},
            ).result_rows[0][0]
            if exists:
                client.database = config.database
            yield client
        finally:
            client.close()
    finally:
        if server is not None:
            server.stop()


class ClickHouseExporter(Exporter):
    config: ClickHouseExporterConfig

    def __init__(self, name: str, config: ClickHouseExporterConfig) -> None:
        super().__init__(name, config)
        self.settings = config.schema_settings()
        self.embedded: EmbeddedClickHouse | None = None
        self.url = config.endpoint
        self._client: Client | None = None
        self._schema_ready = not config.schema_enabled
        self._lock = threading.Lock()
        self._schema_lock = threading.Lock()
        self._insert_settings = schema.insert_settings(self.settings)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, host: Host) -> None:
        """Start the embedded server if needed and apply the schema; a remote server that is
        down does not stop agentwatch from starting: the queue holds data until it is back."""
        if not self.config.endpoint:
            self.embedded = EmbeddedClickHouse(
                embedded_root(self.config, host.data_dir),
                port=self.config.embedded.port,
                startup_timeout=self.config.embedded.startup_timeout,
            )
            self.embedded.start()
            self.embedded.watch(self.config.embedded.health_interval)
            self.url = self.embedded.url
            log.info(
                "%s: embedded ClickHouse pid %s on %s (started in %.2fs)",
                self.name,
                self.embedded.pid,
                self.url,
                self.embedded.startup_seconds,
            )
        try:
            self._ensure_ready()
        except ExportError as exc:
            if self.embedded is not None:
                raise
            log.warning("%s: ClickHouse not ready at start, will retry: %s", self.name, exc)

    def shutdown(self) -> None:
        with self._lock:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = None
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None

    def ready(self) -> bool:
        try:
            client = self._get_client()
            return bool(client.ping())
        except Exception:
            return False

    def view_reader(self) -> Client:
        """A client of its own for an extension that reads the public views (console,
        budgets): clients are not shared across threads, the configured database is its
        default, and the server refuses every write on it (``readonly = 2`` still lets the
        client set per-query limits)."""
        client = connect(self.config, self.url)
        client.set_client_setting("readonly", 2)
        client.database = self.config.database
        return client

    def _get_client(self) -> Client:
        with self._lock:
            if self._client is None:
                try:
                    self._client = connect(self.config, self.url)
                except Exception as exc:
                    raise classify(exc, "connect") from exc
            return self._client

    def _ensure_ready(self) -> Client:
        client = self._get_client()
        if not self._schema_ready:
            with self._schema_lock:  # one queue worker per signal may call at the same time
                if not self._schema_ready:
                    try:
                        applied = schema.migrate(client, self.settings)
                    except Exception as exc:
                        raise classify(exc, "create schema") from exc
                    if applied:
                        log.info("%s: applied migrations %s", self.name, applied)
                    self._schema_ready = True
        if self.embedded is not None:
            EMBEDDED_RESTARTS.labels(self.name).set(self.embedded.restarts)
        return client

    # --- export ---------------------------------------------------------------------------

    def consume_logs(self, data: Logs, batch_id: str) -> None:
        self._store(self._convert(rows.convert_logs, data, Signal.LOGS), batch_id)

    def consume_traces(self, data: Traces, batch_id: str) -> None:
        self._store(self._convert(rows.convert_traces, data, Signal.TRACES), batch_id)

    def consume_metrics(self, data: MetricsData, batch_id: str) -> None:
        self._store(self._convert(rows.convert_metrics, data, Signal.METRICS), batch_id)

    def _convert(
        self, convert: Callable[[Convertible], rows.Batch], data: Convertible, signal: Signal
    ) -> rows.Batch:
        """Rows of ``data``; an item that cannot be converted is dropped and counted
        (``reason="conversion_error"``), never the batch it came in."""
        try:
            batch = convert(data)
        except Exception as exc:
            good, errors = partition(data, convert)
            if not errors:
                raise classify(exc, "convert") from exc
            telemetry.EXPORTER_DROPPED.labels(self.name, signal.value, "conversion_error").inc(
                len(errors)
            )
            log.error(
                "cannot convert items to rows; dropped",
                extra={"component": self.name, "items": len(errors), "error": describe(errors[0])},
            )
            try:
                batch = convert(good)
            except Exception as again:
                raise classify(again, "convert") from again
        if batch.invalid_values:
            INVALID_VALUES.labels(self.name).inc(batch.invalid_values)
        return batch

    def _store(self, batch: rows.Batch, batch_id: str) -> None:
        client = self._ensure_ready()
        for table_rows in batch.raw:
            self._insert(client, table_rows, f"{batch_id}:{table_rows.table}")
        if batch.agent:
            self._store_agent(client, batch.agent, batch_id)

    def _store_agent(self, client: Client, agent: dict[str, rows.AgentRows], batch_id: str) -> None:
        all_ids = [event_id for table_rows in agent.values() for event_id in table_rows.event_ids]
        stored = self._stored_event_ids(client, all_ids)
        for agent_rows in agent.values():
            token = f"{batch_id}:{agent_rows.table}"
            to_insert: rows.TableRows = agent_rows
            if stored:
                keep = [i for i, eid in enumerate(agent_rows.event_ids) if eid not in stored]
                skipped = len(agent_rows) - len(keep)
                if skipped:
                    DUPLICATE_EVENTS.labels(self.name, agent_rows.table).inc(skipped)
                    if not keep:
                        continue
                    # Different rows than any earlier attempt: a token of its own, so a part
                    # of this batch committed earlier cannot hide the rest.
                    digest = hashlib.blake2b(
                        "\n".join(agent_rows.event_ids[i] for i in keep).encode(), digest_size=8
                    ).hexdigest()
                    token = f"{token}:{digest}"
                    to_insert = agent_rows.select(keep)
            self._insert(client, to_insert, token)

    def _stored_event_ids(self, client: Client, event_ids: list[str]) -> set[str]:
        """Which of these ids are already stored. The ids travel as external data (a file in
        the request), not as a query parameter, which ClickHouse caps in size."""
        if not event_ids:
            return set()
        ids = ExternalData(
            file_name="batch_event_ids",
            data="\n".join(_tsv_escape(event_id) for event_id in event_ids).encode(),
            fmt="TabSeparated",
            structure=["event_id String"],
        )
        try:
            result = client.query(
                f"SELECT event_id FROM {self.settings.qualified('agent_event_ids')} "
                "WHERE event_id IN (SELECT event_id FROM batch_event_ids)",
                external_data=ids,
            )
        except Exception as exc:
            raise classify(exc, "look up stored agent events") from exc
        return {row[0] for row in result.result_rows}

    def _insert(self, client: Client, table_rows: rows.TableRows, token: str) -> None:
        settings = dict(self._insert_settings)
        settings["insert_deduplication_token"] = token
        try:
            client.insert(
                table=table_rows.table,
                data=table_rows.columns,
                column_names=table_rows.names,
                column_type_names=table_rows.types,
                column_oriented=True,
                database=self.settings.database,
                settings=settings,
            )
        except Exception as exc:
            raise classify(exc, f"insert into {table_rows.table}") from exc
        ROWS_INSERTED.labels(self.name, table_rows.table).inc(len(table_rows))
