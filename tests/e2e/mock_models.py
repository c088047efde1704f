"""Mock model APIs for Anthropic, OpenAI and Gemini that the real agent CLIs talk to offline.

Each mock is a real HTTP server on 127.0.0.1 speaking the vendor's own streaming wire format
(SSE), driven by a scripted :class:`Scenario`: the n-th agent-loop request gets the n-th step
(a 429, a shell tool call, or a text answer). Side requests a CLI makes on its own (title
generation, next-speaker checks, token counting, analytics) get a harmless answer and do not
consume a step. Every request is recorded with the usage numbers the mock answered, both in
agentwatch's convention (:class:`Usage`) and exactly as sent on the wire, so a test can later
assert the exact tokens that must arrive in storage.
"""

from __future__ import annotations

import gzip
import itertools
import json
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import zstandard


@dataclass(frozen=True)
class Usage:
    """Tokens of one model call in agentwatch's convention (see collector/agent_model.py).

    ``input_tokens`` excludes cache reads and writes; ``output_tokens`` includes reasoning.
    ``cache_write_1h_tokens`` is the part of ``cache_write_tokens`` cached for one hour.
    """

    input_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0

    def __post_init__(self) -> None:
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning tokens are part of output tokens")
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValueError("the 1h cache write is part of the cache write")


@dataclass(frozen=True)
class RateLimited:
    """Answer HTTP 429 with the vendor's real error body and a ``retry-after`` header."""

    retry_after_s: int = 1


@dataclass(frozen=True)
class ToolCall:
    """Ask for a tool call: the CLI's shell tool running ``command``, or ``tool`` with ``args``.

    ``tool``/``args`` name a tool directly (e.g. one the CLI is not allowed to use).
    """

    usage: Usage
    command: str = ""
    tool: str | None = None
    args: dict[str, Any] | None = None
    text: str = ""
    nano_aiu: int | None = None
    """AI credits (billionths) GitHub's model API reports for the call (CopilotApiMock)."""


@dataclass(frozen=True)
class Text:
    """A final text answer that ends the turn.

    ``hold_until``, when given, is polled before answering (at most ``hold_timeout_s``): it
    keeps the CLI running until something outside the mock happened, such as a periodic metric
    export a test needs to have seen, without guessing a sleep.
    """

    usage: Usage
    text: str
    hold_until: Callable[[], bool] | None = None
    hold_timeout_s: float = 30.0
    nano_aiu: int | None = None


Step = RateLimited | ToolCall | Text


@dataclass(frozen=True)
class Scenario:
    steps: tuple[Step, ...]
    side_usage: Usage = Usage(input_tokens=211, output_tokens=7)
    """Usage answered to side requests (titles, checks); distinct from every scripted step."""

    def calls_with_usage(self) -> list[Usage]:
        return [s.usage for s in self.steps if not isinstance(s, RateLimited)]


@dataclass
class RecordedCall:
    """One HTTP request the mock received and what it answered."""

    index: int
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int
    kind: str
    """``rate_limited``, ``tool_call``, ``text`` (scripted steps), ``side`` or ``extra``."""
    step: int | None
    """Index into the scenario's steps, None for side requests and requests past the script."""
    usage: Usage | None = None
    wire_usage: dict[str, Any] | None = None
    """The usage block exactly as sent (vendor field names and conventions)."""
    response_id: str | None = None
    request_id: str | None = None
    tool_call_id: str | None = None
    nano_aiu: int | None = None
    """AI credits the mock reported with the call's usage (GitHub's Copilot API only)."""
    started: float = field(default_factory=time.time)


_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):04d}{uuid.uuid4().hex[:20]}"


