"""Gemini CLI: ``service.name=gemini-cli``; ``session.id`` on the resource and on records,
``installation.id`` groups users who are not signed in with Google.

``input_token_count`` INCLUDES ``cached_content_token_count``; ``thoughts_token_count`` is
OUTSIDE ``output_token_count`` (total = input + output + thoughts) yet billed as output, so
agentwatch output = output + thoughts and reasoning = thoughts. ``tool_token_count`` (the
API's tool-use prompt tokens) is outside the input count as well and billed as input. The same
tokens also arrive in cumulative ``gemini_cli.token.usage`` metrics: api_call events come from
``gemini_cli.api_response`` log records only. ``service.version`` is Node's version, not the
CLI's. No cost is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from collector import agent_model as am
from collector.agent_model import Agent, EventType
from processors.vendors import (
    ALL_CONTENT,
    TOOL_RESULT,
    AttributeMap,
    Attrs,
    ContentClass,
    ContentKey,
    LogEvent,
    MetricUsageRule,
    Scalar,
    UsageTotals,
    Vendor,
    ensure_token_classes,
    first_text,
    mcp_servers_facts,
    non_negative,
    register,
    to_bool,
    to_float,
    to_int,
    to_str,
    tool_argument_facts,
)

IDENTITY = {
    am.SESSION_ID: ("session.id",),
    am.USER_ID: ("installation.id", "user.id"),
    am.USER_EMAIL: ("user.email",),
    am.HOST: ("host.name",),
    am.TEAM: ("team",),
    am.COST_CENTER: ("cost_center",),
    am.PROMPT_ID: ("prompt_id", "prompt.id"),
}

CONFIG: AttributeMap = {
    "approval_mode": (am.APPROVAL_POLICY, to_str),
    "sandbox_enabled": (am.SANDBOX, to_str),
    "model": (am.MODEL, to_str),
}

API_RESPONSE: AttributeMap = {
    "model": (am.MODEL, to_str),
    "duration_ms": (am.DURATION_MS, to_float),
    "response_id": (am.REQUEST_ID, to_str),
}

API_ERROR: AttributeMap = {
    "model": (am.MODEL, to_str),
    "model_name": (am.MODEL, to_str),
    "error": (am.ERROR_MESSAGE, to_str),
    "error.message": (am.ERROR_MESSAGE, to_str),
    "duration": (am.DURATION_MS, to_float),
    "duration_ms": (am.DURATION_MS, to_float),
    "attempt": (am.ATTEMPT, to_int),
}

TOOL_CALL: AttributeMap = {
    "function_name": (am.TOOL_NAME, to_str),
    "call_id": (am.TOOL_CALL_ID, to_str),
    "success": (am.SUCCESS, to_bool),
    "duration_ms": (am.DURATION_MS, to_float),
    "error": (am.ERROR_MESSAGE, to_str),
    "mcp_server_name": (am.MCP_SERVER, to_str),
    "content_length": (am.TOOL_OUTPUT_SIZE, to_int),
}

USER_PROMPT: AttributeMap = {"prompt_length": (am.PROMPT_LENGTH, to_int)}

DECISIONS: dict[str, tuple[str, str | None]] = {
    "accept": ("accept", None),
    "auto_accept": ("accept", "config"),
    "modify": ("accept", "user"),
    "reject": ("reject", None),
}
"""Gemini decision -> (agentwatch decision, who decided). Only ``auto_accept`` (allow-list)
and ``modify`` say who; ``--yolo`` logs a plain ``accept``, so the source stays unknown."""


AUXILIARY_ROLES = frozenset({"utility_router"})
"""``role`` of calls the CLI makes for itself: without ``-m`` a non-streaming router call to a
flash-lite model starts every turn. Billed like any call, but not the conversation's."""


def caller_facts(attrs: Attrs, out: dict[str, Scalar]) -> None:
    role = to_str(attrs.get("role"))
    if role is None:
        return
    out[am.QUERY_SOURCE] = role
    out[am.CALLER] = "auxiliary" if role in AUXILIARY_ROLES else "main"


def provider_of(auth_type: str | None) -> str:
    return "gcp.vertex_ai" if auth_type == "vertex-ai" else "gcp.gen_ai"


def gemini_tokens(
    input_count: int, cached: int, output: int, thoughts: int, tool: int, total: int | None
) -> dict[str, int]:
    """Gemini's counts in the agentwatch convention (see the module docstring)."""
    tool_inside_input = total is not None and input_count + output + thoughts == total
    uncached = non_negative(input_count - cached) + (0 if tool_inside_input else tool)
    return {
        am.INPUT_TOKENS: uncached,
        am.CACHE_READ_TOKENS: cached,
        am.CACHE_WRITE_TOKENS: 0,
        am.OUTPUT_TOKENS: output + thoughts,
        am.REASONING_TOKENS: thoughts,
    }


