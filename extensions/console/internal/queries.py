"""The console's query layer, shared by the web API, the pages and the report commands.

Every query is a template in ``sql/`` rendered by Jinja2, which only chooses clauses and
whitelisted column expressions; every value is a ClickHouse query parameter. Only the public
views are read (docs/data-model.md), and row-shaped answers carry every column of their view,
so a column another migration appends shows up in the API without a change here.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
from clickhouse_connect.driver.client import Client

from extensions.console.internal.params import BadParameter, Filters

SQL_DIR = Path(__file__).parent / "sql"
_SQL = jinja2.Environment(
    loader=jinja2.FileSystemLoader(SQL_DIR),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
)

USER_EXPR = "if(user_email != '', user_email, user_id)"
GROUP_KEYS: dict[str, str] = {
    "agent": "agent",
    "team": "team",
    "user": USER_EXPR,
    "model": "model",
    "provider": "provider",
    "day": "toDate(hour)",
    "hour": "hour",
}
"""What ``costs?group_by=`` accepts, and the usage_hourly expression of each."""

SESSION_SORTS: dict[str, str] = {
    "start": "first_seen",
    "end": "last_seen",
    "user": USER_EXPR,
    "team": "team",
    "agent": "agent",
    "prompts": "user_prompts",
    "duration": "last_seen - first_seen",
    "api_calls": "api_calls",
    "tool_calls": "tool_calls",
    "tokens": "input_tokens + cache_read_tokens + cache_write_tokens + output_tokens",
    "cost_usd": "cost_usd",
    "errors": "api_errors",
    "detections": "detections",
}

TIMELINE_VIEWS: dict[str, str] = {
    "session_start": "session_starts",
    "user_prompt": "user_prompts",
    "api_call": "api_calls",
    "api_usage": "api_usage",
    "api_error": "api_errors",
    "tool_call": "tool_calls",
    "code_change": "code_changes",
    "detection": "detections",
}
"""Timeline item type -> the public view its rows come from; the order breaks time ties."""
_RANK = {name: n for n, name in enumerate(TIMELINE_VIEWS)}
_COUNTED_BY = {
    "user_prompt": "user_prompts",
    "api_call": "api_calls",
    "api_usage": "usage_records",
    "api_error": "api_errors",
    "tool_call": "tool_calls",
    "detection": "detections",
}
"""Timeline types whose count the ``sessions`` view has (session starts and code changes
have none, so they are always looked up)."""
_TICK = timedelta(microseconds=1)
"""Python times stop at microseconds, the views' at nanoseconds: an upper bound taken from a
stored time is widened by one microsecond so that the row it came from is still included."""


def jsonable(value: Any) -> Any:
    """A ClickHouse value as JSON: UTC ISO times, NaN (empty averages) as null."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def user_of(row: dict[str, Any]) -> str:
    return str(row.get("user_email") or row.get("user_id") or "")


def render(template: str, **variables: Any) -> str:
    return _SQL.get_template(template).render(**variables)


def _summary(usage: dict[str, Any], sessions: dict[str, Any], events: dict[str, Any]) -> Any:
    usage = {k: v for k, v in usage.items() if k in _USAGE_TOTALS}
    inputs = usage["input_tokens"] + usage["cache_read_tokens"] + usage["cache_write_tokens"]
    return jsonable(
        {
            **usage,
            **sessions,
            **events,
            "total_tokens": inputs + usage["output_tokens"],
            "cache_hit_ratio": usage["cache_read_tokens"] / inputs if inputs else None,
        }
    )


_USAGE_TOTALS = (
    "cost_usd",
    "api_calls",
    "usage_records",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "unpriced_api_calls",
    "unpriced_usage_records",
    "active_users",
)


_TOOL_COLUMNS = (
    "tool_name",
    "mcp_server",
    "calls",
    "decisions",
    "denials",
    "results",
    "failures",
    "avg_duration_ms",
    "p95_duration_ms",
    "sessions",
)
_MCP_COLUMNS = (
    "mcp_server",
    "first_seen",
    "first_user",
    "last_seen",
    "users",
    "calls",
    "accepted",
    "denials",
    "tools",
)


