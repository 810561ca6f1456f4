"""The Prometheus built-in sink: real scrapes over HTTP, checked strictly, by
promtool, and by a real Prometheus server (Debian package ``prometheus``)."""

from __future__ import annotations

import http.client
import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

import kplm

OPENMETRICS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                      "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# The naming-convention lints promtool reports for the names kplm.h mandates
# (`<name>_count` / `_sum` counters, KPL's CamelCase names); anything else
# it prints is a failure.
EXPECTED_LINTS = re.compile(
    r'\S+ (counter metrics should have "_total" suffix'
    r'|non-histogram and non-summary metrics should not have "_(count|sum)" suffix'
    r"|metric names should be written in 'snake_case' not 'camelCase'"
    r"|metric names should not contain abbreviated units)")

METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABELS = r'(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})?'
NUMBER = r"(-?[0-9]+(\.[0-9]+)?(e[+-][0-9]+)?|[+-]Inf|NaN)"
SAMPLE = re.compile(rf"({METRIC_NAME}){LABELS} {NUMBER}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int, path: str = "/metrics", accept: str | None = None, method: str = "GET"):
    """(status, headers, body) of one request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers={"Accept": accept} if accept else {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def check_exposition(body: str, openmetrics: bool) -> dict:
    """Strict structural check of an exposition; returns {family: type}.

    Every family has HELP then TYPE, then its samples (named `<family>` for a
    gauge, `<family>` in the text format or `<family>_total` in OpenMetrics
    for a counter), families are never split; OpenMetrics ends with "# EOF".
    """
    if openmetrics:
        assert body.endswith("# EOF\n"), body[-200:]
        body = body[: -len("# EOF\n")]
        assert "# EOF" not in body
    assert body == "" or body.endswith("\n")
    families: dict = {}
    current = None
    expect = "help"
    for line in body.splitlines():
        if line.startswith("# HELP "):
            assert expect in ("help", "sample_or_help"), line
            name = line.split(" ", 3)[2]
            assert re.fullmatch(METRIC_NAME, name) and not name.startswith("__"), line
            assert name not in families, f"family {name} split"
            current, expect = name, "type"
        elif line.startswith("# TYPE "):
            assert expect == "type", line
            _, _, name, kind = line.split(" ")
            assert name == current and kind in ("counter", "gauge"), line
            families[name] = kind
            expect = "sample"
        else:
            assert expect in ("sample", "sample_or_help"), line
            match = SAMPLE.fullmatch(line)
            assert match, f"malformed sample {line!r}"
            want = current + "_total" if openmetrics and families[current] == "counter" else current
            assert match.group(1) == want, line
            expect = "sample_or_help"
    assert expect in ("help", "sample_or_help")
    return families


@pytest.fixture
def served():
    """A started manager with a Prometheus sink on a free port, some data flushed."""
    port = free_port()
    clock = kplm.ManualClock(100.0)
    m = kplm.Manager(kplm.Level.DETAILED, clock=clock, sink=kplm.prometheus_sink(port=port))
    m.start()
    m.put("UserRecordsPut", 2, stream="orders", shard_id="shardId-1")
    m.put("UserRecordsPut", 3.5, stream="orders", shard_id="shardId-1")
    m.put("AllErrors", 1, stream='we"ird\\str\neam', error_code="Throttled")
    m.put("Latency ms", 0.1)
    m.put("Latency ms", 0.2)
    m.put("Huge", 1.5e300)
    m.flush()
    try:
        yield m, port, clock
    finally:
        m.close()
        m.free()


def test_both_formats(served):
    m, port, clock = served
    status, headers, text = scrape(port)
    assert status == 200
    assert headers["content-type"] == TEXT_TYPE
    assert headers["connection"] == "close"
    families = check_exposition(text, openmetrics=False)
    assert families["kplm_UserRecordsPut_count"] == "counter"
    assert families["kplm_UserRecordsPut_min"] == "gauge"
    lines = text.splitlines()
    assert 'kplm_UserRecordsPut_count{stream="orders",shard="shardId-1"} 2' in lines
    assert 'kplm_UserRecordsPut_sum{stream="orders",shard="shardId-1"} 5.5' in lines
    assert 'kplm_UserRecordsPut_min{stream="orders",shard="shardId-1"} 2' in lines
    assert 'kplm_UserRecordsPut_max{stream="orders",shard="shardId-1"} 3.5' in lines
    assert r'kplm_AllErrors_count{stream="we\"ird\\str\neam",error_code="Throttled"} 1' in lines
    assert "kplm_Latency_ms_sum 0.30000000000000004" in lines
    assert "kplm_Huge_max 1.5e+300" in lines
    assert "# HELP kplm_Latency_ms_count Number of observations of kplm_Latency ms since the sink started." in lines

    status, headers, om = scrape(port, accept=OPENMETRICS_ACCEPT)
    assert status == 200
    assert headers["content-type"] == OPENMETRICS_TYPE
    assert check_exposition(om, openmetrics=True) == families
    assert 'kplm_UserRecordsPut_count_total{stream="orders",shard="shardId-1"} 2' in om.splitlines()
    assert 'kplm_UserRecordsPut_min{stream="orders",shard="shardId-1"} 2' in om.splitlines()

    # Accumulation: counters add up, gauges show the last flush.
    clock.advance(1)
    m.put("UserRecordsPut", 10, stream="orders", shard_id="shardId-1")
    m.flush()
    lines = scrape(port)[2].splitlines()
    assert 'kplm_UserRecordsPut_count{stream="orders",shard="shardId-1"} 3' in lines
    assert 'kplm_UserRecordsPut_sum{stream="orders",shard="shardId-1"} 15.5' in lines
    assert 'kplm_UserRecordsPut_min{stream="orders",shard="shardId-1"} 10' in lines

    assert scrape(port, "/")[0] == 404
    assert scrape(port, method="POST")[0] == 405


def test_checker_catches_mistakes():
    """The structural checker above fails on the mistakes it is meant to catch."""
    good = "# HELP a_count h\n# TYPE a_count counter\na_count 1\n"
    check_exposition(good, openmetrics=False)
    for bad, om in [(good, True), (good + "# EOF\n", True),
                    (good.replace("a_count 1", "a_count_total 1") + "# EOF\n", False),
                    (good + "a_count{x=\"\n\"} 1\n", False), (good + good, False),
                    ("# TYPE a gauge\na 1\n", False), (good.replace(" 1\n", " 1.0.0\n"), False)]:
        with pytest.raises(AssertionError):
            check_exposition(bad, om)


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    return path


def test_promtool_accepts_both_formats(served, tmp_path):
    promtool = _promtool()
    m, port, _ = served
    text = scrape(port)[2]
    run = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    output = (run.stdout + run.stderr).strip()
    # 0: clean; 3: lint problems only (1 would be a parse error).
    assert run.returncode in (0, 3), output
    assert "error while linting" not in output and "parsing error" not in output, output
    unexpected = [line for line in output.splitlines() if not EXPECTED_LINTS.fullmatch(line)]
    assert not unexpected, output
    # The same tool does fail on a broken exposition.
    broken = subprocess.run([promtool, "check", "metrics"], input=text.replace(" 5.5\n", " 5,5\n"),
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1 and "error while linting" in (broken.stdout + broken.stderr)

    # OpenMetrics: promtool's backfill parses it strictly ("# EOF" required);
    # it needs timestamps, so one is appended to every sample.
    om = scrape(port, accept=OPENMETRICS_ACCEPT)[2]
    stamped = "".join(line if line.startswith("#") else line.rstrip("\n") + " 1700000000\n"
                      for line in om.splitlines(keepends=True))
    for name, content, ok in [("good.om", stamped, True), ("noeof.om", stamped.replace("# EOF\n", ""), False)]:
        source = tmp_path / name
        source.write_text(content)
        run = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source),
                              str(tmp_path / (name + ".blocks"))], capture_output=True, text=True, timeout=120)
        assert (run.returncode == 0) == ok, run.stdout + run.stderr


class _TextProxy(http.server.ThreadingHTTPServer):
    """Relays GET /metrics to the sink asking for the text format only (the
    Prometheus server of Debian 12 always asks for OpenMetrics first)."""

    daemon_threads = True

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                status, headers, body = scrape(proxy.upstream, self.path, accept="text/plain;version=0.0.4")
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", headers["content-type"])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def _query(api: int, expr: str) -> list:
    url = f"http://127.0.0.1:{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        payload = json.load(response)
    assert payload["status"] == "success", payload
    return payload["data"]["result"]


def _wait_for(api: int, expr: str, value: str, deadline: float) -> list:
    last = None
    while time.monotonic() < deadline:
        try:
            last = _query(api, expr)
            if last and all(r["value"][1] == value for r in last):
                return last
        except OSError as exc:
            last = exc
        time.sleep(0.25)
    pytest.fail(f"{expr} never became {value}: last answer {last!r}")


def test_real_prometheus_server_scrapes_the_sink(served, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus server not installed (Debian package 'prometheus')")
    m, port, clock = served
    proxy = _TextProxy(port)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    api = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: kplm_openmetrics
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
  - job_name: kplm_text
    static_configs: [{{targets: ["127.0.0.1:{proxy.server_address[1]}"]}}]
""")
    log = open(tmp_path / "prometheus.log", "w")
    server = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                               f"--web.listen-address=127.0.0.1:{api}", "--log.level=warn"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 40
        # Both jobs up: each scrape parsed without error.
        _wait_for(api, 'up{job="kplm_openmetrics"}', "1", deadline)
        _wait_for(api, 'up{job="kplm_text"}', "1", deadline)
        # OpenMetrics counters are stored under their sample name `_total`.
        result = _wait_for(api, 'kplm_UserRecordsPut_count_total{job="kplm_openmetrics"}', "2", deadline)
        assert result[0]["metric"]["stream"] == "orders"
        assert result[0]["metric"]["shard"] == "shardId-1"
        _wait_for(api, 'kplm_UserRecordsPut_count{job="kplm_text"}', "2", deadline)
        _wait_for(api, 'kplm_UserRecordsPut_sum_total{job="kplm_openmetrics"}', "5.5", deadline)
        _wait_for(api, 'kplm_Latency_ms_sum{job="kplm_text"}', "0.30000000000000004", deadline)
        _wait_for(api, 'kplm_Huge_max{job="kplm_openmetrics"}', "1.5e+300", deadline)
        # Escaped label values arrive as they were put.
        for job, name in [("kplm_openmetrics", "kplm_AllErrors_count_total"), ("kplm_text", "kplm_AllErrors_count")]:
            result = _wait_for(api, f'{name}{{job="{job}"}}', "1", deadline)
            assert result[0]["metric"]["stream"] == 'we"ird\\str\neam'
        # A later flush shows up at the next scrape.
        clock.advance(1)
        m.put("UserRecordsPut", 4, stream="orders", shard_id="shardId-1")
        m.flush()
        _wait_for(api, 'kplm_UserRecordsPut_count_total{job="kplm_openmetrics"}', "3", time.monotonic() + 20)
        _wait_for(api, 'kplm_UserRecordsPut_min{job="kplm_text"}', "4", time.monotonic() + 20)
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        log.close()
        proxy.shutdown()
        proxy.server_close()


