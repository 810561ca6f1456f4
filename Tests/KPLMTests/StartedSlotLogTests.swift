import CKPLMShims
import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM

/// StartedSlotLogs: a put after a flush starts its slot in its common case
/// and logs its key for the next reader, instead of listing it (which reads
/// the key's object); every reader lists what was logged, so flushes stay
/// exact across log blocks, threads and reads.
final class StartedSlotLogTests: XCTestCase {
    /// A started manager on the system clock (the common case needs the
    /// ticker's second), with the ticker running.
    private func started(_ sink: any MetricsSink, hook: (@Sendable () -> Void)? = nil) throws -> MetricsManager {
        try XCTSkipUnless(CellCollector.isAvailable, "no membarrier: every put takes the shared path")
        let m = try MetricsManager(level: .detailed, sink: sink, uploadInterval: .seconds(3600), windowSeconds: 60)
        if let hook { try m.setFlushHook(hook) }
        try m.start()
        XCTAssertTrue(waitUntil { kplmshim_cached_second() != Int64.min }, "the ticker never ticked")
        return m
    }

    func testAPutAfterAFlushIsLoggedThenListedByTheNextReader() throws {
        let sink = InMemorySink()
        let m = try started(sink)
        XCTAssertTrue(m.context.startedSlotLogs.isEnabled)
        let metric = try m.metric("Logged", stream: "s")
        try metric.put(1)   // the general path: makes the cell and the log
        try m.flush()
        XCTAssertEqual(sink.snapshots.map(\.sum), [1])
        sink.removeAll()
        try metric.put(2)   // the first put since the flush: starts the slot
        try metric.put(3)
        XCTAssertTrue(m.context.changed.listed.isEmpty, "the put listed its key instead of logging it")
        XCTAssertEqual(m.context.startedSlotLogs.unconsumedCount, 1)
        m.context.collector.takeStartedSlotLogs()
        XCTAssertEqual(m.context.changed.listed.map { ObjectIdentifier($0) }, [ObjectIdentifier(metric.series)])
        XCTAssertEqual(m.context.startedSlotLogs.unconsumedCount, 0)
        try m.flush()
        XCTAssertEqual(sink.snapshots.map(\.count), [2])
        XCTAssertEqual(sink.snapshots.map(\.sum), [5])
        try m.close()
    }

    /// A read takes the logs over before it reads the cells: it sees what
    /// logged puts recorded, and lists their keys.
    func testAReadSeesWhatLoggedPutsRecorded() throws {
        let sink = InMemorySink()
        let m = try started(sink)
        let metrics = try (0..<3).map { try m.metric("Read", stream: "s\($0)") }
        for metric in metrics { try metric.put(1) }
        try m.flush()
        for _ in 0..<4 { try metrics[1].put(2) }   // logged: not listed, no mark yet
        XCTAssertEqual(m.context.startedSlotLogs.unconsumedCount, 1)
        let counts = Dictionary(uniqueKeysWithValues: m.snapshots().map { ($0.dimensions[0].value, $0.count) })
        XCTAssertEqual(counts, ["s0": 1, "s1": 5, "s2": 1])
        XCTAssertEqual(m.context.startedSlotLogs.unconsumedCount, 0)
        XCTAssertEqual(m.context.changed.listed.map { ObjectIdentifier($0) }, [ObjectIdentifier(metrics[1].series)])
        try m.close()
    }

