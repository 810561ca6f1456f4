"""Idle keys give their place back (SPEC §10): removal at a flush, handles that re-create their key."""

from __future__ import annotations

import time

import pytest

import kplm
from conftest import RecordingSink


def test_idle_keys_free_their_place(make_manager):
    clock = kplm.ManualClock(100.0)
    sink = RecordingSink(eventful=False)
    m = make_manager(clock=clock, sink=sink, window_seconds=1, max_metrics=2)
    m.start()
    m.put("UserRecordsPut", stream="a")
    m.put("UserRecordsPut", stream="b")
    with pytest.raises(kplm.LimitError):
        m.put("UserRecordsPut", stream="c")
    m.flush()
    clock.advance(2.0)
    m.flush()   # exported and out of the window: both removed
    m.put("UserRecordsPut", stream="c")
    m.put("UserRecordsPut", stream="d")
    m.close()
    streams = sorted(dict(s.dimensions).get("stream", "") for batch in sink.batches for s in batch
                     if s.name == "UserRecordsPut")
    assert streams == ["a", "b", "c", "d"]


def test_a_handle_re_creates_its_removed_key(make_manager):
    clock = kplm.ManualClock(100.0)
    sink = RecordingSink(eventful=False)
    m = make_manager(clock=clock, sink=sink, window_seconds=1, max_metrics=1)
    m.start()
    handle = m.metric("RequestTime", stream="s")
    handle.put(5.0)
    m.flush()
    clock.advance(2.0)
    m.flush()
    assert m.query("RequestTime", stream="s").count == 0   # removed
    handle.put(7.0)                                        # re-created
    assert m.query("RequestTime", stream="s").count == 1
    m.flush()
    clock.advance(2.0)
    m.flush()
    m.put("Other")                                         # takes the only place
    with pytest.raises(kplm.LimitError):
        handle.put(9.0)
    m.close()
    sums = [s.sum for batch in sink.batches for s in batch if s.name == "RequestTime"]
    assert sums == [5.0, 7.0]
    refused = [s.count for batch in sink.batches for s in batch if s.name == "KplmMetricsRefused"]
    assert refused == [1]


def test_buffered_handle_puts_re_create_the_key(make_manager):
    # The system clock (puts are buffered): a 1-second window, so the key
    # is idle about two seconds after its last put.
    sink = RecordingSink(eventful=False)
    m = make_manager(sink=sink, window_seconds=1, max_metrics=4)
    m.start()
    handle = m.metric("BufferingTime", stream="s")
    assert m._core is not None and m._core.buffers is not None and m._core.buffers.enabled
    for _ in range(100):
        handle.put(1.0)
    m.flush()
    time.sleep(2.2)
    m.flush()   # idle for a whole window: removed
    assert m.query("BufferingTime", stream="s").count == 0
    for _ in range(50):
        handle.put(2.0)
    m.close()
    counts = [s.count for batch in sink.batches for s in batch if s.name == "BufferingTime"]
    sums = [s.sum for batch in sink.batches for s in batch if s.name == "BufferingTime"]
    assert sum(counts) == 150 and sum(sums) == 200.0
