"""The redaction processor: content off by default, secrets scrubbed, sizes kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from collector import agent_model as am
from collector import telemetry
from collector.component import ConfigContext, LogsData, Processor, Signal, signal_of
from collector.otlp_values import encode_value
from collector.records import Logs, Traces
from processors.redaction import (
    FACTORY,
    TRUNCATED,
    RedactionConfig,
    RedactionProcessor,
)

ANTHROPIC_KEY = "sk-ant-api03-" + "AbC1" * 20
GITHUB_TOKEN = "ghp_" + "Zy9x" * 9
CAPTURED = Path(__file__).parents[1] / "data" / "captured"
ALL_ALLOWED = {"prompts": True, "responses": True, "tool_output": True, "tool_arguments": True}


# --- building and reading OTLP ------------------------------------------------------------------


def any_value(value: Any) -> AnyValue:
    """A test value as OTLP (through the collector's own codec); AnyValues pass as they are."""
    if isinstance(value, AnyValue):
        return value
    out = AnyValue()
    encode_value(value, out)
    return out


def kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


def logs(
    attrs: dict[str, Any],
    *,
    service: str | None = None,
    body: Any = None,
    resource: dict[str, Any] | None = None,
) -> LogsData:
    data = LogsData()
    rl = data.resource_logs.add()
    res = dict(resource or {})
    if service is not None:
        res["service.name"] = service
    rl.resource.attributes.extend(kv(k, v) for k, v in res.items())
    record = rl.scope_logs.add().log_records.add()
    record.attributes.extend(kv(k, v) for k, v in attrs.items())
    if body is not None:
        record.body.CopyFrom(any_value(body))
    return data


def plain(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "kvlist_value":
        return {x.key: plain(x.value) for x in value.kvlist_value.values}
    if which == "array_value":
        return [plain(x) for x in value.array_value.values]
    return getattr(value, which)


def attrs_of(items: Any) -> dict[str, Any]:
    return {x.key: plain(x.value) for x in items}


def record_of(data: LogsData) -> LogRecord:
    return data.resource_logs[0].scope_logs[0].log_records[0]


def apply(processor: Processor, request: Any) -> Any:
    """A request through a processor as the pipeline hands it over (records or protobuf);
    returns the protobuf request it passes on."""
    signal = signal_of(request)
    if signal is Signal.METRICS:
        return processor.process(signal, request)
    records = Logs.from_proto(request) if signal is Signal.LOGS else Traces.from_proto(request)
    out = processor.process(signal, records)
    assert out is records
    return out.to_proto()


def run(data: LogsData, **config: Any) -> dict[str, Any]:
    processor = RedactionProcessor("redaction", RedactionConfig(**config))
    return attrs_of(record_of(apply(processor, data)).attributes)


def redactions(kind: str, agent: str, processor: str = "redaction") -> float:
    return telemetry.value(
        "agentwatch_redactions_total", processor=processor, kind=kind, agent=agent
    )


# --- content per agent --------------------------------------------------------------------------

PROMPT = "please refactor the billing module"
RESPONSE = "Here is the refactored module with tests."
ARGS = '{"command": "pytest -q tests/billing"}'
OUTPUT = "12 passed in 0.31s"

# (service.name, event.name, key, value, content class, key that keeps the size, expected size)
CONTENT_CASES = [
    ("claude-code", "user_prompt", "prompt", PROMPT, "prompts", "prompt_length", len(PROMPT)),
    ("claude-code", "user_prompt", "prompt_text", PROMPT, "prompts", "prompt_length", len(PROMPT)),
    (
        "claude-code",
        "assistant_response",
        "response",
        RESPONSE,
        "responses",
        "response_length",
        len(RESPONSE),
    ),
    (
        "claude-code",
        "tool_decision",
        "tool_parameters",
        ARGS,
        "tool_arguments",
        "tool_parameters.length",
        len(ARGS),
    ),
    (
        "claude-code",
        "tool_result",
        "tool_input",
        ARGS,
        "tool_arguments",
        "tool_input.length",
        len(ARGS),
    ),
    (
        "claude-code",
        "api_request_body",
        "body",
        '{"messages": []}',
        "prompts+responses+tool_output+tool_arguments",
        "body.length",
        16,
    ),
    (
        "claude-code",
        "api_response_body",
        "body",
        '{"content": []}',
        "responses+tool_arguments",
        "body.length",
        15,
    ),
    (
        "claude-code-desktop",
        "user_prompt",
        "prompt",
        PROMPT,
        "prompts",
        "prompt_length",
        len(PROMPT),
    ),
    ("codex_exec", "codex.user_prompt", "prompt", PROMPT, "prompts", "prompt_length", len(PROMPT)),
    (
        "codex_cli_rs",
        "codex.tool_result",
        "arguments",
        ARGS,
        "tool_arguments",
        "arguments.length",
        len(ARGS),
    ),
    (
        "codex-tui",
        "codex.tool_result",
        "output",
        OUTPUT,
        "tool_output",
        "output.length",
        len(OUTPUT),
    ),
    (
        "codex-app-server",
        "codex.tool_result",
        "output",
        OUTPUT,
        "tool_output",
        "output.length",
        len(OUTPUT),
    ),
    (
        "gemini-cli",
        "gemini_cli.user_prompt",
        "prompt",
        PROMPT,
        "prompts",
        "prompt_length",
        len(PROMPT),
    ),
    (
        "gemini-cli",
        "gemini_cli.api_request",
        "request_text",
        PROMPT,
        "prompts+responses+tool_output+tool_arguments",
        "request_text.length",
        len(PROMPT),
    ),
    (
        "gemini-cli",
        "gemini_cli.api_response",
        "response_text",
        RESPONSE,
        "responses+tool_arguments",
        "response_text.length",
        len(RESPONSE),
    ),
    (
        "gemini-cli",
        "gemini_cli.tool_call",
        "function_args",
        ARGS,
        "tool_arguments",
        "function_args.length",
        len(ARGS),
    ),
    (
        "gemini-cli",
        "gen_ai.client.inference.operation.details",
        "gen_ai.input.messages",
        PROMPT,
        "prompts+responses+tool_output+tool_arguments",
        "gen_ai.input.messages.length",
        len(PROMPT),
    ),
    (
        "gemini-cli",
        "gen_ai.client.inference.operation.details",
        "gen_ai.output.messages",
        RESPONSE,
        "responses+tool_arguments",
        "gen_ai.output.messages.length",
        len(RESPONSE),
    ),
    (
        "gemini-cli",
        "gen_ai.client.inference.operation.details",
        "gen_ai.system_instructions",
        PROMPT,
        "prompts",
        "gen_ai.system_instructions.length",
        len(PROMPT),
    ),
    (
        "copilot-chat",
        "",
        "gen_ai.tool.call.arguments",
        ARGS,
        "tool_arguments",
        "gen_ai.tool.call.arguments.length",
        len(ARGS),
    ),
    (
        "github-copilot",
        "",
        "gen_ai.tool.call.result",
        OUTPUT,
        "tool_output",
        "gen_ai.tool.call.result.length",
        len(OUTPUT),
    ),
    (
        "claude-code",
        "tool_result",
        am.TOOL_ARGUMENTS,
        ARGS,
        "tool_arguments",
        am.TOOL_ARGUMENTS_SIZE,
        len(ARGS),
    ),
    (
        "codex_exec",
        "codex.tool_result",
        am.TOOL_OUTPUT,
        "résumé ✓",
        "tool_output",
        am.TOOL_OUTPUT_SIZE,
        len("résumé ✓".encode()),
    ),
    (
        "gemini-cli",
        "gemini_cli.user_prompt",
        am.PROMPT_TEXT,
        PROMPT,
        "prompts",
        am.PROMPT_LENGTH,
        len(PROMPT),
    ),
    (
        "claude-code",
        "tool_result",
        am.COMMAND,
        "make test",
        "tool_arguments",
        am.COMMAND + ".length",
        9,
    ),
]


@pytest.mark.parametrize(
    ("service", "event", "key", "value", "cls", "length_key", "size"), CONTENT_CASES
)
def test_content_removed_by_default_with_its_size_kept(
    service: str, event: str, key: str, value: str, cls: str, length_key: str, size: int
) -> None:
    counted = cls.split("+")[0]  # a removal is counted under the first class not allowed
    before = redactions(counted, _agent(service))
    attrs = run(logs({"event.name": event, key: value, "session.id": "s1"}, service=service))
    assert key not in attrs
    assert attrs[length_key] == size
    assert attrs["session.id"] == "s1" and attrs["event.name"] == event
    assert redactions(counted, _agent(service)) == before + 1


@pytest.mark.parametrize(
    ("service", "event", "key", "value", "cls", "length_key", "size"), CONTENT_CASES
)
def test_content_kept_scrubbed_and_truncated_when_its_class_is_allowed(
    service: str, event: str, key: str, value: str, cls: str, length_key: str, size: int
) -> None:
    classes = cls.split("+")
    if len(classes) > 1:  # needs every class it carries: one short is not enough
        partial = run(
            logs({"event.name": event, key: value}, service=service), allow={classes[0]: True}
        )
        assert key not in partial
    allow = dict.fromkeys(classes, True)
    long_value = f"{value} token={GITHUB_TOKEN} " + "z" * 2000
    attrs = run(logs({"event.name": event, key: long_value}, service=service), allow=allow)
    kept = attrs[key]
    assert kept.startswith(f"{value} token=[REDACTED:github_token] ")
    assert GITHUB_TOKEN not in kept
    assert kept.endswith(" chars]") and "…[truncated " in kept
    assert len(kept.split("…[truncated ")[0]) == 512
    assert attrs[TRUNCATED] is True
    assert length_key not in attrs or length_key.startswith("agentwatch.")  # nothing removed


def _agent(service: str) -> str:
    from processors.redaction import agent_of_service

    return agent_of_service(service) or "unknown"


def test_a_whole_request_needs_every_class_it_carries() -> None:
    data = logs({"gen_ai.input.messages": PROMPT}, service="gemini-cli")
    attrs = run(data, allow={"prompts": True})
    assert "gen_ai.input.messages" not in attrs
    assert attrs["gen_ai.input.messages.length"] == len(PROMPT)


def test_more_content_keys_from_config() -> None:
    config = RedactionConfig.model_validate({"content_keys": {"tool_output": ["my.stdout"]}})
    data = logs({"my.stdout": OUTPUT}, service="claude-code")
    data = apply(RedactionProcessor("redaction", config), data)
    assert attrs_of(record_of(data).attributes) == {"my.stdout.length": len(OUTPUT)}
    allowed = RedactionConfig.model_validate(
        {"content_keys": {"tool_output": ["my.stdout"]}, "allow": {"tool_output": True}}
    )
    data = logs({"my.stdout": OUTPUT}, service="claude-code")
    data = apply(RedactionProcessor("redaction", allowed), data)
    assert attrs_of(record_of(data).attributes) == {"my.stdout": OUTPUT}


def test_body_key_only_carries_content_on_raw_body_events() -> None:
    attrs = run(logs({"event.name": "plugin_loaded", "body": "plain"}, service="claude-code"))
    assert attrs["body"] == "plain"


def test_unknown_agent_is_treated_as_any_agent() -> None:
    attrs = run(
        logs({"prompt": PROMPT, "arguments": ARGS, "function_args": ARGS}, service="my-agent")
    )
    assert not {"prompt", "arguments", "function_args"} & set(attrs)
    assert attrs["prompt_length"] == len(PROMPT)


def test_agent_from_the_normalised_key_when_the_resource_says_nothing() -> None:
    attrs = run(logs({am.AGENT: "codex", "output": OUTPUT, "function_args": "kept"}))
    assert "output" not in attrs
    assert attrs["function_args"] == "kept"  # a Gemini key means nothing on a Codex record


def test_every_service_name_the_normalisers_know_maps_to_their_agent() -> None:
    from processors.redaction import agent_of_service
    from processors.vendors import all_vendors

    names = {name: v.agent.value for v in all_vendors() for name in v.service_names}
    assert "gemini_cli" in names  # Gemini CLI's own default service name
    assert {name: agent_of_service(name) for name in names} == names


def test_the_normalisers_agent_wins_over_a_service_name_that_says_another() -> None:
    """normalize's service_names may send a codex-looking service.name to Claude Code's
    normaliser; redaction must then remove Claude's content keys, not only Codex's."""
    from collector.records import Logs
    from processors.normalize import NormalizeConfig, NormalizeProcessor

    normalize = NormalizeProcessor(
        "normalize", NormalizeConfig(service_names={"codex-claude-wrapper": am.Agent.CLAUDE_CODE})
    )
    data = logs(
        {"event.name": "tool_result", "tool_input": ARGS, "response": RESPONSE},
        service="codex-claude-wrapper",
    )
    out = Logs.from_proto(apply(normalize, data))
    assert out is not None
    attrs = run(out.to_proto())
    assert attrs[am.AGENT] == "claude_code"
    assert "tool_input" not in attrs and "response" not in attrs
    assert attrs["response_length"] == len(RESPONSE)


def test_claude_placeholder_is_removed_without_a_fake_length() -> None:
    attrs = run(
        logs(
            {"event.name": "user_prompt", "prompt": "<REDACTED>", "prompt_length": "94"},
            service="claude-code",
        )
    )
    assert "prompt" not in attrs and attrs["prompt_length"] == "94"
    attrs = run(
        logs({"event.name": "assistant_response", "response": "<REDACTED>"}, service="claude-code")
    )
    assert attrs == {"event.name": "assistant_response"}


def test_existing_size_is_not_overwritten() -> None:
    attrs = run(
        logs({am.TOOL_ARGUMENTS: ARGS, am.TOOL_ARGUMENTS_SIZE: 9999}, service="claude-code")
    )
    assert attrs[am.TOOL_ARGUMENTS_SIZE] == 9999


def test_gemini_command_line_on_the_resource_is_content() -> None:
    data = logs(
        {"event.name": "gemini_cli.config"},
        service="gemini-cli",
        resource={"process.command_args": ["node", "gemini", "-p", PROMPT]},
    )
    data = apply(RedactionProcessor("redaction", RedactionConfig()), data)
    resource = attrs_of(data.resource_logs[0].resource.attributes)
    assert "process.command_args" not in resource
    assert resource["process.command_args.length"] == 4
    assert resource["service.name"] == "gemini-cli"


def test_genai_event_bodies_are_content() -> None:
    data = logs(
        {"event.name": "gen_ai.user.message"}, body={"content": PROMPT}, service="copilot-chat"
    )
    data = apply(RedactionProcessor("redaction", RedactionConfig()), data)
    record = record_of(data)
    assert not record.HasField("body")
    assert attrs_of(record.attributes)["body.length"] == 1


def test_other_bodies_are_scrubbed_not_removed() -> None:
    data = logs(
        {"event.name": "x"}, body=f"connecting with Bearer {ANTHROPIC_KEY}", service="claude-code"
    )
    data = apply(RedactionProcessor("redaction", RedactionConfig()), data)
    assert (
        record_of(data).body.string_value == "connecting with Bearer [REDACTED:anthropic_api_key]"
    )


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_in_tool_arguments_are_scrubbed_even_when_allowed() -> None:
    command = f'curl -H "Authorization: Bearer {ANTHROPIC_KEY}" https://api.example.com | sh'
    params = json.dumps({"full_command": command})
    before = redactions("anthropic_api_key", "claude_code")
    attrs = run(
        logs(
            {"event.name": "tool_result", "tool_parameters": params, am.COMMAND: command},
            service="claude-code",
        ),
        allow={"tool_arguments": True},
    )
    assert ANTHROPIC_KEY not in json.dumps(attrs)
    assert json.loads(attrs["tool_parameters"])["full_command"].startswith(
        'curl -H "Authorization: Bearer [REDACTED:anthropic_api_key]"'
    )
    assert attrs[am.COMMAND].endswith("https://api.example.com | sh")
    assert redactions("anthropic_api_key", "claude_code") == before + 2


def test_secrets_are_scrubbed_in_every_kept_value_and_nested() -> None:
    attrs = run(
        logs(
            {
                "error": f"401 for key {ANTHROPIC_KEY}",
                "config": {
                    "env": {"GITHUB_TOKEN": GITHUB_TOKEN},
                    "hosts": ["postgres://u:pw1234@db/x"],
                },
                "blob": b"aws AKIAIOSFODNN7EXAMPLE",
            },
            service="claude-code",
        )
    )
    assert attrs["error"] == "401 for key [REDACTED:anthropic_api_key]"
    assert attrs["config"]["env"]["GITHUB_TOKEN"] == "[REDACTED:github_token]"
    assert attrs["config"]["hosts"] == ["postgres://u:[REDACTED:url_password]@db/x"]
    assert attrs["blob"] == b"aws [REDACTED:aws_access_key_id]"


def test_scrubbing_can_be_switched_off() -> None:
    attrs = run(logs({"error": f"key {GITHUB_TOKEN}"}, service="claude-code"), scrub_secrets=False)
    assert attrs["error"] == f"key {GITHUB_TOKEN}"


def test_extra_patterns_file(tmp_path: Path) -> None:
    extra = tmp_path / "p.yaml"
    extra.write_text("patterns:\n  - kind: employee_id\n    regex: 'EMP-[0-9]{6}'\n")
    attrs = run(
        logs({"note": "for EMP-123456"}, service="claude-code"), extra_patterns_file=str(extra)
    )
    assert attrs["note"] == "for [REDACTED:employee_id]"


# --- content keys nested and content in spans ----------------------------------------------------


def test_content_keys_inside_kvlists_are_removed_with_their_size() -> None:
    attrs = run(logs({"metadata": {"prompt": PROMPT, "model": "m"}}, service="codex_exec"))
    assert attrs["metadata"] == {"model": "m", "prompt_length": len(PROMPT)}


def test_spans_events_links_and_status_are_redacted() -> None:
    data = ExportTraceServiceRequest()
    rs = data.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", "claude-code"))
    span = rs.scope_spans.add().spans.add(name="claude_code.tool")
    span.attributes.extend(
        [kv("full_command", "echo hi"), kv("user_prompt", PROMPT), kv("user_prompt_length", 34)]
    )
    event = span.events.add(name="tool.output")
    event.attributes.extend([kv("output", OUTPUT), kv("bash_command", "echo hi")])
    link = span.links.add()
    link.attributes.append(kv("note", f"token {GITHUB_TOKEN}"))
    span.status.message = f"failed with Bearer {ANTHROPIC_KEY}"
    data = apply(RedactionProcessor("redaction", RedactionConfig()), data)
    span = data.resource_spans[0].scope_spans[0].spans[0]
    event, link = span.events[0], span.links[0]
    assert attrs_of(span.attributes) == {"user_prompt_length": 34, "full_command.length": 7}
    assert attrs_of(event.attributes) == {"output.length": len(OUTPUT), "bash_command.length": 7}
    assert attrs_of(link.attributes) == {"note": "token [REDACTED:github_token]"}
    assert span.status.message == "failed with Bearer [REDACTED:anthropic_api_key]"


def test_copilot_span_content_is_removed() -> None:
    data = ExportTraceServiceRequest()
    rs = data.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", "copilot-chat"))
    span = rs.scope_spans.add().spans.add(name="chat gpt-4o")
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": PROMPT}]}])
    span.attributes.extend(
        [
            kv("gen_ai.input.messages", messages),
            kv("gen_ai.output.messages", "[]"),
            kv("gen_ai.request.model", "gpt-4o"),
        ]
    )
    data = apply(RedactionProcessor("redaction", RedactionConfig()), data)
    span = data.resource_spans[0].scope_spans[0].spans[0]
    assert attrs_of(span.attributes) == {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.input.messages.length": len(messages),
        "gen_ai.output.messages.length": 2,
    }


# --- truncation ----------------------------------------------------------------------------------


def test_per_value_truncation_is_marked() -> None:
    attrs = run(logs({"note": "a" * 600}, service="claude-code"))
    assert attrs["note"] == "a" * 512 + "…[truncated 88 chars]"
    assert attrs[TRUNCATED] is True
    attrs = run(logs({"note": "a" * 600}, service="claude-code"), max_value_chars=0)
    assert attrs["note"] == "a" * 600 and TRUNCATED not in attrs


def test_record_budget_cuts_long_values_and_spares_short_ones() -> None:
    before = redactions("truncated_record", "claude_code")
    values = {f"long{i}": chr(ord("a") + i) * 500 for i in range(12)}
    attrs = run(
        logs(
            {"prompt": PROMPT, "session.id": "abc", **values, "user.id": "u" * 64},
            service="claude-code",
        ),
    )
    assert attrs["session.id"] == "abc" and attrs["user.id"] == "u" * 64
    kept = [attrs[k].split("…[truncated ")[0] for k in values]
    assert all(len(k) == len(kept[0]) for k in kept)  # long values give way evenly
    short_total = len("abc") + 64
    assert short_total + sum(map(len, kept)) <= 4096
    assert all(attrs[k].endswith(f"[truncated {500 - len(kept[0])} chars]") for k in values)
    assert redactions("truncated_record", "claude_code") == before + 1


def test_record_budget_counts_what_was_already_cut() -> None:
    attrs = run(
        logs({"a": "x" * 3000, "b": "y" * 3000}, service="claude-code"),
        max_value_chars=2500,
        max_record_chars=3000,
    )
    assert attrs["a"] == "x" * 1500 + "…[truncated 1500 chars]"
    assert attrs["b"] == "y" * 1500 + "…[truncated 1500 chars]"


# --- identity ------------------------------------------------------------------------------------

EMAIL = "Dev.Person@Example.com"


def _hash_config(key: str = "0123456789abcdef-test") -> dict[str, Any]:
    return {"emails": "hash", "email_hash_key": key}


def test_emails_kept_by_default() -> None:
    attrs = run(logs({"user.email": EMAIL}, service="claude-code"))
    assert attrs["user.email"] == EMAIL


def test_emails_hashed_with_a_key_stable_across_restarts() -> None:
    first = run(
        logs({"user.email": EMAIL, am.USER_EMAIL: EMAIL}, service="claude-code"), **_hash_config()
    )
    second = run(
        logs({"user.email": " dev.person@example.COM "}, service="claude-code"), **_hash_config()
    )
    other_key = run(
        logs({"user.email": EMAIL}, service="claude-code"), **_hash_config("another-key-0123456")
    )
    assert first["user.email"].startswith("hmac:") and len(first["user.email"]) == 37
    assert EMAIL.lower() not in json.dumps(first).lower()
    assert first["user.email"] == first[am.USER_EMAIL] == second["user.email"]
    assert other_key["user.email"] != first["user.email"]


def test_identity_keys_are_hashed_only_when_they_hold_an_email() -> None:
    attrs = run(
        logs({"user.account_id": EMAIL, "user.id": "8cec9ec8abb3"}, service="codex_exec"),
        **_hash_config(),
    )
    assert attrs["user.account_id"].startswith("hmac:")
    assert attrs["user.id"] == "8cec9ec8abb3"


def test_emails_dropped() -> None:
    before = redactions("email_dropped", "gemini_cli")
    attrs = run(
        logs({"user.email": EMAIL, "installation.id": "i-1"}, service="gemini-cli"), emails="drop"
    )
    assert attrs == {"installation.id": "i-1"}
    assert redactions("email_dropped", "gemini_cli") == before + 1


def test_emails_hashed_on_metric_points_too() -> None:
    data = ExportMetricsServiceRequest()
    rm = data.resource_metrics.add()
    rm.resource.attributes.append(kv("service.name", "claude-code"))
    metric = rm.scope_metrics.add().metrics.add(name="claude_code.token.usage")
    point = metric.sum.data_points.add(as_double=12)
    point.attributes.extend([kv("user.email", EMAIL), kv("type", "input")])
    RedactionProcessor("redaction", RedactionConfig(**_hash_config())).consume_metrics(data)
    attrs = attrs_of(point.attributes)
    assert attrs["type"] == "input" and attrs["user.email"].startswith("hmac:")


def test_hash_mode_requires_a_key() -> None:
    ctx = ConfigContext(base_dir=".", data_dir=".")
    assert RedactionConfig(emails="hash").check("processors.redaction", ctx) == [
        "processors.redaction.email_hash_key: required when emails is hash"
    ]
    assert RedactionConfig(emails="hash", email_hash_key="short").check(
        "processors.redaction", ctx
    ) == ["processors.redaction.email_hash_key: use at least 16 characters"]
    assert RedactionConfig(**_hash_config()).check("processors.redaction", ctx) == []


def test_bad_extra_patterns_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("patterns: [{kind: x, regex: '('}]")
    errors = RedactionConfig(extra_patterns_file="bad.yaml").check(
        "processors.redaction", ConfigContext(base_dir=str(tmp_path), data_dir=".")
    )
    assert len(errors) == 1
    assert errors[0].startswith(
        f"processors.redaction.extra_patterns_file: {bad}: pattern 1 (kind 'x')"
    )
    with pytest.raises(ValueError):
        FACTORY.create("redaction", RedactionConfig(extra_patterns_file=str(bad)))


def test_unknown_config_keys_are_rejected() -> None:
    with pytest.raises(ValueError):
        RedactionConfig.model_validate({"allow": {"prompt": True}})


# --- allow and block lists -----------------------------------------------------------------------


def test_blocked_keys_are_removed_everywhere() -> None:
    data = logs(
        {"host.name": "laptop", "nested": {"host.name": "x", "ok": 1}, "keep": "y"},
        service="claude-code",
        resource={"host.name": "laptop"},
    )
    data = apply(RedactionProcessor("redaction", RedactionConfig(block_keys=["host.*"])), data)
    assert attrs_of(data.resource_logs[0].resource.attributes) == {"service.name": "claude-code"}
    assert attrs_of(record_of(data).attributes) == {"nested": {"ok": 1}, "keep": "y"}


def test_allow_list_keeps_only_listed_and_protected_keys_and_block_wins() -> None:
    attrs = run(
        logs(
            {
                "model": "m",
                "os.type": "linux",
                am.SESSION_ID: "s",
                "event.name": "e",
                "user.id": "u",
            },
            service="claude-code",
        ),
        allow_keys=["model", "user.*"],
        block_keys=["user.id"],
    )
    assert attrs == {"model": "m", am.SESSION_ID: "s", "event.name": "e"}


# --- real CLI telemetry --------------------------------------------------------------------------


def _captured(path: Path) -> list[tuple[str, Any]]:
    from tests.e2e.otlp_capture import parse_otlp_json

    return [
        (c["signal"], parse_otlp_json(c["signal"], json.dumps(c["request"]).encode()))
        for c in json.loads(path.read_text())
    ]


CONTENT_KEYS_SENT = {
    "prompt",
    "prompt_text",
    "user_prompt",
    "response",
    "tool_parameters",
    "tool_input",
    "full_command",
    "output",
    "arguments",
    "bash_command",
    "request_text",
    "response_text",
    "function_args",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "process.command_args",
}
"""Keys under which the real CLIs sent content in these captures (see each README.md)."""
CAPTURED_PROMPT = "then run the failing check command"


def _content_values(path: Path) -> set[str]:
    """What the CLI sent under content keys, read straight from the capture."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("key") in CONTENT_KEYS_SENT:
                value = node.get("value", {})
                if "arrayValue" in value:  # a command line: the prompt is the argument with spaces
                    items = [
                        v
                        for v in value["arrayValue"].get("values", [])
                        if " " in v.get("stringValue", "")
                    ]
                else:
                    items = [value]
                for item in items:
                    text = item.get("stringValue")
                    if text and text != "<REDACTED>" and len(text) >= 5:
                        found.add(text)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(path.read_text()))
    return found


CAPTURES = sorted(CAPTURED.glob("*/*.json")) if CAPTURED.is_dir() else []


def test_captured_cli_telemetry_is_committed() -> None:
    """The two tests below are parametrized over the captures: without them they would run
    nothing, so their absence is a failure, not a skip."""
    assert {p.parent.name for p in CAPTURES} >= {"claude", "codex", "gemini"}


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_content_from_real_cli_telemetry_survives_by_default(path: Path) -> None:
    content = _content_values(path)
    processor = RedactionProcessor("redaction", RedactionConfig())
    strings: list[str] = []
    for _signal, request in _captured(path):
        out = apply(processor, request)
        strings.extend(_strings(json_format.MessageToDict(out)))
    if "nocontent" not in path.name:
        assert content, "the capture should contain content with content switches on"
    for value in content:
        assert not any(value in s for s in strings), value[:80]
    assert not any(CAPTURED_PROMPT in s for s in strings)
    text = "\n".join(strings)
    if "claude" in path.parent.name and "nocontent" not in path.name:
        assert "prompt_length" in text and "tool_parameters.length" in text
    if "codex" in path.parent.name:
        assert "arguments.length" in text and "output.length" in text


@pytest.mark.parametrize(
    "path",
    [p for p in CAPTURES if "nocontent" not in p.name],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_real_cli_content_is_kept_when_allowed(path: Path) -> None:
    content = _content_values(path)
    processor = RedactionProcessor("redaction", RedactionConfig(allow=ALL_ALLOWED))
    strings: set[str] = set()
    for _signal, request in _captured(path):
        out = apply(processor, request)
        strings.update(_strings(json_format.MessageToDict(out)))
    short = [v for v in content if len(v) <= 512]
    assert short
    for value in short:
        assert value in strings, value


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


# --- never raises ----------------------------------------------------------------------------


KEYS = st.sampled_from(
    [
        "prompt",
        "output",
        "user.email",
        "tool_parameters",
        "note",
        "gen_ai.input.messages",
        am.TOOL_ARGUMENTS,
        "body",
        "x",
        "",
        "arguments",
        "nested",
    ]
)
SCALARS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            ANTHROPIC_KEY,
            GITHUB_TOKEN,
            "<REDACTED>",
            "a@b.co",
            "password=x1234",
            "-----BEGIN RSA PRIVATE KEY-----",
        ]
    ),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.booleans(),
    st.binary(max_size=30),
    st.none(),
)


def _tree(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4))


VALUES = st.recursive(SCALARS, _tree, max_leaves=25)


def _to_any(value: Any) -> AnyValue:
    return AnyValue() if value is None else any_value(value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attrs=st.lists(st.tuples(KEYS, VALUES), max_size=8),
    body=VALUES,
    service=st.sampled_from(
        ["claude-code", "codex_exec", "gemini-cli", "copilot-chat", "other", ""]
    ),
    allow=st.booleans(),
    emails=st.sampled_from(["keep", "hash", "drop"]),
)
def test_redaction_never_raises_on_arbitrary_attribute_trees(
    attrs: list[tuple[str, Any]], body: Any, service: str, allow: bool, emails: str
) -> None:
    data = LogsData()
    rl = data.resource_logs.add()
    rl.resource.attributes.append(kv("service.name", service))
    rl.resource.attributes.extend(KeyValue(key=k, value=_to_any(v)) for k, v in attrs)
    record = rl.scope_logs.add().log_records.add()
    record.attributes.extend(KeyValue(key=k, value=_to_any(v)) for k, v in attrs)
    record.body.CopyFrom(_to_any(body))
    config = RedactionConfig(
        allow=ALL_ALLOWED if allow else {},
        emails=emails,
        email_hash_key="k" * 16,
        max_record_chars=300,
    )
    out = apply(RedactionProcessor("redaction", config), data)
    assert out is not None
    serialized = out.SerializeToString()
    assert LogsData.FromString(serialized) == out
    assert ANTHROPIC_KEY.encode() not in serialized and GITHUB_TOKEN.encode() not in serialized


# --- bytes values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [b"", b"\xff\xfe binary \x00\x80 ", b"caf\xe9 (Latin-1) ", b"\xc3"],
    ids=["utf8", "binary", "latin1", "truncated-utf8"],
)
def test_bytes_values_are_scrubbed_even_when_not_utf8(prefix: bytes) -> None:
    """A secret in a bytes value is found whatever bytes surround it; the rest is kept as is."""
    value = prefix + f" export GITHUB_TOKEN={GITHUB_TOKEN} \xff".encode("latin-1")
    before = redactions("github_token", "unknown")
    out = run(logs({"blob": value, "nested": {"b": value}}))
    for got in (out["blob"], out["nested"]["b"]):
        assert isinstance(got, bytes)
        assert GITHUB_TOKEN.encode() not in got
        assert got == value.replace(GITHUB_TOKEN.encode(), b"[REDACTED:github_token]")
    assert redactions("github_token", "unknown") == before + 2
