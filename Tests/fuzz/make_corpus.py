#!/usr/bin/env python3
"""Writes the seed programs of Tests/fuzz/corpus (seed-*) for fuzz_abi.c.

Each seed is a small program in the harness's input format (see the comment
at the top of fuzz_abi.c and decode_config / run_op / get_str / get_value
there) exercising one area of the C ABI. Inputs that the fuzzer found and that
scripts/fuzz.sh --merge added are kept beside them; this script rewrites only
the seed-* files.

    python3 Tests/fuzz/make_corpus.py [OUTPUT_DIR]
"""
import os
import struct
import sys

# Operation kinds (run_op).
PUT, METRIC_GET, METRIC_PUT, FLUSH, SNAPSHOTS, CLOCK, SET_SINK = 0, 3, 4, 5, 6, 7, 9
START, CLOSE, FREE, NEW, MISC, BURST = 10, 11, 12, 13, 14, 15

# Levels.
NONE, SUMMARY, DETAILED = 0, 1, 2

# Re-entry actions of callbacks (reenter(): byte % 14; 0 = nothing).
R_PUT, R_METRIC_PUT, R_FLUSH, R_CLOSE, R_FREE, R_START, R_SNAPSHOTS, R_METRIC_GET = 1, 2, 3, 4, 5, 6, 7, 8
R_PUT_OTHER, R_FLUSH_OTHER, R_CLOSE_OTHER, R_FREE_OTHER, R_SNAPSHOTS_OTHER = 9, 10, 11, 12, 13
R_SET_SINK = 14  # own manager, only once started or closed (reads a set_sink flags byte)

# Tables of fuzz_abi.c (indices used below).
NAMES = ["UserRecordsReceived", "UserRecordsPending", "UserRecordsPut", "UserRecordsDataPut",
         "KinesisRecordsPut", "KinesisRecordsDataPut", "ErrorsByCode", "AllErrors",
         "RetriesPerRecord", "UserRecordExpired", "BufferingTime", "RequestTime",
         "UserRecordsPerKinesisRecord", "KinesisRecordsPerPutRecordsRequest",
         "UserRecordsPerPutRecordsRequest", "KplmMetricsRefused"]
N_REFUSED = 15
D_STREAM1, D_STREAM2, D_SHARD0, D_SHARD1, D_PTE, D_INTERNAL = 1, 2, 3, 4, 5, 6


