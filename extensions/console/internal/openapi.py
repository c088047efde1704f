"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from extensions.console.internal.queries import GROUP_KEYS, SESSION_SORTS, TIMELINE_VIEWS


def _param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


FILTERS = [
    _param(
        "from",
        "Start (inclusive): ISO 8601 (2026-01-31, 2026-01-31T12:00:00Z), now or "
        "now-<duration> (now-7d). Default: 7 days before `to`.",
    ),
    _param("to", "End (exclusive), same forms. Default: now."),
    _param("agent", "Agents, comma-separated (claude_code, codex, gemini_cli, ...)."),
    _param("team", "Teams, comma-separated."),
    _param("user", "Users (e-mail or user id), comma-separated."),
    _param("model", "Models, comma-separated; sessions and events of sessions that used one."),
]
PAGE = [
    _param("limit", "Rows per page (1-1000).", {"type": "integer", "default": 50}),
    _param("offset", "Rows to skip.", {"type": "integer", "default": 0}),
]
ERROR = {
    "description": "Bad parameter",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    },
}
REFUSED = {"description": "Authentication required (401) or not allowed (403); no data."}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _get(
    summary: str, parameters: list[dict[str, Any]], response: dict[str, Any]
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": parameters,
            "responses": {"200": response, "400": ERROR, "401": REFUSED, "403": REFUSED},
        }
    }


OBJ = {"type": "object", "additionalProperties": True}
SESSION = {
    "type": "object",
    "description": "Every column of the `sessions` view (docs/data-model.md) plus the fields "
    "below; columns the view gains later appear too.",
    "properties": {
        "session_id": {"type": "string"},
        "agent": {"type": "string"},
        "user": {"type": "string", "description": "user_email, or user_id when there is none"},
        "team": {"type": "string"},
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"},
        "duration_s": {"type": "number"},
        "models": {"type": "array", "items": {"type": "string"}},
        "api_calls": {"type": "integer"},
        "tool_calls": {"type": "integer"},
        "input_tokens": {"type": "integer"},
        "cache_read_tokens": {"type": "integer"},
        "cache_write_tokens": {"type": "integer"},
        "output_tokens": {"type": "integer"},
        "cost_usd": {"type": ["number", "null"], "description": "NULL when nothing was priced"},
    },
    "additionalProperties": True,
}


def spec(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "agentwatch console API",
            "version": version,
            "description": "Read-only answers from the public ClickHouse views. Cost and token "
            "totals read the hourly rollup (`usage_hourly`): they count the whole hours that "
            "start in [from, to). Sessions count when any of their events lies in [from, to).",
        },
        "paths": {
            "/api/v1/summary": _get(
                "Totals of the range: spend, tokens by class, API calls, sessions, active "
                "users, cache-hit ratio, errors, tool calls, detections",
                FILTERS,
                _ok("Totals", OBJ),
            ),
            "/api/v1/sessions": _get(
                "One row per session",
                [
                    *FILTERS,
                    *PAGE,
                    _param("q", "Search in session id, user, team and agent."),
                    _param("sort", "Sort key.", {"enum": list(SESSION_SORTS), "default": "start"}),
                    _param("order", "Direction.", {"enum": ["desc", "asc"], "default": "desc"}),
                    _param("format", "json or csv.", {"enum": ["json", "csv"], "default": "json"}),
                ],
                _ok(
                    "A page of sessions and the number of all that match",
                    {
                        "type": "object",
                        "properties": {
                            "sessions": {"type": "array", "items": SESSION},
                            "total": {"type": "integer"},
                        },
                    },
                ),
            ),
            "/api/v1/sessions/{session_id}": {
                "get": {
                    "summary": "A session with its turn-by-turn timeline",
                    "parameters": [
                        {
                            "name": "session_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        _param("agent", "The agent, if one id belongs to sessions of several."),
                    ],
                    "responses": {
                        "200": _ok(
                            "The session; `timeline` lists every stored event in time order. "
                            f"`type` is one of {', '.join(TIMELINE_VIEWS)}; the other fields "
                            "are the columns of that type's view (stored, redacted values).",
                            {
                                **SESSION,
                                "properties": {
                                    **SESSION["properties"],  # type: ignore[dict-item]
                                    "timeline": {"type": "array", "items": OBJ},
                                },
                            },
                        ),
                        "404": {"description": "No such session"},
                        "401": REFUSED,
                        "403": REFUSED,
                    },
                }
            },
            "/api/v1/costs": _get(
                "Cost and tokens grouped by keys",
                [
                    *FILTERS,
                    _param(
                        "group_by",
                        f"Comma-separated keys: {', '.join(GROUP_KEYS)}.",
                    ),
                ],
                _ok("Groups", {"type": "object", "properties": {"costs": {"type": "array"}}}),
            ),
            "/api/v1/people": _get(
                "Per user and per team: spend, sessions, active days, last seen, agents, "
                "models; and unused seats of the directory file",
                FILTERS,
                _ok("People", OBJ),
            ),
            "/api/v1/tools": _get(
                "Tools (calls, failure and denial rates, durations) and the MCP server catalog",
                FILTERS,
                _ok("Tools", OBJ),
            ),
            "/api/v1/detections": _get(
                "Security detections, newest first, and counts by rule",
                [*FILTERS, *PAGE, _param("severity", "Severities, comma-separated.")],
                _ok("Detections", OBJ),
            ),
            "/api/v1/health": _get(
                "Pipeline health: agentwatch's own counters, unpriced models, OTLP coverage of "
                "the session files, silent agents and users",
                FILTERS,
                _ok("Health", OBJ),
            ),
        },
    }
