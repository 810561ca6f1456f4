import XCTest
import KPLMTestSupport
@testable import KPLM

/// Distribution metrics in a manager (SPEC §6): opt in per name, quantiles
/// over the last seconds or since creation, statistics unchanged.
final class DistributionMetricTests: XCTestCase {
    private func manager(_ clock: TestClock, level: MetricsLevel = .detailed) throws -> MetricsManager {
        var c = MetricsConfiguration()
        c.level = level
        c.uploadInterval = .seconds(3600)
        c.windowSeconds = 10
        c.clock = clock.reading
        return try MetricsManager(configuration: c)
    }

    func testQuantilesFromManyThreadsAndSeconds() throws {
        let clock = TestClock(100)
        let m = try manager(clock)
        try m.setDistribution("BufferingTime", relativeAccuracy: 0.01)
        XCTAssertEqual(m.distributionAccuracy("BufferingTime"), 0.01)
        var r = DistributionSketchTests.Random(state: 9)
        let first = (0..<8000).map { _ in exp(2 * r.normal()) }
        let second = (0..<8000).map { _ in -exp(r.normal()) }
        // Four threads put the first second's values, by names and by handle.
        let handle = try m.metric("BufferingTime", dimensions: [("stream", "s")])
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for (i, v) in first.enumerated() where i % 4 == t {
                if t % 2 == 0 { try! m.put("BufferingTime", v, dimensions: [("stream", "s")]) } else { try! handle.put(v) }
            }
        }
        clock.advance(1)
        try handle.put(many: second)
        let dims = [("stream", "s")]
        for (values, seconds) in [(first + second, nil), (second, 1), (first + second, 2)] as [([Double], Int?)] {
            let sorted = values.sorted()
            for q in DistributionSketchTests.quantiles {
                let x = sorted[Int((q * Double(sorted.count - 1)).rounded(.down))]
                let got = try m.quantile(q, of: "BufferingTime", dimensions: dims, lastSeconds: seconds)
                XCTAssertLessThanOrEqual(abs(got - x), 0.01 * abs(x), "q=\(q) seconds=\(String(describing: seconds))")
            }
        }
        let s = try m.statistics("BufferingTime", dimensions: dims)
        XCTAssertEqual(s.count, 16000)
        XCTAssertEqual(s.min, (first + second).min())
        XCTAssertEqual(try m.distribution("BufferingTime", dimensions: dims)?.count, 16000)
        // Out of the window, the last seconds are empty; cumulative stays.
        clock.advance(20)
        XCTAssertTrue(try m.quantile(0.5, of: "BufferingTime", dimensions: dims, lastSeconds: 10).isNaN)
        XCTAssertFalse(try m.quantile(0.5, of: "BufferingTime", dimensions: dims).isNaN)
    }

    func testErrors() throws {
        let m = try manager(TestClock(100))
        XCTAssertThrowsError(try m.setDistribution("A", relativeAccuracy: 0))
        XCTAssertThrowsError(try m.setDistribution("A", relativeAccuracy: .nan))
        XCTAssertThrowsError(try m.setDistribution(Registry.refusedKey.name, relativeAccuracy: 0.01))
        try m.setDistribution("A", relativeAccuracy: 0.01)
        XCTAssertTrue(try m.quantile(0.5, of: "A").isNaN)
        XCTAssertThrowsError(try m.quantile(0.5, of: "NotOne"))
        XCTAssertThrowsError(try m.quantile(2, of: "A"))
        XCTAssertThrowsError(try m.quantile(0.5, of: "A", lastSeconds: 11))
        try m.put("B", 1)
        XCTAssertThrowsError(try m.setDistribution("B", relativeAccuracy: 0.01)) { error in
            XCTAssertEqual((error as? MetricsError)?.code, .invalidState)
        }
        try m.start()
        XCTAssertThrowsError(try m.setDistribution("C", relativeAccuracy: 0.01))
        try m.close()
    }

    /// Exports carry the distribution of exactly the observations their
    /// statistics count: once, kept and merged after a failed export, and
    /// merged across keys in the KPL's rollups.
    func testExportsCarryItExactlyOnce() throws {
        let clock = TestClock(100)
        let sink = RecordingSink()
        var c = MetricsConfiguration()
        c.level = .detailed
        c.uploadInterval = .seconds(3600)
        c.clock = clock.reading
        let m = try MetricsManager(configuration: c, sink: sink)
        try m.setDistribution("RequestTime", relativeAccuracy: 0.01)
        try m.start()
        for v in 1...100 { try m.put("RequestTime", Double(v), stream: "s") }
        sink.failExports(1)
        XCTAssertThrowsError(try m.flush())
        clock.advance(1)
        for v in 101...200 { try m.put("RequestTime", Double(v), stream: "s") }
        try m.put("Plain", 1)
        try m.flush()
        try m.flush()   // nothing new: nothing exported
        // (batches lists every attempt: the failed one, then its retry.)
        let timed = sink.batches.compactMap { $0.first { $0.name == "RequestTime" } }
        XCTAssertEqual(timed.map(\.count), [100, 200])
        XCTAssertEqual(timed.map { $0.distribution?.count }, [100, 200])
        let d = try XCTUnwrap(timed.last?.distribution)
        XCTAssertLessThanOrEqual(abs(d.quantile(0.99) - 198), 0.01 * 198)
        var total: UInt64 = 0
        d.forEachBucket { _, n in total += n }
        XCTAssertEqual(total, 200)
        XCTAssertNil(sink.batches.joined().first { $0.name == "Plain" }?.distribution)
        try m.close()
    }

    /// In the KPL's rollups a line's distribution is its keys' merged.
    func testRollupLinesMergeTheKeysDistributions() throws {
        let sink = RecordingSink()
        var c = MetricsConfiguration()
        c.level = .detailed
        c.uploadInterval = .seconds(3600)
        c.granularity = .stream
        c.clock = TestClock(100).reading
        let m = try MetricsManager(configuration: c, sink: sink)
        try m.setDistribution("RequestTime", relativeAccuracy: 0.01)
        try m.start()
        for v in 1...100 {
            try m.put("RequestTime", Double(v), stream: "s", shardId: "a")
            try m.put("RequestTime", Double(v + 100), stream: "s", shardId: "b")
        }
        try m.flush()
        let lines = sink.batches.joined().filter { $0.name == "RequestTime" }
        XCTAssertFalse(lines.isEmpty)
        for line in lines {
            let d = try XCTUnwrap(line.distribution, "\(line.dimensions)")
            XCTAssertEqual(Int(d.count), line.count)
        }
        let widest = try XCTUnwrap(lines.max { $0.count < $1.count })
        XCTAssertEqual(widest.count, 200)
        XCTAssertLessThanOrEqual(abs(try XCTUnwrap(widest.distribution).quantile(0.5) - 100), 1)
        try m.close()
    }

    /// Distribution metrics record on writer cells (statistics and bucket
    /// counts), and values a cell does not take (tiny subnormals) on the
    /// shared path; with the system clock the common case runs, and what
    /// is exported is exact in count and within the accuracy in quantiles.
    func testThreadsOnTheCellPathAndTheSharedPath() throws {
        let sink = RecordingSink()
        var c = MetricsConfiguration()
        c.level = .detailed
        c.uploadInterval = .seconds(3600)
        let m = try MetricsManager(configuration: c, sink: sink)
        try m.setDistribution("RequestTime", relativeAccuracy: 0.01)
        try m.start()
        let handle = try m.metric("RequestTime", stream: "s")
        XCTAssertTrue(handle.usesWriterCells)
        XCTAssertEqual(handle.header.flags,
                       CellCollector.isAvailable ? MetricHeader.distributionCells : 0)
        let perThread = 50_000
        @Sendable func value(_ t: Int, _ i: Int) -> Double {
            switch i % 100 {
            case 0: return 0
            case 1: return 3 * .leastNonzeroMagnitude      // not taken by a cell: shared path
            case 2: return -Double(i % 777) - 1
            default: return Double((i &* 2_654_435_761 &+ t) % 100_000) / 7 + 0.5
            }
        }
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for i in 0..<perThread {
                if t % 2 == 0 { try! handle.put(value(t, i)) } else { try! m.put("RequestTime", value(t, i), stream: "s") }
            }
        }
        try m.flush()
        let exported = sink.batches.joined().filter { $0.name == "RequestTime" }
        var merged = try DistributionSketch(relativeAccuracy: 0.01)
        for s in exported { merged.merge(try XCTUnwrap(s.distribution)) }
        XCTAssertEqual(exported.reduce(0) { $0 + $1.count }, 4 * perThread)
        XCTAssertEqual(merged.count, UInt64(4 * perThread))
        let sorted = (0..<4).flatMap { t in (0..<perThread).map { value(t, $0) } }.sorted()
        for q in DistributionSketchTests.quantiles {
            let x = sorted[Int((q * Double(sorted.count - 1)).rounded(.down))]
            XCTAssertLessThanOrEqual(abs(merged.quantile(q) - x), 0.01 * abs(x), "q=\(q)")
        }
        try m.close()
    }
}
