import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM
@testable import KPLMSinks

/// A UDP socket bound to 127.0.0.1 on a free port, standing in for the agent.
private final class UDPReceiver {
    let fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Bool in
                bind(fd, p, length) == 0 && getsockname(fd, p, &length) == 0
            }
        }
        guard bound else { close(fd); throw POSIXError(.EADDRINUSE) }
        self.fd = fd
        port = UInt16(bigEndian: address.sin_port)
        var big = Int32(4 << 20)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close(fd) }

    /// Every datagram that arrives until none has for `quiet` seconds.
    func receiveAll(quiet: Double = 0.3) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 70_000)
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(quiet * 1000)) == 1 else { return out }
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n >= 0 else { return out }
            out.append(Array(buffer[0..<n]))
        }
    }
}

/// One parsed DogStatsD line.
private struct Line: Hashable, CustomStringConvertible {
    var name: String
    var value: String
    var type: String
    var tags: [String]
    var description: String { "\(name):\(value)|\(type)\(tags.isEmpty ? "" : "|#" + tags.joined(separator: ","))" }
}

/// The strict grammar of a line: name, plain decimal value, c or g, tags.
private let linePattern = try! NSRegularExpression(pattern:
    #"^([A-Za-z][A-Za-z0-9_.]{0,199}):(-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?)\|(c|g)"#
    + #"(?:\|#([A-Za-z][A-Za-z0-9_:./-]{0,199}(?:,[A-Za-z][A-Za-z0-9_:./-]{0,199})*))?$"#)

/// Parses every line of every datagram strictly (a failure for any other text).
private func parse(_ datagrams: [[UInt8]], file: StaticString = #filePath, line: UInt = #line) -> [Line] {
    var lines: [Line] = []
    for datagram in datagrams {
        guard let text = String(validating: datagram, as: UTF8.self) else {
            XCTFail("datagram is not UTF-8", file: file, line: line)
            continue
        }
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            let range = NSRange(raw.startIndex..., in: raw)
            guard let m = linePattern.firstMatch(in: raw, range: range) else {
                XCTFail("malformed DogStatsD line: \(raw.debugDescription)", file: file, line: line)
                continue
            }
            func group(_ i: Int) -> String? {
                Range(m.range(at: i), in: raw).map { String(raw[$0]) }
            }
            lines.append(Line(name: group(1)!, value: group(2)!, type: group(3)!,
                              tags: group(4).map { $0.split(separator: ",").map(String.init) } ?? []))
        }
    }
    return lines
}

/// The four lines expected for one snapshot.
private func expected(_ base: String, count: String, sum: String, min: String, max: String,
                      tags: [String]) -> [Line] {
    [Line(name: base + ".count", value: count, type: "c", tags: tags),
     Line(name: base + ".sum", value: sum, type: "c", tags: tags),
     Line(name: base + ".min", value: min, type: "g", tags: tags),
     Line(name: base + ".max", value: max, type: "g", tags: tags)]
}

final class DogStatsDSinkTests: XCTestCase {
    private func makeSink(_ receiver: UDPReceiver, prefix: String? = nil, tags: [String] = [],
                          limit: Int = 1432) throws -> DogStatsDSink {
        try DogStatsDSink(configuration: DogStatsDConfiguration(host: "127.0.0.1", port: receiver.port,
                                                                prefix: prefix, tags: tags,
                                                                maxDatagramBytes: limit))
    }

    func testLinesCarryExactValuesAndTags() throws {
        let receiver = try UDPReceiver()
        let sink = try makeSink(receiver, prefix: "kpl", tags: ["env:Prod", "team:ingest"])
        let clock = TestClock(100)
        let m = try detailed(clock, sink: sink)
        try m.start()
        XCTAssertTrue(sink.isOpen)
        try m.put("UserRecordsPut", 2, stream: "orders", shardId: "shardId-000000000001")
        try m.put("UserRecordsPut", 3.5, stream: "orders", shardId: "shardId-000000000001")
        try m.put("AllErrors", 1, stream: "orders", errorCode: "Throttled")
        try m.put("BufferingTime", 0.1)
        try m.put("BufferingTime", 0.2)
        try m.put("Tiny", 1e-7)
        try m.put("Tiny", -2.5e21)
        clock.advance(1)
        try m.flush()

        let lines = parse(receiver.receiveAll())
        let env = ["env:Prod", "team:ingest"]
        let want = expected("kpl.AllErrors", count: "1", sum: "1", min: "1", max: "1",
                            tags: env + ["stream:orders", "error_code:Throttled"])
            + expected("kpl.BufferingTime", count: "2", sum: "0.30000000000000004", min: "0.1", max: "0.2",
                       tags: env)
            + expected("kpl.Tiny", count: "2", sum: "-2500000000000000000000", min: "-2500000000000000000000",
                       max: "0.0000001", tags: env)
            + expected("kpl.UserRecordsPut", count: "2", sum: "5.5", min: "2", max: "3.5",
                       tags: env + ["stream:orders", "shard:shardId-000000000001"])
        XCTAssertEqual(lines, want)
        XCTAssertEqual(sink.droppedLineCount, 0)
        XCTAssertEqual(sink.sentDatagramCount, 1)

        try m.close()
        XCTAssertFalse(sink.isOpen)
    }

