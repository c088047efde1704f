"""The ``budgets`` extension: every ``evaluation_interval`` it reads the public views, sets the
budget and silence gauges and decides notifications, which a second thread delivers."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from collector import telemetry
from collector.component import Extension, Host
from extensions.budgets.config import BudgetsConfig
from extensions.budgets.internal import queries
from extensions.budgets.internal.evaluate import (
    BudgetStatus,
    budget_notifications,
    gap_notification,
    silence_notification,
    silences,
)
from extensions.budgets.internal.notify import Outbox, WebhookSender
from extensions.budgets.internal.periods import forecast, period_window

log = logging.getLogger("agentwatch.extension.budgets")

SPEND = telemetry.gauge(
    "agentwatch_budget_spend_usd",
    "Known spend of the budget's scope in the current period.",
    ("budget",),
)
LIMIT = telemetry.gauge(
    "agentwatch_budget_limit_usd", "The budget's amount per period.", ("budget",)
)
FORECAST = telemetry.gauge(
    "agentwatch_budget_forecast_usd",
    "Spend expected by the end of the period at the recent burn rate (docs/budgets.md).",
    ("budget",),
)
RATIO = telemetry.gauge("agentwatch_budget_ratio", "Spend divided by the limit.", ("budget",))
UNPRICED = telemetry.gauge(
    "agentwatch_budget_unpriced_api_calls",
    "Calls in the budget's scope and period without a price, so missing from its spend.",
    ("budget",),
)
PERIOD_END = telemetry.gauge(
    "agentwatch_budget_period_end_timestamp_seconds",
    "When the budget's current period ends (Unix time).",
    ("budget",),
)
EVALUATIONS = telemetry.counter(
    "agentwatch_budget_evaluations",
    "Evaluations of budgets and silences, by outcome (ok, error: the store could not be read).",
    ("extension", "outcome"),
)
AGENT_LAST_SEEN = telemetry.gauge(
    "agentwatch_agent_last_seen_timestamp_seconds",
    "Last telemetry of each agent seen within silence.lookback (Unix time).",
    ("agent",),
)
AGENT_SILENT = telemetry.gauge(
    "agentwatch_agent_silent",
    "1 when an agent seen within silence.lookback has sent nothing for silence.after.",
    ("agent",),
)
SILENT_USERS = telemetry.gauge(
    "agentwatch_silent_users",
    "Users seen within silence.lookback who have sent nothing for silence.after.",
    ("extension",),
)
SESSION_GAPS = telemetry.gauge(
    "agentwatch_session_telemetry_gaps",
    "Sessions within silence.session_lookback whose events stopped while their metrics went "
    "on (stopped=events), or the reverse (stopped=metrics).",
    ("agent", "stopped"),
)


def _us(t: dt.datetime | float) -> int:
    seconds = t.timestamp() if isinstance(t, dt.datetime) else t
    return int(seconds * 1_000_000)


class BudgetsExtension(Extension):
    config: BudgetsConfig

    def __init__(self, name: str, config: BudgetsConfig) -> None:
        super().__init__(name, config)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader_source: Any = None
        self._client: Any = None
        self.outbox: Outbox | None = None
        self.sender: WebhookSender | None = None
        self._agents: set[str] = set()

    def attach(self, host: Host) -> Outbox:
        """Find the store and load the outbox, without starting any thread (tests call
        ``evaluate`` themselves after this)."""
        exporter = host.exporter("clickhouse", self.config.clickhouse)
        if not hasattr(exporter, "view_reader"):
            raise LookupError(f"{exporter.name} cannot hand out a view reader")
        self._reader_source = exporter
        state = Path(host.data_dir) / "budgets" / f"{self.name.replace('/', '_')}.json"
        self.outbox = Outbox(state, self.name)
        for b in self.config.budgets:
            LIMIT.labels(b.name).set(b.amount_usd)
        return self.outbox

    def start(self, host: Host) -> None:
        if self.config.only_on_host and self.config.only_on_host != socket.gethostname():
            log.info("%s: idle, runs on %s only", self.name, self.config.only_on_host)
            return
        outbox = self.attach(host)
        self.sender = WebhookSender(outbox, self.config.notify.webhook, self.name)
        self.sender.start()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.sender is not None:
            self.sender.stop()
            self.sender = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.evaluate(dt.datetime.now(dt.UTC))
                EVALUATIONS.labels(self.name, "ok").inc()
            except Exception as exc:  # the store is down or a query failed: try next time
                EVALUATIONS.labels(self.name, "error").inc()
                log.warning("%s: evaluation failed: %s", self.name, exc)
                if self._client is not None:
                    self._client.close()
                    self._client = None
            self._stop.wait(self.config.evaluation_interval)

    def _query(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        if self._client is None:
            self._client = self._reader_source.view_reader()
        return [tuple(r) for r in self._client.query(sql, parameters=params).result_rows]

    def evaluate(self, now: dt.datetime) -> None:
        """One pass: every budget, then the silences; notifications go to the outbox."""
        assert self.outbox is not None
        for b in self.config.budgets:
            status = self.budget_status(b.name, now)
            SPEND.labels(b.name).set(status.spend)
            FORECAST.labels(b.name).set(status.forecast)
            RATIO.labels(b.name).set(status.ratio)
            UNPRICED.labels(b.name).set(status.unpriced)
            PERIOD_END.labels(b.name).set(status.window.end.timestamp())
            for n in budget_notifications(status):
                self.outbox.decide(n.key, n.body, n.forget_after)
        if self.config.silence.enabled:
            self._silences(now.timestamp())
        self.outbox.forget_expired(now.timestamp())

    def budget_status(self, name: str, now: dt.datetime) -> BudgetStatus:
        b = next(b for b in self.config.budgets if b.name == name)
        window = period_window(b.period, now, ZoneInfo(b.timezone or self.config.timezone))
        recent_start = now.timestamp() - b.burn_rate_window
        scope = b.scope.values()
        params: dict[str, Any] = {
            key: scope.get(key, []) for key in ("team", "cost_center", "user", "agent", "model")
        }
        params |= {
            "start_us": _us(window.start),
            "recent_us": _us(recent_start),
            "since_us": _us(min(window.start.timestamp(), recent_start)),
        }
        spend, recent, unpriced = self._query(queries.SPEND, params)[0]
        spend, recent = float(spend or 0.0), float(recent or 0.0)
        return BudgetStatus(
            b,
            window,
            spend,
            forecast(spend, recent, b.burn_rate_window, now, window),
            int(unpriced or 0),
            now,
        )

    def _silences(self, now: float) -> None:
        assert self.outbox is not None
        s = self.config.silence
        rows = self._query(queries.LAST_SEEN, {"since_us": _us(now - s.lookback)})
        agents, found = silences([(a, u, ms / 1000.0) for a, u, ms in rows], now, s.after)
        silent_agents = {x.name for x in found if x.subject == "agent"}
        for gone in self._agents - set(agents):  # out of the lookback: no series, no alert
            AGENT_LAST_SEEN.remove(gone)
            AGENT_SILENT.remove(gone)
            for stopped in ("events", "metrics"):
                SESSION_GAPS.remove(gone, stopped)
        self._agents = set(agents)
        for agent, seen in agents.items():
            AGENT_LAST_SEEN.labels(agent).set(seen)
            AGENT_SILENT.labels(agent).set(1 if agent in silent_agents else 0)
        SILENT_USERS.labels(self.name).set(sum(1 for x in found if x.subject == "user"))
        for x in found:
            if x.subject == "agent" or s.notify_users:
                n = silence_notification(x, now, s.lookback)
                self.outbox.decide(n.key, n.body, n.forget_after)
        gaps = self._query(
            queries.SESSION_GAPS,
            {"since_us": _us(now - s.session_lookback), "gap_ms": int(s.session_gap * 1000)},
        )
        counts: dict[tuple[str, str], int] = {}
        for agent in agents:
            counts[(agent, "events")] = counts[(agent, "metrics")] = 0
        for agent, session_id, event_ms, metric_ms in gaps:
            self._agents.add(agent)
            n = gap_notification(
                agent, session_id, event_ms / 1000.0, metric_ms / 1000.0, s.session_lookback
            )
            key = (agent, n.body["stopped"])
            counts[key] = counts.get(key, 0) + 1
            self.outbox.decide(n.key, n.body, n.forget_after)
        for (agent, stopped), count in counts.items():
            SESSION_GAPS.labels(agent, stopped).set(count)
