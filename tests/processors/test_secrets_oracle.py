"""No planted secret survives agentwatch, checked by an independent scanner.

Every entry of tests/support/secret_corpus.py (90 kinds of secrets in realistic commands, config
files,
headers and prompts) is planted in the content of every agent's real telemetry shapes: the
Claude Code, Codex and Gemini CLI records captured from the real CLIs (tests/data/captured/,
prompts, tool arguments and tool output) and Copilot's GenAI spans (input/output messages, tool
call arguments and results, a bytes attribute). They go through a real ``agentwatch serve`` with
the shipped default pipeline, content capture allowed and truncation off (so that no cut can
hide a miss), into its embedded ClickHouse, an OTLP re-export and a real Prometheus.

Then everything stored (every ClickHouse table), re-exported, scraped and logged is scanned by
Yelp's detect-secrets (all of its plugins but the two entropy ones, see below) and by a check
for the planted values themselves, decoded from base64 and JSON where needed; both must find
nothing. A control scan of what was sent proves the scanners are not blind to these shapes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import json
import re
import secrets as pysecrets
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from detect_secrets import SecretsCollection
from detect_secrets.settings import transient_settings
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span

from processors.secrets import SecretScrubber
from tests.e2e.otlp_capture import parse_otlp_json
from tests.e2e.stack import AgentwatchStack, wait_for
from tests.support.prometheus_server import PrometheusServer
from tests.support.secret_corpus import Planted, corpus

CAPTURED = Path(__file__).parents[1] / "data" / "captured"
CAPTURES = {
    "claude": CAPTURED / "claude" / "retry-tools-http-protobuf.json",
    "codex": CAPTURED / "codex" / "retry-tools-http-protobuf.json",
    "gemini": CAPTURED / "gemini" / "retry-tools-grpc.json",
}
CONTENT_KEYS = {
    "prompt",
    "prompt_text",
    "user_prompt",
    "response",
    "tool_parameters",
    "tool_input",
    "full_command",
    "bash_command",
    "output",
    "tool_output",
    "arguments",
    "request_text",
    "response_text",
    "function_args",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
}
"""Where the CLIs put prompts, tool arguments and tool output (docs/privacy.md)."""
ID_KEYS = re.compile(
    r"(?:^|[._])(?:session|conversation|prompt|request|call|tool_use|response|thread|interaction|turn)[._]?id$"
)
ALL_CONTENT = {"prompts": True, "responses": True, "tool_output": True, "tool_arguments": True}
DETECT_SECRETS_PLUGINS = [
    "ArtifactoryDetector",
    "AWSKeyDetector",
    "AzureStorageKeyDetector",
    "BasicAuthDetector",
    "CloudantDetector",
    "DiscordBotTokenDetector",
    "GitHubTokenDetector",
    "GitLabTokenDetector",
    "IbmCloudIamDetector",
    "IbmCosHmacDetector",
    "IPPublicDetector",
    "JwtTokenDetector",
    "KeywordDetector",
    "MailchimpDetector",
    "NpmDetector",
    "OpenAIDetector",
    "PrivateKeyDetector",
    "PypiTokenDetector",
    "SendGridDetector",
    "SlackDetector",
    "SoftlayerDetector",
    "SquareOAuthDetector",
    "StripeDetector",
    "TelegramBotTokenDetector",
    "TwilioKeyDetector",
]
"""Every detect-secrets 1.5 plugin except Base64HighEntropyString and HexHighEntropyString:
those flag any random-looking quoted string, and agentwatch stores many by design (trace and
span ids, event ids, HMAC e-mail hashes). Random tokens without a known shape or name are what
``high_entropy: true`` is for; the planted-value check below covers every planted value anyway."""


# --- building the planted telemetry ------------------------------------------------------------


def _templates() -> dict[str, list[tuple[str, Any]]]:
    """Per agent, the captured records that carry content (one per event or span name)."""
    found: dict[str, list[tuple[str, Any]]] = {}
    for agent, path in CAPTURES.items():
        seen: set[str] = set()
        kept: list[tuple[str, Any]] = []
        for capture in json.loads(path.read_text()):
            signal = capture["signal"]
            request = parse_otlp_json(signal, json.dumps(capture["request"]).encode())
            if signal == "logs":
                for rl in request.resource_logs:
                    for sl in rl.scope_logs:
                        for lr in sl.log_records:
                            name = _event_name(lr.attributes) or lr.event_name
                            if name not in seen and _has_content(lr.attributes):
                                seen.add(name)
                                kept.append(("logs", _single_log(rl, sl, lr)))
            elif signal == "traces":
                for rs in request.resource_spans:
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            carries = _has_content(span.attributes) or any(
                                _has_content(e.attributes) for e in span.events
                            )
                            if span.name not in seen and carries:
                                seen.add(span.name)
                                kept.append(("traces", _single_span(rs, ss, span)))
        found[agent] = kept
    return found


def _event_name(kvs: Iterable[KeyValue]) -> str:
    return next((kv.value.string_value for kv in kvs if kv.key == "event.name"), "")


def _has_content(kvs: Iterable[KeyValue]) -> bool:
    return any(kv.key in CONTENT_KEYS for kv in kvs)


def _single_log(rl: Any, sl: Any, lr: Any) -> ResourceLogs:
    out = ResourceLogs()
    out.resource.CopyFrom(rl.resource)
    scope = out.scope_logs.add()
    scope.scope.CopyFrom(sl.scope)
    scope.log_records.add().CopyFrom(lr)
    return out


def _single_span(rs: Any, ss: Any, span: Any) -> ResourceSpans:
    out = ResourceSpans()
    out.resource.CopyFrom(rs.resource)
    scope = out.scope_spans.add()
    scope.scope.CopyFrom(ss.scope)
    scope.spans.add().CopyFrom(span)
    return out


def _plant_value(value: AnyValue, text: str) -> None:
    """Put ``text`` where the content was, keeping its shape (JSON stays JSON)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        try:
            parsed = json.loads(value.string_value)
        except ValueError:
            parsed = None
        if isinstance(parsed, (dict, list)):
            value.string_value = json.dumps(_replace_leaves(parsed, text))
        else:
            value.string_value = text
    elif which == "array_value":
        for item in value.array_value.values:
            _plant_value(item, text)
    elif which == "kvlist_value":
        for kv in value.kvlist_value.values:
            _plant_value(kv.value, text)


