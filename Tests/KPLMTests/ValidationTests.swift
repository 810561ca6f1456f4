import XCTest
import KPLMTestSupport
@testable import KPLM

/// Bad input gets an error, never a crash, and changes nothing.
final class ValidationTests: XCTestCase {
    private func manager() throws -> MetricsManager {
        try detailed(TestClock(100))
    }

    func testEmptyNameRefused() throws {
        let m = try manager()
        assertThrows(.invalidArgument) { try m.put("") }
        assertThrows(.invalidArgument) { try m.put("", 2, stream: "s") }
        assertThrows(.invalidArgument) { _ = try m.metric("") }
        XCTAssertEqual(m.snapshots(), [])
        XCTAssertEqual(m.metricCount, 0)
    }

    func testNameLengthLimitInBytes() throws {
        let m = try manager()
        let ascii255 = String(repeating: "n", count: 255)
        let ascii256 = String(repeating: "n", count: 256)
        // 128 two-byte characters: 128 characters but 256 bytes.
        let multi256 = String(repeating: "é", count: 128)
        let multi255 = "a" + String(repeating: "é", count: 127)
        XCTAssertEqual(multi256.utf8.count, 256)
        XCTAssertEqual(multi255.utf8.count, 255)

        try m.put(ascii255, 1)
        try m.put(multi255, 1)
        _ = try m.metric(ascii255, stream: "s")
        assertThrows(.invalidArgument) { try m.put(ascii256, 1) }
        assertThrows(.invalidArgument) { try m.put(multi256, 1) }
        assertThrows(.invalidArgument) { _ = try m.metric(ascii256) }
        XCTAssertEqual(Set(m.windowStatisticsByKey().keys), [MetricKey(name: ascii255), MetricKey(name: multi255)])
        XCTAssertEqual(m.metricCount, 3)
    }

    func testDimensionLengthLimitInBytes() throws {
        let m = try manager()
        let ok = String(repeating: "d", count: 1024)
        let tooLong = String(repeating: "d", count: 1025)
        let multiTooLong = String(repeating: "ü", count: 512) + "x"   // 1025 bytes
        XCTAssertEqual(multiTooLong.utf8.count, 1025)

        try m.put("D", 1, stream: ok)
        try m.put("D", 1, shardId: ok)
        try m.put("D", 1, errorCode: ok)
        try m.put("D", 1, stream: ok, shardId: ok, errorCode: ok)
        XCTAssertEqual(m.windowStatisticsByKey().count, 4)

        assertThrows(.invalidArgument) { try m.put("D", 1, stream: tooLong) }
        assertThrows(.invalidArgument) { try m.put("D", 1, shardId: tooLong) }
        assertThrows(.invalidArgument) { try m.put("D", 1, errorCode: tooLong) }
        assertThrows(.invalidArgument) { try m.put("D", 1, stream: multiTooLong) }
        assertThrows(.invalidArgument) { _ = try m.metric("D", stream: tooLong) }
        assertThrows(.invalidArgument) { _ = try m.metric("D", errorCode: tooLong) }
        XCTAssertEqual(m.windowStatisticsByKey().count, 4)
        XCTAssertEqual(m.windowStatisticsByKey().values.map(\.count).reduce(0, +), 4)
    }

