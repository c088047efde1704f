"""Configuration of the ``clickhouse`` exporter."""

from __future__ import annotations

import os
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from collector.component import ComponentConfig, ConfigContext, Duration, ExporterConfig
from collector.config import resolve_path
from exporters.clickhouse import schema


class TLSConfig(ComponentConfig):
    verify: bool = Field(default=True, description="Verify the server certificate.")
    ca_file: str = Field(default="", description="CA bundle to verify the server with.")
    cert_file: str = Field(default="", description="Client certificate for mutual TLS.")
    key_file: str = Field(default="", description="Key of the client certificate.")

    def file(self, key: str, base_dir: str) -> str:
        """The file named by ``key`` as it is opened: ``~`` expanded, a relative path under
        ``base_dir``, so the config check and the connection look at the same file."""
        name: str = getattr(self, key)
        return str(resolve_path(name, base_dir)) if name else ""


class EmbeddedConfig(ComponentConfig):
    """The ClickHouse agentwatch runs itself when ``endpoint`` is empty."""

    port: int = Field(default=0, ge=0, le=65535, description="HTTP port on 127.0.0.1; 0 = free.")
    dir: str = Field(default="", description="Server directory; default <data_dir>/clickhouse.")
    startup_timeout: Duration = 30.0
    health_interval: Duration = Field(
        default=2.0, gt=0, description="How often the supervisor checks the server and restarts it."
    )


class ClickHouseExporterConfig(ExporterConfig):
    endpoint: str = Field(
        default="",
        description="http(s)://host:port of a ClickHouse server; empty = embedded ClickHouse.",
    )
    database: str = "agentwatch"
    username: str = "default"
    password: SecretStr = Field(default=SecretStr(""), description="Use ${env:VAR} in config.")
    tls: TLSConfig = Field(default_factory=TLSConfig)
    compression: Literal["lz4", "zstd", "gzip", "none"] = "lz4"
    connect_timeout: Duration = 10.0
    send_timeout: Duration = 30.0
    ttl_days: dict[str, int] = Field(
        default_factory=dict,
        description="Retention per table in days (0 = keep forever); unset keys use defaults.",
    )
    cluster: str = Field(default="", description="Cluster name for ON CLUSTER DDL, or empty.")
    create_schema: bool | None = Field(
        default=None,
        description="Apply migrations on start; default true, false when cluster is set.",
    )
    embedded: EmbeddedConfig = Field(default_factory=EmbeddedConfig)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        value = value.strip()
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be http://host[:port] or https://host[:port]")
            try:
                _ = parts.port
            except ValueError as exc:
                raise ValueError(f"invalid port: {exc}") from None
        return value

    @field_validator("database", "cluster")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if value and not schema.IDENTIFIER.fullmatch(value):
            raise ValueError("must be a plain identifier: letters, digits and _")
        return value

    @field_validator("ttl_days")
    @classmethod
    def _ttl(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(schema.TTL_KEYS))
        if unknown:
            raise ValueError(f"unknown tables {unknown}; known: {', '.join(schema.TTL_KEYS)}")
        negative = sorted(k for k, v in value.items() if v < 0)
        if negative:
            raise ValueError(f"days cannot be negative for {negative}")
        return value

    @property
    def schema_enabled(self) -> bool:
        return self.create_schema if self.create_schema is not None else not self.cluster

    def schema_settings(self) -> schema.SchemaSettings:
        return schema.SchemaSettings(
            database=self.database,
            cluster=self.cluster,
            ttl_days={**schema.DEFAULT_TTL_DAYS, **self.ttl_days},
        )

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        errors = []
        for key in ("ca_file", "cert_file", "key_file"):
            name = getattr(self.tls, key)
            if name and not os.path.isfile(self.tls.file(key, ctx.base_dir)):
                errors.append(f"{path}.tls.{key}: file {name!r} does not exist")
        if bool(self.tls.cert_file) != bool(self.tls.key_file):
            errors.append(f"{path}.tls: cert_file and key_file go together")
        if self.endpoint and self.embedded.port:
            errors.append(f"{path}.embedded.port: only used when endpoint is empty")
        return errors
