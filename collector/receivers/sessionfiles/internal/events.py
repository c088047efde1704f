"""What a reader produces: vendor-dialect log events, before they are encoded as OTLP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Scalar = str | int | float | bool

SOURCE_ATTRIBUTE = "agentwatch.source"
"""Marks every record read from a session file; OTLP records do not carry it."""
SOURCE_VALUE = "session_files"


@dataclass(slots=True)
class FileEvent:
    """One log record in the agent's own dialect."""

    time_ns: int
    body: str
    """The log body the CLI uses for this event (e.g. ``claude_code.api_request``)."""
    attributes: dict[str, Scalar]
    api_call: bool = False
    """True for a model API call (counted in the import summary)."""
    match_tokens: tuple[int, int, int, int] | None = None
    """Input (uncached), cache read, cache write and output (reasoning included) tokens, to
    find the same call among stored ones (internal/twins.py)."""


@dataclass(slots=True)
class Session:
    """The events of one session read from one file, with the resource they belong to."""

    session_id: str
    resource: dict[str, Scalar]
    events: list[FileEvent] = field(default_factory=list)


@dataclass(slots=True)
class FileResult:
    """What reading one file gave: sessions and the lines that could not be used."""

    path: Path
    sessions: list[Session] = field(default_factory=list)
    bad_lines: int = 0
    """Lines that are not JSON objects (a torn last line of a live file is one)."""
    warnings: list[str] = field(default_factory=list)


def parse_time_ns(value: Any) -> int | None:
    """ISO 8601 (``2026-07-10T23:44:54.739Z``) or epoch milliseconds to Unix nanoseconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1_000_000) if value < 1e14 else int(value)
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00") if value.endswith("Z") else value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def json_lines(path: Path, start: int = 0) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """``(offset after the line, object)`` per complete line from ``start``; ``None`` for a line
    that is not a JSON object. A last line without its newline is left for the next read."""
    with path.open("rb") as fh:
        fh.seek(start)
        offset = start
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            offset += len(raw)
            text = raw.strip()
            if not text:
                continue
            try:
                value = json.loads(text)
            except ValueError:
                yield offset, None
                continue
            yield offset, value if isinstance(value, dict) else None


def json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def as_int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0
