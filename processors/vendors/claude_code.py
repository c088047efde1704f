"""Claude Code: ``service.name=claude-code`` (``claude-code-desktop`` from the desktop app).

Log body is ``claude_code.<name>``, attribute ``event.name`` the bare name; identity is
repeated on every record (not on the resource). ``input_tokens`` already excludes cache, the
cache write is split 5m/1h, and the agent reports its own ``cost_usd``. The same tokens also
arrive summed in the ``claude_code.token.usage`` metric: api_call events come from the
``api_request`` log records only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from collector import agent_model as am
from collector.agent_model import Agent, EventType
from collector.records import LogRecord, Span
from processors import genai_semconv
from processors.vendors import (
    ALL_CONTENT,
    TOOL_DECISION,
    TOOL_RESULT,
    AttributeMap,
    Attrs,
    ContentClass,
    ContentKey,
    LogEvent,
    MetricUsageRule,
    Result,
    Scalar,
    SpanBatch,
    UsageTotals,
    Vendor,
    apply_map,
    ensure_token_classes,
    event_id,
    json_object,
    record_time_key,
    register,
    to_bool,
    to_float,
    to_int,
    to_str,
    tool_argument_facts,
)

MCP_TOOL = "mcp_tool"
"""The ``tool_name`` of every MCP tool call; the real names are in ``tool_parameters``."""

IDENTITY = {
    am.SESSION_ID: ("session.id",),
    am.USER_ID: ("user.id",),
    am.USER_EMAIL: ("user.email",),
    am.USER_ACCOUNT: ("user.account_uuid", "user.account_id"),
    am.ORGANIZATION: ("organization.id",),
    am.TERMINAL: ("terminal.type",),
    am.HOST: ("host.name",),
    am.TEAM: ("team",),
    am.COST_CENTER: ("cost_center",),
    am.PROMPT_ID: ("prompt.id",),
}

API_REQUEST: AttributeMap = {
    "model": (am.MODEL, to_str),
    "input_tokens": (am.INPUT_TOKENS, to_int),
    "output_tokens": (am.OUTPUT_TOKENS, to_int),
    "cache_read_tokens": (am.CACHE_READ_TOKENS, to_int),
    "cache_creation_tokens": (am.CACHE_WRITE_TOKENS, to_int),
    "cache_creation_5m_tokens": (am.CACHE_WRITE_5M_TOKENS, to_int),
    "cache_creation_1h_tokens": (am.CACHE_WRITE_1H_TOKENS, to_int),
    "cost_usd": (am.COST_USD_REPORTED, to_float),
    "duration_ms": (am.DURATION_MS, to_float),
    "ttft_ms": (am.TTFT_MS, to_float),
    "request_id": (am.REQUEST_ID, to_str),
    "attempt": (am.ATTEMPT, to_int),
}

API_ERROR: AttributeMap = {
    "model": (am.MODEL, to_str),
    "error": (am.ERROR_MESSAGE, to_str),
    "status_code": (am.STATUS, to_str),
    "duration_ms": (am.DURATION_MS, to_float),
    "attempt": (am.ATTEMPT, to_int),
    "request_id": (am.REQUEST_ID, to_str),
}

TOOL_DECISION_MAP: AttributeMap = {
    "tool_name": (am.TOOL_NAME, to_str),
    "tool_use_id": (am.TOOL_CALL_ID, to_str),
    "decision": (am.DECISION, to_str),
    "source": (am.DECISION_SOURCE, to_str),
    "permission_mode": (am.PERMISSION_MODE, to_str),
}

TOOL_RESULT_MAP: AttributeMap = {
    "tool_name": (am.TOOL_NAME, to_str),
    "tool_use_id": (am.TOOL_CALL_ID, to_str),
    "success": (am.SUCCESS, to_bool),
    "duration_ms": (am.DURATION_MS, to_float),
    "error_type": (am.ERROR_MESSAGE, to_str),  # all there is without OTEL_LOG_TOOL_DETAILS
    "error": (am.ERROR_MESSAGE, to_str),
    "decision_type": (am.DECISION, to_str),
    "decision": (am.DECISION, to_str),
    "decision_source": (am.DECISION_SOURCE, to_str),
    "source": (am.DECISION_SOURCE, to_str),
    "tool_result_size_bytes": (am.TOOL_OUTPUT_SIZE, to_int),
    "tool_input_size_bytes": (am.TOOL_ARGUMENTS_SIZE, to_int),
    "mcp_server_name": (am.MCP_SERVER, to_str),
    "permission_mode": (am.PERMISSION_MODE, to_str),
}

USER_PROMPT: AttributeMap = {
    "prompt_length": (am.PROMPT_LENGTH, to_int),
    "permission_mode": (am.PERMISSION_MODE, to_str),
}

DECISION_SOURCES = {
    "user_permanent": "user",
    "user_temporary": "user",
    "user_abort": "user",
    "user_reject": "user",
}
"""Claude's sources say how long a user's answer lasts; agentwatch keeps who decided."""


def api_call_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    out[am.PROVIDER] = provider_of(to_str(attrs.get("model")))
    out[am.STATUS] = "ok"
    caller_facts(attrs, out)
    ensure_token_classes(out)
    return ()


def api_error_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    out[am.PROVIDER] = provider_of(to_str(attrs.get("model")))
    out.setdefault(am.STATUS, "error")
    caller_facts(attrs, out)
    return ()


def tool_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    source = out.get(am.DECISION_SOURCE)
    if isinstance(source, str):
        out[am.DECISION_SOURCE] = DECISION_SOURCES.get(source, source)
    parameters = json_object(attrs.get("tool_parameters"))
    if parameters:
        # Every MCP tool is logged as ``mcp_tool``; its real names are only in here.
        mcp = to_str(parameters.get("mcp_server_name"))
        if mcp:
            out.setdefault(am.MCP_SERVER, mcp)
        tool = to_str(parameters.get("mcp_tool_name"))
        if tool:
            out[am.TOOL_NAME] = tool
    tool_source = to_str(attrs.get("tool_source"))  # on decisions only
    if tool_source is None:
        mcp_call = out.get(am.MCP_SERVER) or attrs.get("tool_name") == MCP_TOOL
        tool_source = "mcp" if mcp_call else "builtin"
    out[am.TOOL_SOURCE] = tool_source
    # tool_input holds the model's arguments; tool_parameters the harness's view of them.
    tool_argument_facts(attrs.get("tool_input"), out)
    if not out.get(am.MCP_SERVER):  # an MCP call's parameters are its names, not arguments
        tool_argument_facts(attrs.get("tool_parameters"), out, parameters)
    return ()


def prompt_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...]:
    text = to_str(attrs.get("prompt")) or to_str(attrs.get("prompt_text"))
    if text and text != ClaudeCode.redacted_placeholder:
        out[am.PROMPT_TEXT] = text
        out.setdefault(am.PROMPT_LENGTH, len(text))
    return ()


def mcp_connection_facts(attrs: Attrs, out: dict[str, Scalar]) -> tuple[object, ...] | None:
    """A connected MCP server is a fact about the session; disconnects and failures stay raw."""
    server = to_str(attrs.get("server_name"))
    if server is None or to_str(attrs.get("status")) != "connected":
        return None
    out[am.MCP_SERVERS] = server
    return (server,)


LOG_EVENTS: Mapping[str, LogEvent] = {
    "api_request": LogEvent(EventType.API_CALL, API_REQUEST, api_call_facts, id_key=am.REQUEST_ID),
    "api_error": LogEvent(EventType.API_ERROR, API_ERROR, api_error_facts),
    "tool_decision": LogEvent.tool(TOOL_DECISION, TOOL_DECISION_MAP, tool_facts),
    "tool_result": LogEvent.tool(TOOL_RESULT, TOOL_RESULT_MAP, tool_facts),
    "user_prompt": LogEvent(EventType.USER_PROMPT, USER_PROMPT, prompt_facts),
    "mcp_server_connection": LogEvent(
        EventType.SESSION_START, facts=mcp_connection_facts, tag=("mcp",)
    ),
}
"""Claude's ``event.name`` (its body less ``claude_code.``) -> agent event."""


