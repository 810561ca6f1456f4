import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM
@testable import KPLMSinks

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

/// The summary and two gauges of one family with one series, in either
/// format (the same lines); `unit` is the HELP text's unit note.
private func family(_ base: String, _ raw: String, labels: String = "", count: String, sum: String, min: String,
                    max: String, unit: String = "") -> String {
    let l = labels.isEmpty ? "" : "{\(labels)}"
    return """
        # HELP \(base) Count and sum of the observations of \(raw) since the sink started.\(unit)
        # TYPE \(base) summary
        \(base)_count\(l) \(count)
        \(base)_sum\(l) \(sum)
        # HELP \(base)_min Smallest observation of \(raw) in the last export that had the key.\(unit)
        # TYPE \(base)_min gauge
        \(base)_min\(l) \(min)
        # HELP \(base)_max Largest observation of \(raw) in the last export that had the key.\(unit)
        # TYPE \(base)_max gauge
        \(base)_max\(l) \(max)

        """
}

private let secondsNote = " In seconds (reported in milliseconds)."

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
        try m.put("BufferingTime", 100)
        try m.put("BufferingTime", 200)
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
        // Milliseconds are served in seconds.
        let want = family("kplm_buffering_time_seconds", "kplm_BufferingTime", count: "2", sum: "0.3",
                          min: "0.1", max: "0.2", unit: secondsNote)
            + """
            # HELP kplm_user_records_put Count and sum of the observations of kplm_UserRecordsPut since the sink started.
            # TYPE kplm_user_records_put summary
            kplm_user_records_put_count{stream="events"} 1
            kplm_user_records_put_sum{stream="events"} 7
            kplm_user_records_put_count{stream="orders",shard="shardId-1"} 2
            kplm_user_records_put_sum{stream="orders",shard="shardId-1"} 5.5
            # HELP kplm_user_records_put_min Smallest observation of kplm_UserRecordsPut in the last export that had the key.
            # TYPE kplm_user_records_put_min gauge
            kplm_user_records_put_min{stream="events"} 7
            kplm_user_records_put_min{stream="orders",shard="shardId-1"} 2
            # HELP kplm_user_records_put_max Largest observation of kplm_UserRecordsPut in the last export that had the key.
            # TYPE kplm_user_records_put_max gauge
            kplm_user_records_put_max{stream="events"} 7
            kplm_user_records_put_max{stream="orders",shard="shardId-1"} 3.5

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
                       family("all_errors", "AllErrors", labels: #"stream="orders",error_code="Throttled""#,
                              count: "1", sum: "1", min: "1", max: "1")
                       + family("tiny", "Tiny", count: "2", sum: "-2.5e+21", min: "-2.5e+21", max: "1e-07")
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
        let want = family("kplm_a", "kplm_A", labels: #"stream="s""#, count: "4", sum: "13", min: "3", max: "4")
            + family("kplm_b", "kplm_B", count: "1", sum: "10", min: "10", max: "10")
        XCTAssertEqual(body, want)
        // A scrape does not consume anything.
        XCTAssertEqual(try get(port).body, want)
    }

    func testEscapingAndSanitization() throws {
        let (m, sink, port) = try startManager(prefix: "my app.")
        defer { try? m.close() }
        try m.put("Weird name/ü#9", 1, stream: "a\"b\\c\nd", errorCode: "Ça:va")
        try m.flush()
        // Dimension names that need sanitizing, and names that sanitize
        // alike: the second (by raw name bytes) gets its hash, never a merge.
        try sink.export([
            MetricSnapshot(name: "x-y", count: 1, sum: 2, min: 2, max: 2,
                           dimensions: dims(("1st dim", "v"), ("__meta", "w"), ("a:b", "1"), ("a_b", "2")),
                           windowStart: 0, windowEnd: 1, timestampUnix: 0),
            MetricSnapshot(name: "x_y", count: 2, sum: 3, min: 1, max: 2,
                           dimensions: dims(("1st dim", "v"), ("__meta", "w"), ("a:b", "1"), ("a_b", "2")),
                           windowStart: 0, windowEnd: 1, timestampUnix: 0),
        ])
        let labels = #"_1st_dim="v",_meta="w",a_b="1",a_b_="2""#
        let want = family("my_app_weird_name_9", "my app.Weird name/ü#9",
                          labels: #"stream="a\"b\\c\nd",error_code="Ça:va""#, count: "1", sum: "1", min: "1", max: "1")
            + family("my_app_x_y", "my app.x-y", labels: labels, count: "1", sum: "2", min: "2", max: "2")
            + family("my_app_x_y_82ccd40d", "my app.x_y", labels: labels, count: "2", sum: "3", min: "1", max: "2")
        XCTAssertEqual(StableHash.hex8("my app.x_y"), "82ccd40d")
        XCTAssertEqual(try get(port).body, want)
        // HELP text in OpenMetrics escapes the quote too.
        try sink.export([MetricSnapshot(name: "q\"\\\n\r", count: 1, sum: 1, min: 1, max: 1, dimensions: [],
                                        windowStart: 0, windowEnd: 1, timestampUnix: 0)])
        let om = try get(port, accept: "application/openmetrics-text").body
        XCTAssertTrue(om.contains(#"# HELP my_app_q Count and sum of the observations of my app.q\"\\\n  since"#), om)
        let text = try get(port).body
        XCTAssertTrue(text.contains(#"# HELP my_app_q Count and sum of the observations of my app.q"\\\n  since"#), text)

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

    func testFamilyNamesAreSnakeCaseWithBaseUnits() {
        let cases: [(String, MetricUnit, String)] = [
            ("kplm_UserRecordsPut", .none, "kplm_user_records_put"),
            ("kplm_KinesisRecordsDataPut", .bytes, "kplm_kinesis_records_data_put_bytes"),
            ("kplm_BufferingTime", .milliseconds, "kplm_buffering_time_seconds"),
            ("HTTPRequests", .none, "http_requests"),
            ("APIKeyID", .none, "api_key_id"),
            ("IPv4Address", .none, "i_pv4_address"),   // mixed-case acronyms are not guessed
            ("userID", .none, "user_id"),
            ("ShardIDs", .none, "shard_ids"),
            ("APIsPerCall", .none, "apis_per_call"),
            ("HTTPStatus", .none, "http_status"),
            ("mixedCASE_Name", .none, "mixed_case_name"),
            ("UTF8String", .none, "utf8_string"),
            ("S3Bucket2Go", .none, "s3_bucket2_go"),
            ("already_snake", .none, "already_snake"),
            ("MyApp::Big--Thing__", .none, "my_app_big_thing"),
            ("9 lives", .none, "_9_lives"),
            ("__name__", .none, "_name"),
            ("a:b.c-d", .none, "a_b_c_d"),
            ("", .none, "unnamed"),
            ("é", .none, "unnamed"),
            ("kplm_", .none, "kplm"),
            // Names that could collide with the gauges or draw lints get "_value".
            ("RecordMin", .none, "record_min_value"),
            ("Record_MAX", .none, "record_max_value"),
            ("ErrorsTotal", .none, "errors_total_value"),
            ("LeakyBucket", .none, "leaky_bucket_value"),
            ("RecordCount", .none, "record_count"),
            // A unit suffix is not doubled.
            ("WaitSeconds", .milliseconds, "wait_seconds"),
            ("SizeBytes", .bytes, "size_bytes"),
        ]
        for (raw, unit, want) in cases {
            XCTAssertEqual(PrometheusFormat.familyName(raw, unit: unit), want, raw)
        }
        let names = KPLMetrics.all.map { PrometheusFormat.familyName("kplm_" + $0.name, unit: $0.unit) }
        XCTAssertEqual(names, [
            "kplm_user_records_received", "kplm_user_records_pending", "kplm_user_records_put",
            "kplm_user_records_data_put_bytes", "kplm_kinesis_records_put", "kplm_kinesis_records_data_put_bytes",
            "kplm_errors_by_code", "kplm_all_errors", "kplm_retries_per_record", "kplm_user_record_expired",
            "kplm_buffering_time_seconds", "kplm_request_time_seconds", "kplm_user_records_per_kinesis_record",
            "kplm_kinesis_records_per_put_records_request", "kplm_user_records_per_put_records_request",
        ])
    }

    func testMillisecondsAreSecondsAndQuantileIsNotALabel() throws {
        let sink = try PrometheusSink(configuration: PrometheusConfiguration(port: try freePort()))
        try sink.open()
        defer { sink.close() }
        func snap(_ name: String, _ count: Int, _ sum: Double, _ min: Double, _ max: Double,
                  _ d: [MetricDimension] = []) -> MetricSnapshot {
            MetricSnapshot(name: name, count: count, sum: sum, min: min, max: max, dimensions: d,
                           windowStart: 0, windowEnd: 1, timestampUnix: 0)
        }
        try sink.export([snap("RequestTime", 2, 1500, 250, 1250), snap("UserRecordsDataPut", 1, 512, 512, 512),
                         snap("A", 1, 1, 1, 1, dims(("quantile", "0.5"), ("quantile_", "x")))])
        try sink.export([snap("RequestTime", 1, 3, 3, 3)])
        XCTAssertEqual(try get(sink.configuration.port).body,
                       family("kplm_a", "kplm_A", labels: #"quantile_="0.5",quantile__="x""#,
                              count: "1", sum: "1", min: "1", max: "1")
                       + family("kplm_request_time_seconds", "kplm_RequestTime", count: "3", sum: "1.503",
                                min: "0.003", max: "0.003", unit: secondsNote)
                       + family("kplm_user_records_data_put_bytes", "kplm_UserRecordsDataPut", count: "1",
                                sum: "512", min: "512", max: "512", unit: " In bytes."))
    }

    /// `promtool check metrics` on an exposition: exit code and output.
    private func promtool(_ text: String) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/promtool")
        process.arguments = ["check", "metrics"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testPromtoolFindsNothingToLint() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") else {
            throw XCTSkip("promtool not installed (Debian package 'prometheus')")
        }
        var families: [String: PrometheusFormat.Family] = [:]
        var snapshots = KPLMetrics.all.map {
            MetricSnapshot(name: $0.name, count: 3, sum: 4.5, min: 0.5, max: 3,
                           dimensions: dims(("stream", "orders"), ("shard", "shardId-000000000001")),
                           windowStart: 0, windowEnd: 1, timestampUnix: 0)
        }
        for name in ["HTTPRequests", "9 lives", "Weird name/ü#9", "app:queue", "Record", "RecordMin", "ErrorsTotal",
                     "q\"\\\n", "", "__reserved__", "CamelCase_And_snake", "ShardIDs"] {
            snapshots.append(MetricSnapshot(name: name, count: 1, sum: -1, min: -1, max: -1,
                                            dimensions: dims(("quantile", "a\"b"), ("error_code", "x\ny")),
                                            windowStart: 0, windowEnd: 1, timestampUnix: 0))
        }
        for s in snapshots {
            let (base, labels) = PrometheusFormat.seriesKey(s, prefix: "kplm_")
            families[base, default: PrometheusFormat.Family(rawName: "kplm_" + s.name, unit: s.unit)]
                .series[labels] = PrometheusFormat.series(of: s)
        }
        let text = String(decoding: PrometheusFormat.render(families, openMetrics: false), as: UTF8.self)
        let (status, output) = try promtool(text)
        XCTAssertEqual(status, 0, output)
        XCTAssertEqual(output.trimmingCharacters(in: .whitespacesAndNewlines), "", output)
        // The check does catch problems.
        XCTAssertEqual(try promtool(text.replacingOccurrences(of: "_seconds", with: "_ms")).0, 3)
    }

    /// SPEC §10: names that would share a family or a sample name once
    /// mapped (reserved suffixes, sanitised characters, unit suffixes, label
    /// names) still give one series per key, in an exposition promtool
    /// accepts in both formats, at every scrape.
    func testAdversarialNamesNeverMergeAndPassPromtool() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") else {
            throw XCTSkip("promtool not installed (Debian package 'prometheus')")
        }
        let sink = try PrometheusSink(configuration: PrometheusConfiguration(port: try freePort()))
        try sink.open()
        defer { sink.close() }
        let names = ["Foo", "FooCount", "FooSum", "FooTotal", "FooBucket", "FooCreated", "FooMin", "FooMax",
                     "FooMinValue", "foo_count", "Foo_Sum", "x-y", "x_y", "x.y", "X_Y", "BufferingTime",
                     "BufferingTimeSeconds", "UserRecordsDataPut", "UserRecordsDataPutBytes", "X", "x", "x_min"]
        var keys: [(name: String, dimensions: [MetricDimension])] = names.map { ($0, []) }
        keys += [("L", dims(("a-b", "v"))), ("L", dims(("a_b", "v"))), ("L", dims(("a:b", "v")))]
        func snapshots(_ round: Int) -> [MetricSnapshot] {
            // Reversed in the second round: the order of an export changes no name.
            let order = round == 0 ? Array(keys.indices) : keys.indices.reversed()
            return order.map { i in
                MetricSnapshot(name: keys[i].name, count: i + 1, sum: Double(i), min: 0, max: 1,
                               dimensions: keys[i].dimensions, windowStart: 0, windowEnd: 1, timestampUnix: 0)
            }
        }
        var previousSeries: [String]?
        for round in 0..<2 {
            try sink.export(snapshots(round))
            let text = try get(sink.configuration.port).body
            let om = try get(sink.configuration.port, accept: openMetricsAccept).body
            XCTAssertTrue(om.hasSuffix("# EOF\n"))
            for (format, body) in [("text", text), ("OpenMetrics", om)] {
                let (status, output) = try promtool(body)
                XCTAssertEqual(status, 0, "\(format): \(output)\n\(body)")
            }
            // OpenMetrics parsed strictly (promtool's backfill wants timestamps).
            let stamped = om.split(separator: "\n").map { $0.hasPrefix("#") ? $0 + "\n" : $0 + " 1700000000\n" }.joined()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kplm-prom-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            try Data(stamped.utf8).write(to: dir.appendingPathComponent("in.om"))
            let backfill = Process()
            backfill.executableURL = URL(fileURLWithPath: "/usr/bin/promtool")
            backfill.arguments = ["tsdb", "create-blocks-from", "openmetrics", dir.appendingPathComponent("in.om").path,
                                  dir.appendingPathComponent("blocks").path]
            backfill.standardOutput = FileHandle.nullDevice
            backfill.standardError = FileHandle.nullDevice
            try backfill.run()
            backfill.waitUntilExit()
            XCTAssertEqual(backfill.terminationStatus, 0, "OpenMetrics backfill")

            // Every key's count survives as a sample of its own, and no two
            // families share a name.
            let lines = text.split(separator: "\n").map(String.init)
            let counts = lines.filter { !$0.hasPrefix("#") && $0.split(separator: " ")[0].split(separator: "{")[0].hasSuffix("_count") }
            let helpNames = lines.filter { $0.hasPrefix("# HELP ") }.map { $0.split(separator: " ")[2] }
            XCTAssertEqual(Set(helpNames).count, helpNames.count, text)
            let sampleNames = lines.filter { !$0.hasPrefix("#") }.map { String($0.split(separator: " ")[0]) }
            XCTAssertEqual(Set(sampleNames).count, sampleNames.count, text)
            // Families whose samples are `_count`: only the summaries (one per key name).
            let summaries = Set(lines.filter { $0.hasPrefix("# TYPE ") && $0.hasSuffix(" summary") }
                .map { String($0.split(separator: " ")[2]) })
            let keyCounts = counts.filter { summaries.contains(String($0.split(separator: " ")[0].split(separator: "{")[0].dropLast(6))) }
                .map { Int($0.split(separator: " ").last!)! }
            XCTAssertEqual(keyCounts.sorted(), keys.indices.map { ($0 + 1) * (round + 1) }, text)
            XCTAssertEqual(summaries.count, Set(keys.map(\.name)).count, text)
            // The same names at every scrape.
            if let previousSeries { XCTAssertEqual(previousSeries, sampleNames) }
            previousSeries = sampleNames
        }
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
