import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM

/// A sink whose export (and record) can be made to hang until released.
final class GatedSink: EventfulMetricsSink, @unchecked Sendable {
    private struct State {
        var hangExports = false
        var hangRecords = false
        var exported: [MetricSnapshot] = []
        var events = 0
        var closed = false
        var closedWhileBusy = false
        var busy = 0
        var failExports = false
    }

    private let state = Locked(State())
    /// Signalled each time a hanging callback has started.
    let entered = DispatchSemaphore(value: 0)
    /// Signalled by the test to let every hanging callback return.
    let release = DispatchSemaphore(value: 0)

    func hangExports(_ on: Bool) { state.withLock { $0.hangExports = on } }
    func hangRecords(_ on: Bool) { state.withLock { $0.hangRecords = on } }
    func failExports(_ on: Bool) { state.withLock { $0.failExports = on } }

    func export(_ snapshots: [MetricSnapshot]) throws {
        let (hang, fail) = state.withLock { s in s.busy += 1; return (s.hangExports, s.failExports) }
        defer { state.withLock { $0.busy -= 1 } }
        if hang {
            entered.signal()
            release.wait()
        }
        if fail { throw SinkFailure() }
        state.withLock { $0.exported += snapshots }
    }

    func record(_ event: MetricEvent) {
        let hang = state.withLock { s in s.busy += 1; s.events += 1; return s.hangRecords }
        if hang {
            entered.signal()
            release.wait()
        }
        state.withLock { $0.busy -= 1 }
    }

    func close() {
        state.withLock { s in
            s.closedWhileBusy = s.busy > 0
            s.closed = true
        }
    }

    var exported: [MetricSnapshot] { state.withLock { $0.exported } }
    var closed: Bool { state.withLock { $0.closed } }
    var closedWhileBusy: Bool { state.withLock { $0.closedWhileBusy } }
    var events: Int { state.withLock { $0.events } }

    /// Total count exported per metric name.
    var countsByName: [String: Int] {
        exported.reduce(into: [:]) { $0[$1.name, default: 0] += $1.count }
    }
}

/// A slow or dead sink never blocks puts, other flushers, or close for long,
/// and loses nothing.
final class SlowSinkTests: XCTestCase {
    private func manager(_ sink: GatedSink, clock: TestClock, timeoutMs: Double = 200,
                         window: Int = 60) throws -> MetricsManager {
        try MetricsManager(level: .detailed, sink: sink, uploadIntervalMs: 3_600_000, windowSeconds: window,
                           exportTimeoutMs: timeoutMs, clock: clock.reading)
    }

