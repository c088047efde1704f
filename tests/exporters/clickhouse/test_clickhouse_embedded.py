"""The embedded ClickHouse supervisor: start, health, restart after kill -9 with the data
intact, clean stop, no server outliving a crashed agentwatch, and the exporter using it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.component import ExportError, Host
from collector.records import Logs
from exporters.clickhouse import schema
from exporters.clickhouse.config import ClickHouseExporterConfig
from exporters.clickhouse.embedded import EmbeddedClickHouse, EmbeddedStartError, http_query
from exporters.clickhouse.exporter import ClickHouseExporter, open_store
from tests.support.clickhouse_fixture import agent_record, logs_request
from tests.support.polling import wait_for

REPO = Path(__file__).resolve().parents[3]


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def pause(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until every thread of it really stopped (delivery is
    asynchronous: a thread busy in the kernel stops only when it leaves it)."""
    os.kill(pid, signal.SIGSTOP)

    def all_stopped() -> bool:
        states = []
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            with contextlib.suppress(OSError):
                states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        return bool(states) and all(state in ("T", "t") for state in states)

    wait_for(all_stopped, what=f"pid {pid} to stop")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedClickHouse]:
    ch = EmbeddedClickHouse(tmp_path / "ch", stop_timeout=5.0)
    ch.start()
    try:
        yield ch
    finally:
        ch.stop()


def test_start_records_pid_and_stops_cleanly(server: EmbeddedClickHouse) -> None:
    pid = server.pid
    assert pid is not None
    assert server.pid_file.read_text().strip() == str(pid)
    assert server.healthy()
    assert http_query(server.port, "SELECT version()").startswith("26.9")
    assert server.rss_bytes() > 0
    server.stop()
    # KILL QUERY ended the serving query, so the child exited by itself with status 0.
    assert server.last_exit_code == 0
    assert pid_gone(pid)
    assert not server.pid_file.exists()
    assert not server.healthy()


def test_restart_after_kill_9_keeps_data(server: EmbeddedClickHouse) -> None:
    http_query(server.port, "CREATE TABLE default.kept (n UInt32) ENGINE = MergeTree ORDER BY n")
    http_query(server.port, "INSERT INTO default.kept SELECT number FROM numbers(1000)")
    old_pid, port = server.pid, server.port
    assert old_pid is not None
    server.watch(interval=0.2)
    os.kill(old_pid, signal.SIGKILL)
    wait_for(
        lambda: server.restarts >= 1 and server.pid not in (None, old_pid) and server.healthy(),
        what="the supervisor's restart",
    )
    assert server.restarts == 1  # an exited child is restarted once, not again while it starts
    assert server.port == port  # clients keep their URL
    assert server.pid_file.read_text().strip() == str(server.pid)
    restarted = server.pid
    assert http_query(server.port, "SELECT count(), sum(n) FROM default.kept").split() == [
        "1000",
        str(sum(range(1000))),
    ]
    # The server the watcher started is still stopped cleanly (not killed with its thread).
    server.stop()
    assert server.last_exit_code == 0
    assert restarted is not None and pid_gone(restarted)


def test_a_hung_server_is_restarted_only_after_several_failed_checks(tmp_path: Path) -> None:
    """A live server that misses health checks (SIGSTOP stands in for one busy with a big
    insert on a loaded machine) keeps running until it failed the configured number of
    checks in a row; one answered check in between starts the count again."""
    ch = EmbeddedClickHouse(
        tmp_path / "ch", stop_timeout=5.0, health_timeout=1.0, failed_checks_before_restart=4
    )
    ch.start()
    first = ch.pid
    assert first is not None
    try:
        pause(first)
        assert [ch.ensure_running(), ch.ensure_running()] == [False, False]
        assert (ch.pid, ch.restarts, ch.failed_checks) == (first, 0, 2)
        os.kill(first, signal.SIGCONT)
        # Two checks to spare before a restart, for a slow first answer after the pause.
        wait_for(
            lambda: not ch.ensure_running() and ch.failed_checks == 0, what="an answered check"
        )
        assert ch.pid == first and ch.restarts == 0
        pause(first)
        assert [ch.ensure_running() for _ in range(3)] == [False, False, False]
        assert ch.pid == first and ch.restarts == 0
        assert ch.ensure_running()  # the fourth failed check in a row
        assert ch.restarts == 1 and ch.pid not in (None, first)
        assert pid_gone(first)
        assert http_query(ch.port, "SELECT 1").strip() == "1"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(first, signal.SIGCONT)
        ch.stop()


