// Helpers shared by the XCTest targets (one per module): clocks, sinks
// that log their calls, assertions.
import Foundation
import XCTest
import KPLM

/// A manager clock the test moves by hand (seconds, thread-safe).
package final class TestClock: Sendable {
    private let value: Locked<Double>

    package init(_ start: Double = 100) { value = Locked(start) }

    package var now: Double {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }

    package func advance(_ seconds: Double) { value.withLock { $0 += seconds } }

    /// The closure to hand to a manager.
    package var reading: @Sendable () -> Double { { [self] in self.now } }
}

/// Something a test sink was asked to do, in call order.
package enum SinkCall: Equatable, Sendable {
    case open
    case export([MetricSnapshot])
    case close
}

package struct SinkFailure: Error, Equatable {
    package init() {}
}

/// A sink that logs every call and can be told to fail.
package final class RecordingSink: MetricsSink, @unchecked Sendable {
    private struct State {
        var calls: [SinkCall] = []
        var openFailures = 0
        var exportFailures = 0
    }

    private let state = Locked(State())
    /// Run inside `export`, after logging (used by re-entrancy tests).
    package let onExport: (@Sendable ([MetricSnapshot]) -> Void)?
    /// Run inside `open`.
    package let onOpen: (@Sendable () -> Void)?

    package init(onOpen: (@Sendable () -> Void)? = nil, onExport: (@Sendable ([MetricSnapshot]) -> Void)? = nil) {
        self.onOpen = onOpen
        self.onExport = onExport
    }

    /// The next `n` opens throw.
    package func failOpens(_ n: Int) { state.withLock { $0.openFailures = n } }
    /// The next `n` exports throw (their call is still logged).
    package func failExports(_ n: Int) { state.withLock { $0.exportFailures = n } }

    package func open() throws {
        let fail = state.withLock { s -> Bool in
            s.calls.append(.open)
            if s.openFailures > 0 { s.openFailures -= 1; return true }
            return false
        }
        onOpen?()
        if fail { throw SinkFailure() }
    }

    package func export(_ snapshots: [MetricSnapshot]) throws {
        let fail = state.withLock { s -> Bool in
            s.calls.append(.export(snapshots))
            if s.exportFailures > 0 { s.exportFailures -= 1; return true }
            return false
        }
        onExport?(snapshots)
        if fail { throw SinkFailure() }
    }

    package func close() { state.withLock { $0.calls.append(.close) } }

    package var calls: [SinkCall] { state.withLock { $0.calls } }

    package var batches: [[MetricSnapshot]] {
        calls.compactMap { if case .export(let b) = $0 { return b } else { return nil } }
    }

    package var openCount: Int { calls.filter { $0 == .open }.count }
    package var closeCount: Int { calls.filter { $0 == .close }.count }
}

/// An eventful sink that keeps every event and every exported batch.
package final class EventSink: EventfulMetricsSink, @unchecked Sendable {
    private let events_ = Locked<[MetricEvent]>([])
    private let batches_ = Locked<[[MetricSnapshot]]>([])
    package let onRecord: (@Sendable (MetricEvent) -> Void)?

    package init(onRecord: (@Sendable (MetricEvent) -> Void)? = nil) { self.onRecord = onRecord }

    package func record(_ event: MetricEvent) {
        events_.withLock { $0.append(event) }
        onRecord?(event)
    }

    package func export(_ snapshots: [MetricSnapshot]) throws { batches_.withLock { $0.append(snapshots) } }

    package var events: [MetricEvent] { events_.withLock { $0 } }
    package var batches: [[MetricSnapshot]] { batches_.withLock { $0 } }
}

/// A slot for a manager that a sink created before it needs to reach.
package final class ManagerBox: @unchecked Sendable {
    private let slot = Locked<MetricsManager?>(nil)
    package init() {}
    package var manager: MetricsManager? {
        get { slot.withLock { $0 } }
        set { slot.withLock { $0 = newValue } }
    }
}

/// A thread-safe list of values collected from callbacks.
package final class Collected<T: Sendable>: @unchecked Sendable {
    private let items = Locked<[T]>([])
    package init() {}
    package func append(_ item: T) { items.withLock { $0.append(item) } }
    package var all: [T] { items.withLock { $0 } }
}

package func dims(_ pairs: (String, String)...) -> [MetricDimension] {
    pairs.map { MetricDimension($0.0, $0.1) }
}

/// Asserts that `body` throws a MetricsError with `code`.
package func assertThrows(_ code: MetricsError.Code, _ message: @autoclosure () -> String = "",
                  file: StaticString = #filePath, line: UInt = #line,
                  _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected \(code), nothing was thrown. \(message())", file: file, line: line)
    } catch let error as MetricsError {
        XCTAssertEqual(error.code, code, "\(error) \(message())", file: file, line: line)
    } catch {
        XCTFail("expected MetricsError \(code), got \(error). \(message())", file: file, line: line)
    }
}

/// Returns the thrown MetricsError code, or nil if `body` succeeded.
package func errorCode(_ body: () throws -> Void) -> MetricsError.Code? {
    do { try body(); return nil } catch let error as MetricsError { return error.code } catch {
        XCTFail("unexpected non-MetricsError \(error)")
        return .outOfMemory
    }
}

/// The single snapshot named `name` (with `dimensions`) in `snapshots`.
package func find(_ snapshots: [MetricSnapshot], _ name: String, _ dimensions: [MetricDimension] = [],
          file: StaticString = #filePath, line: UInt = #line) -> MetricSnapshot? {
    let hits = snapshots.filter { $0.name == name && $0.dimensions == dimensions }
    XCTAssertLessThanOrEqual(hits.count, 1, "more than one snapshot for \(name) \(dimensions)", file: file, line: line)
    return hits.first
}

/// Polls `condition` every few milliseconds for up to `timeout` seconds.
package func waitUntil(timeout: TimeInterval = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        Thread.sleep(forTimeInterval: 0.005)
    }
    return condition()
}

package func detailed(_ clock: TestClock, window: Int = 60, sink: (any MetricsSink)? = nil,
              maxMetrics: Int = 100_000) throws -> MetricsManager {
    try MetricsManager(level: .detailed, sink: sink, uploadInterval: .seconds(3600), windowSeconds: window,
                       maxMetrics: maxMetrics, clock: clock.reading)
}

package struct CountMismatch: Error, CustomStringConvertible {
    package let expected: Int, actual: Int
    package var description: String { "expected \(expected) elements, got \(actual)" }
}

/// Asserts `array` has `count` elements and returns it; throws (ending the
/// test with a failure rather than a crash) when it does not, so the test can
/// index it afterwards.
@discardableResult
package func requireCount<T>(_ array: [T], _ count: Int, file: StaticString = #filePath, line: UInt = #line) throws -> [T] {
    XCTAssertEqual(array.count, count, "\(array)", file: file, line: line)
    guard array.count == count else { throw CountMismatch(expected: count, actual: array.count) }
    return array
}
