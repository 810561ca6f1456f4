"""KPL parity: metric catalogue, rollups by granularity, KPL level filter,
extra dimensions, namespace and local queries."""

from __future__ import annotations

import ctypes
import gc
import re

import pytest

import kplm
from conftest import HEADER, RecordingSink

K = kplm.MetricKey
G = kplm.Granularity


def lines(snapshots):
    """``[(name, dimensions, (count, sum, min, max))]`` in the order given."""
    return [(s.name, s.dimensions, s.stats) for s in snapshots]


def exported(manager, sink):
    """Flush and return the lines of the single batch the flush exported."""
    before = len(sink.batches)
    manager.flush()
    assert len(sink.batches) == before + 1
    return lines(sink.batches[-1])


# --------------------------------------------------------------------------
# Catalogue (names, units and levels of the KPL metrics: test_kpl_catalogue.py)
# --------------------------------------------------------------------------


def test_dimension_and_other_constants_match_header(header_macros):
    assert kplm.DIMENSION_STREAM_NAME == header_macros["KPLM_DIMENSION_STREAM_NAME"] == "StreamName"
    assert kplm.DIMENSION_SHARD_ID == header_macros["KPLM_DIMENSION_SHARD_ID"] == "ShardId"
    assert kplm.DIMENSION_ERROR_CODE == header_macros["KPLM_DIMENSION_ERROR_CODE"] == "ErrorCode"
    assert header_macros["KPLM_CUMULATIVE"] == "0u"
    assert kplm.CUMULATIVE == 0
    assert kplm.DEFAULT_NAMESPACE == "KinesisProducerLibrary"


def test_enums_match_header():
    text = HEADER.read_text()
    units = dict(re.findall(r"KPLM_UNIT_(\w+) = (\d+)", text))
    granularities = dict(re.findall(r"KPLM_GRANULARITY_(\w+) = (\d+)", text))
    assert {u.name: u.value for u in kplm.Unit} == {k: int(v) for k, v in units.items()}
    assert {g.name: g.value for g in kplm.Granularity} == {k: int(v) for k, v in granularities.items()}
    assert len(kplm.Unit) == 4 and len(kplm.Granularity) == 4


@pytest.mark.parametrize("name", [
    "Custom", "UserRecordsPutX", "UserRecordsPu", "userrecordsput", "UserRecordsPut ",
    kplm.METRIC_REFUSED, "é", None,
])
def test_unknown_names_have_unit_none_and_level_detailed(name):
    assert kplm.metric_unit(name) is kplm.Unit.NONE
    assert kplm.metric_level(name) is kplm.Level.DETAILED


def test_catalogue_input_checks():
    with pytest.raises(kplm.InvalidArgumentError):
        kplm.metric_unit("Buffering\0Time")
    with pytest.raises(TypeError):
        kplm.metric_level(42)


def test_unit_names():
    assert [kplm.unit_name(u) for u in kplm.Unit] == ["None", "Count", "Bytes", "Milliseconds"]
    assert kplm.unit_name(2) == "Bytes"
    for unknown in (4, 99, -1, 2 ** 31 - 1):
        assert kplm.unit_name(unknown) == "None"
    with pytest.raises(TypeError):
        kplm.unit_name("Count")


def test_struct_layouts_of_kpl_fields():
    assert ctypes.sizeof(kplm.KplmConfig) == 80          # 1.2 added kpl_distributions
    assert kplm.KplmConfig.granularity.offset == 56
    assert kplm.KplmConfig.kpl_level_filter.offset == 60
    assert kplm.KplmConfig.metric_namespace.offset == 64
    assert kplm.KplmConfig.kpl_distributions.offset == 72
    assert ctypes.sizeof(kplm.KplmStatistics) == 32
    assert kplm.KplmStatistics.sum.offset == 8 and kplm.KplmStatistics.max.offset == 24


def test_config_init_kpl_defaults():
    cfg = kplm.default_config()
    assert cfg.struct_size == 80
    assert cfg.granularity == kplm.Granularity.NONE
    assert cfg.kpl_level_filter == 0
    assert cfg.metric_namespace is None
    assert cfg.kpl_distributions == 0


# --------------------------------------------------------------------------
# Default output (no granularity)
# --------------------------------------------------------------------------


def test_default_output_unchanged_without_granularity(make_manager, clock):
    sink = RecordingSink(eventful=False)
    manager = make_manager(clock=clock, sink=sink)
    assert manager.granularity is G.NONE and manager.kpl_level_filter is False
    manager.start()
    manager.put("ErrorsByCode", 1, stream="s", shard_id="a", error_code="Throttled")
    manager.put("ErrorsByCode", 2, stream="s", shard_id="b", error_code="Throttled")
    manager.put("UserRecordsPut", 3, stream="s")
    manager.put("UserRecordsPut", 4)
    expected = [
        ("ErrorsByCode", (("stream", "s"), ("shard", "a"), ("error_code", "Throttled")),
         (1, 1.0, 1.0, 1.0)),
        ("ErrorsByCode", (("stream", "s"), ("shard", "b"), ("error_code", "Throttled")),
         (1, 2.0, 2.0, 2.0)),
        ("UserRecordsPut", (), (1, 4.0, 4.0, 4.0)),
        ("UserRecordsPut", (("stream", "s"),), (1, 3.0, 3.0, 3.0)),
    ]
    assert lines(manager.snapshots()) == expected
    assert manager.snapshot() == {
        K("ErrorsByCode", "s", "a", "Throttled"): (1, 1.0, 1.0, 1.0),
        K("ErrorsByCode", "s", "b", "Throttled"): (1, 2.0, 2.0, 2.0),
        K("UserRecordsPut"): (1, 4.0, 4.0, 4.0),
        K("UserRecordsPut", "s"): (1, 3.0, 3.0, 3.0),
    }
    assert exported(manager, sink) == expected


