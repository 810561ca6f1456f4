import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM

/// `Duration` intervals and timeouts in the Swift configuration, and the
/// deprecated millisecond properties over the same settings.
final class DurationConfigurationTests: XCTestCase {
    func testDefaultsInBothSpellings() {
        let c = MetricsConfiguration()
        XCTAssertEqual(c.uploadInterval, .seconds(60))
        XCTAssertEqual(c.exportTimeout, .seconds(10))
        XCTAssertEqual(c.uploadIntervalMilliseconds, 60_000)
        XCTAssertEqual(c.exportTimeoutMilliseconds, 10_000)
    }

    /// A Duration set is the millisecond value read, and the other way
    /// round, to below the microsecond.
    func testDurationAndMillisecondsAreOneSetting() {
        var c = MetricsConfiguration()
        c.uploadInterval = .milliseconds(250)
        c.exportTimeout = .microseconds(1500)
        XCTAssertEqual(c.uploadIntervalMilliseconds, 250)
        XCTAssertEqual(c.exportTimeoutMilliseconds, 1.5)
        c.uploadInterval = .nanoseconds(1)
        XCTAssertEqual(c.uploadIntervalMilliseconds, 1e-6)
        c.uploadInterval = .seconds(3 * 86_400) + .milliseconds(7)
        XCTAssertEqual(c.uploadIntervalMilliseconds, 259_200_007)
        XCTAssertEqual(c.uploadInterval, .seconds(3 * 86_400) + .milliseconds(7))

        c.uploadIntervalMilliseconds = 1234.5
        XCTAssertEqual(c.uploadInterval, .microseconds(1_234_500))
        c.exportTimeoutMilliseconds = 0.25
        XCTAssertEqual(c.exportTimeout, .microseconds(250))
    }

    /// The deprecated `...Ms` properties and initializer still compile and
    /// set the same storage (their warnings are expected here).
    func testDeprecatedMillisecondSpellingStillWorks() throws {
        var c = MetricsConfiguration()
        c.uploadIntervalMs = 500
        c.exportTimeoutMs = 2_000
        XCTAssertEqual(c.uploadInterval, .milliseconds(500))
        XCTAssertEqual(c.exportTimeout, .seconds(2))
        c.uploadInterval = .seconds(3)
        XCTAssertEqual(c.uploadIntervalMs, 3_000)

        let m = try MetricsManager(level: .detailed, uploadIntervalMs: 40, exportTimeoutMs: 300)
        XCTAssertEqual(m.configuration.uploadInterval, .milliseconds(40))
        XCTAssertEqual(m.configuration.exportTimeout, .milliseconds(300))
        let d = try MetricsManager(level: .detailed, uploadInterval: .milliseconds(40), exportTimeout: .milliseconds(300))
        XCTAssertEqual(d.configuration.uploadIntervalMilliseconds, m.configuration.uploadIntervalMilliseconds)
        XCTAssertEqual(d.configuration.exportTimeoutMilliseconds, m.configuration.exportTimeoutMilliseconds)
    }

    /// Out-of-range values are refused at creation in both spellings, with
    /// the same messages; a NaN only milliseconds can say reads as zero.
    func testValidation() {
        func refusal(_ change: (inout MetricsConfiguration) -> Void) -> String? {
            var c = MetricsConfiguration()
            change(&c)
            do {
                _ = try MetricsManager(configuration: c)
                return nil
            } catch {
                XCTAssertEqual(error.code, .invalidArgument)
                return error.message
            }
        }
        XCTAssertEqual(refusal { $0.uploadInterval = .zero }, "upload interval must be finite and > 0 ms, got 0.0 ms")
        XCTAssertEqual(refusal { $0.uploadInterval = .milliseconds(-5) }, refusal { $0.uploadIntervalMilliseconds = -5 })
        XCTAssertEqual(refusal { $0.exportTimeout = .seconds(-1) },
                       "export timeout must be finite and > 0 ms, got -1000.0 ms")
        XCTAssertEqual(refusal { $0.exportTimeout = .zero }, refusal { $0.exportTimeoutMilliseconds = 0 })
        XCTAssertEqual(refusal { $0.uploadIntervalMilliseconds = .nan },
                       "upload interval must be finite and > 0 ms, got nan ms")
        XCTAssertNotNil(refusal { $0.exportTimeoutMilliseconds = .infinity })
        XCTAssertNil(refusal { $0.uploadInterval = .nanoseconds(1) })

        var c = MetricsConfiguration()
        c.uploadIntervalMilliseconds = .nan
        XCTAssertEqual(c.uploadInterval, .zero)
        c.exportTimeoutMilliseconds = .infinity
        XCTAssertEqual(c.exportTimeout, .seconds(Int64.max))
    }

    /// The upload interval given as a Duration drives the periodic flush.
    func testDurationUploadIntervalFlushesPeriodically() throws {
        let sink = InMemorySink()
        let m = try MetricsManager(level: .detailed, sink: sink, uploadInterval: .milliseconds(50))
        try m.start()
        try m.put("A", 1)
        XCTAssertTrue(waitUntil(timeout: 30) { !sink.batches.isEmpty }, "no periodic flush within 30 s")
        try m.close()
        XCTAssertEqual(sink.snapshots.map(\.statistics), [MetricStatistics(count: 1, sum: 1, min: 1, max: 1)])
    }

    /// The export timeout given as a Duration bounds a flush behind a hung
    /// export exactly as the same timeout in milliseconds does.
    func testDurationExportTimeoutBoundsAFlushLikeMilliseconds() throws {
        var messages: [String] = []
        for viaDuration in [true, false] {
            let sink = GatedSink()
            var c = MetricsConfiguration()
            c.level = .detailed
            c.uploadInterval = .seconds(3600)
            if viaDuration { c.exportTimeout = .milliseconds(200) } else { c.exportTimeoutMilliseconds = 200 }
            let m = try MetricsManager(configuration: c, sink: sink)
            try m.start()
            try m.put("A", 1)
            sink.hangExports(true)
            let holder = Thread { _ = try? m.flush() }
            holder.start()
            XCTAssertEqual(sink.entered.wait(timeout: .now() + 30), .success)
            let began = Date()
            do {
                try m.flush()
                XCTFail("a flush behind a hung export must time out")
            } catch {
                XCTAssertEqual(error.code, .sinkFailed)
                messages.append(error.message)
            }
            let waited = Date().timeIntervalSince(began)
            print("DurationConfigurationTests: flush gave up after \(waited) s (timeout 0.2 s, via Duration: \(viaDuration))")
            XCTAssertGreaterThanOrEqual(waited, 0.15)
            XCTAssertLessThan(waited, 20)
            sink.hangExports(false)
            sink.release.signal()
            try m.close()
        }
        XCTAssertEqual(messages.count, 2)
        XCTAssertEqual(messages.first, messages.last)
        XCTAssertTrue(messages.first?.contains("200.0 ms") ?? false, "\(messages)")
    }
}
