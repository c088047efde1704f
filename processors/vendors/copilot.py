"""GitHub Copilot: Copilot Chat in VS Code (``copilot-chat``) and Copilot CLI
(``github-copilot``). Both follow the GenAI span conventions, so one module serves both.

The model calls are ``chat <model>`` spans, tool calls ``execute_tool <tool>`` spans, one user
message an ``invoke_agent`` span (whose token, cost and AI-credit totals repeat its chat spans
and are therefore not an api_call). Per the conventions ``gen_ai.usage.input_tokens`` INCLUDES
the cache-read and cache-write tokens, whatever model answered, which agentwatch subtracts.
Cache writes are ``gen_ai.usage.cache_write.input_tokens`` (the CLI) or
``gen_ai.usage.cache_creation.input_tokens`` (GitHub's docs), both are read.

Money: the CLI's ``github.copilot.cost`` is the premium-request multiplier of the call (from the
model catalog's ``billing.multiplier``), not dollars, and ``github.copilot.nano_aiu`` its AI
credits in billionths; both are kept as their own measures. The dollar figure is the list-price
equivalent the cost processor computes, so a call is attributed to the model's own vendor
(``gen_ai.provider.name`` says ``github``) under the price book's model name.

The CLI (1.0.102) was run here against local mocks (tests/e2e); Copilot Chat in VS Code is
still known only from its documentation (docs/agents/copilot.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

from opentelemetry.proto.trace.v1.trace_pb2 import Status

from collector import agent_model as am
from collector.agent_model import Agent, EventType
from collector.records import Span
from processors.vendors import (
    TOOL_PHASE,
    TOOL_RESULT,
    AttributeMap,
    Attrs,
    ContentClass,
    ContentKey,
    DurationSample,
    LogEvent,
    MetricUsageRule,
    Result,
    Scalar,
    SpanBatch,
    Vendor,
    apply_map,
    ensure_token_classes,
    first,
    first_text,
    non_negative,
    register,
    to_float,
    to_int,
    to_str,
    tool_argument_facts,
)

IDENTITY = {
    am.SESSION_ID: ("gen_ai.conversation.id", "session.id"),
    # The CLI signed in to GitHub puts the account's analytics id on its invoke_agent span.
    am.USER_ID: ("user.id", "enduser.id", "enduser.pseudo.id"),
    am.USER_EMAIL: ("user.email",),
    am.HOST: ("host.name",),
    am.TEAM: ("team",),
    am.COST_CENTER: ("cost_center",),
}

CHAT: AttributeMap = {
    "gen_ai.response.id": (am.REQUEST_ID, to_str),
    "github.copilot.cost": (am.PREMIUM_REQUESTS, to_float),
    "github.copilot.nano_aiu": (am.NANO_AIU, to_int),
    "gen_ai.usage.reasoning.output_tokens": (am.REASONING_TOKENS, to_int),
}

DENIED = "denied"
"""``error.type`` of an execute_tool span whose call a ``--deny-tool`` rule refused."""

_CLAUDE_VERSION_DOT = re.compile(r"(?<=\d)\.(?=\d)")


def price_book_model(model: str) -> tuple[str, str]:
    """(provider, model) under which the price book lists a Copilot model name.

    Copilot writes Anthropic versions with dots (``claude-sonnet-4.5``) where Anthropic, and so
    the price book, uses hyphens (``claude-sonnet-4-5``); OpenAI and Google names are the
    vendors' own. Unknown families stay with GitHub's provider (the book's ``github_copilot``).
    """
    name = model.strip().lower()
    if name.startswith("claude-"):
        return "anthropic", _CLAUDE_VERSION_DOT.sub("-", name)
    if name.startswith(("gpt-", "o1", "o3", "o4", "codex-")):
        return "openai", name
    if name.startswith("gemini-"):
        return "gcp.gen_ai", name
    return "github_copilot", name


CACHE_READ_KEYS = ("gen_ai.usage.cache_read.input_tokens",)
CACHE_WRITE_KEYS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
)

TOOL: AttributeMap = {
    "gen_ai.tool.name": (am.TOOL_NAME, to_str),
    "gen_ai.tool.call.id": (am.TOOL_CALL_ID, to_str),
    # the CLI's own copies of a shell command and a file tool's path (content capture on)
    "github.copilot.tool.parameters.command": (am.COMMAND, to_str),
    "github.copilot.tool.parameters.file_path": (am.FILE_PATH, to_str),
}


def operation_of(span: Span, attrs: Attrs) -> str:
    """``gen_ai.operation.name``, or the first word of the span name when it is missing."""
    return to_str(attrs.get("gen_ai.operation.name")) or span.name.split(" ", 1)[0]


def failed(span: Span, attrs: Attrs) -> bool:
    return attrs.get("error.type") is not None or span.status_code == Status.STATUS_CODE_ERROR


def duration_ms(span: Span) -> float | None:
    if span.start_time_unix_nano and span.end_time_unix_nano >= span.start_time_unix_nano:
        return (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    return None


LOG_EVENTS: Mapping[str, LogEvent] = {
    "copilot_chat.session.start": LogEvent(
        EventType.SESSION_START, {"gen_ai.request.model": (am.MODEL, to_str)}
    ),
}
"""Copilot's log events repeat its spans (tool calls, turns, inference details), so only the
session start becomes an event; the spans are the record of calls."""


class Copilot(Vendor):
    provider = "github_copilot"
    genai_operation = "chat"
    derives_genai_metrics = False  # both emit gen_ai.client.* histograms themselves
    log_events = LOG_EVENTS
    session_keys = ("session.id", "gen_ai.conversation.id")
    identity_keys = IDENTITY
    version_keys = ("service.version",)

    def span_event(
        self, resource: Attrs, attrs: Attrs, span: Span, batch: SpanBatch
    ) -> Result | None:
        operation = operation_of(span, attrs)
        session = (
            to_str(attrs.get("gen_ai.conversation.id"))
            or batch.conversation_by_trace.get(span.trace_id)
            or to_str(resource.get("session.id"))
            or to_str(attrs.get("gen_ai.agent.id"))
        )
        out: dict[str, Scalar] = {}
        if session:
            out[am.SESSION_ID] = session
        user = batch.user_by_trace.get(span.trace_id)
        if user and first_text(attrs, IDENTITY[am.USER_ID]) is None:
            out[am.USER_ID] = user
        if span.trace_id:
            out[am.PROMPT_ID] = span.trace_id.hex()
        span_key = span.span_id.hex()
        elapsed = duration_ms(span)
        if operation == "chat":
            return self._chat(attrs, span, out, session, span_key, elapsed)
        if operation == "execute_tool":
            apply_map(attrs, TOOL, out)
            # A shell command that exits non-zero is a normal span: only its exit code says so.
            exit_code = to_int(attrs.get("process.exit.code"))
            out[am.SUCCESS] = not failed(span, attrs) and not exit_code
            if to_str(attrs.get("error.type")) == DENIED:
                out[am.DECISION] = "reject"
                out[am.DECISION_SOURCE] = "config"
            if elapsed is not None:
                out[am.DURATION_MS] = elapsed
            error = to_str(attrs.get("error.type")) or span.status_message or None
            if error and not out[am.SUCCESS]:
                out[am.ERROR_MESSAGE] = error
            tool_argument_facts(attrs.get("gen_ai.tool.call.arguments"), out)
            result = to_str(attrs.get("gen_ai.tool.call.result"))
            if result is not None:
                out[am.TOOL_OUTPUT] = result
                out[am.TOOL_OUTPUT_SIZE] = len(result.encode())
            out[TOOL_PHASE] = TOOL_RESULT
            return self.finish(
                out, EventType.TOOL_CALL, session, TOOL_RESULT, out.get(am.TOOL_CALL_ID) or span_key
            )
        if operation == "invoke_agent" and not span.parent_span_id:
            # A root invoke_agent is one user message; subagents hang below a tool span.
            return self.finish(out, EventType.USER_PROMPT, session, span_key)
        return Result(out) if out else None

    def _chat(
        self,
        attrs: Attrs,
        span: Span,
        out: dict[str, Scalar],
        session: str | None,
        span_key: str,
        elapsed: float | None,
    ) -> Result:
        model = first_text(attrs, ("gen_ai.response.model", "gen_ai.request.model"))
        out[am.PROVIDER] = self.provider
        if model:
            out[am.PROVIDER], out[am.MODEL] = price_book_model(model)
        if elapsed is not None:
            out[am.DURATION_MS] = elapsed
        ttft_ms = to_float(attrs.get("copilot_chat.time_to_first_token"))
        if ttft_ms is None:
            seconds = to_float(
                first(
                    attrs,
                    ("gen_ai.response.time_to_first_chunk", "github.copilot.time_to_first_chunk"),
                )
            )
            ttft_ms = seconds * 1000.0 if seconds is not None else None
        if ttft_ms is not None:
            out[am.TTFT_MS] = ttft_ms
        apply_map(attrs, CHAT, out)
        if failed(span, attrs):
            out[am.STATUS] = to_str(attrs.get("error.type")) or "error"
            message = span.status_message
            if message:
                out[am.ERROR_MESSAGE] = message
            result = self.finish(out, EventType.API_ERROR, session, "chat", span_key)
        else:
            reported_input = to_int(attrs.get("gen_ai.usage.input_tokens")) or 0
            cache_read = to_int(first(attrs, CACHE_READ_KEYS)) or 0
            cache_write = to_int(first(attrs, CACHE_WRITE_KEYS)) or 0
            out[am.INPUT_TOKENS] = non_negative(reported_input - cache_read - cache_write)
            out[am.CACHE_READ_TOKENS] = cache_read
            out[am.CACHE_WRITE_TOKENS] = cache_write
            out[am.OUTPUT_TOKENS] = to_int(attrs.get("gen_ai.usage.output_tokens")) or 0
            out[am.STATUS] = "ok"
            ensure_token_classes(out)
            result = self.finish(out, EventType.API_CALL, session, "chat", span_key)
        if elapsed is not None:
            result.duration_sample = DurationSample(elapsed / 1000.0, model)
        return result


class CopilotChat(Copilot):
    agent = Agent.COPILOT_CHAT
    service_names = frozenset({"copilot-chat"})
    metric_rules: ClassVar[Mapping[str, MetricUsageRule]] = {
        "copilot_chat.lines_of_code.count": MetricUsageRule(
            "code_change", by_type={"added": "lines_added", "removed": "lines_removed"}
        ),
        "copilot_chat.pull_request.count": MetricUsageRule("code_change", name="pull_requests"),
    }


class CopilotCli(Copilot):
    agent = Agent.COPILOT_CLI
    service_names = frozenset({"github-copilot"})
    scope_names = frozenset({"github.copilot"})
    # the shell command of an execute_tool span, sent even without content capture
    content_keys = (
        ContentKey.of("github.copilot.tool.parameters.command", ContentClass.TOOL_ARGUMENTS),
    )


CHAT_VENDOR = register(CopilotChat())
CLI_VENDOR = register(CopilotCli())
