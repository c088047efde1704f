"""The two Grafana dashboards, built with the Grafana Foundation SDK (PyPI grafana-foundation-sdk).

``python -m configs.grafana.build`` writes ``agentwatch-prometheus.json`` and
``agentwatch-clickhouse.json`` next to this file; tests/test_grafana_dashboards.py checks that
the committed JSON is what this module builds, and tests/e2e/dashboard_checks.py runs every
panel's query against a real Prometheus and ClickHouse. Every query lives in this one module.

The ClickHouse dashboard reads only the public views (docs/data-model.md), never agent_* tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom_model

HERE = Path(__file__).resolve().parent
PROMETHEUS_FILE = HERE / "agentwatch-prometheus.json"
CLICKHOUSE_FILE = HERE / "agentwatch-clickhouse.json"
CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource"
ALL = ".*"
"""Prometheus variables' "All": a regex that also matches an absent label (user_label: none)."""

# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------

PROM_DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
JOB = 'job=~"$job"'
"""The scrape job(s) of agentwatch: other jobs' series never mix in."""
F_USAGE = f'{JOB}, team=~"$team", user=~"$user", agent=~"$agent", model=~"$model"'
"""Cost and token series carry all four labels."""
F_CALLS = f'{JOB}, agent=~"$agent", model=~"$model"'
F_AGENT = f'{JOB}, agent=~"$agent"'
F_PEOPLE = f'{JOB}, team=~"$team", user=~"$user", agent=~"$agent"'


def _pq(expr: str, legend: str = "", instant: bool = False, ref: str = "A") -> prom.Dataquery:
    q = prom.Dataquery().expr(expr).ref_id(ref).editor_mode(prom_model.QueryEditorMode.CODE)
    q = q.datasource(PROM_DS).legend_format(legend or "__auto")
    return q.instant().format(prom_model.PromQueryFormat.TABLE) if instant else q.range()


def _prom_stat(title: str, expr: str, unit: str, description: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROM_DS)
        .with_target(_pq(expr))
        .unit(unit)
        .height(4)
        .span(4)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def _prom_series(
    title: str, targets: list[prom.Dataquery], unit: str, description: str, span: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROM_DS)
        .unit(unit)
        .height(8)
        .span(span)
        .fill_opacity(10)
        .legend(
            cb.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["sum"] if unit != "percentunit" else ["lastNotNull"])
        )
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def _prom_bars(title: str, expr: str, legend: str, unit: str, description: str) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(PROM_DS)
        .with_target(_pq(expr, legend, instant=True))
        .unit(unit)
        .height(8)
        .span(8)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def _table() -> table.Panel:
    return table.Panel().show_header(True).cell_height(common.TableCellHeight.SM)


def _label_variable(name: str, metric: str, label: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(PROM_DS)
        .query(
            {
                "query": f"label_values({metric}, {name})",
                "refId": "PrometheusVariableQueryEditor-VariableQuery",
            }
        )
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(ALL)
        .current(model.VariableOption(text="All", value="$__all", selected=True))
    )


