import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM

/// SPEC §10, first rule: a key with no observation inside its window and
/// nothing pending is removed at a flush, freeing its place and its memory;
/// a handle to it stays valid and re-creates it.
final class IdleKeyRemovalTests: XCTestCase {
    /// Exported count per key name (snapshots without dimensions).
    private func exportedCounts(_ sink: InMemorySink) -> [String: Int] {
        sink.snapshots.reduce(into: [:]) { $0[$1.name + ($1.dimensions.first.map { "/" + $0.value } ?? ""), default: 0] += $1.count }
    }

    /// A handle to key `name` (`stream`), put once at second 100 and
    /// removed as idle by the flush at 105 (`m`: window 1 s, started, on
    /// `clock`, at 100).
    private func removedHandle(_ m: MetricsManager, _ clock: TestClock, _ name: String,
                               stream: String? = nil) throws -> Metric {
        let handle = try m.metric(name, stream: stream)
        try handle.put(1)
        try m.flush()
        clock.now = 105
        try m.flush()
        return handle
    }

    func testIdleKeysGiveTheirPlaceBack() throws {
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try detailed(clock, window: 2, sink: sink, maxMetrics: 3)
        try m.start()
        for stream in ["a", "b", "c"] { try m.put("UserRecordsPut", 1, stream: stream) }
        assertThrows(.limitReached) { try m.put("UserRecordsPut", 1, stream: "d") }
        try m.flush()
        XCTAssertEqual(m.metricCount, 3)

        // Second 101: second 100 is still inside the 2-second window.
        clock.now = 101.5
        try m.flush()
        XCTAssertEqual(m.metricCount, 3)
        assertThrows(.limitReached) { try m.put("UserRecordsPut", 1, stream: "d") }

        // Second 102: 100 left the window (102 - 2); exported, so idle.
        clock.now = 102
        try m.flush()
        XCTAssertEqual(m.metricCount, 0)
        for stream in ["d", "e", "f"] { try m.put("UserRecordsPut", 2, stream: stream) }
        XCTAssertEqual(m.metricCount, 3)
        try m.close()
        XCTAssertEqual(exportedCounts(sink), ["UserRecordsPut/a": 1, "UserRecordsPut/b": 1, "UserRecordsPut/c": 1,
                                              "UserRecordsPut/d": 1, "UserRecordsPut/e": 1, "UserRecordsPut/f": 1,
                                              "KplmMetricsRefused": 2])
    }

    /// The default sink (``NullSink``) is handed nothing (a flush makes
    /// nothing for it), yet its flush takes each key's data as an accepted
    /// export does: the keys go once idle, none kept for unexported data.
    func testTheDefaultSinksFlushTakesTheData() throws {
        let clock = TestClock(100)
        let m = try detailed(clock, window: 1)
        try m.start()
        for stream in ["a", "b"] { try m.put("UserRecordsPut", 1, stream: stream) }
        try m.flush()
        XCTAssertEqual(m.metricCount, 2)
        clock.now = 105
        try m.flush()
        XCTAssertEqual(m.metricCount, 0)
        try m.close()
    }

    func testAKeyWithUnexportedDataIsKept() throws {
        let clock = TestClock(100)
        let sink = RecordingSink()
        let m = try detailed(clock, window: 1, sink: sink, maxMetrics: 1)
        try m.start()
        try m.put("A", 5)
        sink.failExports(2)
        clock.now = 110
        assertThrows(.sinkFailed) { try m.flush() }
        assertThrows(.sinkFailed) { try m.flush() }   // retained, not idle
        XCTAssertEqual(m.metricCount, 1)
        assertThrows(.limitReached) { try m.put("B") }
        try m.flush()                                // exported now, removed at the next flush
        XCTAssertEqual(m.metricCount, 1)
        try m.flush()
        XCTAssertEqual(m.metricCount, 0)
        try m.put("B")
        try m.close()
        let exported = sink.batches.flatMap { $0 }
        // Offered three times (two failed exports, then the one that took it).
        XCTAssertEqual(exported.filter { $0.name == "A" }.map(\.statistics),
                       Array(repeating: MetricStatistics(count: 1, sum: 5, min: 5, max: 5), count: 3))
        XCTAssertEqual(exported.filter { $0.name == "B" }.map(\.count), [1])
    }

