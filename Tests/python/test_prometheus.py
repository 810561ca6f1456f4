"""The Prometheus built-in sink: real scrapes over HTTP, checked strictly, by
promtool (no lint allowed), and by a real Prometheus server (Debian package
``prometheus``). Each key is a summary family ``<prefix><snake_name>`` with
samples ``_count`` and ``_sum``, plus gauges ``_min`` and ``_max``."""

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

# The family name of every KPL metric with the default prefix: snake_case,
# "_seconds" for milliseconds (values / 1000), "_bytes" for bytes.
KPL_FAMILIES = {
    "UserRecordsReceived": "kplm_user_records_received",
    "UserRecordsPending": "kplm_user_records_pending",
    "UserRecordsPut": "kplm_user_records_put",
    "UserRecordsDataPut": "kplm_user_records_data_put_bytes",
    "KinesisRecordsPut": "kplm_kinesis_records_put",
    "KinesisRecordsDataPut": "kplm_kinesis_records_data_put_bytes",
    "ErrorsByCode": "kplm_errors_by_code",
    "AllErrors": "kplm_all_errors",
    "RetriesPerRecord": "kplm_retries_per_record",
    "UserRecordExpired": "kplm_user_record_expired",
    "BufferingTime": "kplm_buffering_time_seconds",
    "RequestTime": "kplm_request_time_seconds",
    "UserRecordsPerKinesisRecord": "kplm_user_records_per_kinesis_record",
    "KinesisRecordsPerPutRecordsRequest": "kplm_kinesis_records_per_put_records_request",
    "UserRecordsPerPutRecordsRequest": "kplm_user_records_per_put_records_request",
}

