import Foundation
import Glibc
import XCTest
import KPLMTestSupport
@testable import KPLM
@testable import KPLMSinks

// MARK: - Helpers

private func snap(_ name: String, count: Int = 2, sum: Double = 3, min: Double = 1, max: Double = 2,
                  dimensions: [MetricDimension] = [], at timestamp: Double = 1_700_000_000.123,
                  namespace: String = "") -> MetricSnapshot {
    MetricSnapshot(name: name, count: count, sum: sum, min: min, max: max, dimensions: dimensions,
                   windowStart: 0, windowEnd: 1, timestampUnix: timestamp, namespace: namespace)
}

/// One parsed EMF event.
private struct Event {
    let raw: String
    let object: [String: Any]

    init(_ line: String, file: StaticString = #filePath, line number: UInt = #line) throws {
        raw = line
        let parsed = try JSONSerialization.jsonObject(with: Data(line.utf8))
        object = try XCTUnwrap(parsed as? [String: Any], "not an object: \(line)", file: file, line: number)
    }

    var aws: [String: Any] { object["_aws"] as? [String: Any] ?? [:] }
    var directive: [String: Any] {
        (aws["CloudWatchMetrics"] as? [[String: Any]])?.first ?? [:]
    }
    var namespace: String? { directive["Namespace"] as? String }
    var dimensionSets: [[String]] { directive["Dimensions"] as? [[String]] ?? [] }
    /// Metric name → unit, in directive order.
    var metrics: [(name: String, unit: String)] {
        (directive["Metrics"] as? [[String: Any]] ?? []).map { ($0["Name"] as? String ?? "?", $0["Unit"] as? String ?? "?") }
    }
    var timestamp: Any? { aws["Timestamp"] }
    func number(_ key: String) -> Double? { (object[key] as? NSNumber)?.doubleValue }

    /// Checks the EMF rules every event must follow.
    func checkRules(file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(aws.count, 2, "\(raw)", file: file, line: line)
        XCTAssertEqual((aws["CloudWatchMetrics"] as? [Any])?.count, 1, file: file, line: line)
        // An integer number of milliseconds: written without a point or exponent.
        XCTAssertNotNil(raw.range(of: #"^\{"_aws":\{"Timestamp":[0-9]+,"#, options: .regularExpression),
                        "timestamp is not an integer: \(raw)", file: file, line: line)
        XCTAssertFalse(namespace?.isEmpty ?? true, file: file, line: line)
        XCTAssertEqual(dimensionSets.count, 1, file: file, line: line)
        for set in dimensionSets {
            XCTAssertLessThanOrEqual(set.count, 30, file: file, line: line)
            for d in set { XCTAssertTrue(object[d] is String, "dimension \(d) is not a string member", file: file, line: line) }
        }
        XCTAssertLessThanOrEqual(metrics.count, 100, file: file, line: line)
        XCTAssertEqual(Set(metrics.map(\.name)).count, metrics.count, "duplicate metric definitions", file: file, line: line)
        for m in metrics {
            switch object[m.name] {
            case let n as NSNumber: XCTAssertTrue(n.doubleValue.isFinite, file: file, line: line)
            case let a as [NSNumber]:
                XCTAssertLessThanOrEqual(a.count, 100, file: file, line: line)
                XCTAssertGreaterThan(a.count, 1, file: file, line: line)
            default: XCTFail("metric \(m.name) has no numeric member in \(raw)", file: file, line: line)
            }
        }
    }
}

private func events(_ snapshots: [MetricSnapshot], namespace: String? = nil,
                    file: StaticString = #filePath, line: UInt = #line) throws -> (events: [Event], dropped: [EMFDropReason: Int]) {
    let out = EMFFormat.events(snapshots, namespace: namespace)
    let parsed = try out.lines.map { try Event($0, file: file, line: line) }
    for e in parsed { e.checkRules(file: file, line: line) }
    return (parsed, out.dropped)
}

/// A CloudWatch agent stand-in on 127.0.0.1: a TCP listener or a UDP socket.
private final class TestAgent {
    let fd: Int32
    let port: UInt16
    private var clients: [Int32] = []
    private var pending: [UInt8] = []

