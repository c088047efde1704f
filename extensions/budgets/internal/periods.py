"""Calendar periods in a time zone, and the forecast of a period's spend (docs/budgets.md)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Window:
    """One period: ``start`` inclusive, ``end`` exclusive, both aware (in the budget's zone)."""

    start: dt.datetime
    end: dt.datetime

    @property
    def seconds(self) -> float:
        # Not end - start: Python subtracts aware times of one zone as wall-clock times.
        return self.end.timestamp() - self.start.timestamp()


def _midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """Local midnight of ``day``. Built from the date, not by adding hours to an aware time,
    so a day with a DST change is 23 or 25 hours long, as on the wall clock."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=zone)


def period_window(period: str, now: dt.datetime, zone: ZoneInfo) -> Window:
    """The calendar ``day``, ISO ``week`` (Monday to Monday) or ``month`` containing ``now``."""
    local = now.astimezone(zone).date()
    if period == "day":
        first, after = local, local + dt.timedelta(days=1)
    elif period == "week":
        first = local - dt.timedelta(days=local.weekday())
        after = first + dt.timedelta(days=7)
    elif period == "month":
        first = local.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return Window(_midnight(first, zone), _midnight(after, zone))


def forecast(
    spend: float, recent_spend: float, burn_window_s: float, now: dt.datetime, window: Window
) -> float:
    """Spend at the end of the period if the last ``burn_window_s`` seconds' burn rate goes on.

    ``recent_spend`` is the spend of ``[now - burn_window_s, now)``, which may reach back into
    the previous period: that is what gives a period that has just started a forecast at all.
    """
    remaining = max(0.0, window.end.timestamp() - now.timestamp())
    rate = recent_spend / burn_window_s if burn_window_s > 0 else 0.0
    return spend + rate * remaining
