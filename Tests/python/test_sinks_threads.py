"""Eventful sinks, the periodic uploader, re-entrant sinks, threads and the key cap."""

from __future__ import annotations

import threading
import time

import pytest

import kplm
from conftest import RecordingSink, run_with_timeout, stats_by_key

K = kplm.MetricKey


def test_record_is_called_per_put_with_the_formed_key(make_manager, clock):
    sink = RecordingSink()
    manager = make_manager(clock=clock, sink=sink)
    manager.put("before-start")
    manager.start()
    clock.set(1001.5)
    manager.put("ErrorsByCode", 3, stream="s", shard_id="shardId-1", error_code="Throttled")
    clock.set(1002.25)
    manager.put("UserRecordsPut", 1.5, stream="s", shard_id="")
    with pytest.raises(kplm.InvalidArgumentError):
        manager.put("UserRecordsPut", float("nan"))  # refused: no event
    assert sink.events == [
        kplm.Event("ErrorsByCode", 3.0, 1001.5,
                   (("stream", "s"), ("shard", "shardId-1"), ("error_code", "Throttled"))),
        kplm.Event("UserRecordsPut", 1.5, 1002.25, (("stream", "s"),)),
    ]
    manager.close()
    with pytest.raises(kplm.ClosedError):
        manager.put("after-close")
    assert len(sink.events) == 2


def test_record_is_called_for_metric_handle_puts(make_manager, clock):
    sink = RecordingSink()
    manager = make_manager(clock=clock, sink=sink)
    handle = manager.metric("BufferingTime", stream="s")
    manager.start()
    handle.put(12.0)
    assert sink.events == [kplm.Event("BufferingTime", 12.0, 1000.0, (("stream", "s"),))]


def test_record_exception_is_reported_and_the_put_still_counts(make_manager, caplog):
    class BadRecord(RecordingSink):
        def _record(self, event):
            raise ValueError("record broke")

    sink = BadRecord()
    manager = make_manager(sink=sink)
    manager.start()
    with caplog.at_level("ERROR", logger="kplm"):
        manager.put("m", 1)
    assert isinstance(manager.last_sink_error, ValueError)
    assert manager.snapshot() == {K("m"): (1, 1.0, 1.0, 1.0)}


def test_periodic_uploader_flushes_by_itself():
    sink = kplm.InMemorySink()
    manager = kplm.Manager(level=kplm.Level.DETAILED, sink=sink, upload_interval_ms=50)
    try:
        manager.put("UserRecordsPut", 2)
        manager.start()
        assert sink.wait_for_exports(1, timeout=10.0), "no periodic export within 10 s"
        manager.put("UserRecordsPut", 3)
        assert sink.wait_for_exports(2, timeout=10.0), "no second periodic export"
        manager.close()
        assert sink.totals() == {K("UserRecordsPut"): (2, 5.0, 2.0, 3.0)}
        assert sink.closed == 1
    finally:
        manager.free()


def test_sink_may_put_from_export_and_record(make_manager):
    class Reentrant(RecordingSink):
        manager = None

        def export(self, snapshots):
            super().export(snapshots)
            if any(s.name == "m" for s in snapshots):
                self.manager.put("FromExport", 1)

        def _record(self, event):
            super()._record(event)
            if event.name == "m":
                self.manager.put("FromRecord", event.value)

    sink = Reentrant()
    manager = make_manager(sink=sink)
    sink.manager = manager
    manager.start()
    run_with_timeout(lambda: manager.put("m", 2))
    run_with_timeout(manager.flush)
    run_with_timeout(manager.flush)
    exported = {}
    for batch in sink.batches:
        exported.update(stats_by_key(batch))
    assert exported[K("m")] == (1, 2.0, 2.0, 2.0)
    assert exported[K("FromRecord")][:2] == (1, 2.0)
    assert exported[K("FromExport")] == (1, 1.0, 1.0, 1.0)
    assert manager.last_sink_error is None


def test_sink_put_from_the_uploader_thread_does_not_deadlock():
    class Reentrant:
        def __init__(self):
            self.exports = threading.Event()
            self.manager = None

        def export(self, snapshots):
            if any(s.name == "m" for s in snapshots):
                self.manager.put("FromExport")
            else:
                self.exports.set()

    sink = Reentrant()
    manager = kplm.Manager(level=kplm.Level.DETAILED, sink=sink, upload_interval_ms=20)
    sink.manager = manager
    try:
        manager.put("m")
        manager.start()
        assert sink.exports.wait(10.0), "uploader did not export the data put from export"
        run_with_timeout(manager.close)
        assert manager.last_sink_error is None
    finally:
        manager.free()