class MockModelServer:
    """Base of the three mocks: HTTP plumbing, request recording and step dispatch."""

    vendor: ClassVar[str] = ""

    def __init__(self, scenario: Scenario, model: str) -> None:
        self.scenario = scenario
        self.model = model
        self.calls: list[RecordedCall] = []
        self._lock = threading.Lock()
        self._next_step = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MockModelServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"mock-{self.vendor}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MockModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests read ------------------------------------------------------------------
    def scripted_calls(self) -> list[RecordedCall]:
        return [c for c in self.calls if c.step is not None]

    def answered_usages(self) -> list[Usage]:
        """Usage of every call answered 200 with tokens, side requests included, in order."""
        return [c.usage for c in self.calls if c.usage is not None]

    def tool_outputs(self) -> list[dict[str, Any]]:
        """Tool results the CLI sent back, as ``{call_id, output, is_error}``, in order seen."""
        seen: dict[str, dict[str, Any]] = {}
        for call in self.calls:
            if isinstance(call.body, dict):
                for result in self._tool_results_in(call.body):
                    seen.setdefault(str(result["call_id"]), result)
        return list(seen.values())

    # -- vendor hooks ---------------------------------------------------------------------
    def _is_agent_loop(self, path: str, body: Any) -> bool:
        raise NotImplementedError

    def _tool_results_in(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _rate_limited(self, step: RateLimited) -> tuple[dict[str, str], dict[str, Any]]:
        """Headers and JSON body of the vendor's 429."""
        raise NotImplementedError

    def _stream(self, step: ToolCall | Text, call: RecordedCall) -> Iterator[bytes]:
        """SSE frames answering a scripted step; sets ``call.wire_usage`` and ids."""
        raise NotImplementedError

    def _side(self, handler: BaseHTTPRequestHandler, call: RecordedCall) -> None:
        """Answer a request that is not part of the agent loop."""
        raise NotImplementedError

    def _response_headers(self, call: RecordedCall) -> dict[str, str]:
        return {}

    # -- dispatch -------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        raw = _read_body(handler)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        with self._lock:
            call = RecordedCall(
                index=len(self.calls),
                method=handler.command,
                path=split.path,
                query=parse_qs(split.query),
                headers={k.lower(): v for k, v in handler.headers.items()},
                body=body,
                status=200,
                kind="side",
                step=None,
            )
            step: Step | None = None
            if handler.command == "POST" and self._is_agent_loop(split.path, body):
                if self._next_step < len(self.scenario.steps):
                    call.step = self._next_step
                    step = self.scenario.steps[self._next_step]
                    self._next_step += 1
                else:
                    call.kind = "extra"
                    step = Text(self.scenario.side_usage, "Nothing more to do.")
            self.calls.append(call)
        call.request_id = _new_id("req_")
        if isinstance(step, RateLimited):
            call.kind = "rate_limited"
            call.status = 429
            headers, error = self._rate_limited(step)
            _send_json(handler, 429, error, {**self._response_headers(call), **headers})
        elif step is not None:
            if isinstance(step, Text) and step.hold_until is not None:
                _hold(step.hold_until, step.hold_timeout_s)
            if call.kind != "extra":
                call.kind = "tool_call" if isinstance(step, ToolCall) else "text"
            call.usage = step.usage
            call.nano_aiu = step.nano_aiu
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Cache-Control", "no-cache")
            handler.send_header("Transfer-Encoding", "chunked")
            for key, value in self._response_headers(call).items():
                handler.send_header(key, value)
            handler.end_headers()
            for frame in self._stream(step, call):
                _write_chunk(handler, frame)
            _write_chunk(handler, b"")
        else:
            self._side(handler, call)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                mock._handle(self)

            def do_GET(self) -> None:
                mock._handle(self)

            def do_HEAD(self) -> None:
                mock._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


# --------------------------------------------------------------------------------------------
# HTTP helpers


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
        raw = b"".join(parts)
    else:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    encoding = handler.headers.get("Content-Encoding", "").lower()
    if encoding == "gzip":
        raw = gzip.decompress(raw)
    elif encoding == "deflate":
        raw = zlib.decompress(raw)
    elif encoding == "zstd":
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    return raw


def _hold(condition: Callable[[], bool], timeout_s: float) -> None:
    """Wait for ``condition``; answer anyway after ``timeout_s`` so the CLI never hangs (the
    test that asked for the hold then sees that what it waited for did not happen)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # a probe that cannot answer yet (server starting) means "not yet"
            pass
        time.sleep(0.1)


def _write_chunk(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()


def _send_json(
    handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    payload = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)


def _sse(event: str | None, data: dict[str, Any]) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# --------------------------------------------------------------------------------------------
# Anthropic Messages (Claude Code)


class AnthropicMock(MockModelServer):
    """``POST /v1/messages?beta=true`` with ``stream: true``; ``Bash`` is Claude Code's shell."""

    vendor = "anthropic"

    def _is_agent_loop(self, path: str, body: Any) -> bool:
        return (
            path == "/v1/messages"
            and isinstance(body, dict)
            and bool(body.get("tools"))
            and bool(body.get("stream"))
        )

    def _response_headers(self, call: RecordedCall) -> dict[str, str]:
        return {"request-id": call.request_id or "", "anthropic-organization-id": "org-mock"}

    def _rate_limited(self, step: RateLimited) -> tuple[dict[str, str], dict[str, Any]]:
        headers = {
            "retry-after": str(step.retry_after_s),
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "x-should-retry": "true",
        }
        body = {
            "type": "error",
            "error": {
                "type": "rate_limit_error",
                "message": "This request would exceed the rate limit for your organization "
                "of 50 requests per minute. Please try again later.",
            },
        }
        return headers, body

    def _wire_usage(self, usage: Usage) -> dict[str, Any]:
        return {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
            "cache_read_input_tokens": usage.cache_read_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": usage.cache_write_tokens - usage.cache_write_1h_tokens,
                "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens,
            },
            "output_tokens": usage.output_tokens,
            "service_tier": "standard",
        }

    def _stream(self, step: ToolCall | Text, call: RecordedCall) -> Iterator[bytes]:
        usage = self._wire_usage(step.usage)
        call.wire_usage = usage
        call.response_id = _new_id("msg_")
        body = call.body if isinstance(call.body, dict) else {}
        start_usage = {**usage, "output_tokens": 1}
        yield _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": call.response_id,
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model", self.model),
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
        yield _sse("ping", {"type": "ping"})
        index = 0
        text = step.text
        if text:
            yield _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for piece in _split(text):
                yield _sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        stop_reason = "end_turn"
        if isinstance(step, ToolCall):
            stop_reason = "tool_use"
            call.tool_call_id = _new_id("toolu_")
            name = step.tool or "Bash"
            args = (
                step.args
                if step.args is not None
                else {
                    "command": step.command,
                    "description": "Run the command the scenario asks for",
                }
            )
            yield _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {
                        "type": "tool_use",
                        "id": call.tool_call_id,
                        "name": name,
                        "input": {},
                    },
                },
            )
            encoded = json.dumps(args)
            for piece in _split(encoded):
                yield _sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        yield _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": step.usage.output_tokens},
            },
        )
        yield _sse("message_stop", {"type": "message_stop"})

    def _side(self, handler: BaseHTTPRequestHandler, call: RecordedCall) -> None:
        body = call.body if isinstance(call.body, dict) else {}
        if call.path == "/v1/messages/count_tokens":
            _send_json(handler, 200, {"input_tokens": 1009})
        elif call.path == "/v1/messages" and handler.command == "POST":
            # A non-tool side call (title, topic check): answer once, in the format it asked for.
            usage = self.scenario.side_usage
            call.usage = usage
            call.wire_usage = self._wire_usage(usage)
            call.response_id = _new_id("msg_")
            message = {
                "id": call.response_id,
                "type": "message",
                "role": "assistant",
                "model": body.get("model", self.model),
                "content": [{"type": "text", "text": "Scenario session"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": call.wire_usage,
            }
            if body.get("stream"):
                handler.send_response(200)
                handler.send_header("Content-Type", "text/event-stream")
                handler.send_header("Transfer-Encoding", "chunked")
                handler.end_headers()
                step = Text(usage, "Scenario session")
                for frame in self._stream(step, call):
                    _write_chunk(handler, frame)
                _write_chunk(handler, b"")
            else:
                _send_json(handler, 200, message, self._response_headers(call))
        else:
            _send_json(handler, 200, {})

    def _tool_results_in(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        results = []
        for message in body.get("messages") or []:
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    output = block.get("content")
                    if isinstance(output, list):
                        output = "".join(b.get("text", "") for b in output if isinstance(b, dict))
                    results.append(
                        {
                            "call_id": block.get("tool_use_id"),
                            "output": output,
                            "is_error": bool(block.get("is_error")),
                        }
                    )
        return results


# --------------------------------------------------------------------------------------------
# OpenAI Responses (Codex)


class OpenAIResponsesMock(MockModelServer):
    """``POST /v1/responses`` streaming; the shell call is named after a tool Codex offered."""

    vendor = "openai"
    SHELL_TOOLS: ClassVar[tuple[str, ...]] = ("exec_command", "shell_command", "shell")

    def _is_agent_loop(self, path: str, body: Any) -> bool:
        return path.endswith("/responses") and isinstance(body, dict) and "input" in body

    def _response_headers(self, call: RecordedCall) -> dict[str, str]:
        return {"x-request-id": call.request_id or "", "openai-processing-ms": "42"}

    def _rate_limited(self, step: RateLimited) -> tuple[dict[str, str], dict[str, Any]]:
        headers = {
            "retry-after": str(step.retry_after_s),
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{step.retry_after_s}s",
        }
        body = {
            "error": {
                "message": "Rate limit reached for gpt-5 in organization org-mock on requests "
                "per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 1s.",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        return headers, body

    def _shell_call(self, body: dict[str, Any], command: str) -> tuple[str, dict[str, Any]]:
        offered = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        for name in self.SHELL_TOOLS:
            if name in offered:
                if name == "exec_command":
                    return name, {"cmd": command, "yield_time_ms": 10000}
                if name == "shell_command":
                    return name, {"command": command}
                return name, {"command": ["bash", "-lc", command]}
        raise AssertionError(f"no shell tool among the offered tools {sorted(map(str, offered))}")

    def _wire_usage(self, usage: Usage) -> dict[str, Any]:
        total_input = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        details: dict[str, Any] = {"cached_tokens": usage.cache_read_tokens}
        if usage.cache_write_tokens:
            details["cache_write_tokens"] = usage.cache_write_tokens
        return {
            "input_tokens": total_input,
            "input_tokens_details": details,
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": total_input + usage.output_tokens,
        }

    def _stream(self, step: ToolCall | Text, call: RecordedCall) -> Iterator[bytes]:
        body = call.body if isinstance(call.body, dict) else {}
        call.response_id = _new_id("resp_")
        model = body.get("model", self.model)
        seq = itertools.count()
        response: dict[str, Any] = {
            "id": call.response_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "model": model,
            "output": [],
            "usage": None,
        }
        yield _sse(
            "response.created",
            {"type": "response.created", "sequence_number": next(seq), "response": response},
        )
        yield _sse(
            "response.in_progress",
            {"type": "response.in_progress", "sequence_number": next(seq), "response": response},
        )
        output: list[dict[str, Any]] = []
        if step.usage.reasoning_tokens:
            item = {"id": _new_id("rs_"), "type": "reasoning", "summary": []}
            yield _sse(
                "response.output_item.added",
                {
                    "type": "response.output_item.added",
                    "sequence_number": next(seq),
                    "output_index": len(output),
                    "item": item,
                },
            )
            yield _sse(
                "response.output_item.done",
                {
                    "type": "response.output_item.done",
                    "sequence_number": next(seq),
                    "output_index": len(output),
                    "item": item,
                },
            )
            output.append(item)
        if step.text:
            item_id = _new_id("msg_")
            added = {
                "id": item_id,
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            yield _sse(
                "response.output_item.added",
                {
                    "type": "response.output_item.added",
                    "sequence_number": next(seq),
                    "output_index": len(output),
                    "item": added,
                },
            )
            for piece in _split(step.text):
                yield _sse(
                    "response.output_text.delta",
                    {
                        "type": "response.output_text.delta",
                        "sequence_number": next(seq),
                        "item_id": item_id,
                        "output_index": len(output),
                        "content_index": 0,
                        "delta": piece,
                    },
                )
            done = {
                **added,
                "status": "completed",
                "content": [{"type": "output_text", "text": step.text, "annotations": []}],
            }
            yield _sse(
                "response.output_item.done",
                {
                    "type": "response.output_item.done",
                    "sequence_number": next(seq),
                    "output_index": len(output),
                    "item": done,
                },
            )
            output.append(done)
        if isinstance(step, ToolCall):
            if step.tool is not None:
                name, args = step.tool, step.args or {}
            else:
                name, args = self._shell_call(body, step.command)
            call.tool_call_id = _new_id("call_")
            item = {
                "id": _new_id("fc_"),
                "type": "function_call",
                "status": "completed",
                "call_id": call.tool_call_id,
                "name": name,
                "arguments": json.dumps(args),
            }
            yield _sse(
                "response.output_item.added",
                {
                    "type": "response.output_item.added",
                    "sequence_number": next(seq),
                    "output_index": len(output),
                    "item": {**item, "status": "in_progress", "arguments": ""},
                },
            )
            yield _sse(
                "response.output_item.done",
                {
                    "type": "response.output_item.done",
                    "sequence_number": next(seq),
                    "output_index": len(output),
                    "item": item,
                },
            )
            output.append(item)
        call.wire_usage = self._wire_usage(step.usage)
        completed = {**response, "status": "completed", "output": output, "usage": call.wire_usage}
        yield _sse(
            "response.completed",
            {"type": "response.completed", "sequence_number": next(seq), "response": completed},
        )

    def _side(self, handler: BaseHTTPRequestHandler, call: RecordedCall) -> None:
        if call.path.endswith("/models"):
            _send_json(
                handler,
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": self.model, "object": "model", "created": 0, "owned_by": "mock"}
                    ],
                },
            )
        else:
            # /v1/analytics/codex/turn-costs and anything else: accept and ignore.
            _send_json(handler, 200, {})

    def _tool_results_in(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        results = []
        for item in body.get("input") or []:
            if isinstance(item, dict) and item.get("type") == "function_call_output":
                output = item.get("output")
                if isinstance(output, list):
                    output = "".join(o.get("text", "") for o in output if isinstance(o, dict))
                results.append({"call_id": item.get("call_id"), "output": output, "is_error": None})
        return results


# --------------------------------------------------------------------------------------------
# Gemini API (Gemini CLI)


class GeminiMock(MockModelServer):
    """``POST /v1beta/models/MODEL:streamGenerateContent?alt=sse``; shell is run_shell_command."""

    vendor = "gemini"

    def _is_agent_loop(self, path: str, body: Any) -> bool:
        return (
            path.endswith(":streamGenerateContent")
            and isinstance(body, dict)
            and bool(body.get("tools"))
        )

    def _rate_limited(self, step: RateLimited) -> tuple[dict[str, str], dict[str, Any]]:
        body = {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{step.retry_after_s}s",
                    },
                ],
            }
        }
        return {"retry-after": str(step.retry_after_s)}, body

    def _wire_usage(self, usage: Usage) -> dict[str, Any]:
        prompt = usage.input_tokens + usage.cache_read_tokens
        candidates = usage.output_tokens - usage.reasoning_tokens
        wire: dict[str, Any] = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": candidates,
            "totalTokenCount": prompt + candidates + usage.reasoning_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        }
        if usage.cache_read_tokens:
            wire["cachedContentTokenCount"] = usage.cache_read_tokens
        if usage.reasoning_tokens:
            wire["thoughtsTokenCount"] = usage.reasoning_tokens
        return wire

    def _model_of(self, path: str) -> str:
        name = path.rsplit("/", 1)[-1]
        return name.split(":", 1)[0] or self.model

    def _stream(self, step: ToolCall | Text, call: RecordedCall) -> Iterator[bytes]:
        call.response_id = _new_id("resp-")
        model = self._model_of(call.path)
        call.wire_usage = self._wire_usage(step.usage)
        parts: list[dict[str, Any]] = []
        if step.text:
            pieces = _split(step.text)
            for piece in pieces[:-1]:
                yield _gemini_chunk([{"text": piece}], None, None, model, call.response_id)
            parts.append({"text": pieces[-1]})
        if isinstance(step, ToolCall):
            name = step.tool or "run_shell_command"
            args = (
                step.args
                if step.args is not None
                else {
                    "command": step.command,
                    "description": "Run the command the scenario asks for",
                }
            )
            call.tool_call_id = name
            parts.append({"functionCall": {"name": name, "args": args}})
        yield _gemini_chunk(parts, "STOP", call.wire_usage, model, call.response_id)

    def _side(self, handler: BaseHTTPRequestHandler, call: RecordedCall) -> None:
        body = call.body if isinstance(call.body, dict) else {}
        model = self._model_of(call.path)
        if call.path.endswith(":countTokens"):
            _send_json(handler, 200, {"totalTokens": 1009})
            return
        if call.path.endswith(":embedContent") or call.path.endswith(":batchEmbedContents"):
            _send_json(handler, 200, {"embeddings": [{"values": [0.0]}]})
            return
        if call.path.endswith("GenerateContent") or call.path.endswith(":generateContent"):
            usage = self.scenario.side_usage
            call.usage = usage
            call.wire_usage = self._wire_usage(usage)
            call.response_id = _new_id("resp-")
            text = _json_answer(body)
            response = _gemini_response(
                [{"text": text}], "STOP", call.wire_usage, model, call.response_id
            )
            if call.path.endswith(":streamGenerateContent"):
                handler.send_response(200)
                handler.send_header("Content-Type", "text/event-stream")
                handler.send_header("Transfer-Encoding", "chunked")
                handler.end_headers()
                _write_chunk(handler, _sse(None, response).replace(b"\n\n", b"\r\n\r\n"))
                _write_chunk(handler, b"")
            else:
                _send_json(handler, 200, response)
            return
        _send_json(handler, 200, {})

    def _tool_results_in(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        results = []
        for n, content in enumerate(body.get("contents") or []):
            for part in content.get("parts") or []:
                response = part.get("functionResponse") if isinstance(part, dict) else None
                if response:
                    output = response.get("response", {})
                    results.append(
                        {
                            "call_id": response.get("id") or f"{response.get('name')}#{n}",
                            "output": output.get("output", output.get("error", output)),
                            "is_error": "error" in output,
                        }
                    )
        return results


def _gemini_response(
    parts: list[dict[str, Any]],
    finish: str | None,
    usage: dict[str, Any] | None,
    model: str,
    response_id: str,
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    response: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": model,
        "responseId": response_id,
    }
    if usage is not None:
        response["usageMetadata"] = usage
    return response


def _gemini_chunk(
    parts: list[dict[str, Any]],
    finish: str | None,
    usage: dict[str, Any] | None,
    model: str,
    response_id: str,
) -> bytes:
    # Google's SSE separates events with CRLF pairs.
    payload = json.dumps(_gemini_response(parts, finish, usage, model, response_id))
    return f"data: {payload}\r\n\r\n".encode()


def _json_answer(body: dict[str, Any]) -> str:
    """A JSON answer for the CLI's structured side calls (next speaker, routing, loop checks)."""
    config = body.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    if not isinstance(schema, dict):
        return "ok"
    answer: dict[str, Any] = {}
    for key, spec in (schema.get("properties") or {}).items():
        kind = str(spec.get("type", "string")).lower() if isinstance(spec, dict) else "string"
        enum = spec.get("enum") if isinstance(spec, dict) else None
        if key == "next_speaker":
            answer[key] = "user"
        elif enum:
            answer[key] = enum[0]
        elif kind == "boolean":
            answer[key] = False
        elif kind in ("number", "integer"):
            answer[key] = 0
        else:
            answer[key] = "scenario side answer"
    return json.dumps(answer)


def _split(text: str, parts: int = 3) -> list[str]:
    """Split streamed text into a few deltas so clients must reassemble it."""
    if len(text) < parts:
        return [text]
    size = -(-len(text) // parts)
    return [text[i : i + size] for i in range(0, len(text), size)]


# --------------------------------------------------------------------------------------------
# OpenAI Chat Completions (GitHub Copilot CLI's default wire API)


class OpenAIChatMock(MockModelServer):
    """``POST /v1/chat/completions`` streaming with ``stream_options.include_usage``: the usage
    comes in a last chunk with no choices. ``bash`` is Copilot CLI's shell tool."""

    vendor = "openai-chat"
    SHELL_TOOLS: ClassVar[tuple[str, ...]] = ("bash", "shell", "powershell")

    def _is_agent_loop(self, path: str, body: Any) -> bool:
        return (
            path.endswith("/chat/completions")
            and isinstance(body, dict)
            and bool(body.get("tools"))
            and bool(body.get("stream"))
        )

    def _response_headers(self, call: RecordedCall) -> dict[str, str]:
        return {"x-request-id": call.request_id or ""}

    def _rate_limited(self, step: RateLimited) -> tuple[dict[str, str], dict[str, Any]]:
        return OpenAIResponsesMock._rate_limited(self, step)  # type: ignore[arg-type]

    def _shell_call(self, body: dict[str, Any], command: str) -> tuple[str, dict[str, Any]]:
        offered = {_tool_name(t) for t in body.get("tools") or []}
        for name in self.SHELL_TOOLS:
            if name in offered:
                return name, {"command": command, "description": "Run the scenario's command"}
        raise AssertionError(f"no shell tool among the offered tools {sorted(map(str, offered))}")

    def _wire_usage(self, usage: Usage) -> dict[str, Any]:
        prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        details: dict[str, Any] = {"cached_tokens": usage.cache_read_tokens}
        if usage.cache_write_tokens:
            details["cache_write_tokens"] = usage.cache_write_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": usage.output_tokens,
            "total_tokens": prompt + usage.output_tokens,
            "prompt_tokens_details": details,
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        }

    def _extra_final(self, call: RecordedCall) -> dict[str, Any]:
        """Fields added to the usage chunk (the Copilot API adds its billing there)."""
        return {}

    def _stream(self, step: ToolCall | Text, call: RecordedCall) -> Iterator[bytes]:
        body = call.body if isinstance(call.body, dict) else {}
        call.response_id = _new_id("chatcmpl-")
        model = body.get("model", self.model)
        base = {
            "id": call.response_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return _sse(None, {**base, "choices": [choice]})

        yield chunk({"role": "assistant", "content": ""})
        for piece in _split(step.text) if step.text else []:
            yield chunk({"content": piece})
        finish = "stop"
        if isinstance(step, ToolCall):
            finish = "tool_calls"
            if step.tool is not None:
                name, args = step.tool, step.args or {}
            else:
                name, args = self._shell_call(body, step.command)
            call.tool_call_id = _new_id("call_")
            encoded = json.dumps(args)
            pieces = _split(encoded)
            first_call = {
                "index": 0,
                "id": call.tool_call_id,
                "type": "function",
                "function": {"name": name, "arguments": pieces[0]},
            }
            yield chunk({"tool_calls": [first_call]})
            for piece in pieces[1:]:
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        yield chunk({}, finish)
        call.wire_usage = self._wire_usage(step.usage)
        yield _sse(
            None, {**base, "choices": [], "usage": call.wire_usage, **self._extra_final(call)}
        )
        yield b"data: [DONE]\n\n"

    def _side(self, handler: BaseHTTPRequestHandler, call: RecordedCall) -> None:
        body = call.body if isinstance(call.body, dict) else {}
        if call.path.endswith("/models"):
            _send_json(
                handler,
                200,
                {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0}]},
            )
        elif call.path.endswith("/chat/completions") and handler.command == "POST":
            # A side call without tools (a title, a summary): a short answer with usage.
            usage = self.scenario.side_usage
            call.usage = usage
            call.wire_usage = self._wire_usage(usage)
            call.response_id = _new_id("chatcmpl-")
            message = {"role": "assistant", "content": "Scenario session"}
            if body.get("stream"):
                handler.send_response(200)
                handler.send_header("Content-Type", "text/event-stream")
                handler.send_header("Transfer-Encoding", "chunked")
                handler.end_headers()
                for frame in self._stream(Text(usage, "Scenario session"), call):
                    _write_chunk(handler, frame)
                _write_chunk(handler, b"")
            else:
                response = {
                    "id": call.response_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", self.model),
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": call.wire_usage,
                }
                _send_json(handler, 200, response)
        else:
            _send_json(handler, 200, {})

    def _tool_results_in(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        results = []
        for message in body.get("messages") or []:
            if isinstance(message, dict) and message.get("role") == "tool":
                output = message.get("content")
                if isinstance(output, list):
                    output = "".join(p.get("text", "") for p in output if isinstance(p, dict))
                results.append(
                    {"call_id": message.get("tool_call_id"), "output": output, "is_error": None}
                )
        return results


def _tool_name(tool: Any) -> str | None:
    """A tool's name in any of the three wire formats (chat: under ``function``)."""
    if not isinstance(tool, dict):
        return None
    function = tool.get("function")
    if isinstance(function, dict):
        return function.get("name")
    return tool.get("name")


# --------------------------------------------------------------------------------------------
# GitHub's Copilot API (the Copilot CLI signed in to GitHub)


@dataclass(frozen=True)
class CatalogModel:
    """One entry of the Copilot API's ``GET /models`` catalog."""

    id: str
    vendor: str
    multiplier: float
    """``billing.multiplier``: the premium requests one call of this model costs."""


class CopilotApiMock(OpenAIChatMock):
    """The GitHub API and the Copilot model API in one server.

    The CLI signed in (``COPILOT_GITHUB_TOKEN``, ``COPILOT_DEBUG_GITHUB_API_URL``) asks
    ``/copilot_internal/user`` where the model API is (``endpoints.api``: here, this server),
    reads the model catalog (``GET /models``, whose ``billing.multiplier`` becomes each call's
    ``github.copilot.cost``) and streams chat completions whose last chunk carries
    ``copilot_usage.total_nano_aiu`` (AI credits). Everything else (managed settings, memory,
    telemetry posts) gets an empty answer.
    """

    vendor = "github-copilot"
    USER_LOGIN = "octo-e2e"
    ANALYTICS_ID = "e2e-analytics-7f3a"
    """The user's ``analytics_tracking_id``: the CLI sends it as ``enduser.pseudo.id``."""

    def __init__(self, scenario: Scenario, model: CatalogModel) -> None:
        super().__init__(scenario, model.id)
        self.catalog_model = model

    def _extra_final(self, call: RecordedCall) -> dict[str, Any]:
        if call.nano_aiu is None:
            return {}
        return {"copilot_usage": {"total_nano_aiu": call.nano_aiu}}

    def _side(self, handler: BaseHTTPRequestHandler, call: RecordedCall) -> None:
        if call.path == "/copilot_internal/user":
            _send_json(
                handler,
                200,
                {
                    "login": self.USER_LOGIN,
                    "analytics_tracking_id": self.ANALYTICS_ID,
                    "copilot_plan": "business",
                    "access_type_sku": "copilot_for_business_seat",
                    "chat_enabled": True,
                    "endpoints": {
                        "api": self.base_url,
                        "proxy": self.base_url,
                        "telemetry": self.base_url,
                    },
                },
            )
        elif call.path == "/models" and handler.command == "GET":
            m = self.catalog_model
            entry = {
                "id": m.id,
                "name": m.id,
                "vendor": m.vendor,
                "version": m.id,
                "object": "model",
                "model_picker_enabled": True,
                "preview": False,
                "is_chat_default": True,
                "billing": {"is_premium": m.multiplier > 0, "multiplier": m.multiplier},
                "capabilities": {
                    "family": m.id,
                    "type": "chat",
                    "object": "model_capabilities",
                    "tokenizer": "o200k_base",
                    "limits": {
                        "max_context_window_tokens": 200000,
                        "max_output_tokens": 16000,
                        "max_prompt_tokens": 128000,
                    },
                    "supports": {
                        "streaming": True,
                        "tool_calls": True,
                        "parallel_tool_calls": True,
                    },
                },
                "policy": {"state": "enabled"},
                "supported_endpoints": ["/chat/completions"],
            }
            _send_json(handler, 200, {"object": "list", "data": [entry]})
        else:
            super()._side(handler, call)
