import Foundation
import XCTest
@testable import KPLM

/// A loopback port free a moment ago (bound to port 0, then closed).
private func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard ok else { throw POSIXError(.EADDRINUSE) }
    return UInt16(bigEndian: address.sin_port)
}

/// A TCP socket connected to 127.0.0.1:`port`, or nil with the errno.
private func connectTo(_ port: UInt16) -> (fd: Int32?, errno: Int32) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return (nil, errno) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if rc != 0 {
        let code = errno
        close(fd)
        return (nil, code)
    }
    return (fd, 0)
}

/// One HTTP response, read until the server closed the connection.
private struct HTTPResponse {
    var status: Int
    var headers: [String: String]   // lowercased names
    var body: String
}

/// Sends `raw` and reads the whole response (the server closes after it).
private func exchange(_ port: UInt16, _ raw: String) throws -> HTTPResponse {
    guard let fd = connectTo(port).fd else { throw POSIXError(.ECONNREFUSED) }
    defer { close(fd) }
    let bytes = Array(raw.utf8)
    guard send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw POSIXError(.EIO) }
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n >= 0 else { throw POSIXError(.ETIMEDOUT) }
        if n == 0 { break }
        data += buffer[0..<n]
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw POSIXError(.EBADMSG) }
    let head = text[..<split.lowerBound].components(separatedBy: "\r\n")
    let statusParts = head[0].split(separator: " ")
    guard statusParts.count >= 2, statusParts[0] == "HTTP/1.1", let status = Int(statusParts[1]) else {
        throw POSIXError(.EBADMSG)
    }
    var headers: [String: String] = [:]
    for line in head.dropFirst() {
        let pair = line.split(separator: ":", maxSplits: 1)
        headers[pair[0].lowercased()] = pair[1].trimmingCharacters(in: .whitespaces)
    }
    let body = String(text[split.upperBound...])
    if !raw.hasPrefix("HEAD ") { XCTAssertEqual(headers["content-length"].flatMap(Int.init), body.utf8.count) }
    XCTAssertEqual(headers["connection"], "close")
    return HTTPResponse(status: status, headers: headers, body: body)
}

/// GET `path` with an optional Accept header.
private func get(_ port: UInt16, _ path: String = "/metrics", accept: String? = nil) throws -> HTTPResponse {
    try exchange(port, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 + (accept.map { "Accept: \($0)\r\n" } ?? "") + "\r\n")
}

private let openMetricsAccept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    + "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

/// The four families of one base name with one sample each, in either format.
private func family(_ base: String, _ raw: String, labels: String = "", count: String, sum: String, min: String,
                    max: String, openMetrics: Bool = false) -> String {
    let l = labels.isEmpty ? "" : "{\(labels)}"
    let total = openMetrics ? "_total" : ""
    return """
        # HELP \(base)_count Number of observations of \(raw) since the sink started.
        # TYPE \(base)_count counter
        \(base)_count\(total)\(l) \(count)
        # HELP \(base)_sum Sum of the observations of \(raw) since the sink started.
        # TYPE \(base)_sum counter
        \(base)_sum\(total)\(l) \(sum)
        # HELP \(base)_min Smallest observation of \(raw) in the last export that had the key.
        # TYPE \(base)_min gauge
        \(base)_min\(l) \(min)
        # HELP \(base)_max Largest observation of \(raw) in the last export that had the key.
        # TYPE \(base)_max gauge
        \(base)_max\(l) \(max)

        """
}

/// The names of this process's threads.
private func threadNames() -> [String] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
        .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
}

final class PrometheusSinkTests: XCTestCase {
    private func startManager(prefix: String = "kplm_", timeout: Double = 5,
                              clock: TestClock = TestClock(100)) throws -> (MetricsManager, PrometheusSink, UInt16) {
        let port = try freePort()
        let sink = try PrometheusSink(configuration: PrometheusConfiguration(
            address: "127.0.0.1", port: port, prefix: prefix, requestTimeoutSeconds: timeout))
        let m = try detailed(clock, sink: sink)
        try m.start()
        return (m, sink, port)
    }

    private func putSample(_ m: MetricsManager) throws {
        try m.put("UserRecordsPut", 2, stream: "orders", shardId: "shardId-1")
        try m.put("UserRecordsPut", 3.5, stream: "orders", shardId: "shardId-1")
        try m.put("UserRecordsPut", 7, stream: "events")
        try m.put("BufferingTime", 0.1)
        try m.put("BufferingTime", 0.2)
    }