def prompt_of(attrs: Attrs) -> tuple[object, ...]:
    """Gemini's events of one turn share a prompt id; it is part of their event ids."""
    return (first_text(attrs, ("prompt_id", "prompt.id")),)


def api_response_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    out.update(
        gemini_tokens(
            to_int(attrs.get("input_token_count")) or 0,
            to_int(attrs.get("cached_content_token_count")) or 0,
            to_int(attrs.get("output_token_count")) or 0,
            to_int(attrs.get("thoughts_token_count")) or 0,
            to_int(attrs.get("tool_token_count")) or 0,
            to_int(attrs.get("total_token_count")),
        )
    )
    status = to_str(attrs.get("status_code"))
    out[am.STATUS] = "ok" if status in (None, "200") else status
    out[am.PROVIDER] = provider_of(to_str(attrs.get("auth_type")))
    caller_facts(attrs, out)
    ensure_token_classes(out)
    return prompt_of(attrs)


def api_error_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    out[am.STATUS] = to_str(attrs.get("status_code")) or to_str(attrs.get("error_type")) or "error"
    out[am.PROVIDER] = provider_of(to_str(attrs.get("auth_type")))
    caller_facts(attrs, out)
    return prompt_of(attrs)


def tool_call_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    raw = to_str(attrs.get("decision"))
    if raw is not None:
        decision, source = DECISIONS.get(raw.lower(), (raw.lower(), None))
        out[am.DECISION] = decision
        if source is not None:
            out[am.DECISION_SOURCE] = source
    if am.ERROR_MESSAGE not in out:
        error_type = to_str(attrs.get("error_type"))
        if error_type:
            out[am.ERROR_MESSAGE] = error_type
    out[am.TOOL_SOURCE] = "mcp" if out.get(am.MCP_SERVER) else "builtin"
    tool_argument_facts(attrs.get("function_args"), out)
    return prompt_of(attrs)


def tool_call_key(attrs: Attrs, when: str) -> str:
    """Gemini 0.61 logs no call id: name and arguments keep two calls in one ms apart."""
    return f"{when}|{attrs.get('function_name')}|{attrs.get('function_args')}"


def prompt_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    text = to_str(attrs.get("prompt"))
    if text:
        out[am.PROMPT_TEXT] = text
    return prompt_of(attrs)


LOG_EVENTS: Mapping[str, LogEvent] = {
    "gemini_cli.api_response": LogEvent(EventType.API_CALL, API_RESPONSE, api_response_facts),
    "gemini_cli.api_error": LogEvent(EventType.API_ERROR, API_ERROR, api_error_facts),
    "gemini_cli.tool_call": LogEvent.tool(TOOL_RESULT, TOOL_CALL, tool_call_facts, tool_call_key),
    "gemini_cli.user_prompt": LogEvent(EventType.USER_PROMPT, USER_PROMPT, prompt_facts),
    "gemini_cli.config": LogEvent(EventType.SESSION_START, CONFIG, mcp_servers_facts),
}
"""Gemini's ``event.name`` (or body) -> agent event."""


class GeminiCli(Vendor):
    agent = Agent.GEMINI_CLI
    service_names = frozenset({"gemini-cli", "gemini_cli"})
    service_prefixes = ("gemini-cli",)
    provider = "gcp.gen_ai"
    content_keys = (
        ContentKey.of("prompt", ContentClass.PROMPTS, length_key="prompt_length"),
        ContentKey.of("request_text", *ALL_CONTENT),
        ContentKey.of("response_text", ContentClass.RESPONSES, ContentClass.TOOL_ARGUMENTS),
        ContentKey.of("function_args", ContentClass.TOOL_ARGUMENTS),
    )
    genai_operation = "generate_content"
    derives_genai_metrics = False  # it emits gen_ai.client.token.usage / operation.duration
    log_events = LOG_EVENTS
    identity_keys = IDENTITY
    version_keys = ("cli.version", "gemini_cli.version", "app.version")
    metric_rules: ClassVar[Mapping[str, MetricUsageRule]] = {
        "gemini_cli.token.usage": MetricUsageRule(
            "usage",
            by_type={
                "input": "input",
                "output": "output",
                "cache": "cache",
                "thought": "thought",
                "tool": "tool",
            },
        ),
        "gemini_cli.lines.changed": MetricUsageRule(
            "code_change", by_type={"added": "lines_added", "removed": "lines_removed"}
        ),
    }

    def usage_record(self, totals: UsageTotals) -> dict[str, Scalar]:
        values = totals.values
        return dict(
            gemini_tokens(
                int(values.get("input", 0)),
                int(values.get("cache", 0)),
                int(values.get("output", 0)),
                int(values.get("thought", 0)),
                int(values.get("tool", 0)),
                None,
            )
        )


VENDOR = register(GeminiCli())
