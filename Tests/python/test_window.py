"""Per-second buckets and the rolling window, driven by an injected Python clock."""

from __future__ import annotations

import time

import pytest

import kplm

K = kplm.MetricKey


@pytest.fixture
def manager(make_manager, clock):
    return make_manager(clock=clock, window_seconds=10)


def only(manager):
    snaps = manager.snapshots()
    assert len(snaps) == 1, snaps
    return snaps[0]


def test_aggregation_within_one_second(manager, clock):
    for value in (3.0, -2.0, 5.5):
        manager.put("BufferingTime", value)
        clock.advance(0.3)  # 1000.0, 1000.3, 1000.6: one bucket
    snap = only(manager)
    assert snap.stats == (3, 6.5, -2.0, 5.5)
    assert (snap.window_start, snap.window_end) == (1000.0, 1001.0)


def test_negative_values_only(manager):
    manager.put("m", -1.0)
    manager.put("m", -5.0)
    manager.put("m", -0.5)
    assert only(manager).stats == (3, -6.5, -5.0, -0.5)


def test_default_value_is_one(manager):
    manager.put("m")
    manager.metric("m").put()
    assert only(manager).stats == (2, 2.0, 1.0, 1.0)


def test_buckets_are_whole_seconds_and_bounds_follow_live_buckets(manager, clock):
    clock.set(1000.1)
    manager.put("m", 1)
    clock.set(1000.9)
    manager.put("m", 2)
    clock.set(1001.0)
    manager.put("m", 3)
    clock.set(1003.5)
    manager.put("m", 4)
    snap = only(manager)
    assert snap.stats == (4, 10.0, 1.0, 4.0)
    assert (snap.window_start, snap.window_end) == (1000.0, 1004.0)

    # window 10 s: at 1009.99 the current second is 1009, second 1000 is still live
    clock.set(1009.99)
    snap = only(manager)
    assert snap.stats == (4, 10.0, 1.0, 4.0)
    assert (snap.window_start, snap.window_end) == (1000.0, 1004.0)

    # at 1010.0 second 1000 (values 1 and 2) leaves the window
    clock.set(1010.0)
    snap = only(manager)
    assert snap.stats == (2, 7.0, 3.0, 4.0)
    assert (snap.window_start, snap.window_end) == (1001.0, 1004.0)

    clock.set(1011.0)
    snap = only(manager)
    assert snap.stats == (1, 4.0, 4.0, 4.0)
    assert (snap.window_start, snap.window_end) == (1003.0, 1004.0)

    # no live bucket: the metric reports nothing
    clock.set(1013.0)
    assert manager.snapshots() == []
    assert manager.snapshot() == {}


def test_eviction_is_per_metric(manager, clock):
    manager.put("old", 1)
    clock.advance(5)
    manager.put("young", 1)
    clock.advance(5)  # 1010: "old" (second 1000) evicted, "young" (1005) alive
    assert [s.name for s in manager.snapshots()] == ["young"]


def test_put_again_after_eviction_starts_fresh(manager, clock):
    manager.put("m", 100)
    clock.advance(30)
    manager.put("m", 1)
    snap = only(manager)
    assert snap.stats == (1, 1.0, 1.0, 1.0)
    assert (snap.window_start, snap.window_end) == (1030.0, 1031.0)


def test_window_of_one_second(make_manager, clock):
    manager = make_manager(clock=clock, window_seconds=1)
    manager.put("m", 1)
    clock.set(1000.999)
    assert only(manager).stats == (1, 1.0, 1.0, 1.0)
    clock.set(1001.0)
    assert manager.snapshots() == []


def test_snapshot_dict_rebuilds_keys(manager):
    manager.put("ErrorsByCode", 1, stream="s", shard_id="shardId-1", error_code="Throttled")
    manager.put("UserRecordsPut", 2, stream="s")
    manager.put("UserRecordsPut", 4, stream="s")
    assert manager.snapshot() == {
        K("ErrorsByCode", "s", "shardId-1", "Throttled"): (1, 1.0, 1.0, 1.0),
        K("UserRecordsPut", "s"): (2, 6.0, 2.0, 4.0),
    }


def test_timestamp_unix_matches_window_end(manager, clock):
    clock.set(1000.25)
    manager.put("m")
    clock.set(1003.5)  # window_end 1001 is 2.5 s before "now"
    before = time.time()
    snap = only(manager)
    after = time.time()
    assert snap.window_end == 1001.0
    assert before - 2.5 - 1.0 <= snap.timestamp_unix <= after - 2.5 + 1.0


def test_python_clock_is_used_for_event_timestamps(make_manager, clock):
    sink = kplm.InMemorySink(record_events=True)
    manager = make_manager(clock=clock, sink=sink)
    manager.start()
    clock.set(1234.75)
    manager.put("m", 1)
    (event,) = sink.events
    assert event.timestamp == 1234.75


def test_clock_exception_is_logged_and_last_reading_used(make_manager, caplog):
    readings = iter([1000.5, 1000.6, 1000.7])

    def flaky():
        try:
            return next(readings)
        except StopIteration:
            raise RuntimeError("clock broke") from None

    manager = make_manager(clock=flaky)
    with caplog.at_level("ERROR", logger="kplm"):
        for _ in range(6):
            manager.put("m", 1)
    snap = only(manager)
    assert snap.count == 6
    assert (snap.window_start, snap.window_end) == (1000.0, 1001.0)
    assert isinstance(manager.clock.last_error, RuntimeError)
    assert any("clock" in r.getMessage() for r in caplog.records)
