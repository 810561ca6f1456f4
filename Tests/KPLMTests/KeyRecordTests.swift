import CKPLMShims
import Glibc
import XCTest
@testable import KPLM

/// A series' ``KeyRecord`` (its key's one copy): the same key back, the
/// same hash and equality as its ``MetricKey`` (the registry's table mixes
/// the two), byte for byte.
final class KeyRecordTests: XCTestCase {
    /// The records made, freed after each test (a series frees its own).
    private var made: [KeyRecord] = []

    override func tearDown() {
        made.forEach { $0.deallocate() }
        made = []
        super.tearDown()
    }

    /// `key`'s record, freed after the test.
    private func record(_ key: MetricKey) -> KeyRecord {
        let record = KeyRecord.make(key)
        made.append(record)
        return record
    }

    /// Keys that differ anywhere: name, each KPL dimension present or not,
    /// free-form dimensions, multi-byte and look-alike UTF-8.
    private func keys() -> [MetricKey] {
        let values: [String?] = [nil, "a", "ab", "é", "e\u{301}", "shardId-000000012345", "\u{FF}"]
        var made: [MetricKey] = []
        for name in ["UserRecordsPut", "\u{212A}inesisRecordsPut", "KinesisRecordsPut", "m", "a-very-long-metric-name-of-forty-bytes"] {
            for stream in values.prefix(3) {
                for shard in values {
                    for errorCode in values.prefix(2) {
                        made.append(MetricKey(name: name, stream: stream, shardId: shard, errorCode: errorCode))
                    }
                }
            }
            made.append(try! MetricKey(name: name, dimensions: [("zone", "us-east-1a"), ("stream", "s"), ("host", "h")]))
            made.append(try! MetricKey(name: name, dimensions: [("zone", "us-east-1a")]))
            made.append(try! MetricKey(name: name, dimensions: [("zone", "us-east-1b")]))
            made.append(try! MetricKey(name: name, dimensions: [("zone", "us-east-1a"), ("error_code", "E")]))
        }
        return made
    }

    func testTheRecordGivesItsKeyBack() {
        for key in keys() {
            let laidOut = record(key)
            XCTAssertEqual(laidOut.key, key)
            XCTAssertEqual(Array(laidOut.key.name.utf8), Array(key.name.utf8), "byte for byte")
            XCTAssertEqual(laidOut.key.dimensions.map { Array($0.value.utf8) }, key.dimensions.map { Array($0.value.utf8) })
            XCTAssertEqual(laidOut.dimensionCount, key.dimensions.count)
            XCTAssertEqual(String(cString: laidOut.name), key.name)
        }
    }

    func testARecordHashesAndMatchesAsItsKey() {
        let all = keys()
        XCTAssertEqual(Set(all).count, all.count, "the keys differ")
        let records = all.map(record)
        for (i, laidOut) in records.enumerated() {
            XCTAssertEqual(laidOut.keyHashValue, all[i].hashValue, "\(all[i])")
            for (j, key) in all.enumerated() {
                XCTAssertEqual(laidOut.matches(key), i == j, "\(all[i]) against \(key)")
            }
        }
    }

    func testTheNameIsComparedByItsBytes() {
        let kelvin = record(MetricKey(name: "\u{212A}inesisRecordsPut"))
        XCTAssertTrue("\u{212A}inesisRecordsPut" == "KinesisRecordsPut", "the look-alike this test is about")
        XCTAssertFalse(kelvin.nameEquals("KinesisRecordsPut"))
        XCTAssertTrue(kelvin.nameEquals("\u{212A}inesisRecordsPut"))
        XCTAssertNotEqual(strcmp(kelvin.name, "KinesisRecordsPut"), 0)
        XCTAssertFalse(kelvin.matches(MetricKey(name: "KinesisRecordsPut")))
    }

    /// In the plain form, known names are static strings (one for every
    /// key of the name); the record's tail holds the others, and the
    /// values. (The indexed form holds every name in its line.)
    func testKnownNamesAreNotCopied() throws {
        let a = record(try MetricKey(name: "UserRecordsPut", dimensions: [("stream", "s"), ("zone", "1")]))
        let b = record(try MetricKey(name: "UserRecordsPut", dimensions: [("stream", "t"), ("zone", "2")]))
        XCTAssertNil(a.indexLine)
        XCTAssertEqual(a.name, b.name)
        let c = record(MetricKey(name: "Mine")), d = record(MetricKey(name: "Mine"))
        XCTAssertNotEqual(c.name, d.name)
    }

