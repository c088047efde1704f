"""Every panel query of configs/grafana/*.json, run as Grafana would run it, against the real
Prometheus and the real ClickHouse of the end-to-end suite (after the real agent CLIs ran).

Grafana expands its macros and variables before a query reaches the data source. This module
does the same for a fixed time range: the Prometheus data source's ``$__range``,
``$__rate_interval`` and ``$__interval``, and the ClickHouse plugin's (grafana-clickhouse-datasource
v4) ``$__timeFilter``, ``$__timeInterval``, ``$__interval_s``, ``$__fromTime``/``$__toTime`` and
``$__conditionalAll``, plus ``$var`` / ``${var}`` / ``${var:singlequote}``. The ClickHouse macros
are written as the plugin's backend writes them (grafana/clickhouse-datasource, pkg/macros/
macros.go); ``$__conditionalAll`` as its frontend does (the condition, or ``1=1`` while the
variable is "All"); Prometheus variables as Grafana escapes them inside a regex. Anything left
with a ``$`` is an error, so a macro this module does not know cannot slip through unexpanded.

The checks are called from the end of tests/e2e/test_agents_through_agentwatch.py, which owns the
stack and the runs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DASHBOARD = REPO / "configs" / "grafana" / "agentwatch-prometheus.json"
CLICKHOUSE_DASHBOARD = REPO / "configs" / "grafana" / "agentwatch-clickhouse.json"
ALL = None
"""A variable set to "All"."""


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def panels(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that queries, rows' nested panels included."""
    for panel in document["panels"]:
        if panel["type"] == "row":
            yield from panels({"panels": panel.get("panels", [])})
        else:
            yield panel


def variables(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in document["templating"]["list"]}


@dataclass(frozen=True)
class TimeRange:
    """A dashboard time range, whole seconds (the ClickHouse macros use toDateTime)."""

    start: int
    end: int
    interval_s: int
    """Grafana's $__interval for this range: the panel width decides it; fixed here."""

    @property
    def seconds(self) -> int:
        return self.end - self.start


# --------------------------------------------------------------------------------------------
# macro and variable expansion
# --------------------------------------------------------------------------------------------

_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def _values(
    name: str, selected: dict[str, list[str] | None], every: dict[str, list[str]]
) -> list[str]:
    chosen = selected.get(name, ALL)
    return every[name] if chosen is ALL else chosen


def expand_variables(
    text: str,
    selected: dict[str, list[str] | None],
    every: dict[str, list[str]],
    format_value: Callable[[list[str], str | None, bool], str],
) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name not in every:
            return match.group(0)  # a macro, expanded elsewhere
        is_all = selected.get(name, ALL) is ALL
        return format_value(_values(name, selected, every), match.group(2), is_all)

    return _VAR.sub(replace, text)


