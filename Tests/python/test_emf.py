"""The EMF built-in sink (kplm_sink_emf) through the Python binding: file,
TCP and UDP destinations end to end, every event checked against the
CloudWatch Embedded Metric Format rules, and compared with what the
official ``aws-embedded-metrics`` package produces for the same metrics."""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest

import kplm

# What the tests put: (name, value, stream, shard, error_code).
PUTS = [
    ("UserRecordsPut", 3, "orders", "shardId-1", None),
    ("UserRecordsPut", 5, "orders", "shardId-1", None),
    ("UserRecordsDataPut", 1000, "orders", "shardId-1", None),
    ("BufferingTime", 12.5, None, None, None),
    ("ErrorsByCode", 1, "orders", "shardId-1", "Throttled"),
    ("Custom \"quoted\" metric", 0.1, "we\\ird", None, None),
]

UNITS = {"UserRecordsPut": "Count", "UserRecordsDataPut": "Bytes", "BufferingTime": "Milliseconds",
         "ErrorsByCode": "Count"}
EMF_UNITS = {"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
             "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
             "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
             "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
             "Gigabits/Second", "Terabits/Second", "Count/Second", "None"}


def expected_groups(namespace="KinesisProducerLibrary"):
    """{frozenset(dimension items): {metric: (unit, value)}} computed from PUTS alone."""
    stats = {}
    for name, value, stream, shard, code in PUTS:
        dims = tuple((k, v) for k, v in (("StreamName", stream), ("ShardId", shard), ("ErrorCode", code)) if v)
        c, s, lo, hi = stats.get((name, dims), (0, 0.0, float("inf"), float("-inf")))
        stats[(name, dims)] = (c + 1, s + value, min(lo, value), max(hi, value))
    groups = {}
    for (name, dims), (c, s, lo, hi) in stats.items():
        unit = UNITS.get(name, "None")
        metrics = groups.setdefault(dims, {})
        metrics[name] = (unit, s)
        metrics[name + ".Count"] = ("Count", c)
        metrics[name + ".Min"] = (unit, lo)
        metrics[name + ".Max"] = (unit, hi)
    return groups


def check_emf_event(line: str) -> dict:
    """Parses one event and asserts the EMF specification's rules."""
    assert "\n" not in line
    event = json.loads(line)
    assert isinstance(event, dict)
    aws = event["_aws"]
    assert set(aws) == {"Timestamp", "CloudWatchMetrics"}
    assert re.search(r'"Timestamp"\s*:\s*\d+\s*[,}]', line), "Timestamp must be an integer (ms)"
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 1_500_000_000_000
    directives = aws["CloudWatchMetrics"]
    assert isinstance(directives, list) and len(directives) >= 1
    for d in directives:
        assert isinstance(d["Namespace"], str) and 1 <= len(d["Namespace"]) <= 255
        assert isinstance(d["Dimensions"], list)
        for dim_set in d["Dimensions"]:
            assert isinstance(dim_set, list) and len(dim_set) <= 30
            for key in dim_set:
                assert isinstance(event.get(key), str), f"dimension {key} is not a string target member"
        assert 1 <= len(d["Metrics"]) <= 100
        names = [m["Name"] for m in d["Metrics"]]
        assert len(set(names)) == len(names)
        for m in d["Metrics"]:
            assert set(m) <= {"Name", "Unit", "StorageResolution"}
            assert m.get("Unit", "None") in EMF_UNITS
            value = event.get(m["Name"])
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100
            for v in values:
                assert isinstance(v, (int, float)) and not isinstance(v, bool)
                assert v == v and abs(v) != float("inf")
    return event


def as_groups(events):
    """{frozenset-able dims tuple: {metric: (unit, value)}} from parsed events."""
    groups = {}
    for e in events:
        d = e["_aws"]["CloudWatchMetrics"][0]
        dims = tuple((k, e[k]) for k in d["Dimensions"][0])
        metrics = groups.setdefault(dims, {})
        for m in d["Metrics"]:
            assert m["Name"] not in metrics
            metrics[m["Name"]] = (m["Unit"], e[m["Name"]])
    return groups


def run_manager(sink, namespace=None):
    clock = kplm.ManualClock(100.0)
    manager = kplm.Manager(level=kplm.Level.DETAILED, clock=clock, sink=sink, upload_interval_ms=3_600_000,
                           namespace=namespace)
    try:
        manager.start()
        for name, value, stream, shard, code in PUTS:
            manager.put(name, value, stream, shard, code)
        clock.advance(1)
        manager.flush()
        manager.close()
    finally:
        manager.free()