class ClaudeCode(Vendor):
    agent = Agent.CLAUDE_CODE
    service_names = frozenset({"claude-code", "claude-code-desktop"})
    service_prefixes = ("claude-code",)
    # What the Prometheus exporter reads as metrics and re-exposes under Claude Code's own names
    # (Grafana dashboard 25255): lines, commits, pull requests and active time come only as
    # delta metrics; tokens, cost, sessions and edit decisions are derived from the events.
    delta_metrics: ClassVar[Mapping[str, str]] = {
        "claude_code.lines_of_code.count": "lines",
        "claude_code.commit.count": "commits",
        "claude_code.pull_request.count": "pull_requests",
        "claude_code.active_time.total": "active_time",
    }
    compat_metric_names: ClassVar[Mapping[str, str]] = {
        "tokens": "claude_code_token_usage_tokens",
        "cost": "claude_code_cost_usage_USD",
        "sessions": "claude_code_session_count",
        "lines": "claude_code_lines_of_code_count",
        "commits": "claude_code_commit_count",
        "pull_requests": "claude_code_pull_request_count",
        "active_time": "claude_code_active_time_seconds",
        "edit_decisions": "claude_code_code_edit_tool_decision",
    }
    compat_token_types: ClassVar[Mapping[str, str]] = {
        "input": am.INPUT_TOKENS,
        "output": am.OUTPUT_TOKENS,
        "cacheRead": am.CACHE_READ_TOKENS,
        "cacheCreation": am.CACHE_WRITE_TOKENS,
    }
    compat_edit_tools: ClassVar[frozenset[str]] = frozenset(
        ("Edit", "MultiEdit", "Write", "NotebookEdit")
    )
    provider = "anthropic"
    genai_operation = "chat"
    derives_genai_metrics = True
    log_events = LOG_EVENTS
    body_prefix = "claude_code."
    identity_keys = IDENTITY
    version_keys = ("service.version", "app.version")
    redacted_placeholder = "<REDACTED>"
    content_keys = (
        ContentKey.of("prompt", ContentClass.PROMPTS, length_key="prompt_length"),
        ContentKey.of("prompt_text", ContentClass.PROMPTS, length_key="prompt_length"),
        # the interaction span (traces beta)
        ContentKey.of("user_prompt", ContentClass.PROMPTS, length_key="user_prompt_length"),
        ContentKey.of("response", ContentClass.RESPONSES, length_key="response_length"),
        ContentKey.of("tool_parameters", ContentClass.TOOL_ARGUMENTS),
        ContentKey.of("tool_input", ContentClass.TOOL_ARGUMENTS),
        ContentKey.of("full_command", ContentClass.TOOL_ARGUMENTS),  # claude_code.tool span
        ContentKey.of("bash_command", ContentClass.TOOL_ARGUMENTS),  # tool.output span event
        ContentKey.of("tool_output", ContentClass.TOOL_OUTPUT),
        # the tool.output span event (OTEL_LOG_TOOL_CONTENT)
        ContentKey.of("output", ContentClass.TOOL_OUTPUT),
        ContentKey.of(
            "body", *ALL_CONTENT, events=("api_request_body", "claude_code.api_request_body")
        ),
        ContentKey.of(
            "body",
            ContentClass.RESPONSES,
            ContentClass.TOOL_ARGUMENTS,
            events=("api_response_body", "claude_code.api_response_body"),
        ),
    )
    metric_rules: ClassVar[Mapping[str, MetricUsageRule]] = {
        "claude_code.token.usage": MetricUsageRule(
            "usage",
            by_type={
                "input": "input",
                "output": "output",
                "cacheRead": "cache_read",
                "cacheCreation": "cache_write",
            },
        ),
        "claude_code.cost.usage": MetricUsageRule("usage", name="cost"),
        "claude_code.lines_of_code.count": MetricUsageRule(
            "code_change", by_type={"added": "lines_added", "removed": "lines_removed"}
        ),
        "claude_code.commit.count": MetricUsageRule("code_change", name="commits"),
        "claude_code.pull_request.count": MetricUsageRule("code_change", name="pull_requests"),
    }

    def record_key(self, record: LogRecord, attrs: Attrs) -> str:
        """Per-record discriminator that survives redelivery and differs across processes.

        ``event.sequence`` restarts at 1 when ``--resume`` continues a session in a new process,
        so it is never used alone: the record's own timestamp (and ``event.timestamp``) and the
        turn's ``prompt.id`` tell two processes apart, the sequence two records of one
        millisecond.
        """
        return "|".join(
            (
                record_time_key(record, attrs),
                to_str(attrs.get("event.timestamp")) or "",
                to_str(attrs.get("prompt.id")) or "",
                to_str(attrs.get("event.sequence")) or "",
            )
        )

    def span_event(
        self, resource: Attrs, attrs: Attrs, span: Span, batch: SpanBatch
    ) -> Result | None:
        """Traces (beta) get semconv keys and the event id of their log twin, not an event type.

        The same call is already an ``api_request`` log record; giving the span an event type
        too would count the call twice in any table that reads both signals.
        """
        kind = to_str(attrs.get("span.type")) or span.name.removeprefix("claude_code.")
        session = to_str(attrs.get("session.id"))
        if kind == "llm_request":
            event: dict[str, Scalar] = {}
            apply_map(attrs, API_REQUEST, event)
            ensure_token_classes(event)
            event[am.EVENT] = EventType.API_CALL.value
            event[am.SESSION_ID] = session or ""
            event[am.PROVIDER] = provider_of(to_str(attrs.get("model")))
            out = genai_semconv.semconv_attributes(event, self.provider, "chat")
            request = event.get(am.REQUEST_ID)
            if request:
                out[am.EVENT_ID] = event_id(
                    self.agent_name, session, EventType.API_CALL.value, request
                )
            for key in (am.MODEL, am.PROVIDER, am.REQUEST_ID, am.ATTEMPT):
                if key in event:
                    out[key] = event[key]
            return Result(out)
        if kind == "tool":
            event = {am.EVENT: EventType.TOOL_CALL.value}
            apply_map(attrs, TOOL_RESULT_MAP, event)
            out = genai_semconv.semconv_attributes(event, self.provider, "execute_tool")
            out.pop("gen_ai.provider.name", None)
            for key in (am.TOOL_NAME, am.TOOL_CALL_ID):
                if key in event:
                    out[key] = event[key]
            return Result(out)
        return None

    def provider_for(self, model: str | None) -> str:
        return provider_of(model)

    def usage_record(self, totals: UsageTotals) -> dict[str, Scalar]:
        values = totals.values
        out: dict[str, Scalar] = {
            am.INPUT_TOKENS: int(values.get("input", 0)),
            am.CACHE_READ_TOKENS: int(values.get("cache_read", 0)),
            am.CACHE_WRITE_TOKENS: int(values.get("cache_write", 0)),
            am.OUTPUT_TOKENS: int(values.get("output", 0)),
        }
        if "cost" in values:
            out[am.COST_USD_REPORTED] = values["cost"]
        if out[am.CACHE_WRITE_TOKENS]:
            # The token metric does not split cache writes 5m/1h: a price from it would bill
            # every 1h write at the 5m rate. The cost processor uses the agent's own cost then.
            out[am.CACHE_WRITE_SPLIT_UNKNOWN] = True
        return out


