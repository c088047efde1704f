"""The clickhouse exporter's config, error classification (retryable or not) and readiness,
against a real ClickHouse."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from pydantic import ValidationError

from collector import registry
from collector.component import ConfigContext, ExportError, Host, PermanentExportError
from exporters.clickhouse import FACTORY, schema
from exporters.clickhouse.config import ClickHouseExporterConfig
from exporters.clickhouse.embedded import free_port
from exporters.clickhouse.exporter import ClickHouseExporter, classify
from tests.clickhouse_fixture import (
    ClickHouseDatabase,
    ResponseDroppingProxy,
    agent_record,
    logs_request,
    make_exporter,
)


def test_factory_builds_the_exporter() -> None:
    assert (FACTORY.type_name, FACTORY.kind) == ("clickhouse", "exporter")
    exporter = FACTORY.create("clickhouse/main", FACTORY.config_class())
    assert isinstance(exporter, ClickHouseExporter) and exporter.name == "clickhouse/main"
    assert registry.factory("exporter", "clickhouse") is FACTORY


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"endpoint": "tcp://db:9000"}, "http://host"),
        ({"endpoint": "http://db:99999"}, "port"),
        ({"database": "agent-watch"}, "identifier"),
        ({"cluster": "prod; DROP"}, "identifier"),
        ({"ttl_days": {"otel_logz": 3}}, "unknown tables"),
        ({"ttl_days": {"otel_logs": -1}}, "negative"),
        ({"compression": "brotli"}, "compression"),
        ({"endpoint": "http://db:8123", "bogus": 1}, "bogus"),
    ],
)
def test_config_rejects(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ClickHouseExporterConfig.model_validate(config)


def test_config_check_and_secrets(tmp_path: Path) -> None:
    cfg = ClickHouseExporterConfig.model_validate(
        {
            "endpoint": "https://ch.example.com:8443",
            "password": "s3cret",
            "tls": {"ca_file": "missing-ca.pem", "cert_file": "client.pem"},
            "connect_timeout": "2s",
            "send_timeout": "1m",
            "ttl_days": {"otel_logs": 7},
        }
    )
    (tmp_path / "client.pem").write_text("x")
    errors = cfg.check("exporters.clickhouse", ConfigContext(str(tmp_path), str(tmp_path)))
    assert errors == [
        "exporters.clickhouse.tls.ca_file: file 'missing-ca.pem' does not exist",
        "exporters.clickhouse.tls: cert_file and key_file go together",
    ]
    assert "s3cret" not in repr(cfg)
    assert (cfg.connect_timeout, cfg.send_timeout) == (2.0, 60.0)
    settings = cfg.schema_settings()
    assert settings.ttl_days["otel_logs"] == 7
    assert settings.ttl_days["agent_events"] == schema.DEFAULT_TTL_DAYS["agent_events"]


def test_classify_errors() -> None:
    assert classify(OperationalError("connection refused"), "insert").retryable
    assert classify(DatabaseError("Code: 241 memory limit", code=241), "insert").retryable
    assert classify(DatabaseError("Code: 60 no table", code=60), "insert").retryable
    assert isinstance(classify(DatabaseError("Code: 53", code=53), "insert"), PermanentExportError)
    assert isinstance(classify(TypeError("bad"), "insert"), PermanentExportError)


def test_server_down_is_retryable_and_start_does_not_fail(
    clickhouse_db: ClickHouseDatabase, tmp_path: Path
) -> None:
    """A remote ClickHouse that is down at start: the exporter starts anyway, reports not
    ready, fails batches as retryable, and once the server is reachable creates the schema
    and stores them."""
    port = free_port()
    cfg = ClickHouseExporterConfig(
        endpoint=f"http://127.0.0.1:{port}", database=clickhouse_db.name, connect_timeout=2.0
    )
    exporter = ClickHouseExporter("clickhouse/outage", cfg)
    exporter.start(Host(str(tmp_path)))  # does not raise
    batch = logs_request([agent_record("api_call", "o-1", time.time_ns(), session_id="s")])
    try:
        assert not exporter.ready()
        with pytest.raises(ExportError) as failure:
            exporter.consume_logs(batch, "outage-1")
        assert failure.value.retryable
        # The server comes back on the configured address.
        proxy = ResponseDroppingProxy(
            clickhouse_db.server.port, clickhouse_db.name, listen_port=port
        )
        try:
            assert exporter.ready()
            exporter.consume_logs(batch, "outage-1")
        finally:
            proxy.close()
    finally:
        exporter.shutdown()
    assert clickhouse_db.scalar(f"SELECT count() FROM {clickhouse_db.name}.api_calls") == 1


def test_missing_schema_is_retryable(clickhouse_db: ClickHouseDatabase, tmp_path: Path) -> None:
    """create_schema off and nobody ran ``db migrate``: keep the data and retry."""
    exporter = make_exporter(clickhouse_db, str(tmp_path), create_schema=False)
    try:
        with pytest.raises(ExportError) as failure:
            exporter.consume_logs(
                logs_request([agent_record("api_call", "m-1", time.time_ns())]), "no-schema"
            )
        assert failure.value.retryable
        assert "otel_logs" in str(failure.value)
    finally:
        exporter.shutdown()


def test_data_the_server_cannot_take_is_permanent(
    clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    """A column changed by hand to a type our text does not parse as: retrying cannot help."""
    clickhouse_schema.client.command(
        f"ALTER TABLE {clickhouse_schema.name}.otel_logs MODIFY COLUMN EventName UInt64"
    )
    record = agent_record("api_call", "p-1", time.time_ns(), session_id="s")
    record.event_name = "claude_code.api_request"
    exporter = make_exporter(clickhouse_schema, str(tmp_path))
    try:
        with pytest.raises(PermanentExportError):
            exporter.consume_logs(logs_request([record]), "bad-type")
    finally:
        exporter.shutdown()