    func testNamesAndTagsAreSanitized() throws {
        let receiver = try UDPReceiver()
        let sink = try makeSink(receiver, prefix: "my app.", tags: ["1st Tag", "Région:EU|west"])
        let m = try detailed(TestClock(100), sink: sink)
        try m.start()
        let longName = String(repeating: "n", count: 255)
        try m.put("Weird name/ü#9", 1, stream: "Orders Stream|#x,y", errorCode: "Ça:va")
        try m.put(longName, 4, stream: String(repeating: "S", count: 300))
        try m.flush()
        let lines = parse(receiver.receiveAll())

        let constant = ["t_1st_Tag", "R_gion:EU_west"]
        // Changed or cut names and tags end with the hash of the whole.
        let longBase = String(("my_app." + longName).prefix(185)) + "_" + StableHash.hex8("my app." + longName)
        let longTag = String(("stream:" + String(repeating: "S", count: 300)).prefix(191)) + "_"
            + StableHash.hex8("stream:" + String(repeating: "S", count: 300))
        let want = expected("my_app.Weird_name___9_" + StableHash.hex8("my app.Weird name/ü#9"),
                            count: "1", sum: "1", min: "1", max: "1",
                            tags: constant + ["stream:Orders_Stream__x_y_" + StableHash.hex8("stream:Orders Stream|#x,y"),
                                              "error_code:_a:va_" + StableHash.hex8("error_code:Ça:va")])
            + expected(longBase, count: "1", sum: "4", min: "4", max: "4", tags: constant + [longTag])
        XCTAssertEqual(Set(lines), Set(want))
        XCTAssertEqual(lines.count, want.count)
        XCTAssertEqual(lines.map(\.name.count).max(), 200)
        try m.close()

        XCTAssertEqual(DogStatsDFormat.metricName("9lives"), "m_9lives")
        XCTAssertEqual(DogStatsDFormat.metricName("_x"), "m__x")
        XCTAssertEqual(DogStatsDFormat.metricName(""), "m_")
        XCTAssertEqual(DogStatsDFormat.tag("Env:Prod/EU-1.a_b"), "Env:Prod/EU-1.a_b")   // case kept
        XCTAssertEqual(DogStatsDFormat.tag(":x"), "t_:x")
        XCTAssertEqual(DogStatsDFormat.tag("a\nb,c|d@e#f"), "a_b_c_d_e_f")
    }

    /// SPEC §10: sanitising, lower-casing and truncation never send two keys
    /// of one export under one name and tag set; long tag values that differ
    /// only at the end stay distinct tags; every count survives.
    func testAdversarialKeysNeverShareASeries() throws {
        let receiver = try UDPReceiver()
        let sink = try makeSink(receiver, limit: 65507)
        try sink.open()
        defer { sink.close() }
        let long = String(repeating: "s", count: 250)
        let longName = String(repeating: "n", count: 300)
        var keys: [(String, [MetricDimension])] = [
            ("a-b", []), ("a_b", []), ("a b", []), ("9x", []), ("m_9x", []),
            (longName + "1", []), (longName + "2", []),
            ("L", dims(("stream", long + "1"))), ("L", dims(("stream", long + "2"))), ("L", dims(("stream", long + "3"))),
            ("T", dims(("stream", "Orders"))), ("T", dims(("stream", "orders"))), ("T", dims(("Stream", "orders"))),
            ("C", dims(("a:b", "c"))), ("C", dims(("a", "b:c"))),
        ]
        keys += [("Tags", dims(("x", "1"), ("y", "2"))), ("h_" + StableHash.hex8("h-"), []), ("h-", [])]
        func snapshot(_ i: Int) -> MetricSnapshot {
            MetricSnapshot(name: keys[i].0, count: i + 1, sum: 1, min: 1, max: 1, dimensions: keys[i].1,
                           windowStart: 0, windowEnd: 1, timestampUnix: 0)
        }
        // Each key's series alone: the rule depends on the key only.
        var alone: [Int: String] = [:]
        for i in keys.indices {
            try sink.export([snapshot(i)])
            for l in parse(receiver.receiveAll()) where l.name.hasSuffix(".count") {
                alone[Int(l.value)!] = "\(l.name)|\(l.tags.sorted())"
            }
        }
        for order in [Array(keys.indices), keys.indices.reversed()] {
            try sink.export(order.map(snapshot))
            let lines = parse(receiver.receiveAll()).filter { $0.name.hasSuffix(".count") }
            for l in lines { XCTAssertEqual("\(l.name)|\(l.tags.sorted())", alone[Int(l.value)!]) }
            XCTAssertEqual(lines.map { Int($0.value)! }.sorted(), Array(1...keys.count))
            let series = lines.map { "\($0.name)|\($0.tags.sorted())" }
            XCTAssertEqual(Set(series).count, lines.count, "\(series)")
            let longTags = Set(lines.filter { $0.name == "L.count" }.flatMap(\.tags))
            XCTAssertEqual(longTags.count, 3, "\(longTags)")
            XCTAssertTrue(longTags.allSatisfy { $0.count <= 200 })
        }
    }