def _replace_leaves(node: Any, text: str) -> Any:
    if isinstance(node, dict):
        replaced = {k: _replace_leaves(v, text) for k, v in node.items()}
        return replaced or {"command": text}
    if isinstance(node, list):
        return [_replace_leaves(v, text) for v in node] or [text]
    if isinstance(node, str):
        return text
    return node


def _plant_kvs(kvs: Iterable[KeyValue], text: str, suffix: str) -> None:
    for kv in kvs:
        if kv.key in CONTENT_KEYS:
            _plant_value(kv.value, text)
        elif ID_KEYS.search(kv.key) and kv.value.WhichOneof("value") == "string_value":
            kv.value.string_value += suffix  # a distinct event per corpus entry, not a redelivery


def _planted_logs(templates: list[ResourceLogs], entry: Planted, n: int) -> list[ResourceLogs]:
    out = []
    for template in templates:
        rl = copy.deepcopy(template)
        for sl in rl.scope_logs:
            for lr in sl.log_records:
                _plant_kvs(lr.attributes, entry.text, f"-p{n}")
                # now, not when captured: raw tables keep 30 days
                lr.time_unix_nano = lr.observed_time_unix_nano = time.time_ns() + n
        out.append(rl)
    return out


def _planted_spans(templates: list[ResourceSpans], entry: Planted, n: int) -> list[ResourceSpans]:
    out = []
    for template in templates:
        rs = copy.deepcopy(template)
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.trace_id = pysecrets.token_bytes(16)
                span.span_id = pysecrets.token_bytes(8)
                span.parent_span_id = b""
                shift = time.time_ns() + n - span.start_time_unix_nano
                span.start_time_unix_nano += shift
                span.end_time_unix_nano += shift
                _plant_kvs(span.attributes, entry.text, f"-p{n}")
                for event in span.events:
                    event.time_unix_nano += shift
                    _plant_kvs(event.attributes, entry.text, f"-p{n}")
        out.append(rs)
    return out


