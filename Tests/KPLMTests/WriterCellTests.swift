import Foundation
import Glibc
import XCTest
import KPLMTestSupport
@testable import KPLM

/// A clock that can hold one chosen thread inside its next reading, to put
/// that thread's observation "late" (across a second boundary) on purpose.
final class StallingClock: @unchecked Sendable {
    private struct State {
        var now: Double
        var stalled: pthread_t?
    }
    private let state: Locked<State>
    /// Signalled when the chosen thread has read the clock and is held.
    let held = DispatchSemaphore(value: 0)
    /// Signalled by the test to let it go on.
    let release = DispatchSemaphore(value: 0)

    init(_ start: Double) { state = Locked(State(now: start, stalled: nil)) }

    func set(_ t: Double) { state.withLock { $0.now = t } }
    /// Holds `thread` in its next reading (after the value is taken).
    func stall(_ thread: pthread_t) { state.withLock { $0.stalled = thread } }

    var reading: @Sendable () -> Double {
        { [self] in
            let (value, hold) = state.withLock { s -> (Double, Bool) in
                guard let t = s.stalled, pthread_equal(t, pthread_self()) != 0 else { return (s.now, false) }
                s.stalled = nil
                return (s.now, true)
            }
            if hold {
                held.signal()
                release.wait()
            }
            return value
        }
    }
}

/// The per-thread cells of the hot path: late writers, more threads than
/// writer indices, index recycling, exactness.
final class WriterCellTests: XCTestCase {
    func testALateObservationLandsInItsOwnSecondAndIsExportedOnce() throws {
        let clock = StallingClock(100.5)
        let sink = EventSink()
        let m = try MetricsManager(level: .detailed, sink: sink, uploadIntervalMs: 3_600_000, clock: clock.reading)
        try m.start()
        let late = Thread {
            clock.stall(pthread_self())
            do { try m.put("A", 1) } catch { XCTFail("the late put failed: \(error)") }   // reads 100.5, is held
        }
        late.start()
        XCTAssertEqual(clock.held.wait(timeout: .now() + 5), .success, "the late thread never read the clock")
        // Meanwhile the clock crosses a second; this thread puts and flushes.
        clock.set(101.5)
        try m.put("A", 2)
        try m.flush()
        clock.release.signal()
        XCTAssertTrue(waitUntil { m.windowStatisticsByKey()[MetricKey(name: "A")]?.count == 2 }, "the late put was lost")
        try m.flush()
        let batches = sink.batches
        XCTAssertEqual(batches.count, 2)
        // Each observation exported exactly once, each with its own second.
        XCTAssertEqual(batches.flatMap { $0 }.map(\.statistics),
                       [MetricStatistics(count: 1, sum: 2, min: 2, max: 2),
                        MetricStatistics(count: 1, sum: 1, min: 1, max: 1)])
        XCTAssertEqual(batches.last?.first?.windowStart, 100)
        // The rolling window holds both seconds.
        let window = try requireCount(m.snapshots(), 1)[0]
        XCTAssertEqual(window.statistics, MetricStatistics(count: 2, sum: 3, min: 1, max: 2))
        XCTAssertEqual(window.windowStart, 100)
        XCTAssertEqual(window.windowEnd, 102)
        try m.close()
    }

    func testMoreThreadsThanWriterIndicesKeepExactTotals() throws {
        let clock = TestClock(100)
        let sink = EventSink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        let threads = WriterIndices.capacity + 36
        let perThread = 2_000
        let alive = DispatchGroup()
        let go = DispatchSemaphore(value: 0)
        for _ in 0..<threads { alive.enter() }
        let stop = Flag()
        let peak = Locked(0)
        // Every writer makes its first put, then waits until all have: the
        // pool is then as full as it gets (a writer that finished early
        // would give its index back before the others took theirs).
        let firstPuts = DispatchGroup()
        for _ in 0..<threads { firstPuts.enter() }
        let proceed = DispatchSemaphore(value: 0)
        Thread {
            firstPuts.wait()
            peak.withLock { $0 = WriterIndices.inUse }
            for _ in 0..<threads { proceed.signal() }
        }.start()
        // A reader flushing and moving the clock while the writers run.
        let reader = Thread {
            while !stop.isSet {
                _ = try? m.flush()
                clock.advance(0.37)
            }
        }
        reader.start()
        Thread {
            alive.wait()
            for _ in 0..<threads { go.signal() }
        }.start()
        XCTAssertTrue(runThreads(threads, timeout: 60) { i in
            alive.leave()
            go.wait()   // every writer alive at once: some have no index
            let metric = try! m.metric("Hot", stream: "s\(i % 3)")
            for j in 0..<perThread {
                if j == 1 {
                    firstPuts.leave()
                    proceed.wait()
                }
                let value = Double(j % 9) * 0.25 - 1
                try! metric.put(value)
                try! m.put("ByName", value, stream: "s\(i % 3)")
            }
        })
        stop.set()
        try m.close()
        // The pool ran out: some threads took the shared path.
        XCTAssertEqual(peak.withLock { $0 }, WriterIndices.capacity)
        // Exact: counts, sums (multiples of 0.25), min and max.
        var expected = Totals()
        for i in 0..<threads {
            for j in 0..<perThread {
                let value = Double(j % 9) * 0.25 - 1
                expected.add(Totals.label("Hot", dims(("stream", "s\(i % 3)"))), value: value)
                expected.add(Totals.label("ByName", dims(("stream", "s\(i % 3)"))), value: value)
            }
        }
        XCTAssertEqual(Totals.exported(sink.batches.flatMap { $0 }), expected)
    }

