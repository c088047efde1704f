"""Console checks run after the real CLIs went through agentwatch (the end of
test_agents_through_agentwatch.py): the JSON API and every page in a real browser (Debian's
chromium driven by PyPI playwright; no `playwright install`), compared with ClickHouse.

Screenshots of every page go to ``$AGENTWATCH_SCREENSHOTS`` (the README's are made with
``AGENTWATCH_SCREENSHOTS=docs/screenshots``) or else to the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = {
    "overview": "/",
    "sessions": "/sessions",
    "people": "/people",
    "tools": "/tools",
    "security": "/security",
    "health": "/health",
}


def screenshot_dir(default: Path) -> Path:
    path = Path(os.environ.get("AGENTWATCH_SCREENSHOTS") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}" + (f"?{urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def expected_order(stack: Any, session_id: str) -> list[tuple[str, str, datetime]]:
    """(event_id, type, timestamp) of the session's API and tool calls, in time order, from
    the public views themselves."""
    rows = stack.rows(
        "SELECT event_id, type, timestamp FROM ("
        "SELECT event_id, 'api_call' AS type, timestamp FROM api_calls "
        "WHERE session_id = {s:String} UNION ALL "
        "SELECT event_id, 'tool_call' AS type, timestamp FROM tool_calls "
        "WHERE session_id = {s:String}) ORDER BY timestamp, type, event_id",
        s=session_id,
    )
    return [(str(e), str(t), ts) for e, t, ts in rows]


@dataclass
class Browser:
    """One chromium for all checks; every page visit records console errors."""

    browser: Any
    errors: dict[str, list[str]] = field(default_factory=dict)

    def open(self, url: str, name: str) -> Any:
        page = self.browser.new_page(viewport={"width": 1440, "height": 900})
        errors = self.errors.setdefault(name, [])
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "response",
            lambda r: errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None,
        )
        page.goto(url, wait_until="networkidle")
        return page


@contextmanager
def chromium() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield Browser(browser)
        finally:
            browser.close()


def check_api(base: str, stack: Any, sessions: list[dict[str, Any]]) -> None:
    """Every run's session is listed with the exact cost and tokens of the sessions view, and
    its timeline holds its API and tool calls in ClickHouse's time order."""
    since = min(s["first_seen"] for s in sessions).replace(tzinfo=UTC).isoformat()
    listed = api(base, "/api/v1/sessions", **{"from": since, "limit": "1000"})
    by_id = {s["session_id"]: s for s in listed["sessions"]}
    assert listed["total"] == len(listed["sessions"]) >= len(sessions)
    for row in sessions:
        got = by_id[row["session_id"]]
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
        ):
            assert got[key] == row[key], (row["session_id"], key, got[key], row[key])
        detail = api(base, f"/api/v1/sessions/{quote(row['session_id'], safe='')}")
        calls = [
            (i["event_id"], i["type"])
            for i in detail["timeline"]
            if i["type"] in ("api_call", "tool_call")
        ]
        expected = [(e, t) for e, t, _ in expected_order(stack, row["session_id"])]
        assert calls == expected, (row["session_id"], calls, expected)
        assert [i["type"] for i in detail["timeline"]].count("api_call") == row["api_calls"]
    costs = api(base, "/api/v1/costs", **{"from": since, "group_by": "team"})["costs"]
    hourly = dict(
        stack.rows(
            "SELECT team, sum(cost_usd) FROM usage_hourly WHERE hour >= toStartOfHour("
            "parseDateTime64BestEffort({t:String})) GROUP BY team",
            t=since,
        )
    )
    assert {c["team"]: c["cost_usd"] for c in costs} == hourly


def check_pages(
    base: str, stack: Any, sessions: list[dict[str, Any]], shots: Path
) -> dict[str, list[str]]:
    """Every page in chromium: no console errors, the runs' sessions with their exact costs,
    each timeline's API and tool calls, a detection linking into its session's timeline.
    Returns the console errors per page (the caller asserts they are empty)."""
    since = min(s["first_seen"] for s in sessions).replace(tzinfo=UTC)
    query = "?" + urlencode({"from": since.strftime("%Y-%m-%dT%H:%M:%SZ")})
    with chromium() as b:
        for name, path in PAGES.items():
            page = b.open(f"{base}{path}{query}", name)
            assert page.locator("h1").first.is_visible(), name
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            if name == "sessions":
                shown = {
                    row.get_attribute("data-session"): row.locator(
                        "[data-key=cost_usd] .usd"
                    ).get_attribute("data-value")
                    for row in page.locator("tr[data-session]").all()
                }
                for s in sessions:
                    want = "null" if s["cost_usd"] is None else repr(s["cost_usd"])
                    assert shown[s["session_id"]] == want, (s["session_id"], shown)
            if name == "overview":
                assert page.locator(".chart canvas").count() >= 1, "no cost chart drawn"
            page.close()
        for s in sessions:
            sid = s["session_id"]
            page = b.open(f"{base}/sessions/{quote(sid, safe='')}{query}", f"session {sid}")
            cost = page.locator("#totals [data-key=cost_usd] .usd").get_attribute("data-value")
            assert cost == ("null" if s["cost_usd"] is None else repr(s["cost_usd"]))
            expected = expected_order(stack, sid)
            when = {e: ts for e, _, ts in expected}
            shown_ids: list[str] = []
            for turn in page.locator(".turn").all():
                ids = [
                    el.get_attribute("data-event")
                    for el in turn.locator(
                        "li.ev[data-type=api_call], li.ev[data-type=tool_call]"
                    ).all()
                ]
                times = [when[i] for i in ids]
                assert times == sorted(times), (sid, ids)  # in time order within a turn
                shown_ids += [str(i) for i in ids]
            assert sorted(shown_ids) == sorted(when), sid
            # Expanding an event shows its stored attributes.
            first = page.locator("li.ev[data-type=api_call] details.attrs").first
            first.locator("summary").click()
            assert '"event_id"' in first.locator("pre").inner_text()
            if s is sessions[0]:
                page.screenshot(path=str(shots / "session.png"), full_page=True)
            page.close()
        # A detection links into its session's timeline, at the detection.
        page = b.open(f"{base}/security{query}", "security link")
        link = page.locator("#detections tr[data-session] a.mono").first
        sid = link.locator("xpath=ancestor::tr").get_attribute("data-session")
        link.click()
        page.wait_for_load_state("networkidle")
        assert "/sessions/" in page.url and "#ev-" in page.url
        target = page.url.split("#", 1)[1]
        assert page.locator(f"#{target}").get_attribute("data-type") == "detection"
        assert page.locator("#session-id").inner_text() == sid
        page.close()
        return b.errors