class ClientPool:
    """Clients for concurrent requests: a clickhouse-connect client is not shared across
    threads, so each query borrows one (made on first need, at most ``size``)."""

    def __init__(self, make: Callable[[], Client], size: int = 4) -> None:
        self.size = size
        self._make = make
        self._idle: queue.LifoQueue[Client] = queue.LifoQueue()
        self._slots = threading.Semaphore(size)
        self._all: list[Client] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def client(self) -> Iterator[Client]:
        with self._slots:
            try:
                client = self._idle.get_nowait()
            except queue.Empty:
                client = self._make()
                with self._lock:
                    self._all.append(client)
            try:
                yield client
            finally:
                self._idle.put(client)

    def close(self) -> None:
        with self._lock:
            for client in self._all:
                with contextlib.suppress(Exception):
                    client.close()
            self._all.clear()


class Store:
    """The console's questions, each answered by one or a few queries on the public views."""

    def __init__(self, pool: ClientPool, timeout_s: float = 30.0) -> None:
        self.pool = pool
        self.settings = {"max_execution_time": max(1, math.ceil(timeout_s))}

    def together(self, *calls: Callable[[], Any]) -> list[Any]:
        """Run independent queries of one answer at once, each on its own client (a page's
        latency is then its slowest query, not their sum); in order with one client."""
        if self.pool.size <= 1 or len(calls) <= 1:
            return [call() for call in calls]
        with ThreadPoolExecutor(max_workers=min(self.pool.size, len(calls))) as workers:
            return [f.result() for f in [workers.submit(call) for call in calls]]

    def rows(
        self, template: str, parameters: dict[str, Any], **variables: Any
    ) -> list[dict[str, Any]]:
        sql = render(template, **variables)
        with self.pool.client() as client:
            result = client.query(sql, parameters=parameters, settings=self.settings)
        names = result.column_names
        return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def _filtered(self, template: str, f: Filters, **extra: Any) -> list[dict[str, Any]]:
        variables = {k: v for k, v in extra.items() if k.startswith("_")}
        params = {k: v for k, v in extra.items() if not k.startswith("_")}
        return self.rows(
            template,
            {**f.parameters(), **params},
            **f.template_vars(),
            **{k[1:]: v for k, v in variables.items()},
        )

    # --- overview -------------------------------------------------------------------------

    def summary(self, f: Filters) -> dict[str, Any]:
        usage, sessions, events = self.together(
            lambda: self._filtered("summary_usage.sql", f)[0],
            lambda: self._filtered("summary_sessions.sql", f)[0],
            lambda: self._filtered("summary_events.sql", f)[0],
        )
        return _summary(usage, sessions, events)

    def overview(self, f: Filters, bucket: str) -> dict[str, Any]:
        """The Overview page: the summary, cost per ``bucket`` (hour or day) by agent, model and
        team, and cost by user and team; the rollup is read once for all of them."""
        if bucket not in ("hour", "day"):
            raise BadParameter(f"bucket: {bucket!r} is not hour or day")
        rows, sessions, events = self.together(
            lambda: self._filtered("overview.sql", f, _bucket=GROUP_KEYS[bucket]),
            lambda: self._filtered("summary_sessions.sql", f)[0],
            lambda: self._filtered("summary_events.sql", f)[0],
        )
        sets: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            sets.setdefault(row.pop("grouping_set"), []).append(row)
        measures = ("bucket", "agent", "model", "team", "user", "active_users")

        def shaped(name: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
            out = [
                {**{k: r[k] for k in keys}, **{k: v for k, v in r.items() if k not in measures}}
                for r in sets.get(name, [])
            ]
            out.sort(key=lambda r: (-(r["cost_usd"] or 0.0), *(str(r[k]) for k in keys)))
            return jsonable(out)  # type: ignore[no-any-return]

        # No rows in the range: no total row either; zeros, and no cost (NULL, never 0).
        total = sets.get("total") or [{**dict.fromkeys(_USAGE_TOTALS, 0), "cost_usd": None}]
        series = {
            by: sorted(
                [{bucket: r.pop("bucket"), **r} for r in shaped(by, ("bucket", by))],
                key=lambda r: r[bucket],
            )
            for by in ("agent", "model", "team")
        }
        return {
            "summary": _summary(total[0], sessions, events),
            "series": series,
            "users": shaped("user", ("user",)),
            "teams": shaped("top_team", ("team",)),
        }

    def costs(self, f: Filters, group_by: Sequence[str]) -> list[dict[str, Any]]:
        unknown = [k for k in group_by if k not in GROUP_KEYS]
        if unknown:
            raise BadParameter(
                f"group_by: {', '.join(unknown)} unknown; choose from {', '.join(GROUP_KEYS)}"
            )
        keys = [(k, GROUP_KEYS[k]) for k in dict.fromkeys(group_by)]
        return jsonable(self._filtered("costs.sql", f, _keys=keys))  # type: ignore[no-any-return]

    # --- sessions -------------------------------------------------------------------------

    def sessions(
        self,
        f: Filters,
        *,
        search: str = "",
        sort: str = "start",
        descending: bool = True,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        if sort not in SESSION_SORTS:
            raise BadParameter(f"sort: {sort!r} unknown; choose from {', '.join(SESSION_SORTS)}")
        rows = self._filtered(
            "sessions.sql",
            f,
            q=search,
            limit=limit,
            offset=offset,
            _search=bool(search),
            _sort=SESSION_SORTS[sort],
            _direction="DESC" if descending else "ASC",
        )
        total = int(rows[0].pop("total_rows")) if rows else 0
        for row in rows[1:]:
            row.pop("total_rows")
        if not rows and offset:
            total = self.sessions(f, search=search, sort=sort, limit=1, offset=0)[1]
        models = self._models(rows)
        return [self._session(row, models) for row in rows], total

    def _models(self, rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
        if not rows:
            return {}
        found = self.rows(
            "session_models.sql",
            {
                "ids": [r["session_id"] for r in rows],
                "lo": min(r["first_seen"] for r in rows),
                "hi": max(r["last_seen"] for r in rows) + _TICK,
            },
        )
        return {(r["agent"], r["session_id"]): list(r["models"]) for r in found}

    @staticmethod
    def _session(row: dict[str, Any], models: dict[tuple[str, str], list[str]]) -> dict[str, Any]:
        first, last = row["first_seen"], row["last_seen"]
        return jsonable(  # type: ignore[no-any-return]
            {
                "session_id": row["session_id"],
                "agent": row["agent"],
                "user": user_of(row),
                "team": row["team"],
                "start": first,
                "end": last,
                "duration_s": (last - first).total_seconds(),
                "models": models.get((row["agent"], row["session_id"]), []),
                **row,
            }
        )

    def session(self, session_id: str, agents: Sequence[str] = ()) -> dict[str, Any] | None:
        """The session (its row of ``sessions``) with its timeline: every row of every event
        view for it, in time order, each with a ``type``."""
        found = self.rows("session.sql", {"id": session_id})
        if agents:
            found = [r for r in found if r["agent"] in agents]
        if not found:
            return None
        row = found[0]
        models = self._models([row])
        out = self._session(row, models)
        bounds = {
            "id": session_id,
            "agent": row["agent"],
            "lo": row["first_seen"],
            "hi": row["last_seen"] + _TICK,
        }
        # A view the session's counts say is empty for it is not asked.
        kinds = [k for k in TIMELINE_VIEWS if row.get(_COUNTED_BY.get(k, ""), 1) != 0]
        found_rows = self.together(
            *(
                (lambda view=TIMELINE_VIEWS[k]: self.rows("timeline.sql", bounds, view=view))  # type: ignore[misc]
                for k in kinds
            )
        )
        timeline = [
            {"type": kind, **item}
            for kind, rows in zip(kinds, found_rows, strict=True)
            for item in rows
        ]
        timeline.sort(key=lambda i: (i.pop("_ns"), _RANK[i["type"]], i.get("event_id", "")))
        out["timeline"] = jsonable(timeline)
        out["other_agents"] = [r["agent"] for r in found[1:]]
        return out

    # --- people, tools, security, health ---------------------------------------------------

    def people(self, f: Filters) -> dict[str, Any]:
        user_rows, user_activity, team_rows, team_activity_rows = self.together(
            lambda: self._filtered("people_users.sql", f),
            lambda: self._filtered("people_sessions.sql", f, _key="user"),
            lambda: self._filtered("people_teams.sql", f),
            lambda: self._filtered("people_sessions.sql", f, _key="team"),
        )
        users = {r["user"]: r for r in user_rows}
        activity = {r["key"]: r for r in user_activity}
        out_users = []
        for name in sorted(set(users) | set(activity)):
            u, a = users.get(name, {}), activity.get(name, {})
            out_users.append(
                {
                    "user": name,
                    "team": u.get("main_team", ""),
                    "cost_usd": u.get("cost_usd"),
                    "api_calls": u.get("api_calls", 0),
                    "tokens": u.get("tokens", 0),
                    "sessions": a.get("sessions", 0),
                    "active_days": u.get("active_days", 0),
                    "last_seen": a.get("last_active"),
                    "agents": sorted(set(u.get("agents", [])) | set(a.get("agents", []))),
                    "models": [m for m in u.get("models", []) if m],
                }
            )
        teams = {r["team"]: r for r in team_rows}
        team_activity = {r["key"]: r for r in team_activity_rows}
        out_teams = []
        for name in sorted(set(teams) | set(team_activity)):
            t, a = teams.get(name, {}), team_activity.get(name, {})
            out_teams.append(
                {
                    "team": name,
                    "cost_usd": t.get("cost_usd"),
                    "api_calls": t.get("api_calls", 0),
                    "tokens": t.get("tokens", 0),
                    "sessions": a.get("sessions", 0),
                    "users": max(t.get("active_users", 0), a.get("users", 0)),
                    "active_days": t.get("active_days", 0),
                    "last_seen": a.get("last_active"),
                    "agents": sorted(set(t.get("agents", [])) | set(a.get("agents", []))),
                    "models": [m for m in t.get("models", []) if m],
                }
            )
        by_cost = lambda r: (-(r["cost_usd"] or 0.0), r.get("user", r.get("team")))  # noqa: E731
        return jsonable(
            {"users": sorted(out_users, key=by_cost), "teams": sorted(out_teams, key=by_cost)}
        )  # type: ignore[no-any-return]

    def last_seen(self) -> list[dict[str, Any]]:
        """Every user's last activity over all stored sessions (for unused seats)."""
        return self.rows("last_seen.sql", {})

    def tools(self, f: Filters) -> dict[str, Any]:
        tools: list[dict[str, Any]] = []
        servers: list[dict[str, Any]] = []
        for row in self._filtered("tools.sql", f):
            if row.pop("grouping_set") == "tool":
                tools.append({k: row[k] for k in _TOOL_COLUMNS})
            elif row["mcp_server"]:
                servers.append({k: row[k] for k in _MCP_COLUMNS})
        for t in tools:
            t["failure_rate"] = t["failures"] / t["results"] if t["results"] else None
            t["denial_rate"] = t["denials"] / t["decisions"] if t["decisions"] else None
        for s in servers:
            s["status"] = (
                "denied"
                if s["denials"] and not s["accepted"]
                else "allowed"
                if s["accepted"] and not s["denials"]
                else "mixed"
                if s["denials"]
                else "no decision"
            )
        tools.sort(key=lambda t: (-t["calls"], t["tool_name"], t["mcp_server"]))
        servers.sort(key=lambda s: (-s["calls"], s["mcp_server"]))
        return jsonable({"tools": tools, "mcp_servers": servers})  # type: ignore[no-any-return]

    def detections(
        self, f: Filters, *, severities: Sequence[str] = (), limit: int = 100, offset: int = 0
    ) -> dict[str, Any]:
        rows = self._filtered(
            "detections.sql",
            f,
            severities=list(severities),
            limit=limit,
            offset=offset,
            _severities=bool(severities),
        )
        total = int(rows[0]["total_rows"]) if rows else 0
        for r in rows:
            r.pop("total_rows")
        by_rule = self._filtered("detections_by_rule.sql", f)
        return jsonable({"detections": rows, "total": total, "by_rule": by_rule})  # type: ignore[no-any-return]

    def unpriced_models(self, f: Filters) -> list[dict[str, Any]]:
        return jsonable(self._filtered("unpriced_models.sql", f))  # type: ignore[no-any-return]

    def coverage(self, f: Filters) -> list[dict[str, Any]]:
        return jsonable(self._filtered("coverage.sql", f))  # type: ignore[no-any-return]

    def silent(self, silent_after: timedelta) -> list[dict[str, Any]]:
        return jsonable(  # type: ignore[no-any-return]
            self.rows("silent.sql", {"silent_s": int(silent_after.total_seconds())})
        )