    func testExitedThreadsGiveTheirWriterIndicesAndCellsBack() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        let metric = try m.metric("A")
        let before = WriterIndices.inUse
        // Many short-lived threads, a few at a time: far more than the pool.
        for _ in 0..<20 {
            XCTAssertTrue(runThreads(8) { _ in try! metric.put(1) })
        }
        XCTAssertTrue(waitUntil { WriterIndices.inUse <= before }, "threads kept \(WriterIndices.inUse - before) indices")
        // Cells are reused by the next owner of an index: bounded by the pool,
        // and in practice by the threads alive at once.
        XCTAssertLessThanOrEqual(metric.series.cellCount, WriterIndices.capacity)
        XCTAssertLessThan(metric.series.cellCount, 40)
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "A")]?.count, 160)
    }

    /// Writer indices past the table's inline entries (``CellTable``):
    /// their cells go to the overflow table, made on the first such put;
    /// a key removed as idle (with an overflow table, and without one: the
    /// shared table of placeholders) is re-created by those threads' puts.
    /// Eight threads holding their indices at once: at least four of them
    /// have one past the inline entries. Totals stay exact.
    func testWritersPastTheInlineEntriesUseTheOverflowTable() throws {
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try detailed(clock, window: 1, sink: sink)
        try m.start()
        let withOverflow = try m.metric("WithOverflow")
        let withoutOverflow = try m.metric("WithoutOverflow")
        let threads = 8
        /// Every thread puts once on `metric`, all holding their writer index at once.
        func putFromEveryThread(_ metric: Metric) {
            let held = DispatchGroup(), release = DispatchSemaphore(value: 0)
            for _ in 0..<threads { held.enter() }
            Thread {
                held.wait()
                for _ in 0..<threads { release.signal() }
            }.start()
            XCTAssertTrue(runThreads(threads) { _ in
                try! metric.put(1)
                held.leave()
                release.wait()
            })
        }
        let overflowWord = { (metric: Metric) in metric.series.cells.words[0].load(ordering: .acquiring) }

        putFromEveryThread(withOverflow)
        XCTAssertNotEqual(overflowWord(withOverflow), 0, "no writer index past the inline entries")
        XCTAssertNotEqual(overflowWord(withOverflow), CellTable.retiredOverflowBits)
        try withoutOverflow.put(1)   // this thread only
        try m.flush()

        // Both idle: removed. The second had no overflow table: it gets the shared one.
        clock.now = 102
        try m.flush()
        XCTAssertTrue(withOverflow.series.isRemoved)
        XCTAssertTrue(withoutOverflow.series.isRemoved)
        XCTAssertEqual(overflowWord(withoutOverflow), CellTable.retiredOverflowBits)

        // Puts from every thread re-create both keys and are recorded once.
        putFromEveryThread(withOverflow)
        putFromEveryThread(withoutOverflow)
        XCTAssertFalse(withOverflow.series.isRemoved)
        XCTAssertFalse(withoutOverflow.series.isRemoved)
        XCTAssertNotEqual(overflowWord(withoutOverflow), CellTable.retiredOverflowBits)
        try m.close()
        let exported = sink.snapshots.reduce(into: [String: Int]()) { $0[$1.name, default: 0] += $1.count }
        XCTAssertEqual(exported, ["WithOverflow": 2 * threads, "WithoutOverflow": 1 + threads])
    }

    func testSumsAreNeverDerivedBySubtraction() throws {
        // A design that exports "total now minus total at the last flush"
        // would lose the 1 next to 1e16; merging per-flush data keeps it.
        let clock = TestClock(100)
        let sink = EventSink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        try m.put("A", 1e16)
        try m.flush()
        try m.put("A", 1)
        try m.flush()
        try m.put("A", -0.1)
        clock.advance(1)
        try m.put("A", 0.1)
        try m.flush()
        XCTAssertEqual(sink.batches.map { $0.map(\.statistics) }, [
            [MetricStatistics(count: 1, sum: 1e16, min: 1e16, max: 1e16)],
            [MetricStatistics(count: 1, sum: 1, min: 1, max: 1)],
            [MetricStatistics(count: 2, sum: 0, min: -0.1, max: 0.1)],
        ])
        try m.close()
    }
}
