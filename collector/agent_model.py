"""The unified agent event model, carried as attributes on OTLP records.

A vendor normaliser does not replace what an agent sent: it adds the ``agentwatch.*`` keys below
(and the GenAI semantic-convention ``gen_ai.*`` keys) to the same log record or span. The raw
tables therefore keep the vendor's own numbers next to the normalised ones, re-export sends one
enriched record, and every later processor (cost, redaction, detections) and exporter (agent
tables, Prometheus) reads only these keys, never a vendor's dialect.

A record is an agent event when it carries ``agentwatch.event``. Token counts follow one
convention for every agent:

* ``input_tokens``: input tokens neither read from nor written to cache;
* ``cache_read_tokens`` / ``cache_write_tokens``: the cached parts, separately
  (``cache_write_5m_tokens`` + ``cache_write_1h_tokens`` = ``cache_write_tokens`` where known);
* ``output_tokens``: every billed output token, reasoning/thoughts included;
* ``reasoning_tokens``: the reasoning part of ``output_tokens``.

So ``input + cache_read + cache_write + output`` is every token billed.
"""

from __future__ import annotations

import enum


class EventType(enum.StrEnum):
    API_CALL = "api_call"
    """One model API call that completed (tokens, latency, cost)."""
    API_USAGE = "api_usage"
    """Tokens and cost of one session, model and export interval, derived from an agent's DELTA
    metrics when that session sent no per-call log events (metrics-only set-ups)."""
    API_ERROR = "api_error"
    """A model API call that failed (status, message, attempt)."""
    TOOL_CALL = "tool_call"
    """A permission decision about a tool call or its result; the ``tool_calls`` view merges
    the events of one invocation (same ``tool_call_id``) into one row."""
    USER_PROMPT = "user_prompt"
    """A user turn (length; text only when redaction allows prompts)."""
    SESSION_START = "session_start"
    """Config facts at session start: approval policy, sandbox, MCP servers, model routing."""
    CODE_CHANGE = "code_change"
    """Lines added/removed, commits, pull requests."""
    DETECTION = "detection"
    """A security rule matched (written by the detections processor)."""


class Agent(enum.StrEnum):
    CLAUDE_CODE = "claude_code"
    CODEX = "codex"
    GEMINI_CLI = "gemini_cli"
    COPILOT_CHAT = "copilot_chat"
    COPILOT_CLI = "copilot_cli"


P = "agentwatch."

# --- keys on every agent event ------------------------------------------------------------
EVENT = P + "event"  # EventType value
EVENT_ID = P + "event_id"  # stable idempotency key of this event (hex), see event_id()
AGENT = P + "agent"  # Agent value
AGENT_VERSION = P + "agent_version"
SESSION_ID = P + "session_id"
PROMPT_ID = P + "prompt_id"  # one user turn
USER_ID = P + "user_id"  # vendor user id / installation id: groups users without e-mail
USER_EMAIL = P + "user_email"
USER_ACCOUNT = P + "user_account"
USER_DISPLAY_NAME = P + "user_display_name"  # from the directory
ORGANIZATION = P + "organization"
TEAM = P + "team"  # from the directory or OTEL_RESOURCE_ATTRIBUTES team=
COST_CENTER = P + "cost_center"
HOST = P + "host"
TERMINAL = P + "terminal"

