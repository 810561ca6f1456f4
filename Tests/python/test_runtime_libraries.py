"""libkplm links no network library: libcurl, libcrypto and zlib are opened
with dlopen when a CloudWatch sink (or an OTLP sink that needs them) is
created.

Each scenario runs in a fresh interpreter whose LD_LIBRARY_PATH points at a
folder holding a fake libcurl.so.4, found before the real one by dlopen: a
file that is not a library, or a real library (a copy of zlib) without
curl's functions. No test-only switch in the library is involved. There,
creating a CloudWatch sink must fail with KPLM_ESINK and a line on stderr
naming libcurl.so.4 and its Debian package, while the OTLP sink keeps
working over plain http without libcurl, and refuses https.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import kplm

PYTHON_DIR = str(Path(__file__).resolve().parents[2] / "python")

CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
import kplm
port = int(sys.argv[2])

try:
    kplm.cloudwatch_sink(region="us-east-1", endpoint="http://127.0.0.1:9/", access_key_id="AK",
                         secret_access_key="SK")
    print("cloudwatch: created")
except kplm.KplmError as e:
    print("cloudwatch: status", int(e.status))

try:
    kplm.otlp_sink(endpoint="https://127.0.0.1:9/v1/metrics")
    print("otlp https: created")
except kplm.KplmError as e:
    print("otlp https: status", int(e.status))

sink = kplm.otlp_sink(endpoint=f"http://127.0.0.1:{port}/v1/metrics", compression="gzip",
                      headers={"X-Test": "1"})
m = kplm.Manager(kplm.Level.DETAILED, clock=kplm.ManualClock(1000.0), sink=sink, upload_interval_ms=3_600_000.0)
m.start()
m.put("UserRecordsPut", 1, stream="s")
m.flush()
m.close()
m.free()
print("otlp http: exported")
"""


class Receiver:
    """A loopback HTTP server answering 200 to every POST, keeping the headers."""

    def __init__(self) -> None:
        self.headers: list = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.headers.append(dict(self.headers.items()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def zlib_path() -> str:
    for candidate in ("/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1",
                      "/lib/aarch64-linux-gnu/libz.so.1", "/usr/lib/aarch64-linux-gnu/libz.so.1",
                      "/lib64/libz.so.1", "/usr/lib64/libz.so.1"):
        if os.path.exists(candidate):
            return candidate
    pytest.skip("libz.so.1 not found")


def run_child(fake_dir: Path, port: int) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["KPLM_LIBRARY"] = str(kplm.library_path())
    env["LD_LIBRARY_PATH"] = str(fake_dir)
    for name in list(env):
        if name.startswith("OTEL_EXPORTER_OTLP_"):
            del env[name]
    return subprocess.run([sys.executable, "-c", CHILD, PYTHON_DIR, str(port)], capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.mark.parametrize("fake", ["not a library", "zlib without curl's functions"])
def test_missing_libcurl_fails_the_cloudwatch_sink_but_not_plain_http_otlp(tmp_path, fake):
    fake_dir = tmp_path / "fake"
    fake_dir.mkdir()
    if fake == "not a library":
        (fake_dir / "libcurl.so.4").write_text("this is not an ELF file\n")
    else:
        shutil.copy(zlib_path(), fake_dir / "libcurl.so.4")
    receiver = Receiver()
    try:
        proc = run_child(fake_dir, receiver.port)
    finally:
        receiver.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert f"cloudwatch: status {int(kplm.Status.ESINK)}" in lines, proc.stdout
    assert f"otlp https: status {int(kplm.Status.ESINK)}" in lines, proc.stdout
    assert "otlp http: exported" in lines, proc.stdout
    # The message names the library and the Debian packages providing it.
    assert "kplm: CloudWatch: libcurl.so.4 (HTTP(S) requests) cannot be loaded" in proc.stderr, proc.stderr
    assert "libcurl4 (Debian 12) or libcurl4t64" in proc.stderr, proc.stderr
    assert "kplm: OTLP (https): libcurl.so.4" in proc.stderr, proc.stderr
    if fake != "not a library":
        assert "has no function curl_global_init" in proc.stderr, proc.stderr
    # Sent by the library's own HTTP client (libcurl would add "Accept: */*"), gzipped, with the header.
    (headers,) = receiver.headers
    assert "Accept" not in headers
    assert (headers["Content-Encoding"], headers["X-Test"]) == ("gzip", "1")


def test_with_the_real_libraries_everything_loads(tmp_path):
    """The control: an empty LD_LIBRARY_PATH folder changes nothing (and OTLP goes through libcurl)."""
    fake_dir = tmp_path / "empty"
    fake_dir.mkdir()
    receiver = Receiver()
    try:
        proc = run_child(fake_dir, receiver.port)
    finally:
        receiver.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cloudwatch: created" in proc.stdout.splitlines(), proc.stdout + proc.stderr
    assert "otlp https: created" in proc.stdout.splitlines(), proc.stdout + proc.stderr
    assert "kplm:" not in proc.stderr
    (headers,) = receiver.headers
    assert headers.get("Accept") == "*/*"  # libcurl's
    assert (headers["Content-Encoding"], headers["X-Test"]) == ("gzip", "1")