class Program:
    def __init__(self, both=False):
        self.b = bytearray([1 if both else 0])

    # Raw encoding -------------------------------------------------------
    def u8(self, *xs):
        for x in xs:
            self.b.append(x & 0xFF)
        return self

    def u16(self, x):
        self.b += struct.pack("<H", x)
        return self

    def u32(self, x):
        self.b += struct.pack("<I", x & 0xFFFFFFFF)
        return self

    def f64(self, x):
        self.b += struct.pack("<d", x)
        return self

    # Arguments ------------------------------------------------------------
    # A string is given as: None (NULL), "" , ("name", i), ("dim", i),
    # bytes (raw, < 64 bytes), ("long", bytes), ("fill", length_index, pattern_index).
    def s(self, v):
        if v is None:
            return self.u8(0x00)
        if v == "":
            return self.u8(0x20)
        if isinstance(v, (bytes, bytearray)):
            assert len(v) < 64
            return self.u8(0x80 | len(v)).u8(*v)
        kind = v[0]
        if kind == "name":
            return self.u8(0x40 | v[1])
        if kind == "dim":
            return self.u8(0x60 | v[1])
        if kind == "long":
            self.u8(0xC0).u16(len(v[1]))
            self.b += v[1]
            return self
        if kind == "fill":
            return self.u8(0xE0).u8(v[1] | v[2] << 4)
        raise ValueError(v)

    # A value: int 0..63, ("tab", i), ("raw", float), ("quarter", q in -32..31).
    def v(self, x):
        if isinstance(x, int):
            assert 0 <= x < 64
            return self.u8(x)
        if x[0] == "tab":
            return self.u8(0x40 | x[1])
        if x[0] == "raw":
            return self.u8(0x80).f64(x[1])
        if x[0] == "quarter":
            return self.u8(0xC0 | (x[1] + 32))
        raise ValueError(x)

    # Configuration (decode_config / new_manager) ----------------------------
    def config(self, level=DETAILED, raw_level=None, layout=None, window=None, max_metrics=None,
               interval=None, timeout=None, clock=0x00):
        """layout: None | "null" | "first" | ("size", n) | ("delta", d in -32..31).
        window: None | ("small", n 1..8) | ("raw", u32) | ("tab", i).
        max_metrics: None | ("small", n 1..8) | "zero" | ("raw", u32).
        interval: None | ("huge", i) | ("bad", i) | ("raw", f) | ("short", ms 1..20).
        timeout: None | ("tab", i) | ("raw", f).
        clock: initial clock byte (< 0xF0: 1000 + x; else a table entry), or "system"."""
        a = (3 if raw_level is not None else level)
        a |= (3 << 2) if layout is not None else 0
        wk = {None: 0, "small": 1, "raw": 2, "tab": 3}[window[0] if window else None]
        a |= wk << 4
        mk = 0 if max_metrics is None else 2 if max_metrics == "zero" else {"small": 1, "raw": 3}[max_metrics[0]]
        a |= mk << 6
        ik = 0 if interval is None else {"huge": 4, "bad": 5, "raw": 6, "short": 7}[interval[0]]
        tk = 0 if timeout is None else {"tab": 2, "raw": 3}[timeout[0]]
        ck = 3 if clock == "system" else 0
        b = ik | tk << 3 | ck << 5
        self.u8(a, b)
        if raw_level is not None:
            self.u32(raw_level)
        if layout is not None:
            if layout == "null":
                self.u8(0)
            elif layout == "first":
                self.u8(1)
            elif layout[0] == "size":
                self.u8(2).u32(layout[1])
            else:
                self.u8(3 | (layout[1] + 32) << 2)
        if window:
            if window[0] == "small":
                self.u8(window[1] - 1)
            elif window[0] == "raw":
                self.u32(window[1])
            else:
                self.u8(window[1])
        if mk == 1:
            self.u8(max_metrics[1] - 1)
        elif mk == 3:
            self.u32(max_metrics[1])
        if interval:
            if interval[0] in ("huge", "bad"):
                self.u8(interval[1])
            elif interval[0] == "raw":
                self.f64(interval[1])
            else:
                self.u8(interval[1] - 1)
        if timeout:
            if timeout[0] == "tab":
                self.u8(timeout[1])
            else:
                self.f64(timeout[1])
        if clock != "system":
            self.u8(clock)
        return self

    # Operations -------------------------------------------------------------
    def op(self, kind, slot=0):
        return self.u8(slot | kind << 1)

    def put(self, name, value=1, stream=None, shard=None, err=None, slot=0):
        return self.op(PUT, slot).s(name).s(stream).s(shard).s(err).v(value)

    def metric_get(self, name, stream=None, shard=None, err=None, slot=0):
        return self.op(METRIC_GET, slot).s(name).s(stream).s(shard).s(err)

    def metric_put(self, handle, value=1, slot=0):
        return self.op(METRIC_PUT, slot).u8(handle).v(value)

    def flush(self, slot=0):
        return self.op(FLUSH, slot)

    def snapshots(self, stop=0, slot=0):
        return self.op(SNAPSHOTS, slot).u8(stop)

    def clock(self, code, slot=0):
        return self.op(CLOCK, slot).u8(code)

    def advance(self, seconds, slot=0):
        assert 0 <= seconds <= 15
        return self.clock(seconds, slot)

    def set_sink(self, open_cb=False, record=False, close=False, fail=0, open_fail=False, bad=False,
                 null=False, slow=False, slot=0):
        f = int(open_cb) | int(record) << 1 | int(close) << 2 | fail << 3 | int(open_fail) << 5
        if bad:
            f |= 0x80 | (0x40 if null else 0)
        elif slow:
            f |= 0x40
        return self.op(SET_SINK, slot).u8(f)

    def start(self, slot=0):
        return self.op(START, slot)

    def close(self, slot=0):
        return self.op(CLOSE, slot)

    def free(self, slot=0):
        return self.op(FREE, slot)

    def new(self, slot=0, **config):
        return self.op(NEW, slot).config(**config)

    def misc(self, code, slot=0):
        return self.op(MISC, slot).u8(code)

    def burst(self, n, slot=0):
        return self.op(BURST, slot).u8(n - 1)

    def cb(self, *bytes_):
        """Bytes consumed by callbacks (re-entry actions, export/open verdicts)."""
        return self.u8(*bytes_)


