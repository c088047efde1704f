"""configs/grafana/*.json against real schemas, without the e2e stack.

* The committed JSON is what configs/grafana/build.py builds with the Grafana Foundation SDK.
* It survives the SDK's own decoder unchanged: a key the SDK's types do not know is dropped on
  the way through, so it shows up as a difference.
* TypeScript (tsc, strict) checks it against @grafana/schema, the types Grafana's frontend is
  built on: the dashboard, every row, every panel with its own plugin's Options type (excess
  keys, wrong enum values and wrong types are errors). A broken copy must fail the same check.
* Every PromQL query parses and runs on a real Prometheus; the ClickHouse dashboard reads only
  the public views. tests/e2e/dashboard_checks.py runs every query on real data.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from configs.grafana import build
from exporters.clickhouse.schema import PUBLIC_VIEWS
from tests.e2e import dashboard_checks
from tests.support.clickhouse_fixture import ClickHouseDatabase, new_client
from tests.support.prometheus_server import PrometheusServer

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "scripts" / "install-grafana-schema.sh"
FILES = [build.PROMETHEUS_FILE, build.CLICKHOUSE_FILE]
PANEL_TYPES = {  # panel type -> @grafana/schema module and whether it exports a FieldConfig
    "stat": ("stat", "StatPanelCfg", False),
    "timeseries": ("timeseries", "TimeSeriesPanelCfg", True),
    "table": ("table", "TablePanelCfg", True),
    "bargauge": ("bargauge", "BarGaugePanelCfg", False),
}
TS_PRELUDE = """\
import type { Dashboard, Panel, RowPanel } from '@grafana/schema';
%(imports)s
// JSON holds an enum's value, not the enum: map string enums to their values.
type Json<T> = T extends string ? `${T}` : T extends number | boolean | null | undefined ? T
  : T extends (infer U)[] ? Json<U>[] : T extends object ? { [K in keyof T]: Json<T[K]> } : T;
// Options with a schema default may be left out (Grafana fills them in), nothing else changes.
type Loose<T> = T extends string ? `${T}` : T extends number | boolean | null | undefined ? T
  : T extends (infer U)[] ? Loose<U>[] : T extends object ? { [K in keyof T]?: Loose<T[K]> } : T;