def prometheus_dashboard() -> model.Dashboard:
    """The derived agentwatch_* metrics (docs/prometheus.md), budgets and pipeline health.

    Counters restart from zero with the process, so "since start" stats read the counters and
    everything over time uses increase()/rate(), which Prometheus corrects for resets.
    """
    d = (
        dash.Dashboard("agentwatch: AI coding agents (Prometheus)")
        .uid("agentwatch-prometheus")
        .description(
            "Spend, tokens, calls, sessions, tools, detections and budgets of Claude Code, "
            "Codex CLI, Gemini CLI and GitHub Copilot, from agentwatch's Prometheus metrics; "
            "and agentwatch's own pipeline health."
        )
        .tags(["agentwatch", "ai-agents", "prometheus"])
        .editable()
        .time("now-24h", "now")
        .refresh("1m")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            _label_variable("job", "agentwatch_receiver_accepted_items_total", "Scrape job")
        )
        .with_variable(_label_variable("team", "agentwatch_cost_usd_total", "Team"))
        .with_variable(_label_variable("user", "agentwatch_cost_usd_total", "User"))
        .with_variable(_label_variable("agent", "agentwatch_api_calls_total", "Agent"))
        .with_variable(_label_variable("model", "agentwatch_api_calls_total", "Model"))
    )
    d = (
        d.with_row(dash.Row("Spend"))
        .with_panel(
            _prom_stat(
                "Spend in range",
                f"sum(increase(agentwatch_cost_usd_total{{{F_USAGE}}}[$__range]))",
                "currencyUSD",
                "Priced model API calls in the time range. Unpriced calls are counted apart.",
            )
        )
        .with_panel(
            _prom_stat(
                "Spend since agentwatch started",
                f"sum(agentwatch_cost_usd_total{{{F_USAGE}}})",
                "currencyUSD",
                "The counters' value: everything this agentwatch process priced since it started.",
            )
        )
        .with_panel(
            _prom_stat(
                "Unpriced API calls in range",
                f"sum(increase(agentwatch_api_calls_unpriced_total{{{F_USAGE}}}[$__range]))"
                " or vector(0)",
                "short",
                "Calls to models the price book does not list: their cost is missing, never 0.",
            )
        )
        .with_panel(
            _prom_stat(
                "Active users",
                f'sum(agentwatch_active_users{{{JOB}, team=~"$team", agent=~"$agent"}})',
                "short",
                "Distinct users with any agent event in the exporter's active_users_window.",
            )
        )
        .with_panel(
            _prom_stat(
                "Sessions in range",
                f"sum(increase(agentwatch_sessions_total{{{F_PEOPLE}}}[$__range]))",
                "short",
                "Distinct agent sessions seen.",
            )
        )
        .with_panel(
            _prom_stat(
                "Sessions since agentwatch started",
                f"sum(agentwatch_sessions_total{{{F_PEOPLE}}})",
                "short",
                "Distinct agent sessions this agentwatch process counted since it started.",
            )
        )
        .with_panel(
            _prom_series(
                "Spend by team",
                [
                    _pq(
                        f"sum by (team) (increase(agentwatch_cost_usd_total{{{F_USAGE}}}"
                        "[$__rate_interval]))",
                        "{{team}}",
                    )
                ],
                "currencyUSD",
                "USD per interval, by the team resource attribute.",
                span=8,
            )
        )
        .with_panel(
            _prom_bars(
                "Spend by model since start",
                f"sum by (model) (agentwatch_cost_usd_total{{{F_USAGE}}})",
                "{{model}}",
                "currencyUSD",
                "Counter values by model.",
            )
        )
        .with_panel(
            _prom_series(
                "Spend by user",
                [
                    _pq(
                        f"sum by (user) (increase(agentwatch_cost_usd_total{{{F_USAGE}}}"
                        "[$__rate_interval]))",
                        "{{user}}",
                    )
                ],
                "currencyUSD",
                "The user label is the e-mail, its HMAC or absent, as user_label says.",
                span=12,
            )
        )
    )
    d = (
        d.with_row(dash.Row("Budgets"))
        .with_panel(
            _prom_bars(
                "Budget used",
                f"max by (budget) (agentwatch_budget_ratio{{{JOB}}})",
                "{{budget}}",
                "percentunit",
                "Spend so far over the budget's amount, per budget (the budgets extension).",
            ).thresholds(
                dash.ThresholdsConfig()
                .mode(model.ThresholdsMode.ABSOLUTE)
                .steps(
                    [
                        model.Threshold(value=None, color="green"),
                        model.Threshold(value=0.8, color="orange"),
                        model.Threshold(value=1.0, color="red"),
                    ]
                )
            )
        )
        .with_panel(
            _table()
            .title("Budgets: spend, forecast and limit")
            .description(
                "Per budget: spend so far this period, the forecast to the period's end and the "
                "amount (the budgets extension's gauges)."
            )
            .datasource(PROM_DS)
            .with_target(
                _pq(f"max by (budget) (agentwatch_budget_spend_usd{{{JOB}}})", "", True, "A")
            )
            .with_target(
                _pq(f"max by (budget) (agentwatch_budget_forecast_usd{{{JOB}}})", "", True, "B")
            )
            .with_target(
                _pq(f"max by (budget) (agentwatch_budget_limit_usd{{{JOB}}})", "", True, "C")
            )
            .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(
                model.DataTransformerConfig(
                    id_val="organize",
                    options={
                        "excludeByName": {"Time": True},
                        "renameByName": {
                            "Value #A": "spend",
                            "Value #B": "forecast",
                            "Value #C": "limit",
                        },
                    },
                )
            )
            .unit("currencyUSD")
            .height(8)
            .span(16)
        )
    )
    d = (
        d.with_row(dash.Row("Tokens and calls"))
        .with_panel(
            _prom_series(
                "Tokens by type",
                [
                    _pq(
                        "sum by (type) (rate("
                        f'agentwatch_tokens_total{{{F_USAGE}, type!="reasoning"}}'
                        "[$__rate_interval]))",
                        "{{type}}",
                    )
                ],
                "short",
                "Tokens per second by class (input is uncached input). Reasoning is part of "
                "output and is left out so the stack adds up to every billed token.",
            ).stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
        )
        .with_panel(
            _prom_series(
                "API calls by agent and status",
                [
                    _pq(
                        f"sum by (agent, status) (rate(agentwatch_api_calls_total{{{F_CALLS}}}"
                        "[$__rate_interval]))",
                        "{{agent}} {{status}}",
                    )
                ],
                "reqps",
                "Model API calls per second; errors (e.g. 429) have their status.",
            )
        )
        .with_panel(
            _prom_series(
                "API call latency p95",
                [
                    _pq(
                        "histogram_quantile(0.95, sum by (le, agent, model) (rate("
                        f"agentwatch_api_call_duration_seconds_bucket{{{F_CALLS}}}"
                        "[$__rate_interval])))",
                        "{{agent}} {{model}}",
                    )
                ],
                "s",
                "95th percentile of the model API call duration the agents report.",
            )
        )
    )
    d = (
        d.with_row(dash.Row("Tools and detections"))
        .with_panel(
            _prom_bars(
                "Tool calls since start",
                f"sum by (tool) (agentwatch_tool_calls_total{{{F_AGENT}}})",
                "{{tool}}",
                "short",
                "Tool results and permission decisions, by tool (MCP tools as mcp__server__tool "
                "or as the agent names them).",
            )
        )
        .with_panel(
            _prom_bars(
                "Tool decisions since start",
                f'sum by (decision) (agentwatch_tool_calls_total{{{F_AGENT}, decision!=""}})',
                "{{decision}}",
                "short",
                "Permission decisions (accept, reject, ...).",
            )
        )
        .with_panel(
            _prom_bars(
                "Detections since start",
                f"sum by (rule, severity) (agentwatch_detections_total{{{F_AGENT}}})",
                "{{severity}} {{rule}}",
                "short",
                "Security rules that matched tool calls (docs/detections.md).",
            )
        )
    )
    d = (
        d.with_row(dash.Row("Pipeline health (agentwatch itself)"))
        .with_panel(
            _prom_series(
                "Accepted and refused items",
                [
                    _pq(
                        f"sum by (signal) (rate(agentwatch_receiver_accepted_items_total{{{JOB}}}"
                        "[$__rate_interval]))",
                        "accepted {{signal}}",
                        ref="A",
                    ),
                    _pq(
                        f"sum by (signal, reason) (rate("
                        f"agentwatch_receiver_refused_items_total{{{JOB}}}[$__rate_interval]))"
                        " or vector(0)",
                        "refused {{signal}} {{reason}}",
                        ref="B",
                    ),
                ],
                "short",
                "What the receivers took in, and what they refused (the client keeps it).",
                span=8,
            )
        )
        .with_panel(
            _prom_series(
                "Exported and dropped items",
                [
                    _pq(
                        f"sum by (exporter) (rate(agentwatch_exporter_sent_items_total{{{JOB}}}"
                        "[$__rate_interval]))",
                        "sent {{exporter}}",
                        ref="A",
                    ),
                    _pq(
                        f"sum by (exporter, reason) (rate("
                        f"agentwatch_exporter_dropped_items_total{{{JOB}}}[$__rate_interval]))"
                        " or vector(0)",
                        "dropped {{exporter}} {{reason}}",
                        ref="B",
                    ),
                    _pq(
                        f"sum by (exporter) (rate("
                        f"agentwatch_exporter_failed_attempts_total{{{JOB}}}[$__rate_interval]))"
                        " or vector(0)",
                        "failed attempts {{exporter}}",
                        ref="C",
                    ),
                ],
                "short",
                "Delivered items, items given up on and failed (retried) attempts.",
                span=8,
            )
        )
        .with_panel(
            _prom_series(
                "Queue fill",
                [
                    _pq(
                        f"max by (exporter, signal) (agentwatch_exporter_queue_size{{{JOB}}}"
                        f" / agentwatch_exporter_queue_capacity{{{JOB}}})",
                        "{{exporter}} {{signal}}",
                    )
                ],
                "percentunit",
                "Exporter queues: near 100% the receivers push back.",
                span=8,
            )
        )
        .with_panel(
            _prom_series(
                "Write-ahead log bytes",
                [
                    _pq(
                        f"sum by (exporter) (agentwatch_exporter_wal_bytes{{{JOB}}})",
                        "{{exporter}}",
                    )
                ],
                "bytes",
                "Undelivered records on disk, bounded by sending_queue.max_bytes.",
            )
        )
        .with_panel(
            _prom_series(
                "Export latency p95",
                [
                    _pq(
                        "histogram_quantile(0.95, sum by (le, exporter) (rate("
                        f"agentwatch_exporter_send_duration_seconds_bucket{{{JOB}}}[$__rate_interval])))",
                        "{{exporter}}",
                    )
                ],
                "s",
                "Time one delivery attempt of one batch took.",
            )
        )
    )
    return d.build()