@pytest.mark.parametrize("none", [G.NONE, 0, "none", "NONE"])
def test_granularity_none_spellings(make_manager, none):
    manager = make_manager(granularity=none)
    assert manager.granularity is G.NONE
    manager.put("ErrorsByCode", 1, stream="s", shard_id="a", error_code="E")
    assert lines(manager.snapshots()) == [
        ("ErrorsByCode", (("stream", "s"), ("shard", "a"), ("error_code", "E")), (1, 1.0, 1.0, 1.0))]


@pytest.mark.parametrize("bad", [4, -1, 99])
def test_unknown_granularity_is_refused_by_the_library(bad):
    with pytest.raises(kplm.InvalidArgumentError) as info:
        kplm.Manager(level=kplm.Level.DETAILED, granularity=bad)
    assert info.value.context == "kplm_new"


def test_granularity_name_checks():
    with pytest.raises(kplm.InvalidArgumentError):
        kplm.Manager(level=kplm.Level.DETAILED, granularity="stream_and_shard")
    with pytest.raises(TypeError):
        kplm.Manager(level=kplm.Level.DETAILED, granularity=1.5)


# --------------------------------------------------------------------------
# Rollups
# --------------------------------------------------------------------------


def _put_scenario(manager):
    manager.put("ErrorsByCode", 1, stream="s", shard_id="a", error_code="Throttled")
    manager.put("ErrorsByCode", 1, stream="s", shard_id="b", error_code="Throttled")
    manager.put("ErrorsByCode", 1, stream="t", shard_id="c", error_code="Internal")
    manager.put("UserRecordsPut", 3, stream="s", shard_id="a")
    manager.put("UserRecordsPut", 5, stream="s", shard_id="b")
    manager.put("UserRecordsPut", 7, stream="t", shard_id="c")
    manager.put("UserRecordsPut", 9, stream="s", shard_id="a")


EC, SN, SH = "ErrorCode", "StreamName", "ShardId"

EXPECTED_ROLLUPS = {
    G.GLOBAL: [
        ("ErrorsByCode", (), (3, 3.0, 1.0, 1.0)),
        ("ErrorsByCode", ((EC, "Internal"),), (1, 1.0, 1.0, 1.0)),
        ("ErrorsByCode", ((EC, "Throttled"),), (2, 2.0, 1.0, 1.0)),
        ("UserRecordsPut", (), (4, 24.0, 3.0, 9.0)),
    ],
    G.STREAM: [
        ("ErrorsByCode", (), (3, 3.0, 1.0, 1.0)),
        ("ErrorsByCode", ((EC, "Internal"),), (1, 1.0, 1.0, 1.0)),
        ("ErrorsByCode", ((EC, "Internal"), (SN, "t")), (1, 1.0, 1.0, 1.0)),
        ("ErrorsByCode", ((EC, "Throttled"),), (2, 2.0, 1.0, 1.0)),
        ("ErrorsByCode", ((EC, "Throttled"), (SN, "s")), (2, 2.0, 1.0, 1.0)),
        ("UserRecordsPut", (), (4, 24.0, 3.0, 9.0)),
        ("UserRecordsPut", ((SN, "s"),), (3, 17.0, 3.0, 9.0)),
        ("UserRecordsPut", ((SN, "t"),), (1, 7.0, 7.0, 7.0)),
    ],
    G.SHARD: [
        ("ErrorsByCode", (), (3, 3.0, 1.0, 1.0)),
        ("ErrorsByCode", ((EC, "Internal"),), (1, 1.0, 1.0, 1.0)),
        ("ErrorsByCode", ((EC, "Internal"), (SN, "t")), (1, 1.0, 1.0, 1.0)),
        ("ErrorsByCode", ((EC, "Internal"), (SN, "t"), (SH, "c")), (1, 1.0, 1.0, 1.0)),
        ("ErrorsByCode", ((EC, "Throttled"),), (2, 2.0, 1.0, 1.0)),
        ("ErrorsByCode", ((EC, "Throttled"), (SN, "s")), (2, 2.0, 1.0, 1.0)),
        ("ErrorsByCode", ((EC, "Throttled"), (SN, "s"), (SH, "a")), (1, 1.0, 1.0, 1.0)),
        ("ErrorsByCode", ((EC, "Throttled"), (SN, "s"), (SH, "b")), (1, 1.0, 1.0, 1.0)),
        ("UserRecordsPut", (), (4, 24.0, 3.0, 9.0)),
        ("UserRecordsPut", ((SN, "s"),), (3, 17.0, 3.0, 9.0)),
        ("UserRecordsPut", ((SN, "s"), (SH, "a")), (2, 12.0, 3.0, 9.0)),
        ("UserRecordsPut", ((SN, "s"), (SH, "b")), (1, 5.0, 5.0, 5.0)),
        ("UserRecordsPut", ((SN, "t"),), (1, 7.0, 7.0, 7.0)),
        ("UserRecordsPut", ((SN, "t"), (SH, "c")), (1, 7.0, 7.0, 7.0)),
    ],
}


