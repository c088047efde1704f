"""Codex CLI rollouts: ``~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl``.

One API call per ``token_count`` event with usage: its ``last_token_usage`` is that call's
tokens (``input_tokens`` includes the cached ones, as on Codex's own OTLP). The running
``total_token_usage`` checks it: an event whose total did not move is a repeat and is skipped;
a total that moved by something else than ``last`` is counted as a gap (tokens Codex used that
no event in the file describes) and reported. The model comes from the latest
``turn_context``. A resumed or forked session's file begins with a copy of its parent's
history with the parent's running totals: a count whose (last, total) pair was already read
(or, for a session's first call, whose time too) is counted once, in the first file read
(files are read oldest first).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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

AGENT = "codex"
AGENT_ID = "codex"
ENV_VAR = "AGENTWATCH_CODEX_PATH"
EXIT_CODE = re.compile(r"(?:Process exited with code|exit code:?)\s*(-?\d+)")
USAGE_KEYS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
)


def default_root() -> Path:
    """``$AGENTWATCH_CODEX_PATH``, else ``$CODEX_HOME/sessions``, else ``~/.codex/sessions``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    base = os.environ.get("CODEX_HOME") or str(Path.home() / ".codex")
    return Path(base) / "sessions"


def files(root: Path) -> list[Path]:
    """Oldest first: rollout names start with their creation time."""
    if not root.is_dir():
        return []
    return sorted(root.rglob("rollout-*.jsonl"), key=lambda p: (p.name, str(p)))


def _usage(value: Any) -> tuple[int, ...]:
    data = value if isinstance(value, dict) else {}
    return tuple(as_int(data.get(k)) for k in USAGE_KEYS)


class Reader:
    agent = AGENT

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen: set[int] = set()
        self.gaps = 0

    def read(self, path: Path) -> FileResult:
        result = FileResult(path)
        session: Session | None = None
        model = ""
        previous_total: tuple[int, ...] = (0,) * len(USAGE_KEYS)
        response_ids: dict[tuple[int, ...], str] = {}
        calls: dict[str, tuple[int, str, Any]] = {}
        for _, line in json_lines(path):
            if line is None:
                result.bad_lines += 1
                continue
            kind = line.get("type")
            payload = line.get("payload")
            if not isinstance(payload, dict):
                continue
            when = parse_time_ns(line.get("timestamp")) or 0
            if kind == "session_meta":
                if session is None:
                    session_id = str(payload.get("id") or payload.get("session_id") or "")
                    resource: dict[str, Scalar] = {
                        "service.name": str(payload.get("originator") or "codex_cli_rs")
                    }
                    if payload.get("cli_version"):
                        resource["service.version"] = str(payload["cli_version"])
                    session = Session(session_id, resource)
                continue
            if session is None:
                # A rollout without its meta line (cut off or very old): the file name ends
                # with the session id.
                session = Session(path.stem[-36:], {"service.name": "codex_cli_rs"})
            if kind == "turn_context":
                model = str(payload.get("model") or model)
                continue
            ptype = payload.get("type")
            if kind == "token_usage_record":
                usage = _usage(payload.get("usage"))
                if payload.get("response_id"):
                    response_ids[usage] = str(payload["response_id"])
                continue
            if kind == "event_msg" and ptype == "token_count":
                info = payload.get("info")
                if not isinstance(info, dict) or not isinstance(info.get("last_token_usage"), dict):
                    continue  # rate-limit-only update
                last = _usage(info["last_token_usage"])
                total = _usage(info.get("total_token_usage"))
                if not any(total):  # no running total to check against
                    total = tuple(p + n for p, n in zip(previous_total, last, strict=True))
                elif total == previous_total:
                    continue  # the same count emitted again
                elif any(t != p + n for t, p, n in zip(total, previous_total, last, strict=True)):
                    self.gaps += 1
                    result.warnings.append(
                        f"{path.name}: total_token_usage moved by other than last_token_usage "
                        f"at {line.get('timestamp')}"
                    )
                previous_total = total
                # A copied count keeps its running total, which no other session shares once
                # past the first call; a first call also needs its time to be told apart.
                identity = [last, total] if total != last else [line.get("timestamp"), last]
                key = int.from_bytes(
                    hashlib.blake2b(json.dumps(identity).encode(), digest_size=8).digest(), "big"
                )
                if key in self.seen:
                    continue  # the parent's history, copied into a resumed or forked file
                self.seen.add(key)
                session.events.append(
                    self._completed(session.session_id, when, last, model, response_ids.get(last))
                )
            elif kind == "event_msg" and ptype == "user_message":
                text = payload.get("message")
                if isinstance(text, str):
                    session.events.append(
                        FileEvent(
                            when,
                            "codex.user_prompt",
                            {
                                "event.name": "codex.user_prompt",
                                "conversation.id": session.session_id,
                                "prompt_length": len(text),
                                "prompt": text,
                            },
                        )
                    )
            elif kind == "response_item" and ptype in ("function_call", "custom_tool_call"):
                call_id = payload.get("call_id")
                if isinstance(call_id, str):
                    arguments = payload.get("arguments", payload.get("input"))
                    calls[call_id] = (when, str(payload.get("name") or ""), arguments)
            elif kind == "response_item" and ptype in (
                "function_call_output",
                "custom_tool_call_output",
            ):
                call_id = payload.get("call_id")
                if isinstance(call_id, str) and call_id in calls:
                    started, name, arguments = calls.pop(call_id)
                    session.events.append(
                        self._tool_result(
                            session.session_id, when, started, name, call_id, arguments, payload
                        )
                    )
        if session is not None:
            result.sessions.append(session)
        return result

    @staticmethod
    def _completed(
        session_id: str, when: int, last: tuple[int, ...], model: str, response_id: str | None
    ) -> FileEvent:
        input_tokens, cached, cache_write, output, reasoning = last
        attrs: dict[str, Scalar] = {
            "event.name": "codex.sse_event",
            "event.kind": "response.completed",
            "conversation.id": session_id,
            "input_token_count": input_tokens,
            "cached_token_count": cached,
            "cache_write_token_count": cache_write,
            "output_token_count": output,
            "reasoning_token_count": reasoning,
        }
        if model:
            attrs["model"] = model
        if response_id:
            attrs["response_id"] = response_id
        uncached = max(input_tokens - cached - cache_write, 0)
        match = (uncached, cached, cache_write, output)
        return FileEvent(when, "codex.sse_event", attrs, api_call=True, match_tokens=match)

    @staticmethod
    def _tool_result(
        session_id: str,
        when: int,
        started: int,
        name: str,
        call_id: str,
        arguments: Any,
        payload: dict[str, Any],
    ) -> FileEvent:
        output = payload.get("output")
        text = output if isinstance(output, str) else json_text(output)
        attrs: dict[str, Scalar] = {
            "event.name": "codex.tool_result",
            "conversation.id": session_id,
            "tool_name": name,
            "call_id": call_id,
            "output": text,
        }
        if arguments is not None:
            attrs["arguments"] = json_text(arguments)
        if started and when >= started:
            attrs["duration_ms"] = (when - started) / 1e6
        code = EXIT_CODE.search(text)
        if code is not None:
            attrs["success"] = code.group(1) == "0"
        elif text.startswith("unsupported call"):
            attrs["success"] = False
        return FileEvent(when, "codex.tool_result", attrs)
