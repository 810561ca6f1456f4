"""The OTLP/HTTP built-in sink against a loopback collector.

Every request body is decoded with the official ``opentelemetry-proto``
package (``pip install opentelemetry-proto``), so the field numbers and wire
types of the hand-written encoder are checked against the reference.
"""

from __future__ import annotations

import gzip
import math
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import kplm

pytest.importorskip("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2",
                    reason="needs the opentelemetry-proto package")
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest, ExportMetricsServiceResponse)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality  # noqa: E402

PATH = "/v1/metrics"


class Collector:
    """A loopback OTLP/HTTP receiver on a free port, answering from a script.

    ``script`` holds the answers of the next requests, in order: a status
    (int), ``(status, {header: value})``, or ``"drop"`` (close without an
    answer). Once it is empty every request gets 200. Each request is kept
    in ``requests`` as a dict: path, headers, body, decoded (the
    ExportMetricsServiceRequest), status and the monotonic time it arrived.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.script: list = []
        self.requests: list = []
        self.decode_errors: list = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep pytest's output clean
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    decoded = ExportMetricsServiceRequest.FromString(body)
                except Exception as exc:  # recorded, and fails the test at teardown
                    decoded = None
                    with collector.lock:
                        collector.decode_errors.append(repr(exc))
                with collector.lock:
                    answer = collector.script.pop(0) if collector.script else 200
                    status, extra = (answer if isinstance(answer, tuple) else (answer, {}))
                    collector.requests.append({
                        "path": self.path, "headers": dict(self.headers.items()), "body": body,
                        "decoded": decoded, "status": status, "at": time.monotonic()})
                if status == "drop":
                    self.close_connection = True
                    return
                payload = ExportMetricsServiceResponse().SerializeToString() if status == 200 else b""
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}{PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def answer(self, *answers) -> None:
        with self.lock:
            self.script.extend(answers)

    def received(self) -> list:
        with self.lock:
            return list(self.requests)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.stop()
    assert c.decode_errors == [], "a request body is not a valid ExportMetricsServiceRequest"


def make(collector, clock=None, **kwargs):
    """A started DETAILED manager exporting to the collector (no periodic upload)."""
    kwargs.setdefault("endpoint", collector.endpoint)
    sink = kplm.otlp_sink(**kwargs)
    m = kplm.Manager(kplm.Level.DETAILED, clock=clock or kplm.ManualClock(1000.0), sink=sink,
                     upload_interval_ms=3_600_000.0)
    m.start()
    return m


def attributes(kvs) -> dict:
    out = {}
    for kv in kvs:
        assert kv.value.WhichOneof("value") == "string_value"
        out[kv.key] = kv.value.string_value
    return out


def points_by_metric(request) -> dict:
    """``{metric name: {frozenset(attributes): point}}`` of one decoded request."""
    (rm,) = request.resource_metrics
    (sm,) = rm.scope_metrics
    out = {}
    for metric in sm.metrics:
        assert metric.name not in out, f"metric {metric.name} twice"
        assert metric.WhichOneof("data") == "histogram"
        out[metric.name] = {frozenset(attributes(p.attributes).items()): p for p in metric.histogram.data_points}
    return out


def test_exact_decoded_values(collector):
    clock = kplm.ManualClock(1000.0)
    m = make(collector, clock, service_name="orders-producer")
    try:
        m.put("UserRecordsPut", 2, stream="orders", shard_id="shardId-7")
        m.put("UserRecordsPut", 3.5, stream="orders", shard_id="shardId-7")
        m.put("UserRecordsPut", 1, stream="orders", shard_id="shardId-8")
        m.put("UserRecordsDataPut", 1024, stream="orders")
        m.put("BufferingTime", 12.25, stream="orders")
        clock.advance(1)
        m.put("BufferingTime", 0.75, stream="orders")
        m.put("My Metric", -1.5)
        clock.advance(2)  # now 1003: the newest second (1001) ends at 1002
        before = time.time()
        m.flush()
        after = time.time()
    finally:
        m.close()
        m.free()

    (req,) = collector.received()
    assert req["path"] == PATH
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert headers["host"] == f"127.0.0.1:{collector.port}"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["content-length"] == str(len(req["body"]))
    assert headers["connection"].lower() == "close"
    decoded = req["decoded"]
    # The encoding is the canonical one: re-serializing gives the same bytes.
    assert decoded.SerializeToString() == req["body"]

    (rm,) = decoded.resource_metrics
    assert attributes(rm.resource.attributes) == {"service.name": "orders-producer"}
    (sm,) = rm.scope_metrics
    assert (sm.scope.name, sm.scope.version) == ("kplm", kplm.version())
    assert [(x.name, x.unit) for x in sm.metrics] == [
        ("BufferingTime", "ms"), ("My Metric", ""), ("UserRecordsDataPut", "By"), ("UserRecordsPut", "1")]
    for metric in sm.metrics:
        assert metric.histogram.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA

    points = points_by_metric(decoded)
    expect = {
        ("BufferingTime", frozenset({("stream", "orders")})): (2, 13.0, 0.75, 12.25, 2),
        ("My Metric", frozenset()): (1, -1.5, -1.5, -1.5, 1),
        ("UserRecordsDataPut", frozenset({("stream", "orders")})): (1, 1024.0, 1024.0, 1024.0, 1),
        ("UserRecordsPut", frozenset({("stream", "orders"), ("shard", "shardId-7")})): (2, 5.5, 2.0, 3.5, 1),
        ("UserRecordsPut", frozenset({("stream", "orders"), ("shard", "shardId-8")})): (1, 1.0, 1.0, 1.0, 1),
    }
    got = {(name, attrs) for name, by_attrs in points.items() for attrs in by_attrs}
    assert got == set(expect)
    for (name, attrs), (count, total, low, high, window) in expect.items():
        p = points[name][attrs]
        assert (p.count, p.sum, p.min, p.max) == (count, total, low, high)
        assert p.HasField("sum") and p.HasField("min") and p.HasField("max")
        assert list(p.bucket_counts) == [count]
        assert list(p.explicit_bounds) == []
        # time = the wall clock matching window_end; start = time - window length.
        assert p.time_unix_nano - p.start_time_unix_nano == window * 1_000_000_000
        newest_end = 1002 if window == 2 or name == "My Metric" else 1001
        lag = 1003 - newest_end
        assert (before - lag) * 1e9 - 1e6 <= p.time_unix_nano <= (after - lag) * 1e9 + 1e6


def test_many_names_and_keys_in_one_request(collector):
    m = make(collector)
    try:
        for i in range(40):
            for shard in range(3):
                m.put(f"Metric{i:02d}", i + shard, stream="s", shard_id=f"shard-{shard}")
        m.flush()
    finally:
        m.close()
        m.free()
    (req,) = collector.received()
    points = points_by_metric(req["decoded"])
    assert sorted(points) == [f"Metric{i:02d}" for i in range(40)]
    for i in range(40):
        by_attrs = points[f"Metric{i:02d}"]
        assert len(by_attrs) == 3
        for shard in range(3):
            p = by_attrs[frozenset({("stream", "s"), ("shard", f"shard-{shard}")})]
            assert (p.count, p.sum) == (1, float(i + shard))


def test_503_with_retry_after_then_200(collector):
    collector.answer((503, {"Retry-After": "1"}))
    m = make(collector)
    try:
        m.put("A", 1)
        started = time.monotonic()
        m.flush()
        elapsed = time.monotonic() - started
    finally:
        m.close()
        m.free()
    reqs = collector.received()
    assert [r["status"] for r in reqs] == [503, 200]
    assert reqs[0]["body"] == reqs[1]["body"]
    assert reqs[1]["at"] - reqs[0]["at"] >= 0.95
    assert 0.95 <= elapsed < 3


def test_backoff_without_retry_after_and_a_dropped_connection(collector):
    collector.answer(502, "drop", 504)
    m = make(collector)
    try:
        m.put("A", 1)
        started = time.monotonic()
        m.flush()
        assert time.monotonic() - started < 2
    finally:
        m.close()
        m.free()
    assert [r["status"] for r in collector.received()] == [502, "drop", 504, 200]


def test_429_beyond_max_retries_fails_and_the_data_is_sent_again(collector):
    collector.answer(*[(429, {"Retry-After": "0"})] * 3)
    m = make(collector, max_retries=2)
    try:
        m.put("A", 1, stream="s")
        with pytest.raises(kplm.SinkError):
            m.flush()
        assert [r["status"] for r in collector.received()] == [429, 429, 429]
        m.put("A", 4, stream="s")
        m.flush()
    finally:
        m.close()
        m.free()
    reqs = collector.received()
    assert [r["status"] for r in reqs] == [429, 429, 429, 200]
    (p,) = points_by_metric(reqs[3]["decoded"])["A"].values()
    assert (p.count, p.sum, p.min, p.max) == (2, 5.0, 1.0, 4.0)


def test_400_fails_at_once_and_keeps_the_data(collector):
    collector.answer(400)
    m = make(collector, max_retries=5)
    try:
        m.put("A", 2)
        started = time.monotonic()
        with pytest.raises(kplm.SinkError):
            m.flush()
        assert time.monotonic() - started < 1
        assert [r["status"] for r in collector.received()] == [400]
        m.flush()
    finally:
        m.close()
        m.free()
    reqs = collector.received()
    assert [r["status"] for r in reqs] == [400, 200]
    for r in reqs:
        (p,) = points_by_metric(r["decoded"])["A"].values()
        assert (p.count, p.sum, p.min, p.max) == (1, 2.0, 2.0, 2.0)


def test_retry_after_beyond_the_timeout_fails_without_waiting(collector):
    collector.answer((503, {"Retry-After": "30"}))
    m = make(collector, timeout_ms=2000)
    try:
        m.put("A", 2)
        started = time.monotonic()
        with pytest.raises(kplm.SinkError):
            m.flush()
        assert time.monotonic() - started < 1
    finally:
        m.close()
        m.free()
    assert [r["status"] for r in collector.received()] == [503, 200]  # the final flush of close


def test_close_sends_the_final_flush(collector):
    m = make(collector)
    m.put("A", 3)
    m.close()
    m.free()
    (req,) = collector.received()
    (p,) = points_by_metric(req["decoded"])["A"].values()
    assert (p.count, p.sum) == (1, 3.0)


def _unused_port() -> socket.socket:
    """A bound TCP socket that never listens: connecting to its port is refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s


