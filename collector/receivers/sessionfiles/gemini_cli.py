"""Gemini CLI chat recordings: ``~/.gemini/tmp/<project>/chats/session-*.jsonl`` (and the older
whole-file ``session-*.json``), subagent recordings under ``chats/<parent>/``.

A ``.jsonl`` recording is an upsert log: a header line (``sessionId``), message records keyed
by ``id`` that are rewritten in full whenever their tool calls or tokens change (the **last**
write of an id wins), ``{"$set": {...}}`` metadata patches (whose ``messages`` list re-writes
messages, the same rule), and ``{"$rewindTo": id}`` markers. A rewind hides messages from the
conversation, but their API calls were made and billed, so they stay counted. A second header
in one file (two processes writing one file) switches the session for the records after it.
One API call per ``gemini`` message with ``tokens``; ``input`` includes the cached tokens and
``output`` leaves out ``thoughts``, exactly like Gemini's OTLP ``api_response``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from collector.receivers.sessionfiles.internal.events import (
    FileEvent,
    FileResult,
    Scalar,
    Session,
    as_int,
    json_lines,
    json_text,
    parse_time_ns,
)

AGENT = "gemini-cli"
AGENT_ID = "gemini_cli"
ENV_VAR = "AGENTWATCH_GEMINI_PATH"


def default_root() -> Path:
    """``$AGENTWATCH_GEMINI_PATH``, else ``~/.gemini/tmp``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return Path.home() / ".gemini" / "tmp"


def files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.rglob("*.json*")
        if "chats" in p.parts
        and (p.suffix == ".jsonl" or p.name.startswith("session-"))
        and p.suffix in (".json", ".jsonl")
    )


def installation_id(root: Path) -> str | None:
    """``~/.gemini/installation_id``: the ``installation.id`` Gemini's telemetry carries."""
    try:
        value = (root.parent / "installation_id").read_text().strip()
    except OSError:
        return None
    return value or None


def _text_of(content: Any) -> str | None:
    """A typed prompt: a string, or parts that are all text (tool responses are not)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        if all(isinstance(t, str) for t in texts) and len(texts) == len(content):
            return "".join(t for t in texts if isinstance(t, str))
    return None


class Reader:
    agent = AGENT

    def __init__(self, root: Path) -> None:
        self.root = root
        self.user_id = installation_id(root)
        self.seen: set[str] = set()

    def read(self, path: Path) -> FileResult:
        result = FileResult(path)
        messages: dict[str, tuple[str, dict[str, Any], bool]] = {}
        """message id -> (session id, last record, typed by the user in this file)."""
        current = ""
        if path.suffix == ".json":
            try:
                whole = json.loads(path.read_bytes())
            except ValueError:
                result.bad_lines += 1
                return result
            if not isinstance(whole, dict):
                result.bad_lines += 1
                return result
            current = str(whole.get("sessionId") or "")
            for msg in whole.get("messages") or ():
                if isinstance(msg, dict) and isinstance(msg.get("id"), str):
                    messages[msg["id"]] = (current, msg, True)
        else:
            for _, line in json_lines(path):
                if line is None:
                    result.bad_lines += 1
                    continue
                if isinstance(line.get("id"), str):
                    messages[line["id"]] = (current, line, True)
                elif isinstance(line.get("$set"), dict):
                    for msg in line["$set"].get("messages") or ():
                        if isinstance(msg, dict) and isinstance(msg.get("id"), str):
                            earlier = messages.get(msg["id"])
                            messages[msg["id"]] = (current, msg, bool(earlier and earlier[2]))
                elif "$rewindTo" in line:
                    continue  # billed calls stay counted (module docstring)
                elif isinstance(line.get("sessionId"), str):
                    current = line["sessionId"]
        sessions: dict[str, Session] = {}
        for message_id, (session_id, msg, typed) in messages.items():
            if not session_id:
                continue
            session = sessions.get(session_id)
            if session is None:
                session = sessions[session_id] = Session(session_id, {"service.name": AGENT})
            key = f"{session_id}\x1f{message_id}"
            if key in self.seen:
                continue
            self.seen.add(key)
            when = parse_time_ns(msg.get("timestamp")) or 0
            if msg.get("type") == "gemini":
                tokens = msg.get("tokens")
                if isinstance(tokens, dict):
                    session.events.append(self._api_response(session_id, message_id, when, msg))
                for call in msg.get("toolCalls") or ():
                    if isinstance(call, dict):
                        session.events.append(self._tool_call(session_id, when, call))
            elif msg.get("type") == "user" and typed:
                text = _text_of(msg.get("content"))
                if text is not None:
                    attrs = self._identity(session_id)
                    attrs |= {
                        "event.name": "gemini_cli.user_prompt",
                        "prompt_length": len(text),
                        "prompt": text,
                    }
                    session.events.append(FileEvent(when, "gemini_cli.user_prompt", attrs))
        result.sessions = [s for s in sessions.values() if s.events]
        return result

    def _identity(self, session_id: str) -> dict[str, Scalar]:
        attrs: dict[str, Scalar] = {"session.id": session_id}
        if self.user_id:
            attrs["installation.id"] = self.user_id
        return attrs

    def _api_response(
        self, session_id: str, message_id: str, when: int, msg: dict[str, Any]
    ) -> FileEvent:
        tokens = msg["tokens"]
        attrs = self._identity(session_id)
        attrs |= {
            "event.name": "gemini_cli.api_response",
            "model": str(msg.get("model") or ""),
            "message_id": message_id,
            "input_token_count": as_int(tokens.get("input")),
            "output_token_count": as_int(tokens.get("output")),
            "cached_content_token_count": as_int(tokens.get("cached")),
            "thoughts_token_count": as_int(tokens.get("thoughts")),
            "tool_token_count": as_int(tokens.get("tool")),
            "total_token_count": as_int(tokens.get("total")),
        }
        cached = as_int(tokens.get("cached"))
        match = (
            max(as_int(tokens.get("input")) - cached, 0),
            cached,
            0,
            as_int(tokens.get("output")) + as_int(tokens.get("thoughts")),
        )
        return FileEvent(when, "gemini_cli.api_response", attrs, api_call=True, match_tokens=match)

    def _tool_call(self, session_id: str, when: int, call: dict[str, Any]) -> FileEvent:
        attrs = self._identity(session_id)
        attrs |= {
            "event.name": "gemini_cli.tool_call",
            "function_name": str(call.get("name") or ""),
            "success": call.get("status") == "success",
        }
        if isinstance(call.get("id"), str):
            attrs["call_id"] = call["id"]
        if call.get("args") is not None:
            attrs["function_args"] = json_text(call["args"])
        if call.get("result") is not None:
            attrs["content_length"] = len(json_text(call["result"]).encode())
        return FileEvent(
            parse_time_ns(call.get("timestamp")) or when, "gemini_cli.tool_call", attrs
        )
