import XCTest
import KPLMTestSupport
@testable import KPLM

/// Deterministic export order: name bytes, then dimensions pair by pair.
final class OrderTests: XCTestCase {
    func testNamesSortBytewise() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        // Inserted out of order; "B" (0x42) < "Z" (0x5A) < "a" (0x61) < "b" < "é" (0xC3 0xA9).
        for name in ["é", "b", "a", "Z", "B", "aa", "a b", "A"] {
            try m.put(name, 1)
        }
        let expected = ["A", "B", "Z", "a", "a b", "aa", "b", "é"]
        XCTAssertEqual(m.snapshots().map(\.name), expected)

        let sink = InMemorySink()
        let m2 = try detailed(clock, sink: sink)
        for name in ["é", "b", "a", "Z", "B", "aa", "a b", "A"].reversed() {
            try m2.put(name, 1)
        }
        try m2.start()
        try m2.flush()
        XCTAssertEqual(sink.snapshots.map(\.name), expected)
        try m2.close()
    }

    func testOrderIsBytewiseNotLocaleOrNormalisation() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        // "Z" (0x5A) before "é" (0xC3 …) and "ä" (0xC3 0xA4) before "é" (0xC3 0xA9);
        // U+FF21 (0xEF …) before U+1F600 (0xF0 …).
        for name in ["\u{1F600}", "é", "ä", "Z", "\u{FF21}", "z"] {
            try m.put(name, 1)
        }
        XCTAssertEqual(m.snapshots().map(\.name), ["Z", "z", "ä", "é", "\u{FF21}", "\u{1F600}"])
    }

    func testDimensionsSortPairByPairWithPrefixFirst() throws {
        let clock = TestClock(100)
        let m = try detailed(clock)
        try m.put("M", 1, stream: "s2")
        try m.put("M", 1, stream: "s1", shardId: "b")
        try m.put("M", 1, stream: "s1", shardId: "a", errorCode: "E")
        try m.put("M", 1, stream: "s1", errorCode: "E")
        try m.put("M", 1, stream: "s1", shardId: "a")
        try m.put("M", 1, stream: "s1")
        try m.put("M", 1, stream: "S9")
        try m.put("M", 1)
        try m.put("M", 1, errorCode: "E")
        try m.put("M", 1, shardId: "a")
        try m.put("L", 1, stream: "zzz")

        XCTAssertEqual(m.snapshots().map { [$0.name] + $0.dimensions.map { "\($0.name)=\($0.value)" } }, [
            ["L", "stream=zzz"],
            ["M"],                                         // no dimension: a prefix of all
            ["M", "error_code=E"],                         // "error_code" < "shard" < "stream"
            ["M", "shard=a"],
            ["M", "stream=S9"],                            // "S" (0x53) < "s" (0x73)
            ["M", "stream=s1"],                            // prefix of the s1 lists below
            ["M", "stream=s1", "error_code=E"],
            ["M", "stream=s1", "shard=a"],
            ["M", "stream=s1", "shard=a", "error_code=E"],
            ["M", "stream=s1", "shard=b"],
            ["M", "stream=s2"],
        ])
    }

    func testMetricKeyComparableMatchesExportOrder() {
        let keys = [
            MetricKey(name: "a"),
            MetricKey(name: "B"),
            MetricKey(name: "a", stream: "s"),
            MetricKey(name: "a", stream: "s", shardId: "1"),
            MetricKey(name: "a", errorCode: "x"),
        ]
        XCTAssertEqual(keys.sorted(), [
            MetricKey(name: "B"),
            MetricKey(name: "a"),
            MetricKey(name: "a", errorCode: "x"),
            MetricKey(name: "a", stream: "s"),
            MetricKey(name: "a", stream: "s", shardId: "1"),
        ])
        XCTAssertFalse(MetricKey(name: "a") < MetricKey(name: "a"))
        XCTAssertTrue(MetricKey(name: "a") < MetricKey(name: "a", stream: "s"))
        XCTAssertFalse(MetricKey(name: "a", stream: "s") < MetricKey(name: "a"))
    }

    /// `ExportOrder.sorted` (keys encoded once, sorted by their bytes) and
    /// comparing series (their ``KeyRecord``s) put series in the order of
    /// their ``MetricKey``s, for keys that differ anywhere: in a name that
    /// is a prefix of another, a low or a 0xFF byte, multi-byte UTF-8, an
    /// empty dimension value, the number of dimensions, a dimension name.
    /// (No NUL: a key with one is refused before it has a series.)
    func testSortingByEncodedKeysMatchesComparingKeys() {
        let pieces = ["", "a", "ab", "a\u{1}", "a\u{1}b", "a\u{2}", "\u{1}", "\u{FF}", "ÿ", "é", "e\u{301}",
                      "shardId-000000000001", "shardId-00000000001", "B", "z"]
        var generator = SystemRandomNumberGenerator()
        func piece() -> String { pieces.randomElement(using: &generator)! }
        func optionalPiece() -> String? { Bool.random(using: &generator) ? nil : piece() }
        for round in 0..<20 {
            var keys = Set<MetricKey>()
            while keys.count < 400 {
                var others: [MetricDimension] = []
                for name in ["d1", "d1\u{1}", "d2"] where Bool.random(using: &generator) {
                    let value = piece()
                    if !value.isEmpty { others.append(MetricDimension(name, value)) }
                }
                keys.insert(MetricKey(name: piece(), stream: optionalPiece(), shardId: optionalPiece(),
                                      errorCode: optionalPiece(), otherDimensions: others))
            }
            let series = keys.map { MetricSeries.standalone($0) }
            let expected = keys.sorted()
            XCTAssertEqual(series.sorted(by: ExportOrder.precedes).map(\.key), expected, "round \(round)")
            XCTAssertEqual(ExportOrder.sorted(series).map(\.key), expected, "round \(round)")
        }
        XCTAssertTrue(ExportOrder.sorted([]).isEmpty)
    }
}
