import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM

/// Exactly-once export of what was not exported yet.
final class FlushTests: XCTestCase {
    func testFlushExportsOneMergedSnapshotPerKey() throws {
        let clock = TestClock(100.2)
        let sink = InMemorySink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        try m.put("A", 1)
        try m.put("B", 10, stream: "s")
        clock.now = 101.7
        try m.put("A", 2)
        clock.now = 103.9
        try m.put("A", 4)
        try m.put("B", 20, stream: "s")
        clock.now = 104.5
        try m.flush()

        let batch = try requireCount(try requireCount(sink.batches, 1)[0], 2)
        XCTAssertEqual(batch.map(\.name), ["A", "B"])
        XCTAssertEqual(batch[0].statistics, MetricStatistics(count: 3, sum: 7, min: 1, max: 4))
        XCTAssertEqual(batch[0].dimensions, [])
        XCTAssertEqual(batch[0].windowStart, 100)
        XCTAssertEqual(batch[0].windowEnd, 104)
        XCTAssertEqual(batch[1].statistics, MetricStatistics(count: 2, sum: 30, min: 10, max: 20))
        XCTAssertEqual(batch[1].dimensions, dims(("stream", "s")))
        XCTAssertEqual(batch[1].windowStart, 100)
        XCTAssertEqual(batch[1].windowEnd, 104)
        try m.close()
    }

    func testEmptyFlushDoesNotCallExport() throws {
        let clock = TestClock(100)
        let sink = RecordingSink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        try m.flush()
        _ = try m.metric("NeverPut")
        try m.flush()
        XCTAssertEqual(sink.calls, [.open])
        try m.close()
        XCTAssertEqual(sink.calls, [.open, .close], "close with nothing new must not export")
    }