def test_flush_close_free_from_a_callback_get_estate(make_manager):
    class Meddler(RecordingSink):
        manager = None
        outcomes = None

        def export(self, snapshots):
            super().export(snapshots)
            if self.manager is None:
                return
            self.outcomes = []
            for call in (self.manager.flush, self.manager.close):
                try:
                    call()
                    self.outcomes.append("ok")
                except kplm.KplmError as exc:
                    self.outcomes.append(exc.status)
            self.manager.free()  # does nothing from a callback

    sink = Meddler(eventful=False)
    manager = make_manager(sink=sink)
    sink.manager = manager
    manager.start()
    manager.put("m")
    run_with_timeout(manager.flush)
    assert sink.outcomes == [kplm.Status.ESTATE, kplm.Status.ESTATE]
    assert manager.last_sink_error is None
    # still alive and started
    manager.put("m", 2)
    sink.manager = None
    run_with_timeout(manager.flush)
    assert len(sink.batches) == 2
    assert manager.snapshot() == {K("m"): (2, 3.0, 1.0, 2.0)}


def test_threads_putting_while_flushing_export_exact_totals(make_manager):
    sink = kplm.InMemorySink()
    manager = make_manager(sink=sink, upload_interval_ms=5)  # uploader flushes too
    manager.start()
    n_threads, n_puts = 4, 2500
    names = ["UserRecordsPut", "UserRecordsDataPut", "ErrorsByCode", "BufferingTime"]
    expected = {}
    for t in range(n_threads):
        for i in range(n_puts):
            key = K(names[i % 4], f"stream-{t % 2}", None, "Throttled" if i % 4 == 2 else None)
            value = float((i * 7 + t) % 13 - 3)
            c, s, lo, hi = expected.get(key, (0, 0.0, value, value))
            expected[key] = (c + 1, s + value, min(lo, value), max(hi, value))

    def producer(t):
        handle = manager.metric("UserRecordsPut", stream=f"stream-{t % 2}")
        for i in range(n_puts):
            value = float((i * 7 + t) % 13 - 3)
            if i % 100 == 99:
                time.sleep(0.001)   # buffered puts are fast: spread them over many flushes
            if i % 4 == 0:
                handle.put(value)
            else:
                manager.put(names[i % 4], value, stream=f"stream-{t % 2}",
                            error_code="Throttled" if i % 4 == 2 else None)

    stop = threading.Event()
    flush_errors = []

    def flusher():
        while not stop.is_set():
            try:
                manager.flush()
            except kplm.KplmError as exc:  # pragma: no cover - reported below
                flush_errors.append(exc)
            time.sleep(0.001)

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(n_threads)]
    flush_thread = threading.Thread(target=flusher)
    flush_thread.start()
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    stop.set()
    flush_thread.join(30)
    run_with_timeout(manager.close, timeout=30)
    assert flush_errors == []
    assert sink.export_count > 1
    for batch in sink.batches:
        stats_by_key(batch)  # at most one snapshot per key per batch
    assert sink.totals() == expected


def test_max_metrics_cap_and_refused_count(make_manager):
    manager = make_manager(max_metrics=3)
    manager.put("a")
    manager.put("b")
    manager.put("a", stream="s")
    with pytest.raises(kplm.LimitError) as excinfo:
        manager.put("c")
    assert excinfo.value.status == kplm.Status.ELIMIT
    with pytest.raises(kplm.LimitError):
        manager.put("a", stream="t")
    manager.put("a", 5)  # existing keys keep working
    snap = manager.snapshot()
    assert snap[K(kplm.METRIC_REFUSED)] == (2, 2.0, 1.0, 1.0)
    assert snap[K("a")] == (2, 6.0, 1.0, 5.0)
    assert set(snap) == {K("a"), K("b"), K("a", "s"), K(kplm.METRIC_REFUSED)}
    with pytest.raises(kplm.LimitError):
        manager.metric("d")
    assert K("d") not in manager.snapshot()


