import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM

/// The async forms of flush and close: same results as the synchronous
/// ones, and they suspend instead of blocking a thread of the cooperative pool.
final class AsyncLifecycleTests: XCTestCase {
    /// The same puts flushed sync on one manager and async on another: the
    /// sinks receive the same batches.
    func testAsyncFlushExportsWhatSyncWould() async throws {
        let clock = TestClock(100.2)
        let (syncSink, asyncSink) = (InMemorySink(), InMemorySink())
        let viaSync = try detailed(clock, sink: syncSink)
        let viaAsync = try detailed(clock, sink: asyncSink)
        for m in [viaSync, viaAsync] {
            try m.start()
            try m.put("A", 1)
            try m.put("B", 10, stream: "s")
            try m.put("A", 4)
        }
        let syncFlush: () throws(MetricsError) -> Void = viaSync.flush
        try syncFlush()
        try await viaAsync.flush()
        clock.now = 102
        for m in [viaSync, viaAsync] { try m.put("A", 2) }
        try syncFlush()
        try await viaAsync.flush()

        XCTAssertEqual(asyncSink.batches.map(withoutTimestamps), syncSink.batches.map(withoutTimestamps))
        let first = try requireCount(try requireCount(asyncSink.batches, 2)[0], 2)
        XCTAssertEqual(first[0].statistics, MetricStatistics(count: 2, sum: 5, min: 1, max: 4))
        try await viaSync.close()
        try await viaAsync.close()
    }

    /// The errors of the synchronous flush, through the async one.
    func testAsyncFlushThrowsWhatSyncWould() async throws {
        let clock = TestClock(100)
        let sink = RecordingSink()
        let m = try detailed(clock, sink: sink)
        await assertAsyncThrows(.invalidState) { () async throws(MetricsError) in try await m.flush() }
        try m.start()
        try m.put("A", 3)
        sink.failExports(1)
        await assertAsyncThrows(.sinkFailed) { () async throws(MetricsError) in try await m.flush() }
        // Kept, and offered again by the next flush.
        try await m.flush()
        let exports = sink.batches
        XCTAssertEqual(exports.count, 2)
        XCTAssertEqual(exports.last.map(withoutTimestamps), exports.first.map(withoutTimestamps))
        try await m.close()
        await assertAsyncThrows(.closed) { () async throws(MetricsError) in try await m.flush() }
    }

    /// The async close makes the final flush, closes the sink once, and is
    /// idempotent.
    func testAsyncCloseMakesTheFinalFlush() async throws {
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        for value in 1...100 { try m.put("A", Double(value)) }
        try await m.close()
        XCTAssertEqual(sink.snapshots.map(\.statistics), [MetricStatistics(count: 100, sum: 5050, min: 1, max: 100)])
        XCTAssertEqual(sink.closeCount, 1)
        XCTAssertTrue(m.isClosed)
        assertThrows(.closed) { try m.put("A", 1) }
        try await m.close()
        XCTAssertEqual(sink.closeCount, 1)
    }

    /// A failed final export through the async close: `sinkFailed`, the data
    /// kept, and a later async close delivers it.
    func testAsyncCloseKeepsAFailedFinalExport() async throws {
        let sink = RecordingSink()
        let m = try detailed(TestClock(100), sink: sink)
        try m.start()
        try m.put("A", 7)
        sink.failExports(1)
        await assertAsyncThrows(.sinkFailed) { () async throws(MetricsError) in try await m.close() }
        try await m.close()
        let exports = sink.batches
        XCTAssertEqual(exports.count, 2)
        XCTAssertEqual(exports.last?.map(\.statistics), [MetricStatistics(count: 1, sum: 7, min: 7, max: 7)])
        XCTAssertEqual(sink.calls.last, .close)
    }