# --------------------------------------------------------------------------------------------
# ClickHouse (grafana-clickhouse-datasource), public views only
# --------------------------------------------------------------------------------------------

CH_DS = model.DataSourceRef(type_val=CLICKHOUSE_PLUGIN, uid="${datasource}")


class ClickHouseQuery(cogvariants.Dataquery):
    """A SQL query of the Grafana ClickHouse plugin (v4: editorType sql, rawSql, format,
    queryType). The SDK ships no type for this plugin, so this is its query model."""

    def __init__(self, ref_id: str, sql: str, query_type: str) -> None:
        self.ref_id, self.sql, self.query_type = ref_id, sql, query_type

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": {"type": CLICKHOUSE_PLUGIN, "uid": "${datasource}"},
            "editorType": "sql",
            "format": 0 if self.query_type == "timeseries" else 1,
            "queryType": self.query_type,
            "rawSql": self.sql,
            "refId": self.ref_id,
        }


class ClickHouseQueryBuilder(Builder[cogvariants.Dataquery]):
    def __init__(self, sql: str, query_type: str = "table", ref_id: str = "A") -> None:
        self._query = ClickHouseQuery(ref_id, sql.strip(), query_type)

    def build(self) -> cogvariants.Dataquery:
        return self._query


def _when(column: str, variable: str) -> str:
    """The plugin's macro: the condition, or 1=1 while the variable is "All"."""
    return f"$__conditionalAll({column} IN (${{{variable}:singlequote}}), ${variable})"


