"""Property tests of the dedupe rules of the session-file readers, on generated files."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.receivers.sessionfiles import claude_code, codex, gemini_cli

usage = st.fixed_dictionaries(
    {
        "input_tokens": st.integers(0, 5000),
        "output_tokens": st.integers(0, 5000),
        "cache_read_input_tokens": st.integers(0, 50_000),
        "cache_creation_input_tokens": st.integers(0, 5000),
    }
)
# Per call: the usages its streamed lines carry, in the order written.
claude_calls = st.lists(st.lists(usage, min_size=1, max_size=5), min_size=1, max_size=8)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def size(u: dict[str, Any]) -> int:
    return sum(
        u[k]
        for k in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        )
    )


def claude_line(call: int, u: dict[str, Any], session: str = "s-1") -> str:
    return json.dumps(
        {
            "type": "assistant",
            "sessionId": session,
            "requestId": f"req_{call}",
            "timestamp": f"2026-07-10T10:00:{call:02d}.000Z",
            "message": {"id": f"msg_{call}", "model": "claude-sonnet-4-5", "usage": u},
        }
    )


@SETTINGS
@given(claude_calls, st.randoms(use_true_random=False), st.data())
def test_claude_keeps_the_largest_usage_of_each_message_once(
    calls: list[list[dict[str, Any]]], rnd: Any, data: st.DataObject
) -> None:
    lines = [claude_line(i, u) for i, usages in enumerate(calls) for u in usages]
    rnd.shuffle(lines)
    # A second file (a replay) repeats some of the lines: the calls still count once.
    replayed = data.draw(st.lists(st.sampled_from(lines), max_size=6))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "projects"
        (root / "p").mkdir(parents=True)
        (root / "p" / "a.jsonl").write_text("\n".join(lines) + "\n")
        (root / "p" / "b.jsonl").write_text("".join(f"{line}\n" for line in replayed))
        reader = claude_code.Reader(root)
        events = [
            e
            for path in claude_code.files(root)
            for s in reader.read(path).sessions
            for e in s.events
        ]
    by_request = {e.attributes["request_id"]: e.attributes for e in events if e.api_call}
    assert len(by_request) == sum(1 for e in events if e.api_call) == len(calls)
    for i, usages in enumerate(calls):
        got = by_request[f"req_{i}"]
        got_size = sum(
            int(got[k])
            for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens")
        )
        assert got_size == max(size(u) for u in usages)


gemini_tokens = st.fixed_dictionaries(
    {"input": st.integers(0, 9000), "output": st.integers(0, 900), "cached": st.integers(0, 100)}
)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 5), gemini_tokens), min_size=1, max_size=20))
def test_gemini_last_write_of_an_id_wins(writes: list[tuple[int, dict[str, int]]]) -> None:
    records: list[dict[str, Any]] = [{"sessionId": "g", "startTime": "2026-01-01T00:00:00Z"}]
    for n, (ident, tokens) in enumerate(writes):
        msg = {
            "id": f"m{ident}",
            "type": "gemini",
            "timestamp": "2026-01-01T00:00:01Z",
            "model": "gemini-2.5-pro",
            "tokens": tokens,
        }
        # Rewrites come as records or inside a $set messages list; rewinds change nothing.
        records.append({"$set": {"messages": [msg]}} if n % 3 == 2 else msg)
        if n % 4 == 3:
            records.append({"$rewindTo": f"m{ident}"})
    last = {f"m{ident}": tokens for ident, tokens in writes}
    with tempfile.TemporaryDirectory() as tmp:
        chats = Path(tmp) / "tmp" / "p" / "chats"
        chats.mkdir(parents=True)
        (chats / "session-x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        root = Path(tmp) / "tmp"
        result = gemini_cli.Reader(root).read(gemini_cli.files(root)[0])
    got = {
        e.attributes["message_id"]: e.attributes
        for s in result.sessions
        for e in s.events
        if e.api_call
    }
    assert set(got) == set(last)
    for ident, tokens in last.items():
        assert got[ident]["input_token_count"] == tokens["input"]
        assert got[ident]["output_token_count"] == tokens["output"]


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(1, 9000), st.integers(1, 900)), min_size=1, max_size=10),
    st.lists(st.booleans(), min_size=10, max_size=10),
    st.integers(0, 10),
)
def test_codex_counts_each_turn_once_across_repeats_and_forks(
    turns: list[tuple[int, int]], repeat: list[bool], fork_at: int
) -> None:
    """A token_count emitted twice counts once; a fork's copy of the parent counts once."""

    def event(i: int, last: tuple[int, int], total: tuple[int, int]) -> dict[str, Any]:
        def usage(u: tuple[int, int]) -> dict[str, int]:
            return {"input_tokens": u[0], "output_tokens": u[1], "total_tokens": sum(u)}

        return {
            "timestamp": f"2026-01-01T00:00:{i:02d}.000Z",
            "type": "event_msg",
            "payload": {
                "type": "token_count",
                "info": {"last_token_usage": usage(last), "total_token_usage": usage(total)},
            },
        }

    def meta(session: str) -> dict[str, Any]:
        return {
            "timestamp": "2026-01-01T00:00:00.000Z",
            "type": "session_meta",
            "payload": {"id": session, "originator": "codex_exec"},
        }

    parent: list[dict[str, Any]] = [meta("parent")]
    total = (0, 0)
    for i, last in enumerate(turns):
        total = (total[0] + last[0], total[1] + last[1])
        parent.append(event(i, last, total))
        if repeat[i]:
            parent.append(event(i, last, total))
    cut = min(fork_at, len(turns))
    copied = [
        r
        for r in parent[1:]
        if r["payload"]["info"]["total_token_usage"]["input_tokens"]
        <= sum(t[0] for t in turns[:cut])
    ]
    child = [meta("child"), *copied, event(59, (7, 3), (total[0] + 7, total[1] + 3))]
    with tempfile.TemporaryDirectory() as tmp:
        day = Path(tmp) / "sessions" / "2026" / "01" / "01"
        day.mkdir(parents=True)
        (day / "rollout-2026-01-01T00-00-00-parent.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in parent)
        )
        (day / "rollout-2026-01-01T00-00-01-child.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in child)
        )
        root = Path(tmp) / "sessions"
        reader = codex.Reader(root)
        calls = [
            e
            for path in codex.files(root)
            for s in reader.read(path).sessions
            for e in s.events
            if e.api_call
        ]
    assert len(calls) == len(turns) + 1
    assert sum(int(c.attributes["input_token_count"]) for c in calls) == total[0] + 7
