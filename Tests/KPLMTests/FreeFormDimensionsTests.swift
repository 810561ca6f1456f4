import XCTest
import KPLMTestSupport
@testable import KPLM

/// Free-form dimensions (SPEC §5): a key is a name plus a set of
/// (dimension name, value) pairs.
final class FreeFormDimensionsTests: XCTestCase {
    private func manager(level: MetricsLevel = .detailed, granularity: MetricsGranularity? = nil,
                         extras: [ExtraDimension] = [], maxMetrics: Int = 1000) throws -> MetricsManager {
        var c = MetricsConfiguration()
        c.level = level
        c.uploadInterval = .seconds(3600)
        c.clock = TestClock(100).reading
        c.granularity = granularity
        c.extraDimensions = extras
        c.maxMetrics = maxMetrics
        return try MetricsManager(configuration: c)
    }

    func testTheSamePairsInAnyOrderAreOneKey() throws {
        let m = try manager()
        try m.put("Requests", 1, dimensions: [("host", "h1"), ("az", "use1-az1"), ("app", "orders")])
        try m.put("Requests", 2, dimensions: [("app", "orders"), ("host", "h1"), ("az", "use1-az1")])
        let handle = try m.metric("Requests", dimensions: [("az", "use1-az1"), ("app", "orders"), ("host", "h1")])
        try handle.put(3)
        XCTAssertEqual(m.metricCount, 1)
        let s = try m.statistics("Requests", dimensions: [("host", "h1"), ("app", "orders"), ("az", "use1-az1")])
        XCTAssertEqual(s.count, 3)
        XCTAssertEqual(s.sum, 6)
        // A subset or another value is another key.
        try m.put("Requests", 1, dimensions: [("host", "h1"), ("az", "use1-az1")])
        try m.put("Requests", 1, dimensions: [("host", "h2"), ("az", "use1-az1"), ("app", "orders")])
        XCTAssertEqual(m.metricCount, 3)
    }

    func testTheSeedsThreeNamesAreOneCaseOfIt() throws {
        let m = try manager()
        try m.put("UserRecordsPut", 1, stream: "orders", shardId: "shardId-1", errorCode: "Throttled")
        try m.put("UserRecordsPut", 2, dimensions: [("error_code", "Throttled"), ("shard", "shardId-1"),
                                                     ("stream", "orders")])
        try m.metric("UserRecordsPut", dimensions: [("stream", "orders"), ("shard", "shardId-1"),
                                                     ("error_code", "Throttled")]).put(4)
        XCTAssertEqual(m.metricCount, 1)
        XCTAssertEqual(try m.statistics("UserRecordsPut", stream: "orders", shardId: "shardId-1",
                                        errorCode: "Throttled").sum, 7)
        let key = try MetricKey(name: "UserRecordsPut", dimensions: [("stream", "orders"), ("shard", "shardId-1")])
        XCTAssertEqual(key, MetricKey(name: "UserRecordsPut", stream: "orders", shardId: "shardId-1"))
        XCTAssertEqual(key.hashValue, MetricKey(name: "UserRecordsPut", stream: "orders", shardId: "shardId-1").hashValue)
        XCTAssertEqual(key.otherDimensions, [])
    }

    func testReportedOrderIsTheThreeFirstThenTheOthersBytewise() throws {
        let m = try manager()
        // Bytewise: "Zone" (0x5A) < "app" (0x61) < "host" < "zé" < "zz"? 'é' is C3 A9 > 'z' (7A).
        try m.put("Requests", 1, dimensions: [("zé", "1"), ("host", "h"), ("error_code", "E"), ("app", "a"),
                                              ("Zone", "z"), ("stream", "s"), ("zz", "2"), ("shard", "sh")])
        let snapshot = try XCTUnwrap(m.snapshots().first { $0.name == "Requests" })
        XCTAssertEqual(snapshot.dimensions.map(\.name),
                       ["stream", "shard", "error_code", "Zone", "app", "host", "zz", "zé"])
        XCTAssertEqual(snapshot.dimensions.map(\.value), ["s", "sh", "E", "z", "a", "h", "2", "1"])
    }

    func testKeysCompareByteForByte() throws {
        let m = try manager()
        try m.put("Requests", 1, dimensions: [("city", "Montr\u{E9}al")])
        try m.put("Requests", 1, dimensions: [("city", "Montre\u{301}al")])
        try m.put("Requests", 1, dimensions: [("caf\u{E9}", "x")])
        try m.put("Requests", 1, dimensions: [("cafe\u{301}", "x")])
        XCTAssertEqual(m.metricCount, 4)
    }