WHO = " AND ".join(_when(c, c) for c in ("team", "agent"))
USAGE_FILTER = f"{WHO} AND {_when('model', 'model')}"

CH_SQL: dict[str, str] = {
    "cost_by_team": f"""
SELECT $__timeInterval(hour) AS time, team, sum(cost_usd) AS cost_usd
FROM usage_hourly
WHERE $__timeFilter(hour) AND {USAGE_FILTER}
GROUP BY time, team ORDER BY time""",
    "cost_by_user": f"""
SELECT $__timeInterval(hour) AS time, if(user_email != '', user_email, user_id) AS user,
       sum(cost_usd) AS cost_usd
FROM usage_hourly
WHERE $__timeFilter(hour) AND {USAGE_FILTER}
GROUP BY time, user ORDER BY time""",
    "cost_by_model": f"""
SELECT $__timeInterval(hour) AS time, model, sum(cost_usd) AS cost_usd
FROM usage_hourly
WHERE $__timeFilter(hour) AND {USAGE_FILTER}
GROUP BY time, model ORDER BY time""",
    "cost_total": f"""
SELECT sum(cost_usd) AS cost_usd, sum(api_calls) AS api_calls,
       sum(unpriced_api_calls + unpriced_usage_records) AS unpriced
FROM usage_hourly
WHERE $__timeFilter(hour) AND {USAGE_FILTER}""",
    "sessions": f"""
SELECT session_id, agent, team, if(user_email != '', user_email, user_id) AS user,
       first_seen, last_seen, api_calls, tool_calls, detections,
       input_tokens + cache_read_tokens + cache_write_tokens + output_tokens AS tokens,
       cost_usd, unpriced_api_calls
FROM sessions
WHERE $__timeFilter(last_seen) AND {WHO}
ORDER BY last_seen DESC
LIMIT 500""",
    "tools": f"""
SELECT tool_name, if(mcp_server != '', mcp_server, 'built-in') AS server, count() AS calls,
       countIf(success = false) AS failed, countIf(decision = 'reject') AS rejected
FROM tool_calls
WHERE $__timeFilter(timestamp) AND {WHO}
GROUP BY tool_name, server ORDER BY calls DESC""",
    "mcp": f"""
SELECT $__timeInterval(timestamp) AS time, mcp_server, count() AS calls
FROM tool_calls
WHERE $__timeFilter(timestamp) AND mcp_server != '' AND {WHO}
GROUP BY time, mcp_server ORDER BY time""",
    "tool_calls_over_time": f"""
SELECT $__timeInterval(timestamp) AS time, agent, count() AS tool_calls
FROM tool_calls
WHERE $__timeFilter(timestamp) AND {WHO}
GROUP BY time, agent ORDER BY time""",
    "detections": f"""
SELECT timestamp, severity, rule_id, agent, session_id,
       if(user_email != '', user_email, user_id) AS user, tool_name, evidence
FROM detections
WHERE $__timeFilter(timestamp) AND {WHO}
ORDER BY timestamp DESC
LIMIT 500""",
    "detections_by_rule": f"""
SELECT rule_id, severity, count() AS detections
FROM detections
WHERE $__timeFilter(timestamp) AND {WHO}
GROUP BY rule_id, severity ORDER BY detections DESC""",
}
"""Every SQL query of the ClickHouse dashboard, by panel key."""

