"""``agentwatch report|sessions|session`` as a user runs them, on a real ClickHouse with rows
stored through the real exporter; figures equal the public views and the JSON API."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.clickhouse_fixture import ClickHouseDatabase
from tests.support.console.data import seed


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def cfg(clickhouse_db: ClickHouseDatabase, tmp_path: Path) -> Any:
    seeded = seed(clickhouse_db, tmp_path)
    seeded.exporter.shutdown()
    path = tmp_path / "cfg.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
                "exporters": {
                    "clickhouse": {"endpoint": clickhouse_db.url, "database": clickhouse_db.name}
                },
                "service": {
                    "data_dir": str(tmp_path / "data"),
                    "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["clickhouse"]}},
                },
            }
        )
    )
    return str(path)


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line]


def test_cost_report_by_team_and_model_equals_usage_hourly(
    cfg: str, clickhouse_db: ClickHouseDatabase
) -> None:
    done = run(
        "report", "cost", "--by", "team,model", "--since", "2d", "--format", "json", "-c", cfg
    )
    assert done.returncode == 0, done.stderr
    got = {(r["team"], r["model"]): r["cost_usd"] for r in lines(done.stdout)}
    expected = dict(
        ((team, model), cost)
        for team, model, cost in clickhouse_db.rows(
            f"SELECT team, model, sum(cost_usd) FROM {clickhouse_db.name}.usage_hourly "
            "GROUP BY team, model"
        )
    )
    assert got == expected
    assert got[("data", "gemini-unknown")] is None  # unpriced stays NULL, never 0
    table = run("report", "cost", "--by", "agent", "--since", "2d", "-c", cfg)
    assert table.returncode == 0, table.stderr
    header, rule, *rows = table.stdout.splitlines()
    assert header.split() == [
        "agent",
        "cost_usd",
        "api_calls",
        "unpriced_api_calls",
        "total_tokens",
    ]
    assert set(rule) <= {"-", " "} and len(rows) == 3


def test_usage_adoption_and_tools_reports(cfg: str) -> None:
    usage = run("report", "usage", "--by", "user", "--format", "csv", "-c", cfg)
    assert usage.returncode == 0, usage.stderr
    rows = {r["user"]: r for r in csv.DictReader(io.StringIO(usage.stdout))}
    assert rows["bob@example.com"]["api_calls"] == "1"
    assert rows["bob@example.com"]["cache_read_tokens"] == "1000"
    adoption = run("report", "adoption", "--by", "team", "--format", "json", "-c", cfg)
    teams = {r["team"]: r for r in lines(adoption.stdout)}
    assert teams["platform"]["users"] == 2 and teams["platform"]["sessions"] == 3
    tools = run("report", "tools", "--format", "json", "--agent", "claude_code", "-c", cfg)
    by_tool = {r["tool_name"]: r for r in lines(tools.stdout)}
    assert by_tool["create_issue"]["mcp_server"] == "github"
    assert by_tool["Bash"]["calls"] == 3


def test_sessions_and_session_timeline_in_the_terminal(cfg: str) -> None:
    listed = run("sessions", "--sort", "cost_usd", "--limit", "2", "-c", cfg)
    assert listed.returncode == 0, listed.stderr
    assert "2 of 5 sessions" in listed.stdout
    assert listed.stdout.splitlines()[2].startswith("s-bob-1")
    one = run("session", "s-ada-1", "-c", cfg)
    assert one.returncode == 0, one.stderr
    body = one.stdout.splitlines()
    kinds = [line.split()[1] for line in body if line.startswith("  ")]
    assert kinds == [
        "api_call",
        "tool_call",
        "api_call",
        "tool_call",
        "api_call",
        "tool_call",
        "DETECTION",
    ]
    assert any("turn 1: (42 characters, not stored)" in line for line in body)
    assert "cost_usd 0.1368" in one.stdout.replace("  ", " ")
    as_json = json.loads(run("session", "s-ada-1", "--format", "json", "-c", cfg).stdout)
    assert as_json["timeline"][0]["type"] == "user_prompt"
    missing = run("session", "nope", "-c", cfg)
    assert missing.returncode == 1 and "no session 'nope'" in missing.stderr


def test_bad_report_arguments_are_refused_with_a_message(cfg: str) -> None:
    both = run("report", "cost", "--since", "7d", "--from", "2026-01-01", "-c", cfg)
    assert both.returncode == 2 and "--since or --from/--to" in both.stderr
    unknown = run("report", "cost", "--by", "colour", "-c", cfg)
    assert unknown.returncode == 2 and "group_by: colour unknown" in unknown.stderr
    bad_time = run("report", "usage", "--from", "last tuesday", "-c", cfg)
    assert bad_time.returncode == 2 and "is not a time" in bad_time.stderr