    func testNumbersArePlainRoundTripDecimals() {
        let cases: [(Double, String)] = [
            (0, "0"), (-0.0, "0"), (1, "1"), (-1, "-1"), (0.5, "0.5"), (1e-7, "0.0000001"),
            (1.25e-5, "0.0000125"), (1e16, "10000000000000000"), (123456.789, "123456.789"),
            (1.5e300, "15" + String(repeating: "0", count: 299)), (0.1 + 0.2, "0.30000000000000004"),
            (Double(Int64.max), "9223372036854776000"), (Double.leastNonzeroMagnitude, "0." + String(repeating: "0", count: 323) + "5"),
        ]
        for (value, text) in cases { XCTAssertEqual(DogStatsDFormat.number(value), text, "\(value)") }
        XCTAssertNil(DogStatsDFormat.number(.infinity))
        XCTAssertNil(DogStatsDFormat.number(-.infinity))
        XCTAssertNil(DogStatsDFormat.number(.nan))
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let value = Double(bitPattern: generator.next())
            guard value.isFinite else { continue }
            let text = DogStatsDFormat.number(value)!
            XCTAssertFalse(text.contains("e") || text.contains("E"), text)
            XCTAssertEqual(Double(text), value, text)
        }
    }

    func testLinesArePackedIntoDatagramsWithinTheLimit() throws {
        let receiver = try UDPReceiver()
        let limit = 200
        let sink = try makeSink(receiver, tags: ["env:test"], limit: limit)
        let m = try detailed(TestClock(100), sink: sink)
        try m.start()
        let keys = 40
        for i in 0..<keys { try m.put("Metric\(i)", Double(i), stream: "s\(i % 3)") }
        try m.flush()
        let datagrams = receiver.receiveAll()
        XCTAssertGreaterThan(datagrams.count, 5)
        XCTAssertEqual(datagrams.count, sink.sentDatagramCount)
        for datagram in datagrams {
            XCTAssertLessThanOrEqual(datagram.count, limit)
            XCTAssertNotEqual(datagram.last, UInt8(ascii: "\n"))
        }
        let lines = parse(datagrams)
        var want: [Line] = []
        for i in (0..<keys).sorted(by: { "Metric\($0)" < "Metric\($1)" }) {
            let v = String(i)
            want += expected("Metric\(i)", count: "1", sum: v, min: v, max: v, tags: ["env:test", "stream:s\(i % 3)"])
        }
        XCTAssertEqual(lines, want, "every line exactly once, in export order")
        // Packing is greedy: each datagram but the last could not take the next line.
        for (i, datagram) in datagrams.dropLast().enumerated() {
            let next = parse([datagrams[i + 1]])[0].description.utf8.count
            XCTAssertGreaterThan(datagram.count + 1 + next, limit)
        }
        XCTAssertEqual(sink.droppedLineCount, 0)
        try m.close()
    }

    func testPackingAtTheExactLimit() {
        let a = String(repeating: "a", count: 10), b = String(repeating: "b", count: 10)
        let c = String(repeating: "c", count: 5), big = String(repeating: "x", count: 22)
        // Two 10-byte lines and their "\n" make exactly 21 bytes: they share a datagram.
        var packed = DogStatsDFormat.pack([a, b, big, c], limit: 21)
        XCTAssertEqual(packed.datagrams.map { String(decoding: $0, as: UTF8.self) }, [a + "\n" + b, c])
        XCTAssertEqual(packed.dropped, 1)
        // One byte less: they do not.
        packed = DogStatsDFormat.pack([a, b, c], limit: 20)
        XCTAssertEqual(packed.datagrams.map { String(decoding: $0, as: UTF8.self) }, [a, b + "\n" + c])
        XCTAssertEqual(packed.dropped, 0)
        XCTAssertTrue(DogStatsDFormat.pack([], limit: 64).datagrams.isEmpty)
    }