def test_dead_endpoint_fails_within_the_timeout():
    holder = _unused_port()
    port = holder.getsockname()[1]
    try:
        m = make(type("C", (), {"endpoint": f"http://127.0.0.1:{port}/v1/metrics"})(),
                 timeout_ms=1500, max_retries=3)
        try:
            m.put("A", 1)
            started = time.monotonic()
            with pytest.raises(kplm.SinkError):
                m.flush()
            assert time.monotonic() - started < 1.5 + 0.5
        finally:
            with pytest.raises(kplm.SinkError):
                m.close()
            m.free()
    finally:
        holder.close()


def test_silent_endpoint_times_out():
    """A listener that never accepts: connect and send succeed, no answer comes."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        m = make(type("C", (), {"endpoint": f"http://127.0.0.1:{port}/x"})(), timeout_ms=400, max_retries=3)
        try:
            m.put("A", 1)
            started = time.monotonic()
            with pytest.raises(kplm.SinkError):
                m.flush()
            elapsed = time.monotonic() - started
            assert 0.35 <= elapsed < 1.2
        finally:
            with pytest.raises(kplm.SinkError):
                m.close()
            m.free()
    finally:
        listener.close()


@pytest.mark.parametrize("kwargs", [
    {"endpoint": "ftp://127.0.0.1:4318/v1/metrics"}, {"endpoint": "http://"}, {"endpoint": "http:///v1"},
    {"endpoint": "http://:4318/v1"}, {"endpoint": "127.0.0.1:4318/v1"}, {"endpoint": "http://h:0/v1"},
    {"endpoint": "http://h:65536/v1"}, {"endpoint": "http://h:x/v1"}, {"endpoint": "http://h:/v1"},
    {"endpoint": "http://u@h/v1"}, {"endpoint": "http://h/a b"}, {"endpoint": "http://[::1/v1"},
    {"endpoint": ""}, {"timeout_ms": 0}, {"timeout_ms": -1}, {"timeout_ms": math.nan}, {"timeout_ms": math.inf},
    {"max_retries": -1}, {"compression": "br"}, {"headers": {"Bad Name": "v"}}, {"headers": {"X": "a\r\nY: b"}},
    {"headers": {"X": "a\nb"}}, {"headers": ["no colon"]}, {"headers": [": empty name"]},
    {"headers": {"Content-Length": "1"}}, {"headers": {"host": "h"}}, {"headers": ["X: 1", "x: 2"]},
])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(kplm.InvalidArgumentError):
        kplm.otlp_sink(**kwargs)


@pytest.mark.parametrize("template, target", [
    ("http://127.0.0.1:{port}/v1/metrics", "/v1/metrics"),
    ("HTTP://127.0.0.1:{port}/v1/metrics", "/v1/metrics"),  # the scheme in any case
    ("http://127.0.0.1:{port}", "/"),  # no path: "/"
    ("http://127.0.0.1:{port}/a/b?tenant=x", "/a/b?tenant=x"),  # the query is kept
])
def test_good_endpoints_are_accepted(collector, no_otel_environment, template, target):
    """Each accepted endpoint is parsed right: the request goes to its port, with its path and Host."""
    put_and_flush(kplm.otlp_sink(endpoint=template.format(port=collector.port), service_name=""))
    (request,) = collector.received()
    assert request["path"] == target
    assert request["headers"]["Host"] == f"127.0.0.1:{collector.port}"
    assert "UserRecordsPut" in points_by_metric(request["decoded"])


class FirstBytes:
    """A listener on (host, a free port) keeping what its first connection sends.

    A plain HTTP request is read to its end and answered 200; anything else
    (a TLS ClientHello) is kept and the connection closed.
    """

    def __init__(self, family: int, host: str) -> None:
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.data = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(10)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                self.data += chunk
                if not self.data.startswith(b"POST "[:len(self.data)]):
                    return
                head, sep, body = self.data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                if sep and len(body) >= length:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return

    def received(self) -> bytes:
        self.thread.join(15)
        self.listener.close()
        return self.data


def test_ipv6_endpoint_reaches_the_address(no_otel_environment):
    try:
        server = FirstBytes(socket.AF_INET6, "::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    put_and_flush(kplm.otlp_sink(endpoint=f"http://[::1]:{server.port}/v1/metrics"))
    head = server.received().split(b"\r\n\r\n")[0].decode()
    assert head.startswith("POST /v1/metrics HTTP/1.1\r\n"), head
    assert f"\r\nHost: [::1]:{server.port}\r\n" in head + "\r\n", head


def test_https_endpoint_speaks_tls(no_otel_environment):
    """https:// is TLS on the given port (the handshake is refused here, so the export fails)."""
    server = FirstBytes(socket.AF_INET, "127.0.0.1")
    sink = kplm.otlp_sink(endpoint=f"https://127.0.0.1:{server.port}/v1/metrics", timeout_ms=2000, max_retries=0)
    m = kplm.Manager(kplm.Level.DETAILED, clock=kplm.ManualClock(1000.0), sink=sink,
                     upload_interval_ms=3_600_000.0)
    try:
        m.start()
        m.put("UserRecordsPut", 2, stream="orders")
        with pytest.raises(kplm.SinkError) as failure:
            m.flush()
        data = server.received()
        with pytest.raises(kplm.SinkError):
            m.close()  # the listener is gone: refused at once
    finally:
        m.free()
    if not data and "curl" in str(failure.value).lower():
        pytest.skip(f"https needs libcurl at run time: {failure.value}")
    assert data[:1] == b"\x16" and data[1:2] == b"\x03", f"not a TLS handshake record: {data[:16]!r}"