    func testTextFormatHasExactLines() throws {
        let (m, sink, port) = try startManager()
        defer { try? m.close() }
        XCTAssertTrue(sink.isServing)
        XCTAssertTrue(waitUntil { threadNames().contains("kplm-prometheus") })
        // Before any export: an empty exposition.
        let empty = try get(port)
        XCTAssertEqual(empty.status, 200)
        XCTAssertEqual(empty.body, "")

        try putSample(m)
        try m.flush()
        let response = try get(port)
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        let want = family("kplm_BufferingTime", "kplm_BufferingTime", count: "2", sum: "0.30000000000000004",
                          min: "0.1", max: "0.2")
            + """
            # HELP kplm_UserRecordsPut_count Number of observations of kplm_UserRecordsPut since the sink started.
            # TYPE kplm_UserRecordsPut_count counter
            kplm_UserRecordsPut_count{stream="events"} 1
            kplm_UserRecordsPut_count{stream="orders",shard="shardId-1"} 2
            # HELP kplm_UserRecordsPut_sum Sum of the observations of kplm_UserRecordsPut since the sink started.
            # TYPE kplm_UserRecordsPut_sum counter
            kplm_UserRecordsPut_sum{stream="events"} 7
            kplm_UserRecordsPut_sum{stream="orders",shard="shardId-1"} 5.5
            # HELP kplm_UserRecordsPut_min Smallest observation of kplm_UserRecordsPut in the last export that had the key.
            # TYPE kplm_UserRecordsPut_min gauge
            kplm_UserRecordsPut_min{stream="events"} 7
            kplm_UserRecordsPut_min{stream="orders",shard="shardId-1"} 2
            # HELP kplm_UserRecordsPut_max Largest observation of kplm_UserRecordsPut in the last export that had the key.
            # TYPE kplm_UserRecordsPut_max gauge
            kplm_UserRecordsPut_max{stream="events"} 7
            kplm_UserRecordsPut_max{stream="orders",shard="shardId-1"} 3.5

            """
        XCTAssertEqual(response.body, want)
        // A query string does not change the path; Accept without OpenMetrics keeps the text format.
        XCTAssertEqual(try get(port, "/metrics?x=1", accept: "text/plain;version=0.0.4").body, want)
    }

    func testOpenMetricsFormatWhenAsked() throws {
        let (m, _, port) = try startManager(prefix: "")
        defer { try? m.close() }
        let empty = try get(port, accept: openMetricsAccept)
        XCTAssertEqual(empty.body, "# EOF\n")
        try m.put("AllErrors", 1, stream: "orders", errorCode: "Throttled")
        try m.put("Tiny", 1e-7)
        try m.put("Tiny", -2.5e21)
        try m.flush()
        let response = try get(port, accept: openMetricsAccept)
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.headers["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8")
        XCTAssertEqual(response.body,
                       family("AllErrors", "AllErrors", labels: #"stream="orders",error_code="Throttled""#,
                              count: "1", sum: "1", min: "1", max: "1", openMetrics: true)
                       + family("Tiny", "Tiny", count: "2", sum: "-2.5e+21", min: "-2.5e+21", max: "1e-07",
                                openMetrics: true)
                       + "# EOF\n")
        // The Accept header is matched without regard to case, and the text format is otherwise served.
        XCTAssertTrue(try get(port, accept: "Application/OpenMetrics-Text").body.hasSuffix("# EOF\n"))
        XCTAssertFalse(try get(port).body.contains("# EOF"))
    }

