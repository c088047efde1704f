"""The budgets extension in process: periods and forecasts worked by hand, config errors with
their paths, spend and silences read from a real ClickHouse, and webhook delivery."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from collector import agent_model as am
from collector import telemetry
from collector.component import Host
from collector.config import ConfigError, parse
from collector.records import Logs
from extensions.budgets.config import BudgetsConfig, WebhookConfig, WebhookRetryConfig
from extensions.budgets.extension import BudgetsExtension
from extensions.budgets.internal.notify import Outbox, WebhookSender
from extensions.budgets.internal.periods import Window, forecast, period_window
from tests.support.clickhouse_fixture import (
    ClickHouseDatabase,
    agent_record,
    logs_request,
    make_exporter,
)
from tests.support.polling import wait_for
from tests.support.webhook_sink import WebhookSink

UTC = dt.UTC


def at(*args: int, tz: str = "UTC") -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(tz))


# --- periods and forecast, worked by hand -------------------------------------------------


def test_month_week_and_day_windows_follow_the_local_calendar() -> None:
    now = at(2026, 12, 6, 3, 30)  # a Sunday, 03:30 UTC
    assert period_window("month", now, ZoneInfo("UTC")) == Window(at(2026, 12, 1), at(2027, 1, 1))
    # ISO weeks start on Monday: Monday 30 November.
    assert period_window("week", now, ZoneInfo("UTC")) == Window(at(2026, 11, 30), at(2026, 12, 7))
    # In New York it is still Saturday 5 December, 22:30.
    ny = period_window("day", now, ZoneInfo("America/New_York"))
    assert ny.start == at(2026, 12, 6, 5) - dt.timedelta(days=1)  # 05 Dec 00:00 EST = 05:00Z
    assert ny.start.astimezone(UTC) == dt.datetime(2026, 12, 5, 5, tzinfo=UTC)
    assert ny.end.astimezone(UTC) == dt.datetime(2026, 12, 6, 5, tzinfo=UTC)
    # New York's December: 1 Dec 05:00Z to 1 Jan 05:00Z.
    m = period_window("month", now, ZoneInfo("America/New_York"))
    assert (m.start.astimezone(UTC), m.end.astimezone(UTC)) == (
        dt.datetime(2026, 12, 1, 5, tzinfo=UTC),
        dt.datetime(2027, 1, 1, 5, tzinfo=UTC),
    )


def test_a_day_with_a_dst_change_has_its_wall_clock_length() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    spring = period_window("day", at(2026, 3, 29, 12), berlin)  # clocks go forward at 02:00
    assert spring.seconds == 23 * 3600
    assert spring.start.astimezone(UTC) == dt.datetime(2026, 3, 28, 23, tzinfo=UTC)
    autumn = period_window("day", at(2026, 10, 25, 12), berlin)
    assert autumn.seconds == 25 * 3600


def test_forecast_mid_month() -> None:
    """June has 30 days. On 11 June 00:00, 1000 spent, 120 in the last 24 h: 5 $/h for the
    remaining 20 days (480 h) adds 2400."""
    w = period_window("month", at(2026, 6, 11), ZoneInfo("UTC"))
    assert forecast(1000.0, 120.0, 86400.0, at(2026, 6, 11), w) == pytest.approx(3400.0)


def test_forecast_of_a_period_that_has_just_started() -> None:
    """A Berlin day budget 30 s after local midnight: 0.20 spent this day, 48 in the last 24 h
    (mostly yesterday): 2 $/h over the 23 h 59 min 30 s left is 47.98333..."""
    now = at(2026, 6, 11, 0, 0, 30, tz="Europe/Berlin")
    w = period_window("day", now, ZoneInfo("Europe/Berlin"))
    assert w.start == at(2026, 6, 11, tz="Europe/Berlin")
    assert forecast(0.2, 48.0, 86400.0, now, w) == pytest.approx(0.2 + 48.0 * 86370 / 86400)
    # Nothing spent recently: the forecast is the spend; at the very end nothing is added.
    assert forecast(0.2, 0.0, 86400.0, now, w) == 0.2
    assert forecast(5.0, 48.0, 86400.0, w.end, w) == 5.0


def test_forecast_with_a_short_burn_window() -> None:
    """Week from Monday 15 June; Wednesday 12:00 leaves 4.5 days (108 h). 6 spent in the last
    6 h is 1 $/h: 30 spent so far + 108 = 138."""
    now = at(2026, 6, 17, 12)
    w = period_window("week", now, ZoneInfo("UTC"))
    assert w == Window(at(2026, 6, 15), at(2026, 6, 22))
    assert forecast(30.0, 6.0, 6 * 3600.0, now, w) == pytest.approx(138.0)


# --- configuration -------------------------------------------------------------------------


def _raw(tmp_path: Path, budgets_cfg: dict[str, Any]) -> dict[str, Any]:
    return {
        "receivers": {"otlp": {"protocols": {"http": {}}}},
        "exporters": {"clickhouse": {"endpoint": "http://127.0.0.1:1"}},
        "extensions": {"budgets": budgets_cfg},
        "service": {
            "data_dir": str(tmp_path),
            "extensions": ["budgets"],
            "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["clickhouse"]}},
        },
    }


def test_the_issue_example_config_parses(tmp_path: Path) -> None:
    raw = _raw(
        tmp_path,
        {
            "evaluation_interval": "1m",
            "notify": {"webhook": {"url": "${env:AGENTWATCH_BUDGET_WEBHOOK}"}},
            "budgets": [
                {
                    "name": "platform-monthly",
                    "scope": {"team": "platform"},
                    "period": "month",
                    "amount_usd": 5000,
                    "thresholds": [0.5, 0.8, 1.0],
                }
            ],
        },
    )
    cfg = parse(
        raw, source="t", env={"AGENTWATCH_BUDGET_WEBHOOK": "https://hooks.example/x"}, base_dir="/"
    )
    ext = cfg.extensions["budgets"].config
    assert isinstance(ext, BudgetsConfig)
    assert ext.evaluation_interval == 60.0
    assert ext.notify.webhook is not None and ext.notify.webhook.url == "https://hooks.example/x"
    b = ext.budgets[0]
    assert (b.period, b.amount_usd, b.scope.values()) == ("month", 5000.0, {"team": ["platform"]})


def test_invalid_budgets_are_errors_with_their_path(tmp_path: Path) -> None:
    raw = _raw(
        tmp_path,
        {
            "timezone": "Mars/Olympus",
            "notify": {"webhook": {"url": "hooks.example/x"}},
            "budgets": [
                {"name": "a", "scope": {"region": "eu"}, "period": "month", "amount_usd": 5},
                {"name": "b", "period": "month", "amount_usd": -1},
                {"name": "c", "period": "year", "amount_usd": 1, "timezone": "Nowhere/City"},
                {"name": "d", "period": "day", "amount_usd": 1, "thresholds": [0.8, 0.5]},
            ],
        },
    )
    with pytest.raises(ConfigError) as info:
        parse(raw, source="t", env={}, base_dir="/")
    errors = info.value.errors
    p = "extensions.budgets"
    assert f"{p}.budgets.0.scope.region: unknown key" in errors
    assert f"{p}.budgets.1.amount_usd: Input should be greater than 0" in errors
    assert any(e.startswith(f"{p}.budgets.2.period: Input should be 'day', 'week'") for e in errors)
    assert any(
        e.startswith(f"{p}.budgets.2.timezone: unknown time zone 'Nowhere/City'") for e in errors
    )
    assert any(e.startswith(f"{p}.timezone: unknown time zone 'Mars/Olympus'") for e in errors)
    assert f"{p}.budgets.3.thresholds: thresholds must be strictly ascending" in errors
    assert f"{p}.notify.webhook.url: must be an http:// or https:// URL" in errors


def test_agentwatch_validate_prints_the_budget_error_paths(tmp_path: Path) -> None:
    raw = _raw(
        tmp_path,
        {
            "budgets": [
                {"name": "a", "scope": {"region": "eu"}, "period": "month", "amount_usd": -5}
            ]
        },
    )
    config = tmp_path / "agentwatch.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [sys.executable, "-m", "collector", "validate", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "extensions.budgets.budgets.0.scope.region: unknown key" in done.stderr
    assert "extensions.budgets.budgets.0.amount_usd: Input should be greater than 0" in done.stderr


def test_duplicate_budget_names_and_empty_scope_lists_are_errors(tmp_path: Path) -> None:
    raw = _raw(
        tmp_path,
        {
            "budgets": [
                {"name": "a", "period": "month", "amount_usd": 5, "scope": {"team": []}},
                {"name": "a", "period": "week", "amount_usd": 5},
            ]
        },
    )
    with pytest.raises(ConfigError) as info:
        parse(raw, source="t", env={}, base_dir="/")
    assert "extensions.budgets.budgets[1].name: 'a' is used twice" in info.value.errors
    assert "extensions.budgets.budgets[0].scope.team: needs at least one value" in info.value.errors


# --- spend, forecast and notifications from a real ClickHouse --------------------------------


NOW = at(2026, 6, 15, 12)  # a Monday


def _ns(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000


def _call(eid: str, t: dt.datetime, session: str, cost: float | None, **attrs: Any) -> Any:
    extra = {} if cost is None else {"cost_usd": cost}
    return agent_record(
        am.EventType.API_CALL,
        eid,
        _ns(t),
        session_id=session,
        request_id=eid,
        provider="anthropic",
        input_tokens=10,
        output_tokens=5,
        **extra,
        **attrs,
    )


def _usage(eid: str, t: dt.datetime, session: str, cost: float, **attrs: Any) -> Any:
    return agent_record(
        am.EventType.API_USAGE,
        eid,
        _ns(t),
        session_id=session,
        provider="gcp.gen_ai",
        input_tokens=10,
        output_tokens=5,
        cost_usd=cost,
        **attrs,
    )


A = {
    "agent": "claude_code",
    "team": "platform",
    "cost_center": "cc-1",
    "user_email": "a@example.com",
    "model": "claude-sonnet-4-5",
}
B = {"agent": "codex", "team": "platform", "user_email": "b@example.com", "model": "gpt-5"}
C = {"agent": "gemini_cli", "team": "data", "cost_center": "cc-2", "user_id": "u-3"}
D = {"agent": "codex", "team": "other", "user_email": "c@example.com", "model": "gpt-5"}

RECORDS = [
    _call("a1", at(2026, 6, 3, 10), "s1", 2.0, **A),
    _call("a2", at(2026, 6, 15, 6), "s1", 1.0, **A),
    _call("a3", at(2026, 6, 15, 7), "s1", None, **A),  # unknown price
    _usage("a4", at(2026, 6, 15, 6), "s1", 1.0, **A),  # s1 has calls: its usage must not count
    _call("b1", at(2026, 5, 31, 23), "s2", 4.0, **B),  # June in Tokyo, May in UTC
    _usage("c1", at(2026, 6, 15, 8), "s3", 0.5, **C),  # a metrics-only session
    _call("d1", at(2026, 6, 15, 9), "s4", 0.0, **D),
    _usage("d2", at(2026, 6, 15, 11), "s4", 0.0, **D),  # s4's events stopped 2 h before metrics
]

BUDGETS = [
    {"name": "platform", "scope": {"team": "platform"}, "period": "month", "amount_usd": 10,
     "thresholds": [0.25, 0.5, 2.0]},
    {"name": "platform-tokyo", "scope": {"team": ["platform"]}, "period": "month",
     "amount_usd": 100, "timezone": "Asia/Tokyo"},
    {"name": "cc-2", "scope": {"cost_center": "cc-2"}, "period": "day", "amount_usd": 1},
    {"name": "alice-sonnet", "scope": {"user": "a@example.com", "model": "claude-sonnet-4-5",
                                       "agent": "claude_code"}, "period": "week", "amount_usd": 1},
    {"name": "everything", "period": "month", "amount_usd": 1000, "notify_on": ["spend"]},
]  # fmt: skip


@pytest.fixture
def stored(clickhouse_schema: ClickHouseDatabase, tmp_path: Path) -> Any:
    exporter = make_exporter(clickhouse_schema, str(tmp_path / "exp"))
    exporter.consume_logs(Logs.from_proto(logs_request(RECORDS)), "budget-records")
    yield exporter
    exporter.shutdown()


def _extension(name: str = "budgets", **cfg: Any) -> BudgetsExtension:
    return BudgetsExtension(name, BudgetsConfig.model_validate({"budgets": BUDGETS, **cfg}))


def _host(tmp_path: Path, exporter: Any) -> Host:
    host = Host(str(tmp_path / "state"))
    host.exporters["clickhouse"] = exporter
    return host


def test_spend_and_forecast_per_scope_from_the_views(
    stored: Any, clickhouse_schema: ClickHouseDatabase, tmp_path: Path
) -> None:
    ext = _extension()
    ext.attach(_host(tmp_path, stored))
    try:
        s = {b["name"]: ext.budget_status(b["name"], NOW) for b in BUDGETS}
    finally:
        ext.shutdown()
    # UTC June: 2 + 1 of s1 (the unpriced call and s1's own usage do not count); s2 is May.
    # 1 spent in the last 24 h; 15.5 days left: 3 + 15.5 = 18.5.
    assert (s["platform"].spend, s["platform"].unpriced) == (3.0, 1)
    assert s["platform"].forecast == pytest.approx(18.5)
    assert s["platform"].ratio == pytest.approx(0.3)
    # Tokyo's June starts 31 May 15:00Z and takes s2; it ends 30 June 15:00Z: 15.125 days left.
    assert s["platform-tokyo"].spend == 7.0
    assert s["platform-tokyo"].forecast == pytest.approx(7.0 + 15.125)
    # With the whole team's sessions inside the period, spend is the sessions view's sum.
    assert s["platform-tokyo"].spend == clickhouse_schema.scalar(
        f"SELECT sum(cost_usd) FROM {clickhouse_schema.name}.sessions WHERE team = 'platform'"
    )
    # A metrics-only session counts through api_usage; 12 h of the day left at 0.5 per 24 h.
    assert s["cc-2"].spend == 0.5
    assert s["cc-2"].forecast == pytest.approx(0.75)
    # Monday 15 June's week: only the 06:00 call matches user, model and agent.
    assert s["alice-sonnet"].spend == 1.0
    assert s["everything"].spend == 3.5


def test_each_threshold_notifies_once_per_period_across_restarts(
    stored: Any, tmp_path: Path
) -> None:
    host = _host(tmp_path, stored)
    ext = _extension()
    outbox = ext.attach(host)
    try:
        ext.evaluate(NOW)
        ext.evaluate(NOW + dt.timedelta(minutes=1))
    finally:
        ext.shutdown()
    platform = sorted(
        (p.body["threshold"], p.body["crossed_by"])
        for p in outbox.pending
        if p.body.get("budget") == "platform"
    )
    # Spend 3.0 reached 25 % of 10; the forecast 18.5 reached 50 % but not 200 %.
    assert platform == [(0.25, "spend"), (0.5, "forecast")]
    spend_25 = next(p.body for p in outbox.pending if p.key.endswith("|spend|0.25"))
    assert spend_25["spend_usd"] == 3.0 and spend_25["limit_usd"] == 10.0
    assert spend_25["forecast_usd"] == pytest.approx(18.5)
    assert spend_25["scope"] == {"team": ["platform"]}
    assert spend_25["period_start"] == "2026-06-01T00:00:00+00:00"
    assert "*platform*" in spend_25["text"] and "$3.00 of $10.00" in spend_25["text"]
    assert "1 call(s) had no price" in spend_25["text"]
    everything = [p.body for p in outbox.pending if p.body.get("budget") == "everything"]
    assert everything == []  # notify_on: [spend] and 3.5 is below 50 % of 1000
    decided = len(outbox.decided)

    # A restart reads the same state: nothing is decided again.
    again = _extension()
    outbox2 = again.attach(host)
    try:
        assert len(outbox2.pending) == len(outbox.pending)
        again.evaluate(NOW + dt.timedelta(minutes=2))
        assert len(outbox2.decided) == decided
        assert len(outbox2.pending) == len(outbox.pending)
        # The next month is a new period with nothing spent: a fresh start, nothing to send.
        again.evaluate(at(2026, 7, 2))
        assert len(outbox2.pending) == len(outbox.pending)
    finally:
        again.shutdown()
    assert telemetry.value("agentwatch_budget_limit_usd", budget="platform") == 10.0


def test_silent_agents_users_and_sessions(stored: Any, tmp_path: Path) -> None:
    ext = _extension(budgets=[])
    outbox = ext.attach(_host(tmp_path, stored))
    try:
        ext.evaluate(NOW)
    finally:
        ext.shutdown()
    # claude_code last sent at 07:00 (5 h ago, over the 4 h default); codex at 11:00 (s4's
    # metrics); gemini at 08:00, exactly 4 h: not over. s2 (May) is outside the 7-day lookback.
    assert telemetry.value("agentwatch_agent_silent", agent="claude_code") == 1
    assert telemetry.value("agentwatch_agent_silent", agent="codex") == 0
    assert telemetry.value("agentwatch_agent_silent", agent="gemini_cli") == 0
    assert (
        telemetry.value("agentwatch_agent_last_seen_timestamp_seconds", agent="codex")
        == at(2026, 6, 15, 11).timestamp()
    )
    assert telemetry.value("agentwatch_silent_users", extension="budgets") == 1
    # s1: calls until 07:00, metrics until 06:00 (metrics stopped); s4: the reverse.
    assert (
        telemetry.value("agentwatch_session_telemetry_gaps", agent="claude_code", stopped="metrics")
        == 1
    )
    assert (
        telemetry.value("agentwatch_session_telemetry_gaps", agent="codex", stopped="events") == 1
    )
    bodies = {
        (p.body["kind"], p.body.get("subject"), p.body.get("session_id")) for p in outbox.pending
    }
    assert bodies == {
        ("silence", "agent", None),
        ("silence", "user", None),
        ("session_gap", None, "s1"),
        ("session_gap", None, "s4"),
    }
    # A week later nobody reported within the lookback: the agents' series are gone.
    ext.attach(_host(tmp_path, stored))
    try:
        ext.evaluate(NOW + dt.timedelta(days=8))
    finally:
        ext.shutdown()
    assert (
        telemetry.REGISTRY.get_sample_value("agentwatch_agent_silent", {"agent": "claude_code"})
        is None
    )
    assert (
        telemetry.REGISTRY.get_sample_value(
            "agentwatch_session_telemetry_gaps", {"agent": "codex", "stopped": "events"}
        )
        is None
    )
    user = next(p.body for p in outbox.pending if p.body.get("subject") == "user")
    assert user["user"] == "a@example.com" and user["silent_seconds"] == 5 * 3600
    gap = next(p.body for p in outbox.pending if p.body.get("session_id") == "s4")
    assert (gap["stopped"], gap["gap_seconds"]) == ("events", 7200)


# --- delivery --------------------------------------------------------------------------------


def _sender(tmp_path: Path, url: str, name: str, **retry: Any) -> tuple[Outbox, WebhookSender]:
    outbox = Outbox(tmp_path / f"{name}.json", name)
    cfg = WebhookConfig(
        url=url,
        timeout=5,
        retry=WebhookRetryConfig.model_validate(
            {"initial_interval": "10ms", "max_interval": "50ms", **retry}
        ),
    )
    return outbox, WebhookSender(outbox, cfg, name)


def test_webhook_failures_are_retried_with_backoff_and_counted(tmp_path: Path) -> None:
    with WebhookSink() as sink:
        sink.fail_with = [503, 500, 429]
        outbox, sender = _sender(tmp_path, sink.url, "retry-test")
        sender.start()
        try:
            assert outbox.decide("k1", {"text": "hello", "kind": "budget"}, 1e12)
            assert not outbox.decide("k1", {"text": "again", "kind": "budget"}, 1e12)
            wait_for(lambda: sink.bodies(), what="the notification after three failures")
        finally:
            sender.stop()
        assert sink.bodies() == [{"text": "hello", "kind": "budget"}]
        assert sink.attempts == 4
    assert (
        telemetry.value("agentwatch_notification_failed_attempts_total", extension="retry-test")
        == 3
    )
    assert (
        telemetry.value(
            "agentwatch_notifications_sent_total", extension="retry-test", kind="budget"
        )
        == 1
    )
    assert Outbox(tmp_path / "retry-test.json", "x").pending == []


def test_rejected_or_undeliverable_notifications_are_dropped_and_counted(tmp_path: Path) -> None:
    with WebhookSink() as sink:
        sink.fail_with = [404]
        outbox, sender = _sender(tmp_path, sink.url, "reject-test")
        sender.start()
        try:
            outbox.decide("k", {"text": "x", "kind": "budget"}, 1e12)
            wait_for(
                lambda: telemetry.value(
                    "agentwatch_notifications_dropped_total",
                    extension="reject-test",
                    reason="rejected",
                ),
                what="the rejected notification to be counted",
            )
        finally:
            sender.stop()
        assert sink.bodies() == [] and outbox.pending == []
    # Nobody listening: retried until max_elapsed_time, then dropped.
    with WebhookSink() as closed:
        url = closed.url
    outbox, sender = _sender(tmp_path, url, "gone-test", max_elapsed_time="200ms")
    sender.start()
    try:
        outbox.decide("k", {"text": "x", "kind": "silence"}, 1e12)
        wait_for(
            lambda: telemetry.value(
                "agentwatch_notifications_dropped_total",
                extension="gone-test",
                reason="retries_exhausted",
            ),
            what="the undeliverable notification to be counted",
        )
    finally:
        sender.stop()
    assert (
        telemetry.value("agentwatch_notification_failed_attempts_total", extension="gone-test") >= 2
    )


def test_pending_notifications_survive_a_restart(tmp_path: Path) -> None:
    """Decided while the webhook was down: the next process delivers it, once."""
    outbox = Outbox(tmp_path / "b.json", "restart-test")
    outbox.decide("k", {"text": "later", "kind": "budget"}, 1e12)
    with WebhookSink() as sink:
        reloaded, sender = _sender(tmp_path, sink.url, "b")
        assert [p.key for p in reloaded.pending] == ["k"]
        sender.start()
        try:
            wait_for(lambda: sink.bodies(), what="the pending notification")
        finally:
            sender.stop()
        assert [b["text"] for b in sink.bodies()] == ["later"]
        assert not reloaded.decide("k", {"text": "later", "kind": "budget"}, 1e12)


def test_only_on_host_leaves_other_hosts_idle(tmp_path: Path) -> None:
    """With several replicas, only the named pod evaluates and notifies."""
    ext = _extension(only_on_host="some-other-pod-0")
    host = Host(str(tmp_path))  # no clickhouse exporter at all: it is never looked up
    ext.start(host)
    try:
        assert ext.outbox is None and ext.sender is None
        assert not (tmp_path / "budgets").exists()
    finally:
        ext.shutdown()


def test_a_damaged_state_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text('{"decided": ')
    with pytest.raises(RuntimeError, match=r"not a notification state file.*move it away"):
        Outbox(tmp_path / "b.json", "damaged")