    func testFlushBehindAHungExportTimesOutAndPutsKeepWorking() throws {
        let clock = TestClock(100)
        let sink = GatedSink()
        let m = try manager(sink, clock: clock)
        try m.start()
        try m.put("A", 1)
        sink.hangExports(true)
        let firstFlush = expectation(description: "the hung flush returns once released")
        Thread.detachNewThread {
            do { try m.flush() } catch { XCTFail("the released flush failed: \(error)") }
            firstFlush.fulfill()
        }
        XCTAssertEqual(sink.entered.wait(timeout: .now() + 5), .success, "the export never started")
        // Puts do not wait for the sink.
        for _ in 0..<1_000 { try m.put("B", 2) }
        // Another flusher gives up after the timeout instead of hanging.
        let started = Date()
        assertThrows(.sinkFailed) { try m.flush() }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "flush did not time out")
        sink.hangExports(false)
        sink.release.signal()
        wait(for: [firstFlush], timeout: 5)
        // Nothing was lost: the puts made meanwhile are exported by the next flush.
        try m.flush()
        XCTAssertEqual(sink.countsByName, ["A": 1, "B": 1_000])
        try m.close()
    }

    func testCloseWithADeadSinkReturnsAndFinishesInTheBackground() throws {
        let clock = TestClock(100)
        let sink = GatedSink()
        let m = try manager(sink, clock: clock)
        try m.start()
        try m.put("A", 1)
        try m.put("A", 3)
        sink.hangExports(true)
        let started = Date()
        assertThrows(.sinkFailed) { try m.close() }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "close did not time out")
        XCTAssertEqual(sink.entered.wait(timeout: .now() + 5), .success, "the final export never started")
        assertThrows(.closed) { try m.put("A", 1) }
        XCTAssertFalse(sink.closed, "the sink was closed while its export was running")
        // The sink comes back: the final export completes, then the sink closes.
        sink.hangExports(false)
        sink.release.signal()
        XCTAssertTrue(waitUntil { sink.closed })
        XCTAssertFalse(sink.closedWhileBusy)
        XCTAssertEqual(sink.exported.map(\.statistics), [MetricStatistics(count: 2, sum: 4, min: 1, max: 3)])
        // Later closes are no-ops.
        try m.close()
    }

    func testAfterATimedOutCloseFlushIsClosedAndTheFailedDataWaitsForTheNextClose() throws {
        let clock = TestClock(100)
        let sink = GatedSink()
        let m = try manager(sink, clock: clock)
        try m.start()
        try m.put("A", 1)
        sink.hangExports(true)
        sink.failExports(true)
        assertThrows(.sinkFailed) { try m.close() }
        XCTAssertEqual(sink.entered.wait(timeout: .now() + 5), .success, "the final export never started")
        // The final export still holds the export lock: flush says closed at once.
        assertThrows(.closed) { try m.flush() }
        // The background export fails: its data stays pending and the sink open.
        sink.hangExports(false)
        sink.release.signal()
        XCTAssertFalse(waitUntil(timeout: 0.5) { sink.closed }, "the sink was closed with data pending")
        sink.failExports(false)
        try m.close()
        XCTAssertTrue(sink.closed)
        XCTAssertEqual(sink.exported.map(\.statistics), [MetricStatistics(count: 1, sum: 1, min: 1, max: 1)])
        assertThrows(.closed) { try m.flush() }
    }

    func testAFailedFinalExportIsRetriedByEachCloseUntilTheSinkTakesIt() throws {
        let clock = TestClock(100)
        let sink = GatedSink()
        let m = try manager(sink, clock: clock)
        try m.start()
        try m.put("A", 1)
        sink.failExports(true)
        assertThrows(.sinkFailed) { try m.close() }
        assertThrows(.sinkFailed) { try m.close() }
        XCTAssertFalse(sink.closed)
        sink.failExports(false)
        try m.close()
        XCTAssertTrue(sink.closed)
        XCTAssertEqual(sink.exported.count, 1)
        try m.close()
    }

    func testSetSinkFromAnExportCallbackIsRefusedInsteadOfDeadlocking() throws {
        final class ReplacingSink: MetricsSink, @unchecked Sendable {
            weak var manager: MetricsManager?
            let outcome = Locked<MetricsError?>(nil)
            func export(_ snapshots: [MetricSnapshot]) throws {
                do throws(MetricsError) { try manager?.setSink(NullSink()) } catch {
                    outcome.withLock { $0 = error }
                }
            }
        }
        let sink = ReplacingSink()
        let m = try manager(GatedSink(), clock: TestClock(100))
        try m.setSink(sink)
        sink.manager = m
        try m.start()
        try m.put("A", 1)
        try m.flush()
        XCTAssertEqual(sink.outcome.withLock { $0?.code }, .invalidState)
        // Also from the final export on the uploader thread.
        sink.outcome.withLock { $0 = nil }
        try m.put("A", 1)
        try m.close()
        XCTAssertEqual(sink.outcome.withLock { $0?.code }, .invalidState)
    }

    func testARecordStillRunningDefersTheSinkClose() throws {
        let clock = TestClock(100)
        let sink = GatedSink()
        let m = try manager(sink, clock: clock)
        try m.start()
        sink.hangRecords(true)
        let put = expectation(description: "the put whose record hangs returns")
        Thread.detachNewThread {
            do { try m.put("A", 5) } catch { XCTFail("the put failed: \(error)") }
            put.fulfill()
        }
        XCTAssertEqual(sink.entered.wait(timeout: .now() + 5), .success, "record never started")
        // Close does not wait for the record: the observation was already
        // recorded, and the final export carries it.
        try m.close()
        XCTAssertEqual(sink.exported.map(\.statistics), [MetricStatistics(count: 1, sum: 5, min: 5, max: 5)])
        XCTAssertFalse(sink.closed, "the sink was closed while a record was running")
        sink.hangRecords(false)
        sink.release.signal()
        wait(for: [put], timeout: 5)
        XCTAssertTrue(waitUntil { sink.closed }, "the last record did not close the sink")
        XCTAssertFalse(sink.closedWhileBusy)
        XCTAssertEqual(sink.events, 1)
    }

    func testASinkDownLongerThanTheWindowKeepsBoundedMergedData() throws {
        let clock = TestClock(100)
        let sink = GatedSink()
        let m = try manager(sink, clock: clock, window: 2)
        try m.start()
        sink.failExports(true)
        let keys = 10
        var expected = [String: Int]()
        // 50 seconds down (25 windows), a failed flush every second.
        for _ in 0..<50 {
            for k in 0..<keys {
                try m.put("K\(k)", 0.5)
                expected["K\(k)", default: 0] += 1
            }
            assertThrows(.sinkFailed) { try m.flush() }
            XCTAssertLessThanOrEqual(m.retainedKeyCount, keys, "retained data grows with time")
            clock.advance(1)
        }
        sink.failExports(false)
        try m.flush()
        // One merged snapshot per key, covering the whole outage, exact.
        XCTAssertEqual(sink.exported.count, keys)
        XCTAssertEqual(sink.countsByName, expected)
        for s in sink.exported {
            XCTAssertEqual(s.sum, 25)
            XCTAssertEqual(s.windowStart, 100)
            XCTAssertEqual(s.windowEnd, 150)
        }
        XCTAssertEqual(m.retainedKeyCount, 0)
        try m.close()
    }
}
