import XCTest
import KPLMTestSupport
@testable import KPLM

/// Levels, key forming and dimension rendering.
final class ManagerLevelTests: XCTestCase {
    func testDefaultLevelIsNone() throws {
        XCTAssertEqual(MetricsConfiguration().level, .none)
        XCTAssertEqual(try MetricsManager().level, .none)
        XCTAssertEqual(MetricsConfiguration().windowSeconds, 60)
        XCTAssertEqual(MetricsConfiguration().uploadIntervalMs, 60_000)
        XCTAssertEqual(MetricsLevel.none.rawValue, 0)
        XCTAssertEqual(MetricsLevel.summary.rawValue, 1)
        XCTAssertEqual(MetricsLevel.detailed.rawValue, 2)
    }

    func testNoneIsANoOp() throws {
        let clock = TestClock(100)
        let sink = RecordingSink()
        let m = try MetricsManager(level: .none, sink: sink, uploadIntervalMs: 20, clock: clock.reading)
        try m.put("UserRecordsPut", 3, stream: "s", shardId: "shard-1", errorCode: "E")
        try m.put("UserRecordsPut")
        XCTAssertEqual(m.snapshots(), [])
        XCTAssertEqual(m.windowStatisticsByKey(), [:])

        try m.start()
        try m.put("UserRecordsPut", 4)
        let handle = try m.metric("Handle", stream: "s")
        try handle.put(9)
        try handle.put()
        try m.flush()
        // Even with a 20 ms interval, no uploader runs at NONE.
        Thread.sleep(forTimeInterval: 0.1)
        XCTAssertEqual(m.snapshots(), [])
        XCTAssertEqual(m.metricCount, 0)
        try m.close()
        try m.close()
        XCTAssertEqual(sink.calls, [], "NONE must never open, export to or close the sink")

        // After close, puts are refused like at any level.
        assertThrows(.closed) { try m.put("X") }
        assertThrows(.closed) { try handle.put(1) }
    }

    func testNoneNeverCallsRecordOnEventfulSink() throws {
        let sink = EventSink()
        let m = try MetricsManager(level: .none, sink: sink)
        try m.start()
        try m.put("A", 1)
        try m.metric("B").put(2)
        try m.flush()
        try m.close()
        XCTAssertEqual(sink.events, [])
        XCTAssertEqual(sink.batches.count, 0)
    }

    func testNoneStillRefusesWhatCostsNothing() throws {
        let m = try MetricsManager(level: .none)
        assertThrows(.invalidArgument) { try m.put("") }
        assertThrows(.invalidArgument) { try m.put("A", .nan) }
        assertThrows(.invalidArgument) { try m.put("A", .infinity) }
    }

    func testSummaryTrimsShardAndErrorCode() throws {
        let clock = TestClock(100)
        let m = try MetricsManager(level: .summary, clock: clock.reading)
        try m.put("ErrorsByCode", 1, stream: "s1", shardId: "shard-0", errorCode: "Throttled")
        try m.put("ErrorsByCode", 2, stream: "s1", shardId: "shard-1", errorCode: "Internal")
        try m.put("ErrorsByCode", 4, shardId: "shard-2")
        let handle = try m.metric("ErrorsByCode", stream: "s1", shardId: "shard-9", errorCode: "X")
        XCTAssertEqual(handle.key, MetricKey(name: "ErrorsByCode", stream: "s1"))
        try handle.put(8)

        let snaps = try requireCount(m.snapshots(), 2)
        XCTAssertEqual(snaps.map(\.dimensions), [[], dims(("stream", "s1"))])
        XCTAssertEqual(snaps[0].statistics, MetricStatistics(count: 1, sum: 4, min: 4, max: 4))
        XCTAssertEqual(snaps[1].statistics, MetricStatistics(count: 3, sum: 11, min: 1, max: 8))
        XCTAssertEqual(Set(m.windowStatisticsByKey().keys),
                       [MetricKey(name: "ErrorsByCode"), MetricKey(name: "ErrorsByCode", stream: "s1")])
        XCTAssertEqual(m.metricCount, 2)
    }

