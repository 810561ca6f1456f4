"""The CloudWatch built-in sink (kplm_sink_cloudwatch).

Round trips against a real moto server (``pip install 'moto[server]'``,
started as a subprocess): data put through kplm is read back with boto3's
GetMetricStatistics. moto is also run with request authentication on
(INITIAL_NO_AUTH_ACTION_COUNT), where it recomputes every SigV4 signature
with the keys of an IAM user created through its IAM API. A local fake
CloudWatch (http.server) counts requests, checks their headers and SigV4
signatures with botocore, and scripts throttling and server errors.
"""

from __future__ import annotations

import datetime
import gzip
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import kplm

boto3 = pytest.importorskip("boto3", reason="needs boto3")
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

REGION = "us-east-1"
TARGET = "GraniteServiceVersion20100801.PutMetricData"
AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
           "AWS_DEFAULT_REGION", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
           "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
           "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
           "AWS_METADATA_SERVICE_TIMEOUT", "AWS_METADATA_SERVICE_NUM_ATTEMPTS")


@pytest.fixture(autouse=True)
def clean_aws_environment(monkeypatch, tmp_path):
    """No AWS settings of whoever runs the tests leak in (the library reads the process environment)."""
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    # Not the instance metadata service of the machine running the tests.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """``moto_server -H 127.0.0.1 -p PORT`` as a subprocess, until stop()."""

    def __init__(self, **env) -> None:
        exe = shutil.which("moto_server")
        if exe is None:
            pytest.skip("needs moto_server (pip install 'moto[server]')")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)],
                                     env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while True:
            try:
                # Not an AWS action: does not use up INITIAL_NO_AUTH_ACTION_COUNT.
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).read()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
                    self.stop()
                    pytest.fail(f"moto_server did not come up: {err[-2000:]}")
                time.sleep(0.1)

    def client(self, service: str, key: str = "testing", secret: str = "testing"):
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint,
                            aws_access_key_id=key, aws_secret_access_key=secret)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def moto():
    server = MotoServer()
    yield server
    server.stop()


def manager(sink, namespace=None) -> kplm.Manager:
    """A started DETAILED manager exporting to sink (no periodic upload)."""
    m = kplm.Manager(kplm.Level.DETAILED, sink=sink, upload_interval_ms=3_600_000.0, namespace=namespace)
    m.start()
    return m


def statistics(cw, namespace, name, dimensions) -> dict:
    """GetMetricStatistics over the last and next hour, summed over datapoints."""
    now = datetime.datetime.now(datetime.timezone.utc)
    out = cw.get_metric_statistics(
        Namespace=namespace, MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions],
        StartTime=now - datetime.timedelta(hours=1), EndTime=now + datetime.timedelta(hours=1), Period=60,
        Statistics=["SampleCount", "Sum", "Minimum", "Maximum"])
    points = out["Datapoints"]
    if not points:
        return {}
    return {"SampleCount": sum(p["SampleCount"] for p in points), "Sum": sum(p["Sum"] for p in points),
            "Minimum": min(p["Minimum"] for p in points), "Maximum": max(p["Maximum"] for p in points),
            "Unit": {p.get("Unit") for p in points}}


def dimension_sets(cw, namespace) -> dict:
    """``{metric name: [sorted (name, value) tuples per metric]}`` of ListMetrics."""
    out: dict = {}
    for page in cw.get_paginator("list_metrics").paginate(Namespace=namespace):
        for metric in page["Metrics"]:
            dims = tuple(sorted((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])))
            out.setdefault(metric["MetricName"], []).append(dims)
    return {k: sorted(v) for k, v in out.items()}


# ---------------------------------------------------------------------------
# moto round trips
# ---------------------------------------------------------------------------


