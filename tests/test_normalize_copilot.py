"""Copilot Chat (VS Code) and Copilot CLI, from hand-made fixtures of the documented shapes.

No offline run of Copilot is possible here; tests/data/copilot/README.md says where each
shape comes from.
"""

from __future__ import annotations

import pytest

from collector import agent_model as am
from collector import otlp_json
from collector.component import Signal, Telemetry
from processors.vendors import TOOL_PHASE
from tests.test_normalize_support import COPILOT_DATA, Hooks, events, processor, token_row


def load(name: str, signal: Signal) -> Telemetry:
    return otlp_json.decode(signal, (COPILOT_DATA / name).read_text())


def test_copilot_chat_calls_from_chat_spans_only() -> None:
    out = processor().process(Signal.TRACES, load("copilot-chat.traces.json", Signal.TRACES))
    calls = events(out, "api_call")
    # two chat spans of the agent and one of its Explore subagent; the invoke_agent totals
    # (4100 in / 700 out) repeat them and are not a call
    assert [token_row(c) for c in calls] == [
        (1500, 0, 0, 250, 0),
        (1800, 0, 0, 300, 0),  # sent as strings
        (800, 0, 0, 150, 0),
    ]
    assert [c[am.REQUEST_ID] for c in calls] == [
        "chatcmpl-abc001",
        "chatcmpl-abc002",
        "chatcmpl-abc003",
    ]
    assert calls[0][am.MODEL] == "gpt-4o-2024-08-06"
    assert calls[0][am.TTFT_MS] == 450.0
    assert calls[0][am.DURATION_MS] == 3000.0
    assert {c[am.AGENT] for c in calls} == {"copilot_chat"}
    # priced as the model's own vendor; the agent's value is kept
    assert {c[am.PROVIDER] for c in calls} == {"openai"}
    assert {c["gen_ai.provider.name"] for c in calls} == {"github"}


def test_copilot_chat_tools_prompts_and_session() -> None:
    out = processor().process(Signal.TRACES, load("copilot-chat.traces.json", Signal.TRACES))
    tools = events(out, "tool_call")
    assert [(t[am.TOOL_NAME], t[am.SUCCESS]) for t in tools] == [
        ("readFile", True),
        ("runCommand", False),
        ("runSubagent", True),
        ("searchFiles", True),
    ]
    assert all(t[TOOL_PHASE] == "result" for t in tools)
    assert tools[0][am.FILE_PATH] == "/src/index.ts"
    assert tools[0][am.TOOL_OUTPUT_SIZE] == len(b"export const answer = 42;\n")
    assert tools[1][am.COMMAND] == "npm test"
    assert tools[1][am.ERROR_MESSAGE] == "CommandFailedError"
    assert tools[3]["gen_ai.tool.type"] == "extension"
    # tool spans carry no conversation id: they borrow their trace's
    everything = events(out)
    assert {e[am.SESSION_ID] for e in everything} == {"a1b2c3d4-0000-4000-8000-000000000001"}
    assert {e[am.PROMPT_ID] for e in everything} == {"c0de0000000000000000000000000001"}
    # one user message: the root invoke_agent; the subagent's is not a prompt
    assert len(events(out, "user_prompt")) == 1
    assert {(e[am.TEAM], e[am.COST_CENTER]) for e in everything} == {("web", "cc-7")}
    assert len({e[am.EVENT_ID] for e in everything}) == len(everything)


def test_copilot_chat_log_events_repeat_spans_so_only_session_start_counts() -> None:
    out = processor().process(Signal.LOGS, load("copilot-chat.logs.json", Signal.LOGS))
    found = events(out)
    assert [e[am.EVENT] for e in found] == ["session_start"]
    assert found[0][am.MODEL] == "gpt-4o"


def test_copilot_chat_code_change_counters() -> None:
    proc = processor()
    hooks = Hooks(proc)
    proc.process(Signal.METRICS, load("copilot-chat.metrics.json", Signal.METRICS))
    (change,) = [r for logs in hooks.logs for r in events(logs, "code_change")]
    assert (change[am.LINES_ADDED], change[am.LINES_REMOVED], change[am.PULL_REQUESTS]) == (
        50,
        7,
        1,
    )
    assert change[am.AGENT] == "copilot_chat"


def test_copilot_cli_tokens_subtract_both_cache_spellings() -> None:
    out = processor().process(Signal.TRACES, load("copilot-cli.traces.json", Signal.TRACES))
    calls = events(out, "api_call")
    assert [token_row(c) for c in calls] == [
        (2000, 9000, 1000, 400, 0),  # 12000 - 9000 read - 1000 cache_creation
        (3000, 10000, 500, 350, 120),  # 13500 - 10000 read - 500 cache_write
        (2500, 9000, 0, 350, 0),  # the task subagent's haiku call
    ]
    # github.copilot.cost is a premium-request multiplier, never a dollar figure
    assert [c[am.PREMIUM_REQUESTS] for c in calls] == [0.0234, 0.0211, 0.0044]
    assert all(am.COST_USD_REPORTED not in c for c in calls)
    assert calls[0][am.TTFT_MS] == pytest.approx(800.0)
    assert {c[am.AGENT] for c in calls} == {"copilot_cli"}
    # semconv input on the span was already inclusive; it is not rewritten
    assert [c["gen_ai.usage.input_tokens"] for c in calls] == [12000, 13500, 11500]


def test_copilot_cli_error_tools_and_prompt() -> None:
    out = processor().process(Signal.TRACES, load("copilot-cli.traces.json", Signal.TRACES))
    (error,) = events(out, "api_error")
    assert (error[am.STATUS], error[am.ERROR_MESSAGE]) == (
        "RateLimitError",
        "429 Too Many Requests",
    )
    tools = events(out, "tool_call")
    assert [(t[am.TOOL_NAME], t.get(am.COMMAND)) for t in tools] == [
        ("bash", "pytest -q"),
        ("task", None),
    ]
    (prompt,) = events(out, "user_prompt")
    assert prompt[am.SESSION_ID] == "b2c3d4e5-0000-4000-8000-000000000002"
    assert {e[am.USER_EMAIL] for e in events(out)} == {"dev@example.test"}


def test_copilot_emits_its_own_client_metrics_so_none_are_derived() -> None:
    proc = processor()
    hooks = Hooks(proc)
    proc.process(Signal.TRACES, load("copilot-cli.traces.json", Signal.TRACES))
    assert hooks.metrics == []
