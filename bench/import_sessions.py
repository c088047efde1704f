"""Benchmark: ``agentwatch import all`` over synthetic session files (Claude Code transcripts,
Codex rollouts and Gemini CLI chats in the shapes the real CLIs write; see
tests/data/sessionfiles), a given total size in thousands of files.

Two measurements, each a child process started as a user runs it (wall time and the child's
peak RSS from ``getrusage``):

* **dry run**: read, dedupe, encode and run the shipped logs processors (normalize, cost,
  detections, redaction); nothing stored;
* **import**: the same into an embedded ClickHouse (a fresh data directory per run).

Files are generated once into ``--dir`` (kept for later runs). Run by hand (not a test):

    .venv/bin/python bench/import_sessions.py [--mb 1024] [--runs 1] [--dir /tmp/aw-bench-sessions]

Writes bench/results/import.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEXT = "The quick brown fox jumps over the lazy dog while the build runs its tests. " * 40


def claude_file(path: Path, rnd: random.Random, session: str, target: int) -> int:
    """Streamed assistant lines (usage repeated, the last one complete), tool use/result pairs
    with large outputs, and a few prompts, like a real transcript."""
    lines, size, n = [], 0, 0
    ts = 1_780_000_000
    while size < target:
        n += 1
        ts += rnd.randint(2, 30)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))
        if n % 10 == 1:
            lines.append(
                {
                    "type": "user",
                    "sessionId": session,
                    "timestamp": stamp,
                    "uuid": f"u{n}",
                    "message": {"role": "user", "content": TEXT[:300]},
                }
            )
        usage = {
            "input_tokens": rnd.randint(1, 4000),
            "output_tokens": rnd.randint(10, 2000),
            "cache_read_input_tokens": rnd.randint(0, 90_000),
            "cache_creation_input_tokens": rnd.randint(0, 5000),
        }
        message = {
            "id": f"msg_{session[:8]}_{n}",
            "model": "claude-sonnet-4-5",
            "role": "assistant",
            "usage": usage,
        }
        for part in range(rnd.randint(1, 3)):  # one line per streamed content block
            partial = dict(usage, output_tokens=usage["output_tokens"] // (3 - part) or 1)
            content = [{"type": "text", "text": TEXT[: rnd.randint(200, 2000)]}]
            lines.append(
                {
                    "type": "assistant",
                    "sessionId": session,
                    "timestamp": stamp,
                    "requestId": f"req_{session[:8]}_{n}",
                    "message": {**message, "usage": partial, "content": content},
                }
            )
        tool = f"toolu_{session[:8]}_{n}"
        lines.append(
            {
                "type": "assistant",
                "sessionId": session,
                "timestamp": stamp,
                "requestId": f"req_{session[:8]}_{n}",
                "message": {
                    **message,
                    "content": [
                        {
                            "type": "tool_use",
                            "id": tool,
                            "name": "Bash",
                            "input": {"command": f"ls -la /tmp/{n}"},
                        }
                    ],
                },
            }
        )
        lines.append(
            {
                "type": "user",
                "sessionId": session,
                "timestamp": stamp,
                "message": {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": tool,
                            "content": TEXT * rnd.randint(1, 4),
                        }
                    ],
                },
            }
        )
        size = sum(len(json.dumps(x)) + 1 for x in lines[-6:]) + size
    text = "".join(json.dumps(x) + "\n" for x in lines)
    path.write_text(text)
    return len(text)


def codex_file(path: Path, rnd: random.Random, session: str, target: int) -> int:
    lines = [
        {
            "timestamp": "2026-05-01T10:00:00.000Z",
            "type": "session_meta",
            "payload": {"id": session, "originator": "codex_exec", "cli_version": "0.169.0"},
        },
        {
            "timestamp": "2026-05-01T10:00:00.100Z",
            "type": "turn_context",
            "payload": {"model": "gpt-5.5"},
        },
    ]
    total = [0, 0, 0]
    size, n = 0, 0
    while size < target:
        n += 1
        stamp = f"2026-05-01T10:{n // 60 % 60:02d}:{n % 60:02d}.000Z"
        last = [rnd.randint(1000, 20000), 0, rnd.randint(10, 900)]
        last[1] = rnd.randint(0, last[0])
        total = [a + b for a, b in zip(total, last, strict=True)]

        def usage(u: list[int]) -> dict[str, int]:
            return {
                "input_tokens": u[0],
                "cached_input_tokens": u[1],
                "output_tokens": u[2],
                "total_tokens": u[0] + u[2],
            }

        batch = [
            {
                "timestamp": stamp,
                "type": "response_item",
                "payload": {
                    "type": "function_call",
                    "name": "exec_command",
                    "call_id": f"c{n}",
                    "arguments": json.dumps({"cmd": f"cat file{n}.py"}),
                },
            },
            {
                "timestamp": stamp,
                "type": "response_item",
                "payload": {
                    "type": "function_call_output",
                    "call_id": f"c{n}",
                    "output": "Process exited with code 0\nOutput:\n" + TEXT * 2,
                },
            },
            {
                "timestamp": stamp,
                "type": "event_msg",
                "payload": {
                    "type": "token_count",
                    "info": {"last_token_usage": usage(last), "total_token_usage": usage(total)},
                },
            },
        ]
        lines += batch
        size += sum(len(json.dumps(x)) + 1 for x in batch)
    text = "".join(json.dumps(x) + "\n" for x in lines)
    path.write_text(text)
    return len(text)


def gemini_file(path: Path, rnd: random.Random, session: str, target: int) -> int:
    lines: list[dict[str, object]] = [{"sessionId": session, "startTime": "2026-05-01T10:00:00Z"}]
    size, n = 0, 0
    while size < target:
        n += 1
        stamp = f"2026-05-01T11:{n // 60 % 60:02d}:{n % 60:02d}.000Z"
        tokens = {
            "input": rnd.randint(5000, 20000),
            "output": rnd.randint(10, 500),
            "cached": rnd.randint(0, 4000),
            "thoughts": rnd.randint(0, 200),
            "tool": 0,
        }
        msg = {
            "id": f"m{n}",
            "timestamp": stamp,
            "type": "gemini",
            "model": "gemini-2.5-pro",
            "content": TEXT[:1500],
            "tokens": tokens,
        }
        call = {
            "id": f"t{n}",
            "name": "run_shell_command",
            "args": {"command": "ls"},
            "result": [{"functionResponse": {"response": {"output": TEXT}}}],
            "status": "success",
            "timestamp": stamp,
        }
        batch = [
            {"id": f"u{n}", "timestamp": stamp, "type": "user", "content": TEXT[:200]},
            msg,
            {"$set": {"lastUpdated": stamp}},
            {**msg, "toolCalls": [call]},
        ]
        lines += batch
        size += sum(len(json.dumps(x)) + 1 for x in batch)
    text = "".join(json.dumps(x) + "\n" for x in lines)
    path.write_text(text)
    return len(text)


def generate(root: Path, total_mb: int) -> tuple[int, int]:
    marker = root / f".generated-{total_mb}"
    if marker.exists():
        files, size = json.loads(marker.read_text())
        return int(files), int(size)
    shutil.rmtree(root, ignore_errors=True)
    rnd = random.Random(14)
    total, files = 0, 0
    budget = total_mb * 1_000_000
    while total < budget:
        kind = rnd.random()
        session = f"{rnd.getrandbits(128):032x}"
        target = int(rnd.lognormvariate(11.5, 1.0))  # median ~100 KB, some MBs
        if kind < 0.7:
            path = root / "claude" / "projects" / f"p{files % 40}" / f"{session}.jsonl"
            writer = claude_file
        elif kind < 0.9:
            path = root / "codex" / "sessions" / "2026" / "05" / "01" / f"rollout-{session}.jsonl"
            writer = codex_file
        else:
            path = root / "gemini" / "tmp" / f"p{files % 20}" / "chats" / f"session-{session}.jsonl"
            writer = gemini_file
        path.parent.mkdir(parents=True, exist_ok=True)
        total += writer(path, rnd, session, target)
        files += 1
    marker.write_text(json.dumps([files, total]))
    return files, total


def config(data_dir: Path) -> Path:
    path = data_dir / "bench.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    text = (REPO / "configs" / "default.yaml").read_text()
    path.write_text(text)
    return path


def peak_rss_mb(pid: int) -> float:
    """The importer's own high-water RSS (VmHWM), not its embedded ClickHouse child's."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_import(root: Path, data_dir: Path, dry_run: bool) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of the importer process, its output."""
    env = {
        **os.environ,
        "AGENTWATCH_DATA_DIR": str(data_dir),
        "AGENTWATCH_GRPC_ENDPOINT": "127.0.0.1:0",
        "AGENTWATCH_HTTP_ENDPOINT": "127.0.0.1:0",
        "AGENTWATCH_PROMETHEUS_ENDPOINT": "127.0.0.1:0",
        "AGENTWATCH_CLAUDE_CODE_PATH": str(root / "claude" / "projects"),
        "AGENTWATCH_CODEX_PATH": str(root / "codex" / "sessions"),
        "AGENTWATCH_GEMINI_PATH": str(root / "gemini" / "tmp"),
    }
    argv = [sys.executable, "-m", "collector", "import", "all", "-c", str(config(data_dir))]
    if dry_run:
        argv.append("--dry-run")
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        proc = subprocess.Popen(argv, env=env, stdout=out_f, stderr=err_f, text=True, cwd=REPO)
        rss = 0.0
        while proc.poll() is None:
            rss = max(rss, peak_rss_mb(proc.pid))
            time.sleep(0.2)
        wall = time.monotonic() - start
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    if proc.returncode != 0:
        raise RuntimeError(f"import failed: {err[-3000:]}")
    return wall, rss, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "aw-bench-sessions"))
    parser.add_argument("--mode", choices=("both", "dry", "import"), default="both")
    args = parser.parse_args()
    root = Path(args.dir)
    started = time.monotonic()
    files, size = generate(root, args.mb)
    print(
        f"{files} files, {size / 1e6:.0f} MB (generated/found in {time.monotonic() - started:.0f}s)"
    )
    results: dict[str, list[tuple[float, float]]] = {"dry run": [], "import": []}
    outputs: dict[str, str] = {}
    modes = [
        (n, d)
        for n, d in (("dry run", True), ("import", False))
        if args.mode == "both" or (args.mode == "dry") == d
    ]
    for name, dry in modes:
        for _ in range(args.runs):
            data = Path(tempfile.mkdtemp(prefix="aw-bench-import-"))
            try:
                wall, rss, out = run_import(root, data, dry)
            finally:
                shutil.rmtree(data, ignore_errors=True)
            results[name].append((wall, rss))
            outputs[name] = out
            print(f"{name}: {wall:.1f}s, peak RSS so far {rss:.0f} MB\n{out}")
    lines = [
        "# Import of session files (`agentwatch import all`)",
        "",
        f"Command: `.venv/bin/python bench/import_sessions.py --mb {args.mb} --runs {args.runs}`",
        f"on this machine (2 cores shared with other work), {time.strftime('%Y-%m-%d')}.",
        f"Input: {files} synthetic files, {size / 1e6:.0f} MB (70% Claude Code transcripts, 20%",
        "Codex rollouts, 10% Gemini CLI chats; sizes log-normal, median about 100 KB).",
        "",
        "| mode | wall s (median) | files/s | MB/s | peak RSS MB (max) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        if not runs:
            continue
        wall = statistics.median(w for w, _ in runs)
        rss = max(r for _, r in runs)
        lines.append(
            f"| {name} | {wall:.1f} | {files / wall:.0f} | {size / 1e6 / wall:.1f} | {rss:.0f} |"
        )
    lines += ["", "Output of the last run of each mode:", ""]
    for name, out in outputs.items():
        lines += [f"{name}:", "", "```", out.strip(), "```", ""]
    (REPO / "bench" / "results" / "import.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
