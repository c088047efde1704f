"""The Prometheus exporter: derived metrics scraped by a real Prometheus, cardinality bounds,
user label modes, idempotence, and Claude Code's dashboard-compatible names."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import random
import stat
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

import tests.support.components  # noqa: F401 - registers the inject receiver
from collector import agent_model as am
from collector import telemetry
from collector.component import (
    ConfigContext,
    Host,
    LogsData,
    MetricsData,
    count_items,
    signal_of,
)
from collector.config import ConfigError, parse
from collector.records import Logs
from collector.service import Service
from exporters.prometheus import PrometheusConfig, PrometheusExporter
from exporters.prometheus.families import OVERFLOW
from processors.vendors import vendor_for
from tests.support.components import InjectReceiver, RecordingExporter
from tests.support.otlp_factory import attr
from tests.support.polling import wait_for
from tests.support.prometheus_server import PrometheusServer, promtool_check_metrics

Attrs = dict[str, Any]


# --- building normalised agent events ------------------------------------------------------


def event(kind: am.EventType, **attrs: Any) -> Attrs:
    """A normalised agent event's attributes; ``event_id`` defaults to a fresh one."""
    ev: Attrs = {am.EVENT: kind.value, am.EVENT_ID: f"ev-{next(_ids)}"}
    ev.update(attrs)
    return ev


def _counter() -> Iterator[int]:
    n = 0
    while True:
        n += 1
        yield n


_ids = _counter()


def logs(events: list[Attrs], resource: Attrs | None = None, extra_records: int = 0) -> LogsData:
    records = [
        LogRecord(
            time_unix_nano=1_700_000_000_000_000_000,
            body=AnyValue(string_value="claude_code.api_request"),
            attributes=[attr(k, v) for k, v in ev.items()],
        )
        for ev in events
    ]
    records += [
        LogRecord(attributes=[attr("event.name", "not normalised")]) for _ in range(extra_records)
    ]
    return LogsData(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=[attr(k, v) for k, v in (resource or {}).items()]),
                scope_logs=[ScopeLogs(log_records=records)],
            )
        ]
    )


def records(events: list[Attrs], resource: Attrs | None = None, extra_records: int = 0) -> Logs:
    """``logs`` in the record model, as the pipeline hands it to the exporter."""
    return Logs.from_proto(logs(events, resource, extra_records))


def api_call(agent: str, model: str, user: str, team: str, **attrs: Any) -> Attrs:
    base: Attrs = {
        am.AGENT: agent,
        am.MODEL: model,
        am.USER_EMAIL: user,
        am.TEAM: team,
        am.SESSION_ID: f"session-{user}",
    }
    base.update(attrs)
    return event(am.EventType.API_CALL, **base)


# --- reading the exporter's endpoint -------------------------------------------------------


def scrape(exporter: PrometheusExporter, accept: str | None = None) -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{exporter.port}/metrics")
    if accept:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return bytes(resp.read())


Series = dict[tuple[tuple[str, str], ...], float]


