import XCTest
import KPLMTestSupport
@testable import KPLM

/// The eventful extension: `record` per put, between start and close.
final class EventfulSinkTests: XCTestCase {
    func testRecordCalledOncePerPutAfterStart() throws {
        let clock = TestClock(100)
        let sink = EventSink()
        let m = try detailed(clock, sink: sink)
        try m.put("Before", 1)
        let handle = try m.metric("Handle", stream: "s", shardId: "sh")
        try handle.put(2)
        XCTAssertEqual(sink.events, [], "record must not be called before start")

        try m.start()
        clock.now = 100.25
        try m.put("UserRecordsPut", 3, stream: "s", shardId: "sh", errorCode: "E")
        clock.now = 101.5
        try handle.put(4.5)
        try m.put("Plain")
        XCTAssertEqual(sink.events, [
            MetricEvent(name: "UserRecordsPut", value: 3, timestamp: 100.25,
                        dimensions: dims(("stream", "s"), ("shard", "sh"), ("error_code", "E"))),
            MetricEvent(name: "Handle", value: 4.5, timestamp: 101.5,
                        dimensions: dims(("stream", "s"), ("shard", "sh"))),
            MetricEvent(name: "Plain", value: 1, timestamp: 101.5, dimensions: []),
        ])

        // Refused puts produce no event.
        assertThrows(.invalidArgument) { try m.put("Plain", .nan) }
        assertThrows(.invalidArgument) { try m.put("") }
        XCTAssertEqual(sink.events.count, 3)

        try m.close()
        assertThrows(.closed) { try m.put("After", 1) }
        assertThrows(.closed) { try handle.put(1) }
        XCTAssertEqual(sink.events.count, 3, "record must not be called after close")

        // The eventful sink still receives the aggregates.
        let exported = sink.batches.flatMap { $0 }
        XCTAssertEqual(exported.map(\.name), ["Before", "Handle", "Plain", "UserRecordsPut"])
        XCTAssertEqual(find(exported, "Handle", dims(("stream", "s"), ("shard", "sh")))?.statistics,
                       MetricStatistics(count: 2, sum: 6.5, min: 2, max: 4.5))
    }

    func testRecordSeesTrimmedDimensionsAtSummary() throws {
        let clock = TestClock(42.75)
        let sink = EventSink()
        let m = try MetricsManager(level: .summary, sink: sink, clock: clock.reading)
        try m.start()
        try m.put("ErrorsByCode", 1, stream: "s", shardId: "sh", errorCode: "E")
        try m.put("ErrorsByCode", 2, shardId: "sh", errorCode: "E")
        try m.metric("ErrorsByCode", stream: "s", errorCode: "E").put(3)
        XCTAssertEqual(sink.events, [
            MetricEvent(name: "ErrorsByCode", value: 1, timestamp: 42.75, dimensions: dims(("stream", "s"))),
            MetricEvent(name: "ErrorsByCode", value: 2, timestamp: 42.75, dimensions: []),
            MetricEvent(name: "ErrorsByCode", value: 3, timestamp: 42.75, dimensions: dims(("stream", "s"))),
        ])
        try m.close()
    }

    func testPlainSinkIsNotTreatedAsEventful() throws {
        // InMemorySink has no record: puts after start just aggregate.
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        try m.put("A", 1)
        try m.close()
        XCTAssertEqual(sink.openCount, 1)
        XCTAssertEqual(sink.closeCount, 1)
        XCTAssertEqual(sink.snapshots.map(\.count), [1])
    }
}
