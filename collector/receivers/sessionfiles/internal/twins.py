"""Finding a file call's OTLP twin among the stored calls (public ``api_calls`` view).

Claude Code's transcripts carry the request id its telemetry sends, so both name a call alike
anyway. Codex and Gemini CLI share no id between their files and their OTLP, so a file call
is matched within its session by its tokens: the k-th stored call with the same four token
counts is the k-th file call with them, if their times are within ``WINDOW_NS``. A matched file
record is then sent with the twin's event id, and the store keeps the call once with both
sources noted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from clickhouse_connect.driver.client import Client

from collector import agent_model as am
from collector.receivers.sessionfiles.internal.events import Session

WINDOW_NS = 600 * 10**9
STORED_CALLS = (
    "SELECT session_id, toUnixTimestamp64Nano(timestamp) AS ns, event_id, input_tokens, "
    "cache_read_tokens, cache_write_tokens, output_tokens FROM {db}api_calls "
    "WHERE agent = {{agent:String}} AND session_id IN {{sessions:Array(String)}} ORDER BY ns"
)

STORED_SESSIONS = (
    "SELECT agent, session_id FROM {db}sessions WHERE api_calls > 0 LIMIT {{limit:UInt64}}"
)
KNOWN_LIMIT = 500_000

Tokens = tuple[int, int, int, int]


class Twins:
    """One lookup per file only for sessions the store has calls of: the list of those is
    read once (up to ``KNOWN_LIMIT``; beyond that every file is looked up)."""

    def __init__(self, client: Client, database: str = "") -> None:
        self.client = client
        self.database = database
        rows = client.query(
            STORED_SESSIONS.format(db=_prefix(database)), parameters={"limit": KNOWN_LIMIT + 1}
        ).result_rows
        self.known: set[tuple[str, str]] | None = {(str(a), str(s)) for a, s in rows}
        if len(self.known) > KNOWN_LIMIT:
            self.known = None

    def align(self, agent: str, sessions: list[Session]) -> int:
        if self.known is not None:
            sessions = [s for s in sessions if (agent, s.session_id) in self.known]
        return align(self.client, agent, sessions, self.database) if sessions else 0


def _prefix(database: str) -> str:
    """``db.`` for a client without that default database (the exporter's own client)."""
    return f"`{database}`." if database else ""


def align(client: Client, agent: str, sessions: Iterable[Session], database: str = "") -> int:
    """Give file calls that are already stored the stored event id; returns how many."""
    by_session = {s.session_id: s for s in sessions if any(e.match_tokens for e in s.events)}
    if not by_session:
        return 0
    stored: dict[tuple[str, Tokens], list[tuple[int, str]]] = defaultdict(list)
    rows = client.query(
        STORED_CALLS.format(db=_prefix(database)),
        parameters={"agent": agent, "sessions": list(by_session)},
    ).result_rows
    for session_id, ns, event_id, *tokens in rows:
        stored[(session_id, (tokens[0], tokens[1], tokens[2], tokens[3]))].append(
            (int(ns), str(event_id))
        )
    matched = 0
    for session_id, session in by_session.items():
        seen: dict[Tokens, int] = defaultdict(int)
        for event in sorted((e for e in session.events if e.match_tokens), key=lambda e: e.time_ns):
            assert event.match_tokens is not None
            k = seen[event.match_tokens]
            seen[event.match_tokens] += 1
            twins = stored.get((session_id, event.match_tokens), [])
            if k < len(twins) and abs(twins[k][0] - event.time_ns) <= WINDOW_NS:
                event.attributes[am.EVENT_ID] = twins[k][1]
                matched += 1
    return matched