    func testNonFiniteValuesRefused() throws {
        let m = try manager()
        let handle = try m.metric("V")
        for bad in [Double.nan, .infinity, -.infinity, .signalingNaN] {
            assertThrows(.invalidArgument, "\(bad)") { try m.put("V", bad) }
            assertThrows(.invalidArgument, "\(bad)") { try handle.put(bad) }
        }
        XCTAssertEqual(m.snapshots(), [])
        // Extreme but finite values are fine.
        try m.put("V", .greatestFiniteMagnitude)
        try handle.put(-.greatestFiniteMagnitude)
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "V")]?.count, 2)
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "V")]?.min, -.greatestFiniteMagnitude)
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "V")]?.max, .greatestFiniteMagnitude)
    }

    func testNulRefused() throws {
        let m = try manager()
        assertThrows(.invalidArgument) { try m.put("a\u{0}b", 1) }
        assertThrows(.invalidArgument) { try m.put("\u{0}", 1) }
        assertThrows(.invalidArgument) { _ = try m.metric("a\u{0}") }
        assertThrows(.invalidArgument) { try m.put("a", 1, stream: "s\u{0}") }
        assertThrows(.invalidArgument) { try m.put("a", 1, shardId: "\u{0}x") }
        assertThrows(.invalidArgument) { try m.put("a", 1, errorCode: "e\u{0}e") }
        XCTAssertEqual(m.snapshots(), [])
        XCTAssertEqual(m.metricCount, 0)
    }

    func testBadConfigurationRefused() {
        func code(_ change: (inout MetricsConfiguration) -> Void) -> MetricsError.Code? {
            var configuration = MetricsConfiguration()
            configuration.level = .detailed
            change(&configuration)
            return errorCode { _ = try MetricsManager(configuration: configuration) }
        }
        XCTAssertNil(code { _ in })
        XCTAssertEqual(code { $0.windowSeconds = 0 }, .invalidArgument)
        XCTAssertEqual(code { $0.windowSeconds = -1 }, .invalidArgument)
        XCTAssertEqual(code { $0.windowSeconds = 3601 }, .invalidArgument)
        XCTAssertNil(code { $0.windowSeconds = 1 })
        XCTAssertNil(code { $0.windowSeconds = 3600 })
        XCTAssertEqual(code { $0.uploadIntervalMs = 0 }, .invalidArgument)
        XCTAssertEqual(code { $0.uploadIntervalMs = -1 }, .invalidArgument)
        XCTAssertEqual(code { $0.uploadIntervalMs = .nan }, .invalidArgument)
        XCTAssertEqual(code { $0.uploadIntervalMs = .infinity }, .invalidArgument)
        XCTAssertEqual(code { $0.uploadIntervalMs = -.infinity }, .invalidArgument)
        XCTAssertNil(code { $0.uploadIntervalMs = 0.5 })
        XCTAssertEqual(code { $0.maxMetrics = 0 }, .invalidArgument)
        XCTAssertEqual(code { $0.maxMetrics = -5 }, .invalidArgument)
        XCTAssertNil(code { $0.maxMetrics = 1 })

        // Same through the convenience initialiser, at every level.
        for level in MetricsLevel.allCases {
            XCTAssertEqual(errorCode { _ = try MetricsManager(level: level, windowSeconds: 0) }, .invalidArgument)
            XCTAssertEqual(errorCode { _ = try MetricsManager(level: level, windowSeconds: 3601) }, .invalidArgument)
            XCTAssertEqual(errorCode { _ = try MetricsManager(level: level, uploadIntervalMs: 0) }, .invalidArgument)
            XCTAssertEqual(errorCode { _ = try MetricsManager(level: level, uploadIntervalMs: .nan) }, .invalidArgument)
            XCTAssertEqual(errorCode { _ = try MetricsManager(level: level, maxMetrics: 0) }, .invalidArgument)
        }
    }

    // MARK: UTF-8

    private func valid(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBufferPointer { Validation.isValidUTF8($0) }
    }

    func testUTF8AcceptsWellFormedText() {
        XCTAssertTrue(valid([]))
        XCTAssertTrue(valid(Array("UserRecordsPut".utf8)))
        XCTAssertTrue(valid(Array("é – 日本語 – 😀 – \u{10FFFF}".utf8)))
        XCTAssertTrue(valid([0xC2, 0x80]))                 // U+0080, smallest 2-byte
        XCTAssertTrue(valid([0xDF, 0xBF]))                 // U+07FF
        XCTAssertTrue(valid([0xE0, 0xA0, 0x80]))           // U+0800, smallest 3-byte
        XCTAssertTrue(valid([0xED, 0x9F, 0xBF]))           // U+D7FF, just below surrogates
        XCTAssertTrue(valid([0xEE, 0x80, 0x80]))           // U+E000, just above surrogates
        XCTAssertTrue(valid([0xEF, 0xBF, 0xBF]))           // U+FFFF
        XCTAssertTrue(valid([0xF0, 0x90, 0x80, 0x80]))     // U+10000, smallest 4-byte
        XCTAssertTrue(valid([0xF4, 0x8F, 0xBF, 0xBF]))     // U+10FFFF
        XCTAssertTrue(valid([0x41, 0xC3, 0xA9, 0x42]))
    }

    func testUTF8RejectsOverlongForms() {
        XCTAssertFalse(valid([0xC0, 0xAF]))                // "/" in 2 bytes
        XCTAssertFalse(valid([0xC1, 0xBF]))
        XCTAssertFalse(valid([0xC0, 0x80]))                // overlong NUL
        XCTAssertFalse(valid([0xE0, 0x80, 0xAF]))          // "/" in 3 bytes
        XCTAssertFalse(valid([0xE0, 0x9F, 0xBF]))          // U+07FF in 3 bytes
        XCTAssertFalse(valid([0xF0, 0x80, 0x80, 0xAF]))    // "/" in 4 bytes
        XCTAssertFalse(valid([0xF0, 0x8F, 0xBF, 0xBF]))    // U+FFFF in 4 bytes
    }

    func testUTF8RejectsSurrogates() {
        XCTAssertFalse(valid([0xED, 0xA0, 0x80]))          // U+D800
        XCTAssertFalse(valid([0xED, 0xBF, 0xBF]))          // U+DFFF
        XCTAssertFalse(valid([0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80]))   // CESU-8 pair
    }

    func testUTF8RejectsBeyondU10FFFF() {
        XCTAssertFalse(valid([0xF4, 0x90, 0x80, 0x80]))    // U+110000
        XCTAssertFalse(valid([0xF5, 0x80, 0x80, 0x80]))
        XCTAssertFalse(valid([0xF7, 0xBF, 0xBF, 0xBF]))
        XCTAssertFalse(valid([0xF8, 0x88, 0x80, 0x80, 0x80]))
        XCTAssertFalse(valid([0xFE]))
        XCTAssertFalse(valid([0xFF]))
    }

    func testUTF8RejectsStrayContinuationBytes() {
        XCTAssertFalse(valid([0x80]))
        XCTAssertFalse(valid([0xBF]))
        XCTAssertFalse(valid([0x41, 0x80, 0x42]))
        XCTAssertFalse(valid([0xC3, 0xA9, 0xA9]))          // one continuation too many
    }

    func testUTF8RejectsTruncatedSequences() {
        XCTAssertFalse(valid([0xC3]))
        XCTAssertFalse(valid([0xE2, 0x82]))
        XCTAssertFalse(valid([0xF0, 0x9F, 0x98]))
        XCTAssertFalse(valid([0x41, 0xE2]))
        XCTAssertFalse(valid([0xE2, 0x41, 0x41]))          // lead byte followed by ASCII
        XCTAssertFalse(valid([0xF0, 0x9F, 0x41, 0x80]))
        XCTAssertFalse(valid([0xC3, 0xC3, 0xA9]))
    }
}
