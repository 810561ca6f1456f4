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

    /// Known names are static strings (one for every key of the name); the
    /// record's tail holds the others, and the values.
    func testKnownNamesAreNotCopied() {
        let a = record(MetricKey(name: "UserRecordsPut", stream: "s", shardId: "shardId-1"))
        let b = record(MetricKey(name: "UserRecordsPut", stream: "t", shardId: "shardId-2"))
        XCTAssertEqual(a.name, b.name)
        let c = record(MetricKey(name: "Mine")), d = record(MetricKey(name: "Mine"))
        XCTAssertNotEqual(c.name, d.name)
        XCTAssertEqual(a.layerWord.pointee, 0, "the layer word starts empty")
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
        // The record of a KPL key with a shard id: a 96-byte block (the
        // names static, the stream and shard id once; raw memory, no
        // object header).
        XCTAssertLessThanOrEqual(try usableSize(series.record.base), 88)
    }
}
