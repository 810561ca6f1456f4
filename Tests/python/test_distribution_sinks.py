"""Distribution metrics (SPEC §6) in the sinks that can carry them, each
checked by its peer's own decoder: OTLP exponential histograms decoded by
opentelemetry-proto, CloudWatch Values/Counts read back by moto (and their
JSON checked at a fake endpoint), Prometheus summary quantiles checked by
promtool."""

from __future__ import annotations

import math
import random
import shutil
import socket
import subprocess
import uuid

import pytest

import kplm

ACCURACY = 0.01


def values(n=5000, seed=3):
    r = random.Random(seed)
    return [r.lognormvariate(3.0, 1.5) for _ in range(n)]


def exact(sorted_values, q):
    return sorted_values[int(math.floor(q * (len(sorted_values) - 1)))]


def quantile_from(buckets, q):
    """The value of rank floor(q·(n−1)) walking (value, count) pairs in order."""
    n = sum(c for _, c in buckets)
    rank = int(math.floor(q * (n - 1)))
    seen = 0
    for value, count in buckets:
        if rank < seen + count:
            return value
        seen += count
    raise AssertionError("rank beyond the counts")


def started(sink, clock=None):
    m = kplm.Manager(kplm.Level.DETAILED, sink=sink, clock=clock or kplm.ManualClock(1000.0),
                     upload_interval_ms=3_600_000.0)
    m.set_distribution("RequestTime", ACCURACY)
    m.start()
    return m


# ---------------------------------------------------------------------------
# OTLP: an ExponentialHistogram point, decoded by opentelemetry-proto
# ---------------------------------------------------------------------------

def test_otlp_exponential_histogram():
    pytest.importorskip("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2")
    from test_otlp import Collector

    collector = Collector()
    try:
        m = started(kplm.otlp_sink(endpoint=collector.endpoint))
        data = values() + [0.0, -3.0, -40.0]
        for v in data:
            m.put("RequestTime", v, "orders")
        m.put("UserRecordsPut", 1.0, "orders")
        m.flush()
        m.close()
        m.free()
        (request,) = [r["decoded"] for r in collector.received()]
    finally:
        collector.stop()
    assert collector.decode_errors == []
    metrics = {metric.name: metric for metric in request.resource_metrics[0].scope_metrics[0].metrics}
    assert metrics["UserRecordsPut"].WhichOneof("data") == "histogram"
    metric = metrics["RequestTime"]
    assert metric.WhichOneof("data") == "exponential_histogram"
    (point,) = metric.exponential_histogram.data_points
    # The scale whose buckets read within 1%: base 2^(1/64).
    assert point.scale == 6
    base = 2 ** (2 ** -point.scale)
    assert (base - 1) / (base + 1) <= ACCURACY
    assert point.count == len(data)
    assert point.zero_count + sum(point.positive.bucket_counts) + sum(point.negative.bucket_counts) == point.count
    assert point.min == min(data) and point.max == max(data)
    assert math.isclose(point.sum, math.fsum(data), rel_tol=1e-12)
    # Quantiles read from the buckets (each at its geometric middle) stay
    # within the sketch's accuracy plus the histogram's own.
    buckets = [(-(base ** (point.negative.offset + i + 0.5)), c)
               for i, c in reversed(list(enumerate(point.negative.bucket_counts))) if c]
    buckets += [(0.0, point.zero_count)] if point.zero_count else []
    buckets += [(base ** (point.positive.offset + i + 0.5), c)
                for i, c in enumerate(point.positive.bucket_counts) if c]
    ordered = sorted(data)
    for q in (0.01, 0.25, 0.5, 0.9, 0.99, 0.999):
        x = exact(ordered, q)
        got = quantile_from(buckets, q)
        assert abs(got - x) <= 2 * ACCURACY * abs(x), (q, got, x)


# ---------------------------------------------------------------------------
# CloudWatch: Values/Counts, at most 150 values a datum
# ---------------------------------------------------------------------------