def _check_parents_sum_children(result):
    """Every line's count is the sum of the counts of the lines one level below it."""
    by_line = {(name, dims): stats for name, dims, stats in result}
    checked = 0
    for (name, dims), stats in by_line.items():
        children = [c for (n, d), c in by_line.items()
                    if n == name and len(d) == len(dims) + 1 and d[:len(dims)] == dims
                    and not (dims == () and d[0][0] == EC)]  # error lines are a separate branch
        error_children = [c for (n, d), c in by_line.items()
                          if n == name and dims == () and len(d) == 1 and d[0][0] == EC]
        for group in (children, error_children):
            if group:
                assert stats[0] == sum(c[0] for c in group), (name, dims, group)
                assert stats[1] == sum(c[1] for c in group), (name, dims, group)
                checked += 1
    return checked


@pytest.mark.parametrize("granularity", [G.GLOBAL, G.STREAM, G.SHARD])
def test_rollups_in_snapshots_and_exports(make_manager, clock, granularity):
    sink = RecordingSink(eventful=False)
    manager = make_manager(clock=clock, sink=sink, granularity=granularity)
    assert manager.granularity is granularity
    manager.start()
    _put_scenario(manager)
    expected = EXPECTED_ROLLUPS[granularity]
    assert lines(manager.snapshots()) == expected
    assert exported(manager, sink) == expected
    # parent = sum of children, line by line (count and sum)
    assert _check_parents_sum_children(expected) == {G.GLOBAL: 1, G.STREAM: 4, G.SHARD: 8}[granularity]
    # KPL dimensions land in MetricKey.extra
    assert sink.batches[-1][1].key == K("ErrorsByCode", extra=((EC, "Internal"),))


@pytest.mark.parametrize("granularity", [G.STREAM, "stream", 2])
def test_granularity_spellings(make_manager, granularity):
    manager = make_manager(granularity=granularity)
    assert manager.granularity is G.STREAM
    _put_scenario(manager)
    assert lines(manager.snapshots()) == EXPECTED_ROLLUPS[G.STREAM]


def test_rollups_of_many_shards_add_up(make_manager, clock):
    sink = RecordingSink(eventful=False)
    manager = make_manager(clock=clock, sink=sink, granularity=G.SHARD)
    manager.start()
    for stream_index in range(3):
        for shard_index in range(4):
            for _ in range(stream_index + shard_index + 1):
                manager.put("KinesisRecordsPut", 1, stream=f"s{stream_index}",
                            shard_id=f"shardId-{shard_index}")
    for result in (lines(manager.snapshots()), exported(manager, sink)):
        counts = {dims: stats[0] for _n, dims, stats in result}
        assert len(counts) == 1 + 3 + 12
        assert counts[()] == sum(i + j + 1 for i in range(3) for j in range(4)) == 42
        for i in range(3):
            stream = ((SN, f"s{i}"),)
            assert counts[stream] == sum(i + j + 1 for j in range(4))
            assert counts[stream] == sum(counts[stream + ((SH, f"shardId-{j}"),)] for j in range(4))
        assert counts[()] == sum(counts[((SN, f"s{i}"),)] for i in range(3))


def test_rollup_edge_keys(make_manager):
    manager = make_manager(granularity=G.SHARD)
    manager.put("m", 1)                          # no dimension
    manager.put("m", 2, shard_id="x")            # shard without stream: no shard line
    manager.put("m", 4, stream="s")              # stream without shard
    manager.put("m", 8, error_code="E")          # error code only
    assert lines(manager.snapshots()) == [
        ("m", (), (4, 15.0, 1.0, 8.0)),
        ("m", ((EC, "E"),), (1, 8.0, 8.0, 8.0)),
        ("m", ((SN, "s"),), (1, 4.0, 4.0, 4.0)),
    ]


def test_rollups_follow_the_window(make_manager, clock):
    manager = make_manager(clock=clock, window_seconds=5, granularity=G.STREAM)
    manager.put("m", 1, stream="s")
    clock.advance(3)
    manager.put("m", 2, stream="t")
    assert lines(manager.snapshots()) == [
        ("m", (), (2, 3.0, 1.0, 2.0)),
        ("m", ((SN, "s"),), (1, 1.0, 1.0, 1.0)),
        ("m", ((SN, "t"),), (1, 2.0, 2.0, 2.0)),
    ]
    clock.advance(2)  # 1005: second 1000 left the window
    assert lines(manager.snapshots()) == [
        ("m", (), (1, 2.0, 2.0, 2.0)),
        ("m", ((SN, "t"),), (1, 2.0, 2.0, 2.0)),
    ]