def test_server_dies_with_a_crashed_supervisor_and_data_survives(tmp_path: Path) -> None:
    """kill -9 of the agentwatch process: its server goes too (no orphan holding the data
    directory) and the next start finds the committed data."""
    root = tmp_path / "ch"
    script = textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from exporters.clickhouse.embedded import EmbeddedClickHouse, http_query
        ch = EmbeddedClickHouse({str(root)!r})
        ch.start()
        http_query(ch.port, "CREATE TABLE default.t (n UInt8) ENGINE = MergeTree ORDER BY n")
        http_query(ch.port, "INSERT INTO default.t VALUES (7)")
        print(json.dumps({{"pid": ch.pid}}), flush=True)
        time.sleep(600)
    """)
    supervisor = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert supervisor.stdout is not None
        child_pid = json.loads(supervisor.stdout.readline())["pid"]
        supervisor.kill()
        supervisor.wait()
        wait_for(lambda: pid_gone(child_pid), what="the orphaned server to exit")
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    again = EmbeddedClickHouse(root, stop_timeout=5.0)
    again.start()
    try:
        assert http_query(again.port, "SELECT n FROM default.t").strip() == "7"
    finally:
        again.stop()


def test_refuses_a_data_directory_another_supervisor_serves(server: EmbeddedClickHouse) -> None:
    """A second supervisor must not kill or share a server a live process is running."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from exporters.clickhouse.embedded import EmbeddedClickHouse, EmbeddedStartError
        try:
            EmbeddedClickHouse({str(server.root)!r}).start()
        except EmbeddedStartError as exc:
            print("refused:", exc)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.startswith("refused:") and str(server.pid) in out
    assert server.healthy()


def test_configured_port_that_is_taken_fails_with_the_log(
    server: EmbeddedClickHouse, tmp_path: Path
) -> None:
    other = EmbeddedClickHouse(tmp_path / "other", port=server.port, startup_timeout=10.0)
    with pytest.raises(EmbeddedStartError, match="did not answer"):
        other.start()
    assert other.pid is None


def test_exporter_runs_its_own_embedded_server(tmp_path: Path) -> None:
    """No endpoint: the exporter starts ClickHouse under <data_dir>/clickhouse, creates the
    schema, stores, and a CLI command joins the running server instead of starting another."""
    cfg = ClickHouseExporterConfig()
    exporter = ClickHouseExporter("clickhouse", cfg)
    exporter.start(Host(str(tmp_path)))
    try:
        assert exporter.embedded is not None
        assert exporter.embedded.root == (tmp_path / "clickhouse").resolve()
        assert exporter.ready()
        record = agent_record(
            "api_call", "emb-1", time.time_ns(), session_id="s", agent="gemini_cli", input_tokens=3
        )
        exporter.consume_logs(Logs.from_proto(logs_request([record])), "emb-batch")
        with open_store(cfg, str(tmp_path)) as client:
            assert client.query("SELECT count() FROM api_calls").result_rows == [(1,)]
        assert exporter.embedded is not None and exporter.embedded.healthy()
    finally:
        exporter.shutdown()
    assert not exporter.ready()
    with pytest.raises(ExportError):
        exporter.consume_logs(Logs.from_proto(logs_request([])), "after-shutdown")
    # With nothing running, the CLI starts the server for the command and stops it again.
    with open_store(cfg, str(tmp_path)) as client:
        assert client.query("SELECT count() FROM agentwatch.otel_logs").result_rows == [(1,)]
    assert not (tmp_path / "clickhouse" / "server.pid").exists()


def test_server_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    """The parent-death signal follows the spawning thread, so spawns happen on the
    supervisor's own thread: starting from a worker thread that then ends is safe."""
    ch = EmbeddedClickHouse(tmp_path / "ch", stop_timeout=5.0)
    starter = threading.Thread(target=ch.start)
    starter.start()
    starter.join()
    try:
        assert http_query(ch.port, "SELECT 1").strip() == "1"
    finally:
        ch.stop()
    assert ch.last_exit_code == 0  # stopped by us, not killed with the starting thread


def test_cli_commands_on_a_fresh_data_dir(tmp_path: Path) -> None:
    """`db status`, `db migrate` and `query` on a machine where nothing ran yet."""
    cfg = ClickHouseExporterConfig()
    settings = cfg.schema_settings()
    with open_store(cfg, str(tmp_path)) as client:
        assert [at for _, _, at in schema.status(client, settings)] == [None] * len(
            schema.MIGRATIONS
        )
        assert len(schema.migrate(client, settings)) == len(schema.MIGRATIONS)
    with open_store(cfg, str(tmp_path)) as client:
        assert client.database == "agentwatch"
        columns, result = schema.run_readonly_query(client, "SELECT count() FROM sessions")
        assert (columns, result) == (["count()"], [(0,)])