// @grafana/schema's Panel leaves options untyped: type them with the plugin's Options.
type Typed<O, F> = Json<Omit<Panel<O, F>, 'options'>> & { options?: Loose<O> };
"""


@pytest.fixture(scope="module")
def tsc() -> tuple[Path, Path]:
    """tsc and the node_modules holding @grafana/schema (scripts/install-grafana-schema.sh)."""
    done = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"{INSTALL} failed:\n{done.stderr}")
    where = subprocess.run(
        ["bash", str(INSTALL), "--print-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    modules = Path(where) / "node_modules"
    return modules / ".bin" / "tsc", modules


def typescript_of(document: dict[str, Any]) -> str:
    imports = "\n".join(
        f"import type * as {name} from "
        f"'@grafana/schema/dist/esm/raw/composable/{module}/panelcfg/x/{cfg}_types.gen';"
        for name, (module, cfg, _) in PANEL_TYPES.items()
    )
    out = [TS_PRELUDE % {"imports": imports}]
    out.append(f"export const dashboard: Json<Dashboard> = {json.dumps(document, indent=1)};")
    for i, panel in enumerate(document["panels"]):
        if panel["type"] == "row":
            out.append(f"export const row{i}: Json<RowPanel> = {json.dumps(panel)};")
            continue
        assert panel["type"] in PANEL_TYPES, f"no schema check for panel type {panel['type']}"
        _, _, has_field_config = PANEL_TYPES[panel["type"]]
        field = f"{panel['type']}.FieldConfig" if has_field_config else "Record<string, unknown>"
        out.append(
            f"export const panel{i}: Typed<{panel['type']}.Options, {field}> = "
            f"{json.dumps(panel, indent=1)};"
        )
    return "\n".join(out) + "\n"


def type_errors(tsc: tuple[Path, Path], document: dict[str, Any], tmp_path: Path) -> str:
    binary, modules = tsc
    (tmp_path / "node_modules").symlink_to(modules)
    (tmp_path / "dashboard.ts").write_text(typescript_of(document))
    (tmp_path / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "strict": True,
                    "noEmit": True,
                    "module": "esnext",
                    "moduleResolution": "bundler",
                    "target": "es2022",
                    "skipLibCheck": True,
                },
                "files": ["dashboard.ts"],
            }
        )
    )
    done = subprocess.run(
        [str(binary), "-p", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    return done.stdout + done.stderr if done.returncode != 0 else ""


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_committed_json_is_what_the_builder_builds(path: Path) -> None:
    builder = build.DASHBOARDS[path]
    assert path.read_text() == build.render(builder), "run: python -m configs.grafana.build"
    assert build.main(["--check"]) == 0


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_foundation_sdk_decodes_every_key(path: Path) -> None:
    register_default_plugins()
    document = json.loads(path.read_text())
    assert build.as_json(Dashboard.from_json(copy.deepcopy(document))) == document
    broken = copy.deepcopy(document)
    next(dashboard_checks.panels(broken))["options"]["noSuchOption"] = True
    assert build.as_json(Dashboard.from_json(broken)) != broken


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_grafana_schema_types_accept_the_dashboard(
    path: Path, tsc: tuple[Path, Path], tmp_path: Path
) -> None:
    errors = type_errors(tsc, json.loads(path.read_text()), tmp_path)
    assert errors == ""


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("unknown panel option", "'\"noSuchOption\"' does not exist"),
        ("wrong enum value", "not assignable"),
        ("unknown dashboard key", "'\"noSuchKey\"' does not exist"),
        ("wrong type", "not assignable to type 'number"),
    ],
)
def test_grafana_schema_check_rejects_a_broken_dashboard(
    what: str, expected: str, tsc: tuple[Path, Path], tmp_path: Path
) -> None:
    document = json.loads(build.PROMETHEUS_FILE.read_text())
    panel = next(p for p in dashboard_checks.panels(document) if p["type"] == "timeseries")
    if what == "unknown panel option":
        panel["options"]["noSuchOption"] = 1
    elif what == "wrong enum value":
        panel["options"]["legend"]["displayMode"] = "sideways"
    elif what == "unknown dashboard key":
        document["noSuchKey"] = 1
    else:
        panel["gridPos"]["h"] = "tall"
    errors = type_errors(tsc, document, tmp_path)
    assert expected in errors, errors


def test_prometheus_dashboard_has_the_variables_and_datasource() -> None:
    document = dashboard_checks.load(dashboard_checks.PROMETHEUS_DASHBOARD)
    assert {"datasource", "job", "team", "user", "agent", "model"} <= set(
        dashboard_checks.variables(document)
    )
    for panel in dashboard_checks.panels(document):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert 'job=~"$job"' in target["expr"], target["expr"]


def test_prometheus_dashboard_queries_parse_and_run(
    prometheus_server: PrometheusServer,
) -> None:
    """Syntax and types, on a real Prometheus (no data needed); the e2e suite checks the rows."""
    document = dashboard_checks.load(dashboard_checks.PROMETHEUS_DASHBOARD)
    rng = dashboard_checks.TimeRange(start=1_700_000_000, end=1_700_003_600, interval_s=60)
    every: dict[str, list[str]] = {n: ["a.b", "o'c"] for n in dashboard_checks.variables(document)}
    chosen: dict[str, list[str] | None] = dict(every)  # escaped as Grafana escapes them
    exprs = [
        dashboard_checks.expand_promql(t["expr"], rng, 15, chosen, every)
        for p in dashboard_checks.panels(document)
        for t in p["targets"]
    ]
    assert len(exprs) >= 20
    for expr in exprs:
        prometheus_server.query_range(expr, rng.start, rng.end, rng.interval_s)


_FROM = re.compile(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)", re.IGNORECASE)


def test_clickhouse_dashboard_reads_only_public_views() -> None:
    document = dashboard_checks.load(dashboard_checks.CLICKHOUSE_DASHBOARD)
    queries = [t["rawSql"] for p in dashboard_checks.panels(document) for t in p["targets"]]
    queries += [
        v["query"] for v in dashboard_checks.variables(document).values() if v["type"] == "query"
    ]
    read = {name for sql in queries for name in _FROM.findall(sql)}
    assert read, "no table found in the queries"
    assert read <= set(PUBLIC_VIEWS), read - set(PUBLIC_VIEWS)
    for panel in dashboard_checks.panels(document):
        assert panel["datasource"] == {"type": build.CLICKHOUSE_PLUGIN, "uid": "${datasource}"}
        (target,) = panel["targets"]
        assert target["editorType"] == "sql" and target["queryType"] in {"table", "timeseries"}


def test_macro_expansion_is_what_the_clickhouse_plugin_sends() -> None:
    rng = dashboard_checks.TimeRange(start=100, end=200, interval_s=30)
    every = {"team": ["a", "o'b"]}
    sql = "SELECT $__timeInterval(t) FROM x WHERE $__timeFilter(t) AND " + build._when(
        "team", "team"
    )
    assert dashboard_checks.expand_sql(sql, rng, {}, every) == (
        "SELECT toStartOfInterval(toDateTime(t), INTERVAL 30 second) FROM x "
        "WHERE t >= toDateTime(100) AND t <= toDateTime(200) AND 1=1"
    )
    assert dashboard_checks.expand_sql(sql, rng, {"team": ["o'b"]}, every).endswith(
        "AND team IN ('o\\'b')"
    )
    with pytest.raises(AssertionError, match="unexpanded"):
        dashboard_checks.expand_sql("SELECT $__unknownMacro(t)", rng, {}, every)


def test_clickhouse_dashboard_queries_run_on_the_current_schema(
    clickhouse_schema: ClickHouseDatabase,
) -> None:
    """Every panel and variable query, macros expanded, on a real ClickHouse with agentwatch's
    schema (empty: the e2e suite checks rows and totals). With "All" and with one value chosen."""
    client = new_client(clickhouse_schema.server, clickhouse_schema.name)

    def run(sql: str) -> list[dict[str, Any]]:
        result = client.query(sql)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    try:
        rng = dashboard_checks.TimeRange(start=1_700_000_000, end=1_700_086_400, interval_s=3600)
        board = dashboard_checks.ClickHouseDashboard(run, rng)
        assert board.variable_values() == {"team": [], "agent": [], "model": []}
        for chosen in ({}, {"team": ["o'brien"], "agent": ["codex"], "model": ["gpt-5.5"]}):
            results = board.results(dict(chosen))
            assert len(results) >= 9
            for title, result in results.items():
                assert "$" not in result.query, title
                if title == "Cost, calls and unpriced records in range":
                    (row,) = result.rows  # an aggregate without GROUP BY: one row, even empty
                    assert set(row) == {"cost_usd", "api_calls", "unpriced"}
                else:
                    assert result.rows == [], title
    finally:
        client.close()