    func testCountersAccumulateAndGaugesFollowTheLastExport() throws {
        let clock = TestClock(100)
        let (m, _, port) = try startManager(clock: clock)
        defer { try? m.close() }
        try m.put("A", 5, stream: "s")
        try m.put("A", 1, stream: "s")
        try m.put("B", 10)
        try m.flush()
        clock.advance(1)
        try m.put("A", 3, stream: "s")
        try m.put("A", 4, stream: "s")
        try m.flush()
        clock.advance(1)
        try m.flush()   // nothing new: no change
        let body = try get(port).body
        let want = family("kplm_A", "kplm_A", labels: #"stream="s""#, count: "4", sum: "13", min: "3", max: "4")
            + family("kplm_B", "kplm_B", count: "1", sum: "10", min: "10", max: "10")
        XCTAssertEqual(body, want)
        // A scrape does not consume anything.
        XCTAssertEqual(try get(port).body, want)
    }

    func testEscapingAndSanitization() throws {
        let (m, sink, port) = try startManager(prefix: "my app.")
        defer { try? m.close() }
        try m.put("Weird name/ü#9", 1, stream: "a\"b\\c\nd", errorCode: "Ça:va")
        try m.flush()
        // Dimension names that need sanitizing, and keys merging once sanitized.
        try sink.export([
            MetricSnapshot(name: "x-y", count: 1, sum: 2, min: 2, max: 2,
                           dimensions: dims(("1st dim", "v"), ("__meta", "w"), ("a:b", "1"), ("a_b", "2")),
                           windowStart: 0, windowEnd: 1, timestampUnix: 0),
            MetricSnapshot(name: "x_y", count: 2, sum: 3, min: 1, max: 2,
                           dimensions: dims(("1st dim", "v"), ("__meta", "w"), ("a:b", "1"), ("a_b", "2")),
                           windowStart: 0, windowEnd: 1, timestampUnix: 0),
        ])
        let labels = #"_1st_dim="v",_meta="w",a_b="1",a_b_="2""#
        let want = family("my_app_Weird_name___9", "my app.Weird name/ü#9",
                          labels: #"stream="a\"b\\c\nd",error_code="Ça:va""#, count: "1", sum: "1", min: "1", max: "1")
            + family("my_app_x_y", "my app.x-y", labels: labels, count: "3", sum: "5", min: "1", max: "2")
        XCTAssertEqual(try get(port).body, want)
        // HELP text in OpenMetrics escapes the quote too.
        try sink.export([MetricSnapshot(name: "q\"\\\n\r", count: 1, sum: 1, min: 1, max: 1, dimensions: [],
                                        windowStart: 0, windowEnd: 1, timestampUnix: 0)])
        let om = try get(port, accept: "application/openmetrics-text").body
        XCTAssertTrue(om.contains(#"# HELP my_app_q_____count Number of observations of my app.q\"\\\n  since"#), om)
        let text = try get(port).body
        XCTAssertTrue(text.contains(#"# HELP my_app_q_____count Number of observations of my app.q"\\\n  since"#), text)

        XCTAssertEqual(PrometheusFormat.metricName("9lives"), "_9lives")
        XCTAssertEqual(PrometheusFormat.metricName("__name__"), "_name__")
        XCTAssertEqual(PrometheusFormat.metricName("___9"), "_9")
        XCTAssertEqual(PrometheusFormat.metricName("a:b.c-d"), "a:b_c_d")
        XCTAssertEqual(PrometheusFormat.metricName(""), "_")
        XCTAssertEqual(PrometheusFormat.metricName("é"), "_")
        XCTAssertEqual(PrometheusFormat.labelName("a:b"), "a_b")
        XCTAssertEqual(PrometheusFormat.labelName("__x"), "_x")
        XCTAssertEqual(PrometheusFormat.labelName("0"), "_0")
        XCTAssertEqual(PrometheusFormat.labelValue("a\\b\"c\nd\té"), "a\\\\b\\\"c\\nd\té")
    }

    func testNumbersReadBackExactly() {
        let cases: [(Double, String)] = [
            (0, "0"), (-0.0, "0"), (1, "1"), (-1, "-1"), (0.5, "0.5"), (1e-7, "1e-07"), (123456.789, "123456.789"),
            (999_999_999_999_999, "999999999999999"), (1e15, "1000000000000000"), (1e16, "1e+16"), (12345678901234567e2, "1.2345678901234568e+18"), (1.5e300, "1.5e+300"),
            (0.1 + 0.2, "0.30000000000000004"), (.infinity, "+Inf"), (-.infinity, "-Inf"), (.nan, "NaN"),
            (Double.leastNonzeroMagnitude, "5e-324"), (-2.5e21, "-2.5e+21"),
        ]
        for (value, text) in cases { XCTAssertEqual(PrometheusFormat.number(value), text, "\(value)") }
        // The Prometheus float grammar: digits, one optional point, optional exponent.
        let grammar = try! NSRegularExpression(pattern: #"^-?[0-9]+(\.[0-9]+)?(e[+-][0-9]+)?$"#)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let value = Double(bitPattern: generator.next())
            guard value.isFinite else { continue }
            let text = PrometheusFormat.number(value)
            XCTAssertEqual(Double(text), value, text)
            XCTAssertNotNil(grammar.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)), text)
        }
    }

    func testOtherPathsMethodsAndBadRequests() throws {
        let (m, _, port) = try startManager()
        defer { try? m.close() }
        try m.put("A", 1)
        try m.flush()
        let notFound = try get(port, "/")
        XCTAssertEqual(notFound.status, 404)
        XCTAssertEqual(try get(port, "/metricsx").status, 404)
        let post = try exchange(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        XCTAssertEqual(post.status, 405)
        XCTAssertEqual(post.headers["allow"], "GET, HEAD")
        XCTAssertEqual(try exchange(port, "DELETE /metrics HTTP/1.0\r\n\r\n").status, 405)
        let head = try exchange(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.body, "")
        XCTAssertEqual(head.headers["content-length"], try get(port).headers["content-length"])
        XCTAssertEqual(try exchange(port, "garbage\r\n\r\n").status, 400)
        XCTAssertEqual(try exchange(port, "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n").status, 400)
        let huge = "GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 20_000) + "\r\n\r\n"
        XCTAssertEqual(try exchange(port, huge).status, 431)
        // Bare "\n" line ends are accepted.
        XCTAssertEqual(try exchange(port, "GET /metrics HTTP/1.1\nHost: x\n\n").status, 200)
    }

    func testSlowClientsAreCutOffAndCloseDoesNotWaitForThem() throws {
        let (m, sink, port) = try startManager(timeout: 0.3)
        try m.put("A", 1)
        try m.flush()
        // A client that never sends its request holds the thread 0.3 s at most.
        let idle = try XCTUnwrap(connectTo(port).fd)
        defer { close(idle) }
        let started = Date()
        XCTAssertEqual(try get(port).status, 200)
        XCTAssertLessThan(Date().timeIntervalSince(started), 3)
        // The idle connection was closed by the server.
        var byte: UInt8 = 0
        XCTAssertEqual(recv(idle, &byte, 1, 0), 0)
        try m.close()
        XCTAssertFalse(sink.isServing)

        // With a long timeout, close wakes the thread out of a pending request.
        let (m2, _, port2) = try startManager(timeout: 60)
        let pending = try XCTUnwrap(connectTo(port2).fd)
        defer { close(pending) }
        _ = send(pending, "GET /met", 8, 0)
        Thread.sleep(forTimeInterval: 0.2)
        let closing = Date()
        try m2.close()
        XCTAssertLessThan(Date().timeIntervalSince(closing), 2)
    }

    func testCloseStopsTheServer() throws {
        let (m, sink, port) = try startManager()
        XCTAssertEqual(try get(port).status, 200)
        try m.close()
        XCTAssertFalse(sink.isServing)
        XCTAssertFalse(threadNames().contains("kplm-prometheus"))
        let attempt = connectTo(port)
        XCTAssertNil(attempt.fd)
        XCTAssertEqual(attempt.errno, ECONNREFUSED)
        // The port is free again: another sink can take it at once (SO_REUSEADDR).
        let again = try PrometheusSink(configuration: PrometheusConfiguration(port: port))
        try again.open()
        XCTAssertEqual(try get(port).status, 200)
        again.close()
        again.close()
        XCTAssertEqual(connectTo(port).errno, ECONNREFUSED)
    }

    func testPortInUseFailsStart() throws {
        let port = try freePort()
        let blocker = try PrometheusSink(configuration: PrometheusConfiguration(port: port))
        try blocker.open()
        defer { blocker.close() }
        let sink = try PrometheusSink(configuration: PrometheusConfiguration(port: port))
        let m = try detailed(TestClock(100), sink: sink)
        assertThrows(.sinkFailed) { try m.start() }
        XCTAssertFalse(sink.isServing)
        try? m.close()
    }

    func testConfigurationIsValidated() throws {
        let good = PrometheusConfiguration()
        XCTAssertEqual(good.address, "127.0.0.1")
        XCTAssertEqual(good.port, 9464)
        XCTAssertEqual(good.prefix, "kplm_")
        XCTAssertNoThrow(try good.validate())
        for address in ["::1", "0.0.0.0", "::", "localhost"] {
            XCTAssertNoThrow(try PrometheusConfiguration(address: address).validate(), address)
        }
        let bad = [
            PrometheusConfiguration(address: ""), PrometheusConfiguration(address: "a b"),
            PrometheusConfiguration(address: "[::1]"), PrometheusConfiguration(address: String(repeating: "a", count: 254)),
            PrometheusConfiguration(port: 0), PrometheusConfiguration(prefix: String(repeating: "p", count: 256)),
            PrometheusConfiguration(requestTimeoutSeconds: 0), PrometheusConfiguration(requestTimeoutSeconds: .nan),
            PrometheusConfiguration(requestTimeoutSeconds: 3601),
        ]
        for configuration in bad {
            assertThrows(.invalidArgument, "\(configuration)") { _ = try PrometheusSink(configuration: configuration) }
        }
    }
}