def test_rollups_at_summary_level_drop_shard_and_error_code(make_manager):
    manager = make_manager(level=kplm.Level.SUMMARY, granularity=G.SHARD)
    _put_scenario(manager)
    assert lines(manager.snapshots()) == [
        ("ErrorsByCode", (), (3, 3.0, 1.0, 1.0)),
        ("ErrorsByCode", ((SN, "s"),), (2, 2.0, 1.0, 1.0)),
        ("ErrorsByCode", ((SN, "t"),), (1, 1.0, 1.0, 1.0)),
        ("UserRecordsPut", (), (4, 24.0, 3.0, 9.0)),
        ("UserRecordsPut", ((SN, "s"),), (3, 17.0, 3.0, 9.0)),
        ("UserRecordsPut", ((SN, "t"),), (1, 7.0, 7.0, 7.0)),
    ]


# --------------------------------------------------------------------------
# Error-code lines and extra dimensions (KPL order)
# --------------------------------------------------------------------------


def _extras_manager(make_manager, clock, sink, granularity):
    return make_manager(clock=clock, sink=sink, granularity=granularity, extra_dimensions=[
        ("Host", "h1", G.GLOBAL),
        ("Az", "z1", "stream"),
        ("Part", "p", 3),
        ("Env", "prod", G.GLOBAL),
    ])


def test_error_code_lines_in_kpl_order(make_manager, clock):
    sink = RecordingSink(eventful=False)
    manager = _extras_manager(make_manager, clock, sink, G.SHARD)
    assert manager.extra_dimensions == (("Host", "h1", G.GLOBAL), ("Az", "z1", G.STREAM),
                                        ("Part", "p", G.SHARD), ("Env", "prod", G.GLOBAL))
    manager.start()
    manager.put("ErrorsByCode", 1, stream="s", shard_id="a", error_code="Throttled")
    manager.put("ErrorsByCode", 1, stream="s", shard_id="a", error_code="Throttled")
    manager.put("ErrorsByCode", 1, stream="s", shard_id="b", error_code="Throttled")
    glob = (("Host", "h1"), ("Env", "prod"))
    err = glob + ((EC, "Throttled"),)
    stream = err + ((SN, "s"), ("Az", "z1"))
    expected = [
        ("ErrorsByCode", glob, (3, 3.0, 1.0, 1.0)),
        ("ErrorsByCode", err, (3, 3.0, 1.0, 1.0)),
        ("ErrorsByCode", stream, (3, 3.0, 1.0, 1.0)),
        ("ErrorsByCode", stream + ((SH, "a"), ("Part", "p")), (2, 2.0, 1.0, 1.0)),
        ("ErrorsByCode", stream + ((SH, "b"), ("Part", "p")), (1, 1.0, 1.0, 1.0)),
    ]
    assert lines(manager.snapshots()) == expected
    assert exported(manager, sink) == expected


def test_extras_without_error_code_at_stream_granularity(make_manager, clock):
    manager = _extras_manager(make_manager, clock, None, G.STREAM)
    manager.put("UserRecordsPut", 5, stream="s", shard_id="a")
    glob = (("Host", "h1"), ("Env", "prod"))
    assert lines(manager.snapshots()) == [
        ("UserRecordsPut", glob, (1, 5.0, 5.0, 5.0)),
        ("UserRecordsPut", glob + ((SN, "s"), ("Az", "z1")), (1, 5.0, 5.0, 5.0)),
    ]


def test_extras_without_granularity_use_seed_names(make_manager, clock):
    sink = RecordingSink(eventful=False)
    manager = _extras_manager(make_manager, clock, sink, G.NONE)
    manager.start()
    manager.put("ErrorsByCode", 2, stream="s", shard_id="a", error_code="Throttled")
    manager.put("UserRecordsPut", 3)
    expected = [
        ("ErrorsByCode", (("Host", "h1"), ("Env", "prod"), ("stream", "s"), ("Az", "z1"),
                          ("shard", "a"), ("Part", "p"), ("error_code", "Throttled")),
         (1, 2.0, 2.0, 2.0)),
        ("UserRecordsPut", (("Host", "h1"), ("Env", "prod")), (1, 3.0, 3.0, 3.0)),
    ]
    assert lines(manager.snapshots()) == expected
    assert exported(manager, sink) == expected
    assert sink.batches[-1][0].key == K("ErrorsByCode", "s", "a", "Throttled", extra=(
        ("Host", "h1"), ("Env", "prod"), ("Az", "z1"), ("Part", "p")))


def test_add_dimension_method_before_start(make_manager):
    manager = make_manager(granularity=G.GLOBAL)
    manager.add_dimension("Host", "h1", G.GLOBAL)
    manager.add_dimension(b"Region", "eu-west-1", "global")
    assert manager.extra_dimensions == (("Host", "h1", G.GLOBAL), ("Region", "eu-west-1", G.GLOBAL))
    manager.put("AllErrors", 1, error_code="E")
    glob = (("Host", "h1"), ("Region", "eu-west-1"))
    assert lines(manager.snapshots()) == [
        ("AllErrors", glob, (1, 1.0, 1.0, 1.0)),
        ("AllErrors", glob + ((EC, "E"),), (1, 1.0, 1.0, 1.0)),
    ]


