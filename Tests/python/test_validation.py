"""Bad input gets KPLM_EINVAL (never a crash) and changes nothing."""

from __future__ import annotations

import math

import pytest

import kplm

INVALID_UTF8 = [
    pytest.param(b"\xff", id="byte-ff"),
    pytest.param(b"\x80abc", id="lone-continuation"),
    pytest.param(b"\xc0\xaf", id="overlong-slash"),
    pytest.param(b"\xe0\x80\xaf", id="overlong-3-byte"),
    pytest.param(b"\xed\xa0\x80", id="surrogate-d800"),
    pytest.param(b"\xed\xbf\xbf", id="surrogate-dfff"),
    pytest.param(b"\xf4\x90\x80\x80", id="past-10ffff"),
    pytest.param(b"\xf8\x88\x80\x80\x80", id="5-byte-form"),
    pytest.param(b"ab\xe2\x82", id="truncated"),
    pytest.param("x\ud800y", id="str-with-lone-surrogate"),
]

VALID_UTF8 = [
    pytest.param("caf\u00e9", id="2-byte"),
    pytest.param("\u20ac", id="3-byte"),
    pytest.param("\U0001f600", id="4-byte"),
    pytest.param(b"\xf4\x8f\xbf\xbf", id="u10ffff"),
    pytest.param(b"\xef\xbf\xbd", id="ufffd"),
]


@pytest.fixture
def manager(make_manager):
    return make_manager()


def assert_status(excinfo, status):
    assert excinfo.value.status == status, excinfo.value
    assert isinstance(excinfo.value, kplm.KplmError)


@pytest.mark.parametrize("name", [None, "", b""])
def test_missing_or_empty_name(manager, name):
    with pytest.raises(kplm.InvalidArgumentError) as excinfo:
        manager.put(name)
    assert_status(excinfo, kplm.Status.EINVAL)
    with pytest.raises(kplm.InvalidArgumentError):
        manager.metric(name)
    assert manager.snapshots() == []


@pytest.mark.parametrize("bad", INVALID_UTF8)
@pytest.mark.parametrize("field", ["name", "stream", "shard_id", "error_code"])
def test_invalid_utf8_is_einval(manager, field, bad):
    kwargs = {"name": "UserRecordsPut"}
    kwargs[field] = bad
    with pytest.raises(kplm.KplmError) as excinfo:
        manager.put(**kwargs)
    assert_status(excinfo, kplm.Status.EINVAL)
    with pytest.raises(kplm.KplmError) as excinfo:
        manager.metric(**kwargs)
    assert_status(excinfo, kplm.Status.EINVAL)
    assert manager.snapshots() == []


@pytest.mark.parametrize("good", VALID_UTF8)
@pytest.mark.parametrize("field", ["name", "stream", "shard_id", "error_code"])
def test_valid_multibyte_utf8_is_accepted(manager, field, good):
    kwargs = {"name": "UserRecordsPut"}
    kwargs[field] = good
    manager.put(**kwargs)
    (snap,) = manager.snapshots()
    text = good if isinstance(good, str) else good.decode("utf-8")
    if field == "name":
        assert snap.name == text
    else:
        dim = {"stream": "stream", "shard_id": "shard", "error_code": "error_code"}[field]
        assert snap.dimensions == ((dim, text),)


@pytest.mark.parametrize("value", [math.nan, -math.nan, math.inf, -math.inf])
def test_non_finite_values_are_einval(manager, value):
    with pytest.raises(kplm.InvalidArgumentError) as excinfo:
        manager.put("m", value)
    assert_status(excinfo, kplm.Status.EINVAL)
    metric = manager.metric("h")
    with pytest.raises(kplm.InvalidArgumentError) as excinfo:
        metric.put(value)
    assert_status(excinfo, kplm.Status.EINVAL)
    assert manager.snapshots() == []