    /// A key of KPL dimensions whose strings fit a line has its index line:
    /// 12 zero bytes, the four lengths, the strings NUL-terminated in the
    /// order name, stream, shard, error code: the record is that line; its
    /// pairs are written to scratch room on demand, pointing into it.
    /// Other keys (and a distribution metric's) have none.
    func testKPLKeysThatFitHaveAnIndexLine() throws {
        let key = MetricKey(name: "Mine", stream: "orders", shardId: nil, errorCode: "Throttled")
        let laidOut = record(key)
        let line = try XCTUnwrap(laidOut.indexLine)
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: line, count: 12)), Array(repeating: 0, count: 12))
        XCTAssertEqual(line.loadUnaligned(fromByteOffset: 12, as: UInt64.self), 4 | 6 << 16 | 0 << 32 | 9 << 48)
        let strings = Array(UnsafeRawBufferPointer(start: line + 20, count: 5 + 7 + 10))
        XCTAssertEqual(strings, Array("Mine\0orders\0Throttled\0".utf8))
        XCTAssertEqual(UnsafeRawPointer(laidOut.name), UnsafeRawPointer(line + 20), "a name not known is the line's")
        XCTAssertEqual(laidOut.base, line, "the record is its index line")
        XCTAssertEqual(laidOut.dimensionCount, 2)
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: 48, alignment: 8)
        defer { scratch.deallocate() }
        let pairs = try XCTUnwrap(laidOut.dimensionPairs(scratch: scratch))
            .assumingMemoryBound(to: UnsafePointer<CChar>.self)
        XCTAssertEqual(UnsafeRawPointer(pairs), UnsafeRawPointer(scratch))
        XCTAssertEqual(String(cString: pairs[0]), "stream")
        XCTAssertEqual(UnsafeRawPointer(pairs[1]), UnsafeRawPointer(line + 25))
        XCTAssertEqual(String(cString: pairs[2]), "error_code")
        XCTAssertEqual(UnsafeRawPointer(pairs[3]), UnsafeRawPointer(line + 32))
        XCTAssertEqual(laidOut.key, key)
        XCTAssertTrue(laidOut.matches(key))
        var h1 = Hasher(), h2 = Hasher()
        laidOut.hash(into: &h1)
        key.hash(into: &h2)
        XCTAssertEqual(h1.finalize(), h2.finalize(), "hashed as its key")
        XCTAssertNil(record(MetricKey(name: "Mine")).dimensionPairs(scratch: scratch))

        // 20 + 15 + 7 + 21 = 63 bytes: the scale benchmark's keys fit.
        XCTAssertNotNil(record(MetricKey(name: "UserRecordsPut", stream: "orders", shardId: "shardId-000000012345")).indexLine)
        // An empty value is an absent one (MetricKey drops it).
        let empty = try XCTUnwrap(record(MetricKey(name: "UserRecordsPut", stream: "", shardId: "s")).indexLine)
        XCTAssertEqual(empty.loadUnaligned(fromByteOffset: 12, as: UInt64.self), 14 | 0 << 16 | 1 << 32)
        // 65 bytes, a free-form dimension: no line.
        XCTAssertNil(record(MetricKey(name: "UserRecordsPut", stream: "orders", shardId: "shardId-00000000012345")).indexLine)
        XCTAssertNil(record(try MetricKey(name: "Mine", dimensions: [("zone", "a")])).indexLine)
        // A distribution metric's key holds its distribution: no line.
        let withDistribution = KeyRecord.make(key, distribution: SeriesDistribution(relativeAccuracy: 0.01))
        defer { withDistribution.deallocate() }
        XCTAssertNil(withDistribution.indexLine)
        XCTAssertEqual(withDistribution.distribution?.relativeAccuracy, 0.01)
        XCTAssertEqual(withDistribution.key, key)
    }
}

/// The blocks a key's object and record take (issue #13: bytes a key).
final class SeriesFootprintTests: XCTestCase {
    /// glibc's `malloc_usable_size` (in malloc.h, which Glibc does not export).
    private func usableSize(_ block: UnsafeMutableRawPointer) throws -> Int {
        typealias UsableSize = @convention(c) (UnsafeMutableRawPointer?) -> Int
        let symbol = try XCTUnwrap(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_usable_size"))
        return unsafeBitCast(symbol, to: UsableSize.self)(block)
    }

    func testASeriesAndItsRecordTakeTheirBlocks() throws {
        let series = MetricSeries.standalone(MetricKey(name: "UserRecordsPut", stream: "orders",
                                                       shardId: "shardId-000000012345"))
        // The object: 232 bytes or fewer, glibc's 240-byte block (8 bytes
        // more, the state's padding for a flag, and it takes a 256-byte one).
        XCTAssertLessThanOrEqual(try usableSize(Unmanaged.passUnretained(series).toOpaque()), 232)
        // The record of a KPL key with a shard id: a line of the record
        // pool, which the C key index uses as the key's entry (it took a
        // 96-byte block and the entry a 64-byte one; then two lines).
        let line = try XCTUnwrap(series.record.indexLine, "the indexed form")
        XCTAssertEqual(UInt(bitPattern: line) % 64, 0, "the index line is a line")
        XCTAssertEqual(series.record.base, line)
        // A record without one (a stream name too long for the line): a
        // block of 16 + 32 + 41 + 21 = 110 bytes at most, glibc's 128-byte
        // block (no object header, the names static).
        let plain = MetricSeries.standalone(MetricKey(name: "UserRecordsPut", stream: String(repeating: "s", count: 40),
                                                      shardId: "shardId-000000012345"))
        XCTAssertNil(plain.record.indexLine)
        XCTAssertLessThanOrEqual(try usableSize(plain.record.base), 120)
    }
}