def _kv(key: str, value: str | int | bytes) -> KeyValue:
    if isinstance(value, bytes):
        return KeyValue(key=key, value=AnyValue(bytes_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _copilot(entry: Planted, n: int, service: str) -> ResourceSpans:
    """Copilot's GenAI spans with content capture on (refs/vscode-copilot-chat_agent_monitoring)."""
    rs = ResourceSpans()
    rs.resource.attributes.extend([_kv("service.name", service), _kv("service.version", "1.0.0")])
    ss = rs.scope_spans.add()
    ss.scope.name = "copilot-chat"
    trace_id = pysecrets.token_bytes(16)
    conversation = f"conv-{n}-{pysecrets.token_hex(4)}"

    def span(name: str, attrs: list[KeyValue], parent: bytes = b"") -> bytes:
        s: Span = ss.spans.add()
        s.trace_id, s.span_id, s.parent_span_id = trace_id, pysecrets.token_bytes(8), parent
        s.name, s.kind = name, Span.SPAN_KIND_INTERNAL
        s.start_time_unix_nano = time.time_ns()
        s.end_time_unix_nano = s.start_time_unix_nano + 2_000_000
        s.attributes.extend([_kv("gen_ai.conversation.id", conversation), *attrs])
        return bytes(s.span_id)

    messages = [{"role": "user", "parts": [{"type": "text", "content": entry.text}]}]
    root = span("invoke_agent", [_kv("gen_ai.operation.name", "invoke_agent")])
    span(
        "chat gpt-4o",
        [
            _kv("gen_ai.operation.name", "chat"),
            _kv("gen_ai.request.model", "gpt-4o"),
            _kv("gen_ai.usage.input_tokens", 1200),
            _kv("gen_ai.usage.output_tokens", 80),
            _kv("gen_ai.input.messages", json.dumps(messages)),
            _kv(
                "gen_ai.system_instructions", json.dumps([{"type": "text", "content": entry.text}])
            ),
            _kv(
                "gen_ai.output.messages",
                json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [
                                {
                                    "type": "tool_call",
                                    "name": "runCommand",
                                    "arguments": {"command": entry.text},
                                },
                            ],
                        }
                    ]
                ),
            ),
        ],
        root,
    )
    span(
        "execute_tool runCommand",
        [
            _kv("gen_ai.operation.name", "execute_tool"),
            _kv("gen_ai.tool.name", "runCommand"),
            _kv("gen_ai.tool.call.id", f"call_{n}_{pysecrets.token_hex(4)}"),
            _kv("gen_ai.tool.call.arguments", json.dumps({"command": entry.text})),
            _kv("gen_ai.tool.call.result", entry.text),
            # raw terminal bytes, not valid UTF-8: scrubbed all the same
            _kv("copilot_chat.terminal.raw", b"\x1b[0m\xff\xfe" + entry.text.encode() + b"\x80"),
        ],
        root,
    )
    return rs


def build_requests(entries: list[Planted]) -> list[tuple[str, bytes]]:
    templates = _templates()
    assert {a: len(t) for a, t in templates.items()} == {
        a: len(t) for a, t in templates.items() if t
    }, "every capture should have records with content"
    requests: list[tuple[str, bytes]] = []
    for n, entry in enumerate(entries):
        logs = ExportLogsServiceRequest()
        traces = ExportTraceServiceRequest()
        for agent_templates in templates.values():
            logs.resource_logs.extend(
                _planted_logs([t for s, t in agent_templates if s == "logs"], entry, n)
            )
            traces.resource_spans.extend(
                _planted_spans([t for s, t in agent_templates if s == "traces"], entry, n)
            )
        traces.resource_spans.append(_copilot(entry, n, "copilot-chat"))
        traces.resource_spans.append(_copilot(entry, n, "github-copilot"))
        requests.append(("logs", logs.SerializeToString()))
        requests.append(("traces", traces.SerializeToString()))
    return requests


def post(port: int, signal: str, body: bytes) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/{signal}",
        data=body,
        headers={"Content-Type": "application/x-protobuf"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.status)


# --- reading everything back ------------------------------------------------------------------