def test_defaults_and_ownership():
    sink = kplm.otlp_sink()
    assert sink.kind == "otlp"
    sink.release()
    sink.release()
    with pytest.raises(TypeError):
        kplm.otlp_sink(timeout_ms="5000")


OTEL_VARS = [f"OTEL_EXPORTER_OTLP_{signal}{what}" for signal in ("", "METRICS_")
             for what in ("ENDPOINT", "HEADERS", "TIMEOUT", "COMPRESSION")]


@pytest.fixture
def no_otel_environment(monkeypatch):
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def put_and_flush(sink) -> None:
    m = kplm.Manager(kplm.Level.DETAILED, clock=kplm.ManualClock(1000.0), sink=sink,
                     upload_interval_ms=3_600_000.0)
    m.start()
    try:
        m.put("UserRecordsPut", 2, stream="orders")
        m.flush()
    finally:
        m.close()
        m.free()


def test_headers_and_gzip(collector, no_otel_environment):
    """Extra headers and a gzip body (decoded by the collector, then by opentelemetry-proto)."""
    put_and_flush(kplm.otlp_sink(endpoint=collector.endpoint, compression="gzip",
                                 headers={"X-Api-Key": "secret", "Tenant": "t 1"}))
    put_and_flush(kplm.otlp_sink(endpoint=collector.endpoint, headers=["X-Api-Key:  other  "]))
    first, second = collector.received()
    assert first["headers"]["Content-Encoding"] == "gzip"
    assert (first["headers"]["X-Api-Key"], first["headers"]["Tenant"]) == ("secret", "t 1")
    assert first["headers"]["Content-Type"] == "application/x-protobuf"
    assert "UserRecordsPut" in points_by_metric(first["decoded"])
    assert "Content-Encoding" not in second["headers"]
    assert second["headers"]["X-Api-Key"] == "other"
    assert "UserRecordsPut" in points_by_metric(second["decoded"])