    func testNoDoubleExport() throws {
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        try m.put("A", 1)
        try m.put("A", 2)
        try m.flush()
        // Same second, after the flush: only the new observation is exported.
        try m.put("A", 5)
        clock.now = 102
        try m.put("B", 7)
        try m.flush()
        try m.flush()   // nothing new

        let batches = try requireCount(sink.batches, 2)
        try requireCount(batches[0], 1)
        try requireCount(batches[1], 2)
        XCTAssertEqual(batches[0].map(\.name), ["A"])
        XCTAssertEqual(batches[0][0].statistics, MetricStatistics(count: 2, sum: 3, min: 1, max: 2))
        XCTAssertEqual(batches[1].map(\.name), ["A", "B"])
        XCTAssertEqual(batches[1][0].statistics, MetricStatistics(count: 1, sum: 5, min: 5, max: 5))
        XCTAssertEqual(batches[1][0].windowStart, 100)
        XCTAssertEqual(batches[1][0].windowEnd, 101)
        XCTAssertEqual(batches[1][1].statistics, MetricStatistics(count: 1, sum: 7, min: 7, max: 7))
        XCTAssertEqual(batches[1][1].windowStart, 102)
        XCTAssertEqual(batches[1][1].windowEnd, 103)

        // The rolling window is not consumed by flushing.
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "A")], MetricStatistics(count: 3, sum: 8, min: 1, max: 5))
        try m.close()
        XCTAssertEqual(sink.batches.count, 2)
    }

    func testIntervalLongerThanWindowExportsEvictedDataOnce() throws {
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try detailed(clock, window: 5, sink: sink)
        try m.start()
        try m.put("A", 1)          // second 100
        clock.now = 103
        try m.put("A", 2)          // second 103
        clock.now = 200
        try m.put("A", 4)          // second 200: 100 and 103 left the window
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "A")], MetricStatistics(count: 1, sum: 4, min: 4, max: 4))

        try m.flush()
        XCTAssertEqual(sink.batches.count, 1)
        let s = try XCTUnwrap(sink.batches.first?.first)
        XCTAssertEqual(s.statistics, MetricStatistics(count: 3, sum: 7, min: 1, max: 4))
        XCTAssertEqual(s.windowStart, 100)
        XCTAssertEqual(s.windowEnd, 201)

        // Data that left the window without any later put is exported too.
        try m.put("B", 9)
        clock.now = 300
        XCTAssertEqual(m.snapshots(), [])
        try m.flush()
        try requireCount(try requireCount(sink.batches, 2)[1], 1)
        XCTAssertEqual(sink.batches[1].map(\.name), ["B"])
        XCTAssertEqual(sink.batches[1][0].statistics, MetricStatistics(count: 1, sum: 9, min: 9, max: 9))
        XCTAssertEqual(sink.batches[1][0].windowStart, 200)
        XCTAssertEqual(sink.batches[1][0].windowEnd, 201)
        try m.close()
        XCTAssertEqual(sink.batches.count, 2)
    }

    func testFailedExportIsRetriedMerged() throws {
        let clock = TestClock(100)
        let sink = RecordingSink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        try m.put("A", 1)
        try m.put("B", 3)
        clock.now = 101
        try m.put("A", 2)
        sink.failExports(1)
        assertThrows(.sinkFailed) { try m.flush() }
        try requireCount(sink.batches, 1)
        XCTAssertEqual(sink.batches[0].first?.statistics, MetricStatistics(count: 2, sum: 3, min: 1, max: 2))

        clock.now = 105
        try m.put("A", 8)
        try m.put("C", 0.5)
        try m.flush()
        let retry = try requireCount(try requireCount(sink.batches, 2)[1], 3)
        XCTAssertEqual(retry.map(\.name), ["A", "B", "C"])
        XCTAssertEqual(retry[0].statistics, MetricStatistics(count: 3, sum: 11, min: 1, max: 8))
        XCTAssertEqual(retry[0].windowStart, 100)
        XCTAssertEqual(retry[0].windowEnd, 106)
        XCTAssertEqual(retry[1].statistics, MetricStatistics(count: 1, sum: 3, min: 3, max: 3))
        XCTAssertEqual(retry[1].windowStart, 100)
        XCTAssertEqual(retry[1].windowEnd, 101)
        XCTAssertEqual(retry[2].statistics, MetricStatistics(count: 1, sum: 0.5, min: 0.5, max: 0.5))

        // Exported once the retry succeeded: nothing left.
        try m.flush()
        XCTAssertEqual(sink.batches.count, 2)
        try m.close()
        XCTAssertEqual(sink.batches.count, 2)
    }

    func testFailedExportWithNothingNewIsRetriedAsIs() throws {
        let clock = TestClock(100)
        let sink = RecordingSink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        try m.put("A", 6)
        sink.failExports(2)
        assertThrows(.sinkFailed) { try m.flush() }
        assertThrows(.sinkFailed) { try m.flush() }
        try m.flush()
        let batches = sink.batches
        XCTAssertEqual(batches.count, 3)
        for b in batches {
            XCTAssertEqual(b.count, 1)
            XCTAssertEqual(b.first?.statistics, MetricStatistics(count: 1, sum: 6, min: 6, max: 6))
        }
        try m.flush()
        XCTAssertEqual(sink.batches.count, 3)
        try m.close()
    }

    func testTimestampUnixMatchesWindowEnd() throws {
        let clock = TestClock(100.5)
        let sink = InMemorySink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        try m.put("T", 1)
        clock.now = 101           // windowEnd (101) is now
        let before = Date().timeIntervalSince1970
        try m.flush()
        let after = Date().timeIntervalSince1970
        let s = try XCTUnwrap(sink.snapshots.first)
        XCTAssertEqual(s.windowEnd, 101)
        XCTAssertGreaterThanOrEqual(s.timestampUnix, before - 1)
        XCTAssertLessThanOrEqual(s.timestampUnix, after + 1)

        // windowEnd 9 s in the past → the timestamp is 9 s before wall time.
        try m.put("T", 1)         // second 101
        clock.now = 111
        let before2 = Date().timeIntervalSince1970
        try m.flush()
        let after2 = Date().timeIntervalSince1970
        let s2 = try XCTUnwrap(sink.batches.last?.first)
        XCTAssertEqual(s2.windowEnd, 102)
        XCTAssertGreaterThanOrEqual(s2.timestampUnix, before2 - 9 - 1)
        XCTAssertLessThanOrEqual(s2.timestampUnix, after2 - 9 + 1)

        // Snapshots carry the same relation.
        let live = try XCTUnwrap(m.snapshots().first)
        let now = Date().timeIntervalSince1970
        XCTAssertEqual(live.windowEnd, 102)
        XCTAssertEqual(live.timestampUnix, now - 9, accuracy: 2)
        try m.close()
    }

    func testPeriodicFlushByUploader() throws {
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try MetricsManager(level: .summary, sink: sink, uploadIntervalMs: 20, clock: clock.reading)
        try m.put("P", 2, stream: "s", shardId: "dropped")
        try m.put("P", 3, stream: "s")
        try m.start()
        XCTAssertTrue(waitUntil { !sink.batches.isEmpty }, "the uploader never flushed")
        let first = try requireCount(try XCTUnwrap(sink.batches.first), 1)
        XCTAssertEqual(first[0].name, "P")
        XCTAssertEqual(first[0].dimensions, dims(("stream", "s")))
        XCTAssertEqual(first[0].statistics, MetricStatistics(count: 2, sum: 5, min: 2, max: 3))

        // Later data goes out with a later tick, exactly once.
        clock.now = 101
        try m.put("P", 7, stream: "s")
        XCTAssertTrue(waitUntil { sink.snapshots.count >= 2 }, "the uploader never flushed again")
        try m.close()
        let all = sink.snapshots
        XCTAssertEqual(all.count, 2)
        XCTAssertEqual(all.reduce(0) { $0 + $1.count }, 3)
        XCTAssertEqual(all.reduce(0) { $0 + $1.sum }, 12)
    }

    func testFlushBeforeStartAndAfterClose() throws {
        let clock = TestClock(100)
        let sink = RecordingSink()
        let m = try detailed(clock, sink: sink)
        try m.put("A", 1)
        assertThrows(.invalidState) { try m.flush() }
        XCTAssertEqual(sink.calls, [])
        try m.start()
        try m.close()
        assertThrows(.closed) { try m.flush() }
        XCTAssertEqual(sink.batches.count, 1)

        // Closed without ever starting: flush is .closed too.
        let m2 = try detailed(clock)
        try m2.close()
        assertThrows(.closed) { try m2.flush() }
    }
}