def test_add_dimension_refused_after_start_and_close(make_manager):
    manager = make_manager(granularity=G.GLOBAL)
    manager.add_dimension("Host", "h1", G.GLOBAL)
    manager.start()
    with pytest.raises(kplm.StateError) as info:
        manager.add_dimension("Late", "x", G.GLOBAL)
    assert info.value.status == kplm.Status.ESTATE
    manager.put("m", 1)
    assert lines(manager.snapshots()) == [("m", (("Host", "h1"),), (1, 1.0, 1.0, 1.0))]
    manager.close()
    with pytest.raises(kplm.StateError):
        manager.add_dimension("Late", "x", G.GLOBAL)
    assert manager.extra_dimensions == (("Host", "h1", G.GLOBAL),)
    manager.free()
    with pytest.raises(kplm.ClosedError):
        manager.add_dimension("Late", "x", G.GLOBAL)


def test_add_dimension_refused_after_close_before_start(make_manager):
    manager = make_manager()
    manager.close()
    with pytest.raises(kplm.StateError):
        manager.add_dimension("Host", "h", G.GLOBAL)


@pytest.mark.parametrize("name, value, granularity, error", [
    ("", "v", G.GLOBAL, kplm.InvalidArgumentError),
    ("Host", "", G.GLOBAL, kplm.InvalidArgumentError),
    (None, "v", G.GLOBAL, kplm.InvalidArgumentError),
    ("Host", None, G.GLOBAL, kplm.InvalidArgumentError),
    ("Host", "v", G.NONE, kplm.InvalidArgumentError),
    ("Host", "v", 4, kplm.InvalidArgumentError),
    ("Host", "v", -1, kplm.InvalidArgumentError),
    ("Host", "v", "everywhere", kplm.InvalidArgumentError),
    ("n" * 256, "v", G.GLOBAL, kplm.InvalidArgumentError),
    ("Host", "v" * 1025, G.GLOBAL, kplm.InvalidArgumentError),
    (b"\xff", "v", G.GLOBAL, kplm.InvalidArgumentError),
    ("Host", b"\xc0\xaf", G.GLOBAL, kplm.InvalidArgumentError),
    ("Ho\0st", "v", G.GLOBAL, kplm.InvalidArgumentError),
    (7, "v", G.GLOBAL, TypeError),
    ("Host", "v", 1.0, TypeError),
])
def test_add_dimension_bad_arguments(make_manager, name, value, granularity, error):
    manager = make_manager(granularity=G.SHARD)
    with pytest.raises(error):
        manager.add_dimension(name, value, granularity)
    assert manager.extra_dimensions == ()
    manager.put("m", 1)
    assert lines(manager.snapshots()) == [("m", (), (1, 1.0, 1.0, 1.0))]


def test_add_dimension_limits_are_inclusive(make_manager):
    manager = make_manager(granularity=G.GLOBAL)
    manager.add_dimension("n" * 255, "v" * 1024, G.GLOBAL)
    manager.put("m", 1)
    assert lines(manager.snapshots()) == [("m", (("n" * 255, "v" * 1024),), (1, 1.0, 1.0, 1.0))]


def test_bad_extra_dimensions_in_constructor():
    with pytest.raises(kplm.InvalidArgumentError):
        kplm.Manager(level=kplm.Level.DETAILED, extra_dimensions=[("Host", "", G.GLOBAL)])
    with pytest.raises(TypeError):
        kplm.Manager(level=kplm.Level.DETAILED, extra_dimensions=[("Host", "h")])


# --------------------------------------------------------------------------
# KPL level filter
# --------------------------------------------------------------------------

FILTER_NAMES = ["UserRecordsPut", "UserRecordsDataPut", "BufferingTime", "RequestTime", "Custom"]


@pytest.mark.parametrize("level, kpl_filter, shown", [
    (kplm.Level.SUMMARY, True, ["BufferingTime", "UserRecordsPut"]),
    (kplm.Level.SUMMARY, False, sorted(FILTER_NAMES)),
    (kplm.Level.DETAILED, True, sorted(FILTER_NAMES)),
])
def test_kpl_level_filter(make_manager, clock, level, kpl_filter, shown):
    sink = RecordingSink(eventful=False)
    manager = make_manager(level=level, clock=clock, sink=sink, kpl_level_filter=kpl_filter)
    assert manager.kpl_level_filter is kpl_filter
    manager.start()
    for index, name in enumerate(FILTER_NAMES):
        manager.put(name, index + 1, stream="s")
    expected = [(name, (("stream", "s"),), (1, float(FILTER_NAMES.index(name) + 1),
                                           float(FILTER_NAMES.index(name) + 1),
                                           float(FILTER_NAMES.index(name) + 1)))
                for name in shown]
    assert lines(manager.snapshots()) == expected
    assert exported(manager, sink) == expected


