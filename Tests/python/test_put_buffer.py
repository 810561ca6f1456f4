"""Buffered puts (kplm._buffer): exact, in their second, handed over by every flush, read and close."""

from __future__ import annotations

import logging
import math
import threading
import time

import pytest

import kplm
from conftest import RecordingSink, stats_by_key

K = kplm.MetricKey


def _buffering(manager: kplm.Manager) -> bool:
    core = manager._core
    return core is not None and core.buffers is not None and core.buffers.enabled


def _total(batches, name="m"):
    return sum(s.count for batch in batches for s in batch if s.name == name)


def test_puts_are_buffered_only_where_they_can_be(make_manager):
    assert _buffering(make_manager(level=kplm.Level.DETAILED))
    assert _buffering(make_manager(level=kplm.Level.DETAILED, sink=RecordingSink(eventful=False)))
    assert not _buffering(make_manager(level=kplm.Level.NONE))
    assert not _buffering(make_manager(level=kplm.Level.DETAILED, clock=kplm.ManualClock(5.0)))
    # record runs inside each put: an eventful sink turns buffering off.
    eventful = RecordingSink(eventful=True)
    manager = make_manager(level=kplm.Level.DETAILED, sink=eventful)
    assert not _buffering(manager)
    manager.start()
    manager.put("m", 2.0)
    assert [e.value for e in eventful.events] == [2.0]


def test_reads_see_every_put_at_once(make_manager):
    manager = make_manager(level=kplm.Level.DETAILED)
    handle = manager.metric("h", stream="s")
    for i in range(1000):
        manager.put("m", float(i), stream="s")
        handle.put(2.0)
    assert manager.query("m", stream="s").count == 1000
    assert manager.query_name("h").count == 1000
    stats = {snap.key: snap.stats for snap in manager.snapshots()}
    assert stats[K("m", "s")] == (1000, 499500.0, 0.0, 999.0)
    assert stats[K("h", "s")] == (1000, 2000.0, 2.0, 2.0)


def test_values_land_in_the_second_they_were_put_in(make_manager):
    manager = make_manager(level=kplm.Level.DETAILED)
    handle = manager.metric("h")
    # Put late in one second, then early in the next: the buffer of the first
    # second must be handed over stamped with it, not with the next one.
    now = time.monotonic()
    time.sleep(math.floor(now) + 1.0 - now + 0.6)   # 0.6 s into a second
    handle.put(1.0)
    manager.put("m", 1.0)
    manager.put("m", 1.0)
    now = time.monotonic()
    time.sleep(math.floor(now) + 1.0 - now + 0.05)   # just into the next second
    handle.put(10.0)
    manager.put("m", 10.0)
    # The current second alone holds the late puts.
    assert manager.query("h", seconds=1) == (1, 10.0, 10.0, 10.0)
    assert manager.query("m", seconds=1) == (1, 10.0, 10.0, 10.0)
    assert manager.query("m", seconds=2).count == 3


def test_the_periodic_flush_exports_buffered_puts_without_help(make_manager):
    sink = RecordingSink(eventful=False)
    manager = make_manager(level=kplm.Level.DETAILED, sink=sink, upload_interval_ms=100.0)
    manager.start()
    handle = manager.metric("m")
    for _ in range(500):
        handle.put(1.0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _total(sink.batches) < 500:
        time.sleep(0.02)
    assert _total(sink.batches) == 500, "the uploader's flush did not hand the buffer over"


def test_close_exports_everything_put_from_many_threads(make_manager):
    sink = RecordingSink(eventful=False)
    manager = make_manager(level=kplm.Level.DETAILED, sink=sink, upload_interval_ms=20.0)
    manager.start()
    handle = manager.metric("m")
    per_thread = 20000

    def work(i: int) -> None:
        for j in range(per_thread):
            if j % 2:
                handle.put(1.0)
            else:
                manager.put("m", 1.0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    manager.close()
    assert _total(sink.batches) == 4 * per_thread
    # Every observation exactly once: the merged batches sum to the puts.
    assert sum(s.sum for batch in sink.batches for s in batch if s.name == "m") == 4 * per_thread


def test_a_put_racing_with_close_is_exported_or_refused(make_manager, caplog):
    sink = RecordingSink(eventful=False)
    manager = make_manager(level=kplm.Level.DETAILED, sink=sink, upload_interval_ms=10.0)
    manager.start()
    handle = manager.metric("m")
    accepted = [0, 0]
    refused_by_raise = [0, 0]

    def work(i: int) -> None:
        while True:
            try:
                (handle.put if i else lambda v: manager.put("m", v))(1.0)
                accepted[i] += 1
            except kplm.ClosedError:
                refused_by_raise[i] += 1
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    with caplog.at_level(logging.WARNING, logger="kplm"):
        manager.close()
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads)
        # What a put appended after close's hand-over is refused at the next one.
        manager.free()
    refused_late = 0
    for record in caplog.records:
        if "put while the manager was closing were refused" in record.getMessage():
            refused_late += int(record.getMessage().split()[1])
    assert refused_by_raise == [1, 1]
    assert _total(sink.batches) + refused_late == sum(accepted)


def test_put_after_close_and_bad_values_raise_as_before(make_manager):
    manager = make_manager(level=kplm.Level.DETAILED)
    handle = manager.metric("m")
    manager.put("m", 1.0)
    handle.put(1.0)
    with pytest.raises(kplm.InvalidArgumentError):
        handle.put(math.nan)
    with pytest.raises(kplm.InvalidArgumentError):
        manager.put("m", math.inf)
    with pytest.raises(TypeError):
        handle.put("1")   # type: ignore[arg-type]
    manager.start()
    manager.close()
    with pytest.raises(kplm.ClosedError):
        handle.put(1.0)
    with pytest.raises(kplm.ClosedError):
        manager.put("m", 1.0)
    assert manager.query("m").count == 2