    init(udp: Bool = false, backlog: Int32 = 16) throws {
        let fd = socket(AF_INET, Int32((udp ? SOCK_DGRAM : SOCK_STREAM).rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, udp || listen(fd, backlog) == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        port = UInt16(bigEndian: addr.sin_port)
    }

    deinit {
        for c in clients { Glibc.close(c) }
        Glibc.close(fd)
    }

    /// Accepts a pending connection, waiting up to `timeout` seconds.
    @discardableResult
    func accept(timeout: Double = 5) -> Int32? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(timeout * 1000)) > 0 else { return nil }
        let c = Glibc.accept(fd, nil, nil)
        guard c >= 0 else { return nil }
        clients.append(c)
        return c
    }

    /// Closes every accepted connection (an agent restart, as the sink sees it).
    func dropClients() {
        for c in clients { Glibc.close(c) }
        clients.removeAll()
    }

    /// Reads until `count` newline-terminated lines arrived on any accepted
    /// connection (accepting new ones), or `timeout` seconds passed.
    func lines(_ count: Int, timeout: Double = 5) -> [String] {
        var out: [String] = []
        let deadline = Date().addingTimeInterval(timeout)
        while out.count < count, Date() < deadline {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
                + clients.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), 50) > 0 else { continue }
            if fds[0].revents != 0 { accept(timeout: 0) }
            for p in fds.dropFirst() where p.revents != 0 {
                var buffer = [UInt8](repeating: 0, count: 65536)
                let n = read(p.fd, &buffer, buffer.count)
                if n > 0 { pending += buffer[..<n] }
            }
            while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                out.append(String(decoding: pending[..<nl], as: UTF8.self))
                pending.removeSubrange(...nl)
            }
        }
        return out
    }

    /// Receives up to `count` datagrams.
    func datagrams(_ count: Int, timeout: Double = 5) -> [String] {
        var out: [String] = []
        let deadline = Date().addingTimeInterval(timeout)
        while out.count < count, Date() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 50) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 65536)
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 { out.append(String(decoding: buffer[..<n], as: UTF8.self)) }
        }
        return out
    }
}

/// A non-blocking connection to `port` (to fill a listener's queue).
private func connectNonBlocking(_ port: UInt16) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = port.bigEndian
    _ = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return fd
}

// MARK: - Tests

final class EMFSinkTests: XCTestCase {
    // MARK: Encoding

