"""The console's server-rendered pages: every page renders what the API answers (the
browser checks in tests/e2e run them in chromium)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from extensions.console.component import ConsoleExtension
from extensions.console.config import ConsoleConfig
from tests.support.clickhouse_fixture import ClickHouseDatabase
from tests.support.console.client import get
from tests.support.console.data import host_with, seed

PAGES = ["/", "/sessions", "/sessions/s-ada-1", "/people", "/tools", "/security", "/health"]


@pytest.fixture
def console(clickhouse_db: ClickHouseDatabase, tmp_path: Path) -> Iterator[str]:
    seeded = seed(clickhouse_db, tmp_path)
    directory = tmp_path / "directory.csv"
    directory.write_text(
        "email,team,display_name\nada@example.com,platform,Ada\nidle@example.com,data,Idle\n"
    )
    cfg = ConsoleConfig.model_validate(
        {"endpoint": "127.0.0.1:0", "directory_file": str(directory)}
    )
    ext = ConsoleExtension("console", cfg)
    ext.start(host_with(seeded.exporter, tmp_path))
    yield f"http://127.0.0.1:{ext.port}"
    ext.shutdown()
    seeded.exporter.shutdown()


def test_every_page_renders_the_api_figures(console: str) -> None:
    for page in PAGES:
        answer = get(f"{console}{page}?from=now-1d&agent=claude_code,codex,gemini_cli")
        assert answer.status == 200, (page, answer.text[:500])
        assert "<main" in answer.text and "Cannot show" not in answer.text
    overview = get(f"{console}/?from=now-1d").text
    summary = get(f"{console}/api/v1/summary?from=now-1d").json()
    assert f'data-value="{summary["cost_usd"]}"' in overview
    for by in ("agent", "model", "team"):
        series = re.search(rf'id="series-{by}">(.*?)</script>', overview, re.S)
        assert series is not None
        charted = json.loads(series.group(1))
        costs = get(f"{console}/api/v1/costs?from=now-1d&group_by=hour,{by}").json()["costs"]
        assert sorted((r["hour"], r[by], r["cost_usd"]) for r in charted) == sorted(
            (r["hour"], r[by], r["cost_usd"]) for r in costs
        )
    top = get(f"{console}/api/v1/costs?from=now-1d&group_by=user").json()["costs"]
    for row in top:
        assert f'title="{row["user"]}"' in overview
        assert f'data-value="{row["cost_usd"]}"' in overview or row["cost_usd"] is None
    empty = get(f"{console}/?from=2020-01-01&to=2020-01-02")
    assert empty.status == 200 and "No API calls in this range." in empty.text
    sessions = get(f"{console}/sessions").text
    assert sessions.count("data-session=") == 5
    assert 'data-value="1.25"' in sessions and 'data-value="null"' in sessions
    timeline = get(f"{console}/sessions/s-ada-1").text
    types = re.findall(r'data-type="(\w+)"', timeline)
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
    assert "ls -la" in timeline  # the command, as stored
    security = get(f"{console}/security").text
    assert '/sessions/s-ada-1?agent=claude_code#ev-s-ada-1-e8"' in security


def test_unused_seats_come_from_the_directory(console: str) -> None:
    people = get(f"{console}/api/v1/people").json()
    assert [s["user"] for s in people["unused_seats"]] == ["idle@example.com"]
    assert people["unused_seats"][0]["last_seen"] is None
    assert "idle@example.com" in get(f"{console}/people").text


def test_a_bad_parameter_renders_an_error_page(console: str) -> None:
    answer = get(f"{console}/sessions?from=tomorrowish")
    assert answer.status == 400 and "is not a time" in answer.text
    assert get(f"{console}/sessions/nope").status == 404


def test_turns_keep_subagent_calls_under_the_turn_that_spawned_them() -> None:
    from extensions.console.app import turns

    def ev(kind: str, t: int, prompt: str = "") -> dict[str, object]:
        return {
            "type": kind,
            "timestamp": f"2026-01-01T00:00:{t:02d}Z",
            "prompt_id": prompt,
            "event_id": f"{kind}-{t}",
        }

    timeline = [
        ev("user_prompt", 1, "p1"),
        ev("api_call", 2, "p1"),
        ev("tool_call", 3, "p1"),  # spawns a subagent that runs on under p1
        ev("user_prompt", 4, "p2"),
        ev("api_call", 5, "p1"),  # the subagent's call, after the next prompt
        ev("api_call", 6, "p2"),
        ev("api_call", 7, "p9"),  # a turn whose prompt was not stored
        ev("detection", 8),  # no prompt id: the latest turn
    ]
    got = [(t["n"], t["prompt_id"], [e["event_id"] for e in t["events"]]) for t in turns(timeline)]
    assert got == [
        (1, "p1", ["api_call-2", "tool_call-3", "api_call-5"]),
        (2, "p2", ["api_call-6"]),
        (None, "p9", ["api_call-7", "detection-8"]),
    ]