def test_cloudwatch_values_and_counts_json():
    from test_cloudwatch import FakeCloudWatch, fake_sink

    fake = FakeCloudWatch()
    try:
        m = started(fake_sink(fake))
        data = values()
        for v in data:
            m.put("RequestTime", v, "orders")
        m.put("UserRecordsPut", 2.0, "orders")
        m.flush()
        m.close()
        m.free()
    finally:
        fake.stop()
    datums = [d for r in fake.requests for d in r["json"]["MetricData"]]
    timed = [d for d in datums if d["MetricName"] == "RequestTime"]
    assert len(timed) >= 2                         # more than 150 distinct values: split
    pairs = []
    for d in timed:
        assert "StatisticValues" not in d and "Value" not in d
        assert 1 <= len(d["Values"]) <= 150 and len(d["Values"]) == len(d["Counts"])
        assert len(set(d["Values"])) == len(d["Values"])
        assert d["Dimensions"] == [{"Name": "StreamName", "Value": "orders"}]
        assert d["Timestamp"] == timed[0]["Timestamp"] and d["Unit"] == "Milliseconds"
        pairs += zip(d["Values"], d["Counts"])
    assert [v for v, _ in pairs] == sorted(v for v, _ in pairs)
    assert sum(c for _, c in pairs) == len(data)
    ordered = sorted(data)
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        x = exact(ordered, q)
        assert abs(quantile_from(pairs, q) - x) <= ACCURACY * x
    plain = [d for d in datums if d["MetricName"] == "UserRecordsPut"]
    assert plain[0]["StatisticValues"]["SampleCount"] == 1


def test_cloudwatch_values_and_counts_through_moto():
    from test_cloudwatch import REGION, MotoServer, statistics

    server = MotoServer()
    try:
        ns = f"kplm/dist/{uuid.uuid4().hex[:8]}"
        sink = kplm.cloudwatch_sink(region=REGION, endpoint=server.endpoint, access_key_id="testing",
                                    secret_access_key="testing", namespace=ns)
        m = started(sink, clock=kplm.ManualClock(1000.0))
        data = values(n=2000)
        for v in data:
            m.put("RequestTime", v, "orders")
        m.close()
        m.free()
        got = statistics(server.client("cloudwatch"), ns, "RequestTime", [("StreamName", "orders")])
    finally:
        server.stop()
    # moto accepted every datum and counts each value Counts times; what
    # it derives from the values is within the accuracy.
    assert got["SampleCount"] == len(data)
    assert abs(got["Sum"] - math.fsum(data)) <= ACCURACY * math.fsum(data)
    assert abs(got["Minimum"] - min(data)) <= ACCURACY * min(data)
    assert abs(got["Maximum"] - max(data)) <= ACCURACY * max(data)


# ---------------------------------------------------------------------------
# Prometheus: summary quantiles of the last export, clean under promtool
# ---------------------------------------------------------------------------

def test_prometheus_summary_quantiles():
    from test_prometheus import scrape

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = started(kplm.prometheus_sink(port=port))
    try:
        data = values()
        for v in data:
            m.put("RequestTime", v, "orders")     # milliseconds: served in seconds
        m.put("UserRecordsPut", 1.0, "orders")
        m.flush()
        status, _, body = scrape(port)
        _, _, openmetrics = scrape(port, accept="application/openmetrics-text")
    finally:
        m.close()
        m.free()
    assert status == 200
    ordered = sorted(data)
    family = "kplm_request_time_seconds"
    for q in (0.5, 0.9, 0.99, 0.999):
        (line,) = [ln for ln in body.splitlines() if ln.startswith(family + "{") and f'quantile="{q}"' in ln]
        got = float(line.rsplit(" ", 1)[1]) * 1000
        x = exact(ordered, q)
        assert abs(got - x) <= ACCURACY * x, (q, got, x)
    assert "quantile=" not in "\n".join(ln for ln in body.splitlines() if ln.startswith("kplm_user_records_put"))
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    for text in (body, openmetrics):
        run = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0 and run.stdout.strip() == "" and run.stderr.strip() == "", run.stdout + run.stderr
