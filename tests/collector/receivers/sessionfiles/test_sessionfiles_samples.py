"""The session-file readers on real CLI output published by other projects
(tests/data/sessionfiles/SOURCES.md), through the shipped processors (a dry run: normalize and
cost run, nothing is stored). Expected numbers are counted by hand from the files."""

from __future__ import annotations

import json
from pathlib import Path

from collector.receivers.sessionfiles import claude_code, codex, gemini_cli, importer
from tests.support.sessionfiles_support import claude_tree, codex_tree, config, gemini_tree


def dry_run(tmp_path: Path, agent: str, root: Path) -> importer.Summary:
    options = importer.Options([agent], {agent: root}, dry_run=True)
    return importer.run(config(tmp_path), options)


def test_claude_transcript_counts_a_repeated_message_once(tmp_path: Path) -> None:
    # tool-vocabulary: 10 assistant lines with usage, msg_facet003/req_facet001 twice.
    summary = dry_run(
        tmp_path, "claude-code", claude_tree(tmp_path, "switchboard__tool-vocabulary.session.jsonl")
    )
    t = summary.totals["claude_code"]
    assert t.api_calls == 9
    # The sample's author re-numbered ids: lines 3-6 carry another sessionId (…0023). Each
    # line's own sessionId is what Claude's telemetry would send for that call.
    assert {s for _, s in t.sessions} == {
        "00000000-0000-7000-8000-000000000001",
        "00000000-0000-7000-8000-000000000023",
    }
    assert t.input_tokens == 2 * 8 + 208
    assert t.output_tokens == 128 + 322 + 219 + 70 + 119 + 94 + 77 + 86 + 3
    assert t.cache_read_tokens == 216_147
    assert t.cache_write_tokens == 11_226


def test_claude_reader_keeps_the_1h_split_and_tool_pairs(tmp_path: Path) -> None:
    root = claude_tree(tmp_path, "switchboard__tool-vocabulary.session.jsonl")
    result = claude_code.Reader(root).read(claude_code.files(root)[0])
    events = [e for session in result.sessions for e in session.events]
    calls = [e for e in events if e.api_call]
    first = next(e.attributes for e in calls if e.attributes["request_id"] == "req_facet001")
    assert first["cache_creation_1h_tokens"] == 5775
    assert first["cache_creation_5m_tokens"] == 0
    tools = [e.attributes for e in events if e.body == "claude_code.tool_result"]
    names = sorted(str(t["tool_name"]) for t in tools)
    # Read, Edit, Write, Bash, Grep plus the lookups the model made; every use has its result.
    assert {"Read", "Edit", "Write", "Bash", "Grep"} <= set(names)
    assert all("duration_ms" in t for t in tools)


def test_claude_stream_json_output_is_not_a_transcript(tmp_path: Path) -> None:
    summary = dry_run(
        tmp_path, "claude-code", claude_tree(tmp_path, "switchboard__with-usage.jsonl")
    )
    assert summary.totals == {}


def test_codex_rollouts(tmp_path: Path) -> None:
    root = codex_tree(
        tmp_path,
        "switchboard__apply-patch.session.jsonl",
        "switchboard__rate-limits.session.jsonl",
        "switchboard__exec-wrapper.session.jsonl",
    )
    summary = dry_run(tmp_path, "codex", root)
    t = summary.totals["codex"]
    # apply-patch: one token_count (last 15257 in, 14720 cached, 106 out); rate-limits: one with
    # info (15568 in, 7552 cached, 5 out) and one rate-limit-only; exec-wrapper: none.
    assert t.api_calls == 2
    assert t.input_tokens == (15257 - 14720) + (15568 - 7552)
    assert t.cache_read_tokens == 14720 + 7552
    assert t.output_tokens == 106 + 5
    # apply-patch's total (30234 in) is more than its one call: a gap, reported not invented.
    assert len(summary.warnings) == 1 and "apply-patch" in summary.warnings[0]
    # exec-wrapper has a tool call and no meta line; its session id comes from the file name.
    assert len(t.sessions) == 3


def test_codex_model_from_turn_context(tmp_path: Path) -> None:
    root = codex_tree(tmp_path, "switchboard__apply-patch.session.jsonl")
    result = codex.Reader(root).read(codex.files(root)[0])
    (call,) = [e for s in result.sessions for e in s.events if e.api_call]
    assert call.attributes["model"] == "gpt-5.5"
    tools = [
        e.attributes for s in result.sessions for e in s.events if e.body == "codex.tool_result"
    ]
    assert {t["tool_name"] for t in tools} == {"exec_command", "apply_patch"}


def test_codex_fork_does_not_count_the_parent_twice(tmp_path: Path) -> None:
    """A forked rollout starts with a copy of its parent's history, totals included."""
    root = codex_tree(tmp_path, "switchboard__rate-limits.session.jsonl")
    parent = codex.files(root)[0]
    lines = parent.read_text().splitlines()
    meta = json.loads(lines[0])
    meta["payload"]["id"] = "00000000-0000-7000-8000-0000000000f0"
    extra = {
        "timestamp": "2026-01-01T00:10:00.000Z",
        "type": "event_msg",
        "payload": {
            "type": "token_count",
            "info": {
                "total_token_usage": {
                    "input_tokens": 31568,
                    "cached_input_tokens": 15552,
                    "output_tokens": 12,
                    "total_tokens": 31580,
                },
                "last_token_usage": {
                    "input_tokens": 16000,
                    "cached_input_tokens": 8000,
                    "output_tokens": 7,
                    "total_tokens": 16007,
                },
            },
        },
    }
    child = parent.with_name("rollout-2026-07-11T00-00-00-fork.jsonl")
    child.write_text("\n".join([json.dumps(meta), *lines[1:], json.dumps(extra)]) + "\n")
    summary = dry_run(tmp_path, "codex", root)
    t = summary.totals["codex"]
    assert t.api_calls == 2
    assert t.input_tokens == (15568 - 7552) + (16000 - 8000)
    assert summary.warnings == []