def test_kpl_level_filter_with_rollups(make_manager):
    manager = make_manager(level=kplm.Level.SUMMARY, kpl_level_filter=True, granularity=G.STREAM)
    manager.put("UserRecordsPut", 1, stream="s")
    manager.put("UserRecordsDataPut", 100, stream="s")
    assert lines(manager.snapshots()) == [
        ("UserRecordsPut", (), (1, 1.0, 1.0, 1.0)),
        ("UserRecordsPut", ((SN, "s"),), (1, 1.0, 1.0, 1.0)),
    ]


def test_kpl_level_filter_always_shows_refused(make_manager):
    manager = make_manager(level=kplm.Level.SUMMARY, kpl_level_filter=True, max_metrics=1)
    manager.put("UserRecordsPut", 1)
    with pytest.raises(kplm.LimitError):
        manager.put("RequestTime", 5)
    assert lines(manager.snapshots()) == [
        (kplm.METRIC_REFUSED, (), (1, 1.0, 1.0, 1.0)),
        ("UserRecordsPut", (), (1, 1.0, 1.0, 1.0)),
    ]


# --------------------------------------------------------------------------
# Namespace
# --------------------------------------------------------------------------


def test_namespace_default(make_manager):
    manager = make_manager()
    assert manager.namespace == "KinesisProducerLibrary" == kplm.DEFAULT_NAMESPACE
    assert make_manager(level=kplm.Level.NONE).namespace == "KinesisProducerLibrary"


@pytest.mark.parametrize("namespace, expected", [
    ("MyApp", "MyApp"),
    (b"Bytes/Space", "Bytes/Space"),
    ("Métriques/é", "Métriques/é"),
    ("n" * 255, "n" * 255),
])
def test_namespace_custom(make_manager, namespace, expected):
    manager = make_manager(namespace=namespace)
    gc.collect()  # the library copied it: nothing of ours must be needed any more
    assert manager.namespace == expected
    manager.start()
    manager.close()
    assert manager.namespace == expected  # still readable once closed
    manager.free()
    with pytest.raises(kplm.ClosedError):
        manager.namespace


def test_namespace_built_from_a_temporary(make_manager):
    manager = make_manager(namespace="".join(["Temp", "orary"]))
    gc.collect()
    assert manager.namespace == "Temporary"


@pytest.mark.parametrize("bad, error", [
    ("", kplm.InvalidArgumentError),
    ("n" * 256, kplm.InvalidArgumentError),
    (b"\xff\xfe", kplm.InvalidArgumentError),
    ("a\0b", kplm.InvalidArgumentError),
    (42, TypeError),
])
def test_namespace_bad(bad, error):
    with pytest.raises(error):
        kplm.Manager(level=kplm.Level.DETAILED, namespace=bad)


# --------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------


@pytest.fixture
def window10(make_manager, clock):
    return make_manager(clock=clock, window_seconds=10)


def test_query_returns_statistics_tuple(window10):
    window10.put("BufferingTime", 3, stream="s")
    window10.put("BufferingTime", 5, stream="s")
    result = window10.query("BufferingTime", stream="s")
    assert isinstance(result, kplm.Statistics)
    assert result == (2, 8.0, 3.0, 5.0)
    assert (result.count, result.sum, result.min, result.max) == (2, 8.0, 3.0, 5.0)
    assert type(result.count) is int
    with pytest.raises(AttributeError):
        result.count = 3


def test_query_over_seconds_and_cumulative(window10, clock):
    window10.put("m", 1, stream="s")            # second 1000
    clock.set(1005.2)
    window10.put("m", 2, stream="s")            # second 1005
    clock.set(1009.5)
    window10.put("m", 4, stream="s")            # second 1009
    q = window10.query
    assert q("m", "s", seconds=1) == (1, 4.0, 4.0, 4.0)
    assert q("m", "s", seconds=4) == (1, 4.0, 4.0, 4.0)
    assert q("m", "s", seconds=5) == (2, 6.0, 2.0, 4.0)
    assert q("m", "s", seconds=10) == (3, 7.0, 1.0, 4.0)
    assert q("m", "s", seconds=kplm.CUMULATIVE) == (3, 7.0, 1.0, 4.0)
    # a short query dropped nothing
    assert window10.snapshot() == {K("m", "s"): (3, 7.0, 1.0, 4.0)}
    assert q("m", "s", seconds=10) == (3, 7.0, 1.0, 4.0)

    clock.set(1010.0)                           # second 1000 left the window
    assert q("m", "s", seconds=10) == (2, 6.0, 2.0, 4.0)
    assert q("m", "s") == (3, 7.0, 1.0, 4.0)    # cumulative keeps it
    clock.set(1100.0)                           # everything left the window
    assert window10.snapshots() == []
    assert q("m", "s", seconds=10) == (0, 0.0, 0.0, 0.0)
    assert q("m", "s", seconds=1) == (0, 0.0, 0.0, 0.0)
    assert q("m", "s") == (3, 7.0, 1.0, 4.0)
    window10.put("m", 10, stream="s")
    assert q("m", "s", seconds=1) == (1, 10.0, 10.0, 10.0)
    assert q("m", "s") == (4, 17.0, 1.0, 10.0)


