import Foundation
import XCTest
@testable import KPLM
@testable import KPLMSinks

/// A loopback HTTP server answering PutMetricData calls from a script
/// (status and body); 200 "{}" once the script is empty.
private final class FakeCloudWatch: @unchecked Sendable {
    struct Request {
        var head: String
        var body: [UInt8]
        func header(_ name: String) -> String? {
            for line in head.components(separatedBy: "\r\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                if line[..<colon].lowercased() == name.lowercased() {
                    return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
            }
            return nil
        }
    }

    let port: UInt16
    private let fd: Int32
    private let lock = NSLock()
    private var script: [(Int, String)] = []
    private var received: [Request] = []
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
                bind(fd, p, length) == 0 && getsockname(fd, p, &length) == 0 && listen(fd, 16) == 0
            }
        }
        guard ok else { close(fd); throw POSIXError(.EADDRINUSE) }
        self.fd = fd
        port = UInt16(bigEndian: address.sin_port)
        Thread.detachNewThread { [self] in serve() }
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }
    func answer(_ answers: (Int, String)...) { lock.withLock { script += answers } }
    var requests: [Request] { lock.withLock { received } }

    func stop() {
        lock.withLock { stopped = true }
        done.wait()
        close(fd)
    }

    private func serve() {
        defer { done.signal() }
        while !lock.withLock({ stopped }) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 20) == 1 else { continue }
            let conn = accept(fd, nil, nil)
            guard conn >= 0 else { continue }
            handle(conn)
            close(conn)
        }
    }

    private func handle(_ conn: Int32) {
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var headEnd: Int?
        var contentLength = 0
        while true {
            if headEnd == nil, let r = data.firstRange(of: [13, 10, 13, 10]) {
                headEnd = r.lowerBound
                let head = Request(head: String(decoding: data[..<r.lowerBound], as: UTF8.self), body: [])
                contentLength = Int(head.header("Content-Length") ?? "0") ?? 0
            }
            if let end = headEnd, data.count >= end + 4 + contentLength { break }
            let n = recv(conn, &buffer, buffer.count, 0)
            guard n > 0 else { return }
            data += buffer[..<n]
        }
        let end = headEnd!
        let (status, body) = lock.withLock { script.isEmpty ? (200, "{}") : script.removeFirst() }
        lock.withLock {
            received.append(Request(head: String(decoding: data[..<end], as: UTF8.self),
                                    body: Array(data[(end + 4)..<(end + 4 + contentLength)])))
        }
        let text = "HTTP/1.1 \(status) Whatever\r\nContent-Type: application/x-amz-json-1.0\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        _ = Array(text.utf8).withUnsafeBytes { send(conn, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }
}

final class CloudWatchSinkTests: XCTestCase {
    private func snapshot(_ name: String = "UserRecordsPut", stream: String = "orders", value: Double = 2) -> MetricSnapshot {
        MetricSnapshot(name: name, count: 1, sum: value, min: value, max: value,
                       dimensions: [MetricDimension("stream", stream)], windowStart: 0, windowEnd: 1,
                       timestampUnix: Double(Date().timeIntervalSince1970), namespace: "Mgr/NS")
    }

    private func sink(_ fake: FakeCloudWatch, _ mutate: (inout CloudWatchSinkConfiguration) -> Void = { _ in },
                      env: [String: String] = [:]) throws -> CloudWatchSink {
        var c = CloudWatchSinkConfiguration(region: "us-east-1", endpoint: fake.endpoint, accessKeyId: "AKID",
                                            secretAccessKey: "secret", timeoutMs: 5_000, maxRetries: 3)
        mutate(&c)
        return try CloudWatchSink(configuration: c, environment: { env[$0] })
    }

    func testRequestHeadersAndGzipRoundTrip() throws {
        let fake = try FakeCloudWatch()
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
        // The body is gzip of exactly what CloudWatchShape builds.
        let json = try XCTUnwrap(CloudWatchHTTP.gunzip(r.body))
        let expected = try CloudWatchShape.batches(snapshots, namespace: "Mgr/NS",
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
        let fake = try FakeCloudWatch()
        defer { fake.stop() }
        fake.answer((503, ""), (400, #"{"__type":"Throttling","message":"Rate exceeded"}"#), (429, ""),
                    (400, #"{"__type":"com.amazonaws.cloudwatch.v2013_01_16#ThrottlingException"}"#))
        let s = try sink(fake) { $0.maxRetries = 5 }
        try s.export([snapshot()])
        XCTAssertEqual(fake.requests.count, 5)
        XCTAssertEqual(s.requestCount, 5)
        XCTAssertEqual(s.successfulRequestCount, 1)
        XCTAssertEqual(s.lastStatus, 200)
    }

    func testOtherErrorsFailAtOnceAndRetriesAreBounded() throws {
        let fake = try FakeCloudWatch()
        defer { fake.stop() }
        fake.answer((400, #"{"__type":"InvalidParameterValue","message":"bad"}"#))
        let s = try sink(fake)
        XCTAssertThrowsError(try s.export([snapshot()])) { error in
            XCTAssertEqual((error as? MetricsError)?.code, .sinkFailed)
            XCTAssertTrue((error as? MetricsError)?.message.contains("InvalidParameterValue: bad") == true, "\(error)")
        }
        XCTAssertEqual(fake.requests.count, 1)
        fake.answer((500, ""), (500, ""), (500, ""), (500, ""), (500, ""))
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

    func testBackoffHasJitterAndGrows() {
        for attempt in 0..<12 {
            let full = min(10, 0.1 * Double(1 << min(attempt, 10)))
            for _ in 0..<20 {
                let b = CloudWatchSink.backoff(attempt: attempt)
                XCTAssertTrue(b >= full / 2 && b <= full, "\(attempt): \(b)")
            }
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
