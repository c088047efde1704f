"""A real ``agentwatch serve`` with a small budget for the platform team: the real Claude Code
CLI's recorded sessions arrive over OTLP/HTTP, a local webhook sink receives each threshold
once with the spend of the sessions view, a restart repeats nothing, and the real Prometheus
scrapes the gauges."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector import agent_model as am
from collector import otlp_json
from collector.component import LogsData, Signal
from collector.records import Logs
from extensions.budgets.internal.periods import period_window
from processors.cost import CostConfig, CostProcessor
from processors.normalize import NormalizeConfig, NormalizeProcessor
from tests.support.clickhouse_fixture import ClickHouseDatabase
from tests.support.collector_process import CollectorProcess, free_port, otlp_config
from tests.support.polling import wait_for
from tests.support.prometheus_server import PrometheusServer
from tests.support.webhook_sink import WebhookSink

CAPTURE = (
    Path(__file__).parents[2] / "data" / "captured" / "claude" / "retry-tools-http-protobuf.json"
)
ALERT_RULES = Path(__file__).resolve().parents[3] / "configs" / "prometheus" / "alerts.yaml"
CAPTURED_SESSION = "6d76f337-39b7-406d-a78f-4e1d4e510849"
TIME_KEYS = ("timeUnixNano", "observedTimeUnixNano", "startTimeUnixNano", "endTimeUnixNano")


def _shift(node: Any, offset: int) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in TIME_KEYS and v not in (None, "0", 0):
                node[k] = str(int(v) + offset)
            else:
                _shift(v, offset)
    elif isinstance(node, list):
        for v in node:
            _shift(v, offset)


def _times(node: Any) -> list[int]:
    if isinstance(node, dict):
        return [int(v) for k, v in node.items() if k in TIME_KEYS and v not in (None, "0", 0)] + [
            t for v in node.values() for t in _times(v)
        ]
    if isinstance(node, list):
        return [t for v in node for t in _times(v)]
    return []


def recorded_session() -> LogsData:
    """The captured run's log requests as one request (so one batch: a budget evaluation never
    sees half a session), under a new session id and moved to the present."""
    requests = [
        line["request"] for line in json.loads(CAPTURE.read_text()) if line["signal"] == "logs"
    ]
    text = json.dumps(requests)
    assert CAPTURED_SESSION in text
    requests = json.loads(text.replace(CAPTURED_SESSION, str(uuid.uuid4())))
    _shift(requests, time.time_ns() - 1_000_000_000 - max(_times(requests)))
    merged = LogsData()
    for r in requests:
        decoded = otlp_json.decode(Signal.LOGS, json.dumps(r))
        assert isinstance(decoded, LogsData)
        merged.resource_logs.extend(decoded.resource_logs)
    return merged


def session_cost(data: LogsData) -> float:
    """What the collector's own normalize and cost processors make of one session."""
    normalised = NormalizeProcessor("normalize/c", NormalizeConfig()).consume_logs(
        Logs.from_proto(data)  # normalize takes records
    )
    assert normalised is not None
    records = CostProcessor("cost/c", CostConfig()).consume_logs(normalised)
    assert records is not None
    priced = records.to_proto()
    costs = [
        kv.value.double_value
        for rl in priced.resource_logs
        for sl in rl.scope_logs
        for rec in sl.log_records
        if any(a.key == am.EVENT and a.value.string_value == "api_call" for a in rec.attributes)
        for kv in rec.attributes
        if kv.key == am.COST_USD
    ]
    assert len(costs) == 4 and all(c > 0 for c in costs)  # README: four successful calls
    return sum(costs)


def month_zone() -> str:
    """UTC, unless its month ends within a day: then UTC-12, whose month has 12 hours more, so
    the test never runs across a month's end or right before it."""
    now = dt.datetime.now(dt.UTC)
    window = period_window("month", now, ZoneInfo("UTC"))
    return "UTC" if window.end.timestamp() - now.timestamp() > 86400 else "Etc/GMT+12"


def post(collector: CollectorProcess, data: LogsData) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{collector.http_port}/v1/logs",
        data=data.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.timeout(300)