    /// More keys than a log block holds, from two threads, with reads in
    /// between: each flush exports exactly what was put since the last.
    func testFlushesStayExactAcrossBlocksThreadsAndReads() throws {
        let sink = RecordingSink()
        let m = try started(sink)
        let keys = StartedSlotLogs.blockCapacity * 3 + 7
        let metrics = try (0..<keys).map { try m.metric("Many", stream: "s\($0)") }
        let writers = (0..<2).map { _ in PinnedThread() }
        defer { for w in writers { w.stop() } }
        for round in 0..<6 {
            for (t, w) in writers.enumerated() {
                w.run { for (i, metric) in metrics.enumerated() where (i + round + t) % 3 != 0 { try! metric.put(1) } }
            }
            if round % 2 == 1 { _ = m.snapshots() }   // a read flips every cell: the next put starts again
            for (t, w) in writers.enumerated() {
                w.run { for (i, metric) in metrics.enumerated() where (i + t) % 2 == 0 { try! metric.put(1) } }
            }
            try m.flush()
            var expected: [String: Int] = [:]
            for i in 0..<keys {
                for t in 0..<2 {
                    if (i + round + t) % 3 != 0 { expected["s\(i)", default: 0] += 1 }
                    if (i + t) % 2 == 0 { expected["s\(i)", default: 0] += 1 }
                }
            }
            let exported = sink.batches.last ?? []
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: exported.map { ($0.dimensions[0].value, $0.count) }),
                           expected.filter { $0.value > 0 }, "round \(round)")
            XCTAssertEqual(m.context.startedSlotLogs.unconsumedCount, 0, "round \(round)")
        }
        try m.close()
    }

    /// Two threads putting on more keys than a block holds while a third
    /// flushes and reads in a loop: the totals exported are the totals put.
    func testPutsRacingWithFlushesLoseNothing() throws {
        let sink = RecordingSink()
        let m = try started(sink)
        let keys = StartedSlotLogs.blockCapacity * 2 + 3
        let metrics = try (0..<keys).map { try m.metric("Racing", stream: "s\($0)") }
        let rounds = 40
        let running = Locked(2)
        let group = DispatchGroup()
        for t in 0..<2 {
            group.enter()
            Thread {
                for round in 0..<rounds {
                    for (i, metric) in metrics.enumerated() where (i + round + t) % 4 != 0 { try! metric.put(1) }
                }
                running.withLock { $0 -= 1 }
                group.leave()
            }.start()
        }
        var reads = 0
        while running.withLock({ $0 }) > 0 {
            try m.flush()
            if reads % 3 == 0 { _ = m.snapshots() }
            reads += 1
        }
        group.wait()
        try m.flush()
        var expected = 0
        for t in 0..<2 { for round in 0..<rounds { for i in 0..<keys where (i + round + t) % 4 != 0 { expected += 1 } } }
        let exported = sink.batches.joined().map(\.count).reduce(0, +)
        XCTAssertEqual(exported, expected)
        XCTAssertEqual(m.context.startedSlotLogs.unconsumedCount, 0)
        try m.close()
    }

    /// A read takes the log over like a flush: reads between flushes do not
    /// grow it (a key's slot is started again after each read).
    func testReadsKeepTheLogToOneEntryAKey() throws {
        let sink = InMemorySink()
        let m = try started(sink)
        let metric = try m.metric("Read", stream: "s")
        try metric.put(1)
        try m.flush()
        sink.removeAll()
        for _ in 0..<2_000 {
            try metric.put(1)
            _ = m.snapshots()
        }
        try metric.put(1)
        XCTAssertEqual(m.context.startedSlotLogs.unconsumedCount, 1)
        try m.flush()
        XCTAssertEqual(sink.snapshots.map(\.count), [2_001])
        try m.close()
    }

    /// Keys whose slots were started in the common case go idle, are
    /// removed and re-created like any other (system clock, one-second
    /// window), and every put is exported once.
    func testLoggedKeysAreRemovedAsIdleAndReCreated() throws {
        try XCTSkipUnless(CellCollector.isAvailable, "no membarrier: every put takes the shared path")
        let sink = InMemorySink()
        let m = try MetricsManager(level: .detailed, sink: sink, uploadInterval: .seconds(3600), windowSeconds: 1)
        try m.start()
        XCTAssertTrue(waitUntil { kplmshim_cached_second() != Int64.min })
        let handles = try (0..<600).map { try m.metric("Idle", stream: "s\($0)") }
        var put = 0
        for round in 0..<3 {
            for h in handles { try h.put(1) }   // after the first round: after a flush
            put += handles.count
            if round > 0 { XCTAssertGreaterThan(m.context.startedSlotLogs.unconsumedCount, 0) }
            try m.flush()
        }
        XCTAssertTrue(waitUntil(timeout: 10) { (try? m.flush()) != nil && m.metricCount == 0 },
                      "the keys were never removed as idle")
        for h in handles { try h.put(1) }   // re-creates each key
        put += handles.count
        try m.flush()
        XCTAssertEqual(m.metricCount, handles.count)
        XCTAssertEqual(sink.snapshots.map(\.count).reduce(0, +), put)
        XCTAssertEqual(m.context.startedSlotLogs.unconsumedCount, 0)
        try m.close()
    }

    /// With a flush hook, slots are started by the general path (in a put
    /// frame a signal handler's flush sees): the log stays disabled.
    func testAFlushHookKeepsTheLogDisabled() throws {
        let sink = InMemorySink()
        let m = try started(sink, hook: {})
        XCTAssertFalse(m.context.startedSlotLogs.isEnabled)
        let metric = try m.metric("Hooked", stream: "s")
        try metric.put(1)
        try m.flush()
        try metric.put(1)
        XCTAssertEqual(m.context.changed.listed.count, 1, "the put after the flush lists its key itself")
        XCTAssertEqual(m.context.startedSlotLogs.unconsumedCount, 0)
        try m.close()
    }
}
