"""What one evaluation concludes, apart from where the numbers come from: a budget's status
and the notifications it calls for, and the silences in a set of last-seen times."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from extensions.budgets.config import BudgetConfig
from extensions.budgets.internal.periods import Window


@dataclass(frozen=True)
class BudgetStatus:
    budget: BudgetConfig
    window: Window
    spend: float
    forecast: float
    unpriced: int
    evaluated_at: dt.datetime

    @property
    def ratio(self) -> float:
        return self.spend / self.budget.amount_usd


@dataclass(frozen=True)
class Notification:
    key: str
    body: dict[str, Any]
    forget_after: float
    """Unix time after which the key may be forgotten (it can no longer recur)."""


def _usd(x: float) -> str:
    return f"${x:,.2f}"


def _scope_text(b: BudgetConfig) -> str:
    parts = [f"{k}={','.join(v)}" for k, v in b.scope.values().items()]
    return " ".join(parts) or "all spend"


def budget_notifications(status: BudgetStatus) -> list[Notification]:
    """One notification per threshold the spend has reached, and one per threshold only the
    forecast has reached (a warning; the spend one still follows if the spend gets there).
    Keys hold the period start, so each is sent once per period."""
    b, w = status.budget, status.window
    out = []
    for t in b.thresholds:
        limit = t * b.amount_usd
        if "spend" in b.notify_on and status.spend >= limit:
            crossed_by = "spend"
        elif "forecast" in b.notify_on and status.forecast >= limit:
            crossed_by = "forecast"
        else:
            continue
        pct = f"{t:.0%}"
        head = f"Budget *{b.name}* ({_scope_text(b)}, {b.period} from {w.start.date()})"
        if crossed_by == "spend":
            text = (
                f"{head} has reached {pct}: spent {_usd(status.spend)} of "
                f"{_usd(b.amount_usd)} ({status.ratio:.0%}); forecast for the {b.period}: "
                f"{_usd(status.forecast)}."
            )
        else:
            text = (
                f"{head} is forecast to reach {pct} by the end of the {b.period}: forecast "
                f"{_usd(status.forecast)} of {_usd(b.amount_usd)}, spent {_usd(status.spend)} "
                f"({status.ratio:.0%}) so far."
            )
        if status.unpriced:
            text += f" {status.unpriced} call(s) had no price and are not counted."
        body = {
            "text": text,
            "kind": "budget",
            "budget": b.name,
            "scope": b.scope.values(),
            "period": b.period,
            "period_start": w.start.isoformat(),
            "period_end": w.end.isoformat(),
            "spend_usd": status.spend,
            "limit_usd": b.amount_usd,
            "forecast_usd": status.forecast,
            "ratio": status.ratio,
            "threshold": t,
            "crossed_by": crossed_by,
            "unpriced_api_calls": status.unpriced,
            "evaluated_at": status.evaluated_at.isoformat(),
        }
        key = f"budget|{b.name}|{w.start.isoformat()}|{crossed_by}|{t!r}"
        out.append(Notification(key, body, w.end.timestamp() + w.seconds))
    return out


@dataclass(frozen=True)
class Silence:
    subject: str  # "agent" or "user"
    name: str
    agent: str
    last_seen: float  # Unix seconds


def silences(
    last_seen: list[tuple[str, str, float]], now: float, after: float
) -> tuple[dict[str, float], list[Silence]]:
    """From (agent, user, last seen) rows: each agent's last time, and every agent and user
    (over all agents) quiet for longer than ``after``."""
    agents: dict[str, float] = {}
    users: dict[str, tuple[float, str]] = {}
    for agent, user, seen in last_seen:
        agents[agent] = max(agents.get(agent, 0.0), seen)
        if user and (user not in users or seen > users[user][0]):
            users[user] = (seen, agent)
    found = [Silence("agent", a, a, t) for a, t in sorted(agents.items()) if now - t > after]
    found += [
        Silence("user", u, agent, t) for u, (t, agent) in sorted(users.items()) if now - t > after
    ]
    return agents, found


def _ago(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"


def silence_notification(s: Silence, now: float, lookback: float) -> Notification:
    """Keyed by the last time seen: an agent that comes back and goes quiet again notifies
    again."""
    seen = dt.datetime.fromtimestamp(s.last_seen, dt.UTC)
    what = f"Agent *{s.name}*" if s.subject == "agent" else f"User *{s.name}* ({s.agent})"
    text = (
        f"{what} has sent no telemetry for {_ago(now - s.last_seen)} "
        f"(last seen {seen.isoformat(timespec='seconds')})."
    )
    body = {
        "text": text,
        "kind": "silence",
        "subject": s.subject,
        "agent": s.agent,
        "user": s.name if s.subject == "user" else None,
        "last_seen": seen.isoformat(),
        "silent_seconds": now - s.last_seen,
    }
    key = f"silence|{s.subject}|{s.name}|{s.last_seen!r}"
    return Notification(key, body, s.last_seen + lookback)


def gap_notification(
    agent: str, session_id: str, last_event: float, last_metric: float, lookback: float
) -> Notification:
    stopped = "events" if last_event < last_metric else "metrics"
    other = "metrics" if stopped == "events" else "events"
    gap = abs(last_metric - last_event)
    text = (
        f"Session {session_id} ({agent}): its {stopped} stopped {_ago(gap)} before its "
        f"{other} did; the agent's telemetry may be broken."
    )
    body = {
        "text": text,
        "kind": "session_gap",
        "agent": agent,
        "session_id": session_id,
        "stopped": stopped,
        "last_event": dt.datetime.fromtimestamp(last_event, dt.UTC).isoformat(),
        "last_metric": dt.datetime.fromtimestamp(last_metric, dt.UTC).isoformat(),
        "gap_seconds": gap,
    }
    return Notification(
        f"gap|{agent}|{session_id}|{stopped}", body, max(last_event, last_metric) + lookback
    )