class Agent:
    """A CloudWatch agent stand-in on 127.0.0.1 (TCP listener or UDP socket)."""

    def __init__(self, udp=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lines = []
        self.lock = threading.Condition()
        self.stop = False
        if not udp:
            self.sock.listen(8)
        self.thread = threading.Thread(target=self._udp if udp else self._tcp, daemon=True)
        self.thread.start()

    def _tcp(self):
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(0.1)
            buf = b""
            while not self.stop:
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                buf += chunk
                *complete, buf = buf.split(b"\n")
                with self.lock:
                    self.lines += [c.decode() for c in complete]
                    self.lock.notify_all()
            conn.close()

    def _udp(self):
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                data = self.sock.recv(65536)
            except OSError:
                continue
            with self.lock:
                self.lines.append(data.decode())
                self.lock.notify_all()

    def wait(self, n, timeout=5.0):
        with self.lock:
            self.lock.wait_for(lambda: len(self.lines) >= n, timeout)
            return list(self.lines)

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


def test_file_destination_end_to_end(tmp_path):
    path = tmp_path / "emf.log"
    path.write_text("previous\n")
    run_manager(kplm.emf_sink("file", path=path, namespace="PyTests"))
    lines = path.read_text().split("\n")
    assert lines[0] == "previous" and lines[-1] == ""
    events = [check_emf_event(line) for line in lines[1:-1]]
    assert len(events) == 4  # four dimension sets
    assert {e["_aws"]["CloudWatchMetrics"][0]["Namespace"] for e in events} == {"PyTests"}
    assert as_groups(events) == expected_groups()
    # One timestamp for the whole flush, close to now.
    stamps = {e["_aws"]["Timestamp"] for e in events}
    assert len(stamps) == 1 and abs(stamps.pop() / 1000 - time.time()) < 60


def test_tcp_destination_end_to_end():
    agent = Agent()
    try:
        run_manager(kplm.emf_sink("tcp", port=agent.port), namespace="FromManager")
        lines = agent.wait(4)
    finally:
        agent.close()
    events = [check_emf_event(line) for line in lines]
    assert len(events) == 4
    assert {e["_aws"]["CloudWatchMetrics"][0]["Namespace"] for e in events} == {"FromManager"}
    assert as_groups(events) == expected_groups()


def test_udp_destination_one_event_per_datagram():
    agent = Agent(udp=True)
    try:
        run_manager(kplm.emf_sink(kplm.EmfDestination.UDP, port=agent.port))
        datagrams = agent.wait(4)
    finally:
        agent.close()
    events = [check_emf_event(d) for d in datagrams]
    assert len(events) == 4
    assert as_groups(events) == expected_groups()


def test_unreachable_tcp_agent_fails_the_flush_and_keeps_the_data():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there now
    clock = kplm.ManualClock(100.0)
    manager = kplm.Manager(level="detailed", clock=clock, upload_interval_ms=3_600_000,
                           sink=kplm.emf_sink("tcp", port=port, timeout_ms=500))
    try:
        manager.start()
        manager.put("UserRecordsPut", 2)
        clock.advance(1)
        started = time.monotonic()
        with pytest.raises(kplm.SinkError):
            manager.flush()
        assert time.monotonic() - started < 2
        # The agent comes up on that port: the retained data goes out.
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1)
        manager.flush()
        listener.settimeout(5)
        conn, _ = listener.accept()
        conn.settimeout(5)
        data = b""
        while not data.endswith(b"\n"):
            data += conn.recv(65536)
        conn.close()
        listener.close()
        event = check_emf_event(data.decode().rstrip("\n"))
        assert event["UserRecordsPut"] == 2 and event["UserRecordsPut.Count"] == 1
    finally:
        manager.free()


@pytest.mark.parametrize("kwargs", [
    {"destination": "carrier-pigeon"},
    {"destination": "file"},
    {"destination": "file", "path": ""},
    {"destination": "tcp", "port": 0},
    {"destination": "udp", "host": "no such host!"},
    {"destination": "tcp", "host": ""},
    {"namespace": "AWS/Kinesis"},
    {"timeout_ms": 0},
    {"timeout_ms": float("nan")},
])
def test_bad_configurations_are_refused(kwargs):
    with pytest.raises(kplm.InvalidArgumentError):
        kplm.emf_sink(**kwargs)


def test_unused_sink_is_released_and_cannot_be_reused():
    sink = kplm.emf_sink()
    assert sink.kind == "emf"
    sink.release()
    sink.release()
    with pytest.raises(kplm.StateError):
        kplm.Manager(level="detailed", sink=sink)


def test_same_directive_as_the_official_aws_embedded_metrics_package(tmp_path):
    aws = pytest.importorskip(
        "aws_embedded_metrics",
        reason="the official `aws-embedded-metrics` package is not installed (pip install aws-embedded-metrics)")
    from aws_embedded_metrics.logger.metrics_context import MetricsContext
    from aws_embedded_metrics.serializers.log_serializer import LogSerializer
    assert aws is not None

    path = tmp_path / "emf.log"
    run_manager(kplm.emf_sink("file", path=str(path)))
    ours = [check_emf_event(line) for line in path.read_text().splitlines()]

    # The official serializer, fed the same metrics (computed from PUTS alone).
    theirs = []
    for dims, metrics in expected_groups().items():
        context = MetricsContext(namespace="KinesisProducerLibrary")
        context.set_dimensions([dict(dims)])
        for name, (unit, value) in metrics.items():
            context.put_metric(name, value, unit)
        for line in LogSerializer.serialize(context):
            theirs.append(check_emf_event(line))

    def comparable(event):
        event = json.loads(json.dumps(event))
        aws_meta = event.pop("_aws")
        aws_meta.pop("Timestamp")
        for d in aws_meta["CloudWatchMetrics"]:
            d["Metrics"] = sorted(d["Metrics"], key=lambda m: m["Name"])
        # 1 and 1.0 are the same JSON number to CloudWatch.
        event = {k: float(v) if isinstance(v, (int, float)) else v for k, v in event.items()}
        return json.dumps({"_aws": aws_meta, **event}, sort_keys=True)

    assert len(ours) == len(theirs) == 4
    assert sorted(map(comparable, ours)) == sorted(map(comparable, theirs))
