"""ClickHouse storage: the ``clickhouse`` exporter, its schema and the embedded server."""

from __future__ import annotations

from collector.component import Factory
from exporters.clickhouse.config import ClickHouseExporterConfig
from exporters.clickhouse.exporter import ClickHouseExporter

FACTORY: Factory[ClickHouseExporter] = Factory(
    type_name="clickhouse",
    kind="exporter",
    config_class=ClickHouseExporterConfig,
    create=lambda name, config: ClickHouseExporter(name, config),
)

__all__ = ["FACTORY", "ClickHouseExporter", "ClickHouseExporterConfig"]
