"""Throughput of the redaction processor on realistic Claude Code log records.

Run: .venv/bin/python bench/redaction.py  (writes bench/results/redaction.md)
     .venv/bin/python bench/redaction.py --label before --no-write  (prints only)

Records mimic what Claude Code 2.1 sends (see /work/shared/agents.md): ``api_request`` with
identity, token counts as strings and cost; ``tool_result`` with ``tool_parameters`` JSON holding
a shell command (one in ten with a planted token), a few lines of tool output and the normalised
keys a normaliser adds.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)

from collector import agent_model as am
from processors.redaction import RedactionConfig, RedactionProcessor

RECORDS_PER_BATCH = 200
ROUNDS = 31
TOOL_OUTPUT = (
    "> project@1.4.2 test\n> jest --runInBand src/components/Button.test.tsx\n\n"
    " PASS  src/components/Button.test.tsx (4.213 s)\n"
    "  Button\n    \u2713 renders its label (31 ms)\n    \u2713 calls onClick once (12 ms)\n"
    "    \u2713 is disabled while loading (9 ms)\n\n"
    "Test Suites: 1 passed, 1 total\nTests:       3 passed, 3 total\n"
    "Snapshots:   0 total\nTime:        4.9 s, estimated 6 s\n"
    "Ran all test suites matching /src\\/components\\/Button.test.tsx/i.\n"
    "commit 3f9c2a1b7d4e5f60718293a4b5c6d7e8f9a0b1c2 (HEAD -> main, origin/main)\n"
)


def _attr(record: object, key: str, value: object) -> None:
    kv = record.attributes.add(key=key)  # type: ignore[attr-defined]
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.string_value = str(value)


def identity(record: object, i: int) -> None:
    _attr(record, "user.id", f"{i % 7:064x}")
    _attr(record, "session.id", f"00000000-0000-4000-8000-{i % 3:012x}")
    _attr(record, "organization.id", "00000000-0000-4000-8000-0000000000a1")
    _attr(record, "user.email", f"dev{i % 7}@example.com")
    _attr(record, "user.account_uuid", "00000000-0000-4000-8000-0000000000a2")
    _attr(record, "terminal.type", "vscode")
    _attr(record, "event.timestamp", "2026-09-27T09:35:29.776Z")
    _attr(record, "event.sequence", i)
    _attr(record, "prompt.id", f"00000000-0000-4000-8000-{i // 10:012x}")
    _attr(record, "team", "platform")


def batch(unique: bool = False, salt: int = 0) -> ExportLogsServiceRequest:
    """``unique``: every tool call has its own command and output (no memo hits)."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    for key, value in (
        ("service.name", "claude-code"),
        ("service.version", "2.1.328"),
        ("os.type", "linux"),
        ("host.arch", "amd64"),
    ):
        rl.resource.attributes.add(key=key).value.string_value = value
    sl = rl.scope_logs.add()
    sl.scope.name = "com.anthropic.claude_code.events"
    for i in range(RECORDS_PER_BATCH):
        lr = sl.log_records.add()
        identity(lr, i)
        if i % 2 == 0:
            lr.body.string_value = "claude_code.api_request"
            _attr(lr, "event.name", "api_request")
            for key, value in (
                ("model", "claude-sonnet-4-5"),
                ("input_tokens", "1200"),
                ("output_tokens", "57"),
                ("cache_read_tokens", "15000"),
                ("cache_creation_tokens", "3000"),
                ("cache_creation_5m_tokens", "3000"),
                ("cache_creation_1h_tokens", "0"),
                ("request_id", f"req_{i:024d}"),
                ("query_source", "main"),
            ):
                _attr(lr, key, value)
            _attr(lr, "cost_usd", 0.020205)
            _attr(lr, "duration_ms", 2311)
            _attr(lr, "ttft_ms", 812)
            _attr(lr, am.EVENT, "api_call")
            _attr(lr, am.MODEL, "claude-sonnet-4-5")
            _attr(lr, am.INPUT_TOKENS, 1200)
            _attr(lr, am.OUTPUT_TOKENS, 57)
        else:
            lr.body.string_value = "claude_code.tool_result"
            _attr(lr, "event.name", "tool_result")
            command = (
                "cd /home/dev/project && npm test -- --runInBand src/components/Button.test.tsx"
            )
            if unique:
                command += f" -t case{salt}-{i}"
            if i % 10 == 1:
                command = (
                    'curl -sS -H "Authorization: Bearer sk-ant-api03-'
                    + "x" * 90
                    + '" https://api.example.com/v1/things'
                )
            params = json.dumps(
                {
                    "full_command": command,
                    "description": "Run the unit tests",
                    "bash_command": command.split()[0],
                    "timeout": 120000,
                }
            )
            for key, value in (
                ("tool_name", "Bash"),
                ("tool_use_id", f"toolu_{i:020d}"),
                ("success", "true"),
                ("duration_ms", "1530"),
                ("tool_parameters", params),
                ("tool_input", params),
                ("tool_result_size_bytes", "48213"),
                ("decision_type", "accept"),
                ("decision_source", "config"),
            ):
                _attr(lr, key, value)
            _attr(lr, am.EVENT, "tool_call")
            _attr(lr, am.TOOL_NAME, "Bash")
            _attr(lr, am.COMMAND, command)
            _attr(lr, am.TOOL_ARGUMENTS, params)
            _attr(lr, am.TOOL_OUTPUT, TOOL_OUTPUT + (f"run {salt}-{i}\n" if unique else ""))
    return req


