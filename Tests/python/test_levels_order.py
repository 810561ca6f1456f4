"""Levels (NONE / SUMMARY / DETAILED), dimension rendering and export order."""

from __future__ import annotations

import itertools
import random

import pytest

import kplm
from conftest import RecordingSink

K = kplm.MetricKey


def test_none_records_nothing_and_never_touches_the_sink(make_manager, clock):
    sink = RecordingSink()
    manager = make_manager(level=kplm.Level.NONE, clock=clock, sink=sink, upload_interval_ms=10)
    manager.start()
    manager.put("UserRecordsPut", 1, stream="s", shard_id="1", error_code="E")
    manager.metric("UserRecordsPut", stream="s").put(5)
    assert manager.snapshots() == []
    assert manager.snapshot() == {}
    manager.flush()
    manager.close()
    assert sink.calls == []


def test_none_checks_only_what_costs_nothing(make_manager):
    manager = make_manager(level=kplm.Level.NONE)
    # checked: missing/empty name, non-finite value
    for bad in (dict(name=None), dict(name=""), dict(name="m", value=float("nan")),
                dict(name="m", value=float("inf"))):
        with pytest.raises(kplm.InvalidArgumentError):
            manager.put(**bad)
    # not checked: nothing is recorded, so these are accepted
    manager.put(b"\xc0\xaf")
    manager.put("n" * 300)
    manager.put("m", stream=b"\xed\xa0\x80", shard_id="x" * 2000)
    assert manager.snapshots() == []


def test_none_close_then_put_is_eclosed(make_manager):
    manager = make_manager(level=kplm.Level.NONE)
    manager.start()
    manager.close()
    with pytest.raises(kplm.ClosedError):
        manager.put("m")


def test_summary_drops_shard_and_error_code(make_manager, clock):
    sink = RecordingSink()
    manager = make_manager(level=kplm.Level.SUMMARY, clock=clock, sink=sink)
    manager.start()
    manager.put("ErrorsByCode", 1, stream="s", shard_id="shardId-1", error_code="Throttled")
    manager.put("ErrorsByCode", 2, stream="s", shard_id="shardId-2", error_code="Internal")
    manager.put("ErrorsByCode", 4, shard_id="shardId-3")
    handle = manager.metric("ErrorsByCode", stream="s", shard_id="x", error_code="y")
    assert handle.key == K("ErrorsByCode", "s")
    handle.put(8)
    assert manager.snapshot() == {
        K("ErrorsByCode"): (1, 4.0, 4.0, 4.0),
        K("ErrorsByCode", "s"): (3, 11.0, 1.0, 8.0),
    }
    # the eventful sink sees the formed key's dimensions
    assert [e.dimensions for e in sink.events[:3]] == [
        (("stream", "s"),), (("stream", "s"),), ()]
    manager.flush()
    assert sorted(s.dimensions for s in sink.batches[0]) == [(), (("stream", "s"),)]


def test_detailed_keeps_every_dimension_in_order(make_manager):
    manager = make_manager()
    manager.put("ErrorsByCode", 1, stream="orders", shard_id="shardId-7", error_code="Throttled")
    manager.put("ErrorsByCode", 1, error_code="Throttled")
    manager.put("ErrorsByCode", 1, shard_id="shardId-7")
    manager.put("ErrorsByCode", 1, stream="orders", error_code="Throttled")
    dims = {s.dimensions for s in manager.snapshots()}
    assert dims == {
        (("stream", "orders"), ("shard", "shardId-7"), ("error_code", "Throttled")),
        (("error_code", "Throttled"),),
        (("shard", "shardId-7"),),
        (("stream", "orders"), ("error_code", "Throttled")),
    }


def test_empty_dimension_is_the_same_as_absent(make_manager):
    manager = make_manager()
    manager.put("m", 1)
    manager.put("m", 2, stream="", shard_id="", error_code="")
    manager.put("m", 4, stream=b"", shard_id=None, error_code=b"")
    manager.metric("m", stream="", shard_id="", error_code="").put(8)
    manager.put("m", 16, stream="s", shard_id="")
    manager.put("m", 32, stream="s")
    assert manager.snapshot() == {
        K("m"): (4, 15.0, 1.0, 8.0),
        K("m", "s"): (2, 48.0, 16.0, 32.0),
    }


def test_different_dimensions_are_different_keys(make_manager):
    manager = make_manager()
    manager.put("m", stream="a")
    manager.put("m", stream="b")
    manager.put("m", shard_id="a")
    manager.put("m", error_code="a")
    manager.put("M")
    assert len(manager.snapshots()) == 5


def _sort_key(snap):
    return (snap.name.encode(), tuple((n.encode(), v.encode()) for n, v in snap.dimensions))


def test_snapshots_and_exports_are_sorted(make_manager, clock):
    sink = RecordingSink(eventful=False)
    manager = make_manager(clock=clock, sink=sink)
    manager.start()
    names = ["b", "B", "a", "aa", "Z", "\u00e9", "z", "a b", "\U0001f600", "\u20ac"]
    dim_choices = [
        {}, {"stream": "s"}, {"stream": "S"}, {"stream": "s", "shard_id": "1"},
        {"stream": "s", "error_code": "E"}, {"stream": "s", "shard_id": "1", "error_code": "E"},
        {"shard_id": "0"}, {"error_code": "A"}, {"stream": "s", "shard_id": "10"},
        {"stream": "s", "shard_id": "9"}, {"stream": "\u00e9"},
    ]
    combos = list(itertools.product(names, dim_choices))
    random.Random(7).shuffle(combos)
    for name, dims in combos:
        manager.put(name, 1, **dims)
    snaps = manager.snapshots()
    assert len(snaps) == len(combos)
    assert snaps == sorted(snaps, key=_sort_key)
    # spot checks of the rule: bytewise names, prefix lists first
    order = [(s.name, s.dimensions) for s in snaps]
    assert order.index(("B", ())) < order.index(("a", ()))
    assert order.index(("z", ())) < order.index(("\u00e9", ()))
    assert order.index(("a", (("stream", "s"),))) < order.index(
        ("a", (("stream", "s"), ("error_code", "E"))))
    assert order.index(("a", (("stream", "s"), ("error_code", "E")))) < order.index(
        ("a", (("stream", "s"), ("shard", "1"))))
    assert order.index(("a", (("error_code", "A"),))) < order.index(("a", (("shard", "0"),)))
    assert order.index(("a", (("stream", "s"), ("shard", "10")))) < order.index(
        ("a", (("stream", "s"), ("shard", "9"))))
    manager.flush()
    (batch,) = sink.batches
    assert batch == sorted(batch, key=_sort_key)
    assert [(s.name, s.dimensions) for s in batch] == order
