import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM

/// `AsyncMetricsSink`: the contract of a synchronous sink (open once, one
/// call at a time, data kept when an export throws, close once after the
/// final export), with exports that suspend; an async flush awaits the
/// export on its caller's executor, every other call on the sink's thread.
final class AsyncSinkTests: XCTestCase {
    /// Start, a synchronous flush, close: open, export, final export,
    /// close, in that order, each on the sink's thread ("kplm-sink"), the
    /// statistics exact.
    func testSynchronousCallsAwaitTheSinkOnItsOwnThread() throws {
        let clock = TestClock(100)
        let sink = RecordingAsyncSink()
        let m = try MetricsManager(configuration: settings(clock), sink: sink)
        try m.start()
        try m.put("A", 1)
        try m.put("A", 4)
        try m.flush()
        try m.put("B", 2, stream: "s")
        try m.close()

        XCTAssertEqual(sink.log.calls.map(\.kind), ["open", "export", "export", "close"])
        XCTAssertEqual(sink.threadNames, Array(repeating: "kplm-sink", count: 4))
        let exports = sink.log.batches
        XCTAssertEqual(exports[0].map(\.name), ["A"])
        XCTAssertEqual(exports[0][0].statistics, MetricStatistics(count: 2, sum: 5, min: 1, max: 4))
        XCTAssertEqual(exports[1].map(\.name), ["B"])
        // The sink's thread ends after the sink's close.
        XCTAssertTrue(waitUntil(seconds: 10) { threadsNamed("kplm-sink") == 0 })
    }

    /// `await m.flush()` from an actor: the export runs isolated to that
    /// actor (the caller's executor); a flush from no actor does not.
    func testAsyncFlushAwaitsTheExportOnTheCallersActor() async throws {
        let clock = TestClock(100)
        let sink = RecordingAsyncSink()
        let m = try MetricsManager(configuration: settings(clock), sink: sink)
        try m.start()
        let caller = FlushingActor()
        try m.put("A", 1)
        try await caller.flush(m)
        try m.put("A", 2)
        try await m.flush()
        try await m.close()

        let isolations = sink.exportIsolations
        XCTAssertEqual(isolations.count, 2)
        XCTAssertEqual(isolations.first, ObjectIdentifier(caller))
        XCTAssertEqual(isolations.last, .some(nil))
        XCTAssertEqual(sink.log.batches.first?.first?.statistics, MetricStatistics(count: 1, sum: 1, min: 1, max: 1))
    }

    /// An export that throws fails the flush with `sinkFailed` and keeps
    /// its data: the next flush offers it again, merged with what came
    /// since, and nothing is exported twice.
    func testAFailedAsyncExportKeepsItsData() async throws {
        let clock = TestClock(100)
        let sink = RecordingAsyncSink()
        let m = try MetricsManager(configuration: settings(clock), sink: sink)
        try m.start()
        try m.put("A", 1)
        sink.log.failExports(1)
        do {
            try await m.flush()
            XCTFail("the flush should have failed")
        } catch {
            XCTAssertEqual(error.code, .sinkFailed)
        }
        try m.put("A", 3)
        try await m.flush()
        try await m.flush()   // nothing new: no export
        try await m.close()

        let exports = sink.log.batches
        XCTAssertEqual(exports.count, 2, "\(exports)")
        XCTAssertEqual(exports[1].first?.statistics, MetricStatistics(count: 2, sum: 4, min: 1, max: 3))
    }

    /// An open that throws fails start with `sinkFailed`; the manager stays
    /// new and a later start opens the sink again.
    func testAFailedAsyncOpenFailsStart() throws {
        let sink = RecordingAsyncSink()
        let m = try MetricsManager(configuration: settings(TestClock(100)), sink: sink)
        sink.log.failOpens(1)
        assertThrows(.sinkFailed) { try m.start() }
        try m.start()
        try m.close()
        XCTAssertEqual(sink.log.calls.map(\.kind), ["open", "open", "close"])
    }

