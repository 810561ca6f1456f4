import Foundation
import XCTest
import KPLM
import KPLMServiceLifecycle
import KPLMTestSupport
import ServiceLifecycle

/// KPLMService in a real ServiceGroup: started with the group, closed with
/// a final flush at graceful shutdown and at cancellation.
final class KPLMServiceTests: XCTestCase {
    /// Puts from several tasks while the group runs, then a graceful
    /// shutdown: the final flush exports exact totals, and the sink is closed.
    func testGracefulShutdownMakesTheFinalFlush() async throws {
        let sink = InMemorySink()
        let (manager, group, running) = try await runGroup(sink) { sink.openCount == 1 }

        try await putFromTasks(manager)
        XCTAssertEqual(sink.batches.count, 0, "nothing may be exported before the shutdown")
        await group.triggerGracefulShutdown()
        try await running.value

        assertExportedTotals(sink)
        XCTAssertEqual(sink.closeCount, 1)
        XCTAssertTrue(manager.isClosed)
        XCTAssertThrowsError(try manager.put("Late", 1), "a closed manager refuses puts")
    }

    /// Cancelling the task running the group still closes the manager with
    /// its final flush; the service returns normally.
    func testCancellationStillMakesTheFinalFlush() async throws {
        let sink = InMemorySink()
        let (manager, _, running) = try await runGroup(sink) { sink.openCount == 1 }

        try await putFromTasks(manager)
        running.cancel()
        let outcome = await running.result
        if case .failure(let error) = outcome { XCTFail("the group failed: \(error)") }

        assertExportedTotals(sink)
        XCTAssertEqual(sink.closeCount, 1)
        XCTAssertTrue(manager.isClosed)
    }

    /// A final export that fails is reported by run (and so by the group),
    /// and the data is kept for a later close.
    func testFailedFinalExportFailsTheService() async throws {
        let sink = RecordingSink()
        sink.failExports(1)
        let (manager, group, running) = try await runGroup(sink) { sink.calls.contains(.open) }
        try manager.put("A", 5)
        await group.triggerGracefulShutdown()
        let outcome = await running.result
        guard case .failure = outcome else { return XCTFail("a failed final export must fail the group") }

        // Kept: a later close delivers it.
        try await manager.close()
        let exports = sink.batches
        XCTAssertEqual(exports.count, 2)
        XCTAssertEqual(exports.last?.first { $0.name == "A" }?.statistics,
                       MetricStatistics(count: 1, sum: 5, min: 5, max: 5))
        XCTAssertEqual(sink.calls.last, .close)
    }

    /// A manager that was started already: run throws invalidState at once.
    func testRunRefusesAStartedManager() async throws {
        let manager = try MetricsManager(level: .detailed, sink: InMemorySink())
        try manager.start()
        do {
            try await KPLMService(manager: manager).run()
            XCTFail("run on a started manager must throw")
        } catch let error as MetricsError {
            XCTAssertEqual(error.code, .invalidState)
        }
        try await manager.close()
    }

    // MARK: Helpers

    private static let tasks = 8

    /// A manager exporting to `sink` (no periodic flush comes: only the
    /// final flush exports), run by a ServiceGroup in a task, once
    /// `opened` says the sink was opened.
    private func runGroup(_ sink: some MetricsSink, opened: @escaping @Sendable () -> Bool) async throws
        -> (MetricsManager, ServiceGroup, Task<Void, any Error>) {
        let manager = try MetricsManager(level: .detailed, sink: sink, uploadInterval: .seconds(3600))
        let group = ServiceGroup(services: [KPLMService(manager: manager)])
        let running = Task { try await group.run() }
        try await waitUntil("the sink is opened", opened)
        return (manager, group, running)
    }
    private static let putsPerTask = 500

    /// Puts 1...putsPerTask on "Latency" from `tasks` tasks, and 1 on
    /// "Count" per put.
    private func putFromTasks(_ manager: MetricsManager) async throws {
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for _ in 0..<Self.tasks {
                tasks.addTask {
                    for value in 1...Self.putsPerTask {
                        try manager.put("Latency", Double(value))
                        try manager.put("Count", 1)
                    }
                }
            }
            try await tasks.waitForAll()
        }
    }

    /// The exported totals are exactly what putFromTasks put.
    private func assertExportedTotals(_ sink: InMemorySink, file: StaticString = #filePath, line: UInt = #line) {
        let n = Double(Self.putsPerTask)
        let count = Self.tasks * Self.putsPerTask
        XCTAssertEqual(total(sink, "Latency"),
                       MetricStatistics(count: count, sum: Double(Self.tasks) * n * (n + 1) / 2, min: 1, max: n),
                       file: file, line: line)
        XCTAssertEqual(total(sink, "Count"),
                       MetricStatistics(count: count, sum: Double(count), min: 1, max: 1), file: file, line: line)
    }

    /// Every exported snapshot of `name` (no dimension), merged.
    private func total(_ sink: InMemorySink, _ name: String) -> MetricStatistics? {
        let found = sink.snapshots.filter { $0.name == name && $0.dimensions.isEmpty }.map(\.statistics)
        guard var merged = found.first else { return nil }
        for s in found.dropFirst() {
            merged = MetricStatistics(count: merged.count + s.count, sum: merged.sum + s.sum,
                                      min: Swift.min(merged.min, s.min), max: Swift.max(merged.max, s.max))
        }
        return merged
    }

    /// Polls `condition` every 10 ms, failing after 30 s.
    private func waitUntil(_ what: String, _ condition: @Sendable () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw TimedOut(what: what) }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// A wait of the tests that did not end in time.
private struct TimedOut: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting until \(what)" }
}
