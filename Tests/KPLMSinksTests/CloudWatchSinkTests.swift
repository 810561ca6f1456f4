import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM
@testable import KPLMSinks

/// A PutMetricData answer of the scripted server: status and JSON body.
private func cloudWatchAnswer(_ status: Int, _ body: String = "") -> ScriptedHTTPServer.Answer {
    .status(status, headers: [("Content-Type", "application/x-amz-json-1.0")], body: body)
}

/// A loopback stand-in for CloudWatch: 200 "{}" unless scripted otherwise.
private func fakeCloudWatch() throws -> ScriptedHTTPServer {
    try ScriptedHTTPServer(defaultAnswer: cloudWatchAnswer(200, "{}"))
}

final class CloudWatchSinkTests: XCTestCase {
    private func snapshot(_ name: String = "UserRecordsPut", stream: String = "orders", value: Double = 2) -> MetricSnapshot {
        MetricSnapshot(name: name, count: 1, sum: value, min: value, max: value,
                       dimensions: [MetricDimension("stream", stream)], windowStart: 0, windowEnd: 1,
                       timestampUnix: Double(Date().timeIntervalSince1970), namespace: "Mgr/NS")
    }

    private func sink(_ fake: ScriptedHTTPServer, _ mutate: (inout CloudWatchSinkConfiguration) -> Void = { _ in },
                      env: [String: String] = [:]) throws -> CloudWatchSink {
        var c = CloudWatchSinkConfiguration(region: "us-east-1", endpoint: fake.url(), accessKeyId: "AKID",
                                            secretAccessKey: "secret", timeoutMs: 5_000, maxRetries: 3)
        mutate(&c)
        return try CloudWatchSink(configuration: c, environment: { env[$0] })
    }