def test_environment_variables(collector, no_otel_environment):
    """OTEL_EXPORTER_OTLP_*: the base endpoint gets /v1/metrics, METRICS_ wins over the general
    variable, URL-decoded headers, gzip; an explicit endpoint and header win over them."""
    monkeypatch = no_otel_environment
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b%2Cc, tenant=env")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "4000")
    put_and_flush(kplm.otlp_sink())
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"http://127.0.0.1:{collector.port}/custom")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none")
    put_and_flush(kplm.otlp_sink(headers={"Tenant": "explicit"}))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://127.0.0.1:9/unused")
    put_and_flush(kplm.otlp_sink(endpoint=f"http://127.0.0.1:{collector.port}/explicit"))
    first, second, third = collector.received()
    assert first["path"] == "/v1/metrics"
    assert first["headers"]["Content-Encoding"] == "gzip"
    assert (first["headers"]["api-key"], first["headers"]["tenant"]) == ("a b,c", "env")
    assert second["path"] == "/custom"
    assert "Content-Encoding" not in second["headers"]
    assert second["headers"]["Tenant"] == "explicit"
    assert third["path"] == "/explicit"
    for request in (first, second, third):
        assert "UserRecordsPut" in points_by_metric(request["decoded"])


@pytest.mark.parametrize("name, value", [
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"), ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "-5"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"), ("OTEL_EXPORTER_OTLP_HEADERS", "a=%0D%0AInjected: 1"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://h"),
])
def test_bad_environment_variables_are_refused(no_otel_environment, name, value):
    no_otel_environment.setenv(name, value)
    with pytest.raises(kplm.InvalidArgumentError):
        kplm.otlp_sink()