CH_VARIABLE_SQL: dict[str, str] = {
    "team": "SELECT DISTINCT team FROM usage_hourly WHERE $__timeFilter(hour) ORDER BY team",
    "agent": "SELECT DISTINCT agent FROM usage_hourly WHERE $__timeFilter(hour) ORDER BY agent",
    "model": "SELECT DISTINCT model FROM usage_hourly WHERE $__timeFilter(hour) ORDER BY model",
}


def _ch(sql_key: str, query_type: str = "table") -> ClickHouseQueryBuilder:
    return ClickHouseQueryBuilder(CH_SQL[sql_key], query_type)


def _ch_series(title: str, sql_key: str, unit: str, description: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(CH_DS)
        .with_target(_ch(sql_key, "timeseries"))
        .unit(unit)
        .height(8)
        .span(12)
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
        .legend(
            cb.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .show_legend(True)
            .calcs(["sum"])
        )
    )


def _ch_variable(name: str, label: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(CH_DS)
        .query(CH_VARIABLE_SQL[name])
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(text="All", value="$__all", selected=True))
    )


def clickhouse_dashboard() -> model.Dashboard:
    session_link = (
        dash.DashboardLink("Open in the agentwatch console")
        .url("${console_url}/sessions/${__data.fields.session_id}")
        .target_blank(True)
    )
    d = (
        dash.Dashboard("agentwatch: AI coding agents (ClickHouse)")
        .uid("agentwatch-clickhouse")
        .description(
            "Cost, sessions, tools, MCP servers and detections of the AI coding agents, from "
            "agentwatch's public ClickHouse views (grafana-clickhouse-datasource)."
        )
        .tags(["agentwatch", "ai-agents", "clickhouse"])
        .editable()
        .time("now-7d", "now")
        .refresh("5m")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(
            dash.DatasourceVariable("datasource").label("ClickHouse").type(CLICKHOUSE_PLUGIN)
        )
        .with_variable(
            dash.TextBoxVariable("console_url")
            .label("Console URL")
            .description("Base URL of the agentwatch console, for the links to a session's page.")
            .default_value("http://localhost:8080")
        )
        .with_variable(_ch_variable("team", "Team"))
        .with_variable(_ch_variable("agent", "Agent"))
        .with_variable(_ch_variable("model", "Model"))
    )
    d = (
        d.with_row(dash.Row("Cost"))
        .with_panel(
            stat.Panel()
            .title("Cost, calls and unpriced records in range")
            .description(
                "From usage_hourly: known costs only; unpriced calls and usage records are "
                "counted apart (their cost is unknown, never 0)."
            )
            .datasource(CH_DS)
            .with_target(_ch("cost_total"))
            .height(4)
            .span(24)
            .override_by_name(
                "cost_usd", [model.DynamicConfigValue(id_val="unit", value="currencyUSD")]
            )
            .reduce_options(
                cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("/.*/")
            )
        )
        .with_panel(
            _ch_series(
                "Cost by team", "cost_by_team", "currencyUSD", "usage_hourly.cost_usd by team."
            )
        )
        .with_panel(
            _ch_series(
                "Cost by user",
                "cost_by_user",
                "currencyUSD",
                "usage_hourly.cost_usd by user e-mail (the user id when there is none).",
            )
        )
        .with_panel(
            _ch_series(
                "Cost by model", "cost_by_model", "currencyUSD", "usage_hourly.cost_usd by model."
            )
        )
    )
    d = d.with_row(dash.Row("Sessions")).with_panel(
        _table()
        .title("Sessions")
        .description(
            "The sessions view, newest first. Click a session id to open it in the agentwatch "
            "console (set the Console URL variable)."
        )
        .datasource(CH_DS)
        .with_target(_ch("sessions"))
        .height(10)
        .span(24)
        .override_by_name(
            "session_id",
            [
                model.DynamicConfigValue(
                    id_val="links",
                    value=[
                        {
                            "title": "Open in the agentwatch console",
                            "url": session_link.build().url,
                            "targetBlank": True,
                        }
                    ],
                )
            ],
        )
        .override_by_name(
            "cost_usd", [model.DynamicConfigValue(id_val="unit", value="currencyUSD")]
        )
    )
    d = (
        d.with_row(dash.Row("Tools and MCP servers"))
        .with_panel(
            _table()
            .title("Tool usage")
            .description(
                "tool_calls by tool and MCP server ('built-in' for the agent's own tools)."
            )
            .datasource(CH_DS)
            .with_target(_ch("tools"))
            .height(8)
            .span(12)
        )
        .with_panel(
            _ch_series(
                "MCP server calls",
                "mcp",
                "short",
                "Tool calls that went to an MCP server, by server.",
            )
        )
        .with_panel(
            _ch_series(
                "Tool calls by agent", "tool_calls_over_time", "short", "tool_calls by agent."
            )
        )
    )
    d = (
        d.with_row(dash.Row("Detections"))
        .with_panel(
            _table()
            .title("Detections by rule")
            .description("Security rules that matched (docs/detections.md).")
            .datasource(CH_DS)
            .with_target(_ch("detections_by_rule"))
            .height(8)
            .span(8)
        )
        .with_panel(
            _table()
            .title("Detections")
            .description("Newest first; evidence is the scrubbed command line.")
            .datasource(CH_DS)
            .with_target(_ch("detections"))
            .height(8)
            .span(16)
            .override_by_name(
                "session_id",
                [
                    model.DynamicConfigValue(
                        id_val="links",
                        value=[
                            {
                                "title": "Open the session in the agentwatch console",
                                "url": session_link.build().url,
                                "targetBlank": True,
                            }
                        ],
                    )
                ],
            )
        )
    )
    return d.build()


