from __future__ import annotations

from pathlib import Path

import pytest

import tests.support.components  # noqa: F401
from collector import telemetry
from collector.component import LogsData, Refused
from collector.config import parse
from collector.service import Service
from tests.support.components import InjectReceiver, RecordingExporter
from tests.support.otlp_factory import attr, logs, seqs
from tests.support.polling import wait_for


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


# --- a processor failing on some records ------------------------------------------------------


def _fault_service(tmp_path: Path, signal: str) -> Service:
    raw = {
        "receivers": {"inject": {}},
        "processors": {"normalize": {}, "fault": {}, "redaction": {}},
        "exporters": {"recording/fault": {"sending_queue": {"batch_timeout": 0}}},
        "service": {
            "data_dir": str(tmp_path),
            "shutdown_timeout": 5,
            "pipelines": {
                signal: {
                    "receivers": ["inject"],
                    "processors": ["normalize", "fault", "redaction"],
                    "exporters": ["recording/fault"],
                }
            },
        },
    }
    svc = Service(parse(raw, source="test", env={}, base_dir=str(tmp_path)))
    svc.start()
    return svc


def _claude_prompts(n: int, faulty: set[int]) -> LogsData:
    """Claude Code ``user_prompt`` events carrying prompt text, some marked to make the fault
    processor raise."""
    data = logs(n, service="claude-code")
    for i, record in enumerate(data.resource_logs[0].scope_logs[0].log_records):
        record.attributes.extend(
            [
                attr("event.name", "user_prompt"),
                attr("session.id", "s-1"),
                attr("event.sequence", i),
                attr("prompt", f"secret prompt number {i}"),
            ]
        )
        if i in faulty:
            record.attributes.append(attr("fault", "raise"))
    return data


def test_a_processor_failing_on_a_record_costs_only_that_record(tmp_path: Path) -> None:
    svc = _fault_service(tmp_path, "logs")
    try:
        rec = svc.receivers["inject"]
        assert isinstance(rec, InjectReceiver)
        exp = RecordingExporter.instances["recording/fault"]
        dropped = telemetry.value(
            "agentwatch_processor_dropped_items_total",
            processor="fault",
            signal="logs",
            reason="processor_error",
        )
        result = rec.push(_claude_prompts(6, faulty={1, 4}))
        # accepted, with the two items reported as rejected (OTLP partial success)
        assert result.rejected == 2
        assert "processor_error" in result.message
        assert (
            telemetry.value(
                "agentwatch_processor_dropped_items_total",
                processor="fault",
                signal="logs",
                reason="processor_error",
            )
            == dropped + 2
        )
        wait_for(lambda: len(delivered_seqs(exp)) == 4)
        assert delivered_seqs(exp) == [0, 2, 3, 5]
        for _, data, _ in exp.delivered:
            for record in data.resource_logs[0].scope_logs[0].log_records:  # type: ignore[union-attr]
                keys = {kv.key: kv.value for kv in record.attributes}
                # processed from what was received, fully: normalised and redacted, no trace
                # of the failed first attempt
                assert keys["agentwatch.event"].string_value == "user_prompt"
                assert "half.processed" not in keys
                assert "secret prompt" not in str(keys.get("prompt", ""))  # redacted
        # nothing of the failed records went anywhere
        stored = b"".join(data.SerializeToString() for _, data, _ in exp.delivered)
        assert b"secret prompt" not in stored
    finally:
        assert svc.shutdown()


def test_a_failing_metric_point_costs_only_that_point(tmp_path: Path) -> None:
    from opentelemetry.proto.metrics.v1 import metrics_pb2

    from collector.component import MetricsData

    svc = _fault_service(tmp_path, "metrics")
    try:
        rec = svc.receivers["inject"]
        assert isinstance(rec, InjectReceiver)
        exp = RecordingExporter.instances["recording/fault"]
        data = MetricsData()
        rm = data.resource_metrics.add()
        rm.resource.attributes.append(attr("service.name", "claude-code"))
        metric = rm.scope_metrics.add().metrics.add(name="claude_code.session.count", unit="1")
        metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
        metric.sum.is_monotonic = True
        for i in range(3):
            point = metric.sum.data_points.add(as_int=i + 1, time_unix_nano=1_700_000_000 + i)
            point.attributes.append(attr("session.id", f"s-{i}"))
            if i == 1:
                point.attributes.append(attr("fault", "raise"))
        assert rec.push(data).rejected == 1
        wait_for(lambda: len(exp.delivered) >= 1 and idle(svc))
        points = [
            (m.name, m.sum.aggregation_temporality, m.sum.is_monotonic, p.as_int)
            for _, out, _ in exp.delivered
            for r in out.resource_metrics  # type: ignore[union-attr]
            for s in r.scope_metrics
            for m in s.metrics
            for p in m.sum.data_points
        ]
        delta = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
        assert points == [
            ("claude_code.session.count", delta, True, 1),
            ("claude_code.session.count", delta, True, 3),
        ]
    finally:
        assert svc.shutdown()


def idle(svc: Service) -> bool:
    return all(runner.queue.items == 0 for runner in svc.runners.values())