MAIN_QUERY_SOURCES = frozenset({"sdk", "repl_main_thread", "main", "print"})
"""query_source values of the agent's main loop (``-p`` says ``sdk``); ``agent:...`` is a
subagent; anything else (compaction, titles, suggestions) is an auxiliary call."""


def caller_facts(attrs: Attrs, out: dict[str, Scalar]) -> None:
    """Which loop made a model call: main, a subagent (Task/Agent tool) or an auxiliary one."""
    query_source = to_str(attrs.get("query_source"))
    agent_id = to_str(attrs.get("agent_id"))
    if query_source:
        out[am.QUERY_SOURCE] = query_source
    if agent_id:
        out[am.SUBAGENT_ID] = agent_id
    agent_name = to_str(attrs.get("agent.name"))
    if agent_name:
        out[am.SUBAGENT_NAME] = agent_name
    if agent_id or (query_source or "").startswith("agent:"):
        out[am.CALLER] = "subagent"
    elif query_source is None or query_source in MAIN_QUERY_SOURCES:
        out[am.CALLER] = "main"
    else:
        out[am.CALLER] = "auxiliary"


def provider_of(model: str | None) -> str:
    """Claude Code on Bedrock or Vertex names models differently; price books need to know."""
    if model:
        if model.startswith(("us.anthropic.", "eu.anthropic.", "apac.anthropic.", "anthropic.")):
            return "aws.bedrock"
        if "@" in model:
            return "gcp.vertex_ai"
    return "anthropic"


VENDOR = register(ClaudeCode())
