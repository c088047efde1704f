"""The real GitHub Copilot CLI through agentwatch (issue 15).

One agentwatch process (configs/default.yaml on free ports, embedded ClickHouse) and one real
Prometheus serve the module. The pinned CLI runs the same scripted session five times (a 429
retried, a shell call that works, one that exits 2, a ``touch`` refused by
``--deny-tool='shell(touch)'``, a final answer), each against another model API and sign-in:

* bring-your-own-provider, offline, over the three wire APIs the CLI speaks: OpenAI chat
  completions (``stream_options.include_usage``), the Responses API, Anthropic Messages;
* signed in to GitHub (a mock of ``/copilot_internal/user`` and the Copilot API's model
  catalog, whose ``billing.multiplier`` is the premium-request cost), once with AI credits
  (``copilot_usage.total_nano_aiu``) and once without,

over OTLP/HTTP protobuf and JSON, one run under a custom ``OTEL_SERVICE_NAME``. Everything is
asserted from the public views and Prometheus against what the mocks answered and the rates
written here, never against agentwatch's own output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from processors import pricing
from tests.e2e.agent_clis import (
    COPILOT,
    COPILOT_DENIED_COMMAND,
    COPILOT_SHELL,
    ECHO_COMMAND,
    FAILING_COMMAND,
    FINAL_ANSWER,
    PROMPT,
    REFUSED_FILE,
    CliRun,
    Protocol,
    Telemetry,
    copilot_scenario,
    run_cli,
)
from tests.e2e.mock_models import (
    AnthropicMock,
    CatalogModel,
    CopilotApiMock,
    MockModelServer,
    OpenAIChatMock,
    OpenAIResponsesMock,
    RecordedCall,
    Scenario,
)
from tests.e2e.stack import AgentwatchStack, Timings, module_stack, wait_for
from tests.e2e.test_agents_through_agentwatch import clickhouse_leaks
from tests.support.prometheus_server import PrometheusServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PROMETHEUS_JOB = "agentwatch-e2e-copilot"
TIMINGS = Timings()
D = Decimal


@dataclass(frozen=True)
class Case:
    name: str
    protocol: Protocol
    mock: Callable[[Scenario], MockModelServer]
    provider: str
    """Whose list price the calls have: the model's own vendor."""
    model: str
    """The price book's name of the model."""
    multiplier: float | None = None
    """Premium requests per call (signed in); None offline, where the CLI reports 0."""
    nano_aiu: bool = False
    service_name: str | None = None
    reports_reasoning: bool = True
    """False for Anthropic's wire, which has no reasoning count of its own."""

    @property
    def team(self) -> str:
        return f"e2e-copilot-{self.name}"


CASES = (
    Case("byok-chat", "http/protobuf", lambda s: OpenAIChatMock(s, "gpt-4.1"), "openai", "gpt-4.1"),
    Case(
        "byok-responses",
        "http/json",
        lambda s: OpenAIResponsesMock(s, "gpt-5.4"),
        "openai",
        "gpt-5.4",
        service_name="acme-copilot",
    ),
    Case(
        "byok-anthropic",
        "http/protobuf",
        lambda s: AnthropicMock(s, "claude-sonnet-4.5"),
        "anthropic",
        "claude-sonnet-4-5",
        reports_reasoning=False,
    ),
    Case(
        "github-ai-credits",
        "http/json",
        lambda s: CopilotApiMock(s, CatalogModel("claude-sonnet-4.5", "Anthropic", 1.0)),
        "anthropic",
        "claude-sonnet-4-5",
        multiplier=1.0,
        nano_aiu=True,
    ),
    Case(
        "github-premium",
        "http/protobuf",
        lambda s: CopilotApiMock(s, CatalogModel("claude-haiku-4.5", "Anthropic", 0.33)),
        "anthropic",
        "claude-haiku-4-5",
        multiplier=0.33,
    ),
)
CASE_IDS = [c.name for c in CASES]

