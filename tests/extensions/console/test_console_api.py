"""The console's JSON API against a real ClickHouse: rows stored through the real exporter,
answers compared with the public views, bad parameters, pagination, OpenAPI."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from extensions.console.component import ConsoleExtension
from extensions.console.config import ConsoleConfig
from tests.support.clickhouse_fixture import ClickHouseDatabase
from tests.support.console.client import get
from tests.support.console.data import NOW_HOUR, Seeded, host_with, seed


@pytest.fixture
def seeded(clickhouse_db: ClickHouseDatabase, tmp_path: Path) -> Iterator[Seeded]:
    s = seed(clickhouse_db, tmp_path)
    yield s
    s.exporter.shutdown()


@pytest.fixture
def console(seeded: Seeded, tmp_path: Path) -> Iterator[str]:
    ext = ConsoleExtension("console", ConsoleConfig.model_validate({"endpoint": "127.0.0.1:0"}))
    ext.start(host_with(seeded.exporter, tmp_path))
    yield f"http://127.0.0.1:{ext.port}"
    ext.shutdown()


def view(db: ClickHouseDatabase, sql: str) -> list[dict[str, Any]]:
    result = db.client.query(sql.replace("DB.", f"{db.name}."))
    return [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]


def test_summary_equals_the_views(console: str, clickhouse_db: ClickHouseDatabase) -> None:
    got = get(f"{console}/api/v1/summary?from=now-1d").json()
    hourly = view(
        clickhouse_db,
        "SELECT sum(cost_usd) AS cost, sum(api_calls) AS calls, sum(input_tokens) AS i, "
        "sum(cache_read_tokens) AS cr, sum(cache_write_tokens) AS cw, sum(output_tokens) AS o, "
        "sum(unpriced_api_calls) AS unpriced FROM DB.usage_hourly",
    )[0]
    assert got["cost_usd"] == hourly["cost"]
    assert got["api_calls"] == hourly["calls"] == 12
    assert (
        got["input_tokens"],
        got["cache_read_tokens"],
        got["cache_write_tokens"],
        got["output_tokens"],
    ) == (hourly["i"], hourly["cr"], hourly["cw"], hourly["o"])
    assert got["unpriced_api_calls"] == hourly["unpriced"] == 2
    assert got["sessions"] == 5
    assert got["active_users"] == 3  # ada, bob and cy (by user id: no e-mail)
    assert got["api_errors"] == 1 and got["detections"] == 1
    assert (
        got["tool_calls"] == view(clickhouse_db, "SELECT count() AS n FROM DB.tool_calls")[0]["n"]
    )
    assert got["cache_hit_ratio"] == pytest.approx(
        hourly["cr"] / (hourly["i"] + hourly["cr"] + hourly["cw"])
    )
    # Filters narrow every figure the same way.
    team = get(f"{console}/api/v1/summary?from=now-1d&team=data").json()
    data_cost = view(
        clickhouse_db, "SELECT sum(cost_usd) AS c FROM DB.usage_hourly WHERE team = 'data'"
    )[0]["c"]
    assert team["cost_usd"] == data_cost and team["sessions"] == 2 and team["detections"] == 0
    model = get(f"{console}/api/v1/summary?from=now-1d&model=claude-opus-4-1").json()
    assert (model["cost_usd"], model["sessions"], model["tool_calls"]) == (1.25, 1, 1)


def test_sessions_list_carries_the_view_row_of_each_session(
    console: str, clickhouse_db: ClickHouseDatabase
) -> None:
    got = get(f"{console}/api/v1/sessions").json()
    assert got["total"] == 5
    stored = {r["session_id"]: r for r in view(clickhouse_db, "SELECT * FROM DB.sessions")}
    assert {s["session_id"] for s in got["sessions"]} == set(stored)
    for s in got["sessions"]:
        row = stored[s["session_id"]]
        for key in (
            "agent",
            "team",
            "api_calls",
            "tool_calls",
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "output_tokens",
            "cost_usd",
            "user_prompts",
            "api_errors",
            "detections",
        ):
            assert s[key] == row[key], (s["session_id"], key)
        assert s["user"] == (row["user_email"] or row["user_id"])
        assert s["start"] == row["first_seen"].isoformat() + "Z"
    by_id = {s["session_id"]: s for s in got["sessions"]}
    assert by_id["s-cy-2"]["cost_usd"] is None  # unpriced: NULL, never 0
    assert by_id["s-ada-2"]["models"] == ["gpt-5-codex"]
    assert by_id["s-cy-1"]["user"] == "u-cy"
    # Newest first by default.
    starts = [s["start"] for s in got["sessions"]]
    assert starts == sorted(starts, reverse=True)


def test_sessions_paginate_sort_search_and_filter(console: str) -> None:
    seen: list[str] = []
    for offset in (0, 2, 4):
        page = get(
            f"{console}/api/v1/sessions?limit=2&offset={offset}&sort=cost_usd&order=asc"
        ).json()
        assert page["total"] == 5
        seen += [s["session_id"] for s in page["sessions"]]
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 5
    # Ascending cost with the unpriced session (NULL) last.
    assert seen == ["s-cy-1", "s-ada-1", "s-ada-2", "s-bob-1", "s-cy-2"]
    beyond = get(f"{console}/api/v1/sessions?limit=2&offset=10").json()
    assert beyond == {"sessions": [], "total": 5}
    found = get(f"{console}/api/v1/sessions?q=BOB@EXAMPLE").json()
    assert [s["session_id"] for s in found["sessions"]] == ["s-bob-1"]
    agents = get(f"{console}/api/v1/sessions?agent=codex,gemini_cli").json()
    assert {s["session_id"] for s in agents["sessions"]} == {"s-ada-2", "s-cy-1", "s-cy-2"}
    users = get(f"{console}/api/v1/sessions?user=u-cy&user=bob@example.com").json()
    assert users["total"] == 3
    model = get(f"{console}/api/v1/sessions?model=gpt-5-codex").json()
    assert [s["session_id"] for s in model["sessions"]] == ["s-ada-2"]
    last_hour = datetime.fromtimestamp(NOW_HOUR // 10**9 - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    narrow = get(f"{console}/api/v1/sessions?from={last_hour}").json()
    assert [s["session_id"] for s in narrow["sessions"]] == ["s-bob-1"]


def test_sessions_csv_has_a_row_per_session_with_exact_costs(console: str) -> None:
    answer = get(f"{console}/api/v1/sessions?format=csv&sort=cost_usd")
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["session_id"] for r in rows] == ["s-bob-1", "s-ada-2", "s-ada-1", "s-cy-1", "s-cy-2"]
    assert rows[0]["cost_usd"] == "1.25" and rows[-1]["cost_usd"] == ""
    assert rows[1]["models"] == "gpt-5-codex"


def test_session_timeline_lists_every_event_in_order(
    console: str, clickhouse_db: ClickHouseDatabase
) -> None:
    got = get(f"{console}/api/v1/sessions/s-ada-1").json()
    assert got["session_id"] == "s-ada-1" and got["cost_usd"] == pytest.approx(
        0.0123 + 0.0456 + 0.0789
    )
    types = [i["type"] for i in got["timeline"]]
    assert types == [
        "user_prompt",
        "api_call",
        "tool_call",
        "api_call",
        "tool_call",
        "api_call",
        "tool_call",
        "detection",
    ]
    calls = view(
        clickhouse_db,
        "SELECT event_id, cost_usd, model FROM DB.api_calls "
        "WHERE session_id = 's-ada-1' ORDER BY timestamp",
    )
    got_calls = [i for i in got["timeline"] if i["type"] == "api_call"]
    assert [(c["event_id"], c["cost_usd"], c["model"]) for c in got_calls] == [
        (c["event_id"], c["cost_usd"], c["model"]) for c in calls
    ]
    tool = next(i for i in got["timeline"] if i["type"] == "tool_call")
    assert (tool["tool_name"], tool["decision"], tool["decision_source"], tool["success"]) == (
        "Bash",
        "accept",
        "config",
        True,
    )
    detection = got["timeline"][-1]
    assert (detection["rule_id"], detection["severity"]) == ("dangerous-command", "high")
    missing = get(f"{console}/api/v1/sessions/{quote('no such session')}")
    assert missing.status == 404 and "no such session" in missing.json()["error"]


def test_costs_group_by_equals_usage_hourly(
    console: str, clickhouse_db: ClickHouseDatabase
) -> None:
    got = get(f"{console}/api/v1/costs?group_by=team,model").json()
    assert got["group_by"] == ["team", "model"]
    expected = view(
        clickhouse_db,
        "SELECT team, model, sum(cost_usd) AS cost_usd, "
        "sum(api_calls) AS api_calls FROM DB.usage_hourly GROUP BY team, model",
    )
    assert sorted((r["team"], r["model"], r["cost_usd"], r["api_calls"]) for r in got["costs"]) == (
        sorted((r["team"], r["model"], r["cost_usd"], r["api_calls"]) for r in expected)
    )
    by_user = {
        r["user"]: r["cost_usd"]
        for r in get(f"{console}/api/v1/costs?group_by=user").json()["costs"]
    }
    assert by_user["bob@example.com"] == 1.25 and by_user["u-cy"] == pytest.approx(0.018)
    total = get(f"{console}/api/v1/costs").json()["costs"]
    assert len(total) == 1 and total[0]["api_calls"] == 12


def test_people_tools_and_detections(console: str, clickhouse_db: ClickHouseDatabase) -> None:
    people = get(f"{console}/api/v1/people").json()
    users = {u["user"]: u for u in people["users"]}
    assert set(users) == {"ada@example.com", "bob@example.com", "u-cy"}
    assert users["ada@example.com"]["sessions"] == 2
    assert users["ada@example.com"]["agents"] == ["claude_code", "codex"]
    assert (
        users["ada@example.com"]["cost_usd"]
        == view(
            clickhouse_db,
            "SELECT sum(cost_usd) AS c FROM DB.usage_hourly WHERE user_email = 'ada@example.com'",
        )[0]["c"]
    )
    teams = {t["team"]: t for t in people["teams"]}
    assert teams["platform"]["users"] == 2 and teams["data"]["sessions"] == 2
    assert people["unused_seats"] is None  # no directory configured

    tools = get(f"{console}/api/v1/tools").json()
    by_tool = {(t["tool_name"], t["mcp_server"]): t for t in tools["tools"]}
    bash = by_tool[("Bash", "")]
    assert bash["calls"] == 11 and bash["denials"] == 4 and bash["decisions"] == 11
    # The denied calls (s-cy-1) have no result; of the 7 results the odd-numbered failed.
    assert bash["failures"] == 3 and bash["results"] == 7
    assert bash["denial_rate"] == 4 / 11 and bash["failure_rate"] == 3 / 7
    assert tools["mcp_servers"][0]["mcp_server"] == "github"
    assert tools["mcp_servers"][0]["status"] == "allowed"
    assert tools["mcp_servers"][0]["first_user"] == "bob@example.com"

    found = get(f"{console}/api/v1/detections").json()
    assert found["total"] == 1 and found["detections"][0]["session_id"] == "s-ada-1"
    assert found["by_rule"] == [
        {"rule_id": "dangerous-command", "severity": "high", "detections": 1, "sessions": 1}
    ]
    assert get(f"{console}/api/v1/detections?severity=low").json()["total"] == 0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("/api/v1/summary?from=yesterday", "is not a time"),
        ("/api/v1/summary?from=now-1d&to=now-2d", "must be before"),
        ("/api/v1/summary?frm=now-1d", "unknown parameter frm"),
        ("/api/v1/costs?group_by=team,colour", "group_by: colour unknown"),
        ("/api/v1/sessions?limit=0", "limit: 0 is outside"),
        ("/api/v1/sessions?limit=ten", "not a whole number"),
        ("/api/v1/sessions?sort=price", "sort: 'price' is not one of"),
        ("/api/v1/sessions?format=xml", "format: 'xml' is not one of"),
        ("/api/v1/detections?from=now-5x", "invalid duration"),
    ],
)
def test_bad_parameters_get_a_400_with_a_message(console: str, query: str, message: str) -> None:
    answer = get(console + query)
    assert answer.status == 400
    assert message in answer.json()["error"]


def test_openapi_describes_every_endpoint(console: str) -> None:
    spec = get(f"{console}/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {
        "/api/v1/summary",
        "/api/v1/sessions",
        "/api/v1/sessions/{session_id}",
        "/api/v1/costs",
        "/api/v1/people",
        "/api/v1/tools",
        "/api/v1/detections",
        "/api/v1/health",
    } <= set(spec["paths"])
    params = {p["name"] for p in spec["paths"]["/api/v1/sessions"]["get"]["parameters"]}
    assert {"from", "to", "agent", "team", "user", "model", "limit", "offset", "q"} <= params