@pytest.mark.parametrize("value", [0.0, -0.0, 5e-324, -1.7976931348623157e308, 1.7976931348623157e308])
def test_extreme_finite_values_are_accepted(manager, value):
    manager.put("m", value)
    (snap,) = manager.snapshots()
    assert snap.count == 1 and snap.sum == value and snap.min == value and snap.max == value


def test_name_length_limit(manager):
    manager.put("n" * 255)
    manager.put("\u00e9" * 127 + "x")  # 255 bytes of UTF-8
    with pytest.raises(kplm.InvalidArgumentError):
        manager.put("n" * 256)
    with pytest.raises(kplm.InvalidArgumentError):
        manager.put("\u00e9" * 128)  # 256 bytes, 128 characters
    with pytest.raises(kplm.InvalidArgumentError):
        manager.metric("n" * 256)
    names = sorted(s.name for s in manager.snapshots())
    assert names == sorted(["n" * 255, "\u00e9" * 127 + "x"])


@pytest.mark.parametrize("field", ["stream", "shard_id", "error_code"])
def test_dimension_length_limit(manager, field):
    manager.put("m", **{field: "d" * 1024})
    manager.put("m", **{field: "\u20ac" * 341 + "d"})  # 1024 bytes
    with pytest.raises(kplm.InvalidArgumentError):
        manager.put("m", **{field: "d" * 1025})
    with pytest.raises(kplm.InvalidArgumentError):
        manager.put("m", **{field: "\u20ac" * 341 + "dd"})  # 1025 bytes
    with pytest.raises(kplm.InvalidArgumentError):
        manager.metric("m", **{field: "d" * 1025})
    assert len(manager.snapshots()) == 2


@pytest.mark.parametrize("field", ["shard_id", "error_code"])
def test_summary_still_validates_dropped_dimensions(make_manager, field):
    manager = make_manager(level=kplm.Level.SUMMARY)
    with pytest.raises(kplm.InvalidArgumentError):
        manager.put("m", **{field: b"\xc0\xaf"})
    with pytest.raises(kplm.InvalidArgumentError):
        manager.put("m", **{field: "d" * 1025})
    assert manager.snapshots() == []


@pytest.mark.parametrize("kwargs", [
    pytest.param({"window_seconds": 0}, id="window-0"),
    pytest.param({"window_seconds": 3601}, id="window-3601"),
    pytest.param({"upload_interval_ms": 0.0}, id="interval-0"),
    pytest.param({"upload_interval_ms": -5.0}, id="interval-negative"),
    pytest.param({"upload_interval_ms": math.nan}, id="interval-nan"),
    pytest.param({"upload_interval_ms": math.inf}, id="interval-inf"),
    pytest.param({"max_metrics": 0}, id="max-metrics-0"),
    pytest.param({"level": 7}, id="level-7"),
    pytest.param({"level": -1}, id="level-negative"),
    pytest.param({"level": 3}, id="level-3"),
])
def test_bad_config_is_einval(kwargs):
    with pytest.raises(kplm.InvalidArgumentError) as excinfo:
        kplm.Manager(**kwargs)
    assert_status(excinfo, kplm.Status.EINVAL)


@pytest.mark.parametrize("kwargs", [
    {"window_seconds": 1},
    {"window_seconds": 3600},
    {"upload_interval_ms": 0.5},
    {"max_metrics": 1},
    {"max_metrics": 2 ** 32 - 1},
    {"level": kplm.Level.NONE},
    {"level": kplm.Level.SUMMARY},
])
def test_boundary_config_is_accepted(make_manager, kwargs):
    make_manager(**kwargs)


def test_rejected_puts_change_nothing(make_manager, clock):
    manager = make_manager(clock=clock)
    manager.put("m", 2.0, stream="s")
    for bad in [dict(name=b"\xc0\xaf"), dict(name="m", value=math.nan),
                dict(name="m", stream="s", shard_id="x" * 1025)]:
        with pytest.raises(kplm.InvalidArgumentError):
            manager.put(**bad)
    assert manager.snapshot() == {kplm.MetricKey("m", "s"): (1, 2.0, 2.0, 2.0)}