def samples(exporter: PrometheusExporter, name: str) -> Series:
    """Every sample named ``name`` on the endpoint, keyed by its sorted labels."""
    out: Series = {}
    for family in text_string_to_metric_families(scrape(exporter).decode()):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def by_label(series: Series, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for labels, value in series.items():
        out[dict(labels).get(label, "")] += value
    return dict(out)


@pytest.fixture
def make_exporter(tmp_path: Path) -> Iterator[Any]:
    started: list[PrometheusExporter] = []

    def make(
        name: str = "prometheus/test", clock: Any = time.monotonic, **cfg: Any
    ) -> PrometheusExporter:
        cfg.setdefault("endpoint", "127.0.0.1:0")
        exp = PrometheusExporter(name, PrometheusConfig(**cfg), clock=clock)
        exp.start(Host(str(tmp_path / "data")))
        started.append(exp)
        return exp

    yield make
    for exp in started:
        exp.shutdown()


# --- (1) a real Prometheus scrapes what was fed --------------------------------------------


def test_real_prometheus_sees_exact_cost_and_token_totals(
    tmp_path: Path, prometheus_server: PrometheusServer
) -> None:
    rng = random.Random(7)
    teams = ["platform", "payments", "data"]
    users = [f"dev{i}@example.com" for i in range(9)]
    agents = [
        ("claude_code", "claude-sonnet-4-5"),
        ("codex", "gpt-5-codex"),
        ("gemini_cli", "gemini-2.5-pro"),
    ]
    events: list[Attrs] = []
    for _ in range(120):
        agent, model = rng.choice(agents)
        user = rng.choice(users)
        ev = api_call(
            agent,
            model,
            user,
            teams[users.index(user) % 3],
            **{
                am.INPUT_TOKENS: rng.randint(1, 5000),
                am.CACHE_READ_TOKENS: rng.randint(0, 40000),
                am.CACHE_WRITE_TOKENS: rng.randint(0, 3000),
                am.OUTPUT_TOKENS: rng.randint(1, 2000),
                am.DURATION_MS: rng.uniform(200, 30000),
            },
        )
        if agent == "codex":
            ev[am.REASONING_TOKENS] = rng.randint(0, ev[am.OUTPUT_TOKENS])
        if rng.random() < 0.9:
            ev[am.COST_USD] = round(rng.uniform(0.0001, 0.5), 6)
        events.append(ev)

    expected_tokens: dict[str, float] = defaultdict(float)
    expected_team_cost: dict[str, float] = defaultdict(float)
    for ev in events:
        for label, key in (
            ("input", am.INPUT_TOKENS),
            ("cache_read", am.CACHE_READ_TOKENS),
            ("cache_write", am.CACHE_WRITE_TOKENS),
            ("output", am.OUTPUT_TOKENS),
            ("reasoning", am.REASONING_TOKENS),
        ):
            expected_tokens[label] += ev.get(key, 0)
        expected_team_cost[ev[am.TEAM]] += ev.get(am.COST_USD, 0.0)
    expected_cost = sum(expected_team_cost.values())
    unpriced = sum(1 for ev in events if am.COST_USD not in ev)
    assert unpriced > 0 and expected_tokens["reasoning"] > 0

    raw = {
        "receivers": {"inject": {}},
        "exporters": {
            "prometheus/e2e": {
                "endpoint": "127.0.0.1:0",
                "user_label": "email",
                "sending_queue": {"batch_timeout": 0},
            }
        },
        "service": {
            "data_dir": str(tmp_path / "data"),
            "pipelines": {"logs": {"receivers": ["inject"], "exporters": ["prometheus/e2e"]}},
        },
    }
    svc = Service(parse(raw, source="test", env={}, base_dir=str(tmp_path)))
    svc.start()
    try:
        receiver = svc.receivers["inject"]
        assert isinstance(receiver, InjectReceiver)
        exporter = svc.exporters["prometheus/e2e"]
        assert isinstance(exporter, PrometheusExporter)
        for i in range(0, len(events), 25):
            receiver.push(logs(events[i : i + 25], extra_records=2))
        receiver.push(logs(events[:10]))  # redelivered events must not count twice
        prometheus_server.set_targets({"synthetic": f"127.0.0.1:{exporter.port}"})

        prometheus_server.wait_for('sum(agentwatch_cost_usd_total{job="synthetic"})', expected_cost)
        for token_type, total in expected_tokens.items():
            prometheus_server.wait_for(
                f'sum(agentwatch_tokens_total{{job="synthetic",type="{token_type}"}})', total
            )
        prometheus_server.wait_for(
            'sum(agentwatch_api_calls_unpriced_total{job="synthetic"})', unpriced
        )
        prometheus_server.wait_for('sum(agentwatch_api_calls_total{job="synthetic"})', len(events))
        prometheus_server.wait_for(
            'sum(agentwatch_api_call_duration_seconds_count{job="synthetic"})', len(events)
        )
        prometheus_server.wait_for(
            'sum(agentwatch_sessions_total{job="synthetic"})',
            len({(ev[am.AGENT], ev[am.SESSION_ID]) for ev in events}),
        )
        per_team = {
            r["metric"]["team"]: float(r["value"][1])
            for r in prometheus_server.query(
                'sum by (team) (agentwatch_cost_usd_total{job="synthetic"})'
            )
        }
        assert per_team.keys() == expected_team_cost.keys()
        for team, cost in expected_team_cost.items():
            assert per_team[team] == pytest.approx(cost, rel=1e-9)
        # the collector's self-metrics are on the same endpoint
        prometheus_server.wait_for(
            'sum(agentwatch_exporter_sent_items_total{exporter="prometheus/e2e"})',
            len(events) + 10 + 2 * 5,
        )
        prometheus_server.wait_for(
            'agentwatch_prometheus_skipped_items_total{exporter="prometheus/e2e",reason="duplicate"}',
            10,
        )
        assert prometheus_server.target_health("synthetic") == "up"

        check = promtool_check_metrics(scrape(exporter))
        assert check.returncode == 0 and not check.stdout.strip(), (check.stdout, check.stderr)
    finally:
        assert svc.shutdown()


CAPTURE = (
    Path(__file__).parents[1] / "data" / "captured" / "claude" / "retry-tools-http-protobuf.json"
)
CAPTURED_TOKENS = {  # hand count of the usage table in tests/data/captured/claude/README.md
    "input": 1203 + 1319 + 1427 + 1531,
    "cache_read": 15011 + 18023 + 18241 + 18457,
    "cache_write": 3007 + 211 + 97 + 89,
    "output": 57 + 61 + 83 + 79,
}


def captured_requests(path: Path, signal: str) -> list[Any]:
    from collector import otlp_json
    from collector.component import Signal

    return [
        otlp_json.decode(Signal(signal), json.dumps(line["request"]))
        for line in json.loads(path.read_text())
        if line["signal"] == signal
    ]


def test_real_prometheus_shows_team_cost_and_tokens_of_a_real_claude_session(
    tmp_path: Path, prometheus_server: PrometheusServer
) -> None:
    """The real Claude Code CLI's telemetry (recorded), normalised, priced and redacted by the
    project's processors, scraped by Prometheus: totals equal the mock API's usage and the
    cost the pipeline put on the records."""
    raw = {
        "receivers": {"inject": {}},
        "processors": {"normalize": {}, "cost": {}, "redaction": {}},
        "exporters": {
            "prometheus/claude": {
                "endpoint": "127.0.0.1:0",
                "user_hash_key": "k",
                "claude_code_compat": True,
                "sending_queue": {"batch_timeout": 0},
            },
            "recording/claude": {"sending_queue": {"batch_timeout": 0}},
        },
        "service": {
            "data_dir": str(tmp_path / "data"),
            "pipelines": {
                "logs": {
                    "receivers": ["inject"],
                    "processors": ["normalize", "cost", "redaction"],
                    "exporters": ["prometheus/claude", "recording/claude"],
                }
            },
        },
    }
    svc = Service(parse(raw, source="test", env={}, base_dir=str(tmp_path)))
    svc.start()
    try:
        receiver = svc.receivers["inject"]
        assert isinstance(receiver, InjectReceiver)
        requests = captured_requests(CAPTURE, "logs")
        assert requests
        for request in requests:
            receiver.push(request)
        exporter = svc.exporters["prometheus/claude"]
        assert isinstance(exporter, PrometheusExporter)
        prometheus_server.set_targets({"claude": f"127.0.0.1:{exporter.port}"})
        for token_type, total in CAPTURED_TOKENS.items():
            prometheus_server.wait_for(
                f'sum(agentwatch_tokens_total{{job="claude",agent="claude_code",type="{token_type}"}})',
                total,
            )
        prometheus_server.wait_for(
            'sum(claude_code_token_usage_tokens_total{job="claude"})', sum(CAPTURED_TOKENS.values())
        )
        recorder = RecordingExporter.instances["recording/claude"]
        pushed = sum(count_items(r) for r in requests)
        wait_for(lambda: sum(count_items(d) for _, d, _ in recorder.delivered) >= pushed)
        costs = [
            value.double_value
            for _, data, _ in recorder.delivered
            for rl in data.resource_logs  # type: ignore[union-attr]
            for sl in rl.scope_logs
            for rec in sl.log_records
            for kv in rec.attributes
            if kv.key == am.COST_USD
            for value in [kv.value]
        ]
        assert len(costs) == 4 and all(c > 0 for c in costs)
        per_team = {}
        end = time.monotonic() + 30
        while time.monotonic() < end:
            per_team = {
                r["metric"]["team"]: float(r["value"][1])
                for r in prometheus_server.query(
                    'sum by (team) (agentwatch_cost_usd_total{job="claude"})'
                )
            }
            if per_team:
                break
            time.sleep(0.2)
        assert per_team == {"platform": pytest.approx(sum(costs), rel=1e-9)}
        prometheus_server.wait_for('sum(agentwatch_sessions_total{job="claude"})', 1)
        prometheus_server.wait_for('sum(claude_code_session_count_total{job="claude"})', 1)
    finally:
        assert svc.shutdown()


COPILOT = Path(__file__).parents[1] / "data" / "copilot"
# Hand count of the chat spans in tests/data/copilot (README.md there): gen_ai.usage.input_tokens
# includes the cached tokens, which agentwatch counts apart.
COPILOT_TOKENS = {
    ("copilot_chat", "input"): 1500 + 1800 + 800,
    ("copilot_chat", "output"): 250 + 300 + 150,
    ("copilot_cli", "input"): (12000 - 9000 - 1000) + (13500 - 10000 - 500) + (11500 - 9000),
    ("copilot_cli", "cache_read"): 9000 + 10000 + 9000,
    ("copilot_cli", "cache_write"): 1000 + 500,
    ("copilot_cli", "output"): 400 + 350 + 350,
    ("copilot_cli", "reasoning"): 120,
}


def _service(tmp_path: Path, name: str, signals: tuple[str, ...]) -> Service:
    """A real service: normalize, cost and redaction, then Prometheus and a recorder."""
    pipelines = {
        signal: {
            "receivers": ["inject"],
            "processors": ["normalize", "cost", "redaction"],
            "exporters": [f"prometheus/{name}", f"recording/{name}"],
        }
        for signal in signals
    }
    raw = {
        "receivers": {"inject": {}},
        "processors": {"normalize": {}, "cost": {}, "redaction": {}},
        "exporters": {
            f"prometheus/{name}": {
                "endpoint": "127.0.0.1:0",
                "user_label": "none",
                "sending_queue": {"batch_timeout": 0},
            },
            f"recording/{name}": {"sending_queue": {"batch_timeout": 0}},
        },
        "service": {"data_dir": str(tmp_path / "data"), "pipelines": pipelines},
    }
    svc = Service(parse(raw, source="test", env={}, base_dir=str(tmp_path)))
    svc.start()
    return svc


def test_copilot_calls_reported_only_as_spans_are_counted(tmp_path: Path) -> None:
    from collector import otlp_json
    from collector.component import Signal

    svc = _service(tmp_path, "copilot", ("traces",))
    try:
        receiver = svc.receivers["inject"]
        exporter = svc.exporters["prometheus/copilot"]
        assert isinstance(receiver, InjectReceiver) and isinstance(exporter, PrometheusExporter)
        requests = [
            otlp_json.decode(Signal.TRACES, (COPILOT / name).read_text())
            for name in ("copilot-chat.traces.json", "copilot-cli.traces.json")
        ]
        for request in requests:
            receiver.push(request)
        receiver.push(requests[1])  # a retry: the same spans again count once
        recorder = RecordingExporter.instances["recording/copilot"]
        pushed = sum(count_items(r) for r in requests) + count_items(requests[1])
        wait_for(lambda: sum(count_items(d) for _, d, _ in recorder.delivered) == pushed)
        wait_for(lambda: _sent("prometheus/copilot", "traces") == pushed)
        tokens: dict[tuple[str, str], float] = defaultdict(float)
        for labels, value in samples(exporter, "agentwatch_tokens_total").items():
            tokens[(dict(labels)["agent"], dict(labels)["type"])] += value
        assert tokens == COPILOT_TOKENS
        calls = samples(exporter, "agentwatch_api_calls_total")
        assert by_label(calls, "agent") == {"copilot_chat": 3, "copilot_cli": 4}
        assert samples(exporter, "agentwatch_api_errors_total") == {
            # Copilot's claude-sonnet-4.6 under the price book's (Anthropic's) name
            key(agent="copilot_cli", model="claude-sonnet-4-6", status="RateLimitError"): 1.0
        }
        costs = {
            _span_attr(span, am.EVENT_ID): _span_attr(span, am.COST_USD)
            for _, data, _ in recorder.delivered
            for span in _spans(data)
            if _span_attr(span, am.COST_USD) is not None
        }
        # Every call is priced at its model vendor's list price (Anthropic's and OpenAI's).
        assert len(costs) == 6
        cost = by_label(samples(exporter, "agentwatch_cost_usd_total"), "agent")
        assert sum(cost.values()) == pytest.approx(sum(costs.values()), rel=1e-9)
        assert cost.keys() == {"copilot_chat", "copilot_cli"}
        unpriced = by_label(samples(exporter, "agentwatch_api_calls_unpriced_total"), "agent")
        assert unpriced == {}
        # github.copilot.cost is premium requests, counted apart from dollars
        premium = by_label(samples(exporter, "agentwatch_premium_requests_total"), "agent")
        assert premium == {"copilot_cli": pytest.approx(0.0234 + 0.0211 + 0.0044)}
        tools = by_label(samples(exporter, "agentwatch_tool_calls_total"), "agent")
        assert tools == {"copilot_chat": 4, "copilot_cli": 2}
        assert by_label(samples(exporter, "agentwatch_user_prompts_total"), "agent") == {
            "copilot_chat": 1,
            "copilot_cli": 1,
        }
    finally:
        assert svc.shutdown()


def test_claude_spans_sharing_an_event_id_do_not_count_a_call_twice(tmp_path: Path) -> None:
    """Claude Code's llm_request spans repeat its api_request log events: on the traces pipeline
    too, the captured session's tokens count once."""
    svc = _service(tmp_path, "claude-spans", ("logs", "traces"))
    try:
        receiver = svc.receivers["inject"]
        exporter = svc.exporters["prometheus/claude-spans"]
        assert isinstance(receiver, InjectReceiver) and isinstance(exporter, PrometheusExporter)
        requests = captured_requests(CAPTURE, "logs") + captured_requests(CAPTURE, "traces")
        for request in requests:
            receiver.push(request)
        recorder = RecordingExporter.instances["recording/claude-spans"]
        wait_for(
            lambda: (
                sum(count_items(d) for _, d, _ in recorder.delivered)
                == sum(count_items(r) for r in requests)
            )
        )
        for signal in ("logs", "traces"):
            n = sum(count_items(r) for r in requests if signal_of(r).value == signal)
            wait_for(functools.partial(_sent_is, "prometheus/claude-spans", signal, n))
        # the premise: normalised llm_request spans share their log twin's id, no event type
        twins = [
            span
            for _, data, _ in recorder.delivered
            for span in _spans(data)
            if _span_attr(span, am.EVENT_ID) is not None
        ]
        assert len(twins) == 4 and all(_span_attr(s, am.EVENT) is None for s in twins)
        tokens = by_label(samples(exporter, "agentwatch_tokens_total"), "type")
        assert tokens == CAPTURED_TOKENS
        assert sum(samples(exporter, "agentwatch_api_calls_total").values()) == 4
    finally:
        assert svc.shutdown()


def _sent(exporter: str, signal: str) -> float:
    return telemetry.value("agentwatch_exporter_sent_items_total", exporter=exporter, signal=signal)


def _sent_is(exporter: str, signal: str, items: int) -> bool:
    return _sent(exporter, signal) == items


def _spans(data: Any) -> list[Any]:
    if not hasattr(data, "resource_spans"):
        return []
    return [span for rs in data.resource_spans for ss in rs.scope_spans for span in ss.spans]


def _span_attr(span: Any, name: str) -> Any:
    for kv in span.attributes:
        if kv.key == name:
            return kv.value.string_value or kv.value.double_value
    return None


def test_promtool_accepts_every_metric_family_populated(make_exporter: Any) -> None:
    exp = make_exporter(
        claude_code_compat=True, claude_code_compat_session_id=True, user_label="email"
    )
    exp.consume_logs(records(_one_of_each("claude_code")), "b1")
    exp.consume_metrics(claude_metrics(), "b2")
    body = scrape(exp)
    for name in (
        "agentwatch_detections_total",
        "agentwatch_lines_of_code_total",
        "agentwatch_api_errors_total",
        "claude_code_lines_of_code_count_total",
        "claude_code_active_time_seconds_total",
    ):
        assert f"\n{name}{{".encode() in body, name
    check = promtool_check_metrics(body)
    assert check.returncode == 0 and not check.stdout.strip(), (check.stdout, check.stderr)
    # OpenMetrics, which Prometheus negotiates by default, is served too
    om = scrape(exp, accept="application/openmetrics-text; version=1.0.0")
    assert om.rstrip().endswith(b"# EOF")


def test_claude_code_names_come_from_its_vendor_class(make_exporter: Any) -> None:
    """Vendor knowledge stays in processors/vendors: the compatible names the endpoint serves
    are exactly those on the Claude Code vendor class, found through the registry."""
    vendor = vendor_for("claude-code")
    assert vendor is not None and vendor.compat_metric_names
    exp = make_exporter(claude_code_compat=True, user_label="email")
    exp.consume_logs(records(_one_of_each("claude_code")), "b1")
    exp.consume_metrics(claude_metrics(), "b2")
    served = {f.name for f in text_string_to_metric_families(scrape(exp).decode())}
    compat = {name for name in served if name.startswith("claude_code_")}
    assert compat == set(vendor.compat_metric_names.values())
    assert set(vendor.delta_metrics) == {
        "claude_code.lines_of_code.count",
        "claude_code.commit.count",
        "claude_code.pull_request.count",
        "claude_code.active_time.total",
    }


# --- (2) cardinality ------------------------------------------------------------------------


def test_ten_thousand_users_fold_beyond_the_cap(make_exporter: Any) -> None:
    exp = make_exporter(name="prometheus/cap", max_series_per_metric=1000, user_label="email")
    folded_before = telemetry.value(
        "agentwatch_prometheus_series_folded_total",
        exporter="prometheus/cap",
        metric="agentwatch_tokens_total",
    )
    events = [
        api_call(
            "codex",
            "gpt-5-codex",
            f"user{i}@example.com",
            "team-a",
            **{am.INPUT_TOKENS: i + 1, am.COST_USD: 0.001},
        )
        for i in range(10_000)
    ]
    for i in range(0, len(events), 1000):
        exp.consume_logs(records(events[i : i + 1000]), f"b{i}")
    # a user admitted before the cap keeps its own series after the cap is reached
    exp.consume_logs(
        records(
            [
                api_call(
                    "codex", "gpt-5-codex", "user0@example.com", "team-a", **{am.INPUT_TOKENS: 5}
                )
            ]
        ),
        "again",
    )

    tokens = samples(exp, "agentwatch_tokens_total")
    overflow = {k: v for k, v in tokens.items() if dict(k)["user"] == OVERFLOW}
    own = {k: v for k, v in tokens.items() if dict(k)["user"] != OVERFLOW}
    assert len(own) == 1000
    assert len(overflow) == 1
    overflow_labels = dict(next(iter(overflow)))
    assert set(overflow_labels.values()) == {OVERFLOW}
    assert sum(tokens.values()) == sum(range(1, 10_001)) + 5  # nothing lost, only folded
    assert (
        own[
            key(
                agent="codex",
                model="gpt-5-codex",
                team="team-a",
                type="input",
                user="user0@example.com",
            )
        ]
        == 1 + 5
    )
    folded = (
        telemetry.value(
            "agentwatch_prometheus_series_folded_total",
            exporter="prometheus/cap",
            metric="agentwatch_tokens_total",
        )
        - folded_before
    )
    assert folded == 9000
    sessions = samples(exp, "agentwatch_sessions_total")
    assert len(sessions) == 1001 and sum(sessions.values()) == 10_000
    assert len(samples(exp, "agentwatch_cost_usd_total")) == 1001


# --- (3) user label modes -------------------------------------------------------------------

EMAIL = "alice@example.com"


def _tokens_users(exp: PrometheusExporter) -> set[str | None]:
    return {dict(k).get("user") for k in samples(exp, "agentwatch_tokens_total")}


def test_user_label_email(make_exporter: Any) -> None:
    exp = make_exporter(user_label="email")
    exp.consume_logs(
        records([api_call("claude_code", "m", EMAIL, "t", **{am.INPUT_TOKENS: 3})]), "b"
    )
    assert _tokens_users(exp) == {EMAIL}


def test_user_label_falls_back_to_the_vendor_user_id(make_exporter: Any) -> None:
    exp = make_exporter(user_label="email")
    ev = api_call("codex", "m", "", "t", **{am.INPUT_TOKENS: 3, am.USER_ID: "install-42"})
    del ev[am.USER_EMAIL]
    exp.consume_logs(records([ev]), "b")
    assert _tokens_users(exp) == {"install-42"}


def test_user_label_hashed_with_configured_key(make_exporter: Any) -> None:
    exp = make_exporter(user_label="hashed", user_hash_key="s3cret", user_hash_length=20)
    exp.consume_logs(
        records([api_call("claude_code", "m", EMAIL, "t", **{am.INPUT_TOKENS: 3})]), "b"
    )
    expected = hmac.new(b"s3cret", EMAIL.encode(), hashlib.sha256).hexdigest()[:20]
    assert _tokens_users(exp) == {expected}
    assert EMAIL.encode() not in scrape(exp)


def test_user_label_hashed_key_is_generated_once_and_kept(
    tmp_path: Path, make_exporter: Any
) -> None:
    first = make_exporter(user_label="hashed")
    first.consume_logs(
        records([api_call("claude_code", "m", EMAIL, "t", **{am.INPUT_TOKENS: 3})]), "b"
    )
    hashed = _tokens_users(first)
    first.shutdown()
    key_file = tmp_path / "data" / "prometheus_user_hash.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    expected = hmac.new(key_file.read_text().strip().encode(), EMAIL.encode(), hashlib.sha256)
    assert hashed == {expected.hexdigest()[:16]}
    second = make_exporter(user_label="hashed")  # a restart: same data dir, same hashes
    second.consume_logs(
        records([api_call("claude_code", "m", EMAIL, "t", **{am.INPUT_TOKENS: 3})]), "b"
    )
    assert _tokens_users(second) == hashed


def test_user_label_none_removes_the_label(make_exporter: Any) -> None:
    exp = make_exporter(user_label="none", claude_code_compat=True)
    exp.consume_logs(
        records([api_call("claude_code", "m", EMAIL, "t", **{am.INPUT_TOKENS: 3})]), "b"
    )
    assert _tokens_users(exp) == {None}
    compat = samples(exp, "claude_code_token_usage_tokens_total")
    assert compat and all("user_email" not in dict(k) for k in compat)
    assert EMAIL.encode() not in scrape(exp)


# --- idempotence and the other metrics ------------------------------------------------------


def test_the_same_event_delivered_twice_counts_once(make_exporter: Any) -> None:
    exp = make_exporter(name="prometheus/dedup", user_label="email")
    before = telemetry.value(
        "agentwatch_prometheus_skipped_items_total",
        exporter="prometheus/dedup",
        signal="logs",
        reason="duplicate",
    )
    ev = api_call(
        "claude_code", "claude-sonnet-4-5", EMAIL, "t", **{am.INPUT_TOKENS: 100, am.COST_USD: 0.25}
    )
    exp.consume_logs(records([ev]), "batch-1")
    exp.consume_logs(records([ev]), "batch-2")  # e.g. redelivered by an agent's retry
    assert sum(samples(exp, "agentwatch_cost_usd_total").values()) == 0.25
    assert sum(samples(exp, "agentwatch_tokens_total").values()) == 100
    after = telemetry.value(
        "agentwatch_prometheus_skipped_items_total",
        exporter="prometheus/dedup",
        signal="logs",
        reason="duplicate",
    )
    assert after - before == 1


def test_an_id_raised_again_and_again_stays_remembered(make_exporter: Any) -> None:
    """A session-wide detection comes back in every batch of a long session (the detections
    processor keeps no memory across batches): seeing it again keeps it among the recent ids."""
    exp = make_exporter(name="prometheus/recent", dedup_cache_size=2)
    who = {am.AGENT: "claude_code", am.SESSION_ID: "s-long"}
    bypass = event(
        am.EventType.DETECTION, **who, **{am.RULE_ID: "permission-bypass", am.SEVERITY: "high"}
    )
    for i in range(5):
        exp.consume_logs(records([bypass]), f"b{i}")
        exp.consume_logs(records([event(am.EventType.USER_PROMPT, **who)]), f"p{i}")
    assert samples(exp, "agentwatch_detections_total") == {
        key(agent="claude_code", rule="permission-bypass", severity="high"): 1.0
    }


def _one_of_each(agent: str) -> list[Attrs]:
    who = {
        am.AGENT: agent,
        am.USER_EMAIL: EMAIL,
        am.TEAM: "platform",
        am.SESSION_ID: "s-1",
        am.ORGANIZATION: "org-1",
    }
    return [
        event(am.EventType.SESSION_START, **who),
        event(am.EventType.USER_PROMPT, **who, **{am.PROMPT_LENGTH: 40}),
        api_call(
            agent,
            "claude-sonnet-4-5",
            EMAIL,
            "platform",
            **{
                am.SESSION_ID: "s-1",
                am.ORGANIZATION: "org-1",
                am.INPUT_TOKENS: 1200,
                am.OUTPUT_TOKENS: 57,
                am.CACHE_READ_TOKENS: 15000,
                am.CACHE_WRITE_TOKENS: 3000,
                am.COST_USD: 0.020205,
                am.DURATION_MS: 700.0,
            },
        ),
        event(
            am.EventType.API_ERROR,
            **who,
            **{am.MODEL: "claude-sonnet-4-5", am.STATUS: "429", am.DURATION_MS: 120.0},
        ),
        event(am.EventType.TOOL_CALL, **who, **{am.TOOL_NAME: "Edit", am.DECISION: "accept"}),
        event(am.EventType.TOOL_CALL, **who, **{am.TOOL_NAME: "Bash", am.DECISION: "reject"}),
        event(am.EventType.TOOL_CALL, **who, **{am.TOOL_NAME: "Bash", am.SUCCESS: False}),
        event(
            am.EventType.CODE_CHANGE,
            **who,
            **{am.LINES_ADDED: 12, am.LINES_REMOVED: 3, am.COMMITS: 1},
        ),
        event(
            am.EventType.DETECTION, **who, **{am.RULE_ID: "secret-in-prompt", am.SEVERITY: "high"}
        ),
    ]


def test_each_event_type_feeds_its_metric(make_exporter: Any) -> None:
    exp = make_exporter(user_label="email")
    exp.consume_logs(records(_one_of_each("codex")), "b")
    assert samples(exp, "agentwatch_api_calls_total") == {
        key(agent="codex", model="claude-sonnet-4-5", status="ok"): 1.0,
        key(agent="codex", model="claude-sonnet-4-5", status="429"): 1.0,
    }
    assert samples(exp, "agentwatch_api_errors_total") == {
        key(agent="codex", model="claude-sonnet-4-5", status="429"): 1.0
    }
    assert samples(exp, "agentwatch_tool_calls_total") == {
        key(agent="codex", tool="Edit", decision="accept", success=""): 1.0,
        key(agent="codex", tool="Bash", decision="reject", success=""): 1.0,
        key(agent="codex", tool="Bash", decision="", success="false"): 1.0,
    }
    who = {"agent": "codex", "team": "platform", "user": EMAIL}
    assert samples(exp, "agentwatch_lines_of_code_total") == {
        key(**who, type="added"): 12.0,
        key(**who, type="removed"): 3.0,
    }
    assert samples(exp, "agentwatch_commits_total") == {key(**who): 1.0}
    assert samples(exp, "agentwatch_pull_requests_total") == {}
    assert samples(exp, "agentwatch_detections_total") == {
        key(agent="codex", rule="secret-in-prompt", severity="high"): 1.0
    }
    assert samples(exp, "agentwatch_user_prompts_total") == {key(**who): 1.0}
    assert samples(exp, "agentwatch_sessions_total") == {
        key(**who): 1.0
    }  # nine events, one session
    ok = key(agent="codex", model="claude-sonnet-4-5", status="ok")
    buckets = {
        dict(k)["le"]: v
        for k, v in samples(exp, "agentwatch_api_call_duration_seconds_bucket").items()
        if dict(k)["status"] == "ok"
    }
    assert buckets["0.5"] == 0 and buckets["1.0"] == 1 and buckets["+Inf"] == 1
    assert samples(exp, "agentwatch_api_call_duration_seconds_sum")[ok] == pytest.approx(0.7)
    assert not samples(exp, "claude_code_token_usage_tokens_total")  # compat is off by default


def test_records_that_are_not_agent_events_are_skipped_and_counted(make_exporter: Any) -> None:
    exp = make_exporter(name="prometheus/skip")
    before = telemetry.value(
        "agentwatch_prometheus_skipped_items_total",
        exporter="prometheus/skip",
        signal="logs",
        reason="not_agent_event",
    )
    exp.consume_logs(records([], extra_records=4), "b")
    after = telemetry.value(
        "agentwatch_prometheus_skipped_items_total",
        exporter="prometheus/skip",
        signal="logs",
        reason="not_agent_event",
    )
    assert after - before == 4
    assert not samples(exp, "agentwatch_api_calls_total")


def test_identity_on_the_resource_is_used(make_exporter: Any) -> None:
    exp = make_exporter(user_label="email")
    ev = event(am.EventType.API_CALL, **{am.MODEL: "m", am.INPUT_TOKENS: 9})
    exp.consume_logs(
        records([ev], resource={am.AGENT: "gemini_cli", am.TEAM: "data", am.USER_EMAIL: EMAIL}), "b"
    )
    ((labels, value),) = samples(exp, "agentwatch_tokens_total").items()
    assert dict(labels) == {
        "agent": "gemini_cli",
        "model": "m",
        "team": "data",
        "type": "input",
        "user": EMAIL,
    }
    assert value == 9


def test_active_users_counts_a_sliding_window(make_exporter: Any) -> None:
    now = [1000.0]
    exp = make_exporter(user_label="none", active_users_window="15m", clock=lambda: now[0])
    exp.consume_logs(
        records([api_call("codex", "m", "a@x", "t1"), api_call("codex", "m", "b@x", "t1")]), "b1"
    )
    now[0] += 600
    exp.consume_logs(
        records([api_call("codex", "m", "c@x", "t1"), api_call("codex", "m", "a@x", "t1")]), "b2"
    )
    assert by_label(samples(exp, "agentwatch_active_users"), "team") == {"t1": 3.0}
    now[0] += 400  # b was last seen 1000 s ago, a and c 400 s ago
    assert by_label(samples(exp, "agentwatch_active_users"), "team") == {"t1": 2.0}
    now[0] += 900
    assert samples(exp, "agentwatch_active_users") == {}


# --- Claude Code: its delta metrics and dashboard 25255 names -------------------------------


def claude_metrics(
    temporality: int = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA,
) -> MetricsData:
    ident = [attr("user.email", EMAIL), attr("organization.id", "org-1"), attr("session.id", "s-1")]

    def point(value: int | float, t: int, **extra: str) -> NumberDataPoint:
        p = NumberDataPoint(
            start_time_unix_nano=t * 1000,
            time_unix_nano=t * 1000 + 500,
            attributes=[*ident, *(attr(k, v) for k, v in extra.items())],
        )
        if isinstance(value, int):
            p.as_int = value
        else:
            p.as_double = value
        return p

    def counter(name: str, *points: NumberDataPoint) -> Metric:
        return Metric(
            name=name,
            sum=Sum(data_points=points, aggregation_temporality=temporality, is_monotonic=True),
        )

    metrics = [
        counter(
            "claude_code.lines_of_code.count",
            point(40, 10, type="added"),
            point(7, 10, type="removed"),
            point(2, 20, type="added"),
        ),
        counter("claude_code.commit.count", point(1, 10)),
        counter("claude_code.pull_request.count", point(1, 10)),
        counter(
            "claude_code.active_time.total",
            point(12.5, 10, type="cli"),
            point(30.0, 10, type="user"),
        ),
        counter("claude_code.token.usage", point(999, 10, type="input")),  # the events carry these
        Metric(
            name="claude_code.lines_of_code.count",
            gauge=Gauge(data_points=[point(5, 10, type="added")]),
        ),
    ]
    return MetricsData(
        resource_metrics=[
            ResourceMetrics(
                resource=Resource(
                    attributes=[attr("service.name", "claude-code"), attr("team", "platform")]
                ),
                scope_metrics=[ScopeMetrics(metrics=metrics)],
            )
        ]
    )


def test_claude_code_delta_metrics_feed_code_change_counters(make_exporter: Any) -> None:
    exp = make_exporter(
        name="prometheus/claude-metrics", user_label="email", claude_code_compat=True
    )

    def skipped(reason: str) -> float:
        return telemetry.value(
            "agentwatch_prometheus_skipped_items_total",
            exporter="prometheus/claude-metrics",
            signal="metrics",
            reason=reason,
        )

    before = {r: skipped(r) for r in ("unsupported_metric", "not_delta", "duplicate")}
    exp.consume_metrics(claude_metrics(), "b1")
    exp.consume_metrics(claude_metrics(), "b2")  # the same points again: not counted twice
    exp.consume_metrics(
        claude_metrics(AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE), "b3"
    )
    who = {"agent": "claude_code", "team": "platform", "user": EMAIL}
    assert samples(exp, "agentwatch_lines_of_code_total") == {
        key(**who, type="added"): 42.0,
        key(**who, type="removed"): 7.0,
    }
    assert samples(exp, "agentwatch_commits_total") == {key(**who): 1.0}
    assert samples(exp, "agentwatch_pull_requests_total") == {key(**who): 1.0}
    compat = {"organization_id": "org-1", "user_email": EMAIL}
    assert samples(exp, "claude_code_lines_of_code_count_total") == {
        key(**compat, type="added"): 42.0,
        key(**compat, type="removed"): 7.0,
    }
    assert samples(exp, "claude_code_active_time_seconds_total") == {
        key(**compat, type="cli"): 12.5,
        key(**compat, type="user"): 30.0,
    }
    assert samples(exp, "claude_code_commit_count_total") == {key(**compat): 1.0}
    assert samples(exp, "claude_code_pull_request_count_total") == {key(**compat): 1.0}
    assert not samples(exp, "agentwatch_tokens_total")  # token metrics repeat the events: not read
    assert skipped("duplicate") - before["duplicate"] == 7
    assert skipped("not_delta") - before["not_delta"] == 7
    assert skipped("unsupported_metric") - before["unsupported_metric"] == 3 * 2


def test_normalised_code_change_points_are_left_to_the_derived_events(make_exporter: Any) -> None:
    exp = make_exporter(name="prometheus/normalised", user_label="email")
    data = claude_metrics()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.sum.data_points:
                    p.attributes.append(attr(am.AGENT, "claude_code"))  # as normalize marks them
    before = telemetry.value(
        "agentwatch_prometheus_skipped_items_total",
        exporter="prometheus/normalised",
        signal="metrics",
        reason="normalised_as_events",
    )
    exp.consume_metrics(data, "b")
    assert not samples(exp, "agentwatch_lines_of_code_total")
    after = telemetry.value(
        "agentwatch_prometheus_skipped_items_total",
        exporter="prometheus/normalised",
        signal="metrics",
        reason="normalised_as_events",
    )
    assert after - before == 5  # lines (3), commit, pull request; active time is still read


def test_claude_code_compat_names_and_labels_match_dashboard_25255(make_exporter: Any) -> None:
    exp = make_exporter(user_label="email", claude_code_compat=True)
    events = _one_of_each("claude_code") + _one_of_each("codex")  # codex must not show up
    for ev in events[len(events) // 2 :]:
        ev[am.SESSION_ID] = "codex-session"
    exp.consume_logs(records(events), "b")
    who = {"organization_id": "org-1", "user_email": EMAIL}
    assert samples(exp, "claude_code_token_usage_tokens_total") == {
        key(**who, model="claude-sonnet-4-5", type="input"): 1200.0,
        key(**who, model="claude-sonnet-4-5", type="output"): 57.0,
        key(**who, model="claude-sonnet-4-5", type="cacheRead"): 15000.0,
        key(**who, model="claude-sonnet-4-5", type="cacheCreation"): 3000.0,
    }
    assert samples(exp, "claude_code_cost_usage_USD_total") == {
        key(**who, model="claude-sonnet-4-5"): 0.020205
    }
    assert samples(exp, "claude_code_session_count_total") == {key(**who, terminal_type=""): 1.0}
    assert samples(exp, "claude_code_code_edit_tool_decision_total") == {
        key(**who, decision="accept", tool_name="Edit"): 1.0
    }
    assert samples(exp, "claude_code_lines_of_code_count_total") == {
        key(**who, type="added"): 12.0,
        key(**who, type="removed"): 3.0,
    }


def test_claude_code_compat_session_ids_are_opt_in(make_exporter: Any) -> None:
    exp = make_exporter(
        user_label="email", claude_code_compat=True, claude_code_compat_session_id=True
    )
    exp.consume_logs(records(_one_of_each("claude_code")), "b")
    (labels,) = samples(exp, "claude_code_session_count_total")
    assert dict(labels)["session_id"] == "s-1"
    (labels,) = samples(exp, "claude_code_cost_usage_USD_total")
    assert dict(labels)["session_id"] == "s-1"
    assert all(
        "session" not in name for k in samples(exp, "agentwatch_tokens_total") for name, _ in k
    )


# --- endpoint and config --------------------------------------------------------------------


def test_only_the_configured_path_serves_metrics(make_exporter: Any) -> None:
    exp = make_exporter(path="/custom")
    with urllib.request.urlopen(f"http://127.0.0.1:{exp.port}/custom", timeout=5) as resp:
        assert b"agentwatch_tokens_total" in resp.read()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{exp.port}/metrics", timeout=5)
    assert err.value.code == 404


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    ctx = ConfigContext(base_dir=str(tmp_path), data_dir=str(tmp_path))
    assert PrometheusConfig(endpoint="nope").check("exporters.prometheus", ctx) == [
        "exporters.prometheus.endpoint: 'nope' is not host:port"
    ]
    assert PrometheusConfig(path="metrics").check("p", ctx) == ["p.path: must start with /"]
    with pytest.raises(ValidationError, match="ascending"):
        PrometheusConfig(latency_buckets=[1.0, 0.5])
    with pytest.raises(ValidationError):
        PrometheusConfig(user_label="phone")
    raw = {
        "receivers": {"inject": {}},
        "exporters": {"prometheus": {"max_series_per_metric": 0}},
        "service": {
            "data_dir": str(tmp_path),
            "pipelines": {"traces": {"receivers": ["inject"], "exporters": ["prometheus"]}},
        },
    }
    with pytest.raises(ConfigError) as err:
        parse(raw, source="test", env={}, base_dir=str(tmp_path))
    assert any(e.startswith("exporters.prometheus.max_series_per_metric") for e in err.value.errors)
    raw["exporters"] = {"prometheus": {}}
    parse(raw, source="test", env={}, base_dir=str(tmp_path))  # traces are supported (Copilot)


def test_a_tool_invocation_is_counted_once_whatever_events_arrive(make_exporter: Any) -> None:
    """Decision and result of one call are two events (Claude, Codex): the counter counts the
    invocation once, at its result (with the decision seen first) or at a refusing decision;
    an accepted call without its result yet is not counted; a resent event changes nothing."""
    exp = make_exporter(user_label="none")
    who = {am.AGENT: "claude_code", am.SESSION_ID: "s-1", am.TOOL_NAME: "Bash"}

    def tool(call: str, phase: str, event_id: str, **attrs: Any) -> Attrs:
        return event(
            am.EventType.TOOL_CALL,
            **who,
            **{am.TOOL_CALL_ID: call, am.TOOL_PHASE: phase, am.EVENT_ID: event_id},
            **attrs,
        )

    exp.consume_logs(
        records(
            [
                tool("a", "decision", "d-a", **{am.DECISION: "accept"}),
                tool("b", "result", "r-b", **{am.SUCCESS: True}),  # result before decision
                tool("r", "decision", "d-r", **{am.DECISION: "reject"}),
                tool("p", "decision", "d-p", **{am.DECISION: "accept"}),  # still pending
            ]
        ),
        "b1",
    )
    exp.consume_logs(
        records(
            [
                tool("a", "result", "r-a", **{am.SUCCESS: False}),
                tool("b", "decision", "d-b", **{am.DECISION: "accept"}),
                tool("r", "decision", "d-r2", **{am.DECISION: "reject"}),  # logged twice
            ]
        ),
        "b2",
    )
    assert samples(exp, "agentwatch_tool_calls_total") == {
        key(agent="claude_code", tool="Bash", decision="accept", success="false"): 1.0,
        key(agent="claude_code", tool="Bash", decision="", success="true"): 1.0,
        key(agent="claude_code", tool="Bash", decision="reject", success=""): 1.0,
    }
