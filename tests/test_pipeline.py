from __future__ import annotations

from pathlib import Path

import pytest

import tests.components  # noqa: F401
from collector import telemetry
from collector.component import Refused
from collector.config import parse
from collector.service import Service
from tests.components import InjectReceiver, RecordingExporter
from tests.otlp_factory import logs, seqs
from tests.polling import wait_for


def make_service(tmp_path: Path, exporters: dict, names: list[str] | None = None) -> Service:  # type: ignore[type-arg]
    raw = {
        "receivers": {"inject": {}},
        "exporters": exporters,
        "service": {
            "data_dir": str(tmp_path),
            "shutdown_timeout": 5,
            "pipelines": {"logs": {"receivers": ["inject"], "exporters": names or list(exporters)}},
        },
    }
    svc = Service(parse(raw, source="test", env={}, base_dir=str(tmp_path)))
    svc.start()
    return svc


def delivered_seqs(exp: RecordingExporter) -> list[int]:
    return [s for _, data, _ in exp.delivered for s in seqs(data)]  # type: ignore[arg-type]


def test_blocked_exporter_pushes_back_then_delivers_everything_accepted(tmp_path: Path) -> None:
    svc = make_service(
        tmp_path, {"recording/slow": {"sending_queue": {"queue_size": 10, "batch_timeout": 0}}}
    )
    rec = svc.receivers["inject"]
    assert isinstance(rec, InjectReceiver)
    exp = RecordingExporter.instances["recording/slow"]
    exp.gate.clear()
    accepted: list[int] = []
    refused = 0
    for i in range(30):
        try:
            rec.push(logs(1, start=i))
            accepted.append(i)
        except Refused as exc:
            assert exc.retry_after > 0
            refused += 1
    assert refused > 0, "a stalled exporter must make the receiver push back"
    assert len(accepted) <= 12  # bounded: queue_size plus the batch in flight
    exp.gate.set()
    wait_for(lambda: len(delivered_seqs(exp)) == len(accepted))
    assert delivered_seqs(exp) == accepted
    assert svc.shutdown()


def test_drop_policy_isolates_a_stalled_exporter(tmp_path: Path) -> None:
    before = telemetry.value(
        "agentwatch_exporter_dropped_items_total",
        exporter="recording/stuck",
        signal="logs",
        reason="queue_full",
    )
    svc = make_service(
        tmp_path,
        {
            "recording/stuck": {
                "sending_queue": {"queue_size": 5, "on_full": "drop", "batch_timeout": 0}
            },
            "recording/fine": {"sending_queue": {"batch_timeout": 0}},
        },
    )
    stuck, fine = (
        RecordingExporter.instances["recording/stuck"],
        RecordingExporter.instances["recording/fine"],
    )
    stuck.gate.clear()
    rec = svc.receivers["inject"]
    assert isinstance(rec, InjectReceiver)
    for i in range(20):
        rec.push(logs(1, start=i))  # never refused: the stalled exporter drops, counted
    wait_for(lambda: len(delivered_seqs(fine)) == 20)
    after = telemetry.value(
        "agentwatch_exporter_dropped_items_total",
        exporter="recording/stuck",
        signal="logs",
        reason="queue_full",
    )
    assert after - before >= 20 - 6
    stuck.gate.set()
    svc.shutdown()


def test_retryable_failure_retries_with_same_batch_id(tmp_path: Path) -> None:
    svc = make_service(
        tmp_path,
        {"recording/flaky": {"fail_times": 2, "retry_on_failure": {"initial_interval": 0.01}}},
    )
    rec = svc.receivers["inject"]
    assert isinstance(rec, InjectReceiver)
    rec.push(logs(3))
    exp = RecordingExporter.instances["recording/flaky"]
    wait_for(lambda: len(exp.delivered) == 1)
    assert exp.attempts == 3
    assert delivered_seqs(exp) == [0, 1, 2]
    svc.shutdown()