    /// A key changed since the last flush and due for the idle check (an
    /// earlier flush took it, and its window has since passed) is checked
    /// with its new data still pending, so the flush that exports that data
    /// keeps it: removed, it would go while its last data is in that
    /// flush's export (here a failed one). The collection takes the pending
    /// data of the keys it drains, but not of a key due for the check.
    func testAKeyChangedAndDueIsKeptByTheFlushExportingItsData() throws {
        let clock = TestClock(100)
        let sink = RecordingSink()
        let m = try detailed(clock, window: 1, sink: sink, maxMetrics: 1)
        try m.start()
        let a = try m.metric("A")
        try a.put(1)
        try m.flush()                                // takes A: due for the check from second 101
        try a.put(2)                                 // A changed again, in second 100
        clock.now = 105
        sink.failExports(1)
        assertThrows(.sinkFailed) { try m.flush() }  // A's 2: offered, retained
        XCTAssertEqual(m.metricCount, 1, "removed while its data was in the flush's export")
        try m.flush()                                // exported now, removed at the next flush
        XCTAssertEqual(m.metricCount, 1)
        try m.flush()
        XCTAssertEqual(m.metricCount, 0)
        try m.close()
        let exported = sink.batches.flatMap { $0 }
        XCTAssertEqual(exported.filter { $0.name == "A" }.map(\.statistics),
                       [MetricStatistics(count: 1, sum: 1, min: 1, max: 1),
                        MetricStatistics(count: 1, sum: 2, min: 2, max: 2),
                        MetricStatistics(count: 1, sum: 2, min: 2, max: 2)])
    }

    func testAHandleReCreatesItsRemovedKey() throws {
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try detailed(clock, window: 1, sink: sink, maxMetrics: 1)
        try m.start()
        let handle = try removedHandle(m, clock, "A", stream: "s")
        XCTAssertEqual(m.metricCount, 0)
        XCTAssertTrue(handle.series.isRemoved)

        try handle.put(2)                            // re-created, same series
        XCTAssertEqual(m.metricCount, 1)
        // Cumulative statistics start again, as for a key created anew.
        XCTAssertEqual(try m.statistics("A", stream: "s").count, 1)
        XCTAssertFalse(handle.series.isRemoved)
        try m.put("A", 3, stream: "s")               // by names: the same key
        XCTAssertTrue(try m.metric("A", stream: "s") === handle)
        try m.flush()
        XCTAssertEqual(sink.batches.last?.map(\.statistics), [MetricStatistics(count: 2, sum: 5, min: 2, max: 3)])

        // Removed again; the cap is then taken by another key: the handle's
        // put is refused and counted like a refused new key.
        clock.now = 110
        try m.flush()
        try m.put("B")
        assertThrows(.limitReached) { try handle.put(4) }
        assertThrows(.limitReached) { try handle.put(many: [4, 5]) }
        try m.close()
        XCTAssertEqual(find(sink.snapshots, "KplmMetricsRefused")?.count, 3)   // one put, a batch of two
        XCTAssertNil(sink.snapshots.first { $0.name == "A" && $0.sum == 4 })
        // After close a put is refused as closed, removed key or not (found
        // by fuzz_abi: it reported the full cap), and nothing is re-created.
        assertThrows(.closed) { try handle.put(4) }
        assertThrows(.closed) { try handle.put(many: [4, 5]) }
    }

    /// A handle to a removed key, the cap not full: after close its put is
    /// refused as closed and does not re-create the key.
    func testAfterCloseAHandleToARemovedKeyIsRefusedAsClosed() throws {
        let clock = TestClock(100)
        let m = try detailed(clock, window: 1, sink: InMemorySink(), maxMetrics: 10)
        try m.start()
        let handle = try removedHandle(m, clock, "A")
        XCTAssertTrue(handle.series.isRemoved)
        try m.close()
        assertThrows(.closed) { try handle.put(2) }
        assertThrows(.closed) { try handle.put(many: [2, 3]) }
        XCTAssertTrue(handle.series.isRemoved)
        XCTAssertEqual(m.metricCount, 0)
    }