    /// More concurrent async flushes than the cooperative pool has threads,
    /// while the sink holds the first export: other tasks still run (the
    /// flushes wait on kplm's threads, not the pool's), and once the sink
    /// returns every flush completes and the data is exported exactly once.
    ///
    /// With the synchronous flush called from the same tasks, the pool's
    /// threads (one per core) all block, the probe cannot run until the
    /// watchdog releases the sink, and the test fails.
    func testConcurrentAsyncFlushesDoNotBlockTheCooperativePool() async throws {
        let sink = GatedSink()
        let m = try MetricsManager(level: .detailed, sink: sink, uploadInterval: .seconds(3600),
                                   exportTimeout: .seconds(120))
        try m.start()
        for value in 1...10 { try m.put("A", Double(value)) }
        sink.hangExports(true)

        // Releases the sink after 30 s whatever happens, so that a broken
        // build fails instead of hanging.
        let probeDone = DispatchSemaphore(value: 0)
        let watchdogFired = Locked(false)
        let watchdog = Thread {
            if probeDone.wait(timeout: .now() + 30) == .timedOut {
                watchdogFired.withLock { $0 = true }
                sink.hangExports(false)
                sink.release.signal()
            }
        }
        watchdog.start()

        let flushes = 4 * ProcessInfo.processInfo.activeProcessorCount + 8
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<flushes {
                group.addTask { try await m.flush() }
            }
            // The first export hangs in the sink; give the other flushes
            // time to be waiting for it.
            try await waitAsync { sink.entered.wait(timeout: .now()) == .success }
            try await Task.sleep(for: .milliseconds(100))

            // The probe: as many small tasks as the pool has threads, and more.
            let probeStart = ContinuousClock.now
            await withTaskGroup(of: Int.self) { probes in
                for i in 0..<flushes { probes.addTask { await Task.yield(); return i } }
                await probes.waitForAll()
            }
            let probeTime = ContinuousClock.now - probeStart
            probeDone.signal()
            print("AsyncLifecycleTests: \(flushes) async flushes waiting; \(flushes) probe tasks ran in \(probeTime)")
            XCTAssertFalse(watchdogFired.withLock { $0 },
                           "the probe tasks could not run while the flushes waited: the pool was blocked")
            sink.hangExports(false)
            sink.release.signal()
            try await group.waitForAll()
        }
        print("AsyncLifecycleTests: all flushes done \(ContinuousClock.now - started) after they started")
        XCTAssertEqual(sink.countsByName, ["A": 10], "exported exactly once")
        try await m.close()
    }

    /// A flush awaited by a task that is cancelled still completes and
    /// exports; cancellation neither skips nor interrupts it.
    func testCancelledAsyncFlushStillCompletes() async throws {
        let sink = GatedSink()
        let m = try MetricsManager(level: .detailed, sink: sink, uploadInterval: .seconds(3600),
                                   exportTimeout: .seconds(120))
        try m.start()
        try m.put("A", 1)
        sink.hangExports(true)
        let flushing = Task { try await m.flush() }
        try await waitAsync { sink.entered.wait(timeout: .now()) == .success }
        flushing.cancel()
        sink.hangExports(false)
        sink.release.signal()
        try await flushing.value
        XCTAssertEqual(sink.countsByName, ["A": 1])

        // Cancelled before it even began: the close still makes the final flush.
        try m.put("B", 2)
        let closing = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await m.close()
        }
        try await closing.value
        XCTAssertEqual(sink.countsByName, ["A": 1, "B": 1])
        XCTAssertTrue(sink.closed)
    }

    /// In async code, the synchronous form stays reachable through a
    /// synchronous function value, and a sync caller is unchanged.
    func testSyncFormsStayCallable() async throws {
        let sink = InMemorySink()
        let m = try detailed(TestClock(100), sink: sink)
        try m.start()
        try m.put("A", 1)
        try Self.flushSynchronously(m)
        XCTAssertEqual(sink.batches.count, 1)
        let close: () throws(MetricsError) -> Void = m.close
        try close()
        XCTAssertEqual(sink.closeCount, 1)
    }

    /// A synchronous caller, written as before the async forms existed.
    private static func flushSynchronously(_ m: MetricsManager) throws { try m.flush() }

    // MARK: Helpers

    /// `batch` with its wall-clock export times zeroed (they differ between
    /// two flushes made one after the other).
    private func withoutTimestamps(_ batch: [MetricSnapshot]) -> [MetricSnapshot] {
        batch.map { s in
            var s = s
            s.timestampUnix = 0
            return s
        }
    }

    /// Asserts `body` throws a MetricsError of `code`.
    private func assertAsyncThrows(_ code: MetricsError.Code, file: StaticString = #filePath, line: UInt = #line,
                                   _ body: () async throws(MetricsError) -> Void) async {
        do {
            try await body()
            XCTFail("expected \(code), nothing was thrown", file: file, line: line)
        } catch {
            XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
        }
    }

    /// Polls `condition` every 5 ms (suspending), failing after 30 s.
    private func waitAsync(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                XCTFail("timed out")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