    func testAnEmptyValueIsAnAbsentPair() throws {
        let m = try manager()
        try m.put("Requests", 1, dimensions: [("host", "h"), ("az", ""), ("stream", "")])
        try m.put("Requests", 1, dimensions: [("host", "h")])
        XCTAssertEqual(m.metricCount, 1)
        XCTAssertEqual(try m.statistics("Requests", dimensions: [("host", "h")]).count, 2)
        XCTAssertEqual(try MetricKey(name: "R", dimensions: [("az", "")]), MetricKey(name: "R"))
    }

    func testLimitsAndErrors() throws {
        let m = try manager()
        let thirty = (0..<30).map { ("d\($0)", "v") }
        try m.put("Wide", 1, dimensions: thirty)
        assertThrows(.invalidArgument, "31 pairs") { try m.put("Wide", 1, dimensions: thirty + [("d30", "v")]) }
        assertThrows(.invalidArgument, "31 pairs, one empty") { try m.put("Wide", 1, dimensions: thirty + [("d30", "")]) }
        assertThrows(.invalidArgument, "repeated") { try m.put("R", 1, dimensions: [("host", "a"), ("host", "b")]) }
        assertThrows(.invalidArgument, "repeated, same value") { try m.put("R", 1, dimensions: [("host", "a"), ("host", "a")]) }
        assertThrows(.invalidArgument, "repeated, one empty") { try m.put("R", 1, dimensions: [("host", ""), ("host", "b")]) }
        assertThrows(.invalidArgument, "stream twice") { try m.put("R", 1, dimensions: [("stream", ""), ("stream", "s")]) }
        assertThrows(.invalidArgument, "empty name") { try m.put("R", 1, dimensions: [("", "v")]) }
        assertThrows(.invalidArgument, "long name") { try m.put("R", 1, dimensions: [(String(repeating: "n", count: 256), "v")]) }
        try m.put("R", 1, dimensions: [(String(repeating: "n", count: 255), String(repeating: "v", count: 1024))])
        assertThrows(.invalidArgument, "long value") { try m.put("R", 1, dimensions: [("n", String(repeating: "v", count: 1025))]) }
        assertThrows(.invalidArgument, "NUL in a name") { try m.put("R", 1, dimensions: [("a\u{0}b", "v")]) }
        assertThrows(.invalidArgument, "NUL in a value") { try m.put("R", 1, dimensions: [("n", "a\u{0}b")]) }
        assertThrows(.invalidArgument, "empty metric name") { try m.put("", 1, dimensions: [("n", "v")]) }
        assertThrows(.invalidArgument, "NaN") { try m.put("R", .nan, dimensions: [("n", "v")]) }
        assertThrows(.invalidArgument, "handle, 31 pairs") { _ = try m.metric("Wide", dimensions: thirty + [("d30", "v")]) }
        assertThrows(.invalidArgument, "query, repeated") {
            _ = try m.statistics("R", dimensions: [("host", "a"), ("host", "b")])
        }
        // Refused puts recorded nothing.
        XCTAssertEqual(m.metricCount, 2)
        XCTAssertEqual(try m.statistics("Wide", dimensions: thirty).count, 1)
    }

    func testTheCapCountsKeysWithFreeFormDimensions() throws {
        let m = try manager(maxMetrics: 2)
        try m.put("R", 1, dimensions: [("host", "a")])
        try m.put("R", 1, dimensions: [("host", "b")])
        assertThrows(.limitReached) { try m.put("R", 1, dimensions: [("host", "c")]) }
        try m.put("R", 1, dimensions: [("host", "a")])
    }

    func testSummaryDropsShardAndErrorCodeButKeepsTheOthers() throws {
        let m = try manager(level: .summary)
        try m.put("UserRecordsPut", 1, dimensions: [("stream", "s"), ("shard", "sh1"), ("error_code", "E"), ("host", "h")])
        try m.put("UserRecordsPut", 1, dimensions: [("host", "h"), ("stream", "s"), ("shard", "sh2")])
        XCTAssertEqual(m.metricCount, 1)
        let snapshot = try XCTUnwrap(m.snapshots().first)
        XCTAssertEqual(snapshot.dimensions, dims(("stream", "s"), ("host", "h")))
        XCTAssertEqual(snapshot.count, 2)
    }

    func testLevelNoneRecordsNothing() throws {
        let m = try manager(level: .none)
        try m.put("R", 1, dimensions: [("host", "h")])
        try m.metric("R", dimensions: [("host", "h")]).put(1)
        XCTAssertEqual(m.metricCount, 0)
        assertThrows(.invalidArgument) { try m.put("", 1, dimensions: [("host", "h")]) }
    }