# User names that need sanitizing, snake-casing or disambiguating, with their
# family names (none has a unit word of its own, which promtool would lint).
ODD_FAMILIES = {
    "HTTPRequests": "kplm_http_requests",
    "APIKeyID": "kplm_api_key_id",
    "9 lives": "kplm_9_lives",
    "Weird name/\u00fc#9": "kplm_weird_name_9",
    "app:queue.depth": "kplm_app_queue_depth",
    "Record": "kplm_record",
    "RecordMin": "kplm_record_min_value",
    "ErrorsTotal": "kplm_errors_total_value",
    "__dunder__": "kplm_dunder",
    'quote"back\\slash': "kplm_quote_back_slash",
    "mixedCASE_Name": "kplm_mixed_case_name",
    "ShardIDs.Per-Stream": "kplm_shard_ids_per_stream",
}

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

    Every family has HELP then TYPE, then its samples: `<family>` for a
    gauge; `<family>_count` then `<family>_sum` of each label set for a
    summary (no quantiles, no `_total`, in both formats). Families are never
    split; OpenMetrics ends with "# EOF".
    """
    if openmetrics:
        assert body.endswith("# EOF\n"), body[-200:]
        body = body[: -len("# EOF\n")]
        assert "# EOF" not in body
    assert body == "" or body.endswith("\n")
    families: dict = {}
    current = None
    expect = "help"
    pending_sum = None  # the labels of a summary's `_count` awaiting its `_sum`
    for line in body.splitlines():
        if line.startswith("# HELP "):
            assert expect in ("help", "sample_or_help") and pending_sum is None, line
            name = line.split(" ", 3)[2]
            assert re.fullmatch(METRIC_NAME, name) and not name.startswith("__"), line
            assert name not in families, f"family {name} split"
            current, expect = name, "type"
        elif line.startswith("# TYPE "):
            assert expect == "type", line
            _, _, name, kind = line.split(" ")
            assert name == current and kind in ("summary", "gauge"), line
            families[name] = kind
            expect = "sample"
        else:
            assert expect in ("sample", "sample_or_help"), line
            match = SAMPLE.fullmatch(line)
            assert match, f"malformed sample {line!r}"
            labels = match.group(2) or ""
            assert "quantile=" not in labels, line
            if families[current] == "gauge":
                assert match.group(1) == current, line
            elif pending_sum is None:
                assert match.group(1) == current + "_count", line
                assert re.fullmatch(r"[0-9]+", match.group(3)), line
                pending_sum = labels
            else:
                assert match.group(1) == current + "_sum" and labels == pending_sum, line
                pending_sum = None
            expect = "sample_or_help"
    assert expect in ("help", "sample_or_help") and pending_sum is None
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
    m.put("BufferingTime", 100)  # milliseconds, served in seconds
    m.put("BufferingTime", 200)
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
    assert families == {
        "kplm_all_errors": "summary", "kplm_all_errors_min": "gauge", "kplm_all_errors_max": "gauge",
        "kplm_buffering_time_seconds": "summary", "kplm_buffering_time_seconds_min": "gauge",
        "kplm_buffering_time_seconds_max": "gauge",
        "kplm_huge": "summary", "kplm_huge_min": "gauge", "kplm_huge_max": "gauge",
        "kplm_user_records_put": "summary", "kplm_user_records_put_min": "gauge",
        "kplm_user_records_put_max": "gauge",
    }
    lines = text.splitlines()
    assert 'kplm_user_records_put_count{stream="orders",shard="shardId-1"} 2' in lines
    assert 'kplm_user_records_put_sum{stream="orders",shard="shardId-1"} 5.5' in lines
    assert 'kplm_user_records_put_min{stream="orders",shard="shardId-1"} 2' in lines
    assert 'kplm_user_records_put_max{stream="orders",shard="shardId-1"} 3.5' in lines
    assert r'kplm_all_errors_count{stream="we\"ird\\str\neam",error_code="Throttled"} 1' in lines
    assert "kplm_buffering_time_seconds_sum 0.3" in lines
    assert "kplm_buffering_time_seconds_min 0.1" in lines
    assert "kplm_huge_max 1.5e+300" in lines
    assert ("# HELP kplm_buffering_time_seconds Count and sum of the observations of kplm_BufferingTime since "
            "the sink started. In seconds (reported in milliseconds).") in lines
    assert "# TYPE kplm_buffering_time_seconds summary" in lines

    status, headers, om = scrape(port, accept=OPENMETRICS_ACCEPT)
    assert status == 200
    assert headers["content-type"] == OPENMETRICS_TYPE
    assert check_exposition(om, openmetrics=True) == families
    # OpenMetrics has the same lines (summaries have no `_total`) and "# EOF".
    assert om == text + "# EOF\n"

    # Accumulation: count and sum add up, the gauges show the last flush.
    clock.advance(1)
    m.put("UserRecordsPut", 10, stream="orders", shard_id="shardId-1")
    m.flush()
    lines = scrape(port)[2].splitlines()
    assert 'kplm_user_records_put_count{stream="orders",shard="shardId-1"} 3' in lines
    assert 'kplm_user_records_put_sum{stream="orders",shard="shardId-1"} 15.5' in lines
    assert 'kplm_user_records_put_min{stream="orders",shard="shardId-1"} 10' in lines

    assert scrape(port, "/")[0] == 404
    assert scrape(port, method="POST")[0] == 405


def test_checker_catches_mistakes():
    """The structural checker above fails on the mistakes it is meant to catch."""
    good = "# HELP a h\n# TYPE a summary\na_count 1\na_sum 2\n# HELP a_min h\n# TYPE a_min gauge\na_min 1\n"
    assert check_exposition(good, openmetrics=False) == {"a": "summary", "a_min": "gauge"}
    assert check_exposition(good + "# EOF\n", openmetrics=True) == {"a": "summary", "a_min": "gauge"}
    for bad, om in [(good, True), (good + "# EOF\n", False),
                    (good.replace("a_count 1", "a_count_total 1") + "# EOF\n", True),
                    (good.replace("a_sum 2\n", ""), False), (good.replace("a_sum 2", "a_sum{x=\"y\"} 2"), False),
                    (good.replace("a_count 1", "a_count 1.5"), False),
                    (good.replace("a_count 1", 'a_count{quantile="x"} 1'), False),
                    ("# HELP c h\n# TYPE c counter\nc_total 1\n", False),
                    (good + "a_count{x=\"\n\"} 1\n", False), (good + good, False),
                    ("# TYPE a gauge\na 1\n", False), (good.replace(" 2\n", " 1.0.0\n"), False)]:
        with pytest.raises(AssertionError):
            check_exposition(bad, om)


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    return path


@pytest.fixture
def lint_sample():
    """A started manager with every KPL metric (all three dimensions) and odd
    user names flushed; yields the port."""
    port = free_port()
    m = kplm.Manager(kplm.Level.DETAILED, clock=kplm.ManualClock(100.0), sink=kplm.prometheus_sink(port=port))
    m.start()
    assert tuple(KPL_FAMILIES) == kplm.KPL_METRICS
    for i, name in enumerate(kplm.KPL_METRICS):
        m.put(name, i + 0.5, stream="orders", shard_id="shardId-000000000001", error_code="Throttled")
        m.put(name, 1500, stream='we"ird\\str\neam')
    for name in ODD_FAMILIES:
        m.put(name, -2.5, stream="s", error_code="E")
    m.flush()
    try:
        yield port
    finally:
        m.close()
        m.free()


def _promtool_check(promtool: str, text: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)


def test_promtool_finds_nothing_to_lint(lint_sample, tmp_path):
    promtool = _promtool()
    port = lint_sample
    text = scrape(port)[2]
    families = check_exposition(text, openmetrics=False)
    want = set()
    for family in list(KPL_FAMILIES.values()) + list(ODD_FAMILIES.values()):
        want |= {family, family + "_min", family + "_max"}
    assert set(families) == want
    # Milliseconds are served as seconds.
    assert 'kplm_request_time_seconds_sum{stream="we\\"ird\\\\str\\neam"} 1.5' in text.splitlines()
    run = _promtool_check(promtool, text)
    # Strict: exit code 0 and nothing printed (no lint of any kind).
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout == "" and run.stderr == "", run.stdout + run.stderr
    # The same tool does lint the names the sink avoids, and fails on a
    # broken exposition.
    for old, new in [("_seconds", "_ms"), ("kplm_user_records_put", "kplm_UserRecordsPut"),
                     ("kplm_request_time_seconds", "kplm_request_time_milliseconds")]:
        linted = _promtool_check(promtool, text.replace(old, new))
        assert linted.returncode == 3 and linted.stdout + linted.stderr, (old, new)
    broken = _promtool_check(promtool, text.replace(" 1.5\n", " 1,5\n"))
    assert broken.returncode == 1 and "error while linting" in (broken.stdout + broken.stderr)

    # OpenMetrics: the same lines (HELP escapes `"` too) and "# EOF".
    # promtool's backfill parses it strictly ("# EOF" required); it needs
    # timestamps, so one is appended to every sample.
    om = scrape(port, accept=OPENMETRICS_ACCEPT)[2]
    help_quote = "Count and sum of the observations of kplm_quote\\\"back\\\\slash since"
    assert help_quote in om and help_quote not in text
    assert om.replace('\\"', '"') == text.replace('\\"', '"') + "# EOF\n"
    assert check_exposition(om, openmetrics=True) == families
    stamped = "".join(line if line.startswith("#") else line.rstrip("\n") + " 1700000000\n"
                      for line in om.splitlines(keepends=True))
    for name, content, ok in [("good.om", stamped, True), ("noeof.om", stamped.replace("# EOF\n", ""), False)]:
        source = tmp_path / name
        source.write_text(content)
        run = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source),
                              str(tmp_path / (name + ".blocks"))], capture_output=True, text=True, timeout=120)
        assert (run.returncode == 0) == ok, run.stdout + run.stderr


def test_promtool_accepts_the_served_sample(served):
    """The served fixture (escaped label values, 1.5e300) is lint-clean too."""
    promtool = _promtool()
    _, port, _ = served
    run = _promtool_check(promtool, scrape(port)[2])
    assert run.returncode == 0 and run.stdout + run.stderr == "", run.stdout + run.stderr


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
        # Summary samples are stored under the same names from both formats.
        for job in ("kplm_openmetrics", "kplm_text"):
            result = _wait_for(api, f'kplm_user_records_put_count{{job="{job}"}}', "2", deadline)
            assert result[0]["metric"]["stream"] == "orders"
            assert result[0]["metric"]["shard"] == "shardId-1"
            _wait_for(api, f'kplm_user_records_put_sum{{job="{job}"}}', "5.5", deadline)
            _wait_for(api, f'kplm_buffering_time_seconds_sum{{job="{job}"}}', "0.3", deadline)
            _wait_for(api, f'kplm_huge_max{{job="{job}"}}', "1.5e+300", deadline)
            # Escaped label values arrive as they were put.
            result = _wait_for(api, f'kplm_all_errors_count{{job="{job}"}}', "1", deadline)
            assert result[0]["metric"]["stream"] == 'we"ird\\str\neam'
        # The server knows the families' types.
        url = f"http://127.0.0.1:{api}/api/v1/metadata?metric=kplm_user_records_put"
        with urllib.request.urlopen(url, timeout=5) as response:
            metadata = json.load(response)["data"]
        assert {entry["type"] for entry in metadata["kplm_user_records_put"]} == {"summary"}, metadata
        # A later flush shows up at the next scrape.
        clock.advance(1)
        m.put("UserRecordsPut", 4, stream="orders", shard_id="shardId-1")
        m.flush()
        _wait_for(api, 'kplm_user_records_put_count{job="kplm_openmetrics"}', "3", time.monotonic() + 20)
        _wait_for(api, 'kplm_user_records_put_min{job="kplm_text"}', "4", time.monotonic() + 20)
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
    assert "kplm_a_count 1" in scrape(port)[2].splitlines()
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
