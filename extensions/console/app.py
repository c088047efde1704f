"""The console's web layer: the JSON API under /api/v1 and the server-rendered pages.

Starlette (ASGI) routes; handlers are plain functions that Starlette runs in its thread pool,
because the query layer blocks on ClickHouse. Pages and API call the same ``Store`` methods,
so a page shows exactly what the API returns.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

import collector
from extensions.console.config import ConsoleConfig
from extensions.console.internal import health, openapi
from extensions.console.internal.auth import Authenticator
from extensions.console.internal.params import (
    FILTER_KEYS,
    BadParameter,
    Filters,
    parse_choice,
    parse_filters,
    parse_int,
    split_values,
)
from extensions.console.internal.queries import SESSION_SORTS, Store, jsonable
from extensions.console.internal.seats import unused_seats
from processors.directory import Directory

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
FILTER_PARAMS = ("from", "to", *FILTER_KEYS)
PAGE_PARAMS = ("limit", "offset")
RANGES = [
    ("1h", "Last hour"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
]


class NotFound(Exception):
    pass


def _query(request: Request, allowed: tuple[str, ...]) -> dict[str, list[str]]:
    """The query string as name -> values; an unknown name is a 400 (a typo loses nothing)."""
    params = request.query_params
    unknown = sorted(set(params.keys()) - set(allowed))
    if unknown:
        raise BadParameter(
            f"unknown parameter {', '.join(unknown)}; this endpoint takes {', '.join(allowed)}"
        )
    return {key: params.getlist(key) for key in params}


# --- template filters ------------------------------------------------------------------------


def _usd(value: Any) -> str:
    if value is None:
        return "—"
    v = float(value)
    return f"${v:,.2f}" if abs(v) >= 100 else f"${v:,.4f}"


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.1f}%"


def _when(value: Any) -> str:
    if not value:
        return "—"
    return str(value).replace("T", " ").rstrip("Z")[:19]


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "—"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60)}s"
    return f"{int(s // 3600)}h {int(s % 3600 // 60)}m"


def _ms(value: Any) -> str:
    return "—" if value is None else f"{float(value):,.0f} ms"


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(usd=_usd, num=_num, pct=_pct, when=_when, duration=_duration, ms=_ms)
    env.filters["tojson_attr"] = lambda v: json.dumps(v, default=str, sort_keys=True, indent=1)
    return env


# --- the application --------------------------------------------------------------------------


class Console:
    def __init__(
        self,
        store: Store,
        config: ConsoleConfig,
        directory: Directory | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.config = config
        self.directory = directory
        self.clock = clock
        self.templates = make_templates()
        self.auth = Authenticator(config.auth)

    def app(self) -> ASGIApp:
        api = self._api
        page = self._page
        routes = [
            Route("/healthz", lambda r: PlainTextResponse("ok\n")),
            Route("/api/v1/openapi.json", self.openapi),
            Route("/api/v1/summary", api(self.api_summary, FILTER_PARAMS)),
            Route(
                "/api/v1/sessions",
                api(
                    self.api_sessions,
                    (*FILTER_PARAMS, *PAGE_PARAMS, "q", "sort", "order", "format"),
                ),
            ),
            Route("/api/v1/sessions/{session_id:path}", api(self.api_session, ("agent",))),
            Route("/api/v1/costs", api(self.api_costs, (*FILTER_PARAMS, "group_by"))),
            Route("/api/v1/people", api(self.api_people, FILTER_PARAMS)),
            Route("/api/v1/tools", api(self.api_tools, FILTER_PARAMS)),
            Route(
                "/api/v1/detections",
                api(self.api_detections, (*FILTER_PARAMS, *PAGE_PARAMS, "severity")),
            ),
            Route("/api/v1/health", api(self.api_health, FILTER_PARAMS)),
            Route("/", page(self.page_overview, "overview", FILTER_PARAMS)),
            Route(
                "/sessions",
                page(
                    self.page_sessions,
                    "sessions",
                    (*FILTER_PARAMS, *PAGE_PARAMS, "q", "sort", "order"),
                ),
            ),
            Route(
                "/sessions/{session_id:path}",
                page(self.page_session, "sessions", (*FILTER_PARAMS, "agent")),
            ),
            Route("/people", page(self.page_people, "people", FILTER_PARAMS)),
            Route("/tools", page(self.page_tools, "tools", FILTER_PARAMS)),
            Route(
                "/security",
                page(self.page_security, "security", (*FILTER_PARAMS, *PAGE_PARAMS, "severity")),
            ),
            Route("/health", page(self.page_health, "health", FILTER_PARAMS)),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        return AuthMiddleware(Starlette(routes=routes), self.auth)

    # --- plumbing ------------------------------------------------------------------------

    def _api(
        self, handler: Callable[[Request, dict[str, list[str]]], Any], allowed: tuple[str, ...]
    ) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                result = handler(request, _query(request, allowed))
            except BadParameter as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except NotFound as exc:
                return JSONResponse({"error": str(exc)}, status_code=404)
            except Exception as exc:
                log.exception("console API query failed")
                return JSONResponse({"error": f"query failed: {exc}"}, status_code=502)
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        return endpoint

    def _page(
        self,
        handler: Callable[[Request, dict[str, list[str]], Filters], dict[str, Any]],
        nav: str,
        allowed: tuple[str, ...],
    ) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            status = 200
            f: Filters | None = None
            try:
                get = _query(request, allowed)
                f = self._filters(get)
                context = handler(request, get, f)
                template = context.pop("template")
            except BadParameter as exc:
                status, template, context = 400, "error.html", {"error": str(exc)}
            except NotFound as exc:
                status, template, context = 404, "error.html", {"error": str(exc)}
            except Exception as exc:
                log.exception("console page query failed")
                status, template, context = 502, "error.html", {"error": f"query failed: {exc}"}
            html = self.templates.get_template(template).render(
                nav=nav,
                filters=f,
                raw=f.raw if f else {},
                ranges=RANGES,
                range_values=[f"now-{v}" for v, _ in RANGES],
                refresh_s=self.config.refresh_interval,
                path=request.url.path,
                version=collector.__version__,
                **context,
            )
            return HTMLResponse(html, status_code=status)

        return endpoint

    def _filters(self, get: dict[str, list[str]]) -> Filters:
        return parse_filters(get, now=self.clock())

    def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi.spec(collector.__version__))

    # --- API -----------------------------------------------------------------------------

    def api_summary(self, request: Request, get: dict[str, list[str]]) -> Any:
        f = self._filters(get)
        return {"from": jsonable(f.start), "to": jsonable(f.end), **self.store.summary(f)}

    def _session_page(
        self, get: dict[str, list[str]], f: Filters, default_limit: int = 50, max_limit: int = 1000
    ) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
        opts: dict[str, Any] = {
            "search": get.get("q", [""])[-1].strip(),
            "sort": parse_choice(get, "sort", SESSION_SORTS, "start"),
            "descending": parse_choice(get, "order", ("desc", "asc"), "desc") == "desc",
            "limit": parse_int(get, "limit", default_limit, 1, max_limit),
            "offset": parse_int(get, "offset", 0, 0, 10_000_000),
        }
        rows, total = self.store.sessions(f, **opts)
        return rows, total, opts

    def api_sessions(self, request: Request, get: dict[str, list[str]]) -> Any:
        f = self._filters(get)
        fmt = parse_choice(get, "format", ("json", "csv"), "json")
        if fmt == "csv":
            rows, _, _ = self._session_page(get, f, default_limit=100_000, max_limit=100_000)
            return Response(
                sessions_csv(rows),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="sessions.csv"'},
            )
        rows, total, _ = self._session_page(get, f)
        return {"sessions": rows, "total": total}

    def api_session(self, request: Request, get: dict[str, list[str]]) -> Any:
        session_id = request.path_params["session_id"]
        found = self.store.session(session_id, agents=split_values(get.get("agent", [])))
        if found is None:
            raise NotFound(f"no session {session_id!r}")
        return found

    def api_costs(self, request: Request, get: dict[str, list[str]]) -> Any:
        f = self._filters(get)
        group_by = split_values(get.get("group_by", []))
        return {"group_by": list(group_by), "costs": self.store.costs(f, group_by)}

    def people(self, f: Filters) -> dict[str, Any]:
        out = self.store.people(f)
        if self.directory is None:
            out["unused_seats"] = None
        else:
            idle = timedelta(seconds=self.config.unused_after)
            seats = unused_seats(self.directory, self.store.last_seen(), self.clock(), idle)
            out["unused_seats"] = jsonable(seats)
        out["unused_after_days"] = self.config.unused_after / 86400
        return out

    def api_people(self, request: Request, get: dict[str, list[str]]) -> Any:
        return self.people(self._filters(get))

    def api_tools(self, request: Request, get: dict[str, list[str]]) -> Any:
        return self.store.tools(self._filters(get))

    def _detections(self, get: dict[str, list[str]], f: Filters) -> dict[str, Any]:
        return self.store.detections(
            f,
            severities=split_values(get.get("severity", [])),
            limit=parse_int(get, "limit", 100, 1, 1000),
            offset=parse_int(get, "offset", 0, 0, 10_000_000),
        )

    def api_detections(self, request: Request, get: dict[str, list[str]]) -> Any:
        return self._detections(get, self._filters(get))

    def health(self, f: Filters) -> dict[str, Any]:
        return {
            "self_metrics": health.self_metrics(),
            "unpriced_models": self.store.unpriced_models(f),
            "coverage": self.store.coverage(f),
            "silent": self.store.silent(timedelta(seconds=self.config.silent_after)),
            "silent_after_s": self.config.silent_after,
        }

    def api_health(self, request: Request, get: dict[str, list[str]]) -> Any:
        return self.health(self._filters(get))

    # --- pages ---------------------------------------------------------------------------

    def page_overview(
        self, request: Request, get: dict[str, list[str]], f: Filters
    ) -> dict[str, Any]:
        span = f.end - f.start
        bucket = "hour" if span <= timedelta(days=3) else "day"
        found = self.store.overview(f, bucket)
        return {
            "template": "overview.html",
            "summary": found["summary"],
            "bucket": bucket,
            "series": found["series"],
            "top_users": found["users"][:10],
            "top_teams": found["teams"][:10],
        }

    def page_sessions(
        self, request: Request, get: dict[str, list[str]], f: Filters
    ) -> dict[str, Any]:
        rows, total, opts = self._session_page(get, f)
        return {
            "template": "sessions.html",
            "sessions": rows,
            "total": total,
            **opts,
            "sorts": list(SESSION_SORTS),
        }

    def page_session(
        self, request: Request, get: dict[str, list[str]], f: Filters
    ) -> dict[str, Any]:
        session_id = request.path_params["session_id"]
        found = self.store.session(session_id, agents=split_values(get.get("agent", [])))
        if found is None:
            raise NotFound(f"no session {session_id!r}")
        return {"template": "session.html", "s": found, "turns": turns(found["timeline"])}

    def page_people(
        self, request: Request, get: dict[str, list[str]], f: Filters
    ) -> dict[str, Any]:
        return {"template": "people.html", **self.people(f)}

    def page_tools(self, request: Request, get: dict[str, list[str]], f: Filters) -> dict[str, Any]:
        return {"template": "tools.html", **self.store.tools(f)}

    def page_security(
        self, request: Request, get: dict[str, list[str]], f: Filters
    ) -> dict[str, Any]:
        return {"template": "security.html", **self._detections(get, f)}

    def page_health(
        self, request: Request, get: dict[str, list[str]], f: Filters
    ) -> dict[str, Any]:
        return {"template": "health.html", **self.health(f)}


SESSION_CSV_COLUMNS = (
    "session_id",
    "start",
    "end",
    "user",
    "team",
    "agent",
    "agent_version",
    "models",
    "user_prompts",
    "duration_s",
    "api_calls",
    "tool_calls",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced_api_calls",
    "api_errors",
    "detections",
)


def sessions_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    extra = [k for k in (rows[0] if rows else {}) if k not in SESSION_CSV_COLUMNS]
    writer = csv.writer(out)
    columns = [*SESSION_CSV_COLUMNS, *extra]
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            [
                ";".join(v) if isinstance(v := row.get(c), list) else ("" if v is None else v)
                for c in columns
            ]
        )
    return out.getvalue()


def turns(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timeline as turns: each user prompt with every event of its ``prompt_id``
    (subagent calls included, wherever they fall in time). An event without a prompt id
    joins the latest turn; one whose prompt was not stored gets a turn of its own."""
    out: list[dict[str, Any]] = []
    by_prompt: dict[str, dict[str, Any]] = {}
    for item in timeline:
        pid = item.get("prompt_id") or ""
        if item["type"] == "user_prompt":
            turn = by_prompt.get(pid) if pid else None
            if turn is None or turn["prompt"] is not None:
                turn = {"prompt": None, "prompt_id": pid, "events": []}
                out.append(turn)
                if pid:
                    by_prompt[pid] = turn
            turn["prompt"] = item
            continue
        if pid:
            turn = by_prompt.get(pid)
            if turn is None:
                turn = by_prompt[pid] = {"prompt": None, "prompt_id": pid, "events": []}
                out.append(turn)
        elif out:
            turn = out[-1]
        else:
            turn = {"prompt": None, "prompt_id": "", "events": []}
            out.append(turn)
        turn["events"].append(item)
    n = 0
    for turn in out:
        if turn["prompt"] is not None:
            n += 1
        turn["n"] = n if turn["prompt"] is not None else None
    return out


class AuthMiddleware:
    """Every path but /healthz needs access when auth is configured; refusals carry no data."""

    def __init__(self, app: ASGIApp, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.auth.enabled or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        decision = self.auth.decide(headers)
        if decision.status == 200:
            await self.app(scope, receive, send)
            return
        response_headers = (
            {"WWW-Authenticate": self.auth.challenge} if decision.status == 401 else {}
        )
        response = JSONResponse(
            {"error": decision.message}, status_code=decision.status, headers=response_headers
        )
        await response(scope, receive, send)
