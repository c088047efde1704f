"""Throughput of the OTLP JSON codec against ``google.protobuf.json_format``.

Run: .venv/bin/python bench/otlp_json.py  (writes bench/results/otlp-json.md)

Payloads mimic what the agents send as OTLP/HTTP JSON (the Gemini CLI always does): log records
shaped like Claude Code's ``api_request`` (20 attributes: identity strings, token counts as
strings and ints, a cost double, trace ids), spans with an event and a link, and sum data points.
``json_format`` gets the same JSON with ids rewritten to base64 (it does not know OTLP's hex ids)
and must produce the same messages, which is checked before timing.
"""

from __future__ import annotations

import base64
import gc
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import google.protobuf
from google.protobuf import json_format
from google.protobuf.internal import api_implementation
from google.protobuf.message import Message

from collector import otlp_json
from collector.component import REQUEST_TYPES, Signal

ITEMS = 2000
ROUNDS = 5
SLOW_ROUNDS = 2  # json_format is slow; fewer rounds keep the run short


def _kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def _identity(i: int) -> list[dict[str, Any]]:
    return [
        _kv("session.id", f"00000000-0000-4000-8000-{i % 3:012x}"),
        _kv("user.id", f"{i % 7:064x}"),
        _kv("user.email", f"dev{i % 7}@example.com"),
        _kv("organization.id", "00000000-0000-4000-8000-0000000000a1"),
        _kv("terminal.type", "vscode"),
        _kv("event.sequence", i),
    ]


def logs_json() -> dict[str, Any]:
    records = [
        {
            "timeUnixNano": str(1_790_501_729_814_000_000 + i),
            "observedTimeUnixNano": str(1_790_501_729_815_000_000 + i),
            "severityNumber": 9,
            "body": {"stringValue": "claude_code.api_request"},
            "traceId": f"{i:032x}",
            "spanId": f"{i + 1:016x}",
            "attributes": [
                *_identity(i),
                _kv("event.name", "api_request"),
                _kv("model", "claude-sonnet-4-5"),
                _kv("input_tokens", str(1200 + i)),
                _kv("output_tokens", "57"),
                _kv("cache_read_tokens", "15000"),
                _kv("cache_creation_tokens", "3000"),
                _kv("cost_usd", 0.020205),
                _kv("duration_ms", 2350),
                _kv("ttft_ms", 812),
                _kv("request_id", f"req_{i:020d}"),
                _kv("query_source", "main"),
                _kv("success", True),
                _kv("prompt.id", f"00000000-0000-4000-8000-{i // 10:012x}"),
                _kv("team", "platform"),
            ],
        }
        for i in range(ITEMS)
    ]
    return {
        "resourceLogs": [
            {
                "resource": {"attributes": [_kv("service.name", "claude-code")]},
                "scopeLogs": [
                    {"scope": {"name": "com.anthropic.claude_code.events"}, "logRecords": records}
                ],
            }
        ]
    }


def traces_json() -> dict[str, Any]:
    spans = [
        {
            "traceId": f"{i // 10:032x}",
            "spanId": f"{i + 1:016x}",
            "parentSpanId": f"{i // 10 + 1:016x}",
            "name": "claude_code.llm_request",
            "kind": 3,
            "startTimeUnixNano": str(1_790_501_729_814_000_000 + i),
            "endTimeUnixNano": str(1_790_501_731_073_341_125 + i),
            "attributes": [
                *_identity(i),
                _kv("model", "claude-sonnet-4-5"),
                _kv("input_tokens", 1200),
                _kv("output_tokens", 57),
            ],
            "events": [
                {
                    "timeUnixNano": str(1_790_501_730_000_000_000 + i),
                    "name": "retry",
                    "attributes": [_kv("attempt", 2)],
                }
            ],
            "links": [{"traceId": f"{i:032x}", "spanId": f"{i + 7:016x}"}],
            "status": {"code": 1},
        }
        for i in range(ITEMS)
    ]
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_kv("service.name", "claude-code")]},
                "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}],
            }
        ]
    }


def metrics_json() -> dict[str, Any]:
    points = [
        {
            "attributes": [
                _kv("type", ("input", "output", "cacheRead")[i % 3]),
                _kv("model", "claude-sonnet-4-5"),
                *_identity(i)[:3],
            ],
            "startTimeUnixNano": "1790501700000000000",
            "timeUnixNano": str(1_790_501_729_000_000_000 + i),
            "asDouble": float(i),
        }
        for i in range(ITEMS)
    ]
    metric = {
        "name": "claude_code.token.usage",
        "unit": "tokens",
        "sum": {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": points},
    }
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": [_kv("service.name", "claude-code")]},
                "scopeMetrics": [{"scope": {"name": "m"}, "metrics": [metric]}],
            }
        ]
    }