# --- api_call / api_error -------------------------------------------------------------------
REQUEST_ID = P + "request_id"
PROVIDER = P + "provider"  # anthropic | openai | gcp.gen_ai | gcp.vertex_ai | github_copilot ...
MODEL = P + "model"
INPUT_TOKENS = P + "input_tokens"  # int
CACHE_READ_TOKENS = P + "cache_read_tokens"  # int
CACHE_WRITE_TOKENS = P + "cache_write_tokens"  # int
CACHE_WRITE_5M_TOKENS = P + "cache_write_5m_tokens"  # int
CACHE_WRITE_1H_TOKENS = P + "cache_write_1h_tokens"  # int
OUTPUT_TOKENS = P + "output_tokens"  # int, reasoning included
REASONING_TOKENS = P + "reasoning_tokens"  # int
DURATION_MS = P + "duration_ms"  # double
TTFT_MS = P + "ttft_ms"  # double
STATUS = P + "status"  # "ok" or an HTTP status / error code as string
ATTEMPT = P + "attempt"  # int, 1-based
ERROR_MESSAGE = P + "error_message"
COST_USD_REPORTED = P + "cost_usd_reported"  # double, the agent's own figure
COST_USD_COMPUTED = P + "cost_usd_computed"  # double, from the price book (cost processor)
COST_USD = P + "cost_usd"  # double, the one to bill (config chooses reported or computed)
COST_SOURCE = P + "cost_source"  # computed | reported | reported_cache_split_unknown
CACHE_WRITE_SPLIT_UNKNOWN = P + "cache_write_split_unknown"  # bool: 5m/1h split of writes unknown
CALLER = P + "caller"  # main | subagent | auxiliary: which loop of the agent made the call
QUERY_SOURCE = P + "query_source"  # the agent's own name for that loop (Claude query_source)
SUBAGENT_ID = P + "subagent_id"  # the subagent that made the call or ran the tool
SUBAGENT_NAME = P + "subagent_name"
PREMIUM_REQUESTS = P + "premium_requests"  # double, GitHub Copilot's premium-request count
NANO_AIU = P + "nano_aiu"  # int, GitHub Copilot's AI credits in billionths (1e9 = 1 credit)
DERIVED_FROM = P + "derived_from"  # "metrics" on records the normaliser made from metrics

# --- tool_call ------------------------------------------------------------------------------
TOOL_NAME = P + "tool_name"
TOOL_CALL_ID = P + "tool_call_id"  # one tool call; decision and result records share it
TOOL_PHASE = P + "tool_phase"  # decision | result
TOOL_SOURCE = P + "tool_source"  # builtin | mcp
MCP_SERVER = P + "mcp_server"  # the MCP server of an MCP tool (tool_name is then its real name)
DECISION = P + "decision"  # accept | reject | ...
DECISION_SOURCE = P + "decision_source"  # config | user | hook | ...
PERMISSION_MODE = P + "permission_mode"
SUCCESS = P + "success"  # bool
TOOL_ARGUMENTS = P + "tool_arguments"  # JSON text; subject to redaction
TOOL_OUTPUT = P + "tool_output"  # subject to redaction
TOOL_ARGUMENTS_SIZE = P + "tool_arguments_size"  # int, bytes, kept after redaction
TOOL_OUTPUT_SIZE = P + "tool_output_size"  # int, bytes, kept after redaction
COMMAND = P + "command"  # shell command of a shell tool, when there is one; subject to redaction
FILE_PATH = P + "file_path"  # file a file tool touched

# --- user_prompt ----------------------------------------------------------------------------
PROMPT_LENGTH = P + "prompt_length"  # int
PROMPT_TEXT = P + "prompt_text"  # subject to redaction

# --- session_start --------------------------------------------------------------------------
APPROVAL_POLICY = P + "approval_policy"
SANDBOX = P + "sandbox"
MCP_SERVERS = P + "mcp_servers"  # comma-separated

# --- code_change ----------------------------------------------------------------------------
LINES_ADDED = P + "lines_added"
LINES_REMOVED = P + "lines_removed"
COMMITS = P + "commits"
PULL_REQUESTS = P + "pull_requests"

# --- detection ------------------------------------------------------------------------------
RULE_ID = P + "rule_id"
SEVERITY = P + "severity"
EVIDENCE = P + "evidence"
SOURCE_EVENT_ID = P + "source_event_id"  # event_id of the record that matched

TOKEN_KEYS = (INPUT_TOKENS, CACHE_READ_TOKENS, CACHE_WRITE_TOKENS, OUTPUT_TOKENS)
"""The four disjoint billed token classes; their sum is every token billed."""