    func testEventStructureUnitsAndTheFourMetrics() throws {
        let s = snap(KPLMetrics.userRecordsDataPut, count: 4, sum: 1000, min: 100, max: 400,
                     dimensions: dims(("stream", "orders"), ("shard", "shardId-000")), at: 1_700_000_000.1236)
        let (out, dropped) = try events([s])
        XCTAssertEqual(dropped, [:])
        let e = try requireCount(out, 1)[0]
        XCTAssertEqual(e.raw.first, "{")
        XCTAssertFalse(e.raw.contains("\n"))
        XCTAssertEqual((e.timestamp as? NSNumber)?.int64Value, 1_700_000_000_124)
        XCTAssertEqual(e.namespace, "KinesisProducerLibrary")
        XCTAssertEqual(e.dimensionSets, [["StreamName", "ShardId"]])
        XCTAssertEqual(e.object["StreamName"] as? String, "orders")
        XCTAssertEqual(e.object["ShardId"] as? String, "shardId-000")
        XCTAssertNil(e.object["stream"])
        XCTAssertEqual(e.metrics.map(\.name), ["UserRecordsDataPut", "UserRecordsDataPut.Count",
                                               "UserRecordsDataPut.Min", "UserRecordsDataPut.Max"])
        XCTAssertEqual(e.metrics.map(\.unit), ["Bytes", "Count", "Bytes", "Bytes"])
        XCTAssertEqual(e.number("UserRecordsDataPut"), 1000)
        XCTAssertEqual(e.number("UserRecordsDataPut.Count"), 4)
        XCTAssertEqual(e.number("UserRecordsDataPut.Min"), 100)
        XCTAssertEqual(e.number("UserRecordsDataPut.Max"), 400)
        // The count is an integer, the others round-trip doubles.
        XCTAssertTrue(e.raw.contains(#""UserRecordsDataPut.Count":4,"#), e.raw)
        XCTAssertTrue(e.raw.contains(#""UserRecordsDataPut":1000.0,"#), e.raw)
        XCTAssertEqual(e.object.count, 1 + 2 + 4)
    }

    func testUnknownMetricHasUnitNoneAndNoDimensionsIsTheEmptySet() throws {
        let e = try requireCount(events([snap("Custom", sum: 0.1)]).events, 1)[0]
        XCTAssertEqual(e.dimensionSets, [[]])
        XCTAssertTrue(e.raw.contains(#""Dimensions":[[]]"#))
        XCTAssertEqual(e.metrics.map(\.unit), ["None", "Count", "None", "None"])
        XCTAssertEqual(e.number("Custom"), 0.1)
    }

    func testGroupingBySameDimensionSetAndTimestamp() throws {
        let a = dims(("stream", "a"))
        let input = [
            snap("M1", dimensions: a), snap("M2", dimensions: a),        // one event
            snap("M3", dimensions: dims(("stream", "b"))),                // other value
            snap("M4", dimensions: a, at: 1_700_000_005),                 // other timestamp
            snap("M5", dimensions: dims(("stream", "a"), ("shard", "s"))), // other set
            snap("M6", dimensions: a),                                    // back to the first
        ]
        let out = try events(input).events
        try requireCount(out, 4)
        XCTAssertEqual(out[0].metrics.map(\.name).filter { !$0.contains(".") }, ["M1", "M2", "M6"])
        XCTAssertEqual(out[1].metrics.first?.name, "M3")
        XCTAssertEqual(out[1].object["StreamName"] as? String, "b")
        XCTAssertEqual(out[2].metrics.first?.name, "M4")
        XCTAssertEqual((out[2].timestamp as? NSNumber)?.int64Value, 1_700_000_005_000)
        XCTAssertEqual(out[3].dimensionSets, [["StreamName", "ShardId"]])
    }

    func testDimensionOrderDoesNotSplitAGroup() throws {
        let out = try events([snap("A", dimensions: dims(("x", "1"), ("y", "2"))),
                              snap("B", dimensions: dims(("y", "2"), ("x", "1")))]).events
        XCTAssertEqual(try requireCount(out, 1)[0].metrics.count, 8)
    }

    func testHundredMetricLimitSplitsEvents() throws {
        let input = (0..<60).map { snap(String(format: "Metric%02d", $0), dimensions: dims(("stream", "s"))) }
        let out = try events(input).events
        // 4 metrics per snapshot: 25 snapshots per event.
        try requireCount(out, 3)
        XCTAssertEqual(out.map(\.metrics.count), [100, 100, 40])
        let names = out.flatMap { $0.metrics.map(\.name) }
        XCTAssertEqual(Set(names).count, 240)
        XCTAssertTrue(out.allSatisfy { $0.object["StreamName"] as? String == "s" })
    }

    func testHundredValueLimitForRepeatedNames() throws {
        let input = (0..<150).map { snap("Same", count: $0 + 1, sum: Double($0)) }
        let out = try events(input).events
        try requireCount(out, 2)
        let first = try XCTUnwrap(out[0].object["Same.Count"] as? [NSNumber])
        let second = try XCTUnwrap(out[1].object["Same.Count"] as? [NSNumber])
        XCTAssertEqual(first.count, 100)
        XCTAssertEqual(second.count, 50)
        XCTAssertEqual((first + second).map(\.intValue), Array(1...150))
        XCTAssertEqual(out[0].metrics.count, 4)
    }

    func testThirtyDimensionLimit() throws {
        let thirty = (0..<30).map { MetricDimension("d\($0)", "v\($0)") }
        let (ok, none) = try events([snap("Ok", dimensions: thirty)])
        XCTAssertEqual(none, [:])
        XCTAssertEqual(try requireCount(ok, 1)[0].dimensionSets.first?.count, 30)
        let (out, dropped) = try events([snap("TooMany", dimensions: thirty + [MetricDimension("d30", "x")]),
                                         snap("Fine")])
        XCTAssertEqual(dropped, [.tooManyDimensions: 1])
        XCTAssertEqual(try requireCount(out, 1)[0].metrics.first?.name, "Fine")
    }

    func testEmptyCountAndNonFiniteValuesAreNeverEmitted() throws {
        let (out, dropped) = try events([
            snap("Zero", count: 0, sum: 0, min: 0, max: 0),
            snap("NaN", sum: .nan), snap("Inf", max: .infinity), snap("NegInf", min: -.infinity),
            snap("BadTime", at: .nan),
            snap("Good"),
        ])
        XCTAssertEqual(dropped, [.emptyCount: 1, .valueOutOfRange: 3, .invalidTimestamp: 1])
        let e = try requireCount(out, 1)[0]
        XCTAssertEqual(e.metrics.count, 4)
        XCTAssertFalse(e.raw.contains("null"))
        XCTAssertFalse(e.raw.contains("nan"))
    }

    func testInvalidDimensionsAndNames() throws {
        let (out, dropped) = try events([
            snap("Dup", dimensions: dims(("stream", "a"), ("StreamName", "b"))),
            snap("NonASCII", dimensions: dims(("stream", "caf\u{E9}"))),
            snap("Clash", dimensions: dims(("Clash.Max", "x"))),
            snap("_aws"), snap(""),
            snap(String(repeating: "n", count: 250)),
            snap("BlankDimension", dimensions: dims(("stream", " "))),
        ])
        XCTAssertEqual(dropped, [.invalidDimension: 3, .invalidName: 3])
        let e = try requireCount(out, 1)[0]
        // Left out, the blank dimension renames the key (it is not the key
        // without it): its name, dimension names and blank values are hashed.
        let hash = StableHash.hex8(StableHash.identity("BlankDimension", dims(("stream", "- "))))
        XCTAssertEqual(e.metrics.first?.name, "BlankDimension_" + hash)
        XCTAssertEqual(e.dimensionSets, [[]])
    }

    /// SPEC §10: across all events of one export, no (namespace,
    /// dimensions, metric name) carries values of two keys, whatever their
    /// names ("Foo.Min" next to "Foo"), dimension names ("stream" next to
    /// "StreamName"), blank dimensions or timestamps; every count survives;
    /// and each key's metric names are those it has when exported alone
    /// (the same at every flush, whichever keys are present).
    func testAdversarialKeysNeverShareAMetric() throws {
        let s = dims(("stream", "x"))
        var input: [MetricSnapshot] = []
        func add(_ name: String, _ d: [MetricDimension] = [], at t: Double = 1_700_000_000, ns: String = "") {
            input.append(snap(name, count: input.count + 1, sum: Double(input.count), min: 0, max: 1,
                              dimensions: d, at: t, namespace: ns))
        }
        add("Foo"); add("Foo.Min"); add("Foo.Count", at: 1_700_000_060); add("Foo.Max", at: 1_700_000_060)
        add("Foo.Min.Count"); add("Foo.Min_" + StableHash.hex8("Foo.Min")); add("Bar", s)
        add("Bar", dims(("StreamName", "x"))); add("Bar", dims(("StreamName", "x"), ("shard", " ")))
        add("Bar", dims(("StreamName", "x"), ("shard", "  "))); add("Bar", dims(("stream", "x"), ("shard", " ")))
        add("Bar_" + StableHash.hex8(StableHash.identity("Bar", dims(("StreamName", ""))))); add("Bar", dims(("StreamName", "y")))
        add("Baz", ns: "A"); add("Baz", ns: "B")
        /// Metric name of each value of the export, by the key's count.
        func names(_ out: [Event]) -> [Int: Set<String>] {
            var byCount: [Int: Set<String>] = [:]
            for e in out {
                for m in e.metrics where m.unit == "Count" {
                    let values = (e.object[m.name] as? [NSNumber]) ?? [(e.object[m.name] as? NSNumber)].compactMap { $0 }
                    for v in values { byCount[v.intValue, default: []].insert(String(m.name.dropLast(".Count".count))) }
                }
            }
            return byCount
        }
        for order in [input, input.reversed()] {
            for namespace in [nil, "One"] as [String?] {
                // A sink's namespace replaces the export's one namespace.
                let keys = namespace == nil ? order : order.filter { $0.namespace.isEmpty }
                let (out, dropped) = try events(keys, namespace: namespace)
                XCTAssertEqual(dropped, [:])
                // Every metric value of every event, by (namespace, dimensions, name).
                var series: [String: [Double]] = [:]
                var countValues: [Int] = []
                for e in out {
                    let dimensionText = (e.dimensionSets.first ?? []).sorted()
                        .map { "\($0)=\(e.object[$0] as? String ?? "?")" }.joined(separator: ",")
                    for m in e.metrics {
                        let values = (e.object[m.name] as? [NSNumber]) ?? [(e.object[m.name] as? NSNumber)].compactMap { $0 }
                        series["\(e.namespace ?? "")|\(dimensionText)|\(m.name)", default: []] += values.map(\.doubleValue)
                        if m.unit == "Count" { countValues += values.map(\.intValue) }
                    }
                }
                XCTAssertEqual(series.count, 4 * keys.count, "\(series.keys.sorted())")
                XCTAssertTrue(series.values.allSatisfy { $0.count == 1 }, "\(series.filter { $0.value.count > 1 })")
                XCTAssertEqual(countValues.sorted(), keys.map(\.count).sorted())
                // Each key's name is the one it has alone: no other key decides it.
                let together = names(out)
                for k in keys {
                    let alone = names(try events([k], namespace: namespace).0)
                    XCTAssertEqual(together[k.count], alone[k.count], "\(k.name) \(k.dimensions)")
                }
            }
        }
    }

    func testEscaping() throws {
        let name = "we\"ird\\name\n\t\u{1}é✓"
        let value = #"quote " and back\slash"#
        let ns = "Name\"space"
        let e = try requireCount(events([snap(name, dimensions: dims(("di\"m", value)))], namespace: ns).events, 1)[0]
        XCTAssertEqual(e.namespace, ns)
        XCTAssertEqual(e.metrics.first?.name, name)
        XCTAssertEqual(e.dimensionSets, [["di\"m"]])
        XCTAssertEqual(e.object["di\"m"] as? String, value)
        XCTAssertEqual(e.number(name), 3)
        XCTAssertTrue(e.raw.contains(#"we\"ird\\name\n\t\u0001é✓"#), e.raw)
    }

    func testNamespacePrecedence() throws {
        let s1 = snap("A", namespace: "FromManager")
        let s2 = snap("B")
        let byConfig = try events([s1, s2], namespace: "Configured").events
        XCTAssertEqual(byConfig.map(\.namespace), ["Configured"])
        let bySnapshot = try events([s1, s2]).events
        XCTAssertEqual(bySnapshot.map(\.namespace), ["FromManager", "KinesisProducerLibrary"])
        let (none, dropped) = try events([snap("C", namespace: "AWS/Kinesis")])
        XCTAssertTrue(none.isEmpty)
        XCTAssertEqual(dropped, [.invalidNamespace: 1])
    }

    func testOversizedEventsAreSplitThenDropped() throws {
        let big = String(repeating: "v", count: 1000)
        let thirty = (0..<30).map { MetricDimension("dimension\($0)", big) }
        let input = (0..<3).map { snap("M\($0)", dimensions: thirty) }
        let whole = EMFFormat.events(input)
        XCTAssertEqual(whole.lines.count, 1)
        let size = whole.lines[0].utf8.count
        let split = EMFFormat.events(input, maxEventBytes: size - 1)
        XCTAssertEqual(split.lines.count, 2)
        XCTAssertTrue(split.lines.allSatisfy { $0.utf8.count < size })
        let tiny = EMFFormat.events(input, maxEventBytes: 1000)
        XCTAssertEqual(tiny.lines, [])
        XCTAssertEqual(tiny.dropped, [.eventTooLarge: 3])
    }

    // MARK: Configuration

    func testConfigurationValidation() {
        assertThrows(.invalidArgument) { _ = try EMFSink(EMFSinkConfiguration(destination: .file(path: ""))) }
        assertThrows(.invalidArgument) { _ = try EMFSink(EMFSinkConfiguration(destination: .tcp(host: "127.0.0.1", port: 0))) }
        assertThrows(.invalidArgument) { _ = try EMFSink(EMFSinkConfiguration(destination: .udp(host: "bad host!", port: 1))) }
        assertThrows(.invalidArgument) { _ = try EMFSink(EMFSinkConfiguration(destination: .tcp(host: "", port: 1))) }
        assertThrows(.invalidArgument) { _ = try EMFSink(EMFSinkConfiguration(namespace: "AWS/Kinesis")) }
        assertThrows(.invalidArgument) { _ = try EMFSink(EMFSinkConfiguration(namespace: "")) }
        assertThrows(.invalidArgument) { _ = try EMFSink(EMFSinkConfiguration(timeoutMs: 0)) }
        assertThrows(.invalidArgument) { _ = try EMFSink(EMFSinkConfiguration(timeoutMs: .nan)) }
        XCTAssertNoThrow(try EMFSink(EMFSinkConfiguration(destination: .tcp(host: "::1", port: 25888))))
        XCTAssertNoThrow(try EMFSink(EMFSinkConfiguration(destination: .udp(host: "cloudwatch-agent.local", port: 25888))))
        XCTAssertNoThrow(try EMFSink())
    }

    // MARK: Destinations

    func testStdoutDestination() throws {
        var pipeFDs: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&pipeFDs), 0)
        let saved = dup(STDOUT_FILENO)
        fflush(nil)
        dup2(pipeFDs[1], STDOUT_FILENO)
        let sink = try EMFSink()
        var failure: Error?
        do {
            try sink.open()
            try sink.export([snap("ToStdout", dimensions: dims(("stream", "s")))])
            sink.close()
        } catch { failure = error }
        dup2(saved, STDOUT_FILENO)
        Glibc.close(saved)
        Glibc.close(pipeFDs[1])
        XCTAssertNil(failure)
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = read(pipeFDs[0], &buffer, buffer.count)
        Glibc.close(pipeFDs[0])
        let text = String(decoding: buffer[..<max(n, 0)], as: UTF8.self)
        XCTAssertTrue(text.hasSuffix("\n"))
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines, EMFFormat.events([snap("ToStdout", dimensions: dims(("stream", "s")))]).lines)
        let stdoutAlive = fcntl(STDOUT_FILENO, F_GETFD)
        XCTAssertGreaterThanOrEqual(stdoutAlive, 0, "close() must not close standard output")
    }

    func testFileDestinationAppendsThroughAManager() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kplm-emf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("metrics.log").path
        try "existing line\n".write(toFile: path, atomically: false, encoding: .utf8)

        let clock = TestClock()
        let sink = try EMFSink(EMFSinkConfiguration(destination: .file(path: path), namespace: "Tests"))
        let manager = try detailed(clock, sink: sink)
        try manager.start()
        try manager.put(KPLMetrics.userRecordsPut, 5, stream: "orders")
        try manager.put(KPLMetrics.userRecordsPut, 7, stream: "orders")
        try manager.put(KPLMetrics.allErrors, 1, stream: "orders")
        clock.advance(1)
        try manager.flush()
        try manager.put(KPLMetrics.bufferingTime, 12.5)
        clock.advance(1)
        try manager.close()

        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        try requireCount(lines, 3)
        XCTAssertEqual(lines[0], "existing line")
        let first = try Event(lines[1])
        first.checkRules()
        XCTAssertEqual(first.namespace, "Tests")
        XCTAssertEqual(first.dimensionSets, [["StreamName"]])
        XCTAssertEqual(first.number("UserRecordsPut"), 12)
        XCTAssertEqual(first.number("UserRecordsPut.Count"), 2)
        XCTAssertEqual(first.number("UserRecordsPut.Min"), 5)
        XCTAssertEqual(first.number("UserRecordsPut.Max"), 7)
        XCTAssertEqual(first.number("AllErrors.Count"), 1)
        XCTAssertEqual(first.metrics.count, 8)
        let ts = try XCTUnwrap((first.timestamp as? NSNumber)?.doubleValue)
        XCTAssertEqual(ts / 1000, Date().timeIntervalSince1970, accuracy: 60)
        let second = try Event(lines[2])
        XCTAssertEqual(second.dimensionSets, [[]])
        XCTAssertEqual(second.metrics.first?.unit, "Milliseconds")
        XCTAssertEqual(second.number("BufferingTime"), 12.5)
    }

    func testFileThatCannotBeOpenedFailsOpen() throws {
        let sink = try EMFSink(EMFSinkConfiguration(destination: .file(path: "/nonexistent-dir-kplm/x.log")))
        assertThrows(.sinkFailed) { try sink.open() }
        assertThrows(.sinkFailed) { try sink.export([snap("A")]) }
        XCTAssertNoThrow(try sink.export([snap("Empty", count: 0)]), "nothing to write: no failure")
        XCTAssertEqual(sink.dropped, [.emptyCount: 1])
    }

    func testTCPDestinationNewlineDelimited() throws {
        let agent = try TestAgent()
        let sink = try EMFSink(EMFSinkConfiguration(destination: .tcp(host: "127.0.0.1", port: agent.port)))
        try sink.open()
        let input = (0..<30).map { snap("T\($0)") } + [snap("Other", dimensions: dims(("stream", "x")))]
        try sink.export(input)
        let expected = EMFFormat.events(input).lines
        XCTAssertEqual(expected.count, 3)
        XCTAssertEqual(agent.lines(3), expected)
        // Same connection for the next export.
        try sink.export([snap("Again")])
        XCTAssertEqual(agent.lines(1).map { try? Event($0).metrics.first?.name }, ["Again"])
        sink.close()
    }

    func testTCPReconnectsAfterTheAgentClosedTheConnection() throws {
        let agent = try TestAgent()
        let sink = try EMFSink(EMFSinkConfiguration(destination: .tcp(host: "127.0.0.1", port: agent.port)))
        try sink.export([snap("First")])
        XCTAssertEqual(agent.lines(1).count, 1)
        agent.dropClients()  // the agent restarts
        Thread.sleep(forTimeInterval: 0.05)
        try sink.export([snap("Second")])
        let got = agent.lines(1)
        XCTAssertEqual(got.map { try? Event($0).metrics.first?.name }, ["Second"])
    }

    func testUDPDestinationOneEventPerDatagram() throws {
        let agent = try TestAgent(udp: true)
        let sink = try EMFSink(EMFSinkConfiguration(destination: .udp(host: "127.0.0.1", port: agent.port)))
        try sink.open()
        let input = (0..<26).map { snap("U\($0)") }
        try sink.export(input)
        let got = agent.datagrams(2)
        XCTAssertEqual(got, EMFFormat.events(input).lines)
        XCTAssertTrue(got.allSatisfy { !$0.hasSuffix("\n") })
        for d in got { try Event(d).checkRules() }
        sink.close()
    }

    func testRefusedTCPConnectionFailsTheFlushQuickly() throws {
        // A port that nobody listens on.
        let port = try TestAgent().port
        let clock = TestClock()
        let sink = try EMFSink(EMFSinkConfiguration(destination: .tcp(host: "127.0.0.1", port: port), timeoutMs: 500))
        let manager = try detailed(clock, sink: sink)
        try manager.start()
        try manager.put("Refused", 1)
        clock.advance(1)
        let started = Date()
        assertThrows(.sinkFailed) { try manager.flush() }
        XCTAssertLessThan(Date().timeIntervalSince(started), 1)
        _ = try? manager.close()
    }

    /// A dead agent (its accept queue full, so connects hang): the flush
    /// fails within the timeout; once the agent is back, the data is exported.
    func testDeadTCPAgentTimesOutThenDataIsReExported() throws {
        let agent = try TestAgent(backlog: 0)
        // Fill the accept queue: the listener answers no further SYN.
        var fillers: [Int32] = []
        for _ in 0..<4 { fillers.append(connectNonBlocking(agent.port)) }
        defer { for f in fillers { Glibc.close(f) } }
        Thread.sleep(forTimeInterval: 0.1)

        let clock = TestClock()
        let sink = try EMFSink(EMFSinkConfiguration(destination: .tcp(host: "127.0.0.1", port: agent.port),
                                                    timeoutMs: 300))
        let manager = try detailed(clock, sink: sink)
        try manager.start()
        try manager.put("Kept", 2, stream: "s")
        try manager.put("Kept", 4, stream: "s")
        clock.advance(1)
        let started = Date()
        assertThrows(.sinkFailed) { try manager.flush() }
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(elapsed, 0.25)
        XCTAssertLessThan(elapsed, 1.5)

        // The agent comes back: it accepts what is queued, then the sink.
        for f in fillers { Glibc.close(f) }
        fillers.removeAll()
        while agent.accept(timeout: 0.1) != nil {}
        agent.dropClients()
        try manager.put("Kept", 6, stream: "s")
        clock.advance(1)
        try manager.flush()
        let lines = agent.lines(1)
        let e = try Event(try requireCount(lines, 1)[0])
        e.checkRules()
        XCTAssertEqual(e.number("Kept.Count"), 3)
        XCTAssertEqual(e.number("Kept"), 12)
        XCTAssertEqual(e.number("Kept.Min"), 2)
        XCTAssertEqual(e.number("Kept.Max"), 6)
        try manager.close()
    }
}