def test_gemini_last_write_of_a_message_wins(tmp_path: Path) -> None:
    # tool-use: message 6ddd... written twice (the second time with its tool call), then 7357...
    summary = dry_run(
        tmp_path, "gemini", gemini_tree(tmp_path, "switchboard__tool-use.session.jsonl")
    )
    t = summary.totals["gemini_cli"]
    assert t.api_calls == 2
    assert t.input_tokens == 10191 + (10334 - 7559)
    assert t.cache_read_tokens == 7559
    assert t.output_tokens == 83 + 17
    root = gemini_tree(tmp_path / "again", "switchboard__tool-use.session.jsonl")
    result = gemini_cli.Reader(root).read(gemini_cli.files(root)[0])
    tools = [e for s in result.sessions for e in s.events if e.body == "gemini_cli.tool_call"]
    # Only the last write of 6ddd... has toolCalls: update_topic and read_file, once each.
    assert sorted(str(e.attributes["function_name"]) for e in tools) == [
        "read_file",
        "update_topic",
    ]


def test_gemini_two_headers_in_one_file(tmp_path: Path) -> None:
    summary = dry_run(
        tmp_path,
        "gemini",
        gemini_tree(tmp_path, "switchboard__interleaved-collision.session.jsonl"),
    )
    t = summary.totals["gemini_cli"]
    assert t.sessions == {("gemini_cli", "00000000-0000-4000-8000-00000000000A")}
    assert t.api_calls == 2
    # input includes cached: 10172 - 7582 each; thoughts are output.
    assert t.input_tokens == 2 * (10172 - 7582)
    assert t.output_tokens == (1 + 31) + (1 + 67)


def test_gemini_rewind_keeps_billed_calls_and_set_rewrites_once(tmp_path: Path) -> None:
    chats = tmp_path / "gemini" / "tmp" / "p" / "chats"
    chats.mkdir(parents=True)
    tokens = {"input": 100, "output": 10, "cached": 40, "thoughts": 5, "tool": 0, "total": 115}
    records = [
        {"sessionId": "g-1", "startTime": "2026-10-02T10:00:00Z"},
        {"id": "u1", "timestamp": "2026-10-02T10:00:01Z", "type": "user", "content": "first"},
        {
            "id": "m1",
            "timestamp": "2026-10-02T10:00:02Z",
            "type": "gemini",
            "model": "gemini-2.5-pro",
            "tokens": tokens,
        },
        {"$rewindTo": "u1"},
        {
            "$set": {
                "messages": [
                    {
                        "id": "m1",
                        "timestamp": "2026-10-02T10:00:02Z",
                        "type": "gemini",
                        "model": "gemini-2.5-pro",
                        "tokens": tokens,
                    }
                ]
            }
        },
        {
            "id": "m2",
            "timestamp": "2026-10-02T10:00:05Z",
            "type": "gemini",
            "model": "gemini-2.5-pro",
            "tokens": tokens,
        },
        "not an object",
    ]
    (chats / "session-r.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n{torn")
    old = {
        "sessionId": "g-old",
        "messages": [
            {
                "id": "o1",
                "timestamp": "2025-01-01T00:00:00Z",
                "type": "gemini",
                "model": "gemini-2.5-pro",
                "tokens": tokens,
            }
        ],
    }
    (chats / "session-old.json").write_text(json.dumps(old))
    summary = dry_run(tmp_path, "gemini", tmp_path / "gemini" / "tmp")
    t = summary.totals["gemini_cli"]
    assert t.api_calls == 3  # m1 (rewound but billed, re-written by $set once), m2, o1
    assert t.input_tokens == 3 * 60
    assert summary.bad_lines == 1  # the string; the torn last line is left for later
    assert len(t.sessions) == 2


def test_claude_subagent_file_and_its_sidechain_replay_count_once(tmp_path: Path) -> None:
    """A subagent's calls live in ``<session>/subagents/``; a sidechain copy of them in the main
    transcript is a replay, counted once. Synthetic lines skip the API (no request id, or the
    ``<synthetic>`` model) and are not calls."""
    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 0,
    }

    def line(msg: str, req: str | None, sidechain: bool, model: str = "claude-sonnet-4-5") -> str:
        data = {
            "type": "assistant",
            "sessionId": "s-main",
            "isSidechain": sidechain,
            "timestamp": "2026-07-10T10:00:00.000Z",
            "message": {"id": msg, "model": model, "usage": usage, "content": []},
        }
        if req:
            data["requestId"] = req
        return json.dumps(data) + "\n"

    project = tmp_path / "claude" / "projects" / "-p"
    (project / "s-main" / "subagents").mkdir(parents=True)
    (project / "s-main.jsonl").write_text(
        line("msg_main", "req_main", False)
        + line("msg_sub", "req_sub", True)  # the replay
        + line("msg_none", None, False)
        + line("msg_syn", "req_syn", False, model="<synthetic>")
    )
    (project / "s-main" / "subagents" / "agent-1.jsonl").write_text(
        line("msg_sub", "req_sub", True)
    )
    summary = dry_run(tmp_path, "claude-code", tmp_path / "claude" / "projects")
    t = summary.totals["claude_code"]
    assert t.api_calls == 2
    assert t.sessions == {("claude_code", "s-main")}
