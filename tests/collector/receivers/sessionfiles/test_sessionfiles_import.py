"""``agentwatch import`` as a user runs it, into a real ClickHouse: stored through the public
views, marked with its source, idempotent, date-filtered."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

from tests.support.clickhouse_fixture import new_client
from tests.support.sessionfiles_support import claude_tree, codex_tree, gemini_tree, write_config


class Store:
    """Queries on the test's database with unqualified view names, as a user writes them."""

    def __init__(self, database: Any) -> None:
        self.client = new_client(database.server, database.name)

    def scalar(self, sql: str) -> Any:
        return self.client.query(sql).result_rows[0][0]

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.client.query(sql).result_rows]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], capture_output=True, text=True, env=env
    )


def test_import_twice_stores_once_and_marks_the_source(tmp_path: Path, clickhouse_db: Any) -> None:
    cfg = str(write_config(tmp_path, clickhouse_db))
    claude = claude_tree(tmp_path, "switchboard__tool-vocabulary.session.jsonl")
    codex = codex_tree(tmp_path, "switchboard__apply-patch.session.jsonl")
    gemini = gemini_tree(tmp_path, "switchboard__tool-use.session.jsonl")

    dry = run("import", "claude-code", "--path", str(claude), "--dry-run", "-c", cfg)
    assert dry.returncode == 0, dry.stderr
    assert "would import: 1 files" in dry.stdout and "9 API calls" in dry.stdout
    assert (
        clickhouse_db.scalar(
            "SELECT count() FROM system.tables WHERE database = "
            f"'{clickhouse_db.name}' AND name = 'api_calls'"
        )
        == 0
    )

    for agent, root in (("claude-code", claude), ("codex", codex), ("gemini", gemini)):
        done = run("import", agent, "--path", str(root), "-c", cfg)
        assert done.returncode == 0, done.stderr
        assert "imported: 1 files" in done.stdout
    db = Store(clickhouse_db)
    calls = dict(db.rows("SELECT agent, count() FROM api_calls GROUP BY agent"))
    assert calls == {"claude_code": 9, "codex": 1, "gemini_cli": 2}
    assert db.scalar("SELECT sum(cache_write_1h_tokens) FROM api_calls") == 11_226
    requests = {r for (r,) in db.rows("SELECT request_id FROM api_calls WHERE agent='claude_code'")}
    assert "req_facet001" in requests and len(requests) == 9
    raw_before = db.scalar("SELECT count() FROM otel_logs")
    marked = db.scalar(
        "SELECT count() FROM otel_logs WHERE LogAttributes['agentwatch.source'] = 'session_files'"
    )
    assert raw_before == marked > 0
    assert db.scalar("SELECT count() FROM tool_calls WHERE agent = 'gemini_cli'") == 2
    # Privacy: the shipped redaction removed prompt text and tool arguments on the way in.
    assert db.scalar("SELECT countIf(prompt_text != '') FROM user_prompts") == 0
    sessions_before = db.rows("SELECT session_id, api_calls, input_tokens FROM sessions ORDER BY 1")

    again = run("import", "claude-code", "--path", str(claude), "-c", cfg)
    assert again.returncode == 0 and "1 unchanged, skipped" in again.stdout
    assert db.scalar("SELECT count() FROM otel_logs") == raw_before
    forced = run("import", "claude-code", "--path", str(claude), "--force", "-c", cfg)
    assert forced.returncode == 0, forced.stderr
    assert dict(db.rows("SELECT agent, count() FROM api_calls GROUP BY agent"))["claude_code"] == 9
    assert db.rows("SELECT session_id, api_calls, input_tokens FROM sessions ORDER BY 1") == (
        sessions_before
    )


def test_import_from_to_and_env_default_path(tmp_path: Path, clickhouse_db: Any) -> None:
    cfg = str(write_config(tmp_path, clickhouse_db))
    root = codex_tree(
        tmp_path, "switchboard__rate-limits.session.jsonl", "switchboard__apply-patch.session.jsonl"
    )
    env = {"AGENTWATCH_CODEX_PATH": str(root), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    # rate-limits is dated 2026-01-01, apply-patch 2026-07-10.
    early = run("import", "codex", "--to", "2026-06-30", "-c", cfg, env=env)
    assert early.returncode == 0, early.stderr
    assert Store(clickhouse_db).scalar("SELECT count() FROM api_calls") == 1
    late = run("import", "codex", "--from", "2026-07-10", "--to", "2026-07-10", "-c", cfg, env=env)
    assert late.returncode == 0, late.stderr
    assert Store(clickhouse_db).rows("SELECT toDate(timestamp) FROM api_calls ORDER BY 1") == [
        (date(2026, 1, 1),),
        (date(2026, 7, 10),),
    ]


def test_import_errors_are_clear(tmp_path: Path) -> None:
    cfg = str(write_config(tmp_path))  # no clickhouse exporter
    out = run("import", "codex", "--path", str(tmp_path), "-c", cfg)
    assert out.returncode == 1 and "no clickhouse exporter" in out.stderr
    both = run("import", "all", "--path", str(tmp_path), "-c", cfg)
    assert both.returncode == 2 and "--path needs one agent" in both.stderr


def test_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    import os
    import pty

    cfg = str(write_config(tmp_path))
    root = codex_tree(tmp_path, "switchboard__apply-patch.session.jsonl")
    args = ["import", "codex", "--path", str(root), "--dry-run", "-c", cfg]
    piped = run(*args)
    assert piped.returncode == 0 and "[" not in piped.stderr
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "collector", *args],
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=120,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
    assert done.returncode == 0
    shown = b"".join(chunks).decode()
    assert "[" + "#" * 30 + "] 1/1 files" in shown


def test_import_runs_no_extension_of_the_config(tmp_path: Path) -> None:
    """``serve`` may be running beside ``import``/``watch`` with the console on its port: the
    import's service must not try to start the console or budgets again."""
    import textwrap

    from collector.config import load
    from collector.receivers.sessionfiles.importer import import_config

    config = tmp_path / "cfg.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            receivers:
              otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:0"}}}}}}
            processors:
              normalize: {{}}
            exporters:
              clickhouse: {{endpoint: "http://127.0.0.1:1"}}
            extensions:
              console: {{endpoint: "127.0.0.1:0"}}
            service:
              data_dir: {tmp_path / "data"}
              extensions: [console]
              pipelines:
                logs: {{receivers: [otlp], processors: [normalize], exporters: [clickhouse]}}
            """
        )
    )
    cfg = load(config, env={})
    assert list(cfg.extensions) == ["console"]
    for dry_run in (False, True):
        imported = import_config(cfg, dry_run=dry_run)
        assert imported.extensions == {} and imported.receivers == {}
