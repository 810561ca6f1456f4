import Foundation
import CKPLMShims
import XCTest
import KPLMTestSupport
@testable import KPLM

/// A flush takes only the keys changed since the last one (ChangedSeries),
/// yet exports exactly what the full scan did: every changed key once, in
/// export order, whatever share of the keys changed.
final class ChangedKeysFlushTests: XCTestCase {
    private func stream(_ i: Int) -> String { "s\(String(i * 7919 % 1000, radix: 36))" }

    func testEachFlushExportsExactlyTheChangedKeysInExportOrder() throws {
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        var generator = SystemRandomNumberGenerator()
        let keys = 1000
        var expectedTotal = 0
        // Shares of changed keys on both sides of the direct-sort threshold
        // (1/16 of the keys), with new keys mixed in (the merge of keys added
        // since the last sort).
        for (round, share) in [1.0, 0.01, 0.5, 0.05, 0.2, 0.001].enumerated() {
            sink.removeAll()
            var expected: [String: Int] = [:]
            let created = round * 50
            for i in 0..<(keys + created) where Double.random(in: 0..<1, using: &generator) < share || i >= keys + created - 50 {
                let n = Int.random(in: 1...3, using: &generator)
                for _ in 0..<n { try m.put("Changed", 1, stream: stream(i)) }
                expected[stream(i), default: 0] += n
                expectedTotal += n
            }
            if round % 2 == 1 { clock.advance(1) }   // a new second: spills too
            try m.flush()
            let exported = sink.snapshots
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: exported.map { ($0.dimensions[0].value, $0.count) }),
                           expected, "round \(round), share \(share)")
            let order = exported.map { $0.dimensions[0].value }
            XCTAssertEqual(order, order.sorted { ExportOrder.compare($0, $1) < 0 }, "round \(round): not in export order")
        }
        // Nothing changed: nothing exported.
        sink.removeAll()
        try m.flush()
        XCTAssertTrue(sink.snapshots.isEmpty)
        try m.close()
        XCTAssertGreaterThan(expectedTotal, 0)
    }

    /// Batches large enough to be ordered by the keys' ranks (see
    /// `MetricsManager.takeBatch`), through what changes ranks: a key set
    /// that stays (no new ranking), a failed export (its data retained and
    /// merged), keys removed as idle and re-created, keys added.
    func testLargeBatchesStayInExportOrderAcrossRetriesRemovalsAndNewKeys() throws {
        let clock = TestClock(100)
        let sink = RecordingSink()
        let m = try detailed(clock, window: 2, sink: sink)
        try m.start()
        var expected: [String: Int] = [:]
        // Distinct for i < 10,007, created in an order unlike export order.
        func key(_ i: Int) -> String { "r" + String(i * 7919 % 10_007, radix: 36) }
        func put(_ streams: some Sequence<Int>) throws {
            for i in streams {
                try m.put("Ranked", 1, stream: key(i))
                expected[key(i), default: 0] += 1
            }
        }
        func flushAndCheck(_ label: String) throws {
            try m.flush()
            let exported = sink.batches.last ?? []
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: exported.map { ($0.dimensions[0].value, $0.count) }),
                           expected, label)
            let order = exported.map { $0.dimensions[0].value }
            XCTAssertEqual(order, order.sorted { ExportOrder.compare($0, $1) < 0 }, "\(label): not in export order")
            expected = [:]
        }
        try put(0..<600)
        try flushAndCheck("every key new")
        try put((0..<600).reversed())
        try flushAndCheck("the same keys again (ranks kept)")
        // A failed export: its data comes back, merged with new puts and new keys.
        try put(0..<300)
        sink.failExports(1)
        assertThrows(.sinkFailed) { try m.flush() }
        try put(200..<700)
        try flushAndCheck("retried, merged, with 100 new keys")
        // Keys 0..<350 go idle and are removed; 0..<100 come back (re-created)
        // in the same batch as keys kept busy and 50 new keys.
        clock.now = 101
        try put(350..<700)
        try flushAndCheck("half the keys busy")
        clock.now = 102.5
        try put(350..<700)
        try m.flush()   // removes 0..<350 (last put at second 100)
        expected = [:]
        XCTAssertEqual(m.metricCount, 350)
        try put(Array(0..<100) + Array(350..<700) + Array(1000..<1050))
        try flushAndCheck("re-created, kept and new keys")
        XCTAssertEqual(m.metricCount, 500)
        try m.close()
    }

    func testComparisonIsBytewise() {
        XCTAssertLessThan(ExportOrder.compare("a", "b"), 0)
        XCTAssertLessThan(ExportOrder.compare("ab", "abc"), 0)
        XCTAssertEqual(ExportOrder.compare("", ""), 0)
        XCTAssertGreaterThan(ExportOrder.compare("é", "z"), 0)       // UTF-8 0xC3 > 'z'
        XCTAssertLessThan(ExportOrder.compare("Z", "a"), 0)
        // Canonically equivalent but different bytes stay different.
        XCTAssertNotEqual(ExportOrder.compare("\u{E9}", "e\u{301}"), 0)
        let long = String(repeating: "x", count: 300)
        XCTAssertLessThan(ExportOrder.compare(long + "a", long + "b"), 0)
    }

    /// A flush reads only the cells of the threads that put on a key since
    /// the last flush (ChangedSeries: MetricSeries.changedWriters), and
    /// still takes everything: with reads (which drain every cell) and a
    /// new second (a spill) in between. Three threads keep their writer
    /// indices (three cells on the key) for the whole test.
    func testAFlushReadsOnlyTheCellsPutOnSinceTheLastOne() throws {
        try XCTSkipUnless(CellCollector.isAvailable, "no membarrier: every put takes the shared path")
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        let metric = try m.metric("Mixed", stream: "s")
        let writers = (0..<3).map { _ in PinnedThread() }
        defer { for w in writers { w.stop() } }
        let index = writers.map { w in w.run { Int(kplmshim_writer_index()) } }
        XCTAssertEqual(Set(index).count, 3)
        var expected = 0
        func put(_ w: Int, _ n: Int) {
            writers[w].run { for _ in 0..<n { try! metric.put(1) } }
            expected += n
        }
        func active(_ w: Int) -> Int {
            let series = metric.series
            return MetricSeries.cell(index[w], in: series.cells, of: Unmanaged.passUnretained(series))
                .active.pointee.load(ordering: .relaxed)
        }
        func flushAndCheck(_ label: String) throws {
            sink.removeAll()
            try m.flush()
            XCTAssertEqual(sink.snapshots.map(\.count).reduce(0, +), expected, label)
            expected = 0
        }
        put(0, 5); put(1, 7); put(2, 3)
        try flushAndCheck("three threads")
        XCTAssertEqual(m.context.collector.cellsReadByLastCollection, 3)
        // Only thread 1 put since: its cell is flipped, the others are not read.
        put(1, 4)
        let before = active(1)
        try flushAndCheck("thread 1")
        XCTAssertNotEqual(active(1), before, "the cell put on is flipped")
        XCTAssertEqual(m.context.collector.cellsReadByLastCollection, 1,
                       "the cells nobody put on since the last flush are not read")
        // Reads drain every cell between flushes; the flush still takes it all.
        put(0, 2)
        _ = m.snapshots()
        XCTAssertEqual(m.context.collector.cellsReadByLastCollection, 3, "a read reads every cell")
        put(2, 1)
        _ = m.snapshots()
        put(0, 1)
        try flushAndCheck("after reads")
        XCTAssertEqual(m.context.collector.cellsReadByLastCollection, 2)
        // A new second: thread 2's cell spills its first second into the series.
        put(2, 2)
        clock.advance(1)
        put(2, 2)
        try flushAndCheck("across a second")
        try flushAndCheck("nothing new")
        try m.close()
    }
}