    /// Exports that suspend (they sleep) while four threads put and the
    /// uploader flushes every 20 ms: every put is exported exactly once.
    func testSuspendingExportsUnderConcurrentPutsLoseNothing() throws {
        let sink = RecordingAsyncSink(exportDelay: .milliseconds(5))
        var configuration = MetricsConfiguration()
        configuration.level = .detailed
        configuration.uploadInterval = .milliseconds(20)
        let m = try MetricsManager(configuration: configuration, sink: sink)
        try m.start()
        let putsPerThread = 20_000
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            let metric = try! m.metric("UserRecordsPut", stream: "s\(t % 2)")
            for i in 0..<putsPerThread {
                try! metric.put(1)
                if i % 1_000 == 0 { usleep(1_000) }
            }
        }
        try m.close()
        let exported = sink.log.batches.joined().reduce(0) { $0 + $1.count }
        XCTAssertEqual(exported, 4 * putsPerThread)
        XCTAssertGreaterThan(sink.log.batches.count, 2, "the uploader should have flushed while threads put")
        XCTAssertEqual(sink.log.calls.last?.kind, "close")
    }

    /// A final export slower than the export timeout: close gives up within
    /// the timeout (`sinkFailed`), and the export and the sink's close
    /// complete in the background.
    func testCloseGivesUpOnASlowAsyncExportThatThenCompletes() throws {
        let sink = RecordingAsyncSink(exportDelay: .milliseconds(800))
        var configuration = settings(TestClock(100))
        configuration.exportTimeout = .milliseconds(100)
        let m = try MetricsManager(configuration: configuration, sink: sink)
        try m.start()
        try m.put("A", 7)
        let started = Date()
        assertThrows(.sinkFailed) { try m.close() }
        XCTAssertLessThan(Date().timeIntervalSince(started), 0.7, "close waited for the slow export")
        XCTAssertTrue(waitUntil(seconds: 10) { sink.log.calls.last?.kind == "close" })
        XCTAssertEqual(sink.log.batches.first?.first?.statistics, MetricStatistics(count: 1, sum: 7, min: 7, max: 7))
    }

    /// A manager released without close still makes its final export and
    /// closes the async sink (SPEC §9).
    func testReleaseWithoutCloseExportsAndClosesTheAsyncSink() throws {
        let sink = RecordingAsyncSink()
        do {
            let m = try MetricsManager(configuration: settings(TestClock(100)), sink: sink)
            try m.start()
            try m.put("A", 2)
        }
        XCTAssertTrue(waitUntil(seconds: 10) { sink.log.calls.last?.kind == "close" })
        XCTAssertEqual(sink.log.calls.map(\.kind), ["open", "export", "close"])
    }

    /// `setSink` takes an async sink too (before start only).
    func testSetSinkTakesAnAsyncSink() throws {
        let sink = RecordingAsyncSink()
        let m = try MetricsManager(configuration: settings(TestClock(100)))
        try m.setSink(sink)
        try m.start()
        assertThrows(.invalidState) { try m.setSink(RecordingAsyncSink()) }
        try m.put("A", 1)
        try m.close()
        XCTAssertEqual(sink.log.calls.map(\.kind), ["open", "export", "close"])
    }

    // MARK: Helpers

    private func settings(_ clock: TestClock) -> MetricsConfiguration {
        .settings(.detailed, windowSeconds: 60, maxMetrics: 1_000, clock: clock.reading) {
            $0.uploadInterval = .seconds(3600)
        }
    }

    private func threadsNamed(_ name: String) -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.filter { task in
            let comm = try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)
            return comm?.trimmingCharacters(in: .whitespacesAndNewlines) == name
        }.count
    }

    private func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            usleep(5_000)
        }
        return condition()
    }
}

/// Flushes from its own isolation.
private actor FlushingActor {
    func flush(_ m: MetricsManager) async throws(MetricsError) { try await m.flush() }
}

/// An async sink that logs its calls (through a ``RecordingSink``), the
/// thread each ran on and the isolation each export ran with, and can
/// suspend in its exports.
private final class RecordingAsyncSink: AsyncMetricsSink {
    let log = RecordingSink()
    private let exportDelay: Duration?
    private let seen = Locked<(threads: [String], isolations: [ObjectIdentifier?])>(([], []))

    init(exportDelay: Duration? = nil) { self.exportDelay = exportDelay }

    var threadNames: [String] { seen.withLock { $0.threads } }
    var exportIsolations: [ObjectIdentifier?] { seen.withLock { $0.isolations } }

    nonisolated(nonsending) func open() async throws {
        noteThread()
        try log.open()
    }

    nonisolated(nonsending) func export(_ snapshots: [MetricSnapshot]) async throws {
        noteThread()
        let isolation = #isolation.map { ObjectIdentifier($0) }
        seen.withLock { $0.isolations.append(isolation) }
        if let exportDelay { try await Task.sleep(for: exportDelay) }
        try log.export(snapshots)
    }

    nonisolated(nonsending) func close() async {
        noteThread()
        log.close()
    }

    private func noteThread() {
        let comm = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "?"
        let thread = comm.trimmingCharacters(in: .whitespacesAndNewlines)
        seen.withLock { $0.threads.append(thread) }
    }
}

private extension SinkCall {
    var kind: String {
        switch self {
        case .open: "open"
        case .export: "export"
        case .close: "close"
        }
    }
}