def test_permanent_failure_is_dropped_and_counted(tmp_path: Path) -> None:
    labels = {"exporter": "recording/bad", "signal": "logs", "reason": "permanent_error"}
    before = telemetry.value("agentwatch_exporter_dropped_items_total", **labels)
    svc = make_service(tmp_path, {"recording/bad": {"fail_times": 1, "permanent": True}})
    rec = svc.receivers["inject"]
    assert isinstance(rec, InjectReceiver)
    rec.push(logs(4))
    wait_for(
        lambda: telemetry.value("agentwatch_exporter_dropped_items_total", **labels) - before == 4
    )
    exp = RecordingExporter.instances["recording/bad"]
    assert exp.attempts == 1  # never retried
    rec.push(logs(2, start=4))
    wait_for(lambda: delivered_seqs(exp) == [4, 5])
    svc.shutdown()


def test_shutdown_flushes_queued_data(tmp_path: Path) -> None:
    svc = make_service(tmp_path, {"recording/late": {"sending_queue": {"batch_timeout": 0}}})
    exp = RecordingExporter.instances["recording/late"]
    exp.gate.clear()
    rec = svc.receivers["inject"]
    assert isinstance(rec, InjectReceiver)
    for i in range(5):
        rec.push(logs(1, start=i))
    exp.gate.set()
    assert svc.shutdown()
    assert delivered_seqs(exp) == [0, 1, 2, 3, 4]


def test_wal_queue_keeps_undelivered_data_for_the_next_run(tmp_path: Path) -> None:
    cfg = {"recording/durable": {"sending_queue": {"storage": "wal", "batch_timeout": 0}}}
    svc = make_service(tmp_path, cfg)
    exp = RecordingExporter.instances["recording/durable"]
    exp.gate.clear()
    rec = svc.receivers["inject"]
    assert isinstance(rec, InjectReceiver)
    rec.push(logs(3))
    wal_bytes = {"exporter": "recording/durable", "signal": "logs"}
    assert telemetry.value("agentwatch_exporter_wal_bytes", **wal_bytes) > 0
    svc.shutdown(timeout=0.2)  # exporter stalled past the deadline
    assert exp.delivered == []
    exp.gate.set()
    svc2 = make_service(tmp_path, cfg)
    exp2 = RecordingExporter.instances["recording/durable"]
    wait_for(lambda: delivered_seqs(exp2) == [0, 1, 2])
    svc2.shutdown()


@pytest.mark.parametrize("n_pipelines", [2])
def test_each_pipeline_gets_its_own_copy(tmp_path: Path, n_pipelines: int) -> None:
    raw = {
        "receivers": {"inject": {}},
        "exporters": {"recording/a": {}, "recording/b": {}},
        "service": {
            "data_dir": str(tmp_path),
            "pipelines": {
                "logs": {"receivers": ["inject"], "exporters": ["recording/a"]},
                "logs/raw": {"receivers": ["inject"], "exporters": ["recording/b"]},
            },
        },
    }
    svc = Service(parse(raw, source="t", env={}, base_dir=str(tmp_path)))
    svc.start()
    rec = svc.receivers["inject"]
    assert isinstance(rec, InjectReceiver)
    rec.push(logs(2))
    a, b = RecordingExporter.instances["recording/a"], RecordingExporter.instances["recording/b"]
    wait_for(lambda: len(a.delivered) == 1 and len(b.delivered) == 1)
    assert a.delivered[0][1] is not b.delivered[0][1]
    assert delivered_seqs(a) == delivered_seqs(b) == [0, 1]
    svc.shutdown()


def test_an_exporter_bug_is_retried_then_given_up_on_and_counted(tmp_path: Path) -> None:
    labels = {"exporter": "recording/buggy", "signal": "logs", "reason": "retries_exhausted"}
    before = telemetry.value("agentwatch_exporter_dropped_items_total", **labels)
    svc = make_service(
        tmp_path,
        {
            "recording/buggy": {
                "retry_on_failure": {"initial_interval": 0.01, "max_elapsed_time": 0.3},
            }
        },
    )
    exp = RecordingExporter.instances["recording/buggy"]

    def broken(*_args: object) -> None:
        exp.attempts += 1
        raise KeyError("bug")

    exp.export = broken  # type: ignore[method-assign]
    rec = svc.receivers["inject"]
    assert isinstance(rec, InjectReceiver)
    rec.push(logs(2))
    wait_for(
        lambda: telemetry.value("agentwatch_exporter_dropped_items_total", **labels) - before == 2
    )
    assert exp.attempts >= 2  # retried like an outage before giving up
    svc.shutdown()