def test_budget_notifies_each_threshold_once_with_the_sessions_spend(
    tmp_path: Path, clickhouse_db: ClickHouseDatabase, prometheus_server: PrometheusServer
) -> None:
    first, second = recorded_session(), recorded_session()
    cost = session_cost(first)
    amount = 1.6 * cost  # one session is 62.5 % of it, two are 125 %
    metrics_port = free_port()
    config = otlp_config(
        tmp_path,
        {
            "clickhouse": {
                "endpoint": clickhouse_db.url,
                "database": clickhouse_db.name,
                "sending_queue": {"batch_timeout": 0},
            },
            "prometheus": {"endpoint": f"127.0.0.1:{metrics_port}"},
        },
        processors=["normalize", "cost"],
    )
    config["processors"] = {"normalize": {}, "cost": {}}
    for sig in ("metrics", "traces"):
        del config["service"]["pipelines"][sig]
    with WebhookSink() as sink:
        config["extensions"] = {
            "budgets": {
                "evaluation_interval": "1s",
                "notify": {"webhook": {"url": "${env:AGENTWATCH_BUDGET_WEBHOOK}"}},
                "budgets": [
                    {
                        "name": "platform-monthly",
                        "scope": {"team": "platform"},
                        "period": "month",
                        "amount_usd": amount,
                        # The test's sessions make the whole rate, so the forecast overruns
                        # whenever more than 36 minutes of the month are left, which the time
                        # zone below guarantees.
                        "burn_rate_window": "1h",
                        "timezone": month_zone(),
                    }
                ],
            }
        }
        config["service"]["extensions"] = ["budgets"]
        collector = CollectorProcess(
            config, tmp_path, env={"AGENTWATCH_BUDGET_WEBHOOK": sink.url}
        ).start()
        try:
            prometheus_server.set_targets(
                {"budgets": f"127.0.0.1:{metrics_port}"}, rule_files=(ALERT_RULES,)
            )
            post(collector, first)

            def sessions_spend() -> float:
                return float(
                    clickhouse_db.scalar(
                        f"SELECT sum(cost_usd) FROM {clickhouse_db.name}.sessions "
                        "WHERE team = 'platform'"
                    )
                    or 0.0
                )

            def crossings() -> list[tuple[float, str]]:
                return sorted((b["threshold"], b["crossed_by"]) for b in sink.bodies("budget"))

            # Spend 62.5 %: 50 % by spend. A month's forecast at this burn rate is far over:
            # 80 % and 100 % by forecast (50 % is already covered by the spend).
            wait_for(lambda: len(crossings()) >= 3, 60, "three budget notifications")
            assert crossings() == [(0.5, "spend"), (0.8, "forecast"), (1.0, "forecast")]
            assert sessions_spend() == pytest.approx(cost, rel=1e-9)
            for body in sink.bodies("budget"):
                assert body["spend_usd"] == pytest.approx(sessions_spend(), rel=1e-9)
                assert body["limit_usd"] == pytest.approx(amount)
                assert body["budget"] == "platform-monthly" and body["period"] == "month"
                assert body["scope"] == {"team": ["platform"]}
                assert body["forecast_usd"] > amount
                assert body["text"].startswith("Budget *platform-monthly* (team=platform")
            prometheus_server.wait_for(
                'agentwatch_budget_spend_usd{job="budgets",budget="platform-monthly"}', cost
            )
            prometheus_server.wait_for(
                'agentwatch_budget_limit_usd{job="budgets",budget="platform-monthly"}', amount
            )
            prometheus_server.wait_for(
                'agentwatch_budget_ratio{job="budgets",budget="platform-monthly"}', 0.625
            )
            assert (
                prometheus_server.scalar(
                    'agentwatch_budget_forecast_usd{job="budgets",budget="platform-monthly"}'
                )
                or 0.0
            ) > amount
            # The shipped rules, evaluated by the real Prometheus: the overrun is pending (it
            # needs 30 minutes), the budget is not exceeded yet.
            prometheus_server.wait_for(
                'count(ALERTS{alertname="AgentwatchBudgetForecastOverrun",'
                'budget="platform-monthly",alertstate="pending"})',
                1,
            )
            assert prometheus_server.query('ALERTS{alertname="AgentwatchBudgetExceeded"}') == []
        finally:
            assert collector.stop() == 0

        # Restart: the state in the data directory keeps every decided threshold.
        before = len(sink.bodies())
        collector = CollectorProcess(
            config, tmp_path, env={"AGENTWATCH_BUDGET_WEBHOOK": sink.url}
        ).start()
        try:
            wait_for(
                lambda: (
                    (
                        sample(
                            scrape(metrics_port),
                            "agentwatch_budget_evaluations_total",
                            extension="budgets",
                            outcome="ok",
                        )
                        or 0
                    )
                    >= 2
                ),
                60,
                "two evaluations after the restart",
            )
            assert len(sink.bodies()) == before
            post(collector, second)
            wait_for(lambda: len(crossings()) >= 5, 60, "the 80 % and 100 % spend notifications")
            assert crossings() == [
                (0.5, "spend"),
                (0.8, "forecast"),
                (0.8, "spend"),
                (1.0, "forecast"),
                (1.0, "spend"),
            ]
            total = sessions_spend()
            assert total == pytest.approx(2 * cost, rel=1e-9)
            for body in sink.bodies("budget")[3:]:
                assert body["spend_usd"] == pytest.approx(total, rel=1e-9)
                assert body["crossed_by"] == "spend"
                assert f"spent ${total:,.2f} of ${amount:,.2f}" in body["text"]
            prometheus_server.wait_for(
                'agentwatch_budget_spend_usd{job="budgets",budget="platform-monthly"}', total
            )
            prometheus_server.wait_for(
                'count(ALERTS{alertname="AgentwatchBudgetExceeded",budget="platform-monthly",'
                'alertstate="firing",severity="critical"})',
                1,
            )
            # Further evaluations send nothing more.
            evaluations = (
                sample(
                    scrape(metrics_port),
                    "agentwatch_budget_evaluations_total",
                    extension="budgets",
                    outcome="ok",
                )
                or 0
            )
            wait_for(
                lambda: (
                    (
                        sample(
                            scrape(metrics_port),
                            "agentwatch_budget_evaluations_total",
                            extension="budgets",
                            outcome="ok",
                        )
                        or 0
                    )
                    >= evaluations + 2
                ),
                60,
                "two more evaluations",
            )
            assert len(sink.bodies("budget")) == 5
            metrics = scrape(metrics_port)
            assert (
                sample(
                    metrics,
                    "agentwatch_notifications_sent_total",
                    extension="budgets",
                    kind="budget",
                )
                == 2
            )  # since the restart
            assert sample(metrics, "agentwatch_notifications_pending", extension="budgets") == 0
            # The silence checks saw Claude Code just now: not silent, and no session gap.
            assert sample(metrics, "agentwatch_agent_silent", agent="claude_code") == 0
            last_seen = sample(
                metrics, "agentwatch_agent_last_seen_timestamp_seconds", agent="claude_code"
            )
            assert last_seen is not None and abs(last_seen - time.time()) < 3600
            assert sample(metrics, "agentwatch_silent_users", extension="budgets") == 0
            assert sink.bodies("silence") == [] and sink.bodies("session_gap") == []
        finally:
            assert collector.stop() == 0
