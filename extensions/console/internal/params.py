"""Time range and filters as the API, the pages and the report commands take them.

Times are ISO 8601 (``2026-01-31``, ``2026-01-31T12:00:00Z``), ``now`` or ``now-<duration>``
(``now-7d``), always read as UTC; filters are comma-separated and may repeat.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from collector.component import parse_duration

DEFAULT_RANGE = timedelta(days=7)
FILTER_KEYS = ("agent", "team", "user", "model")


class BadParameter(ValueError):
    """A parameter the caller got wrong; the API answers 400 with this message."""


@dataclass(frozen=True)
class Filters:
    start: datetime
    end: datetime
    agents: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    # What the caller wrote, kept for links (``now-24h`` stays relative when shared).
    raw: dict[str, str] = field(default_factory=dict, compare=False)

    def parameters(self) -> dict[str, Any]:
        """The ClickHouse query parameters every template's filters use (naive UTC times)."""
        return {
            "start": self.start.replace(tzinfo=None),
            "end": self.end.replace(tzinfo=None),
            "agents": list(self.agents),
            "teams": list(self.teams),
            "users": list(self.users),
            "models": list(self.models),
        }

    def template_vars(self) -> dict[str, Any]:
        return {"models": bool(self.models)}

    def query_string(self, **extra: str) -> str:
        return urlencode({**self.raw, **{k: v for k, v in extra.items() if v}})


def parse_time(text: str, now: datetime) -> datetime:
    text = text.strip()
    if text == "now":
        return now
    m = re.fullmatch(r"now-(.+)", text)
    if m:
        try:
            return now - timedelta(seconds=parse_duration(m.group(1)))
        except ValueError as exc:
            raise BadParameter(f"{text!r}: {exc}") from None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(
            f"{text!r} is not a time: use ISO 8601 (2026-01-31 or 2026-01-31T12:00:00Z), "
            "now or now-7d"
        ) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def split_values(values: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return tuple(dict.fromkeys(out))


def parse_filters(
    get: dict[str, list[str]], now: datetime | None = None, default_range: timedelta = DEFAULT_RANGE
) -> Filters:
    """``get`` maps a parameter to every value it was given (query strings may repeat)."""
    now = now or datetime.now(UTC)
    raw: dict[str, str] = {}
    for key in ("from", "to", *FILTER_KEYS):
        if get.get(key):
            raw[key] = ",".join(get[key])
    end = parse_time(get["to"][-1], now) if get.get("to") else now
    start = parse_time(get["from"][-1], now) if get.get("from") else end - default_range
    if start >= end:
        raise BadParameter(f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
    if start.year < 1970 or end.year > 2261:
        raise BadParameter("from and to must lie between 1970 and 2261")
    return Filters(
        start=start,
        end=end,
        agents=split_values(get.get("agent", [])),
        teams=split_values(get.get("team", [])),
        users=split_values(get.get("user", [])),
        models=split_values(get.get("model", [])),
        raw=raw,
    )


def parse_int(get: dict[str, list[str]], key: str, default: int, low: int, high: int) -> int:
    if not get.get(key):
        return default
    text = get[key][-1]
    try:
        value = int(text)
    except ValueError:
        raise BadParameter(f"{key}: {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise BadParameter(f"{key}: {value} is outside {low}..{high}")
    return value


def parse_choice(get: dict[str, list[str]], key: str, choices: Iterable[str], default: str) -> str:
    if not get.get(key):
        return default
    value = get[key][-1]
    allowed = list(choices)
    if value not in allowed:
        raise BadParameter(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    return value
