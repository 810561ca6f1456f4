import XCTest
import KPLMTestSupport
@testable import KPLM

/// Metric.put(many:at:) and MetricsManager.setFlushHook: how a layer that
/// buffers puts hands them over.
final class PutManyTests: XCTestCase {
    func testABatchLandsInTheSecondItNames() throws {
        let clock = TestClock(100.5)
        let sink = InMemorySink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        let h = try m.metric("B")
        try h.put(many: [1, 5, -2], at: 100.9)
        clock.now = 103.25
        try h.put(many: [10, 20], at: 101.2)
        try h.put(many: [7], at: 500)       // after now: counts as now
        try h.put(many: [Double]())
        XCTAssertEqual(try m.statistics("B", lastSeconds: 1), MetricStatistics(count: 1, sum: 7, min: 7, max: 7))
        XCTAssertEqual(try m.statistics("B", lastSeconds: 3), MetricStatistics(count: 3, sum: 37, min: 7, max: 20))
        XCTAssertEqual(try m.statistics("B"), MetricStatistics(count: 6, sum: 41, min: -2, max: 20))
        try m.flush()
        XCTAssertEqual(sink.snapshots.map(\.statistics), [MetricStatistics(count: 6, sum: 41, min: -2, max: 20)])
        XCTAssertEqual(sink.snapshots.first?.windowStart, 100)
        try m.close()
        assertThrows(.closed) { try h.put(many: [1]) }
    }

    func testABadBatchRecordsNothing() throws {
        let m = try detailed(TestClock(10))
        let h = try m.metric("B")
        assertThrows(.invalidArgument) { try h.put(many: [1, .nan, 2]) }
        assertThrows(.invalidArgument) { try h.put(many: [1, .infinity]) }
        assertThrows(.invalidArgument) { try h.put(many: [1], at: .infinity) }
        XCTAssertEqual(try m.statistics("B").count, 0)
    }

    func testTheFlushHookRunsFirstAndItsPutsArePartOfTheFlush() throws {
        let clock = TestClock(30)
        let sink = InMemorySink()
        let m = try detailed(clock, sink: sink)
        let h = try m.metric("Held")
        let held = Locked<[Double]>([2, 3])
        let nested = Locked<[MetricsError.Code]>([])
        try m.setFlushHook { [weak m] in
            let values = held.withLock { v -> [Double] in defer { v = [] }; return v }
            if !values.isEmpty {
                do throws(MetricsError) { try h.put(many: values, at: 30) } catch { XCTFail("\(error)") }
            }
            do throws(MetricsError) { try m?.flush() } catch { nested.withLock { $0.append(error.code) } }
        }
        try m.start()
        assertThrows(.invalidState) { try m.setFlushHook(nil) }
        try m.flush()
        XCTAssertEqual(sink.snapshots.map(\.statistics), [MetricStatistics(count: 2, sum: 5, min: 2, max: 3)])
        XCTAssertEqual(nested.withLock { $0 }, [.invalidState])
        try m.close()
    }

    /// A hook set with `runsBeforeClosing` also runs when close begins,
    /// while puts are accepted: what it hands over is in the final flush.
    /// Without it, the hook's puts at close are refused (`closed`).
    func testAHookThatRunsBeforeClosingHandsOverToTheFinalFlush() throws {
        for runsBeforeClosing in [true, false] {
            let sink = InMemorySink()
            let m = try detailed(TestClock(30), sink: sink)
            let h = try m.metric("Held")
            let held = Locked<[Double]>([])
            let refusals = Locked<[MetricsError.Code]>([])
            try m.setFlushHook({
                let values = held.withLock { v -> [Double] in defer { v = [] }; return v }
                guard !values.isEmpty else { return }
                do throws(MetricsError) { try h.put(many: values) } catch { refusals.withLock { $0.append(error.code) } }
            }, runsBeforeClosing: runsBeforeClosing)
            try m.start()
            held.withLock { $0 = [4, 5] }
            try m.close()
            try m.close()   // a second close runs no hook
            let exported = sink.snapshots.map(\.statistics)
            if runsBeforeClosing {
                XCTAssertEqual(exported, [MetricStatistics(count: 2, sum: 9, min: 4, max: 5)])
                XCTAssertEqual(refusals.withLock { $0 }, [])
            } else {
                XCTAssertEqual(exported, [])
                XCTAssertEqual(refusals.withLock { $0 }, [.closed])
            }
        }
    }
}
