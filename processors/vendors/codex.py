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

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from collector import agent_model as am
from collector.agent_model import Agent, EventType
from processors.vendors import (
    TOOL_DECISION,
    TOOL_PHASE,
    TOOL_RESULT,
    AttributeMap,
    Attrs,
    ContentClass,
    ContentKey,
    DurationSample,
    Result,
    Scalar,
    Vendor,
    apply_map,
    ensure_token_classes,
    non_negative,
    record_time_key,
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


class Codex(Vendor):
    agent = Agent.CODEX
    service_names = frozenset(
        {"codex_exec", "codex_cli_rs", "codex_tui", "codex-tui", "codex-app-server", "codex"}
    )
    service_prefixes = ("codex_", "codex-")
    provider = "openai"
    genai_operation = "chat"
    derives_genai_metrics = True
    identity_keys = IDENTITY
    version_keys = ("app.version", "service.version")
    redacted_placeholder = "[REDACTED]"
    content_keys = (
        ContentKey.of("prompt", ContentClass.PROMPTS, length_key="prompt_length"),
        ContentKey.of("arguments", ContentClass.TOOL_ARGUMENTS),
        ContentKey.of("output", ContentClass.TOOL_OUTPUT),
    )

    def log_event(self, resource: Attrs, attrs: Attrs, record: LogRecord) -> Result | None:
        name = to_str(attrs.get("event.name")) or record.body.string_value or None
        if name is None:
            return None
        session = to_str(attrs.get("conversation.id"))
        when = record_time_key(record, attrs)
        out: dict[str, Scalar] = {}
        if name == "codex.sse_event":
            return self._sse_event(attrs, out, session, when)
        if name in ("codex.api_request", "codex.websocket_request", "codex.websocket_connect"):
            return self._request(attrs, out, session, when)
        if name == "codex.websocket_event":
            if (
                to_str(attrs.get("error.message")) is None
                and to_bool(attrs.get("success")) is not False
            ):
                return Result(drop_reason="stream_chunk")
            return self._stream_error(attrs, out, session, when)
        if name == "codex.tool_decision":
            apply_map(attrs, TOOL_DECISION_MAP, out)
            raw = out.get(am.DECISION)
            if isinstance(raw, str):
                out[am.DECISION] = decision_of(raw)
            source = out.get(am.DECISION_SOURCE)
            if isinstance(source, str):
                out[am.DECISION_SOURCE] = source.lower()  # "Config", "User"
            mcp_tool_facts(attrs, out)
            out[TOOL_PHASE] = TOOL_DECISION
            return self.finish(
                out, EventType.TOOL_CALL, session, TOOL_DECISION, out.get(am.TOOL_CALL_ID) or when
            )
        if name == "codex.tool_result":
            apply_map(attrs, TOOL_RESULT_MAP, out)
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
            out[TOOL_PHASE] = TOOL_RESULT
            return self.finish(
                out, EventType.TOOL_CALL, session, TOOL_RESULT, out.get(am.TOOL_CALL_ID) or when
            )
        if name == "codex.user_prompt":
            length = to_int(attrs.get("prompt_length"))
            if length is not None:
                out[am.PROMPT_LENGTH] = length
            text = to_str(attrs.get("prompt"))
            if text and text != self.redacted_placeholder:
                out[am.PROMPT_TEXT] = text
            return self.finish(out, EventType.USER_PROMPT, session, when)
        if name == "codex.conversation_starts":
            apply_map(attrs, CONVERSATION_STARTS, out)
            servers = attrs.get("mcp_servers")
            if isinstance(servers, str):  # "" is a fact too: no MCP servers configured
                out[am.MCP_SERVERS] = ",".join(s.strip() for s in servers.split(",") if s.strip())
            return self.finish(out, EventType.SESSION_START, session, when)
        return None

    def _sse_event(
        self, attrs: Attrs, out: dict[str, Scalar], session: str | None, when: str
    ) -> Result:
        if any(attrs.get(key) is not None for key in TOKEN_KEYS):
            return self._completed(attrs, out, session, when)
        if to_str(attrs.get("error.message")) is not None:
            return self._stream_error(attrs, out, session, when)
        kind = to_str(attrs.get("event.kind"))
        return Result(
            drop_reason="duplicate_completed" if kind == "response.completed" else "stream_chunk"
        )

    def _completed(
        self, attrs: Attrs, out: dict[str, Scalar], session: str | None, when: str
    ) -> Result:
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
        out[am.PROVIDER] = self.provider
        out[am.STATUS] = "ok"
        agent_name = to_str(attrs.get("agent_name"))
        if agent_name:  # "/root" is the main agent; a spawned agent has its own path
            out[am.CALLER] = "main" if agent_name == ROOT_AGENT else "subagent"
            if agent_name != ROOT_AGENT:
                out[am.SUBAGENT_NAME] = agent_name
        ensure_token_classes(out)
        return self.finish(out, EventType.API_CALL, session, "response.completed", when)

    def _request(
        self, attrs: Attrs, out: dict[str, Scalar], session: str | None, when: str
    ) -> Result | None:
        """A failed HTTP attempt is an api_error; a good one only times the call."""
        status = to_int(attrs.get("http.response.status_code"))
        error = to_str(attrs.get("error.message"))
        success = to_bool(attrs.get("success"))
        duration = to_float(attrs.get("duration_ms"))
        model = to_str(attrs.get("model")) or to_str(attrs.get("slug"))
        failed = error is not None or success is False or (status is not None and status >= 400)
        if not failed:
            if duration is None:
                return None
            return Result(duration_sample=DurationSample(duration / 1000.0, model))
        apply_map(attrs, API_REQUEST_ERROR, out)
        out[am.STATUS] = str(status) if status is not None else "error"
        out[am.PROVIDER] = self.provider
        return self.finish(out, EventType.API_ERROR, session, "request", when)

    def _stream_error(
        self, attrs: Attrs, out: dict[str, Scalar], session: str | None, when: str
    ) -> Result:
        apply_map(attrs, API_REQUEST_ERROR, out)
        out[am.STATUS] = to_str(attrs.get("event.kind")) or "stream_error"
        out[am.PROVIDER] = self.provider
        return self.finish(out, EventType.API_ERROR, session, "stream", when)


VENDOR = register(Codex())
