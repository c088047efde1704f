"""``agentwatch reconcile``: how much of each session's API calls OTLP delivered, against the
agents' own session files (the ``call_reconciliation`` view, schema migration 8)."""

from __future__ import annotations

from datetime import date
from typing import Any

from clickhouse_connect.driver.client import Client

PER_SESSION = (
    "SELECT agent, session_id, user_id, user_email, first_seen, last_seen, otlp_calls, "
    "file_calls, both_calls, otlp_only_calls, file_only_calls, otlp_tokens, file_tokens, "
    "coverage_pct FROM call_reconciliation WHERE last_seen >= {since:DateTime64(9)} "
    "ORDER BY coverage_pct ASC NULLS LAST, last_seen DESC"
)
PER_USER = (
    "SELECT if(c.user_email != '', c.user_email, c.user_id) AS user, c.agent AS agent, "
    "count() AS sessions, sum(c.otlp_calls) AS otlp_calls, sum(c.file_calls) AS file_calls, "
    "sum(c.both_calls) AS both_calls, sum(c.otlp_only_calls) AS otlp_only_calls, "
    "sum(c.file_only_calls) AS file_only_calls, sum(c.otlp_tokens) AS otlp_tokens, "
    "sum(c.file_tokens) AS file_tokens, if(sum(c.file_calls) = 0, NULL, "
    "round(100 * sum(c.both_calls) / sum(c.file_calls), 2)) AS coverage_pct "
    "FROM call_reconciliation AS c WHERE c.last_seen >= {since:DateTime64(9)} "
    "GROUP BY user, agent ORDER BY coverage_pct ASC NULLS LAST, user, agent"
)


def report(
    client: Client, since: date | None
) -> tuple[tuple[list[str], list[tuple[Any, ...]]], tuple[list[str], list[tuple[Any, ...]]]]:
    """(columns, rows) per session and per user, sessions last seen on or after ``since``."""
    params = {"since": str(since or date(1970, 1, 1))}
    out = []
    for sql in (PER_SESSION, PER_USER):
        result = client.query(sql, parameters=params)
        out.append((list(result.column_names), [tuple(r) for r in result.result_rows]))
    return out[0], out[1]