# --------------------------------------------------------------------------------------------

DASHBOARDS = {PROMETHEUS_FILE: prometheus_dashboard, CLICKHOUSE_FILE: clickhouse_dashboard}


SDK_ONLY_VARIABLE_KEYS = ("auto", "auto_count", "auto_min", "id")
"""Keys the SDK (Grafana 10.1 schema) writes on every variable, which current Grafana
(@grafana/schema) has only on interval variables, or not at all."""


def tidy(document: dict[str, Any]) -> dict[str, Any]:
    """The SDK's JSON without the keys that current Grafana's schema no longer has."""
    document.pop("style", None)  # the dark/light choice moved to user preferences
    for panel in document.get("panels", []):
        if panel.get("type") == "table":
            panel.get("options", {}).pop("footer", None)  # now a field option
    for variable in document.get("templating", {}).get("list", []):
        if variable.get("type") != "interval":
            for key in SDK_ONLY_VARIABLE_KEYS:
                variable.pop(key, None)
    return document


def as_json(dashboard: model.Dashboard) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(dashboard, cls=JSONEncoder))
    return tidy(document)


def render(build: Any) -> str:
    """The dashboard as the committed JSON file has it."""
    return json.dumps(as_json(build()), indent=2, sort_keys=True) + "\n"


CHART_DASHBOARDS = HERE.parent.parent / "helm" / "agentwatch" / "dashboards"
"""The Helm chart's copies (helm reads files only from inside the chart)."""


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, build in DASHBOARDS.items():
        text = render(build)
        for target in (path, CHART_DASHBOARDS / path.name):
            if check:
                if not target.exists() or target.read_text() != text:
                    stale.append(str(target))
            else:
                target.write_text(text)
    if stale:
        print(f"out of date, run python -m configs.grafana.build: {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
