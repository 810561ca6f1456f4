"""Free-form dimensions (SPEC §5): ``dimensions=`` on put, metric and query."""

from __future__ import annotations

import pytest

import kplm


@pytest.fixture
def manager(make_manager):
    return make_manager()


def test_the_same_pairs_in_any_order_are_one_key(manager):
    manager.put("Requests", 1, dimensions={"host": "h1", "az": "use1-az1"})
    manager.put("Requests", 2, dimensions=[("az", "use1-az1"), ("host", "h1")])
    manager.put("Requests", 4, dimensions=(("host", b"h1"), (b"az", "use1-az1")))
    handle = manager.metric("Requests", dimensions={"az": "use1-az1", "host": "h1"})
    handle.put(8)
    stats = manager.query("Requests", dimensions={"host": "h1", "az": "use1-az1"})
    assert (stats.count, stats.sum) == (4, 15.0)
    snapshots = manager.snapshots()
    assert len(snapshots) == 1
    assert snapshots[0].dimensions == (("az", "use1-az1"), ("host", "h1"))
    assert snapshots[0].key == handle.key
    assert handle.key == kplm.MetricKey("Requests", extra=(("az", "use1-az1"), ("host", "h1")))


def test_the_seed_arguments_are_pairs_of_the_same_key(manager):
    manager.put("UserRecordsPut", 1, stream="orders", shard_id="shardId-1")
    manager.put("UserRecordsPut", 2, dimensions={"shard": "shardId-1", "stream": "orders"})
    manager.put("UserRecordsPut", 4, stream="orders", dimensions={"shard": "shardId-1"})
    assert manager.query("UserRecordsPut", "orders", "shardId-1").sum == 7.0
    manager.put("UserRecordsPut", 1, stream="orders", dimensions={"host": "h"})
    (with_host,) = [s for s in manager.snapshots() if ("host", "h") in s.dimensions]
    assert with_host.dimensions == (("stream", "orders"), ("host", "h"))
    assert with_host.key.stream == "orders" and with_host.key.extra == (("host", "h"),)


def test_reported_order_is_the_three_first_then_the_others_bytewise(manager):
    manager.put("R", 1, dimensions={"z\u00e9": "1", "host": "h", "error_code": "E", "app": "a", "Zone": "z",
                                    "stream": "s", "zz": "2", "shard": "sh"})
    (snapshot,) = manager.snapshots()
    assert [name for name, _ in snapshot.dimensions] == [
        "stream", "shard", "error_code", "Zone", "app", "host", "zz", "z\u00e9"]


def test_absent_values_and_no_pairs(manager):
    manager.put("R", 1, dimensions={"host": "h", "az": None, "app": ""})
    manager.put("R", 1, dimensions={"host": "h"})
    manager.put("Bare", 1, dimensions={})
    manager.put("Bare", 1)
    assert manager.query("R", dimensions={"host": "h"}).count == 2
    assert manager.query("Bare").count == 2


@pytest.mark.parametrize("dimensions", [
    pytest.param({f"d{i}": "v" for i in range(31)}, id="31-pairs"),
    pytest.param([("host", "a"), ("host", "b")], id="repeated"),
    pytest.param([("host", None), ("host", "b")], id="repeated-first-absent"),
    pytest.param({"": "v"}, id="empty-name"),
    pytest.param({"n" * 256: "v"}, id="long-name"),
    pytest.param({"n": "v" * 1025}, id="long-value"),
    pytest.param({b"\xff": "v"}, id="invalid-utf8-name"),
    pytest.param({"n": b"\xc3"}, id="invalid-utf8-value"),
])
def test_refused_dimensions(manager, dimensions):
    for call in (lambda: manager.put("Bad", 1, dimensions=dimensions),
                 lambda: manager.metric("Bad", dimensions=dimensions),
                 lambda: manager.query("Bad", dimensions=dimensions)):
        with pytest.raises(kplm.InvalidArgumentError):
            call()
    with pytest.raises(kplm.InvalidArgumentError):   # stream= and a "stream" pair
        manager.put("Bad", 1, stream="s", dimensions={"stream": "s"})
    assert manager.snapshots() == []