# List prices per million tokens, written here by hand from processors/pricing/pricebook.yaml
# (checked by test_hand_rates_are_the_shipped_price_book). Copilot reports no 1-hour cache write,
# so a write is priced at the 5-minute rate; OpenAI has no write price: written tokens bill as
# input.
RATES_PER_MTOK: dict[tuple[str, str], dict[str, Decimal]] = {
    ("openai", "gpt-4.1"): {
        "input": D(2),
        "cache_read": D("0.5"),
        "cache_write": D(2),
        "output": D(8),
    },
    ("openai", "gpt-5.4"): {
        "input": D("2.5"),
        "cache_read": D("0.25"),
        "cache_write": D("2.5"),
        "output": D(15),
    },
    ("anthropic", "claude-sonnet-4-5"): {
        "input": D(3),
        "cache_read": D("0.3"),
        "cache_write": D("3.75"),
        "output": D(15),
    },
    ("anthropic", "claude-haiku-4-5"): {
        "input": D(1),
        "cache_read": D("0.1"),
        "cache_write": D("1.25"),
        "output": D(5),
    },
}


@dataclass
class Run:
    case: Case
    started: float = 0.0
    ended: float = 0.0
    cli: CliRun | None = None
    calls: list[RecordedCall] = field(default_factory=list)
    tool_outputs: list[dict[str, Any]] = field(default_factory=list)
    """What the CLI sent back to the model for each tool call."""
    failure: str | None = None
    _session: dict[str, Any] | None = None

    def require(self) -> CliRun:
        if self.failure is not None:
            pytest.fail(f"{self.case.name} did not run: {self.failure}")
        assert self.cli is not None
        return self.cli

    def answered(self) -> list[RecordedCall]:
        """Model calls answered 200 with tokens: each must be one api_calls row."""
        return [c for c in self.calls if c.status == 200 and c.usage is not None]

    def tool_call_ids(self) -> dict[str, str]:
        steps = [c for c in self.calls if c.kind == "tool_call"]
        return dict(
            zip(("echo", "failing", "refused"), (str(c.tool_call_id) for c in steps), strict=True)
        )


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    prometheus_server: PrometheusServer,
    request: pytest.FixtureRequest,
) -> Iterator[AgentwatchStack]:
    workdir = tmp_path_factory.mktemp("agentwatch-e2e-copilot")
    with module_stack(workdir, prometheus_server, PROMETHEUS_JOB, TIMINGS, request) as stack:
        yield stack


@pytest.fixture(scope="module")
def runs(stack: AgentwatchStack) -> dict[str, Run]:
    done: dict[str, Run] = {}
    for case in CASES:
        run = done[case.name] = Run(case)
        try:
            _run_one(stack, run)
        except Exception as exc:  # reported by every test of this case, the others go on
            run.failure = f"{type(exc).__name__}: {exc}"
    return done


def _run_one(stack: AgentwatchStack, run: Run) -> None:
    case = run.case
    telemetry = Telemetry(
        stack.endpoint(case.protocol),
        case.protocol,
        resource_attributes={"team": case.team, "cost_center": "cc-e2e"},
        service_name=case.service_name,
    )
    scenario = copilot_scenario(nano_aiu=case.nano_aiu)
    tap = stack.tap
    first_tapped = len(tap.requests) if tap else 0
    with case.mock(scenario) as mock, TIMINGS.part(f"{case.name}: CLI session"):
        run.started = time.time()
        run.cli = run_cli("copilot", mock, telemetry, timeout_s=180)
        run.ended = time.time()
        run.calls = list(mock.calls)
        run.tool_outputs = mock.tool_outputs()
    if run.cli.exit_code != 0:
        raise RuntimeError(f"exit {run.cli.exit_code}: {run.cli.stderr[-3000:]}")
    expected = len(run.answered())
    exports = [(r.signal, r.status) for r in tap.requests[first_tapped:]] if tap else []
    with TIMINGS.part(f"{case.name}: CLI exit to stored"):
        wait_for(
            lambda: (
                stack.drained()
                and stack.scalar(
                    "SELECT count() FROM api_calls WHERE team = {t:String}", t=case.team
                )
                >= expected
            ),
            120,
            f"{expected} api_calls of team {case.team} in ClickHouse (exports {exports})",
        )