def test_max_metrics_counts_formed_keys_at_summary(make_manager):
    manager = make_manager(level=kplm.Level.SUMMARY, max_metrics=1)
    for shard in range(10):
        manager.put("m", stream="s", shard_id=f"shardId-{shard}", error_code=f"E{shard}")
    assert manager.snapshot() == {K("m", "s"): (10, 10.0, 1.0, 1.0)}


def test_refused_puts_are_not_recorded_as_events(make_manager):
    sink = RecordingSink()
    manager = make_manager(sink=sink, max_metrics=1)
    manager.start()
    manager.put("a")
    with pytest.raises(kplm.LimitError):
        manager.put("b")
    assert [e.name for e in sink.events] == ["a"]


def test_in_memory_sink_helpers(make_manager, clock):
    sink = kplm.InMemorySink(record_events=True)
    manager = make_manager(clock=clock, sink=sink)
    with manager:
        manager.put("m", 1, stream="s")
        manager.flush()
        manager.put("m", 3, stream="s")
    assert sink.opened == 1 and sink.closed == 1
    assert sink.export_count == 2
    assert [len(b) for b in sink.batches] == [1, 1]
    assert sink.totals() == {K("m", "s"): (2, 4.0, 1.0, 3.0)}
    assert [e.value for e in sink.events] == [1.0, 3.0]
    sink.clear()
    assert sink.batches == [] and sink.events == []
    assert not hasattr(kplm.InMemorySink(), "record")  # not eventful unless asked


def test_close_racing_with_putting_threads_loses_no_accepted_put(make_manager):
    sink = kplm.InMemorySink()
    manager = make_manager(sink=sink, upload_interval_ms=2)
    manager.start()
    accepted = [0] * 4
    started = threading.Barrier(5)

    def producer(t):
        started.wait()
        while True:
            try:
                manager.put("UserRecordsPut", 1.0, stream=f"s{t}")
            except kplm.ClosedError:
                return
            accepted[t] += 1

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    started.wait()
    time.sleep(0.05)
    run_with_timeout(manager.close, timeout=30)
    for th in threads:
        th.join(30)
        assert not th.is_alive()
    totals = sink.totals()
    for t in range(4):
        if accepted[t]:
            assert totals[K("UserRecordsPut", f"s{t}")][:2] == (accepted[t], float(accepted[t]))
    assert sum(c for c, *_ in totals.values()) == sum(accepted)


def test_sink_callbacks_never_overlap_and_periodic_retry_after_failure():
    class Strict:
        def __init__(self):
            self.busy = threading.Lock()
            self.overlaps = 0
            self.failures_left = 2
            self.sink = kplm.InMemorySink()

        def _guard(self, fn, *args):
            if not self.busy.acquire(blocking=False):
                self.overlaps += 1
                return fn(*args)
            try:
                time.sleep(0.001)  # widen the window for an overlap
                return fn(*args)
            finally:
                self.busy.release()

        def open(self):
            self._guard(self.sink.open)

        def export(self, snapshots):
            def run(batch):
                if self.failures_left:
                    self.failures_left -= 1
                    raise IOError("transient")
                self.sink.export(batch)
            self._guard(run, snapshots)

        def close(self):
            self._guard(self.sink.close)

    strict = Strict()
    manager = kplm.Manager(level=kplm.Level.DETAILED, sink=strict, upload_interval_ms=3)
    try:
        manager.start()
        stop = threading.Event()
        sink_errors = []

        def flusher():
            while not stop.is_set():
                try:
                    manager.flush()
                except kplm.SinkError as exc:
                    sink_errors.append(exc)

        th = threading.Thread(target=flusher)
        th.start()
        for i in range(300):
            manager.put("RequestTime", float(i))
            if i % 50 == 0:
                time.sleep(0.005)
        stop.set()
        th.join(30)
        run_with_timeout(manager.close, timeout=30)
    finally:
        manager.free()
    assert strict.overlaps == 0
    assert manager.failed_exports == 2
    assert strict.sink.totals() == {K("RequestTime"): (300, float(sum(range(300))), 0.0, 299.0)}


def test_exported_timestamp_unix_matches_window_end(make_manager, clock):
    sink = kplm.InMemorySink()
    manager = make_manager(clock=clock, sink=sink)
    manager.start()
    manager.put("m")
    clock.advance(10.5)  # window_end 1001 is 9.5 s before "now"
    before = time.time()
    manager.flush()
    after = time.time()
    (snap,) = sink.snapshots()
    assert before - 9.5 - 1.0 <= snap.timestamp_unix <= after - 9.5 + 1.0
