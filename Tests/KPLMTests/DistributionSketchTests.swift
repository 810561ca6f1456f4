import Glibc
import XCTest
@testable import KPLM

/// The accuracy contract of SPEC §6, checked against exact sorted samples.
final class DistributionSketchTests: XCTestCase {
    /// SplitMix64: a fixed sequence, so a failure reproduces.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        /// Uniform in (0, 1).
        mutating func unit() -> Double { (Double(next() >> 11) + 0.5) / 9_007_199_254_740_992 }
        mutating func normal() -> Double { sqrt(-2 * log(unit())) * cos(2 * Double.pi * unit()) }
    }

    /// The data shapes of the issue, plus the edges of the double range.
    static func shapes() -> [(String, [Double])] {
        var r = Random(state: 42)
        let n = 20_000
        let lognormal = (0..<n).map { _ in exp(1 + 2 * r.normal()) }
        let decades = (0..<n).map { _ in pow(10, -6 + 12 * r.unit()) }
        let signedWithZeros = (0..<n).map { i -> Double in
            if i % 7 == 0 { return i % 14 == 0 ? 0 : -0.0 }
            return (r.next() & 1 == 0 ? -1 : 1) * pow(10, -3 + 6 * r.unit())
        }
        let constant = [Double](repeating: 123.456, count: 1000)
        var edges: [Double] = [.leastNonzeroMagnitude, -.leastNonzeroMagnitude, 2 * .leastNonzeroMagnitude,
                               .leastNormalMagnitude, -.leastNormalMagnitude, .greatestFiniteMagnitude,
                               -.greatestFiniteMagnitude, 1e308, -1e308, 0, -0.0, 1, -1]
        for _ in 0..<300 {
            // Subnormals of every size, and huge values.
            edges.append(Double(bitPattern: r.next() & 0x000F_FFFF_FFFF_FFFF) * (r.next() & 1 == 0 ? 1 : -1))
            edges.append(Double(bitPattern: (r.next() & 0x000F_FFFF_FFFF_FFFF) | 0x7FE0_0000_0000_0000))
            edges.append(Double(r.next() % 5000) * .leastNonzeroMagnitude)
        }
        return [("lognormal", lognormal), ("12 decades", decades), ("signed with zeros", signedWithZeros),
                ("constant", constant), ("edges", edges)]
    }

    static let quantiles: [Double] = [0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1]
        + (1...40).map { Double($0) / 41 }

    /// Fails unless every quantile of `sketch` is within a·|x| of the exact one.
    func assertAccurate(_ sketch: DistributionSketch, _ values: [Double], _ label: String,
                        file: StaticString = #filePath, line: UInt = #line) {
        let sorted = values.sorted()
        let a = sketch.relativeAccuracy
        XCTAssertEqual(sketch.count, UInt64(values.count), label, file: file, line: line)
        for q in Self.quantiles {
            let x = sorted[Int((q * Double(sorted.count - 1)).rounded(.down))]
            let got = sketch.quantile(q)
            XCTAssertTrue(abs(got - x) <= a * abs(x), "\(label) a=\(a) q=\(q): got \(got), exact \(x)",
                          file: file, line: line)
        }
    }

    func testEveryShapeWithinTheAccuracy() throws {
        for a in [0.1, 0.01, 0.008, 0.001] {
            // (At 0.1% the bucket cap spans 115 of the 632 decades the edges
            // cover: see testTheCapFoldsOnlyTheSmallestMagnitudes.)
            for (name, values) in Self.shapes() where a >= 0.008 || name != "edges" {
                var sketch = try DistributionSketch(relativeAccuracy: a)
                for v in values { sketch.add(v) }
                assertAccurate(sketch, values, name)
            }
        }
    }

    func testMergedSketchesAnswerAsOne() throws {
        for (name, values) in Self.shapes() {
            var whole = try DistributionSketch(relativeAccuracy: 0.01)
            var parts = [DistributionSketch](repeating: whole, count: 3)
            for (i, v) in values.enumerated() {
                whole.add(v)
                parts[i % 3].add(v)
            }
            var merged = parts[0]
            merged.merge(parts[1])
            merged.merge(parts[2])
            assertAccurate(merged, values, "merged \(name)")
            for q in Self.quantiles { XCTAssertEqual(merged.quantile(q), whole.quantile(q), "\(name) q=\(q)") }
            var bucketTotal: UInt64 = 0
            merged.forEachBucket { _, n in bucketTotal += n }
            XCTAssertEqual(bucketTotal, merged.count)
        }
    }

    func testEmptyAndInvalid() throws {
        let empty = try DistributionSketch(relativeAccuracy: 0.01)
        XCTAssertTrue(empty.quantile(0.5).isNaN)
        var one = empty
        one.add(7)
        XCTAssertTrue(one.quantile(-0.1).isNaN)
        XCTAssertTrue(one.quantile(.nan).isNaN)
        XCTAssertEqual(one.quantile(0.5), 7)
        for bad in [0, -0.01, 0.1000001, .nan, .infinity] {
            XCTAssertThrowsError(try DistributionSketch(relativeAccuracy: bad), "\(bad)")
        }
        XCTAssertNoThrow(try DistributionSketch(relativeAccuracy: 0.1))
    }

    /// Past its bucket cap a sketch folds the smallest magnitudes: those
    /// quantiles lose accuracy (over-estimated), the larger ones keep it.
    func testTheCapFoldsOnlyTheSmallestMagnitudes() throws {
        let a = 0.001
        XCTAssertEqual(DistributionSketch.maxBuckets(relativeAccuracy: a), 131_072)
        XCTAssertLessThan(DistributionSketch.maxBuckets(relativeAccuracy: 0.008), 131_072)
        var sketch = try DistributionSketch(relativeAccuracy: a)
        let values = (0..<4000).map { i in pow(10, -150 + 300 * Double(i) / 3999) }   // 300 decades
        for v in values { sketch.add(v) }
        XCTAssertLessThanOrEqual(sketch.heapByteCount, 2 * 131_072 * 8)
        let sorted = values.sorted()
        for q in [0.75, 0.95, 0.99, 1] {
            let x = sorted[Int((q * Double(sorted.count - 1)).rounded(.down))]
            XCTAssertLessThanOrEqual(abs(sketch.quantile(q) - x), a * x, "q=\(q)")
        }
        let low = sorted[Int(0.1 * Double(sorted.count - 1))]
        XCTAssertGreaterThan(sketch.quantile(0.1), low, "folded: over-estimated")
        XCTAssertEqual(sketch.count, 4000)
        XCTAssertEqual(sketch.quantile(0), sorted[0], "the minimum stays exact")
    }
}