def _run(runs: dict[str, Run], case_id: str) -> Run:
    run = runs[case_id]
    run.require()
    return run


def session_of(stack: AgentwatchStack, run: Run) -> dict[str, Any]:
    """The sessions row of this run, found by time (runs never overlap), not by team."""
    if run._session is None:
        rows = stack.dicts(
            "SELECT * FROM sessions WHERE first_seen >= fromUnixTimestamp64Milli({a:Int64}) "
            "AND first_seen <= fromUnixTimestamp64Milli({b:Int64})",
            a=int(run.started * 1000),
            b=int(run.ended * 1000),
        )
        assert len(rows) == 1, rows
        run._session = rows[0]
    return run._session


def _expected_tokens(run: Run, call: RecordedCall) -> tuple[int, int, int, int, int]:
    """The mock's usage in agentwatch's convention. Anthropic's wire has no reasoning count."""
    u = call.usage
    assert u is not None
    reasoning = u.reasoning_tokens if run.case.reports_reasoning else 0
    return (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens, reasoning)


def _cost(case: Case, tokens: tuple[int, int, int, int, int]) -> Decimal:
    r = RATES_PER_MTOK[(case.provider, case.model)]
    inp, read, write, out, _ = tokens
    usd = inp * r["input"] + read * r["cache_read"] + write * r["cache_write"] + out * r["output"]
    return usd / 1_000_000


# --- one session, its calls and tools ---------------------------------------------------------


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_one_session_with_agent_version_team_and_user(
    stack: AgentwatchStack, runs: dict[str, Run], case_id: str
) -> None:
    run = _run(runs, case_id)
    session = session_of(stack, run)
    assert session["agent"] == "copilot_cli"  # also under a custom OTEL_SERVICE_NAME
    assert session["agent_version"] == COPILOT.version
    assert session["team"] == run.case.team
    assert session["api_calls"] == len(run.answered()) == 4
    assert (session["user_prompts"], session["api_errors"]) == (1, 1)
    # Signed in, the CLI names the account by its analytics id; offline nobody is signed in.
    signed_in = run.case.multiplier is not None
    assert session["user_id"] == (CopilotApiMock.ANALYTICS_ID if signed_in else "")
    # The session id is the CLI's own (its --resume id).
    cli = run.require()
    assert f"--resume={session['session_id']}" in cli.stdout + cli.stderr


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_api_calls_carry_exactly_the_mock_tokens_once(
    stack: AgentwatchStack, runs: dict[str, Run], case_id: str
) -> None:
    run = _run(runs, case_id)
    session = session_of(stack, run)
    rows = stack.dicts(
        "SELECT request_id, provider, model, input_tokens, cache_read_tokens, "
        "cache_write_tokens, output_tokens, reasoning_tokens, status, event_id "
        "FROM api_calls WHERE session_id = {s:String}",
        s=session["session_id"],
    )
    stored = {
        r["request_id"]: (
            r["input_tokens"],
            r["cache_read_tokens"],
            r["cache_write_tokens"],
            r["output_tokens"],
            r["reasoning_tokens"],
        )
        for r in rows
    }
    # One row per call, matched call by call through the response id the mock sent; the
    # invoke_agent span's totals are not a call.
    expected = {str(c.response_id): _expected_tokens(run, c) for c in run.answered()}
    assert len(rows) == len(expected) == 4
    assert stored == expected
    assert {(r["provider"], r["model"], r["status"]) for r in rows} == {
        (run.case.provider, run.case.model, "ok")
    }
    assert len({r["event_id"] for r in rows}) == len(rows)
    for i, name in enumerate(("input", "cache_read", "cache_write", "output", "reasoning")):
        assert session[f"{name}_tokens"] == sum(t[i] for t in expected.values())
    # The CLI's gen_ai.client.* token histograms repeat the spans: they are not counted again.
    assert (session["tokens_from"], session["usage_records"]) == ("api_calls", 0)