def test_round_trip_through_moto(moto):
    ns = f"kplm/test/{uuid.uuid4().hex[:8]}"
    sink = kplm.cloudwatch_sink(region=REGION, endpoint=moto.endpoint, access_key_id="testing",
                                secret_access_key="testing", namespace=ns)
    m = manager(sink)
    for v in (1.0, 2.0, 3.5):
        m.put("UserRecordsPut", v, "orders", "shardId-1")
    m.put("UserRecordsPut", 10.0, "orders", "shardId-2")
    m.put("BufferingTime", 250.0, "orders")
    m.close()
    m.free()

    cw = moto.client("cloudwatch")
    assert statistics(cw, ns, "UserRecordsPut", [("StreamName", "orders"), ("ShardId", "shardId-1")]) == {
        "SampleCount": 3.0, "Sum": 6.5, "Minimum": 1.0, "Maximum": 3.5, "Unit": {"Count"}}
    assert statistics(cw, ns, "UserRecordsPut", [("StreamName", "orders"), ("ShardId", "shardId-2")]) == {
        "SampleCount": 1.0, "Sum": 10.0, "Minimum": 10.0, "Maximum": 10.0, "Unit": {"Count"}}
    assert statistics(cw, ns, "BufferingTime", [("StreamName", "orders")]) == {
        "SampleCount": 1.0, "Sum": 250.0, "Minimum": 250.0, "Maximum": 250.0, "Unit": {"Milliseconds"}}
    assert dimension_sets(cw, ns) == {
        "BufferingTime": [(("StreamName", "orders"),)],
        "UserRecordsPut": [(("ShardId", "shardId-1"), ("StreamName", "orders")),
                           (("ShardId", "shardId-2"), ("StreamName", "orders"))],
    }


def test_manager_namespace_and_large_gzipped_export_through_moto(moto):
    """No namespace on the sink: the manager's is used. 1500 keys: two
    requests of over 8 KiB, sent uncompressed to a plain-http endpoint (moto's
    server fails on gzipped bodies, boto3's included), both accepted."""
    ns = f"kplm/mgr/{uuid.uuid4().hex[:8]}"
    sink = kplm.cloudwatch_sink(region=REGION, endpoint=moto.endpoint, access_key_id="testing",
                                secret_access_key="testing")
    m = manager(sink, namespace=ns)
    for i in range(1500):
        m.put("UserRecordsPut", float(i), f"stream-{i:04d}")
    m.flush()
    m.close()
    m.free()
    cw = moto.client("cloudwatch")
    sets = dimension_sets(cw, ns)
    assert len(sets["UserRecordsPut"]) == 1500
    for i in (0, 999, 1000, 1499):
        assert statistics(cw, ns, "UserRecordsPut", [("StreamName", f"stream-{i:04d}")])["Sum"] == float(i)


def test_instance_metadata_credentials_through_moto(moto, monkeypatch):
    """No keys anywhere: the sink takes the role credentials of the instance
    metadata service (moto serves IMDS, tokens included, on the same port),
    signs with them, session token included, and moto stores the data."""
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", moto.endpoint + "/")
    ns = f"kplm/imds/{uuid.uuid4().hex[:8]}"
    sink = kplm.cloudwatch_sink(region=REGION, endpoint=moto.endpoint, namespace=ns)
    m = manager(sink)
    m.put("UserRecordsPut", 4.0, "orders")
    m.flush()
    m.put("UserRecordsPut", 6.0, "orders")
    m.close()
    m.free()
    cw = moto.client("cloudwatch")
    assert statistics(cw, ns, "UserRecordsPut", [("StreamName", "orders")]) == {
        "SampleCount": 2.0, "Sum": 10.0, "Minimum": 4.0, "Maximum": 6.0, "Unit": {"Count"}}