def test_cumulative_survives_flushes(make_manager, clock):
    sink = RecordingSink(eventful=False)
    manager = make_manager(clock=clock, sink=sink, window_seconds=2)
    manager.start()
    manager.put("m", 1)
    manager.flush()
    clock.advance(50)
    manager.put("m", 2)
    manager.flush()
    assert [lines(b) for b in sink.batches] == [[("m", (), (1, 1.0, 1.0, 1.0))],
                                                [("m", (), (1, 2.0, 2.0, 2.0))]]
    assert manager.query("m") == (2, 3.0, 1.0, 2.0)
    assert manager.query("m", seconds=2) == (1, 2.0, 2.0, 2.0)


def test_query_forms_the_key_like_put(make_manager):
    detailed = make_manager()
    detailed.put("ErrorsByCode", 1, stream="s", shard_id="a", error_code="E")
    detailed.put("ErrorsByCode", 2, stream="s", shard_id="b", error_code="E")
    assert detailed.query("ErrorsByCode", "s", "a", "E") == (1, 1.0, 1.0, 1.0)
    assert detailed.query("ErrorsByCode", "s", "", "E") == (0, 0.0, 0.0, 0.0)
    assert detailed.query("ErrorsByCode", "s") == (0, 0.0, 0.0, 0.0)

    summary = make_manager(level=kplm.Level.SUMMARY)
    summary.put("ErrorsByCode", 1, stream="s", shard_id="a", error_code="E")
    summary.put("ErrorsByCode", 2, stream="s", shard_id="b", error_code="F")
    expected = (2, 3.0, 1.0, 2.0)
    assert summary.query("ErrorsByCode", "s") == expected
    assert summary.query("ErrorsByCode", "s", "zzz", "whatever") == expected
    assert summary.query("ErrorsByCode") == (0, 0.0, 0.0, 0.0)


def test_query_ignores_granularity_and_extras(make_manager):
    manager = make_manager(granularity=G.SHARD, extra_dimensions=[("Host", "h", G.GLOBAL)])
    manager.put("UserRecordsPut", 1, stream="s", shard_id="a")
    manager.put("UserRecordsPut", 2, stream="s", shard_id="b")
    assert manager.query("UserRecordsPut", "s", "a") == (1, 1.0, 1.0, 1.0)
    assert manager.query("UserRecordsPut", "s") == (0, 0.0, 0.0, 0.0)  # no such recorded key
    assert manager.query_name("UserRecordsPut") == (2, 3.0, 1.0, 2.0)


def test_query_name_merges_every_key_of_the_name(window10, clock):
    window10.put("AllErrors", 1, stream="s", shard_id="a", error_code="X")
    window10.put("AllErrors", 2, stream="t")
    window10.put("AllErrors", 3)
    window10.put("AllErrorsX", 100)
    window10.metric("AllErrors", stream="u").put(4)
    assert window10.query_name("AllErrors") == (4, 10.0, 1.0, 4.0)
    assert window10.query_name("AllErrorsX") == (1, 100.0, 100.0, 100.0)
    assert window10.query_name("Nothing") == (0, 0.0, 0.0, 0.0)
    clock.advance(3)
    window10.put("AllErrors", -5, stream="t")
    assert window10.query_name("AllErrors", seconds=1) == (1, -5.0, -5.0, -5.0)
    assert window10.query_name("AllErrors", seconds=4) == (5, 5.0, -5.0, 4.0)
    clock.advance(20)
    assert window10.query_name("AllErrors", seconds=10) == (0, 0.0, 0.0, 0.0)
    assert window10.query_name("AllErrors") == (5, 5.0, -5.0, 4.0)


def test_query_at_level_none_is_empty(make_manager):
    manager = make_manager(level=kplm.Level.NONE)
    manager.put("m", 5)
    assert manager.query("m") == (0, 0.0, 0.0, 0.0)
    assert manager.query_name("m", seconds=60) == (0, 0.0, 0.0, 0.0)