EXPECTED_TOOLS = {
    # step: (tool, (decision, source) or None, success)
    "echo": (COPILOT_SHELL, None, True),
    # The shell exited 2: the span is not an error, its process.exit.code says it failed.
    "failing": (COPILOT_SHELL, None, False),
    # --deny-tool='shell(touch)' refused it: an error span with error.type=denied.
    "refused": (COPILOT_SHELL, ("reject", "config"), False),
}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_tool_calls_one_row_per_invocation_with_success_and_refusal(
    stack: AgentwatchStack, runs: dict[str, Run], case_id: str
) -> None:
    run = _run(runs, case_id)
    session = session_of(stack, run)
    rows = stack.dicts(
        "SELECT tool_name, tool_call_id, decision, decision_source, success, duration_ms, "
        "arguments, arguments_size, output, output_size, command "
        "FROM tool_calls WHERE session_id = {s:String}",
        s=session["session_id"],
    )
    ids = run.tool_call_ids()
    by_id = {r["tool_call_id"]: r for r in rows}
    assert len(rows) == len(by_id) == len(ids) == 3
    actual = {
        step: (
            by_id[call_id]["tool_name"],
            (by_id[call_id]["decision"], by_id[call_id]["decision_source"])
            if by_id[call_id]["decision"]
            else None,
            by_id[call_id]["success"],
        )
        for step, call_id in ids.items()
    }
    assert actual == EXPECTED_TOOLS
    assert session["tool_calls"] == 3
    for row in rows:
        # Content is gone by default; its size stays.
        assert row["arguments"] == row["output"] == row["command"] == "", row
        assert row["arguments_size"] > 0 and row["duration_ms"] is not None, row
    assert by_id[ids["echo"]]["output_size"] > len("hello")
    assert not Path(REFUSED_FILE).exists()
    # What the CLI sent back to the model agrees: the echo output, exit 2, the refusal.
    outputs = {str(o["call_id"]): str(o["output"]) for o in run.tool_outputs}
    assert outputs[ids["echo"]].startswith("hello")
    assert "exit code 2" in outputs[ids["failing"]]
    assert "denied" in outputs[ids["refused"]]


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_the_429_is_one_api_error_and_the_retry_one_call(
    stack: AgentwatchStack, runs: dict[str, Run], case_id: str
) -> None:
    run = _run(runs, case_id)
    session = session_of(stack, run)
    scripted = [c for c in run.calls if c.step is not None]
    assert (scripted[0].status, scripted[1].status) == (429, 200)
    errors = stack.dicts(
        "SELECT status, provider, model FROM api_errors WHERE session_id = {s:String}",
        s=session["session_id"],
    )
    assert errors == [
        {"status": "ModelCallError", "provider": run.case.provider, "model": run.case.model}
    ]


# --- money: list-price equivalent, premium requests, AI credits --------------------------------