def test_instance_metadata_protocol_and_signature(fake, monkeypatch):
    """IMDSv2 as the SDKs speak it (a token from PUT /latest/api/token with a
    TTL header, then the role and its credentials with the token header),
    and requests signed with what it returned."""
    calls = []

    class IMDS(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, body: str, status: int = 200):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self):
            calls.append(("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
            self.answer("IMDS-TOKEN" if self.path == "/latest/api/token" else "", 200 if self.path == "/latest/api/token" else 404)

        def do_GET(self):
            calls.append(("GET", self.path, self.headers.get("X-aws-ec2-metadata-token")))
            if self.headers.get("X-aws-ec2-metadata-token") != "IMDS-TOKEN":
                return self.answer("", 401)
            if self.path == "/latest/meta-data/iam/security-credentials/":
                return self.answer("kplm-role\n")
            if self.path == "/latest/meta-data/iam/security-credentials/kplm-role":
                return self.answer(json.dumps({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "AKIDIMDS",
                                               "SecretAccessKey": "imds/secret+key", "Token": "SESSION",
                                               "Expiration": "2999-01-01T00:00:00Z"}))
            self.answer("", 404)

    server = ThreadingHTTPServer(("127.0.0.1", 0), IMDS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        fake.keys["AKIDIMDS"] = ("imds/secret+key", "SESSION")
        m = manager(fake_sink(fake, access_key_id=None, secret_access_key=None))
        for _ in range(2):
            m.put("UserRecordsPut", 1.0)
            m.flush()
        m.close()
        m.free()
    finally:
        server.shutdown()
        server.server_close()
    assert calls == [("PUT", "/latest/api/token", "21600"),
                     ("GET", "/latest/meta-data/iam/security-credentials/", "IMDS-TOKEN"),
                     ("GET", "/latest/meta-data/iam/security-credentials/kplm-role", "IMDS-TOKEN")], \
        "fetched once, then cached until shortly before the expiration"
    assert len(fake.requests) == 2
    for r in fake.requests:
        assert r["signature_ok"]
        assert r["headers"]["X-Amz-Security-Token"] == "SESSION"
        assert r["headers"]["Authorization"].split("Credential=")[1].startswith("AKIDIMDS/")


@pytest.fixture(scope="module")
def authenticating_moto():
    """moto checking every request's signature, and an IAM user allowed to use CloudWatch.

    The first three AWS requests pass unauthenticated (INITIAL_NO_AUTH_ACTION_COUNT=3):
    they create the user, its policy and its access key.
    """
    server = MotoServer(INITIAL_NO_AUTH_ACTION_COUNT="3")
    try:
        iam = server.client("iam")
        iam.create_user(UserName="kplm")
        iam.put_user_policy(UserName="kplm", PolicyName="cw", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            # moto authorises PutMetricData as monitoring:PutMetricData.
            "Statement": [{"Effect": "Allow", "Action": ["cloudwatch:*", "monitoring:*"], "Resource": "*"}]}))
        key = iam.create_access_key(UserName="kplm")["AccessKey"]
        server.key_id, server.secret = key["AccessKeyId"], key["SecretAccessKey"]
        yield server
    finally:
        server.stop()


def test_signatures_checked_by_moto(authenticating_moto):
    moto = authenticating_moto
    cw = moto.client("cloudwatch", moto.key_id, moto.secret)
    # moto really checks: a wrong secret is refused to boto3 as well.
    with pytest.raises(Exception, match="SignatureDoesNotMatch|InvalidClientTokenId|signature"):
        moto.client("cloudwatch", moto.key_id, "wrong").list_metrics()

    ns = f"kplm/auth/{uuid.uuid4().hex[:8]}"
    sink = kplm.cloudwatch_sink(region=REGION, endpoint=moto.endpoint, access_key_id=moto.key_id,
                                secret_access_key=moto.secret, namespace=ns)
    m = manager(sink)
    m.put("UserRecordsPut", 4.0, "orders", "shardId-1")
    m.put("UserRecordsPut", 6.0, "orders", "shardId-1")
    for i in range(1200):  # a second request
        m.put("Retries", 1.0, f"s{i}")
    m.flush()
    assert statistics(cw, ns, "UserRecordsPut", [("StreamName", "orders"), ("ShardId", "shardId-1")]) == {
        "SampleCount": 2.0, "Sum": 10.0, "Minimum": 4.0, "Maximum": 6.0, "Unit": {"Count"}}
    assert len(dimension_sets(cw, ns)["Retries"]) == 1200
    m.close()
    m.free()

    bad = kplm.cloudwatch_sink(region=REGION, endpoint=moto.endpoint, access_key_id=moto.key_id,
                               secret_access_key="wrong-secret", namespace=ns, max_retries=0)
    m = manager(bad)
    m.put("UserRecordsPut", 1.0, "refused")
    with pytest.raises(kplm.SinkError):
        m.flush()
    with pytest.raises(kplm.SinkError):
        m.close()
    m.free()
    assert statistics(cw, ns, "UserRecordsPut", [("StreamName", "refused")]) == {}


# ---------------------------------------------------------------------------
# A local fake CloudWatch: counts, checks and scripts the answers
# ---------------------------------------------------------------------------


class FakeCloudWatch:
    """A loopback PutMetricData endpoint answering from a script.

    ``script`` holds the answers of the next requests: a status (int) or
    ``(status, body)``; once empty every request gets 200 "{}". Each request
    is kept in ``requests``: headers, the JSON body (gunzipped if needed),
    and whether botocore's SigV4Auth computes the same Authorization with
    ``keys`` ({access key id: (secret, token)}).
    """

    def __init__(self, keys=None) -> None:
        self.lock = threading.Lock()
        self.script: list = []
        self.requests: list = []
        self.keys = keys or {"AKIDFAKE": ("fake-secret", None)}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = dict(self.headers.items())
                body = gzip.decompress(raw) if headers.get("Content-Encoding") == "gzip" else raw
                with fake.lock:
                    answer = fake.script.pop(0) if fake.script else 200
                    status, payload = answer if isinstance(answer, tuple) else (answer, "{}")
                    fake.requests.append({"headers": headers, "json": json.loads(body),
                                          "signature_ok": fake.verify(headers, raw), "status": status})
                data = payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verify(self, headers: dict, raw: bytes) -> bool:
        """botocore re-signs the request with the same date and signed headers."""
        auth = headers.get("Authorization", "")
        try:
            key_id = auth.split("Credential=")[1].split("/")[0]
            signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
        except IndexError:
            return False
        if key_id not in self.keys:
            return False
        secret, token = self.keys[key_id]
        lower = {k.lower(): v for k, v in headers.items()}
        request = AWSRequest(method="POST", url=self.endpoint + "/",
                             headers={k: lower[k] for k in signed if k != "x-amz-date"}, data=raw)
        request.context["timestamp"] = lower["x-amz-date"]
        signer = SigV4Auth(Credentials(key_id, secret, token), "monitoring", REGION)
        request.headers["X-Amz-Date"] = lower["x-amz-date"]
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        return auth.endswith("Signature=" + expected) and token == lower.get("x-amz-security-token")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    f = FakeCloudWatch()
    yield f
    f.stop()


def fake_sink(fake, **kwargs):
    kwargs.setdefault("access_key_id", "AKIDFAKE")
    kwargs.setdefault("secret_access_key", "fake-secret")
    return kplm.cloudwatch_sink(region=REGION, endpoint=fake.endpoint, namespace="kplm/fake", **kwargs)


def test_more_than_1000_keys_make_several_signed_requests(fake):
    m = manager(fake_sink(fake))
    for i in range(2345):
        m.put("UserRecordsPut", float(i), f"stream-{i:04d}")
    m.flush()
    m.close()
    m.free()
    sizes = [len(r["json"]["MetricData"]) for r in fake.requests]
    assert sizes == [1000, 1000, 345]
    streams = {d["Dimensions"][0]["Value"] for r in fake.requests for d in r["json"]["MetricData"]}
    assert len(streams) == 2345
    for r in fake.requests:
        h = r["headers"]
        assert h["X-Amz-Target"] == TARGET
        assert h["Content-Type"] == "application/x-amz-json-1.0"
        assert "Content-Encoding" not in h  # plain http endpoint: never gzipped
        assert h["Authorization"].startswith(
            f"AWS4-HMAC-SHA256 Credential=AKIDFAKE/{h['X-Amz-Date'][:8]}/{REGION}/monitoring/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=")
        assert r["signature_ok"], "botocore computes another signature"
        assert r["json"]["Namespace"] == "kplm/fake"


def test_throttling_and_server_errors_are_retried(fake):
    fake.script = [503, (400, json.dumps({"__type": "Throttling", "message": "Rate exceeded"})), 429,
                   (400, json.dumps({"__type": "com.amazonaws.cloudwatch#ThrottlingException"})), 200]
    m = manager(fake_sink(fake))
    m.put("UserRecordsPut", 2.0, "orders")
    start = time.monotonic()
    m.flush()
    assert time.monotonic() - start < 5
    assert [r["status"] for r in fake.requests] == [503, 400, 429, 400, 200]
    # The same signed payload each time, signed afresh.
    assert len({json.dumps(r["json"], sort_keys=True) for r in fake.requests}) == 1
    assert all(r["signature_ok"] for r in fake.requests)
    m.close()
    m.free()


def test_exhausted_retries_and_other_errors_fail_and_keep_the_data(fake):
    fake.script = [500, 500, 500]
    m = manager(fake_sink(fake, max_retries=2))
    m.put("UserRecordsPut", 2.0, "orders")
    with pytest.raises(kplm.SinkError):
        m.flush()
    assert len(fake.requests) == 3
    fake.script = [(400, json.dumps({"__type": "InvalidParameterValue", "message": "no"}))]
    with pytest.raises(kplm.SinkError):
        m.flush()
    assert len(fake.requests) == 4  # not retried
    m.flush()  # the kept data goes out now
    assert len(fake.requests) == 5
    (datum,) = fake.requests[-1]["json"]["MetricData"]
    assert datum["StatisticValues"] == {"SampleCount": 1.0, "Sum": 2.0, "Minimum": 2.0, "Maximum": 2.0}
    m.close()
    m.free()


def test_dead_endpoint_fails_within_the_timeout():
    port = free_port()  # nothing listens there
    sink = kplm.cloudwatch_sink(region=REGION, endpoint=f"http://127.0.0.1:{port}", access_key_id="a",
                                secret_access_key="b", timeout_ms=800)
    m = manager(sink)
    m.put("UserRecordsPut", 1.0)
    start = time.monotonic()
    with pytest.raises(kplm.SinkError):
        m.flush()
    assert time.monotonic() - start < 1.5
    with pytest.raises(kplm.SinkError):
        m.close()
    m.free()


def test_credentials_from_the_environment(fake, monkeypatch):
    fake.keys = {"AKIDENV": ("env-secret", "env-token")}
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token")
    m = manager(fake_sink(fake, access_key_id=None, secret_access_key=None))
    m.put("UserRecordsPut", 1.0)
    m.flush()
    (r,) = fake.requests
    assert "Credential=AKIDENV/" in r["headers"]["Authorization"]
    assert r["headers"]["X-Amz-Security-Token"] == "env-token"
    assert "x-amz-security-token" in r["headers"]["Authorization"]
    assert r["signature_ok"]
    m.close()
    m.free()


def test_credentials_and_region_from_the_shared_files(fake, monkeypatch, tmp_path):
    fake.keys = {"AKIDDEFAULT": ("default-secret", None), "AKIDOTHER": ("other-secret", None),
                 "AKIDCONFIG": ("config-secret", None)}
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = default-secret\n\n"
                           "# a comment\n[other]\naws_access_key_id=AKIDOTHER\naws_secret_access_key=other-secret\n")
    config = tmp_path / "config"
    config.write_text("[default]\nregion = us-east-1\n[profile other]\nregion = us-east-1\n"
                      "[profile cfg]\nregion = us-east-1\n"
                      "aws_access_key_id = AKIDCONFIG\naws_secret_access_key = config-secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    # Environment keys are ignored when a profile is given explicitly.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")

    def send(**kwargs):
        sink = kplm.cloudwatch_sink(endpoint=fake.endpoint, namespace="kplm/fake", **kwargs)  # region from config
        m = manager(sink)
        m.put("UserRecordsPut", 1.0)
        m.flush()
        m.close()
        m.free()
        r = fake.requests[-1]
        assert r["signature_ok"]
        return r["headers"]["Authorization"].split("Credential=")[1].split("/")[0]

    assert send(profile="other") == "AKIDOTHER"
    assert send(profile="default") == "AKIDDEFAULT"
    assert send(profile="cfg") == "AKIDCONFIG"  # from the config file
    fake.keys["AKIDENV"] = ("env-secret", None)
    assert send() == "AKIDENV"  # no profile: the environment first
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_PROFILE", "other")
    assert send() == "AKIDOTHER"
    # Explicit keys win over everything.
    fake.keys["AKIDEXPLICIT"] = ("explicit", None)
    assert send(profile="other", access_key_id="AKIDEXPLICIT", secret_access_key="explicit") == "AKIDEXPLICIT"


