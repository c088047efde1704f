"""Copilot CLI from captures of the real CLI (tests/data/captured/copilot), and Copilot Chat
(VS Code) plus older CLI shapes from hand-made fixtures of the documentation
(tests/data/copilot/README.md says where each comes from).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from collector import agent_model as am
from collector import otlp_json
from collector.component import Signal, Telemetry
from processors.vendors import TOOL_PHASE
from processors.vendors.copilot import price_book_model
from tests.support.normalize_support import (
    CAPTURED,
    COPILOT_DATA,
    Hooks,
    events,
    load_capture,
    processor,
    run,
    token_row,
)

COPILOT_RUNS = sorted((CAPTURED / "copilot").glob("*.json"))

# tests/data/captured/copilot/README.md: (input, cache read, cache write, output, reasoning)
# in agentwatch's convention; on the chat span gen_ai.usage.input_tokens included both caches.
EXPECTED_CALLS = [
    (4111, 6007, 1009, 89, 19),
    (4217, 7013, 0, 97, 0),
    (4327, 8017, 503, 103, 0),
    (4433, 9029, 0, 113, 23),
]
EXPECTED_NANO_AIU = [123_456_789, 98_765_431, 101_010_101, 87_654_329]
ANALYTICS_ID = "e2e-analytics-7f3a"  # tests/e2e/mock_models.py CopilotApiMock


@pytest.fixture(params=COPILOT_RUNS, ids=lambda p: p.stem)
def copilot_run(request: pytest.FixtureRequest) -> Path:
    return request.param


def normalise_run(path: Path, service_name: str | None = None) -> list[dict]:
    proc = processor()
    found: list[dict] = []
    for signal, data in load_capture(path):
        if service_name is not None:
            for resource in _resources(data):
                for kv in resource.attributes:
                    if kv.key == "service.name":
                        kv.value.string_value = service_name
        found += events(run(proc, signal, data))
    return found


def _resources(data: object) -> list:
    for name in ("resource_spans", "resource_metrics", "resource_logs"):
        if hasattr(data, name):
            return [r.resource for r in getattr(data, name)]
    return []


def test_there_are_captured_copilot_runs() -> None:
    assert len(COPILOT_RUNS) >= 3


def test_cli_each_chat_span_one_call_with_exact_tokens(copilot_run: Path) -> None:
    found = normalise_run(copilot_run)
    calls = [e for e in found if e[am.EVENT] == "api_call"]
    # four chat spans; the invoke_agent span repeats their totals and is no call
    assert [token_row(c) for c in calls] == EXPECTED_CALLS
    assert len({c[am.EVENT_ID] for c in calls}) == 4
    # priced as Anthropic's claude-sonnet-4-5, the CLI's name stays on the span
    assert {(c[am.PROVIDER], c[am.MODEL]) for c in calls} == {("anthropic", "claude-sonnet-4-5")}
    assert {c["gen_ai.request.model"] for c in calls} == {"claude-sonnet-4.5"}
    # the catalog's multiplier (1) per call, and the AI credits the model API reported
    assert [c[am.PREMIUM_REQUESTS] for c in calls] == [1.0] * 4
    assert [c[am.NANO_AIU] for c in calls] == EXPECTED_NANO_AIU
    assert all(am.COST_USD_REPORTED not in c for c in calls)
    assert all(c[am.TTFT_MS] >= 0 for c in calls)
    (error,) = [e for e in found if e[am.EVENT] == "api_error"]  # the 429, retried
    assert (error[am.STATUS], error[am.MODEL]) == ("ModelCallError", "claude-sonnet-4-5")


def test_cli_tools_exit_code_and_refusal(copilot_run: Path) -> None:
    found = normalise_run(copilot_run)
    tools = [e for e in found if e[am.EVENT] == "tool_call"]
    assert [(t[am.TOOL_NAME], t[am.SUCCESS], t.get(am.DECISION)) for t in tools] == [
        ("bash", True, None),
        ("bash", False, None),  # exit code 2: the span's status is unset
        ("bash", False, "reject"),  # --deny-tool: error.type=denied
    ]
    assert len({t[am.TOOL_CALL_ID] for t in tools}) == 3
    commands = [t.get(am.COMMAND) for t in tools]
    if "nocontent" in copilot_run.name:  # no arguments without content capture
        assert commands == [None] * 3
    else:
        assert commands == [
            "echo hello",
            "ls /nonexistent-agentwatch-e2e",
            "touch /tmp/agentwatch-e2e-refused-write.txt",
        ]


def test_cli_session_user_and_prompt(copilot_run: Path) -> None:
    found = normalise_run(copilot_run)
    (prompt,) = [e for e in found if e[am.EVENT] == "user_prompt"]
    assert {e[am.SESSION_ID] for e in found} == {prompt[am.SESSION_ID]}
    # only invoke_agent names the signed-in user; every span of its trace borrows it
    assert {e.get(am.USER_ID) for e in found} == {ANALYTICS_ID}
    assert {(e[am.AGENT], e[am.AGENT_VERSION], e[am.TEAM]) for e in found} == {
        ("copilot_cli", "1.0.102", "platform")
    }


def test_cli_recognised_by_its_scope_under_any_service_name() -> None:
    found = normalise_run(COPILOT_RUNS[0], service_name="acme-assistant")
    assert len([e for e in found if e[am.EVENT] == "api_call"]) == 4
    assert {e[am.AGENT] for e in found} == {"copilot_cli"}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-sonnet-4.5", ("anthropic", "claude-sonnet-4-5")),
        ("claude-opus-4.1", ("anthropic", "claude-opus-4-1")),
        ("claude-haiku-4.5", ("anthropic", "claude-haiku-4-5")),
        ("gpt-5.4", ("openai", "gpt-5.4")),
        ("gpt-4.1", ("openai", "gpt-4.1")),
        ("gemini-2.5-pro", ("gcp.gen_ai", "gemini-2.5-pro")),
        ("grok-code-fast-1", ("github_copilot", "grok-code-fast-1")),
    ],
)
def test_copilot_model_names_map_to_the_price_book(model: str, expected: tuple) -> None:
    assert price_book_model(model) == expected


def load(name: str, signal: Signal) -> Telemetry:
    return otlp_json.decode(signal, (COPILOT_DATA / name).read_text())


def test_copilot_chat_calls_from_chat_spans_only() -> None:
    out = run(processor(), Signal.TRACES, load("copilot-chat.traces.json", Signal.TRACES))
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
    out = run(processor(), Signal.TRACES, load("copilot-chat.traces.json", Signal.TRACES))
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
    out = run(processor(), Signal.LOGS, load("copilot-chat.logs.json", Signal.LOGS))
    found = events(out)
    assert [e[am.EVENT] for e in found] == ["session_start"]
    assert found[0][am.MODEL] == "gpt-4o"


def test_copilot_chat_code_change_counters() -> None:
    proc = processor()
    hooks = Hooks(proc)
    run(proc, Signal.METRICS, load("copilot-chat.metrics.json", Signal.METRICS))
    (change,) = [r for logs in hooks.logs for r in events(logs, "code_change")]
    assert (change[am.LINES_ADDED], change[am.LINES_REMOVED], change[am.PULL_REQUESTS]) == (
        50,
        7,
        1,
    )
    assert change[am.AGENT] == "copilot_chat"


def test_copilot_cli_tokens_subtract_both_cache_spellings() -> None:
    out = run(processor(), Signal.TRACES, load("copilot-cli.traces.json", Signal.TRACES))
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
    out = run(processor(), Signal.TRACES, load("copilot-cli.traces.json", Signal.TRACES))
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
    run(proc, Signal.TRACES, load("copilot-cli.traces.json", Signal.TRACES))
    assert hooks.metrics == []