    func testRequestHeadersAndGzipRoundTrip() throws {
        let fake = try fakeCloudWatch()
        defer { fake.stop() }
        let s = try sink(fake) { $0.gzipThresholdBytes = 100; $0.sessionToken = "TOKEN" }
        let snapshots = (0..<20).map { snapshot(stream: "s\($0)") }
        try s.export(snapshots)
        let r = try XCTUnwrap(fake.requests.first)
        XCTAssertEqual(fake.requests.count, 1)
        XCTAssertTrue(r.head.hasPrefix("POST / HTTP/1.1\r\n"), r.head)
        XCTAssertEqual(r.header("Host"), "127.0.0.1:\(fake.port)")
        XCTAssertEqual(r.header("X-Amz-Target"), "GraniteServiceVersion20100801.PutMetricData")
        XCTAssertEqual(r.header("Content-Type"), "application/x-amz-json-1.0")
        XCTAssertEqual(r.header("Content-Encoding"), "gzip")
        XCTAssertEqual(r.header("X-Amz-Security-Token"), "TOKEN")
        let date = try XCTUnwrap(r.header("X-Amz-Date"))
        XCTAssertEqual(date.count, 16)
        let auth = try XCTUnwrap(r.header("Authorization"))
        XCTAssertTrue(auth.hasPrefix("AWS4-HMAC-SHA256 Credential=AKID/\(date.prefix(8))/us-east-1/monitoring/aws4_request, "
                                     + "SignedHeaders=content-encoding;content-type;host;x-amz-date;"
                                     + "x-amz-security-token;x-amz-target, Signature="), auth)
        // The body is gzip of exactly what CloudWatchRequestBuilder builds.
        let json = try XCTUnwrap(CloudWatchHTTP.gunzip(r.body))
        let expected = try CloudWatchRequestBuilder.batches(snapshots, namespace: "Mgr/NS",
                                                   wallNow: Double(Date().timeIntervalSince1970)).requests[0].body
        XCTAssertEqual(String(decoding: json, as: UTF8.self), expected)
        let decoded = try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any]
        XCTAssertEqual(decoded?["Namespace"] as? String, "Mgr/NS")
        XCTAssertEqual((decoded?["MetricData"] as? [Any])?.count, 20)
        // The signature covers the compressed bytes: recompute it.
        let headers = ["Host", "X-Amz-Date", "X-Amz-Target", "Content-Type", "Content-Encoding", "X-Amz-Security-Token"]
            .map { (name: $0, value: r.header($0)!) }
        let again = SigV4.sign(method: "POST", path: "/", headers: headers, payload: r.body, accessKeyId: "AKID",
                               secretAccessKey: "secret", region: "us-east-1", service: "monitoring", amzDate: date)
        XCTAssertEqual(again.authorization, auth)
    }

    func testGzipDefaultsByScheme() throws {
        let plain = try CloudWatchSink(configuration: .init(region: "us-east-1", endpoint: "http://127.0.0.1:1"),
                                       environment: { _ in nil })
        XCTAssertEqual(plain.gzipThreshold, Int.max)
        let aws = try CloudWatchSink(configuration: .init(region: "eu-west-1"), environment: { _ in nil })
        XCTAssertEqual(aws.gzipThreshold, 8_192)
        XCTAssertEqual(aws.endpoint.url, "https://monitoring.eu-west-1.amazonaws.com/")
        XCTAssertEqual(aws.endpoint.hostHeader, "monitoring.eu-west-1.amazonaws.com")
        let small = try aws.signedRequest(Array("{}".utf8), credentials: .init(accessKeyId: "a", secretAccessKey: "b"),
                                          wallNow: 1_440_938_160)
        XCTAssertFalse(small.headers.contains { $0.name == "Content-Encoding" })
        XCTAssertEqual(small.payload, Array("{}".utf8))
        XCTAssertTrue(small.headers.contains { $0 == ("X-Amz-Date", "20150830T123600Z") })
        let big = Array(String(repeating: "x", count: 9_000).utf8)
        let gz = try aws.signedRequest(big, credentials: .init(accessKeyId: "a", secretAccessKey: "b"), wallNow: 0)
        XCTAssertTrue(gz.headers.contains { $0 == ("Content-Encoding", "gzip") })
        XCTAssertEqual(CloudWatchHTTP.gunzip(gz.payload), big)
        XCTAssertNil(CloudWatchHTTP.gunzip(Array("not gzip".utf8)))
    }

    func testRetriesThrottlingAnd5xxThenSucceeds() throws {
        let fake = try fakeCloudWatch()
        defer { fake.stop() }
        fake.answer(cloudWatchAnswer(503), cloudWatchAnswer(400, #"{"__type":"Throttling","message":"Rate exceeded"}"#),
                    cloudWatchAnswer(429),
                    cloudWatchAnswer(400, #"{"__type":"com.amazonaws.cloudwatch.v2013_01_16#ThrottlingException"}"#))
        let s = try sink(fake) { $0.maxRetries = 5 }
        try s.export([snapshot()])
        XCTAssertEqual(fake.requests.count, 5)
        XCTAssertEqual(s.requestCount, 5)
        XCTAssertEqual(s.successfulRequestCount, 1)
        XCTAssertEqual(s.lastStatus, 200)
    }

    func testOtherErrorsFailAtOnceAndRetriesAreBounded() throws {
        let fake = try fakeCloudWatch()
        defer { fake.stop() }
        fake.answer(cloudWatchAnswer(400, #"{"__type":"InvalidParameterValue","message":"bad"}"#))
        let s = try sink(fake)
        XCTAssertThrowsError(try s.export([snapshot()])) { error in
            XCTAssertEqual((error as? MetricsError)?.code, .sinkFailed)
            XCTAssertTrue((error as? MetricsError)?.message.contains("InvalidParameterValue: bad") == true, "\(error)")
        }
        XCTAssertEqual(fake.requests.count, 1)
        fake.answer(cloudWatchAnswer(500), cloudWatchAnswer(500), cloudWatchAnswer(500), cloudWatchAnswer(500),
                    cloudWatchAnswer(500))
        XCTAssertThrowsError(try s.export([snapshot()]))
        XCTAssertEqual(fake.requests.count, 1 + 4, "1 try + maxRetries 3")
    }

    func testDisposition() {
        func d(_ status: Int, _ body: String = "", _ q: String = "") -> CloudWatchSink.Disposition {
            CloudWatchSink.disposition(.init(status: status, body: body, queryError: q))
        }
        XCTAssertEqual(d(200), .success)
        XCTAssertEqual(d(500), .retry)
        XCTAssertEqual(d(503), .retry)
        XCTAssertEqual(d(429), .retry)
        XCTAssertEqual(d(400, #"{"__type" : "Throttling"}"#), .retry)
        XCTAssertEqual(d(400, "", "Throttling;Sender"), .retry)
        XCTAssertEqual(d(400, #"{"__type":"InvalidParameterValue"}"#), .fail)
        XCTAssertEqual(d(403, #"{"__type":"Throttling"}"#), .fail)
        XCTAssertEqual(d(404), .fail)
        XCTAssertEqual(CloudWatchSink.errorType(#"{"__type":"a.b#ThrottlingException"}"#), "ThrottlingException")
    }

    /// A generator that returns `values` in turn (then starts over).
    private struct ReplayedRandom: RandomNumberGenerator {
        var values: [UInt64]
        var index = 0
        mutating func next() -> UInt64 {
            defer { index = (index + 1) % values.count }
            return values[index]
        }
    }

    func testBackoffHasJitterAndGrows() {
        // Exact waits for a fixed random sequence: u = 0, 1/2, 3/4 and just under 1.
        var g = ReplayedRandom(values: [0, 1 << 63, 3 << 62, .max])
        let expected: [(attempt: Int, wait: Double)] = [
            (0, 0.1), (0, 0.075), (0, 0.0625), (0, 0.05),
            (3, 0.8), (3, 0.6), (3, 0.5), (3, 0.4),
            (10, 10), (10, 7.5), (10, 6.25), (10, 5),
            (40, 10), (40, 7.5), (40, 6.25), (40, 5),
        ]
        for (attempt, wait) in expected {
            let b = RetrySchedule.backoff(attempt: attempt, using: &g)
            XCTAssertEqual(b, wait, accuracy: 1e-9, "attempt \(attempt)")
            XCTAssertGreaterThan(b, 0, "attempt \(attempt)")
        }

        // The system generator: spread over (0.4, 0.8] at attempt 3.
        let draws = (0..<200).map { _ in RetrySchedule.backoff(attempt: 3) }
        XCTAssertGreaterThanOrEqual(Set(draws).count, 50, "jitter gives distinct waits")
        XCTAssertLessThan(draws.min()!, 0.48, "jitter reaches the lower fifth")
        XCTAssertGreaterThan(draws.max()!, 0.72, "jitter reaches the upper fifth")
        print("backoff at attempt 3: \(Set(draws).count) distinct of 200, min \(draws.min()!), max \(draws.max()!)")

        // Growth: every wait of attempt n + 1 is at least every wait of attempt n.
        for n in 0..<6 {
            let now = (0..<50).map { _ in RetrySchedule.backoff(attempt: n) }
            let next = (0..<50).map { _ in RetrySchedule.backoff(attempt: n + 1) }
            XCTAssertGreaterThanOrEqual(next.min()!, now.max()!, "attempt \(n + 1) waits longer than attempt \(n)")
        }
    }

    func testDeadEndpointFailsWithinTheTimeout() throws {
        let s = try CloudWatchSink(configuration: .init(region: "us-east-1", endpoint: "http://127.0.0.1:1",
                                                        accessKeyId: "a", secretAccessKey: "b", timeoutMs: 700),
                                   environment: { _ in nil })
        let start = Date()
        XCTAssertThrowsError(try s.export([snapshot()]))
        XCTAssertLessThan(Date().timeIntervalSince(start), 1.2)
        XCTAssertGreaterThan(s.requestCount, 1, "connection failures are retried")
    }

    /// Snapshots CloudWatch would refuse are counted for completed exports
    /// only (takeDroppedCount), and the manager publishes them as KplmSinkDropped.
    func testDropsAreCountedForCompletedExports() throws {
        let fake = try fakeCloudWatch()
        defer { fake.stop() }
        let s = try sink(fake) { $0.maxRetries = 0 }
        let now = Double(Date().timeIntervalSince1970)
        var old = snapshot("Old")
        old.timestampUnix = now - 15 * 86_400
        var future = snapshot("Future")
        future.timestampUnix = now + 3 * 3_600
        try s.export([old, snapshot("Good"), future])
        let body = String(decoding: try XCTUnwrap(fake.requests.last).body, as: UTF8.self)
        XCTAssertTrue(body.contains(#""MetricName":"Good""#), body)
        XCTAssertFalse(body.contains(#""MetricName":"Old""#) || body.contains(#""MetricName":"Future""#), body)
        XCTAssertEqual(s.dropped, [.timestampTooOld: 1, .timestampInFuture: 1])
        XCTAssertEqual(s.takeDroppedCount(), 2)
        XCTAssertEqual(s.takeDroppedCount(), 0, "taking the count starts again from zero")

        // A failed export counts nothing: its data comes back at the next flush.
        fake.answer(cloudWatchAnswer(400, #"{"__type":"InvalidParameterValue"}"#))
        XCTAssertThrowsError(try s.export([old, snapshot("Good")]))
        XCTAssertEqual(s.takeDroppedCount(), 0)
        XCTAssertEqual(s.droppedCount, 2)

        // Through a manager: 15 days after the put, the datum is too old.
        let clock = TestClock(100)
        let m = try detailed(clock, window: 3_600, sink: s)
        try m.start()
        try m.put("Stale", 1, stream: "a")
        try m.put("Stale", 1, stream: "b")
        clock.advance(15 * 86_400)
        try m.put("Fresh", 5)
        let before = fake.requests.count
        try m.flush()
        XCTAssertEqual(s.takeDroppedCount(), 0, "the manager took the count")
        XCTAssertEqual(s.droppedCount, 4)
        let dropped = try XCTUnwrap(find(m.snapshots(), "KplmSinkDropped"))
        XCTAssertEqual(dropped.count, 2)
        XCTAssertEqual(dropped.sum, 2)
        let first = fake.requests.dropFirst(before).map { String(decoding: $0.body, as: UTF8.self) }.joined()
        XCTAssertTrue(first.contains(#""MetricName":"Fresh""#), first)
        XCTAssertFalse(first.contains(#""MetricName":"Stale""#), first)
        // The next flush sends the count.
        let next = fake.requests.count
        try m.flush()
        let second = fake.requests.dropFirst(next).map { String(decoding: $0.body, as: UTF8.self) }.joined()
        XCTAssertTrue(second.contains(#""MetricName":"KplmSinkDropped""#), second)
        XCTAssertTrue(second.contains(#""SampleCount":2"#), second)
        try m.close()
    }

    func testCredentialsResolution() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kplm-cw-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try """
        [default]
        aws_access_key_id = FILEDEFAULT
        aws_secret_access_key = s1
        ; comment
        [ other ]
        aws_access_key_id=FILEOTHER
        aws_secret_access_key=s2
        aws_session_token = tok
          nested = ignored
        """.write(to: dir.appendingPathComponent("credentials"), atomically: true, encoding: .utf8)
        try """
        [default]
        region = eu-central-1
        [profile cfg]
        region = ap-south-1
        aws_access_key_id = CFG
        aws_secret_access_key = s3
        """.write(to: dir.appendingPathComponent("config"), atomically: true, encoding: .utf8)
        let files = ["HOME": dir.path + "/nohome", "AWS_SHARED_CREDENTIALS_FILE": dir.path + "/credentials",
                     "AWS_CONFIG_FILE": dir.path + "/config"]
        func resolve(_ env: [String: String], profile: String? = nil,
                     explicit: CloudWatchCredentials? = nil) throws -> CloudWatchCredentials {
            try CloudWatchEnvironment.credentials(explicit: explicit, profile: profile, env: { env[$0] })
        }
        let envKeys = ["AWS_ACCESS_KEY_ID": "ENV", "AWS_SECRET_ACCESS_KEY": "es", "AWS_SESSION_TOKEN": "et"]
        XCTAssertEqual(try resolve(files.merging(envKeys) { a, _ in a }),
                       CloudWatchCredentials(accessKeyId: "ENV", secretAccessKey: "es", sessionToken: "et"))
        XCTAssertEqual(try resolve(files), CloudWatchCredentials(accessKeyId: "FILEDEFAULT", secretAccessKey: "s1"))
        XCTAssertEqual(try resolve(files.merging(envKeys) { a, _ in a }, profile: "other"),
                       CloudWatchCredentials(accessKeyId: "FILEOTHER", secretAccessKey: "s2", sessionToken: "tok"))
        XCTAssertEqual(try resolve(files.merging(["AWS_PROFILE": "other"]) { a, _ in a }).accessKeyId, "FILEOTHER")
        XCTAssertEqual(try resolve(files, profile: "cfg").accessKeyId, "CFG")
        XCTAssertEqual(try resolve(files, profile: "other",
                                   explicit: .init(accessKeyId: "X", secretAccessKey: "Y")).accessKeyId, "X")
        XCTAssertThrowsError(try resolve(files, profile: "missing"))
        XCTAssertThrowsError(try resolve(["HOME": dir.path + "/nohome"]))
        // ~/.aws under HOME, and "~/" in the variables.
        try FileManager.default.createDirectory(at: dir.appendingPathComponent(".aws"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: dir.appendingPathComponent("credentials"),
                                         to: dir.appendingPathComponent(".aws/credentials"))
        XCTAssertEqual(try resolve(["HOME": dir.path]).accessKeyId, "FILEDEFAULT")
        XCTAssertEqual(try resolve(["HOME": dir.path, "AWS_SHARED_CREDENTIALS_FILE": "~/credentials"],
                                   profile: "other").accessKeyId, "FILEOTHER")
        // Region: environment, then the profile's region in the config file.
        XCTAssertEqual(CloudWatchEnvironment.region(profile: nil, env: { files[$0] }), "eu-central-1")
        XCTAssertEqual(CloudWatchEnvironment.region(profile: "cfg", env: { files[$0] }), "ap-south-1")
        XCTAssertNil(CloudWatchEnvironment.region(profile: "other", env: { files[$0] }))
        XCTAssertEqual(CloudWatchEnvironment.region(profile: "cfg", env: {
            files.merging(["AWS_DEFAULT_REGION": "us-west-2"]) { a, _ in a }[$0] }), "us-west-2")
        XCTAssertEqual(CloudWatchEnvironment.region(profile: nil, env: {
            ["AWS_DEFAULT_REGION": "us-west-2", "AWS_REGION": "us-east-2"][$0] }), "us-east-2")
        let s = try CloudWatchSink(configuration: .init(profile: "cfg"), environment: { files[$0] })
        XCTAssertEqual(s.region, "ap-south-1")
        XCTAssertEqual(try s.resolveCredentials().accessKeyId, "CFG")
    }

    func testConfigurationValidation() throws {
        func invalid(_ c: CloudWatchSinkConfiguration, _ env: [String: String] = [:],
                     file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try CloudWatchSink(configuration: c, environment: { env[$0] }), file: file, line: line) {
                XCTAssertEqual(($0 as? MetricsError)?.code, .invalidArgument, file: file, line: line)
            }
        }
        invalid(.init())
        invalid(.init(region: "Us-East-1"))
        invalid(.init(region: "us-east-1", endpoint: "ftp://h"))
        invalid(.init(region: "us-east-1", endpoint: "http://h:0"))
        invalid(.init(region: "us-east-1", namespace: "AWS/X"))
        invalid(.init(region: "us-east-1", accessKeyId: "a"))
        invalid(.init(region: "us-east-1", sessionToken: "t"))
        invalid(.init(region: "us-east-1", timeoutMs: .nan))
        invalid(.init(region: "us-east-1", maxRetries: -1))
        XCTAssertNoThrow(try CloudWatchSink(configuration: .init(), environment: { ["AWS_REGION": "cn-north-1"][$0] }))
        let e = try CloudWatchEndpoint(parsing: CloudWatchEndpoint.aws(region: "cn-north-1"))
        XCTAssertEqual(e.host, "monitoring.cn-north-1.amazonaws.com.cn")
        let v6 = try CloudWatchEndpoint(parsing: "HTTP://[::1]:4566/base")
        XCTAssertEqual(v6.url, "http://[::1]:4566/base")
        XCTAssertEqual(v6.path, "/base")
        XCTAssertEqual(try CloudWatchEndpoint(parsing: "https://h:443").hostHeader, "h")
    }
}
