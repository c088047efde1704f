"""Configuration of the ``budgets`` extension: budgets, silent-telemetry checks, the webhook."""

from __future__ import annotations

import zoneinfo
from typing import Literal

from pydantic import Field, field_validator

from collector.component import ComponentConfig, ConfigContext, Duration, RetryConfig

Period = Literal["day", "week", "month"]
Basis = Literal["spend", "forecast"]


def _zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
        ) from exc
    return value


class ScopeConfig(ComponentConfig):
    """Which spend counts: every key given must match (a list matches any of its values);
    no key at all is the whole organisation."""

    team: str | list[str] | None = None
    cost_center: str | list[str] | None = None
    user: str | list[str] | None = Field(
        default=None, description="A user's e-mail or vendor user id."
    )
    agent: str | list[str] | None = Field(
        default=None, description="claude_code, codex, gemini_cli, copilot_chat, copilot_cli."
    )
    model: str | list[str] | None = None

    def values(self) -> dict[str, list[str]]:
        """Each configured key with its values as a list, in field order."""
        out: dict[str, list[str]] = {}
        for key in type(self).model_fields:
            v = getattr(self, key)
            if v is not None:
                out[key] = [v] if isinstance(v, str) else list(v)
        return out

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        return [f"{path}.{k}: needs at least one value" for k, v in self.values().items() if not v]


class BudgetConfig(ComponentConfig):
    name: str = Field(min_length=1, description="Label `budget` of the gauges; unique.")
    scope: ScopeConfig = Field(default_factory=ScopeConfig)
    period: Period = Field(description="Calendar day, ISO week (from Monday) or month.")
    amount_usd: float = Field(gt=0, description="The limit for one period.")
    thresholds: list[float] = Field(
        default_factory=lambda: [0.5, 0.8, 1.0],
        description="Fractions of amount_usd that notify when spend or forecast reaches them.",
    )
    timezone: str | None = Field(
        default=None, description="Time zone of the period's calendar; the extension's if unset."
    )
    burn_rate_window: Duration = Field(
        default=86400.0,
        description="The forecast extrapolates the spend of this trailing window (see "
        "docs/budgets.md).",
    )
    notify_on: list[Basis] = Field(
        default_factory=lambda: list[Basis](["spend", "forecast"]),
        description="Notify when spend reaches a threshold, when the forecast does, or both.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        return None if v is None else _zone(v)

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: list[float]) -> list[float]:
        if any(t <= 0 for t in v):
            raise ValueError("thresholds must be greater than 0 (1.0 is the full amount)")
        if sorted(set(v)) != v:
            raise ValueError("thresholds must be strictly ascending")
        return v

    @field_validator("burn_rate_window")
    @classmethod
    def _window(cls, v: float) -> float:
        if v < 60:
            raise ValueError("must be at least 1m")
        return v


class WebhookRetryConfig(RetryConfig):
    """Notifications are few and late ones still matter: wait longer, give up after a day."""

    initial_interval: Duration = 1.0
    max_interval: Duration = 300.0
    max_elapsed_time: Duration = Field(
        default=86400.0, description="Give up (and count a drop) after this long; 0 never."
    )


class WebhookConfig(ComponentConfig):
    url: str = Field(
        description="Where notifications are POSTed as JSON (Slack incoming webhooks accept "
        "them); use ${env:VAR} for a secret URL."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers (e.g. Authorization)."
    )
    timeout: Duration = Field(default=10.0, description="Per attempt.")
    retry: WebhookRetryConfig = Field(
        default_factory=WebhookRetryConfig,
        description="Back-off between attempts; after max_elapsed_time the notification is "
        "dropped and counted.",
    )

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v


class NotifyConfig(ComponentConfig):
    webhook: WebhookConfig | None = None


class SilenceConfig(ComponentConfig):
    """Telemetry that stops: an agent or user gone quiet, a session whose events and metrics
    part ways."""

    enabled: bool = True
    after: Duration = Field(
        default=4 * 3600.0,
        description="An agent or user seen in the last `lookback` is silent after this long "
        "without any event.",
    )
    lookback: Duration = Field(
        default=7 * 86400.0, description="Only agents and users seen this recently count."
    )
    session_gap: Duration = Field(
        default=600.0,
        description="A session whose events stopped this long before its metrics (or the "
        "reverse) is reported.",
    )
    session_lookback: Duration = Field(
        default=86400.0, description="Sessions with telemetry this recent are checked."
    )
    notify_users: bool = Field(
        default=True,
        description="Notify about silent users too (by e-mail or user id), not only agents.",
    )


class BudgetsConfig(ComponentConfig):
    evaluation_interval: Duration = Field(
        default=60.0, description="How often spend, forecasts and silences are computed."
    )
    timezone: str = Field(default="UTC", description="Default time zone of the budgets' periods.")
    clickhouse: str | None = Field(
        default=None,
        description="Name of the clickhouse exporter whose views are read; needed only when "
        "there are several.",
    )
    only_on_host: str | None = Field(
        default=None,
        description="Run only on the host of this name (e.g. the first StatefulSet pod), so "
        "that several replicas reading one ClickHouse notify once; elsewhere it stays idle.",
    )
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    budgets: list[BudgetConfig] = Field(default_factory=list)
    silence: SilenceConfig = Field(default_factory=SilenceConfig)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        return _zone(v)

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        errors = []
        if self.evaluation_interval < 0.1:
            errors.append(f"{path}.evaluation_interval: must be at least 100ms")
        seen: set[str] = set()
        for i, b in enumerate(self.budgets):
            if b.name in seen:
                errors.append(f"{path}.budgets[{i}].name: '{b.name}' is used twice")
            seen.add(b.name)
        return errors