def test_hand_rates_are_the_shipped_price_book() -> None:
    """The rates written above are today's shipped prices, class by class."""
    book = pricing.load()
    for (provider, model), rates in RATES_PER_MTOK.items():
        for name, rate in rates.items():
            # 100k tokens: below every long-context tier (gpt-5.4's starts at 272k)
            usage = pricing.Usage(**{name: 100_000})
            priced = book.price(provider, model, date.today(), usage)
            assert isinstance(priced, pricing.Priced), (provider, model)
            assert priced.tier_above is None, (provider, model)
            assert Decimal(str(priced.list_usd)) * 10 == rate, (provider, model, name)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_cost_is_the_list_price_and_premium_requests_and_credits_their_own(
    stack: AgentwatchStack, runs: dict[str, Run], case_id: str
) -> None:
    run = _run(runs, case_id)
    case = run.case
    session = session_of(stack, run)
    rows = stack.dicts(
        "SELECT request_id, cost_usd, cost_usd_reported, cost_usd_computed, premium_requests, "
        "nano_aiu FROM api_calls WHERE session_id = {s:String}",
        s=session["session_id"],
    )
    by_request = {r["request_id"]: r for r in rows}
    expected_cost = Decimal(0)
    for call in run.answered():
        row = by_request[str(call.response_id)]
        cost = _cost(case, _expected_tokens(run, call))
        expected_cost += cost
        assert row["cost_usd"] == pytest.approx(float(cost), rel=1e-9), row
        assert row["cost_usd_computed"] == row["cost_usd"]
        # github.copilot.cost is never taken for dollars.
        assert row["cost_usd_reported"] is None
        assert row["premium_requests"] == pytest.approx(case.multiplier or 0.0), row
        assert row["nano_aiu"] == call.nano_aiu, row
    assert session["cost_usd"] == pytest.approx(float(expected_cost), rel=1e-9)
    assert session["cost_usd"] < 1  # four calls at list price, far from "$4 premium requests"
    calls = len(run.answered())
    assert session["premium_requests"] == pytest.approx((case.multiplier or 0.0) * calls)
    credits = sum(c.nano_aiu or 0 for c in run.answered())
    assert session["nano_aiu"] == credits
    if case.nano_aiu:
        assert credits > 0
        # The CLI's own summary line agrees (it prints AI credits to two decimals).
        cli = run.require()
        assert f"AI Credits {credits / 1e9:.2f}" in " ".join((cli.stdout + cli.stderr).split())


def test_prometheus_premium_requests_ai_credits_and_cost_equal_clickhouse(
    stack: AgentwatchStack, runs: dict[str, Run], prometheus_server: PrometheusServer
) -> None:
    for run in runs.values():
        run.require()
    job = f'job="{PROMETHEUS_JOB}"'
    checks: list[tuple[str, float]] = []
    for case in CASES:
        premium, nano, cost = stack.rows(
            "SELECT sum(ifNull(premium_requests, 0)), sum(ifNull(nano_aiu, 0)), sum(cost_usd) "
            "FROM api_calls WHERE team = {t:String}",
            t=case.team,
        )[0]
        team = f'team="{case.team}"'
        checks.append((f"sum(agentwatch_cost_usd_total{{{job},{team}}})", float(cost)))
        if premium:
            expr = f"sum(agentwatch_premium_requests_total{{{job},{team}}})"
            checks.append((expr, float(premium)))
        if nano:
            expr = f"sum(agentwatch_ai_credits_total{{{job},{team}}})"
            checks.append((expr, nano / 1e9))
    assert any("premium" in e for e, _ in checks) and any("ai_credits" in e for e, _ in checks)
    with TIMINGS.part("Prometheus catches up with ClickHouse"):
        for expr, value in checks:
            prometheus_server.wait_for(expr, value)


# --- privacy ---------------------------------------------------------------------------------


def test_no_prompt_response_output_or_command_anywhere_in_clickhouse(
    stack: AgentwatchStack, runs: dict[str, Run]
) -> None:
    """Every run had content capture on; the default config keeps none of it, raw tables
    included (the CLI copies shell commands to ``github.copilot.tool.parameters.command``)."""
    for run in runs.values():
        run.require()
    markers = [
        PROMPT,
        "then run the failing check command",
        FINAL_ANSWER[:40],
        "run echo first",
        "No such file or directory",
        ECHO_COMMAND,
        FAILING_COMMAND,
        COPILOT_DENIED_COMMAND,
    ]
    searched, leaks = clickhouse_leaks(stack, strict=markers, evidence_ok=[])
    assert searched > 100
    assert leaks == {}
    # The search is not vacuous: it finds what is stored (the team, in raw and agent tables).
    _, found = clickhouse_leaks(stack, strict=[CASES[0].team], evidence_ok=[])
    assert {"otel_traces.ResourceAttributes", "agent_api_calls.team"} <= found.keys()
    # The command key is removed from the tool spans; their other keys stay.
    spans = stack.rows(
        "SELECT countIf(mapContains(SpanAttributes, 'github.copilot.tool.parameters.command')), "
        "countIf(mapContains(SpanAttributes, 'process.exit.code')) FROM otel_traces"
    )
    assert spans == [(0, 2 * len(runs))]