    func testRollupsCarryTheFreeFormDimensionsOnEveryLevel() throws {
        let m = try manager(granularity: .shard, extras: [ExtraDimension("Host", "h", granularity: .global)])
        try m.put("UserRecordsPut", 1, dimensions: [("stream", "s"), ("shard", "sh1"), ("app", "a")])
        try m.put("UserRecordsPut", 2, dimensions: [("stream", "s"), ("shard", "sh2"), ("app", "a")])
        try m.put("UserRecordsPut", 4, dimensions: [("stream", "s"), ("shard", "sh1"), ("app", "b")])
        try m.put("UserRecordsPut", 8, dimensions: [("stream", "s"), ("shard", "sh1")])
        let lines = Dictionary(uniqueKeysWithValues: m.snapshots().map { (Totals.label($0.name, $0.dimensions), $0.sum) })
        let a = [("Host", "h"), ("app", "a")], b = [("Host", "h"), ("app", "b")], none = [("Host", "h")]
        func label(_ base: [(String, String)], _ rest: (String, String)...) -> String {
            Totals.label("UserRecordsPut", (base + rest).map { MetricDimension($0.0, $0.1) })
        }
        XCTAssertEqual(lines[label(a)], 3)
        XCTAssertEqual(lines[label(a, ("StreamName", "s"))], 3)
        XCTAssertEqual(lines[label(a, ("StreamName", "s"), ("ShardId", "sh1"))], 1)
        XCTAssertEqual(lines[label(a, ("StreamName", "s"), ("ShardId", "sh2"))], 2)
        XCTAssertEqual(lines[label(b)], 4)
        XCTAssertEqual(lines[label(b, ("StreamName", "s"), ("ShardId", "sh1"))], 4)
        XCTAssertEqual(lines[label(none)], 8)
        XCTAssertEqual(lines[label(none, ("StreamName", "s"))], 8)
        XCTAssertEqual(lines.count, 10, "\(lines.keys.sorted())")
    }

    func testExportsCarryThemExactlyOnce() throws {
        let sink = InMemorySink()
        var c = MetricsConfiguration()
        c.level = .detailed
        c.uploadInterval = .seconds(3600)
        c.clock = TestClock(100).reading
        let m = try MetricsManager(configuration: c, sink: sink)
        try m.start()
        let handle = try m.metric("Latency", dimensions: [("region", "eu"), ("host", "h")])
        for v in 1...10 { try handle.put(Double(v)) }
        try m.put("Latency", 100, dimensions: [("host", "h"), ("region", "eu")])
        try m.flush()
        try m.flush()
        let exported = sink.snapshots.filter { $0.name == "Latency" }
        let only = try requireCount(exported, 1)
        XCTAssertEqual(only[0].dimensions, dims(("host", "h"), ("region", "eu")))
        XCTAssertEqual(only[0].count, 11)
        XCTAssertEqual(only[0].sum, 155)
        XCTAssertEqual(only[0].min, 1)
        XCTAssertEqual(only[0].max, 100)
        try m.close()
    }

    func testRollupsAttachFreeFormDimensionsWhereConfigured() throws {
        var c = MetricsConfiguration()
        c.level = .detailed
        c.uploadInterval = .seconds(3600)
        c.clock = TestClock(100).reading
        c.granularity = .shard
        c.dimensionGranularities = ["app": .stream]
        let m = try MetricsManager(configuration: c)
        try m.setDimensionGranularity("rack", .shard)
        try m.put("UserRecordsPut", 1, dimensions: [("stream", "s"), ("shard", "sh1"), ("app", "a"),
                                                     ("rack", "r1"), ("host", "h")])
        try m.put("UserRecordsPut", 2, dimensions: [("stream", "s"), ("shard", "sh2"), ("app", "a"),
                                                     ("rack", "r2"), ("host", "h")])
        let lines = Dictionary(uniqueKeysWithValues: m.snapshots().map { (Totals.label($0.name, $0.dimensions), $0.sum) })
        func label(_ pairs: (String, String)...) -> String {
            Totals.label("UserRecordsPut", pairs.map { MetricDimension($0.0, $0.1) })
        }
        XCTAssertEqual(lines, [
            label(("host", "h")): 3,
            label(("host", "h"), ("StreamName", "s"), ("app", "a")): 3,
            label(("host", "h"), ("StreamName", "s"), ("app", "a"), ("ShardId", "sh1"), ("rack", "r1")): 1,
            label(("host", "h"), ("StreamName", "s"), ("app", "a"), ("ShardId", "sh2"), ("rack", "r2")): 2,
        ])
        try m.start()
        assertThrows(.invalidState) { try m.setDimensionGranularity("zone", .stream) }
        assertThrows(.invalidArgument) { _ = try MetricsManager(configuration: {
            var bad = c
            bad.dimensionGranularities = ["": .stream]
            return bad
        }()) }
        try m.close()
    }
}
