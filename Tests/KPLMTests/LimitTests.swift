import XCTest
import KPLMTestSupport
@testable import KPLM

/// The cap on distinct keys and the counter of refused puts.
final class LimitTests: XCTestCase {
    func testKeysBeyondMaxMetricsAreRefusedAndCounted() throws {
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try detailed(clock, sink: sink, maxMetrics: 2)
        try m.start()
        try m.put("A", 1)
        try m.put("A", 1, stream: "s")
        XCTAssertEqual(m.metricCount, 2)

        assertThrows(.limitReached) { try m.put("C", 5) }
        assertThrows(.limitReached) { try m.put("A", 5, stream: "t") }
        assertThrows(.limitReached) { try m.put("A", 5, stream: "s", shardId: "x") }
        XCTAssertEqual(m.metricCount, 2)

        // Existing keys are still accepted, by name and through a handle.
        try m.put("A", 2)
        try m.metric("A", stream: "s").put(3)
        XCTAssertEqual(m.metricCount, 2)

        let snaps = try requireCount(m.snapshots(), 3)
        XCTAssertEqual(snaps.map(\.name), ["A", "A", "KplmMetricsRefused"])
        XCTAssertEqual(snaps[0].statistics, MetricStatistics(count: 2, sum: 3, min: 1, max: 2))
        XCTAssertEqual(snaps[1].statistics, MetricStatistics(count: 2, sum: 4, min: 1, max: 3))
        let refused = try XCTUnwrap(find(snaps, "KplmMetricsRefused"))
        XCTAssertEqual(refused.dimensions, [])
        XCTAssertEqual(refused.count, 3)
        XCTAssertEqual(refused.sum, 3)
        XCTAssertNil(m.windowStatisticsByKey()[MetricKey(name: "C")])
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "KplmMetricsRefused")]?.count, 3)

        try m.flush()
        let exported = sink.snapshots
        XCTAssertEqual(exported.map(\.name), ["A", "A", "KplmMetricsRefused"])
        XCTAssertEqual(find(exported, "KplmMetricsRefused")?.count, 3)

        // More refusals are counted and exported by the next flush.
        clock.now = 101
        assertThrows(.limitReached) { try m.put("D") }
        try m.flush()
        XCTAssertEqual(sink.batches.last?.map(\.name), ["KplmMetricsRefused"])
        XCTAssertEqual(sink.batches.last?.first?.statistics, MetricStatistics(count: 1, sum: 1, min: 1, max: 1))
        XCTAssertEqual(m.metricCount, 2)
        try m.close()
    }

    func testMetricHandleBeyondCapIsRefused() throws {
        let clock = TestClock(100)
        let m = try detailed(clock, maxMetrics: 1)
        _ = try m.metric("A")
        assertThrows(.limitReached) { _ = try m.metric("B") }
        XCTAssertEqual(m.metricCount, 1)
        // An existing key still resolves.
        try m.metric("A").put(4)
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "A")], MetricStatistics(count: 1, sum: 4, min: 4, max: 4))
    }

    func testSummaryTrimmingHappensBeforeTheCap() throws {
        let clock = TestClock(100)
        let m = try MetricsManager(level: .summary, maxMetrics: 1, clock: clock.reading)
        try m.put("A", 1, stream: "s", shardId: "1")
        try m.put("A", 1, stream: "s", shardId: "2", errorCode: "E")
        XCTAssertEqual(m.metricCount, 1)
        assertThrows(.limitReached) { try m.put("A", 1) }
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "A", stream: "s")]?.count, 2)
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "KplmMetricsRefused")]?.count, 1)
    }
}
