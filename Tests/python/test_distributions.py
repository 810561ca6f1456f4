"""Distribution metrics (SPEC §6) from Python: quantiles within the declared
accuracy of the exact sample quantile, on the issue's data shapes."""

from __future__ import annotations

import math
import random

import pytest

import kplm
from conftest import RecordingSink

QUANTILES = (0.0, 0.001, 0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0)


def shapes():
    r = random.Random(7)
    n = 5000
    yield "lognormal", [r.lognormvariate(1.0, 2.0) for _ in range(n)]
    yield "12 decades", [10 ** r.uniform(-6, 6) for _ in range(n)]
    yield "signed with zeros", [0.0 if i % 7 == 0 else r.choice((-1, 1)) * 10 ** r.uniform(-3, 3)
                                for i in range(n)]
    yield "constant", [42.5] * 1000
    yield "edges", [5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                    -1.7976931348623157e308, 0.0, -0.0, 1.0] + [r.uniform(-1e-310, 1e-310) for _ in range(200)]


def exact(values, q):
    ordered = sorted(values)
    return ordered[int(math.floor(q * (len(ordered) - 1)))]


@pytest.mark.parametrize("accuracy", [0.01, 0.05])
@pytest.mark.parametrize("shape", [name for name, _ in shapes()])
def test_quantiles_within_the_accuracy(make_manager, shape, accuracy):
    values = dict(shapes())[shape]
    m = make_manager(window_seconds=10)
    m.set_distribution("RequestTime", accuracy)
    for v in values:
        m.put("RequestTime", v, dimensions={"stream": "s1"})
    stats = m.query("RequestTime", "s1")
    assert stats.count == len(values)          # statistics stay exact
    assert stats.min == min(values) and stats.max == max(values)
    for q in QUANTILES:
        x = exact(values, q)
        for seconds in (kplm.CUMULATIVE, 10):
            got = m.query_quantile("RequestTime", q, {"stream": "s1"}, seconds)
            assert abs(got - x) <= accuracy * abs(x), (shape, q, seconds, got, x)


def test_errors_and_empty(make_manager):
    m = make_manager()
    m.set_distribution("BufferingTime", 0.01)
    assert math.isnan(m.query_quantile("BufferingTime", 0.5))      # no observation
    for bad in (0.0, -0.1, 0.2, float("nan")):
        with pytest.raises(kplm.InvalidArgumentError):
            m.set_distribution("X", bad)
    with pytest.raises(kplm.InvalidArgumentError):
        m.query_quantile("BufferingTime", 1.5)
    with pytest.raises(kplm.InvalidArgumentError):
        m.query_quantile("NotADistribution", 0.5)
    m.put("Plain", 1.0)
    with pytest.raises(kplm.StateError):
        m.set_distribution("Plain", 0.01)   # a key of that name exists
    m.start()
    with pytest.raises(kplm.StateError):
        m.set_distribution("Later", 0.01)


def test_exports_carry_the_buckets_once(make_manager, clock):
    sink = RecordingSink(eventful=False)
    m = make_manager(clock=clock, sink=sink)
    m.set_distribution("RequestTime", 0.01)
    m.start()
    for v in range(1, 1001):
        m.put("RequestTime", float(v), "s")
    m.put("Plain", 1.0)
    m.flush()
    m.flush()   # nothing new
    (batch,) = sink.batches
    by_name = {snap.name: snap for snap in batch}
    timed = by_name["RequestTime"]
    assert sum(n for _, n in timed.buckets) == timed.count == 1000
    values = [v for v, _ in timed.buckets]
    assert values == sorted(values) and len(values) > 100
    assert all(abs(v - round(v)) <= 0.01 * v for v in values)   # each within 1% of the integers it holds
    assert by_name["Plain"].buckets == ()
    assert timed.relative_accuracy == 0.01 and by_name["Plain"].relative_accuracy == 0.0


def test_the_kpl_list_at_creation(make_manager):
    assert dict(kplm.KPL_DISTRIBUTIONS) == {"BufferingTime": 0.01, "RequestTime": 0.01}
    m = make_manager(distributions=kplm.KPL_DISTRIBUTIONS)
    for v in range(1, 101):
        m.put("BufferingTime", float(v), "s")
    assert abs(m.query_quantile("BufferingTime", 0.5, {"stream": "s"}) - 50) <= 0.5
    with pytest.raises(kplm.InvalidArgumentError):
        m.query_quantile("UserRecordsPut", 0.5)     # not in the list
    with pytest.raises(kplm.InvalidArgumentError):
        make_manager(distributions={"X": 0.5})


def test_a_library_without_kplm_set_distribution_gets_a_clear_error():
    from kplm.manager import _require_distributions

    class Library11:   # what ctypes shows of a 1.1 libkplm: no kplm_set_distribution
        pass

    with pytest.raises(kplm.StateError, match=r"distribution metrics: needs libkplm 1\.2 .*kplm_set_distribution"):
        _require_distributions(Library11())
    _require_distributions(kplm._library.lib())