    func testByNamesReCreationReusesAHeldMetric() throws {
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try detailed(clock, window: 1, sink: sink)
        try m.start()
        let handle = try removedHandle(m, clock, "A")
        XCTAssertEqual(m.metricCount, 0)
        try m.put("A", 2)                            // re-creates the key with the handle's metric
        try handle.put(3)
        try m.flush()
        XCTAssertEqual(sink.batches.last?.map(\.name), ["A"])
        XCTAssertEqual(sink.batches.last?.first?.statistics, MetricStatistics(count: 2, sum: 5, min: 2, max: 3))
        try m.close()
    }

    func testARemovedKeyIsFreedWhenNothingHoldsIt() throws {
        let clock = TestClock(100)
        let m = try detailed(clock, window: 1, sink: InMemorySink())
        try m.start()
        weak var removed: Metric?
        do {
            let metric = try m.metric("A")
            try metric.put(1)
            removed = metric
        }
        try m.flush()
        XCTAssertNotNil(removed)                     // live: the registry holds it
        clock.now = 105
        try m.flush()
        XCTAssertNil(removed, "the removed key's metric (and series, cells) must be freed")
        XCTAssertEqual(m.metricCount, 0)
        try m.close()
    }

    /// Puts by names and through handles race with flushes that remove
    /// keys, on the system clock (so puts take the common case, on writer
    /// cells) with a 1-second window: every accepted put is exported
    /// exactly once, every refusal is counted. Run under TSan by CI's
    /// sanitizer stage.
    func testPutsRacingWithRemovalsAreExact() throws {
        let sink = InMemorySink()
        let m = try MetricsManager(level: .detailed, sink: sink, uploadIntervalMs: 3_600_000, windowSeconds: 1,
                                   maxMetrics: 24)
        try m.start()
        let keys = 32
        let handles = try (0..<8).map { try m.metric("H", stream: "h\($0)") }
        let accepted = Locked([String: Int]())
        let refused = Locked(0)
        let stop = Locked(false)
        let group = DispatchGroup()
        for t in 0..<3 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                var mine = [String: Int](), denied = 0, i = 0
                while !stop.withLock({ $0 }) {
                    i += 1
                    do {
                        if t == 2 {
                            let h = (i / 50) % handles.count
                            try handles[h].put(1)
                            mine["H/h\(h)", default: 0] += 1
                        } else {
                            // A rotating key set: each key is put for a while, then left idle.
                            let k = (i / 200 + t * 7) % keys
                            try m.put("P", 1, stream: "k\(k)")
                            mine["P/k\(k)", default: 0] += 1
                        }
                    } catch let error as MetricsError where error.code == .limitReached {
                        denied += 1
                    } catch {
                        XCTFail("\(error)")
                        return
                    }
                    if i % 1000 == 0 { usleep(200) }
                }
                accepted.withLock { for (k, n) in mine { $0[k, default: 0] += n } }
                refused.withLock { $0 += denied }
            }
        }
        let deadline = Date().addingTimeInterval(3.5)
        var flushes = 0
        while Date() < deadline {
            try m.flush()
            flushes += 1
            usleep(20_000)
        }
        stop.withLock { $0 = true }
        group.wait()
        try m.close()
        var exported = exportedCounts(sink)
        let exportedRefused = exported.removeValue(forKey: "KplmMetricsRefused") ?? 0
        XCTAssertEqual(exported, accepted.withLock { $0 })
        XCTAssertEqual(exportedRefused, refused.withLock { $0 })
        XCTAssertGreaterThan(flushes, 10)
        print("racing removals: \(accepted.withLock { $0.values.reduce(0, +) }) puts accepted, "
              + "\(refused.withLock { $0 }) refused, \(flushes) flushes")
    }
}
