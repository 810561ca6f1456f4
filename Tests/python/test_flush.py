"""flush: every observation exported exactly once, failures keep the data."""

from __future__ import annotations

import gc

import pytest

import kplm
from conftest import RecordingSink, stats_by_key

K = kplm.MetricKey


@pytest.fixture
def sink():
    return RecordingSink(eventful=False)


@pytest.fixture
def manager(make_manager, clock, sink):
    m = make_manager(clock=clock, window_seconds=10, sink=sink)
    m.start()
    return m


def test_flush_exports_unexported_data_once(manager, clock, sink):
    manager.put("m", 1)
    clock.advance(1)
    manager.put("m", 2)
    manager.flush()
    assert len(sink.batches) == 1
    (snap,) = sink.batches[0]
    assert snap.stats == (2, 3.0, 1.0, 2.0)
    assert (snap.window_start, snap.window_end) == (1000.0, 1002.0)

    manager.flush()  # nothing new: export not called
    manager.flush()
    assert sink.count("export") == 1


def test_flush_with_no_data_does_not_call_export(manager, sink):
    manager.flush()
    assert sink.count("export") == 0


def test_new_data_in_an_exported_second_is_exported_alone(manager, clock, sink):
    clock.set(1001.2)
    manager.put("m", 10)
    manager.flush()
    clock.set(1001.7)  # same second as the data already exported
    manager.put("m", 3)
    manager.flush()
    assert len(sink.batches) == 2
    (snap,) = sink.batches[1]
    assert snap.stats == (1, 3.0, 3.0, 3.0)
    assert (snap.window_start, snap.window_end) == (1001.0, 1002.0)
    # the rolling window still sees both
    assert manager.snapshot() == {K("m"): (2, 13.0, 3.0, 10.0)}


def test_only_keys_with_new_data_are_exported(manager, clock, sink):
    manager.put("a", 1)
    manager.put("b", 1)
    manager.flush()
    manager.put("b", 5)
    manager.flush()
    assert [s.name for s in sink.batches[1]] == ["b"]


def test_interval_longer_than_window_still_exports_evicted_data_once(manager, clock, sink):
    manager.put("m", 4, stream="s")
    clock.advance(100)  # far past the 10 s window
    assert manager.snapshots() == []
    manager.flush()
    assert len(sink.batches) == 1
    (snap,) = sink.batches[0]
    assert snap.key == K("m", "s")
    assert snap.stats == (1, 4.0, 4.0, 4.0)
    assert (snap.window_start, snap.window_end) == (1000.0, 1001.0)
    manager.flush()
    assert sink.count("export") == 1


def test_one_snapshot_per_key_merging_evicted_and_live_data(manager, clock, sink):
    manager.put("m", 1)
    clock.advance(100)
    manager.put("m", 2)
    manager.flush()
    assert len(sink.batches) == 1
    assert stats_by_key(sink.batches[0]) == {K("m"): (2, 3.0, 1.0, 2.0)}
    (snap,) = sink.batches[0]
    assert (snap.window_start, snap.window_end) == (1000.0, 1101.0)


def test_failed_export_raises_esink_and_data_is_retained(manager, clock, sink, caplog):
    sink.fail = True
    manager.put("m", 1, stream="s")
    manager.put("n", 7)
    with caplog.at_level("ERROR", logger="kplm"):
        with pytest.raises(kplm.SinkError) as excinfo:
            manager.flush()
    assert excinfo.value.status == kplm.Status.ESINK
    assert isinstance(manager.last_sink_error, RuntimeError)
    assert manager.failed_exports == 1
    assert any(r.name == "kplm" and r.levelname == "ERROR" for r in caplog.records)
    assert len(sink.attempts) == 1 and sink.batches == []

    clock.advance(1)
    manager.put("m", 2, stream="s")
    sink.fail = False
    manager.flush()
    assert len(sink.batches) == 1
    assert stats_by_key(sink.batches[0]) == {
        K("m", "s"): (2, 3.0, 1.0, 2.0),
        K("n"): (1, 7.0, 7.0, 7.0),
    }
    batch = {s.name: s for s in sink.batches[0]}
    assert (batch["m"].window_start, batch["m"].window_end) == (1000.0, 1002.0)

    manager.flush()
    assert sink.count("export") == 2  # the failed attempt + the successful one


def test_repeated_failures_lose_nothing(manager, clock, sink):
    sink.fail = True
    expected_sum = 0.0
    for i in range(5):
        manager.put("m", i)
        expected_sum += i
        clock.advance(3)  # crosses the window after a few rounds
        with pytest.raises(kplm.SinkError):
            manager.flush()
    assert manager.failed_exports == 5
    sink.fail = False
    manager.flush()
    assert stats_by_key(sink.batches[0]) == {K("m"): (5, expected_sum, 0.0, 4.0)}


def test_close_exports_remaining_data(make_manager, clock, sink):
    manager = make_manager(clock=clock, sink=sink)
    manager.start()
    manager.put("m", 1)
    manager.flush()
    manager.put("m", 2)
    manager.close()
    assert [stats_by_key(b) for b in sink.batches] == [
        {K("m"): (1, 1.0, 1.0, 1.0)}, {K("m"): (1, 2.0, 2.0, 2.0)}]
    assert sink.calls[-1] == "close"


def test_failed_final_export_is_kept_and_retried_by_the_next_close(make_manager, clock, sink):
    manager = make_manager(clock=clock, sink=sink)
    manager.start()
    manager.put("m", 1)
    sink.fail = True
    with pytest.raises(kplm.SinkError):
        manager.close()
    # Closed to puts, but the sink stays open while its data is pending.
    assert sink.count("close") == 0
    with pytest.raises(kplm.ClosedError):
        manager.put("m", 1)
    sink.fail = False
    manager.close()  # retries the kept export, then closes the sink
    assert sink.calls[-2:] == ["export", "close"]
    assert stats_by_key(sink.batches[-1]) == {K("m"): (1, 1.0, 1.0, 1.0)}
    manager.close()  # nothing left: no export, no second close
    assert sink.count("close") == 1
    assert sink.count("export") == 2


def test_free_after_a_failed_close_closes_the_sink_and_discards(make_manager, clock, sink):
    manager = make_manager(clock=clock, sink=sink)
    manager.start()
    manager.put("m", 1)
    sink.fail = True
    with pytest.raises(kplm.SinkError):
        manager.close()
    manager.free()
    gc.collect()
    assert sink.count("close") == 1
    assert sink.calls[-1] == "close"


def test_refused_metric_is_exported(make_manager, clock, sink):
    manager = make_manager(clock=clock, sink=sink, max_metrics=1)
    manager.start()
    manager.put("a")
    with pytest.raises(kplm.LimitError):
        manager.put("b")
    manager.flush()
    assert stats_by_key(sink.batches[0]) == {
        K("a"): (1, 1.0, 1.0, 1.0),
        K(kplm.METRIC_REFUSED): (1, 1.0, 1.0, 1.0),
    }
