"""Sessions for the console tests, stored through the real ClickHouse exporter.

Times are relative to now (the last hours), so the console's default range (7 days) and
"now-24h" both cover them. Costs are chosen so that sums are not round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector import agent_model as am
from collector.component import Host
from collector.records import Logs
from exporters.clickhouse.exporter import ClickHouseExporter
from tests.support.clickhouse_fixture import (
    ClickHouseDatabase,
    agent_record,
    logs_request,
    make_exporter,
)

SECOND = 10**9
HOUR = 3600 * SECOND
NOW_HOUR = time.time_ns() // HOUR * HOUR

PEOPLE = {
    "ada": {"user_id": "u-ada", "user_email": "ada@example.com", "team": "platform"},
    "bob": {"user_id": "u-bob", "user_email": "bob@example.com", "team": "platform"},
    "cy": {"user_id": "u-cy", "user_email": "", "team": "data"},
}


@dataclass
class Seeded:
    exporter: ClickHouseExporter
    sessions: list[str] = field(default_factory=list)


def _session(
    sid: str,
    who: str,
    agent: str,
    model: str,
    start_ns: int,
    costs: list[float | None],
    *,
    tool: str = "Bash",
    mcp: str = "",
    reject: bool = False,
    detection: bool = False,
    error: bool = False,
) -> list[Any]:
    base = {**PEOPLE[who], "agent": agent, "agent_version": "1.2.3", "session_id": sid}
    n = 0

    def eid() -> str:
        nonlocal n
        n += 1
        return f"{sid}-e{n}"

    records = [
        agent_record(
            am.EventType.USER_PROMPT,
            eid(),
            start_ns,
            **base,
            prompt_id=f"{sid}-p1",
            prompt_length=42,
        ),
    ]
    t = start_ns
    for i, cost in enumerate(costs):
        t += 2 * SECOND
        attrs: dict[str, Any] = {
            **base,
            "prompt_id": f"{sid}-p1",
            "provider": "anthropic",
            "model": model,
            "request_id": f"{sid}-r{i}",
            "input_tokens": 100 + i,
            "cache_read_tokens": 1000 * (i + 1),
            "cache_write_tokens": 200,
            "output_tokens": 50 + i,
            "reasoning_tokens": 5,
            "duration_ms": 1500.0 + i,
            "status": "ok",
            "attempt": 1,
        }
        if cost is not None:
            attrs["cost_usd"] = cost
        records.append(agent_record(am.EventType.API_CALL, eid(), t, **attrs))
        t += SECOND
        tool_attrs: dict[str, Any] = {
            **base,
            "prompt_id": f"{sid}-p1",
            "tool_name": tool,
            "tool_call_id": f"{sid}-t{i}",
            "decision": "reject" if reject else "accept",
            "decision_source": "config",
            "duration_ms": 40.0 + i,
            "command": "ls -la" if tool == "Bash" else "",
        }
        if not reject:
            tool_attrs["success"] = i % 2 == 0
        if mcp:
            tool_attrs["mcp_server"] = mcp
        records.append(agent_record(am.EventType.TOOL_CALL, eid(), t, **tool_attrs))
    if error:
        t += SECOND
        records.append(
            agent_record(
                am.EventType.API_ERROR,
                eid(),
                t,
                **base,
                prompt_id=f"{sid}-p1",
                model=model,
                status="529",
                error_message="overloaded",
                attempt=2,
            )
        )
    if detection:
        t += SECOND
        records.append(
            agent_record(
                am.EventType.DETECTION,
                eid(),
                t,
                **base,
                prompt_id=f"{sid}-p1",
                rule_id="dangerous-command",
                severity="high",
                evidence="rm -rf /…",
                tool_name="Bash",
            )
        )
    return records


def seed(db: ClickHouseDatabase, data_dir: Path) -> Seeded:
    """Five sessions of three people, three agents and two teams, one unpriced model."""
    exporter = make_exporter(db, str(data_dir))
    plan = [
        (
            "s-ada-1",
            "ada",
            "claude_code",
            "claude-sonnet-4-5",
            NOW_HOUR - 3 * HOUR,
            [0.0123, 0.0456, 0.0789],
            {"detection": True},
        ),
        (
            "s-ada-2",
            "ada",
            "codex",
            "gpt-5-codex",
            NOW_HOUR - 2 * HOUR + 60 * SECOND,
            [0.101, 0.202],
            {"error": True},
        ),
        (
            "s-bob-1",
            "bob",
            "claude_code",
            "claude-opus-4-1",
            NOW_HOUR - HOUR + 5 * SECOND,
            [1.25],
            {"mcp": "github", "tool": "create_issue"},
        ),
        (
            "s-cy-1",
            "cy",
            "gemini_cli",
            "gemini-2.5-pro",
            NOW_HOUR - 2 * HOUR,
            [0.003, 0.004, 0.005, 0.006],
            {"reject": True},
        ),
        ("s-cy-2", "cy", "gemini_cli", "gemini-unknown", NOW_HOUR - 5 * HOUR, [None, None], {}),
    ]
    seeded = Seeded(exporter)
    for i, (sid, who, agent, model, start, costs, extra) in enumerate(plan):
        exporter.consume_logs(
            Logs.from_proto(logs_request(_session(sid, who, agent, model, start, costs, **extra))),
            f"seed-{i}",
        )
        seeded.sessions.append(sid)
    return seeded


def host_with(exporter: ClickHouseExporter, data_dir: Path) -> Host:
    host = Host(str(data_dir))
    host.exporters[exporter.name] = exporter
    return host