def test_missing_credentials_fail_the_flush(fake):
    m = manager(fake_sink(fake, access_key_id=None, secret_access_key=None))
    m.put("UserRecordsPut", 1.0)
    with pytest.raises(kplm.SinkError):
        m.flush()
    assert fake.requests == []
    with pytest.raises(kplm.SinkError):
        m.close()
    m.free()


def test_bad_configurations():
    with pytest.raises(kplm.InvalidArgumentError):
        kplm.cloudwatch_sink()  # no region anywhere
    for kwargs in ({"endpoint": "ftp://x"}, {"namespace": "AWS/Kinesis"}, {"access_key_id": "a"},
                   {"session_token": "t"}, {"timeout_ms": 0}, {"region": "US"}):
        with pytest.raises(kplm.InvalidArgumentError):
            kplm.cloudwatch_sink(**{"region": REGION, **kwargs})
    with pytest.raises((kplm.InvalidArgumentError, ValueError, OverflowError)):
        kplm.cloudwatch_sink(region=REGION, max_retries=-1)


class RecordingProxy:
    """A forwarding HTTP proxy on loopback that records every request it relays."""

    def __init__(self) -> None:
        self.seen: list = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def relay(self) -> None:
                proxy.seen.append((self.command, self.path))
                target = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                try:
                    conn.request(self.command, target.path or "/", body=body, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                    self.send_response(answer.status)
                    for k, v in answer.getheaders():
                        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_metadata_requests_bypass_the_proxy_and_cloudwatch_uses_it(fake, monkeypatch):
    """SPEC §10: credentials never cross a proxy; PutMetricData honours http_proxy as the SDKs do."""
    calls = []

    class IMDS(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, body: str, status: int = 200):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self):
            calls.append(("PUT", self.path))
            self.answer("IMDS-TOKEN")

        def do_GET(self):
            calls.append(("GET", self.path))
            if self.path.endswith("/security-credentials/"):
                return self.answer("kplm-role\n")
            self.answer(json.dumps({"Code": "Success", "AccessKeyId": "AKIDIMDS", "SecretAccessKey": "imds-secret",
                                    "Token": "SESSION", "Expiration": "2999-01-01T00:00:00Z"}))

    imds = ThreadingHTTPServer(("127.0.0.1", 0), IMDS)
    threading.Thread(target=imds.serve_forever, daemon=True).start()
    proxy = RecordingProxy()
    try:
        monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{imds.server_address[1]}")
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", proxy.url)
        fake.keys["AKIDIMDS"] = ("imds-secret", "SESSION")
        m = manager(fake_sink(fake, access_key_id=None, secret_access_key=None))
        m.put("UserRecordsPut", 1.0)
        m.flush()
        m.close()
        m.free()
    finally:
        imds.shutdown()
        imds.server_close()
        proxy.stop()
    assert [c[0] for c in calls] == ["PUT", "GET", "GET"], "the metadata service was not reached directly"
    assert all(f":{imds.server_address[1]}" not in url for _, url in proxy.seen), \
        f"a metadata request went through the proxy: {proxy.seen}"
    assert ("POST", fake.endpoint + "/") in proxy.seen, f"PutMetricData ignored http_proxy: {proxy.seen}"
    assert len(fake.requests) == 1 and fake.requests[0]["signature_ok"]


def test_credentials_from_the_environment_cannot_inject_headers(fake, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "TOK\r\nX-Injected: yes")
    m = manager(fake_sink(fake, access_key_id=None, secret_access_key=None))
    m.put("UserRecordsPut", 1.0)
    with pytest.raises(kplm.SinkError):
        m.flush()
    assert fake.requests == [], "a request was sent with the bad token"
    m.free()