def base64_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode()
            if k in ("traceId", "spanId", "parentSpanId")
            else base64_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [base64_ids(v) for v in node]
    return node


def best_seconds(fn: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def stdlib_json_decode(signal: Signal, body: bytes) -> Message:
    """Our codec with the stdlib parser, as when orjson is not installed."""
    saved = otlp_json._loads
    otlp_json._loads = otlp_json.stdlib_loads
    try:
        return otlp_json.decode(signal, body)
    finally:
        otlp_json._loads = saved


def main() -> None:
    rows = []
    payloads = [
        (Signal.LOGS, "log records (22 attributes)", logs_json()),
        (Signal.TRACES, "spans (10 attributes, 1 event, 1 link)", traces_json()),
        (Signal.METRICS, "sum data points (5 attributes)", metrics_json()),
    ]
    for signal, label, obj in payloads:
        ours_body = json.dumps(obj, separators=(",", ":")).encode()
        reference_body = json.dumps(base64_ids(obj), separators=(",", ":")).encode()
        request_type = REQUEST_TYPES[signal]

        def reference_decode(body: bytes = reference_body, cls: Any = request_type) -> Message:
            return json_format.Parse(body, cls())

        ours = otlp_json.decode(signal, ours_body)
        assert ours == reference_decode(), "the codecs disagree; fix before timing"
        assert stdlib_json_decode(signal, ours_body) == ours

        decode_ours = best_seconds(lambda b=ours_body, s=signal: otlp_json.decode(s, b), ROUNDS)
        decode_stdlib = best_seconds(lambda b=ours_body, s=signal: stdlib_json_decode(s, b), ROUNDS)
        decode_ref = best_seconds(reference_decode, SLOW_ROUNDS)
        default_threshold = gc.get_threshold()
        gc.set_threshold(10_000, *default_threshold[1:])
        try:
            decode_gc = best_seconds(lambda b=ours_body, s=signal: otlp_json.decode(s, b), ROUNDS)
        finally:
            gc.set_threshold(*default_threshold)
        encode_ours = best_seconds(lambda m=ours: otlp_json.encode(m), ROUNDS)
        encode_ref = best_seconds(lambda m=ours: json_format.MessageToJson(m), SLOW_ROUNDS)
        binary = ours.SerializeToString()
        parse_protobuf = best_seconds(lambda b=binary, cls=request_type: cls.FromString(b), ROUNDS)
        rows.append(
            (
                label,
                len(ours_body) / ITEMS,
                decode_ours,
                decode_stdlib,
                decode_ref,
                encode_ours,
                encode_ref,
                parse_protobuf,
                decode_gc,
            )
        )

    def rate(seconds: float) -> str:
        return f"{ITEMS / seconds:,.0f}"

    lines = [
        "# OTLP JSON codec throughput",
        "",
        f"Batches of {ITEMS} items, best of {ROUNDS} rounds ({SLOW_ROUNDS} for json_format), one "
        "thread, measured by `bench/otlp_json.py`. Items per second; higher is better. "
        "`json_format` is `google.protobuf.json_format.Parse` / `MessageToJson` on the same "
        "payload (ids as base64, which it needs); `stdlib json` is our codec with `json.loads` "
        "instead of orjson (the fallback when orjson is missing). Decoding allocates many small "
        "objects, so Python's cyclic GC costs a share of it: the `gc gen0 threshold` column "
        "shows the effect of `gc.set_threshold(10000)`, a process-wide setting the codec itself "
        "does not touch.",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, protobuf "
        f"{google.protobuf.__version__} ({api_implementation.Type()} backend), shared 2-vCPU "
        "container (other processes running).",
        "",
        "## Decode (OTLP JSON bytes -> protobuf request)",
        "",
        "| payload | bytes/item | ours (orjson) | ours (stdlib json) | json_format | "
        "speed-up vs json_format | ours, gc gen0 threshold 10000 | "
        "protobuf binary parse, for scale |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, size, d_ours, d_std, d_ref, _, _, pb, d_gc in rows:
        lines.append(
            f"| {label} | {size:,.0f} | {rate(d_ours)} | {rate(d_std)} | {rate(d_ref)} | "
            f"{d_ref / d_ours:.1f}x | {rate(d_gc)} | {rate(pb)} |"
        )
    lines += [
        "",
        "## Encode (protobuf request -> OTLP JSON bytes)",
        "",
        "| payload | ours | json_format.MessageToJson | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for label, _, _, _, _, e_ours, e_ref, _, _ in rows:
        lines.append(f"| {label} | {rate(e_ours)} | {rate(e_ref)} | {e_ref / e_ours:.1f}x |")
    lines.append("")
    out = Path(__file__).resolve().parent / "results" / "otlp-json.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