def clickhouse_dump(stack: AgentwatchStack) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table and view in agentwatch's database, each column as text
    (aggregate states finalized: what a query of that table can show)."""
    columns: dict[str, list[str]] = {}
    for table, name, type_ in stack.rows(
        "SELECT table, name, type FROM system.columns WHERE database = currentDatabase() "
        "ORDER BY table, position"
    ):
        column = f"`{name}`"
        if type_.startswith("AggregateFunction("):
            column = f"finalizeAggregation({column})"
        columns.setdefault(table, []).append(f"toString({column}) AS `{name}`")
    assert columns
    return {
        table: stack.dicts(f"SELECT {', '.join(cols)} FROM `{table}`")
        for table, cols in columns.items()
    }


def strings_in(node: Any, raw: bool = False) -> Iterator[str]:
    """Every string leaf, with JSON inside strings and base64 bytes opened up too (a JSON
    string itself only with ``raw``: its leaves and ``key: value`` pairs stand for it)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            if isinstance(value, str) and value.strip()[:1] not in ("[", "{"):
                yield f"{key}: {value}"
            yield from strings_in(value, raw)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from strings_in(value, raw)
    elif isinstance(node, bytes):
        yield node.decode("utf-8", "replace")
    elif isinstance(node, str):
        stripped = node.strip()
        if stripped[:1] in "[{" and len(stripped) > 1:
            try:
                parsed = json.loads(stripped)
            except ValueError:
                parsed = None
            if isinstance(parsed, (dict, list)):
                yield from strings_in(parsed, raw)
                if not raw:
                    return
        yield node
        if len(node) >= 8 and len(node) % 4 == 0 and re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", node):
            with contextlib.suppress(binascii.Error, ValueError):
                yield base64.b64decode(node, validate=True).decode("utf-8", "replace")
    elif node is not None:
        yield str(node)


def scan(directory: Path) -> list[tuple[str, int, str, str]]:
    """detect-secrets over every file in ``directory``: (file, line, type, secret)."""
    plugins = [{"name": name} for name in DETECT_SECRETS_PLUGINS]
    found = []
    with transient_settings({"plugins_used": plugins}):
        collection = SecretsCollection()
        for path in sorted(directory.iterdir()):
            collection.scan_file(str(path))
        for filename, secret in collection:
            found.append(
                (Path(filename).name, secret.line_number, secret.type, secret.secret_value or "")
            )
    return found


