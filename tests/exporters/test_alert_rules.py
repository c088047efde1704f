"""configs/prometheus/alerts.yaml: promtool checks it and runs its unit tests, every alert has a
test, annotations and a runbook, every metric it names is one agentwatch exports, and the Helm
chart's PrometheusRule and budgets values render it and a config agentwatch accepts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.prometheus_server import binary
from tests.test_helm_chart import EXTERNAL, helm, load_config, render  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "configs" / "prometheus" / "alerts.yaml"
RULE_TESTS = REPO / "configs" / "prometheus" / "alerts_test.yaml"
RUNBOOKS = REPO / "docs" / "alerts.md"
CH_SECRET = {"clickhouse-credentials": {"password": "pw"}}  # named by ci/external-values.yaml


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    promtool = binary("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=RULE_TESTS.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_firing_test_annotations_and_a_runbook() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        t["alertname"] for case in cases for t in case["alert_rule_test"] if t.get("exp_alerts")
    }
    runbook = RUNBOOKS.read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^### (.+)$", runbook, re.M)
    }
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        name = rule["alert"]
        assert name in fired, f"{name} has no promtool test in which it fires"
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), name
        assert notes["runbook"] == f"docs/alerts.md#{name.lower()}", name
        assert name.lower() in headings, f"docs/alerts.md has no runbook for {name}"
    assert len(headings) == len(names), "docs/alerts.md has runbooks for alerts that do not exist"


def test_rules_name_only_metrics_agentwatch_exports() -> None:
    sources = "\n".join(
        p.read_text()
        for d in ("collector", "processors", "exporters", "extensions")
        for p in (REPO / d).rglob("*.py")
    )
    used = {m for r in rules() for m in re.findall(r"agentwatch_[a-z0-9_]+", r["expr"])}
    assert "agentwatch_budget_ratio" in used and "agentwatch_exporter_wal_max_bytes" in used
    for metric in used:
        base = re.sub(r"_(total|bucket|count|sum)$", "", metric)
        assert f'"{base}"' in sources, f"{metric} is not a metric agentwatch registers"


def test_helm_prometheus_rule_is_the_alerts_file(helm: tuple[str, dict[str, str]]) -> None:  # noqa: F811
    rendered = render(helm, {"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}})
    rule = rendered.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    # Helm must not have expanded the alert templates.
    assert "{{ $labels.budget }}" in yaml.safe_dump(rule["spec"], width=1000)
    assert render(helm).all("PrometheusRule") == []


def test_helm_budgets_become_a_valid_config_with_the_webhook_from_a_secret(
    helm: tuple[str, dict[str, str]],  # noqa: F811
) -> None:
    items = [
        {"name": "platform-monthly", "scope": {"team": "platform"}, "period": "month",
         "amount_usd": 5000}
    ]  # fmt: skip
    hook = {"url": "https://hooks.slack.example/T0/B0/secret"}
    values = {
        "budgets": {"enabled": True, "items": items, "timezone": "Europe/Berlin", "webhook": hook}
    }
    rendered = render(helm, values)
    assert "hooks.slack.example" not in rendered.config_text
    env = rendered.environment(CH_SECRET)
    assert env["AGENTWATCH_BUDGET_WEBHOOK"] == "https://hooks.slack.example/T0/B0/secret"
    cfg = load_config(rendered, env)
    budgets = cfg.extensions["budgets"].config
    assert budgets.notify.webhook.url == "https://hooks.slack.example/T0/B0/secret"
    assert (budgets.timezone, budgets.budgets[0].amount_usd) == ("Europe/Berlin", 5000.0)
    assert budgets.only_on_host is None
    # A Secret of the user's, and three replicas: the extension runs on pod 0 only.
    values["budgets"]["webhook"] = {"existingSecret": "chat", "existingSecretKey": "url"}
    rendered = render(helm, {**values, "replicaCount": 3})
    env = rendered.environment({**CH_SECRET, "chat": {"url": "https://chat.example/hook"}})
    cfg = load_config(rendered, env)
    assert cfg.extensions["budgets"].config.only_on_host == "aw-agentwatch-0"
    assert all("budget-webhook-url" not in s.get("data", {}) for s in rendered.all("Secret"))
    # Off by default.
    assert "budgets" not in render(helm).config_text