def test_port_in_use_fails_start_and_close_frees_it():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        m = kplm.Manager(kplm.Level.DETAILED, clock=kplm.ManualClock(100.0), sink=kplm.prometheus_sink(port=port))
        with pytest.raises(kplm.SinkError):
            m.start()
    # Start may be retried once the port is free; close stops the server.
    m.start()
    m.put("A", 1)
    m.flush()
    assert "kplm_A_count 1" in scrape(port)[2].splitlines()
    m.close()
    m.free()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_prefix_and_address():
    port = free_port()
    with kplm.Manager(kplm.Level.DETAILED, clock=kplm.ManualClock(100.0),
                      sink=kplm.prometheus_sink(address="localhost", port=port, prefix="")) as m:
        m.put("9 lives", 2)
        m.flush()
        assert "_9_lives_sum 2" in scrape(port)[2].splitlines()


@pytest.mark.parametrize("kwargs", [
    {"port": 0}, {"address": ""}, {"address": "a b"}, {"address": "[::1]"}, {"port": 70000},
    {"prefix": "p" * 256},
])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(kplm.InvalidArgumentError):
        kplm.prometheus_sink(**kwargs)


def test_unused_sink_is_released():
    sink = kplm.prometheus_sink()
    assert sink.kind == "prometheus"
    sink.release()
    sink.release()
    with pytest.raises(TypeError):
        kplm.prometheus_sink(port="9464")