    func testDetailedKeepsEveryDimension() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        try m.put("ErrorsByCode", 1, stream: "s1", shardId: "shard-0", errorCode: "Throttled")
        try m.put("ErrorsByCode", 2, stream: "s1", shardId: "shard-1", errorCode: "Throttled")
        try m.put("ErrorsByCode", 4, stream: "s1", shardId: "shard-1")
        try m.put("ErrorsByCode", 8, stream: "s1")
        try m.put("ErrorsByCode", 16, stream: "s1", shardId: "shard-1", errorCode: "Throttled")
        let handle = try m.metric("ErrorsByCode", stream: "s1", shardId: "shard-0", errorCode: "Throttled")
        XCTAssertEqual(handle.key, MetricKey(name: "ErrorsByCode", stream: "s1", shardId: "shard-0", errorCode: "Throttled"))
        try handle.put(32)

        let snapshot = m.windowStatisticsByKey()
        XCTAssertEqual(snapshot.count, 4)
        XCTAssertEqual(snapshot[MetricKey(name: "ErrorsByCode", stream: "s1", shardId: "shard-0", errorCode: "Throttled")],
                       MetricStatistics(count: 2, sum: 33, min: 1, max: 32))
        XCTAssertEqual(snapshot[MetricKey(name: "ErrorsByCode", stream: "s1", shardId: "shard-1", errorCode: "Throttled")],
                       MetricStatistics(count: 2, sum: 18, min: 2, max: 16))
        XCTAssertEqual(snapshot[MetricKey(name: "ErrorsByCode", stream: "s1", shardId: "shard-1")],
                       MetricStatistics(count: 1, sum: 4, min: 4, max: 4))
        XCTAssertEqual(snapshot[MetricKey(name: "ErrorsByCode", stream: "s1")],
                       MetricStatistics(count: 1, sum: 8, min: 8, max: 8))
        let s = try XCTUnwrap(find(m.snapshots(), "ErrorsByCode",
                                   dims(("stream", "s1"), ("shard", "shard-0"), ("error_code", "Throttled"))))
        XCTAssertEqual(s.count, 2)
        XCTAssertEqual(m.metricCount, 4)
    }

    func testDimensionsRenderedInOrderWithAbsentOmitted() {
        XCTAssertEqual(MetricKey(name: "n", stream: "s", shardId: "sh", errorCode: "e").dimensions,
                       dims(("stream", "s"), ("shard", "sh"), ("error_code", "e")))
        XCTAssertEqual(MetricKey(name: "n", errorCode: "e").dimensions, dims(("error_code", "e")))
        XCTAssertEqual(MetricKey(name: "n", shardId: "sh").dimensions, dims(("shard", "sh")))
        XCTAssertEqual(MetricKey(name: "n", stream: "s", errorCode: "e").dimensions,
                       dims(("stream", "s"), ("error_code", "e")))
        XCTAssertEqual(MetricKey(name: "n").dimensions, [])
    }

    func testDetailedSnapshotsCarryRenderedDimensions() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        try m.put("N", 1, shardId: "sh", errorCode: "e")
        try m.put("N", 1, errorCode: "e")
        XCTAssertEqual(m.snapshots().map(\.dimensions),
                       [dims(("error_code", "e")), dims(("shard", "sh"), ("error_code", "e"))])
    }

    func testEmptyStringIsTheSameAsNil() throws {
        XCTAssertEqual(MetricKey(name: "n", stream: "", shardId: "", errorCode: ""), MetricKey(name: "n"))
        XCTAssertEqual(MetricKey(name: "n", stream: "").stream, nil)
        XCTAssertEqual(MetricKey(name: "n", stream: "s", shardId: "").dimensions, dims(("stream", "s")))

        let clock = TestClock(100)
        let m = try detailed(clock)
        try m.put("E", 1, stream: "", shardId: "", errorCode: "")
        try m.put("E", 2)
        try m.put("E", 4, stream: "s", shardId: "")
        try m.put("E", 8, stream: "s")
        try m.metric("E", stream: "", errorCode: "").put(16)
        let snaps = try requireCount(m.snapshots(), 2)
        XCTAssertEqual(snaps[0].dimensions, [])
        XCTAssertEqual(snaps[0].statistics, MetricStatistics(count: 3, sum: 19, min: 1, max: 16))
        XCTAssertEqual(snaps[1].dimensions, dims(("stream", "s")))
        XCTAssertEqual(snaps[1].statistics, MetricStatistics(count: 2, sum: 12, min: 4, max: 8))
        XCTAssertEqual(m.metricCount, 2)
    }

    func testMetricKeyEqualityAndHash() {
        let a = MetricKey(name: "n", stream: "s", shardId: "1", errorCode: "e")
        let b = MetricKey(name: "n", stream: "s", shardId: "1", errorCode: "e")
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.hashValue, b.hashValue)
        let different = [
            MetricKey(name: "m", stream: "s", shardId: "1", errorCode: "e"),
            MetricKey(name: "n", stream: "t", shardId: "1", errorCode: "e"),
            MetricKey(name: "n", stream: "s", shardId: "2", errorCode: "e"),
            MetricKey(name: "n", stream: "s", shardId: "1", errorCode: "f"),
            MetricKey(name: "n", stream: "s", shardId: "1"),
            MetricKey(name: "n", stream: "s"),
            MetricKey(name: "n"),
            // Same value under a different dimension is a different key.
            MetricKey(name: "n", shardId: "s"),
            MetricKey(name: "n", errorCode: "s"),
        ]
        for k in different { XCTAssertNotEqual(a, k) }
        var set: Set<MetricKey> = [a, b]
        set.formUnion(different)
        XCTAssertEqual(set.count, 1 + different.count)
        XCTAssertEqual(Set([MetricKey(name: "n", stream: ""), MetricKey(name: "n")]).count, 1)
        var dict: [MetricKey: Int] = [:]
        dict[a] = 1
        dict[b, default: 0] += 1
        XCTAssertEqual(dict[a], 2)
    }

    func testKeysDifferingOnlyInDimensionSlotStayDistinct() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        try m.put("N", 1, stream: "x")
        try m.put("N", 2, shardId: "x")
        try m.put("N", 4, errorCode: "x")
        XCTAssertEqual(m.windowStatisticsByKey().count, 3)
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "N", shardId: "x")], MetricStatistics(count: 1, sum: 2, min: 2, max: 2))
    }

    /// Keys are byte strings (the C ABI hands the core bytes, and the order is
    /// bytewise): two names that differ in bytes are two keys, even when
    /// Unicode calls them canonically equivalent ("é" as U+00E9 vs "e" + U+0301).
    func testCanonicallyEquivalentButDifferentBytesAreDifferentKeys() throws {
        let precomposed = "\u{E9}"         // C3 A9
        let decomposed = "e\u{301}"        // 65 CC 81
        let clock = TestClock(100)
        let m = try detailed(clock)
        try m.put(precomposed, 1)
        try m.put(decomposed, 2)
        try m.put("N", 4, stream: precomposed)
        try m.put("N", 8, stream: decomposed)
        let snaps = m.snapshots()
        // Compare bytes: Swift's String == would call the two names equal.
        XCTAssertEqual(snaps.map { Array($0.name.utf8) },
                       [Array("N".utf8), Array("N".utf8), Array(decomposed.utf8), Array(precomposed.utf8)])
        XCTAssertEqual(snaps.map(\.sum), [8, 4, 2, 1])
        XCTAssertEqual(snaps.map { $0.dimensions.map { Array($0.value.utf8) } },
                       [[Array(decomposed.utf8)], [Array(precomposed.utf8)], [], []])
        XCTAssertEqual(m.metricCount, 4)
    }
}
