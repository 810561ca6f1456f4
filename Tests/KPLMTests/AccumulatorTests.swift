import XCTest
import KPLMTestSupport
@testable import KPLM

/// The per-second buckets and the rolling window, read through snapshots.
final class AccumulatorTests: XCTestCase {
    func testEmptyManagerHasNoSnapshot() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        XCTAssertEqual(m.snapshots(), [])
        XCTAssertEqual(m.windowStatisticsByKey(), [:])
        // A resolved handle with no observation reports nothing either.
        _ = try m.metric("Untouched", stream: "s")
        XCTAssertEqual(m.snapshots(), [])
        XCTAssertEqual(m.windowStatisticsByKey(), [:])
    }

    func testSingleObservation() throws {
        let clock = TestClock(100.25)
        let m = try detailed(clock)
        try m.put("UserRecordsPut", 7.5)
        let snaps = m.snapshots()
        XCTAssertEqual(snaps.count, 1)
        let s = try XCTUnwrap(snaps.first)
        XCTAssertEqual(s.name, "UserRecordsPut")
        XCTAssertEqual(s.statistics, MetricStatistics(count: 1, sum: 7.5, min: 7.5, max: 7.5))
        XCTAssertEqual(s.dimensions, [])
        XCTAssertEqual(s.windowStart, 100)
        XCTAssertEqual(s.windowEnd, 101)
        XCTAssertEqual(m.windowStatisticsByKey(), [MetricKey(name: "UserRecordsPut"): MetricStatistics(count: 1, sum: 7.5, min: 7.5, max: 7.5)])
    }

    /// A bucket newer than the reader's second (a put that read the clock
    /// after the reader, or a clock that went back) is left for a later
    /// reading: a snapshot never spans more than the window, and flush still
    /// exports it.
    func testBucketNewerThanReadingIsLeftForLater() throws {
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try MetricsManager(level: .detailed, sink: sink, windowSeconds: 3, clock: clock.reading)
        try m.start()
        try m.put("M", 1)
        clock.now = 102
        try m.put("M", 2)
        clock.now = 101
        let early = try XCTUnwrap(m.snapshots().first)
        XCTAssertEqual(early.statistics, MetricStatistics(count: 1, sum: 1, min: 1, max: 1))
        XCTAssertEqual(early.windowStart, 100)
        XCTAssertEqual(early.windowEnd, 101)
        clock.now = 102
        let later = try XCTUnwrap(m.snapshots().first)
        XCTAssertEqual(later.statistics, MetricStatistics(count: 2, sum: 3, min: 1, max: 2))
        XCTAssertEqual(later.windowEnd - later.windowStart, 3)
        try m.close()
        XCTAssertEqual(sink.snapshots.map(\.count), [2])
    }

    func testDefaultValueIsOne() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        try m.put("Count")
        try m.put("Count")
        try m.metric("Count").put()
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "Count")], MetricStatistics(count: 3, sum: 3, min: 1, max: 1))
    }

    func testAggregationWithinOneSecond() throws {
        let clock = TestClock(200)
        let m = try detailed(clock)
        for (t, v) in [(200.0, 4.0), (200.3, 1.5), (200.6, 10.0), (200.99, 2.5)] {
            clock.now = t
            try m.put("Latency", v, stream: "s1")
        }
        let s = try XCTUnwrap(find(m.snapshots(), "Latency", dims(("stream", "s1"))))
        XCTAssertEqual(s.statistics, MetricStatistics(count: 4, sum: 18, min: 1.5, max: 10))
        XCTAssertEqual(s.windowStart, 200)
        XCTAssertEqual(s.windowEnd, 201)
    }

    func testRollForwardAcrossSeconds() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        try m.put("M", 1)
        clock.now = 101.5
        try m.put("M", 2)
        try m.put("M", 3)
        clock.now = 104.1
        try m.put("M", -4)
        let s = try XCTUnwrap(find(m.snapshots(), "M"))
        XCTAssertEqual(s.statistics, MetricStatistics(count: 4, sum: 2, min: -4, max: 3))
        XCTAssertEqual(s.windowStart, 100)
        XCTAssertEqual(s.windowEnd, 105)
    }

    func testEvictionAfterWindow() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        try m.put("M", 5)
        clock.now = 120
        try m.put("M", 7)

        // At 159 the bucket of second 100 is still one of the last 60 seconds.
        clock.now = 159.999
        var s = try XCTUnwrap(find(m.snapshots(), "M"))
        XCTAssertEqual(s.statistics, MetricStatistics(count: 2, sum: 12, min: 5, max: 7))
        XCTAssertEqual(s.windowStart, 100)
        XCTAssertEqual(s.windowEnd, 121)

        // At 160 it has left the window.
        clock.now = 160
        s = try XCTUnwrap(find(m.snapshots(), "M"))
        XCTAssertEqual(s.statistics, MetricStatistics(count: 1, sum: 7, min: 7, max: 7))
        XCTAssertEqual(s.windowStart, 120)
        XCTAssertEqual(s.windowEnd, 121)
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "M")], MetricStatistics(count: 1, sum: 7, min: 7, max: 7))

        // At 180 nothing is live: no snapshot at all.
        clock.now = 180
        XCTAssertEqual(m.snapshots(), [])
        XCTAssertEqual(m.windowStatisticsByKey(), [:])
    }

    func testEvictionOnPutOfNewerSecond() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        try m.put("M", 1)
        clock.now = 160   // second 100 leaves the window as second 160 arrives
        try m.put("M", 2)
        let s = try XCTUnwrap(find(m.snapshots(), "M"))
        XCTAssertEqual(s.statistics, MetricStatistics(count: 1, sum: 2, min: 2, max: 2))
        XCTAssertEqual(s.windowStart, 160)
        XCTAssertEqual(s.windowEnd, 161)
    }

    func testWindowEdgeKeepsExactlyWindowSecondsBuckets() throws {
        let clock = TestClock(0)
        let m = try detailed(clock)
        // One observation per second, seconds 0...59, value = second.
        for second in 0..<60 {
            clock.now = Double(second) + 0.5
            try m.put("Edge", Double(second))
        }
        var s = try XCTUnwrap(find(m.snapshots(), "Edge"))
        XCTAssertEqual(s.statistics, MetricStatistics(count: 60, sum: 1770, min: 0, max: 59))
        XCTAssertEqual(s.windowStart, 0)
        XCTAssertEqual(s.windowEnd, 60)

        clock.now = 60.5
        try m.put("Edge", 60)
        s = try XCTUnwrap(find(m.snapshots(), "Edge"))
        XCTAssertEqual(s.statistics, MetricStatistics(count: 60, sum: 1830, min: 1, max: 60))
        XCTAssertEqual(s.windowStart, 1)
        XCTAssertEqual(s.windowEnd, 61)
    }

    func testNegativeValues() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        try m.put("Neg", -5)
        try m.put("Neg", -0.5)
        try m.put("Neg", -12.25)
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "Neg")],
                       MetricStatistics(count: 3, sum: -17.75, min: -12.25, max: -0.5))
        try m.put("Neg", 3)
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "Neg")],
                       MetricStatistics(count: 4, sum: -14.75, min: -12.25, max: 3))
    }

    func testWindowBoundsTrackOldestAndNewestLiveSecond() throws {
        let clock = TestClock(1000.7)
        let m = try detailed(clock)
        try m.put("B")
        clock.now = 1003.2
        try m.put("B")
        clock.now = 1010.0
        let s = try XCTUnwrap(find(m.snapshots(), "B"))
        // [oldest live second, newest live second + 1), not "now".
        XCTAssertEqual(s.windowStart, 1000)
        XCTAssertEqual(s.windowEnd, 1004)
        XCTAssertEqual(s.count, 2)
    }

    func testConfigurableWindow() throws {
        let clock = TestClock(100)
        let m = try detailed(clock, window: 5)
        try m.put("W", 1)          // second 100
        clock.now = 102
        try m.put("W", 2)          // second 102
        clock.now = 104.9          // seconds 100...104 are live
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "W")], MetricStatistics(count: 2, sum: 3, min: 1, max: 2))
        clock.now = 105            // second 100 is gone
        var s = try XCTUnwrap(find(m.snapshots(), "W"))
        XCTAssertEqual(s.statistics, MetricStatistics(count: 1, sum: 2, min: 2, max: 2))
        XCTAssertEqual(s.windowStart, 102)
        XCTAssertEqual(s.windowEnd, 103)
        clock.now = 107
        XCTAssertEqual(m.snapshots(), [])

        // A one-second window only ever holds the current second.
        let clock1 = TestClock(50.5)
        let m1 = try detailed(clock1, window: 1)
        try m1.put("One", 4)
        XCTAssertEqual(m1.windowStatisticsByKey()[MetricKey(name: "One")]?.count, 1)
        clock1.now = 51
        XCTAssertEqual(m1.snapshots(), [])
        try m1.put("One", 6)
        s = try XCTUnwrap(find(m1.snapshots(), "One"))
        XCTAssertEqual(s.statistics, MetricStatistics(count: 1, sum: 6, min: 6, max: 6))
    }

    func testLateObservationsMergeIntoTheirBucket() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        try m.put("L", 1)          // second 100
        clock.now = 105
        try m.put("L", 2)          // second 105
        clock.now = 100.5
        try m.put("L", 10)         // late: into second 100
        clock.now = 102.5
        try m.put("L", 20)         // late: a new bucket for second 102
        clock.now = 105.5
        var s = try XCTUnwrap(find(m.snapshots(), "L"))
        XCTAssertEqual(s.statistics, MetricStatistics(count: 4, sum: 33, min: 1, max: 20))
        XCTAssertEqual(s.windowStart, 100)
        XCTAssertEqual(s.windowEnd, 106)

        // Evicting second 100 removes both of its observations (1 and 10) …
        clock.now = 160
        s = try XCTUnwrap(find(m.snapshots(), "L"))
        XCTAssertEqual(s.statistics, MetricStatistics(count: 2, sum: 22, min: 2, max: 20))
        XCTAssertEqual(s.windowStart, 102)
        XCTAssertEqual(s.windowEnd, 106)

        // … and evicting second 102 leaves only second 105.
        clock.now = 162
        s = try XCTUnwrap(find(m.snapshots(), "L"))
        XCTAssertEqual(s.statistics, MetricStatistics(count: 1, sum: 2, min: 2, max: 2))
        XCTAssertEqual(s.windowStart, 105)
        XCTAssertEqual(s.windowEnd, 106)
    }

    func testLateObservationBeyondWindowIsStillFlushedOnce() throws {
        let clock = TestClock(200)
        let sink = InMemorySink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        try m.put("L", 1)          // second 200
        clock.now = 100
        try m.put("L", 5)          // far older than the window of the newest bucket
        clock.now = 200.5
        // Not in the rolling window …
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "L")], MetricStatistics(count: 1, sum: 1, min: 1, max: 1))
        // … but never lost by the export.
        try m.flush()
        let s = try XCTUnwrap(find(sink.snapshots, "L"))
        XCTAssertEqual(s.statistics, MetricStatistics(count: 2, sum: 6, min: 1, max: 5))
        XCTAssertEqual(s.windowStart, 100)
        XCTAssertEqual(s.windowEnd, 201)
        try m.close()
        XCTAssertEqual(sink.snapshots.count, 1)
    }
}