def test_the_limits_themselves_are_accepted(manager):
    manager.put("Wide", 1, dimensions={f"d{i:02}": "v" for i in range(30)})
    manager.put("Long", 1, dimensions={"n" * 255: "v" * 1024})
    assert len(manager.snapshots()) == 2


def test_malformed_pairs_are_type_errors(manager):
    with pytest.raises(TypeError):
        manager.put("Bad", 1, dimensions=[("only-a-name",)])
    with pytest.raises(TypeError):
        manager.put("Bad", 1, dimensions={"n": 3})
    with pytest.raises(kplm.InvalidArgumentError):
        manager.put("Bad", 1, dimensions={"a\0b": "v"})


def test_summary_keeps_the_free_form_pairs(make_manager):
    manager = make_manager(level=kplm.Level.SUMMARY)
    manager.put("UserRecordsPut", 1, dimensions={"stream": "s", "shard": "sh1", "error_code": "E", "host": "h"})
    handle = manager.metric("UserRecordsPut", dimensions={"stream": "s", "shard": "sh2", "host": "h"})
    handle.put(1)
    (snapshot,) = manager.snapshots()
    assert snapshot.dimensions == (("stream", "s"), ("host", "h"))
    assert snapshot.count == 2
    assert handle.key == snapshot.key


def test_exported_exactly_once(make_manager):
    sink = kplm.InMemorySink()
    manager = make_manager(sink=sink)
    manager.start()
    for v in range(1, 11):
        manager.put("Latency", v, dimensions={"region": "eu", "host": "h"} if v % 2 else [("host", "h"), ("region", "eu")])
    manager.flush()
    manager.put("Latency", 100, dimensions={"host": "h", "region": "eu"})
    manager.flush()
    manager.flush()
    exported = [s for s in sink.snapshots() if s.name == "Latency"]
    assert sum(s.count for s in exported) == 11
    assert sum(s.sum for s in exported) == 155.0
    assert {s.dimensions for s in exported} == {(("host", "h"), ("region", "eu"))}


def test_a_library_without_kplm_put_dims_gets_a_clear_error():
    from kplm._dimensions import require_dimensions

    class Library10:   # what ctypes shows of a 1.0 libkplm: no kplm_put_dims
        pass

    with pytest.raises(kplm.StateError, match="libkplm 1.1"):
        require_dimensions(Library10())
    require_dimensions(kplm._library.lib())


def test_rollups_attach_them_where_configured(make_manager):
    manager = make_manager(granularity=kplm.Granularity.SHARD)
    manager.set_dimension_granularity("rack", kplm.Granularity.SHARD)
    with pytest.raises(kplm.InvalidArgumentError):
        manager.set_dimension_granularity("rack", kplm.Granularity.NONE)
    manager.put("UserRecordsPut", 5, dimensions={"stream": "s", "shard": "sh1", "rack": "r1", "host": "h"})
    assert [tuple(n for n, _ in s.dimensions) for s in manager.snapshots()] == [
        ("host",), ("host", "StreamName"), ("host", "StreamName", "ShardId", "rack")]
    manager.start()
    with pytest.raises(kplm.StateError):
        manager.set_dimension_granularity("host", kplm.Granularity.STREAM)


def test_an_iterator_of_pairs_is_read_once(manager):
    for _ in range(3):
        manager.put("R", 1, dimensions=iter([("host", "h"), ("az", "a")]))
        manager.put("R", 1, dimensions=((name, value) for name, value in {"az": "a", "host": "h"}.items()))
    assert manager.query("R", dimensions=iter([("az", "a"), ("host", "h")])).count == 6
    (snapshot,) = manager.snapshots()
    assert snapshot.dimensions == (("az", "a"), ("host", "h"))
    with pytest.raises(TypeError):
        manager.put("R", 1, dimensions=42)