    func testOversizedLineIsDroppedAndCounted() throws {
        let receiver = try UDPReceiver()
        let sink = try makeSink(receiver, limit: 64)
        let m = try detailed(TestClock(100), sink: sink)
        try m.start()
        try m.put("Short", 1)
        try m.put("Long", 2, stream: String(repeating: "x", count: 50))
        try m.put(String(repeating: "A", count: 48), 12345)
        try m.flush()
        let lines = parse(receiver.receiveAll())
        // "AAA…A.count:1|c" is 58 bytes, ".sum:12345|c" 60, ".min:12345|g" 60, ".max…" 60: all fit.
        // Every "Long" line carries a 57-byte tag: none fits in 64 bytes.
        let a = String(repeating: "A", count: 48)
        XCTAssertEqual(lines, expected(a, count: "1", sum: "12345", min: "12345", max: "12345", tags: [])
                       + expected("Short", count: "1", sum: "1", min: "1", max: "1", tags: []))
        XCTAssertEqual(sink.droppedLineCount, 4)
        try m.close()
    }

    func testSendErrorFailsTheFlushAndTheDataIsOfferedAgain() throws {
        let receiver = try UDPReceiver()
        let sink = try makeSink(receiver)
        let clock = TestClock(100)
        let m = try detailed(clock, sink: sink)
        try m.start()
        try m.put("A", 1, stream: "s")
        try m.put("A", 3, stream: "s")
        sink.failNextSends(1)
        assertThrows(.sinkFailed) { try m.flush() }
        XCTAssertEqual(receiver.receiveAll(quiet: 0.1), [])
        XCTAssertEqual(m.retainedKeyCount, 1)

        clock.advance(1)
        try m.put("A", 10, stream: "s")
        try m.flush()
        XCTAssertEqual(parse(receiver.receiveAll()),
                       expected("A", count: "3", sum: "14", min: "1", max: "10", tags: ["stream:s"]))
        XCTAssertEqual(m.retainedKeyCount, 0)
        try m.close()
    }

    func testRealSendErrorThrows() throws {
        // Sending to the IPv4 broadcast address without SO_BROADCAST fails (EACCES).
        let sink = try DogStatsDSink(configuration: DogStatsDConfiguration(host: "255.255.255.255", port: 9))
        let m = try detailed(TestClock(100), sink: sink)
        try m.start()
        try m.put("A", 1)
        assertThrows(.sinkFailed) { try m.flush() }
        XCTAssertEqual(m.retainedKeyCount, 1)
        XCTAssertEqual(sink.sentDatagramCount, 0)
        _ = try? m.close()
    }

    func testExportBeforeOpenThrowsAndCloseIsIdempotent() throws {
        let sink = try DogStatsDSink()
        let snapshot = MetricSnapshot(name: "A", count: 1, sum: 1, min: 1, max: 1, dimensions: [],
                                      windowStart: 0, windowEnd: 1, timestampUnix: 1)
        XCTAssertThrowsError(try sink.export([snapshot]))
        sink.close()
        sink.close()
        XCTAssertFalse(sink.isOpen)
    }

    func testInvalidConfigurationsAreRefused() {
        let bad: [DogStatsDConfiguration] = [
            DogStatsDConfiguration(host: ""),
            DogStatsDConfiguration(host: "local host"),
            DogStatsDConfiguration(host: String(repeating: "h", count: 256)),
            DogStatsDConfiguration(port: 0),
            DogStatsDConfiguration(maxDatagramBytes: 63),
            DogStatsDConfiguration(maxDatagramBytes: 65508),
            DogStatsDConfiguration(tags: ["ok", ""]),
        ]
        for configuration in bad {
            assertThrows(.invalidArgument, "\(configuration)") { _ = try DogStatsDSink(configuration: configuration) }
        }
        XCTAssertNoThrow(try DogStatsDSink(configuration: DogStatsDConfiguration(host: "::1", maxDatagramBytes: 64)))
        XCTAssertNoThrow(try DogStatsDSink(configuration: DogStatsDConfiguration(maxDatagramBytes: 65507)))
    }

    func testIPv6Loopback() throws {
        let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        defer { if fd >= 0 { close(fd) } }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_addr = in6addr_loopback
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        let ok = fd >= 0 && withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        try XCTSkipUnless(ok, "no IPv6 loopback")
        let sink = try DogStatsDSink(configuration: DogStatsDConfiguration(host: "::1", port: UInt16(bigEndian: address.sin6_port)))
        let m = try detailed(TestClock(100), sink: sink)
        try m.start()
        try m.put("V6", 7)
        try m.flush()
        var buffer = [UInt8](repeating: 0, count: 2048)
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(poll(&p, 1, 2000), 1)
        let n = recv(fd, &buffer, buffer.count, 0)
        XCTAssertEqual(parse([Array(buffer[0..<max(n, 0)])]),
                       expected("V6", count: "1", sum: "7", min: "7", max: "7", tags: []))
        try m.close()
    }
}