def write_scan_files(directory: Path, name: str, data: Any) -> None:
    """Every distinct string of ``data`` (JSON and base64 opened up, map entries also as
    ``key: value``), one per line, twice: ``.txt`` gets detect-secrets' quoted-assignment rules,
    ``.yaml`` its config-file rules (which also catch an unquoted ``password: x``)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = sorted({line for text in strings_in(data) for line in text.splitlines() if line})
    for suffix in ("txt", "yaml"):
        (directory / f"{name}.{suffix}").write_text("\n".join(lines) + "\n")


def leaked_values(entries: list[Planted], texts: Iterable[str]) -> dict[str, list[str]]:
    """Planted values (by kind) that occur in any of ``texts``."""
    blob = "\n".join(texts)
    return {
        e.kind: [v for v in e.secrets if v in blob]
        for e in entries
        if any(v in blob for v in e.secrets)
    }


def _otlp_dicts(raw: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    types = {"logs": ExportLogsServiceRequest, "traces": ExportTraceServiceRequest}
    return [json_format.MessageToDict(types[s].FromString(b)) for s, b in raw]


# --- the test ------------------------------------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[AgentwatchStack]:
    s = AgentwatchStack(tmp_path)
    # Content capture on and no truncation: every planted value reaches the scrubber whole, and
    # only scrubbing can keep it out of storage.
    s.config["processors"]["redaction"] = {
        "allow": ALL_CONTENT,
        "max_value_chars": 0,
        "max_record_chars": 0,
    }
    s.collector.config_path.write_text(yaml.safe_dump(s.config))
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.mark.timeout(1500)
def test_no_planted_secret_is_stored_reexported_or_scraped(
    stack: AgentwatchStack, prometheus_server: PrometheusServer, tmp_path: Path
) -> None:
    entries = corpus()
    clock = time.monotonic()

    def lap(what: str) -> None:
        nonlocal clock
        print(f"{what}: {time.monotonic() - clock:.1f}s")
        clock = time.monotonic()

    assert len({e.kind for e in entries}) >= 60
    requests = build_requests(entries)

    # Control: what is sent holds every planted value, and detect-secrets sees its shapes.
    sent = _otlp_dicts(requests)
    assert set(leaked_values(entries, strings_in(sent))) == {e.kind for e in entries}
    write_scan_files(tmp_path / "control", "sent", sent)
    lap("build")
    control = scan(tmp_path / "control")
    lap("control scan")
    control_types = {t for _, _, t, _ in control}
    assert len(control_types) >= 15, sorted(control_types)

    prometheus_server.set_targets({"agentwatch": stack.prometheus_target})
    for signal, body in requests:
        assert post(stack.collector.http_port, signal, body) == 200

    lap("post")
    expected_logs = sum(
        len(ExportLogsServiceRequest.FromString(b).resource_logs)
        for s, b in requests
        if s == "logs"
    )
    expected_spans = sum(
        sum(
            len(ss.spans)
            for rs in ExportTraceServiceRequest.FromString(b).resource_spans
            for ss in rs.scope_spans
        )
        for s, b in requests
        if s == "traces"
    )

    def reexported(signal: str) -> int:
        if signal == "logs":
            return sum(
                len(sl.log_records)
                for r in stack.reexport.of("logs")
                for rl in r.resource_logs
                for sl in rl.scope_logs
            )
        return sum(
            len(ss.spans)
            for r in stack.reexport.of("traces")
            for rs in r.resource_spans
            for ss in rs.scope_spans
        )

    # Both re-exporters (gRPC and HTTP) deliver a copy of everything.
    wait_for(lambda: reexported("logs") >= 2 * expected_logs, 180, "re-exported logs")
    wait_for(lambda: reexported("traces") >= 2 * expected_spans, 180, "re-exported spans")
    wait_for(stack.drained, 180, "exporter queues to drain")
    wait_for(
        lambda: stack.scalar("SELECT count() FROM otel_logs") >= expected_logs,
        180,
        "logs stored",
    )
    wait_for(
        lambda: stack.scalar("SELECT count() FROM otel_traces") >= expected_spans,
        180,
        "spans stored",
    )
    wait_for(
        lambda: bool(prometheus_server.query('agentwatch_redactions_total{kind="password_flag"}')),
        120,
        "Prometheus to scrape the redaction counters",
    )

    lap("wait")
    stored = clickhouse_dump(stack)
    lap("dump")
    assert stored["otel_logs"] and stored["otel_traces"]
    # Detection evidence is part of what is checked: the planted commands do trigger rules.
    assert stack.scalar("SELECT count() FROM detections") > 0
    scraped = stack.scrape().decode()
    series = prometheus_server.query('{job="agentwatch"}')
    assert series

    out = tmp_path / "stored"
    for table, rows in stored.items():
        write_scan_files(out, f"clickhouse.{table}", rows)
    write_scan_files(out, "reexport", stack.reexport.to_json())
    write_scan_files(out, "prometheus.series", series)
    (out / "metrics.txt").write_text(scraped)
    (out / "agentwatch.log.txt").write_text(stack.collector.logs())

    everything = [
        *strings_in(list(stored.values())),
        *strings_in(stack.reexport.to_json()),
        *strings_in(series),
        scraped,
        stack.collector.logs(),
    ]
    assert leaked_values(entries, everything) == {}
    # Not vacuous: the content was stored (content capture on), only its secrets were replaced.
    stored_text = "\n".join(strings_in(list(stored.values()), raw=True))
    scrubber = SecretScrubber()
    missing = [e.kind for e in entries if scrubber.scrub_text(e.text) not in stored_text]
    assert missing == []
    markers = set(re.findall(r"\[REDACTED:(\w+)\]", stored_text))
    assert len(markers) >= 30, sorted(markers)
    lap("planted check")
    findings = scan(out)
    lap("scan")
    assert findings == [], "\n".join(f"{f}:{line} {t}: {s[:60]}" for f, line, t, s in findings)
