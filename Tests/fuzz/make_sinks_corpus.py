#!/usr/bin/env python3
"""Writes the seed inputs of fuzz_sinks.c into Tests/fuzz/sinks-corpus/.

Each seed is a sequence of records (see the comment at the top of
fuzz_sinks.c): kind (0 DogStatsD, 1 EMF, 2 Prometheus, 3 OTLP, 4 CloudWatch),
how to dispose of a sink (0 release, 1 a manager never started, 2 a manager
at level NONE), flags (1 fields from the input, 2 NULL config, 4 NULL out,
8 wrong struct_size), then the kind's fields.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "sinks-corpus")

FIELDS, NULL_CONFIG, NULL_OUT, BAD_SIZE = 1, 2, 4, 8


def table(i: int) -> bytes:
    """A string from fuzz_sinks.c's string_table."""
    return bytes([0x40 | i])


def raw(s: bytes) -> bytes:
    """A string of raw bytes (at most 63)."""
    assert len(s) < 64
    return bytes([0x80 | len(s)]) + s


NULL = b"\x00"
EMPTY = b"\x20"
LONG = b"\xe0\x07"          # "a" x 1100
LONG_BAD = b"\xe0\x12"      # "\xff" x 255


def port(i: int) -> bytes:
    """One of 0, 1, 80, 443, 4318, 8125, 9464, 65535."""
    return bytes([i & 7])


def double(i: int) -> bytes:
    """One of fuzz_sinks.c's double_table (10 = NaN, 12 = inf, 5000 = 6)."""
    return bytes([i & 15])


def record(kind: int, dispose: int, flags: int, fields: bytes = b"") -> bytes:
    return bytes([kind, dispose, flags]) + fields


seeds = {
    "defaults": b"".join(record(k, d, 0) for k in range(5) for d in range(3)),
    "null-and-size": b"".join(record(k, 0, f) + (b"\x00" if f == BAD_SIZE else b"")
                              for k in range(5) for f in (NULL_CONFIG, NULL_OUT, BAD_SIZE)),
    "dogstatsd": b"".join([
        record(0, 0, FIELDS, table(0) + port(5) + raw(b"kplm") + b"\x02" + table(22) + table(23) + b"\x03"),
        record(0, 1, FIELDS, table(1) + port(0) + NULL + b"\x00" + b"\x00"),
        record(0, 2, FIELDS, table(6) + port(7) + LONG + b"\x81" + NULL + b"\x04"),
        record(0, 0, FIELDS, table(24) + port(5) + LONG_BAD + b"\x01" + table(25) + b"\x02"),
    ]),
    "emf": b"".join([
        record(1, 0, FIELDS, b"\x01" + table(30) + NULL + port(0) + table(20) + double(7)),
        record(1, 1, FIELDS, b"\x02" + NULL + table(0) + port(4) + table(21) + double(10)),
        record(1, 2, FIELDS, b"\x03" + NULL + table(5) + port(7) + LONG + double(12)),
        record(1, 0, FIELDS, b"\x04" + EMPTY + EMPTY + port(1) + table(24) + double(3)),
        record(1, 0, FIELDS, b"\x01" + EMPTY + NULL + port(0) + NULL + double(0)),
    ]),
    "prometheus": b"".join([
        record(2, 0, FIELDS, table(0) + port(6) + table(19)),
        record(2, 1, FIELDS, table(1) + port(0) + EMPTY),
        record(2, 2, FIELDS, table(2) + port(7) + LONG_BAD),
        record(2, 0, FIELDS, table(5) + port(1) + raw(b"9bad prefix")),
    ]),
    "otlp": b"".join([
        record(3, 0, FIELDS, table(8) + double(6) + b"\x00\x03" + raw(b"svc")),
        record(3, 1, FIELDS, table(9) + double(10) + b"\x00\x00" + NULL),
        record(3, 2, FIELDS, table(10) + double(12) + b"\xff" + struct.pack("<I", 0xFFFFFFFF) + LONG),
        record(3, 0, FIELDS, table(11) + double(2) + b"\x00\x01" + table(24)),
        record(3, 0, FIELDS, table(14) + double(1) + b"\x00\x01" + EMPTY),
        record(3, 0, FIELDS, table(15) + double(6) + b"\x00\x01" + table(7)),
    ]),
    "cloudwatch": b"".join([
        record(4, 0, FIELDS, table(16) + table(9) + table(20) + raw(b"AKID") + raw(b"secret") + NULL + NULL
               + double(6) + b"\x00\x02"),
        record(4, 1, FIELDS, table(17) + NULL + NULL + raw(b"AKID") + NULL + NULL + NULL + double(10) + b"\x00\x00"),
        record(4, 2, FIELDS, table(18) + table(8) + table(24) + NULL + NULL + raw(b"tok") + table(31)
               + double(3) + b"\x00\x05"),
        record(4, 0, FIELDS, NULL + NULL + NULL + NULL + NULL + NULL + NULL + double(6) + b"\x00\x01"),
        record(4, 0, FIELDS, table(16) + table(13) + LONG + raw(b"A K") + raw(b"s") + NULL + table(28)
               + double(12) + b"\xff" + struct.pack("<I", 7)),
    ]),
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, f"seed-{name}"), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {OUT}")