def test_query_unknown_key_is_empty(window10):
    assert window10.query("never") == (0, 0.0, 0.0, 0.0)
    assert window10.query("never", seconds=10) == (0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("seconds, error", [
    (11, kplm.InvalidArgumentError),
    (3600, kplm.InvalidArgumentError),
    (2 ** 32 - 1, kplm.InvalidArgumentError),
    (-1, kplm.InvalidArgumentError),
    (2 ** 32, kplm.InvalidArgumentError),
    (1.5, TypeError),
    ("5", TypeError),
])
def test_bad_seconds(window10, seconds, error):
    window10.put("m", 1)
    with pytest.raises(error):
        window10.query("m", seconds=seconds)
    with pytest.raises(error):
        window10.query_name("m", seconds=seconds)
    assert window10.query("m", seconds=10) == (1, 1.0, 1.0, 1.0)


def test_bad_seconds_is_the_library_check(window10):
    with pytest.raises(kplm.InvalidArgumentError) as info:
        window10.query("m", seconds=11)
    assert info.value.status == kplm.Status.EINVAL
    assert info.value.context.startswith("kplm_query(")


@pytest.mark.parametrize("kwargs", [
    dict(name=""),
    dict(name=None),
    dict(name="n" * 256),
    dict(name=b"\xff"),
    dict(name="a\0b"),
    dict(name="m", stream="s" * 1025),
    dict(name="m", shard_id=b"\xed\xa0\x80"),
    dict(name="m", error_code="e\0"),
])
def test_query_bad_arguments(window10, kwargs):
    with pytest.raises(kplm.InvalidArgumentError):
        window10.query(**kwargs)


def test_query_name_bad_names(window10):
    for bad in ("", None, "n" * 256, b"\xc3"):
        with pytest.raises(kplm.InvalidArgumentError):
            window10.query_name(bad)
    with pytest.raises(TypeError):
        window10.query_name(3)


def test_query_after_free_is_closed(make_manager):
    manager = make_manager()
    manager.put("m", 1)
    manager.free()
    with pytest.raises(kplm.ClosedError):
        manager.query("m")
    with pytest.raises(kplm.ClosedError):
        manager.query_name("m")


def test_raw_query_null_arguments(library):
    stats = kplm.KplmStatistics(7, 1.0, 2.0, 3.0)
    assert library.kplm_query(None, b"m", None, None, None, 0, ctypes.byref(stats)) == kplm.Status.EINVAL
    assert (stats.count, stats.sum, stats.min, stats.max) == (0, 0.0, 0.0, 0.0)
    assert library.kplm_query_name(None, b"m", 0, None) == kplm.Status.EINVAL
    assert library.kplm_namespace(None) is None
    assert library.kplm_add_dimension(None, b"a", b"b", 1) == kplm.Status.EINVAL


# --------------------------------------------------------------------------
# CloudWatch-shaped requests (kplm_cloudwatch_requests)
# --------------------------------------------------------------------------

def _snap(name="UserRecordsPut", count=1, value=1.0, dims=(("stream", "orders"),), ts=None):
    import time as _time
    return kplm.Snapshot(name=name, count=count, sum=value * count, min=value, max=value, dimensions=dims,
                         window_start=0.0, window_end=1.0, timestamp_unix=_time.time() if ts is None else ts)


def test_cloudwatch_requests_respect_the_datum_limit_and_round_trip():
    import json
    snaps = [_snap(value=float(i)) for i in range(1001)] + [_snap(count=0)]
    requests, dropped = kplm.cloudwatch_requests(snaps, "MyApp")
    assert [n for _, n in requests] == [1000, 1]
    assert dropped == 1
    bodies = [json.loads(b) for b, _ in requests]
    assert all(len(b.encode()) <= 1_000_000 for b, _ in requests)
    assert bodies[0]["Namespace"] == "MyApp"
    datum = bodies[0]["MetricData"][3]
    assert datum["MetricName"] == "UserRecordsPut"
    assert datum["Dimensions"] == [{"Name": "StreamName", "Value": "orders"}]
    assert datum["Unit"] == "Count"
    assert datum["StatisticValues"] == {"SampleCount": 1.0, "Sum": 3.0, "Minimum": 3.0, "Maximum": 3.0}


def test_cloudwatch_requests_drop_what_cloudwatch_refuses():
    import time as _time
    now = _time.time()
    snaps = [
        _snap(ts=now - 14 * 86400 - 1),                       # older than two weeks
        _snap(ts=now + 2 * 3600 + 1),                         # too far ahead
        _snap(dims=tuple((f"d{i}", "v") for i in range(31))),  # 31 dimensions
        _snap(value=2.0 ** 361),                               # beyond +-2^360
        _snap(dims=(("stream", ""),)),                         # blank value: dimension removed, kept
    ]
    requests, dropped = kplm.cloudwatch_requests(snaps, "MyApp", wall_now=now)
    assert dropped == 4
    assert [n for _, n in requests] == [1]
    assert '"Dimensions"' not in requests[0][0]


def test_cloudwatch_requests_reject_bad_namespaces():
    for bad in ("", "AWS/Kinesis", "n" * 256):
        with pytest.raises(kplm.InvalidArgumentError):
            kplm.cloudwatch_requests([_snap()], bad)
    assert kplm.cloudwatch_requests([], "MyApp") == ([], 0)


def test_cloudwatch_requests_from_a_real_export():
    import json
    clock = kplm.ManualClock(1000.0)
    sink = RecordingSink(eventful=False)
    m = kplm.Manager(kplm.Level.DETAILED, clock=clock, upload_interval_ms=3_600_000,
                     granularity=kplm.Granularity.STREAM, sink=sink)
    try:
        m.start()
        m.put(kplm.METRIC_BUFFERING_TIME, 5.0, stream="orders", shard_id="shardId-1")
        m.put(kplm.METRIC_BUFFERING_TIME, 7.0, stream="orders", shard_id="shardId-2")
        m.flush()
    finally:
        m.close()
    exported = [s for batch in sink.batches for s in batch]
    requests, dropped = kplm.cloudwatch_requests(exported, m.namespace)
    assert dropped == 0
    data = json.loads(requests[0][0])["MetricData"]
    assert [d.get("Dimensions", []) for d in data] == [[], [{"Name": "StreamName", "Value": "orders"}]]
    assert all(d["Unit"] == "Milliseconds" for d in data)
    assert [d["StatisticValues"]["SampleCount"] for d in data] == [2.0, 2.0]
