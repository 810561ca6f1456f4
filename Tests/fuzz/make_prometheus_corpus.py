#!/usr/bin/env python3
"""Writes the seed inputs of the Prometheus request parser's fuzz target
(Tests/fuzz/fuzz_prometheus.swift) into Tests/fuzz/prometheus-corpus/.
An input is: one byte choosing a small head limit (1 + byte * 16), one byte
seeding how the rest is cut into reads, then the bytes a client sends."""
import os

SEEDS = {
    "get-metrics": b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "openmetrics": b"GET /metrics?x=1 HTTP/1.1\r\nAccept: text/plain;q=0.5\r\n"
                   b"accept:  application/openmetrics-text; version=1.0.0 \r\n\r\n",
    "head-lf-only": b"HEAD /metrics HTTP/1.0\nAccept:\t*/*\n\nbody",
    "star-options": b"OPTIONS * HTTP/1.1\r\n\r\n",
    "half-sent": b"GET /metr",
    "no-colon": b"GET /metrics HTTP/1.1\r\nBroken header\r\n\r\n",
    "bad-version": b"GET /metrics HTTP/2\r\n\r\n",
    "two-spaces": b"GET  /metrics HTTP/1.1\r\n\r\n",
    "bad-utf8": b"GET /m\xff\xfe HTTP/1.1\r\nAccept: \xc3\r\n\r\n",
    "split-crlf": b"PUT /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    "big-header": b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n",
}

def main() -> None:
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prometheus-corpus")
    os.makedirs(out, exist_ok=True)
    for i, (name, body) in enumerate(sorted(SEEDS.items())):
        # Small limits from 1 byte to past the head; read patterns vary.
        limit_byte = (i * 37) % 256
        with open(os.path.join(out, f"seed-{name}"), "wb") as f:
            f.write(bytes([limit_byte, (i * 71 + 5) % 256]) + body)

if __name__ == "__main__":
    main()