def _balanced_args(text: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of a macro call whose "(" is at ``start``."""
    depth, args, current = 0, [], []
    for i in range(start, len(text)):
        c = text[i]
        if c == "(":
            depth += 1
            if depth == 1:
                continue
        elif c == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(current).strip())
                return args, i + 1
        elif c == "," and depth == 1:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(c)
    raise AssertionError(f"unbalanced macro call in {text[start:]!r}")


def _replace_calls(text: str, macro: str, render: Callable[[list[str]], str]) -> str:
    while (at := text.find(macro + "(")) != -1:
        args, end = _balanced_args(text, at + len(macro))
        text = text[:at] + render(args) + text[end:]
    return text


def _sql_value(values: list[str], fmt: str | None, is_all: bool) -> str:
    if fmt == "singlequote" or fmt is None:
        return ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)
    raise AssertionError(f"variable format {fmt!r} is not expanded by this check")


def expand_sql(
    sql: str,
    rng: TimeRange,
    selected: dict[str, list[str] | None],
    every: dict[str, list[str]],
) -> str:
    """What grafana-clickhouse-datasource sends for ``sql`` over ``rng``."""

    def conditional_all(args: list[str]) -> str:
        condition, variable = args
        name = variable.lstrip("$").strip("{}")
        return "1=1" if selected.get(name, ALL) is ALL else condition

    sql = _replace_calls(sql, "$__conditionalAll", conditional_all)
    sql = _replace_calls(
        sql,
        "$__timeFilter",
        lambda a: f"{a[0]} >= toDateTime({rng.start}) AND {a[0]} <= toDateTime({rng.end})",
    )
    sql = _replace_calls(
        sql,
        "$__timeInterval",
        lambda a: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {rng.interval_s} second)",
    )
    sql = sql.replace("$__interval_s", str(rng.interval_s))
    sql = sql.replace("$__fromTime", f"toDateTime({rng.start})")
    sql = sql.replace("$__toTime", f"toDateTime({rng.end})")
    sql = expand_variables(sql, selected, every, _sql_value)
    assert "$" not in sql, f"unexpanded macro or variable left in:\n{sql}"
    return sql


def _prom_value(values: list[str], fmt: str | None, is_all: bool) -> str:
    if is_all:
        return ".*"  # the variables' allValue
    return "|".join(_prometheus_regex_escape(v) for v in values)


def _prometheus_regex_escape(value: str) -> str:
    """Grafana's escaping of a multi-value variable inside a PromQL regex string."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)


def rate_interval(rng: TimeRange, scrape_interval_s: int) -> int:
    """Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval)."""
    return max(rng.interval_s + scrape_interval_s, 4 * scrape_interval_s)


def expand_promql(
    expr: str,
    rng: TimeRange,
    scrape_interval_s: int,
    selected: dict[str, list[str] | None],
    every: dict[str, list[str]],
) -> str:
    """What Grafana's Prometheus data source sends for ``expr`` over ``rng``."""
    expr = expr.replace("$__rate_interval", f"{rate_interval(rng, scrape_interval_s)}s")
    expr = expr.replace("$__range", f"{rng.seconds}s")
    expr = expr.replace("$__interval", f"{rng.interval_s}s")
    expr = expand_variables(expr, selected, every, _prom_value)
    assert "$" not in expr, f"unexpanded macro or variable left in:\n{expr}"
    return expr


# --------------------------------------------------------------------------------------------
# running the panels
# --------------------------------------------------------------------------------------------


@dataclass
class PanelResult:
    panel: str
    ref_id: str
    query: str
    rows: list[dict[str, Any]] = field(default_factory=list)


class ClickHouseDashboard:
    """The ClickHouse dashboard's queries against a ClickHouse (``run(sql) -> dict rows``)."""

    def __init__(self, run: Callable[[str], list[dict[str, Any]]], rng: TimeRange) -> None:
        self.document = load(CLICKHOUSE_DASHBOARD)
        self.run, self.rng = run, rng

    def variable_values(self) -> dict[str, list[str]]:
        """Each query variable's options, from its own query."""
        values: dict[str, list[str]] = {}
        for name, variable in variables(self.document).items():
            if variable["type"] != "query":
                continue
            sql = expand_sql(str(variable["query"]), self.rng, {}, {})
            values[name] = [str(next(iter(row.values()))) for row in self.run(sql)]
        return values

    def results(self, selected: dict[str, list[str] | None]) -> dict[str, PanelResult]:
        """Every panel's result by panel title (one query per panel)."""
        every = self.variable_values()
        out: dict[str, PanelResult] = {}
        for panel in panels(self.document):
            (target,) = panel["targets"]
            sql = expand_sql(target["rawSql"], self.rng, selected, every)
            out[panel["title"]] = PanelResult(panel["title"], target["refId"], sql, self.run(sql))
        return out


class PrometheusDashboard:
    """The Prometheus dashboard's queries against a Prometheus server, instant or range as each
    target asks."""

    def __init__(self, prometheus: Any, rng: TimeRange, scrape_interval_s: int) -> None:
        self.document = load(PROMETHEUS_DASHBOARD)
        self.prometheus, self.rng, self.scrape_interval_s = prometheus, rng, scrape_interval_s

    def variable_values(self) -> dict[str, list[str]]:
        values: dict[str, list[str]] = {}
        for name, variable in variables(self.document).items():
            if variable["type"] != "query":
                continue
            query = variable["query"]["query"]
            match = re.fullmatch(r"label_values\((\w+), (\w+)\)", query)
            assert match, f"variable {name}: {query!r} is not a label_values() query"
            values[name] = self.prometheus.label_values(match.group(2), match.group(1))
        return values

    def results(self, selected: dict[str, list[str] | None]) -> list[PanelResult]:
        every = self.variable_values()
        out: list[PanelResult] = []
        for panel in panels(self.document):
            for target in panel["targets"]:
                expr = expand_promql(
                    target["expr"], self.rng, self.scrape_interval_s, selected, every
                )
                if target.get("instant"):
                    rows = self.prometheus.query(expr)
                else:
                    rows = self.prometheus.query_range(
                        expr, self.rng.start, self.rng.end, self.rng.interval_s
                    )
                out.append(PanelResult(panel["title"], target["refId"], expr, rows))
        return out


def range_total(rows: list[dict[str, Any]]) -> float:
    """Sum of an instant result's values (one per series)."""
    return sum(float(r["value"][1]) for r in rows)


def column_total(rows: list[dict[str, Any]], column: str) -> float:
    """Sum of a column, NULLs (unknown costs) left out as Grafana's sum does."""
    return math.fsum(float(r[column]) for r in rows if r[column] is not None)
