#!/usr/bin/env python3
"""Runs kplm-service-example (examples/swift-service), scrapes its Prometheus
endpoint and checks the series its swift-metrics calls produced, then stops
it with SIGTERM and checks that it shut down cleanly.

    scripts/check_service_example.py PATH-TO-kplm-service-example

Every wait is bounded: a hang fails the check instead of stalling CI."""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

REQUESTS = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def value(text: str, series: str) -> float | None:
    match = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def main() -> int:
    binary = sys.argv[1]
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--requests", str(REQUESTS)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if "recorded" not in line:
            print(f"FAIL: expected the 'recorded' line, got {line!r}")
            return 1
        # Periodic flushes every 200 ms: wait until every request is exported.
        want = {
            'kplm_http_requests_sum{route="/put",status="200"}': 600.0,
            'kplm_http_requests_sum{route="/put",status="500"}': 66.0,
            'kplm_http_requests_sum{route="/get",status="200"}': 300.0,
            'kplm_http_requests_sum{route="/get",status="500"}': 34.0,
            'kplm_http_request_duration_count{route="/put"}': 666.0,
            'kplm_http_request_duration_count{route="/get"}': 334.0,
            'kplm_queue_depth_count': float(REQUESTS),
        }
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            text = scrape(port)
            if all(value(text, series) == v for series, v in want.items()):
                break
            time.sleep(0.1)
        for series, v in want.items():
            if value(text, series) != v:
                print(f"FAIL: {series} = {value(text, series)}, want {v}\n--- scrape ---\n{text}")
                return 1
        if value(text, "kplm_queue_depth_last_count") is None:
            print(f"FAIL: no kplm_queue_depth_last series (the meter's last value)\n{text}")
            return 1
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=20)
        if process.returncode != 0 or "closed" not in rest:
            print(f"FAIL: exit status {process.returncode} after SIGTERM, output {rest!r}")
            return 1
        print(f"ok: kplm-service-example served {len(want)} checked series and shut down on SIGTERM")
        return 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


if __name__ == "__main__":
    sys.exit(main())