def seeds():
    out = {}

    p = Program().config(DETAILED)
    p.set_sink(close=True).start()
    p.put(("name", 2), 1, ("dim", D_STREAM1)).put(("name", 2), 3, ("dim", D_STREAM1))
    p.put(("name", 6), 1, ("dim", D_STREAM1), ("dim", D_SHARD0), ("dim", D_PTE))
    p.put(("name", 7), 1, ("dim", D_STREAM1), None, ("dim", D_INTERNAL))
    p.flush().cb(0).snapshots().cb(0, 0, 0).close().cb(0, 0)
    out["basic-detailed"] = p

    p = Program().config(SUMMARY)
    p.set_sink().start()
    p.put(("name", 6), 1, ("dim", D_STREAM1), ("dim", D_SHARD0), ("dim", D_PTE))
    p.put(("name", 6), 2, ("dim", D_STREAM1), ("dim", D_SHARD1), ("dim", D_INTERNAL))
    p.put(("name", 6), 2, ("dim", D_STREAM1), b"\xff", None)  # still validated
    p.flush().cb(0).snapshots().cb(0).close().cb(0)
    out["summary-drops-shard"] = p

    p = Program().config(NONE)
    p.set_sink(open_cb=True, record=True, close=True)
    p.put(("name", 2), 1, b"\xff").put("", 1).put(None, 1).put(("name", 2), ("tab", 14))
    p.metric_get(("name", 2)).metric_put(0, 5).metric_get(b"\xc0\x80")
    p.start().flush().snapshots().close().put(("name", 2), 1).metric_put(0, 1).start().set_sink()
    out["level-none"] = p

    p = Program().config(DETAILED, max_metrics=("small", 2))
    p.set_sink().start()
    for i in range(4):
        p.put(("name", i), 1)
    p.metric_get(("name", 5)).put(("name", 0), 2).put(("name", N_REFUSED), 1)
    p.snapshots().cb(0, 0, 0).flush().cb(0).close().cb(0)
    out["limit-refused"] = p

    p = Program().config(DETAILED, max_metrics=("small", 1))
    p.put(("name", N_REFUSED), 7).put(("name", N_REFUSED), 7, ("dim", D_STREAM1))
    p.put(("name", N_REFUSED), 7, None, ("dim", D_SHARD0)).put(("name", 1), 1)
    p.set_sink().start().flush().cb(0).snapshots().cb(0, 0, 0)
    out["refused-key-by-hand"] = p

    p = Program().config(DETAILED)
    for bad in (b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
                b"\x80", b"\xc3", b"\xe2\x82", b"a\xffb"):
        p.put(bad, 1).put(("name", 1), 1, bad).put(("name", 1), 1, None, bad).put(("name", 1), 1, None, None, bad)
    for good in (b"\xc2\x80", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf", b"\xf0\x90\x80\x80", b"e\xcc\x81", b"\xc3\xa9"):
        p.put(good, 1, good, good, good)
    p.set_sink().start().snapshots().cb(0, 0, 0, 0, 0, 0).flush().cb(0)
    out["utf8"] = p

    p = Program().config(DETAILED)
    for li in (6, 7, 8, 9):  # 254..257 bytes
        for pat in (0, 1, 2, 3):
            p.put(("fill", li, pat), 1)
    for li in (11, 12, 13, 14, 15):  # 1023..4000 bytes
        p.put(("name", 1), 1, ("fill", li, 0), ("fill", li, 1), ("fill", li, 2))
    p.set_sink().start().flush().cb(0).snapshots().cb(0, 0, 0, 0, 0, 0, 0, 0)
    out["lengths"] = p

    p = Program().config(DETAILED)
    p.set_sink().start()
    for i in range(32):
        p.put(("name", 10), ("tab", i))
    for q in (-32, -1, 0, 31):
        p.put(("name", 11), ("quarter", q))
    p.put(("name", 11), ("raw", 5e-324)).put(("name", 11), ("raw", float("nan")))
    p.put(("name", 12), ("tab", 10)).put(("name", 12), ("tab", 10)).put(("name", 12), ("tab", 11))
    p.metric_get(("name", 13)).metric_put(0, ("tab", 16)).metric_put(0, ("tab", 1)).metric_put(0, ("tab", 7))
    p.flush().cb(0).snapshots().cb(0, 0, 0, 0)
    out["values"] = p

    p = Program().config(DETAILED, window=("small", 5))
    p.set_sink(record=True).start()
    for step in (0, 1, 1, 2, 3, 4, 5, 6):
        p.advance(step).put(("name", 2), step, ("dim", D_STREAM1)).cb(0)
        p.snapshots().cb(0)
    p.advance(15).snapshots().put(("name", 3), 1).cb(0).snapshots().cb(0).flush().cb(0)
    p.clock(0x7F).snapshots().cb(0)  # + window + 7
    out["window"] = p

    p = Program().config(DETAILED, window=("small", 3))
    p.set_sink().start()
    p.put(("name", 2), 1).advance(5).put(("name", 2), 2).clock(0x82).put(("name", 2), 3)  # back 3 s
    p.snapshots().cb(0).clock(0x95).put(("name", 2), 4).snapshots().cb(0).flush().cb(0)
    p.clock(0x63).put(("name", 2), 5).clock(0x60).put(("name", 2), 6).snapshots().cb(0)
    out["clock-backwards"] = p

    p = Program().config(DETAILED)
    p.set_sink(record=True).start()
    for code in range(0xA0, 0xB0):
        p.clock(code).put(("name", 4), 1).cb(0).snapshots().cb(0)
    p.clock(0xB0).f64(float("nan")).put(("name", 4), 1).cb(0)
    p.clock(0xE0).put(("name", 4), 1).cb(0).flush().cb(0)
    out["clock-extremes"] = p

    p = Program().config(DETAILED, clock=0xF6)  # 2^52
    p.set_sink().start().put(("name", 1), 1).advance(3).put(("name", 1), 1).snapshots().cb(0).flush().cb(0)
    out["clock-2p52"] = p

    p = Program().config(DETAILED, clock="system")
    p.set_sink(record=True).start().put(("name", 1), 1).cb(0).snapshots().cb(0).flush().cb(0)
    out["system-clock"] = p

    p = Program().config(DETAILED)
    p.set_sink(fail=2, close=True).start()
    p.put(("name", 1), 1).flush().cb(0).put(("name", 1), 2).put(("name", 2), 3).flush().cb(0)
    p.close().cb(0, 0).flush().close()
    out["export-always-fails"] = p

    p = Program().config(DETAILED)
    p.set_sink(fail=1, close=True).start()
    p.put(("name", 1), 1).flush().cb(1, 0).put(("name", 1), 5).flush().cb(0, 0)
    p.put(("name", 2), 1).flush().cb(1, 0).advance(2).put(("name", 2), 9).close().cb(1, 0, 0)
    out["export-fails-then-merges"] = p

    p = Program().config(DETAILED)
    p.set_sink(fail=3, close=True).start()
    for i in range(6):
        p.put(("name", i), i).flush().cb(0xC0 if i % 2 else 0, 0)
    p.close().cb(0, 0, 0)
    out["export-fails-sometimes"] = p

    p = Program().config(DETAILED)
    p.set_sink(record=True, close=True)
    p.put(("name", 1), 1)  # before start: no record
    p.start().put(("name", 1), 2, ("dim", D_STREAM1), ("dim", D_SHARD0), ("dim", D_PTE)).cb(0)
    p.metric_get(("name", 3), ("dim", D_STREAM2)).metric_put(0, 4).cb(0)
    p.close().cb(0, 0).put(("name", 1), 3)
    out["record"] = p

    p = Program().config(DETAILED)
    p.set_sink(record=True, close=True).start()
    # record re-enters: put own (whose record does nothing), flush/close/free/start own.
    p.put(("name", 1), 1).cb(R_PUT).s(("name", 2)).s(None).s(None).s(None).v(2).cb(0)
    p.put(("name", 1), 1).cb(R_FLUSH).put(("name", 1), 1).cb(R_CLOSE).put(("name", 1), 1).cb(R_FREE)
    p.put(("name", 1), 1).cb(R_START).put(("name", 1), 1).cb(R_SNAPSHOTS).u8(0).cb(0, 0)
    p.put(("name", 1), 1).cb(R_METRIC_GET).s(("name", 5)).s(None).s(None).s(None)
    p.put(("name", 1), 1).cb(R_METRIC_PUT).u8(0).v(3).cb(0)
    p.put(("name", 1), 1).cb(R_SET_SINK).u8(0x02)  # from record after start: ESTATE
    p.flush().cb(0).put(("name", 1), 1).cb(0)
    p.close().cb(0, R_SET_SINK).u8(0x04)  # final export: nothing; sink close: set_sink -> ESTATE
    out["reenter-record"] = p

    p = Program().config(DETAILED)
    p.set_sink(close=True).start()
    p.put(("name", 1), 1).flush().cb(R_PUT).s(("name", 2)).s(None).s(None).s(None).v(2)
    p.put(("name", 1), 1).flush().cb(R_FLUSH).put(("name", 1), 1).flush().cb(R_CLOSE)
    p.put(("name", 1), 1).flush().cb(R_FREE).put(("name", 1), 1).flush().cb(R_START)
    p.put(("name", 1), 1).flush().cb(R_SNAPSHOTS).u8(0).cb(0, 0)
    p.close().cb(R_PUT).s(("name", 2)).s(None).s(None).s(None).v(2).cb(R_FLUSH)
    out["reenter-export"] = p

    p = Program().config(DETAILED)
    p.set_sink(open_cb=True, open_fail=True, close=True)
    p.start().cb(1, R_PUT).s(("name", 2)).s(None).s(None).s(None).v(2)  # open fails
    p.start().cb(0, R_FLUSH).start().cb(0, 0)  # second start: ESTATE, open not called
    p.close().cb(0, 0)
    out["reenter-open-retry"] = p

    p = Program().config(DETAILED)
    p.set_sink(open_cb=True, close=True)
    p.start().cb(R_CLOSE).put(("name", 1), 1).close().cb(0, R_PUT).s(("name", 1)).s(None).s(None).s(None).v(1)
    p.close().put(("name", 1), 1).metric_get(("name", 1))
    out["close-callback"] = p

    p = Program(both=True).config(DETAILED).config(DETAILED)
    p.set_sink(record=True, close=True, slot=0).set_sink(close=True, slot=1).start(0).start(1)
    p.put(("name", 1), 1, slot=0).cb(R_PUT_OTHER).s(("name", 2)).s(None).s(None).s(None).v(2)
    p.put(("name", 1), 1, slot=0).cb(R_FLUSH_OTHER).cb(0)
    p.put(("name", 1), 1, slot=0).cb(R_SNAPSHOTS_OTHER).u8(0).cb(0)
    p.put(("name", 1), 1, slot=0).cb(R_CLOSE_OTHER).cb(0, 0)
    p.put(("name", 1), 1, slot=0).cb(R_FREE_OTHER)
    p.new(1, level=SUMMARY).set_sink(record=True, slot=1).start(1)
    p.put(("name", 3), 1, slot=1).cb(R_PUT_OTHER).s(("name", 4)).s(None).s(None).s(None).v(1).cb(0)
    p.flush(0).cb(0).flush(1).cb(0)
    out["two-managers"] = p

    p = Program().config(DETAILED)
    p.metric_get(("name", 1), ("dim", D_STREAM1)).metric_get(("name", 1), ("dim", D_STREAM1))
    p.metric_get(b"\xff").metric_get(None).metric_get("")
    p.metric_put(0, 1).metric_put(1, 2).metric_put(0, ("tab", 14)).metric_put(1, ("tab", 16))
    p.set_sink().start().metric_put(0, 3).flush().cb(0).close().metric_put(0, 1).metric_get(("name", 1))
    out["metric-handles"] = p

    p = Program(both=True).config(raw_level=3).config(raw_level=0xFFFFFFFF)
    p.new(0, window=("tab", 0)).new(0, window=("tab", 6)).new(0, window=("raw", 0xFFFFFFFF))
    p.new(0, max_metrics="zero").new(0, max_metrics=("raw", 0xFFFFFFFF))
    for i in range(8):
        p.new(0, interval=("bad", i))
    p.new(0, interval=("raw", float("nan"))).new(0, timeout=("raw", float("inf")))
    p.new(0, timeout=("raw", 0.0)).new(0, timeout=("raw", -1.0))
    p.new(0, layout=("size", 0)).new(0, layout=("size", 0xFFFFFFFF)).new(0, layout=("delta", -8))
    p.new(0, layout=("delta", 8)).new(0, layout=("delta", 1)).new(0, layout=("delta", -1))
    p.new(0, layout="first", timeout=("raw", float("nan")))  # the first layout has no timeout field
    p.put(("name", 1), 1).new(1, layout="null").put(("name", 1), 1, slot=1).start(1).flush(1).close(1)
    out["configs"] = p

    p = Program(both=True).config(DETAILED, window=("tab", 5), max_metrics=("raw", 100000),
                                  interval=("huge", 5), timeout=("tab", 2))
    p.config(DETAILED, interval=("huge", 4), timeout=("tab", 1))
    p.set_sink(close=True).start().put(("name", 1), 1).flush().cb(0).close().cb(0, 0)
    p.set_sink(close=True, slot=1).start(1).put(("name", 1), 1, slot=1).close(1)
    out["huge-interval-timeout"] = p

    p = Program().config(DETAILED, interval=("short", 1))
    p.set_sink(record=True, close=True, fail=1).start()
    for i in range(20):
        p.put(("name", i % 4), i).cb(0)
    p.burst(64).flush().snapshots().cb(0, 0, 0, 0).close()
    out["short-interval"] = p

    p = Program().config(DETAILED, timeout=("tab", 7))
    p.set_sink(record=True, close=True).start().put(("name", 1), 1).cb(0).flush().close().flush().close()
    out["tiny-timeout"] = p

    # Slow periodic exports (1 ms interval, 2 ms exports) against flush, close
    # and free with a 0.5 ms export timeout: lock timeouts, a close while an
    # export runs, a manager released by its own tick.
    p = Program(both=True).config(DETAILED, interval=("short", 1), timeout=("tab", 5))
    p.config(DETAILED, interval=("short", 1), timeout=("tab", 6))
    p.set_sink(close=True, slow=True, fail=1).set_sink(close=True, slow=True, slot=1).start().start(1)
    for i in range(8):
        p.put(("name", i), i).put(("name", i), i, slot=1).flush().flush(1)
    p.burst(64).burst(64, slot=1).flush().close().flush().free(1).close()
    out["slow-sink-timeouts"] = p

    # Close and free while a slow periodic export holds the manager (pause:
    # misc 12 with a duration, 0.25 ms units).
    p = Program(both=True).config(DETAILED, interval=("short", 1), timeout=("tab", 5))
    p.config(DETAILED, interval=("short", 1), timeout=("tab", 5))
    p.set_sink(close=True, slow=True).set_sink(slow=True, slot=1).start().start(1)
    p.put(("name", 1), 1).put(("name", 1), 1, slot=1).misc(12 | 6 << 4).close().free(1)
    for i in range(6):
        p.new(0, level=DETAILED, interval=("short", 1), timeout=("tab", 5)).set_sink(close=True, slow=True)
        p.start().put(("name", 1), 1).misc(12 | (4 + i) << 4).free()
    out["close-during-slow-export"] = p

    p = Program().config(DETAILED, timeout=("tab", 5))
    p.start().put(("name", 1), 1).flush().close().put(("name", 1), 1)
    out["tiny-timeout-null-sink"] = p

    p = Program().config(DETAILED)
    p.flush().close().start().set_sink().put(("name", 1), 1).flush().close()
    out["close-before-start"] = p

    p = Program().config(SUMMARY)
    p.set_sink().flush().start().start().set_sink().put(("name", 1), 1).flush().cb(0).flush()
    p.close().cb(0).close().flush().start().set_sink()
    out["lifecycle-states"] = p

    p = Program(both=True).config(DETAILED).config(SUMMARY)
    p.set_sink(close=True).set_sink(close=True, slot=1).start().start(1)
    p.put(("name", 1), 1).put(("name", 2), 2, slot=1).free().cb(0, 0).free(1).cb(0, 0)
    out["free-with-pending"] = p

    p = Program().config(DETAILED)
    p.put(b"Na\x00me", 1).put(b"\x01\x02\x03", 1, b"s\x00", b"\x00", b"e")
    p.put(("long", b"x" * 300), 1).put(("long", b"y" * 200), 1, ("long", b"z" * 1030))
    p.set_sink().start().flush().cb(0)
    out["raw-strings"] = p

    p = Program().config(DETAILED)
    p.set_sink().start()
    p.put(b"b", 1).put(b"a", 1, b"s").put(b"a", 1, None, b"h").put(b"a", 1, None, None, b"e")
    p.put(b"a", 1, b"s", b"h").put(b"a", 1, b"s", b"h", b"e").put(b"a", 1).put(b"a", 1, b"s", None, b"e")
    p.put(b"\xc3\xa9", 1).put(b"e\xcc\x81", 1).put(b"A", 1).put(b"a", 1, b"S")
    p.snapshots().cb(*([0] * 12)).flush().cb(0)
    out["export-order"] = p

    p = Program().config(DETAILED)
    p.set_sink().start()
    for i in range(6):
        p.put(("name", i), 1)
    p.snapshots(1).cb(0).snapshots(3).cb(0, 0, 0).snapshots(0xFF).snapshots(7).cb(*([0] * 6))
    p.snapshots(2).cb(R_PUT).s(("name", 9)).s(None).s(None).s(None).v(1).cb(0)
    out["snapshots-stop"] = p

    p = Program().config(DETAILED)
    p.set_sink(record=True).start().put(("name", 2), 5, ("dim", D_STREAM1)).cb(0)
    p.burst(64).cb(*([0] * 64)).burst(10).cb(*([0] * 10)).flush().cb(0)
    out["burst"] = p

    p = Program(both=True).config(DETAILED).config(NONE)
    for code in range(16):
        p.misc(code)
    p.misc(0).u32(7).misc(0).u32(0xFFFFFFFF).misc(0).u32(0x80000000)
    for st in range(8):
        p.misc(1 | st << 4)
    p.misc(10, slot=1).misc(14, slot=1).close().misc(10).misc(14)
    out["misc-null-args"] = p

    p = Program(both=True).config(DETAILED).config(DETAILED)
    for _ in range(3):
        p.new(0, level=SUMMARY).put(("name", 1), 1).new(1, level=DETAILED, window=("small", 1))
        p.set_sink(close=True, slot=1).start(1).put(("name", 1), 1, slot=1).free(1).cb(0, 0)
    out["recreate"] = p

    p = Program().config(DETAILED, window=("small", 1))
    p.set_sink().start()
    for i in range(8):
        p.clock(0x60 | (i & 7)).put(("name", 1), i).snapshots().cb(0)
    p.flush().cb(0)
    out["window-one-second"] = p

    p = Program().config(DETAILED, window=("tab", 5), clock=0xF5)  # 3600 s window near 2^52
    p.set_sink().start().put(("name", 1), 1).clock(0xD0).put(("name", 1), 2).snapshots().cb(0)
    p.clock(0xF0).put(("name", 1), 3).flush().cb(0)
    out["window-3600"] = p

    p = Program(both=True).config(DETAILED).config(DETAILED)
    p.set_sink(record=True, slot=0).set_sink(record=True, slot=1).start(0).start(1)
    # 0's record puts into 1, whose record tries to free 0 (in the chain: nothing).
    p.put(("name", 1), 1, slot=0).cb(R_PUT_OTHER).s(("name", 2)).s(None).s(None).s(None).v(1).cb(R_FREE_OTHER)
    p.put(("name", 1), 1, slot=0).cb(R_PUT_OTHER).s(("name", 2)).s(None).s(None).s(None).v(1).cb(R_CLOSE_OTHER)
    p.flush(0).flush(1)
    out["nested-chain"] = p
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    dest = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus")
    os.makedirs(dest, exist_ok=True)
    for old in os.listdir(dest):
        if old.startswith("seed-"):
            os.remove(os.path.join(dest, old))
    for name, prog in seeds().items():
        with open(os.path.join(dest, "seed-" + name), "wb") as f:
            f.write(bytes(prog.b))
    print(f"wrote {len(seeds())} seeds to {dest}")


if __name__ == "__main__":
    main()