/// IdleWatch: a key is due once, at the last second it was noted at.
final class IdleWatchTests: XCTestCase {
    func testAKeyIsDueAtTheLastSecondItWasNotedAt() {
        let a = MetricSeries.standalone(MetricKey(name: "a")), b = MetricSeries.standalone(MetricKey(name: "b"))
        var watch = IdleWatch()
        // Alternating seconds (the pattern of keys taken in export order).
        for _ in 0..<3 {
            watch.note(a, at: 10)
            watch.note(b, at: 11)
        }
        watch.note(a, at: 12)                          // a changed again later
        XCTAssertTrue(watch.due(atOrBefore: 9).isEmpty)
        XCTAssertTrue(watch.due(atOrBefore: 10).isEmpty)   // a's note at 10 is superseded
        XCTAssertEqual(watch.due(atOrBefore: 11).map(\.key.name), ["b"])
        XCTAssertEqual(watch.due(atOrBefore: 12).map(\.key.name), ["a"])
        XCTAssertTrue(watch.due(atOrBefore: 100).isEmpty)
    }

    /// A key noted at every flush of a second is held once for that second.
    func testAKeyNotedAgainAtTheSameSecondIsHeldOnce() {
        let a = MetricSeries.standalone(MetricKey(name: "a")), b = MetricSeries.standalone(MetricKey(name: "b"))
        var watch = IdleWatch()
        for _ in 0..<600 {
            watch.note(a, at: 10)
            watch.note(b, at: 10)
        }
        XCTAssertEqual(watch.entryCount, 2)
        watch.note(a, at: 11)
        watch.note(a, at: 10)   // back to 10: listed there again (the stale entry at 10 is skipped when due)
        XCTAssertEqual(watch.due(atOrBefore: 10).map(\.key.name).sorted(), ["a", "b"])   // each once
        XCTAssertTrue(watch.due(atOrBefore: 11).isEmpty)   // a's note at 11 is superseded
        XCTAssertEqual(watch.entryCount, 0)
    }
}

/// A thread that runs the closures it is handed, one at a time, so that it
/// keeps one writer index for as long as a test needs it.
final class PinnedThread: @unchecked Sendable {
    private let work = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private let job = Locked<(@Sendable () -> Void)?>(nil)

    init() {
        let (work, done, job) = (work, done, job)
        Thread {
            while true {
                work.wait()
                guard let body = job.withLock({ $0 }) else { return }
                body()
                done.signal()
            }
        }.start()
    }

    /// Runs `body` on the thread and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        let result = Locked<T?>(nil)
        job.withLock { $0 = { let value = body(); result.withLock { $0 = value } } }
        work.signal()
        done.wait()
        return result.withLock { $0! }
    }

    /// Ends the thread (its writer index goes back to the pool).
    func stop() {
        job.withLock { $0 = nil }
        work.signal()
    }
}