def measure(config: RedactionConfig, unique: bool = False) -> float:
    processor = RedactionProcessor("redaction", config)
    templates = [batch(unique, r if unique else 0).SerializeToString() for r in range(ROUNDS)]
    rates = []
    for template in templates:
        req = ExportLogsServiceRequest.FromString(template)
        start = time.perf_counter()
        processor.consume_logs(req)
        elapsed = time.perf_counter() - start
        rates.append(RECORDS_PER_BATCH / elapsed)
    return statistics.median(rates)


def baseline() -> float:
    """Only visit every attribute and read its value: the floor any Python processor pays."""
    template = batch().SerializeToString()
    rates = []
    for _ in range(ROUNDS):
        req = ExportLogsServiceRequest.FromString(template)
        start = time.perf_counter()
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for lr in sl.log_records:
                    for kv in lr.attributes:
                        value = kv.value
                        if value.WhichOneof("value") == "string_value":
                            _ = value.string_value
        elapsed = time.perf_counter() - start
        rates.append(RECORDS_PER_BATCH / elapsed)
    return statistics.median(rates)


def main() -> None:
    configs = {
        "default (content removed, secrets scrubbed, e-mails kept)": RedactionConfig(),
        "all content allowed (scrubbed, truncated)": RedactionConfig(
            allow={"prompts": True, "responses": True, "tool_output": True, "tool_arguments": True}
        ),
        "default + e-mails hashed + high-entropy scan": RedactionConfig(
            emails="hash", email_hash_key="bench-key-0123456789", high_entropy=True
        ),
        "default, no secret scrubbing": RedactionConfig(scrub_secrets=False),
    }
    rows = [(name, measure(config)) for name, config in configs.items()]
    rows.append(
        (
            "all content allowed, every command and output unique (no memo hits)",
            measure(configs["all content allowed (scrubbed, truncated)"], unique=True),
        )
    )
    rows.append(("baseline: only read every attribute (no processor)", baseline()))
    if "--no-write" in sys.argv:
        for name, rate in rows:
            print(f"| {name} | {rate:,.0f} | {1e6 / rate:.1f} |")
        return
    lines = [
        "# Redaction processor throughput",
        "",
        f"Batches of {RECORDS_PER_BATCH} Claude Code log records (half `api_request`, half "
        "`tool_result` with `tool_parameters` JSON and normalised keys; one tool call in ten "
        "carries a Bearer token; tool output of about 600 characters), about 25 attributes "
        f"each. Median of {ROUNDS} rounds, one thread, measured by `bench/redaction.py`.",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, "
        "shared 2-vCPU container (other processes running).",
        "",
        "| configuration | records/s | µs/record |",
        "|---|---:|---:|",
        *(f"| {name} | {rate:,.0f} | {1e6 / rate:.1f} |" for name, rate in rows),
        "",
    ]
    out = Path(__file__).parent / "results" / "redaction.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
