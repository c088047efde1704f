"""Following session-file directories: the ``sessionfiles`` receiver inside a running service
and ``agentwatch watch``, on a real ClickHouse."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from collector.config import load
from collector.service import Service
from tests.support.clickhouse_fixture import new_client
from tests.support.polling import wait_for
from tests.support.sessionfiles_support import SAMPLES, write_config

TOKEN_COUNT = {
    "timestamp": "2026-07-10T23:47:00.000Z",
    "type": "event_msg",
    "payload": {
        "type": "token_count",
        "info": {
            "total_token_usage": {
                "input_tokens": 30334,
                "cached_input_tokens": 17152,
                "output_tokens": 261,
                "total_tokens": 30595,
            },
            "last_token_usage": {"input_tokens": 100, "output_tokens": 7, "total_tokens": 107},
        },
    },
}


def receiver_config(tmp_path: Path, clickhouse_db: Any, codex: Path, gemini: Path) -> Any:
    path = write_config(tmp_path, clickhouse_db)
    raw = yaml.safe_load(path.read_text())
    raw["receivers"]["sessionfiles"] = {
        "agents": ["codex", "gemini"],
        "paths": {"codex": str(codex), "gemini": str(gemini)},
        "poll_interval": "100ms",
        "settle": 0,
    }
    raw["service"]["pipelines"]["logs"]["receivers"] = ["otlp", "sessionfiles"]
    path.write_text(yaml.safe_dump(raw))
    return load(str(path))


def test_receiver_follows_new_files_new_directories_and_appends(
    tmp_path: Path, clickhouse_db: Any
) -> None:
    codex = tmp_path / "codex" / "sessions"
    gemini = tmp_path / "gemini" / "tmp"  # does not exist yet
    cfg = receiver_config(tmp_path, clickhouse_db, codex, gemini)
    client = new_client(clickhouse_db.server, clickhouse_db.name)

    def count(sql: str) -> int:
        try:
            return int(client.query(sql).result_rows[0][0])
        except Exception:  # tables not created yet
            return -1

    service = Service(cfg)
    service.start()
    try:
        rollout = codex / "2026" / "07" / "10" / "rollout-2026-07-10T23-46-07-x.jsonl"
        rollout.parent.mkdir(parents=True)
        shutil.copy(SAMPLES / "codex" / "switchboard__apply-patch.session.jsonl", rollout)
        wait_for(lambda: count("SELECT count() FROM api_calls") == 1, what="the first call")
        chats = gemini / "project" / "chats"
        chats.mkdir(parents=True)
        shutil.copy(
            SAMPLES / "gemini" / "switchboard__tool-use.session.jsonl", chats / "session-a.jsonl"
        )
        wait_for(lambda: count("SELECT count() FROM api_calls") == 3, what="a new directory")
        with rollout.open("a") as fh:
            fh.write(json.dumps(TOKEN_COUNT) + "\n")
        wait_for(lambda: count("SELECT count() FROM api_calls") == 4, what="the appended call")
        raw = count("SELECT count() FROM otel_logs")
    finally:
        assert service.shutdown(timeout=30)
    ledger = json.loads((tmp_path / "data" / "sessionfiles" / "ledger.json").read_text())
    assert str(rollout) in ledger["files"]

    # A restart reads nothing again: the ledger remembers what each file sent.
    again = Service(cfg)
    again.start()
    try:
        follower = again.receivers["sessionfiles"]._thread.follower  # type: ignore[attr-defined]
        wait_for(lambda: follower.scans >= 3, what="three scans after the restart")
        assert follower.files_read == 0 and follower.records_sent == 0
    finally:
        assert again.shutdown(timeout=30)
    assert count("SELECT count() FROM otel_logs") == raw
    assert count("SELECT count() FROM api_calls") == 4


def test_watch_command_until_sigterm(tmp_path: Path, clickhouse_db: Any) -> None:
    cfg = write_config(tmp_path, clickhouse_db)
    codex = tmp_path / "codex" / "sessions"
    codex.mkdir(parents=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collector",
            "watch",
            "codex",
            "--path",
            str(codex),
            "--interval",
            "100ms",
            "--settle",
            "0",
            "-c",
            str(cfg),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = new_client(clickhouse_db.server, clickhouse_db.name)

    def calls() -> int:
        try:
            return int(client.query("SELECT count() FROM api_calls").result_rows[0][0])
        except Exception:
            return -1

    try:
        day = codex / "2026" / "01" / "01"
        day.mkdir(parents=True)
        shutil.copy(
            SAMPLES / "codex" / "switchboard__rate-limits.session.jsonl",
            day / "rollout-2026-01-01T00-00-00-r.jsonl",
        )
        wait_for(lambda: calls() == 1, timeout=60, what="watch to import the new rollout")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]


def test_receiver_stores_a_call_already_stored_once(tmp_path: Path, clickhouse_db: Any) -> None:
    """The same Codex call stored first with another time (as its OTLP twin is, a moment
    earlier than the rollout line): the receiver sends the file's call under the stored event
    id, so it is counted once."""
    from collector.receivers.sessionfiles import importer

    sample = (SAMPLES / "codex" / "switchboard__apply-patch.session.jsonl").read_text()
    earlier = sample.replace('"2026-07-10T23:46:13.968Z"', '"2026-07-10T23:46:11.500Z"')
    assert earlier != sample
    twin = tmp_path / "twin" / "2026" / "07" / "10" / "rollout-2026-07-10T23-46-07-x.jsonl"
    twin.parent.mkdir(parents=True)
    twin.write_text(earlier)
    first = tmp_path / "first"
    first.mkdir()
    importer.run(
        load(str(write_config(first, clickhouse_db))),
        importer.Options(["codex"], {"codex": tmp_path / "twin"}),
    )
    client = new_client(clickhouse_db.server, clickhouse_db.name)
    assert client.query("SELECT count() FROM api_calls").result_rows == [(1,)]

    codex = tmp_path / "codex" / "sessions"
    rollout = codex / "2026" / "07" / "10" / "rollout-2026-07-10T23-46-07-x.jsonl"
    rollout.parent.mkdir(parents=True)
    rollout.write_text(sample)
    service = Service(receiver_config(tmp_path, clickhouse_db, codex, tmp_path / "none"))
    service.start()
    try:
        follower = service.receivers["sessionfiles"]._thread.follower  # type: ignore[attr-defined]
        wait_for(lambda: follower.files_read == 1, what="the rollout to be read")
    finally:
        assert service.shutdown(timeout=30)
    assert follower.matched_stored == 1
    assert client.query("SELECT count() FROM api_calls").result_rows == [(1,)]
    assert client.query("SELECT api_calls FROM sessions").result_rows == [(1,)]
