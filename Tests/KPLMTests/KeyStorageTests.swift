import XCTest
import KPLMTestSupport
@testable import KPLM

/// The compact per-key structures of issue #13, each against a plain model:
/// the registry's ``MetricTable`` against a dictionary, ``WindowBuckets``
/// against a sorted array of buckets.
final class KeyStorageTests: XCTestCase {
    /// Random insertions, removals and lookups (misses included) over a
    /// table that grows several times; removals shift probe chains back,
    /// so every key left must still be found, and no removed one.
    func testMetricTableMatchesADictionary() throws {
        let m = try detailed(TestClock(100))
        let metrics = try (0..<3_000).map { try m.metric("T", stream: "s\($0 % 7)", shardId: "shard-\($0)") }
        var generator = SystemRandomNumberGenerator()
        var table = MetricTable()
        var model: [MetricKey: Metric] = [:]
        for round in 0..<20_000 {
            let metric = metrics.randomElement(using: &generator)!
            if model[metric.key] == nil {
                table.insert(metric)
                model[metric.key] = metric
            } else if Bool.random(using: &generator) {
                XCTAssertTrue(table.remove(metric.key) === metric, "round \(round): removal")
                model[metric.key] = nil
            }
            XCTAssertEqual(table.count, model.count)
            if round % 1_000 == 0 || round == 19_999 {
                for other in metrics {
                    XCTAssertTrue(table[other.key] === model[other.key], "round \(round): lookup of \(other.key)")
                }
            }
        }
        XCTAssertNil(table.remove(MetricKey(name: "absent")))
        // Emptied entirely, then filled again.
        for key in Array(model.keys) { XCTAssertNotNil(table.remove(key)) }
        XCTAssertEqual(table.count, 0)
        for metric in metrics { table.insert(metric) }
        for metric in metrics { XCTAssertTrue(table[metric.key] === metric) }
    }

    /// Random merges (same second, new seconds, late ones inside and
    /// outside the window) and drops: the buckets equal those of the
    /// array-based algorithm they replace, after every step.
    func testWindowBucketsMatchASortedArray() {
        var generator = SystemRandomNumberGenerator()
        for window in [1, 2, 5, 60] as [Int64] {
            var buckets = WindowBuckets()
            var model: [(second: Int64, statistics: MetricStatistics)] = []
            var now: Int64 = 1_000
            for step in 0..<5_000 {
                let roll = Int.random(in: 0..<10, using: &generator)
                if roll == 0 {
                    let limit = now - Int64.random(in: 0...(2 * window), using: &generator)
                    buckets.drop(atOrBefore: limit)
                    model.removeAll { $0.second <= limit }
                } else {
                    if roll == 1 { now += Int64.random(in: 1...(2 * window + 1), using: &generator) }
                    if roll == 2 { now += 1 }
                    // Mostly the current second; some late ones, up to twice the window.
                    let second = roll == 3 ? now - Int64.random(in: 1...(2 * window), using: &generator) : now
                    let value = Double(Int.random(in: -5...5, using: &generator))
                    let statistics = MetricStatistics(count: 1, sum: value, min: value, max: value)
                    buckets.merge(statistics, second: second, windowSeconds: window)
                    Self.merge(statistics, second: second, windowSeconds: window, into: &model)
                }
                let got = Array(buckets)
                XCTAssertEqual(got.map(\.second), model.map(\.second), "window \(window), step \(step)")
                XCTAssertEqual(got.map(\.statistics), model.map(\.statistics), "window \(window), step \(step)")
                XCTAssertEqual(buckets.isEmpty, model.isEmpty)
                // The prefetch hint: an address exactly while older buckets
                // exist, with the number of lines from the array's count to
                // its last bucket (at most 15).
                let hint = buckets.olderHint
                XCTAssertEqual(hint != 0, model.count > 1, "window \(window), step \(step)")
                if hint != 0 {
                    let elements = hint & ~15
                    let last = elements + UInt((model.count - 1) * MemoryLayout<WindowBuckets.Bucket>.stride) - 1
                    XCTAssertEqual(hint & 15, Swift.min(15, (last >> 6) - ((elements - 16) >> 6) + 1),
                                   "window \(window), step \(step)")
                }
                if got.map(\.second) != model.map(\.second) { return }
            }
        }
    }

    /// A copy of the buckets keeps what it held while the original goes on
    /// (their storage is shared until one of them writes it).
    func testACopyOfWindowBucketsIsAValue() {
        func statistics(_ v: Double) -> MetricStatistics { MetricStatistics(count: 1, sum: v, min: v, max: v) }
        var buckets = WindowBuckets()
        for second in 1...5 as ClosedRange<Int64> { buckets.merge(statistics(Double(second)), second: second, windowSeconds: 4) }
        let copy = buckets
        XCTAssertEqual(Array(copy).map(\.second), [2, 3, 4, 5])
        buckets.merge(statistics(9), second: 6, windowSeconds: 4)        // drops 2, appends 5
        buckets.merge(statistics(7), second: 4, windowSeconds: 4)        // merges into an older one
        buckets.merge(statistics(1), second: 7, windowSeconds: 10)       // grows the ring
        XCTAssertEqual(Array(buckets).map(\.second), [3, 4, 5, 6, 7])
        XCTAssertEqual(Array(buckets).map(\.statistics.count), [1, 2, 1, 1, 1])
        XCTAssertEqual(Array(copy).map(\.second), [2, 3, 4, 5], "the copy is unchanged")
        XCTAssertEqual(Array(copy).map(\.statistics.count), [1, 1, 1, 1])
        var other = copy
        other.drop(atOrBefore: 4)
        XCTAssertEqual(Array(other).map(\.second), [5])
        XCTAssertEqual(Array(copy).map(\.second), [2, 3, 4, 5], "the copy is unchanged")
    }

    /// The algorithm `WindowBuckets` replaced (MetricSeries before issue
    /// #13's inline bucket), as the model.
    private static func merge(_ statistics: MetricStatistics, second: Int64, windowSeconds: Int64,
                              into buckets: inout [(second: Int64, statistics: MetricStatistics)]) {
        guard let last = buckets.indices.last else { return buckets.append((second, statistics)) }
        if buckets[last].second == second { return buckets[last].statistics.merge(statistics) }
        if buckets[last].second < second {
            buckets.removeAll { $0.second <= second - windowSeconds }
            return buckets.append((second, statistics))
        }
        guard buckets[last].second - second < windowSeconds else { return }
        var i = last
        while i >= 0 && buckets[i].second > second { i -= 1 }
        if i >= 0 && buckets[i].second == second {
            buckets[i].statistics.merge(statistics)
        } else {
            buckets.insert((second, statistics), at: i + 1)
        }
    }
}
