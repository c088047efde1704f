"""The ``prometheus`` exporter's configuration: endpoint, user label, cardinality bounds."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from collector.component import ConfigContext, Duration, ExporterConfig, parse_endpoint

DEFAULT_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
"""Model API calls take from a fraction of a second (cache hits) to minutes (long outputs)."""


class PrometheusConfig(ExporterConfig):
    endpoint: str = Field(
        default="0.0.0.0:9464",
        description="host:port to serve on; port 0 picks a free port (tests).",
    )
    path: str = Field(default="/metrics", description="HTTP path of the exposition.")
    user_label: Literal["email", "hashed", "none"] = Field(
        default="hashed",
        description="email: the user's e-mail (or vendor user id when there is none); hashed: "
        "HMAC-SHA256 of it with user_hash_key, truncated hex; none: no user label at all.",
    )
    user_hash_key: str | None = Field(
        default=None,
        description="Secret for user_label: hashed (use ${env:...}). When unset, a random key "
        "is created once under the data directory so hashes stay stable across restarts.",
    )
    user_hash_length: int = Field(default=16, ge=8, le=64, description="Hex characters kept.")
    max_series_per_metric: int = Field(
        default=1000,
        gt=0,
        description="Label sets per metric before new ones fold into the __overflow__ series.",
    )
    active_users_window: Duration = Field(
        default=900.0, description="agentwatch_active_users counts users seen this recently."
    )
    latency_buckets: list[float] = Field(
        default_factory=lambda: list(DEFAULT_LATENCY_BUCKETS),
        description="Upper bounds (seconds) of agentwatch_api_call_duration_seconds.",
    )
    dedup_cache_size: int = Field(
        default=100_000, gt=0, description="Recent event ids remembered to ignore redeliveries."
    )
    session_cache_size: int = Field(
        default=100_000, gt=0, description="Recent session ids remembered to count sessions."
    )
    claude_code_compat: bool = Field(
        default=False,
        description="Also expose Claude Code's own metric names (claude_code_*_total) as "
        "Grafana dashboard 25255 queries them, derived from claude_code events.",
    )
    claude_code_compat_session_id: bool = Field(
        default=False,
        description="Put session_id on claude_code_session_count_total and "
        "claude_code_cost_usage_USD_total as the dashboard's session panels expect: one "
        "series per session, still bounded by max_series_per_metric.",
    )

    @field_validator("latency_buckets")
    @classmethod
    def _buckets_ascending(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("needs at least one bucket")
        if any(b <= 0 or math.isinf(b) for b in v) or sorted(set(v)) != v:
            raise ValueError("buckets must be positive, finite and strictly ascending")
        return v

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        errors = []
        try:
            parse_endpoint(self.endpoint)
        except ValueError as exc:
            errors.append(f"{path}.endpoint: {exc}")
        if not self.path.startswith("/"):
            errors.append(f"{path}.path: must start with /")
        if self.user_label == "hashed" and self.user_hash_key == "":
            errors.append(f"{path}.user_hash_key: is empty; unset it to use a generated key")
        return errors
