from __future__ import annotations

import threading
from pathlib import Path

import pytest

from collector.component import QueueConfig, Signal
from collector.queue import MemoryQueue, WalQueue
from tests.support.otlp_factory import logs, seqs


def _all_seqs(q: WalQueue | MemoryQueue, batch) -> list[int]:  # type: ignore[no-untyped-def]
    return [s for part in q.load(batch) for s in seqs(part)]  # type: ignore[arg-type]


def test_memory_queue_batches_same_signal_in_order() -> None:
    q = MemoryQueue(QueueConfig(batch_max_items=5, batch_timeout=0))
    q.put(Signal.LOGS, logs(2), 2)
    q.put(Signal.LOGS, logs(2, start=2), 2)
    q.put(Signal.LOGS, logs(2, start=4), 2)
    b = q.take(threading.Event())
    assert b is not None and _all_seqs(q, b) == [0, 1, 2, 3]
    assert q.items == 6  # still counted until done
    q.done(b)
    b2 = q.take(threading.Event())
    assert b2 is not None and _all_seqs(q, b2) == [4, 5]
    assert b.batch_id != b2.batch_id


def test_memory_queue_ids_differ_between_runs() -> None:
    a, b = MemoryQueue(QueueConfig()), MemoryQueue(QueueConfig())
    assert a.id_prefix != b.id_prefix


def test_queue_size_bound() -> None:
    q = MemoryQueue(QueueConfig(queue_size=4))
    assert q.has_room(10)  # an empty queue takes one oversized request rather than refuse forever
    q.put(Signal.LOGS, logs(3), 3)
    assert q.has_room(1) and not q.has_room(2)


def test_wal_survives_restart_and_reforms_inflight_batch(tmp_path: Path) -> None:
    cfg = QueueConfig(storage="wal", batch_max_items=4, batch_timeout=0)
    q = WalQueue(cfg, tmp_path)
    for i in range(3):
        q.put(Signal.LOGS, logs(2, start=2 * i), 2)
    first = q.take(threading.Event())
    assert first is not None and _all_seqs(q, first) == [0, 1, 2, 3]
    # crash: no done(), no close(); the dead process's lock goes with it
    q._lock_fh.close()
    q2 = WalQueue(cfg, tmp_path)
    q2.put(Signal.LOGS, logs(1, start=6), 1)
    again = q2.take(threading.Event())
    assert again is not None
    assert again.batch_id == first.batch_id  # same id, so the exporter can deduplicate
    assert _all_seqs(q2, again) == [0, 1, 2, 3]
    q2.done(again)
    q2.close()
    q3 = WalQueue(cfg, tmp_path)
    rest = q3.take(threading.Event())
    assert rest is not None and _all_seqs(q3, rest) == [4, 5, 6]
    q3.done(rest)
    assert q3.items == 0


def test_wal_refuses_a_second_user(tmp_path: Path) -> None:
    q = WalQueue(QueueConfig(storage="wal"), tmp_path)
    with pytest.raises(RuntimeError, match="in use"):
        WalQueue(QueueConfig(storage="wal"), tmp_path)
    q.close()
    WalQueue(QueueConfig(storage="wal"), tmp_path).close()


def test_wal_cuts_torn_tail(tmp_path: Path) -> None:
    cfg = QueueConfig(storage="wal", batch_timeout=0)
    q = WalQueue(cfg, tmp_path)
    q.put(Signal.LOGS, logs(2), 2)
    q.put(Signal.LOGS, logs(2, start=2), 2)
    q.close()
    seg = next(tmp_path.glob("seg-*.wal"))
    with open(seg, "r+b") as fh:  # a crash in the middle of the second write
        fh.truncate(seg.stat().st_size - 5)
    q2 = WalQueue(cfg, tmp_path)
    b = q2.take(threading.Event())
    assert b is not None and _all_seqs(q2, b) == [0, 1]
    q2.put(Signal.LOGS, logs(1, start=9), 1)  # appends after the cut, readable
    q2.done(b)
    b2 = q2.take(threading.Event())
    assert b2 is not None and _all_seqs(q2, b2) == [9]


def test_wal_byte_bound_and_cleanup(tmp_path: Path) -> None:
    cfg = QueueConfig(storage="wal", max_bytes=2000, batch_timeout=0)
    q = WalQueue(cfg, tmp_path)
    while q.has_room(10):
        q.put(Signal.LOGS, logs(10), 10)
    assert q.bytes >= 2000
    while q.items:
        b = q.take(threading.Event())
        assert b is not None
        q.done(b)
    assert q.has_room(10)
    assert q.bytes == 0 and not list(tmp_path.glob("seg-*.wal"))


def test_wal_byte_bound_counts_only_undelivered_records(tmp_path: Path) -> None:
    """Delivered records still on disk in the live segment do not count against max_bytes."""
    cfg = QueueConfig(storage="wal", max_bytes=20_000, batch_timeout=0)
    q = WalQueue(cfg, tmp_path)
    for i in range(500):  # far more bytes in total than max_bytes, delivered as they come
        assert q.has_room(1), f"refused at request {i} with {q.items} item(s) queued"
        q.put(Signal.LOGS, logs(1, start=i), 1)
        b = q.take(threading.Event())
        assert b is not None
        q.done(b)
    assert q.bytes == 0
    on_disk = sum(p.stat().st_size for p in tmp_path.glob("seg-*.wal"))
    assert on_disk <= 2 * 64 * 1024  # old segments are dropped as they are delivered


class _FailingFile:
    """A segment file whose next write fails half-way, as on a full disk."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real = real

    def write(self, data: bytes) -> int:
        self.real.write(data[: len(data) // 2])
        self.real.flush()
        raise OSError(28, "No space left on device")

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.real, name)


def test_wal_write_failure_leaves_no_torn_record(tmp_path: Path) -> None:
    cfg = QueueConfig(storage="wal", batch_timeout=0)
    q = WalQueue(cfg, tmp_path)
    q.put(Signal.LOGS, logs(1, start=0), 1)
    q._fh = _FailingFile(q._fh)  # type: ignore[assignment]
    with pytest.raises(OSError):
        q.put(Signal.LOGS, logs(1, start=1), 1)
    q.put(Signal.LOGS, logs(1, start=2), 1)  # the disk recovered
    q._lock_fh.close()  # crash
    q2 = WalQueue(cfg, tmp_path)
    got: list[int] = []
    while q2.items:
        b = q2.take(threading.Event())
        assert b is not None
        got += _all_seqs(q2, b)
        q2.done(b)
    assert got == [0, 2]


def test_wal_written_before_the_record_model_is_read_back_in_order_after_an_upgrade(
    tmp_path: Path,
) -> None:
    """Entries an older release wrote as protobuf and new record-model entries, interleaved,
    come back as records in their order and with their batch id, so nothing queued before an
    upgrade is lost or sent twice."""
    from collector.records import Logs

    cfg = QueueConfig(storage="wal", batch_max_items=100, batch_timeout=0)
    q = WalQueue(cfg, tmp_path)
    q.put(Signal.LOGS, logs(2, start=0), 2)  # as the previous release wrote them
    q.put(Signal.LOGS, Logs.from_proto(logs(2, start=2)), 2)
    q.put(Signal.LOGS, logs(1, start=4), 1)
    q._lock_fh.close()  # crash
    q2 = WalQueue(cfg, tmp_path)
    batch = q2.take(threading.Event())
    assert batch is not None
    parts = q2.load(batch)
    assert all(isinstance(p, Logs) for p in parts)
    assert _all_seqs(q2, batch) == [0, 1, 2, 3, 4]
