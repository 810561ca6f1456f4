"""The DogStatsD built-in sink: real UDP datagrams, parsed strictly."""

from __future__ import annotations

import queue
import re
import socket
import threading

import pytest

import kplm

# name:value|type(|#tags)? — plain decimals, sanitized names and tags.
_TAG = r"[A-Za-z][A-Za-z0-9_:./-]{0,199}"
LINE = re.compile(r"([A-Za-z][A-Za-z0-9_.]{0,199}):(-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?)\|(c|g)"
                  rf"(?:\|#({_TAG}(?:,{_TAG})*))?")


class Receiver:
    """A UDP socket on 127.0.0.1 read by a thread; datagrams go to a queue."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.datagrams: "queue.Queue[bytes]" = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(70000)
            except socket.timeout:
                continue
            except OSError:
                return
            self.datagrams.put(data)

    def receive_all(self, quiet: float = 0.3) -> list:
        """Every datagram until none arrives for `quiet` seconds."""
        out = []
        while True:
            try:
                out.append(self.datagrams.get(timeout=quiet))
            except queue.Empty:
                return out

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def parse(datagrams) -> list:
    """(name, value, type, tags) of every line; any malformed line fails the test."""
    lines = []
    for datagram in datagrams:
        for raw in datagram.decode("ascii").split("\n"):
            match = LINE.fullmatch(raw)
            assert match, f"malformed DogStatsD line {raw!r}"
            name, value, kind, tags = match.groups()
            lines.append((name, value, kind, tuple(tags.split(",")) if tags else ()))
    return lines


def four(base: str, count: str, total: str, low: str, high: str, tags=()) -> list:
    tags = tuple(tags)
    return [(base + ".count", count, "c", tags), (base + ".sum", total, "c", tags),
            (base + ".min", low, "g", tags), (base + ".max", high, "g", tags)]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def test_flush_sends_exact_values(receiver):
    clock = kplm.ManualClock(100.0)
    sink = kplm.dogstatsd_sink(port=receiver.port, prefix="kpl", tags=["env:CI", "Team:Ingest"])
    with kplm.Manager(kplm.Level.DETAILED, clock=clock, sink=sink) as m:
        m.put("UserRecordsPut", 2, stream="orders", shard_id="shardId-7")
        m.put("UserRecordsPut", 3.5, stream="orders", shard_id="shardId-7")
        m.put("AllErrors", 1, stream="orders", error_code="Throttled")
        m.put("Latency ms", 0.1)
        m.put("Latency ms", 0.2)
        m.put("Huge", 1e22)
        m.flush()
        lines = parse(receiver.receive_all())
        env = ("env:CI", "Team:Ingest")   # case kept
        assert lines == (
            four("kpl.AllErrors", "1", "1", "1", "1", env + ("stream:orders", "error_code:Throttled"))
            + four("kpl.Huge", "1", "10000000000000000000000", "10000000000000000000000",
                   "10000000000000000000000", env)
            + four("kpl.Latency_ms_c8b9bf13", "2", "0.30000000000000004", "0.1", "0.2", env)
            + four("kpl.UserRecordsPut", "2", "5.5", "2", "3.5", env + ("stream:orders", "shard:shardId-7"))
        )
        # Every value reads back as the exact double.
        assert float(lines[9][1]) == 0.1 + 0.2

        clock.advance(1)
        m.put("AllErrors", 4, stream="orders", error_code="Throttled")
    # The final flush of close.
    assert parse(receiver.receive_all()) == four("kpl.AllErrors", "1", "4", "4", "4",
                                                 env + ("stream:orders", "error_code:Throttled"))


def test_small_datagrams_carry_every_line_once(receiver):
    limit = 100
    sink = kplm.dogstatsd_sink(port=receiver.port, max_datagram_bytes=limit)
    with kplm.Manager(kplm.Level.DETAILED, clock=kplm.ManualClock(100.0), sink=sink) as m:
        for i in range(30):
            m.put(f"M{i:02d}", i, stream="s")
        m.flush()
        datagrams = receiver.receive_all()
    assert len(datagrams) > 10
    assert all(len(d) <= limit for d in datagrams)
    want = []
    for i in range(30):
        want += four(f"M{i:02d}", "1", str(i), str(i), str(i), ("stream:s",))
    assert parse(datagrams) == want


def test_oversized_lines_are_dropped(receiver):
    sink = kplm.dogstatsd_sink(port=receiver.port, max_datagram_bytes=64)
    with kplm.Manager(kplm.Level.DETAILED, clock=kplm.ManualClock(100.0), sink=sink) as m:
        m.put("Ok", 1)
        m.put("Big", 1, stream="x" * 60)
        m.flush()
        assert parse(receiver.receive_all()) == four("Ok", "1", "1", "1", "1")


def test_send_error_is_a_failed_flush():
    sink = kplm.dogstatsd_sink(host="255.255.255.255", port=9)
    m = kplm.Manager(kplm.Level.DETAILED, clock=kplm.ManualClock(100.0), sink=sink)
    try:
        m.start()
        m.put("A", 1)
        with pytest.raises(kplm.SinkError):
            m.flush()
    finally:
        with pytest.raises(kplm.SinkError):
            m.close()
        m.free()


@pytest.mark.parametrize("kwargs", [
    {"port": 0}, {"host": ""}, {"host": "a b"}, {"max_datagram_bytes": 63},
    {"max_datagram_bytes": 65508}, {"tags": ["ok", ""]}, {"port": 70000},
])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(kplm.InvalidArgumentError):
        kplm.dogstatsd_sink(**kwargs)


def test_type_errors():
    with pytest.raises(TypeError):
        kplm.dogstatsd_sink(tags="env:ci")
    with pytest.raises(TypeError):
        kplm.dogstatsd_sink(tags=[None])
    with pytest.raises(TypeError):
        kplm.dogstatsd_sink(port="8125")


def test_unused_sink_is_released_and_a_sink_serves_one_manager():
    sink = kplm.dogstatsd_sink()
    sink.release()
    sink.release()
    sink = kplm.dogstatsd_sink()
    m = kplm.Manager(kplm.Level.DETAILED, clock=kplm.ManualClock(100.0))
    m.start()
    with pytest.raises(kplm.StateError):
        m.set_sink(sink)  # started: refused, the sink is still ours
    m.close()
    m.free()
    m2 = kplm.Manager(kplm.Level.DETAILED, clock=kplm.ManualClock(100.0), sink=sink)
    with pytest.raises(kplm.StateError):
        kplm.Manager(kplm.Level.DETAILED, sink=sink)  # already taken by m2
    m2.free()
