"""Codex CLI: every client names its own service (``codex_exec``, ``codex_cli_rs``,
``codex_tui``/``codex-tui``, ``codex-app-server``, ...), so any ``codex_``/``codex-`` prefix is
Codex.

Tokens are not on ``codex.api_request``: they ride on one ``codex.sse_event`` with
``event.kind=response.completed`` whose ``input_token_count`` INCLUDES ``cached_token_count``
and whose ``output_token_count`` includes ``reasoning_token_count``. ``tool_token_count`` is
misnamed: Codex fills it with the response's ``total_tokens``. Every streamed chunk is logged as
a count-less ``codex.sse_event`` too, including a second ``response.completed``; those are the
noise ``drop_stream_chunks`` removes, never the one with counts. No cost is reported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from collector import agent_model as am
from collector.agent_model import Agent, EventType
from processors.vendors import (
    TOOL_DECISION,
    TOOL_RESULT,
    AttributeMap,
    Attrs,
    Chooser,
    ContentClass,
    ContentKey,
    DurationSample,
    LogEvent,
    Result,
    Scalar,
    Vendor,
    ensure_token_classes,
    mcp_servers_facts,
    non_negative,
    register,
    to_bool,
    to_float,
    to_int,
    to_str,
    tool_argument_facts,
)

TOKEN_KEYS = ("input_token_count", "output_token_count")

IDENTITY = {
    am.SESSION_ID: ("conversation.id",),
    am.USER_ID: ("user.account_id",),
    am.USER_EMAIL: ("user.email",),
    am.USER_ACCOUNT: ("user.account_id",),
    am.TERMINAL: ("terminal.type",),
    am.HOST: ("host.name",),
    am.TEAM: ("team",),
    am.COST_CENTER: ("cost_center",),
}

CONVERSATION_STARTS: AttributeMap = {
    "approval_policy": (am.APPROVAL_POLICY, to_str),
    "sandbox_policy": (am.SANDBOX, to_str),
    "model": (am.MODEL, to_str),
}


def attempt_of(value: object) -> int | None:
    """Codex counts attempts from 0; agentwatch from 1."""
    attempt = to_int(value)
    return None if attempt is None else attempt + 1


API_REQUEST_ERROR: AttributeMap = {
    "duration_ms": (am.DURATION_MS, to_float),
    "attempt": (am.ATTEMPT, attempt_of),
    "error.message": (am.ERROR_MESSAGE, to_str),
    "model": (am.MODEL, to_str),
    "auth.request_id": (am.REQUEST_ID, to_str),
}

TOOL_DECISION_MAP: AttributeMap = {
    "tool_name": (am.TOOL_NAME, to_str),
    "call_id": (am.TOOL_CALL_ID, to_str),
    "decision": (am.DECISION, to_str),
    "source": (am.DECISION_SOURCE, to_str),
    "mcp_server": (am.MCP_SERVER, to_str),
}

TOOL_RESULT_MAP: AttributeMap = {
    "tool_name": (am.TOOL_NAME, to_str),
    "call_id": (am.TOOL_CALL_ID, to_str),
    "success": (am.SUCCESS, to_bool),
    "duration_ms": (am.DURATION_MS, to_float),
    "mcp_server": (am.MCP_SERVER, to_str),
}

USER_PROMPT: AttributeMap = {"prompt_length": (am.PROMPT_LENGTH, to_int)}

ROOT_AGENT = "/root"

EXIT_CODE = re.compile(r"^Process exited with code (-?\d+)$", re.MULTILINE)
"""How exec_command's output reports the command's exit status (its header, before Output:)."""


def exit_code_of(output: str) -> int | None:
    header = output.split("\nOutput:", 1)[0]
    match = EXIT_CODE.search(header)
    return int(match.group(1)) if match else None


MCP_NAMESPACE = re.compile(r"^mcp__(.+?)__$")
"""``tool_namespace`` of an MCP tool (``functions`` for built-in ones): Codex logs the bare
tool name with ``tool_namespace=mcp__<server>__``."""


def mcp_tool_facts(attrs: Attrs, out: dict[str, Scalar]) -> None:
    """``mcp_server`` is sent empty for built-in tools; the server of an MCP tool also shows in
    its ``tool_namespace``, and a ``mcp__<server>__`` prefix on its name is dropped so per-tool
    views see the real name."""
    server = out.get(am.MCP_SERVER)
    if not server:
        namespace = MCP_NAMESPACE.match(to_str(attrs.get("tool_namespace")) or "")
        server = out[am.MCP_SERVER] = namespace.group(1) if namespace else ""
    if not server:
        out.pop(am.MCP_SERVER, None)
        out[am.TOOL_SOURCE] = "builtin"
        return
    out[am.TOOL_SOURCE] = "mcp"
    name = out.get(am.TOOL_NAME)
    prefix = f"mcp__{server}__"
    if isinstance(name, str) and name.startswith(prefix):
        out[am.TOOL_NAME] = name[len(prefix) :]


def decision_of(raw: str) -> str:
    """Codex logs ``ReviewDecision`` lowercased: approved, approved_for_session, denied, abort."""
    lowered = raw.lower()
    if lowered.startswith("approved"):
        return "accept"
    if lowered in ("denied", "abort", "rejected"):
        return "reject"
    return lowered


PROVIDER = "openai"


def tool_decision_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    raw = out.get(am.DECISION)
    if isinstance(raw, str):
        out[am.DECISION] = decision_of(raw)
    source = out.get(am.DECISION_SOURCE)
    if isinstance(source, str):
        out[am.DECISION_SOURCE] = source.lower()  # "Config", "User"
    mcp_tool_facts(attrs, out)
    return ()


def tool_result_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    mcp_tool_facts(attrs, out)
    tool_argument_facts(attrs.get("arguments"), out)
    output = attrs.get("output")
    if isinstance(output, str):
        out[am.TOOL_OUTPUT] = output
        out[am.TOOL_OUTPUT_SIZE] = len(output.encode())
        exit_code = exit_code_of(output)
        if exit_code:  # Codex says success=true for a command that exited non-zero
            out[am.SUCCESS] = False
            out[am.ERROR_MESSAGE] = f"exit code {exit_code}"
    return ()


def prompt_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    text = to_str(attrs.get("prompt"))
    if text and text != Codex.redacted_placeholder:
        out[am.PROMPT_TEXT] = text
    return ()


def completed_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    """The one token-bearing ``response.completed``; input made uncached here."""
    reported_input = to_int(attrs.get("input_token_count")) or 0
    cached = to_int(attrs.get("cached_token_count")) or 0
    cache_write = to_int(attrs.get("cache_write_token_count")) or 0
    out[am.INPUT_TOKENS] = non_negative(reported_input - cached - cache_write)
    out[am.CACHE_READ_TOKENS] = cached
    out[am.CACHE_WRITE_TOKENS] = cache_write
    out[am.OUTPUT_TOKENS] = to_int(attrs.get("output_token_count")) or 0
    reasoning = to_int(attrs.get("reasoning_token_count"))
    if reasoning is not None:
        out[am.REASONING_TOKENS] = reasoning
    model = to_str(attrs.get("model")) or to_str(attrs.get("slug"))
    if model:
        out[am.MODEL] = model
    duration = to_float(attrs.get("duration_ms"))
    if duration is not None:
        out[am.DURATION_MS] = duration
    out[am.PROVIDER] = PROVIDER
    out[am.STATUS] = "ok"
    agent_name = to_str(attrs.get("agent_name"))
    if agent_name:  # "/root" is the main agent; a spawned agent has its own path
        out[am.CALLER] = "main" if agent_name == ROOT_AGENT else "subagent"
        if agent_name != ROOT_AGENT:
            out[am.SUBAGENT_NAME] = agent_name
    ensure_token_classes(out)
    return ()


def request_error_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    status = to_int(attrs.get("http.response.status_code"))
    out[am.STATUS] = str(status) if status is not None else "error"
    out[am.PROVIDER] = PROVIDER
    return ()


def stream_error_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    out[am.STATUS] = to_str(attrs.get("event.kind")) or "stream_error"
    out[am.PROVIDER] = PROVIDER
    return ()


COMPLETED = LogEvent(EventType.API_CALL, facts=completed_facts, tag=("response.completed",))
REQUEST_ERROR = LogEvent(
    EventType.API_ERROR, API_REQUEST_ERROR, request_error_facts, tag=("request",)
)
STREAM_ERROR = LogEvent(EventType.API_ERROR, API_REQUEST_ERROR, stream_error_facts, tag=("stream",))


def sse_event(attrs: Attrs) -> LogEvent | Result:
    """Only the token-bearing ``response.completed`` is a call; an error is a stream error."""
    if any(attrs.get(key) is not None for key in TOKEN_KEYS):
        return COMPLETED
    if to_str(attrs.get("error.message")) is not None:
        return STREAM_ERROR
    kind = to_str(attrs.get("event.kind"))
    return Result(
        drop_reason="duplicate_completed" if kind == "response.completed" else "stream_chunk"
    )


def websocket_event(attrs: Attrs) -> LogEvent | Result:
    if to_str(attrs.get("error.message")) is None and to_bool(attrs.get("success")) is not False:
        return Result(drop_reason="stream_chunk")
    return STREAM_ERROR


def request(attrs: Attrs) -> LogEvent | Result | None:
    """A failed HTTP attempt is an api_error; a good one only times the call."""
    status = to_int(attrs.get("http.response.status_code"))
    error = to_str(attrs.get("error.message"))
    success = to_bool(attrs.get("success"))
    if error is not None or success is False or (status is not None and status >= 400):
        return REQUEST_ERROR
    duration = to_float(attrs.get("duration_ms"))
    if duration is None:
        return None
    model = to_str(attrs.get("model")) or to_str(attrs.get("slug"))
    return Result(duration_sample=DurationSample(duration / 1000.0, model))


LOG_EVENTS: Mapping[str, LogEvent | Chooser] = {
    "codex.sse_event": sse_event,
    "codex.api_request": request,
    "codex.websocket_request": request,
    "codex.websocket_connect": request,
    "codex.websocket_event": websocket_event,
    "codex.tool_decision": LogEvent.tool(TOOL_DECISION, TOOL_DECISION_MAP, tool_decision_facts),
    "codex.tool_result": LogEvent.tool(TOOL_RESULT, TOOL_RESULT_MAP, tool_result_facts),
    "codex.user_prompt": LogEvent(EventType.USER_PROMPT, USER_PROMPT, prompt_facts),
    "codex.conversation_starts": LogEvent(
        EventType.SESSION_START, CONVERSATION_STARTS, mcp_servers_facts
    ),
}
"""Codex's ``event.name`` (or body) -> agent event."""


class Codex(Vendor):
    agent = Agent.CODEX
    service_names = frozenset(
        {"codex_exec", "codex_cli_rs", "codex_tui", "codex-tui", "codex-app-server", "codex"}
    )
    service_prefixes = ("codex_", "codex-")
    provider = PROVIDER
    genai_operation = "chat"
    derives_genai_metrics = True
    log_events = LOG_EVENTS
    session_keys = ("conversation.id",)
    resource_session_key = None
    identity_keys = IDENTITY
    version_keys = ("app.version", "service.version")
    redacted_placeholder = "[REDACTED]"
    content_keys = (
        ContentKey.of("prompt", ContentClass.PROMPTS, length_key="prompt_length"),
        ContentKey.of("arguments", ContentClass.TOOL_ARGUMENTS),
        ContentKey.of("output", ContentClass.TOOL_OUTPUT),
    )


VENDOR = register(Codex())
