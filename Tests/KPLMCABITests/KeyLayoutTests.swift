import CKPLM
import Glibc
import XCTest
@testable import KPLM
@testable import KPLMCABI

/// A key laid out as C strings (``CKeyLayout``, a view of its
/// ``KeyRecord``): in a record of the plain form, the KPL metric names are
/// shared static strings and any other name (a byte-different look-alike
/// included) is the key's own copy; in the indexed form every name is the
/// key's index line's copy.
final class KeyLayoutTests: XCTestCase {
    /// The records made, freed after each test (a series frees its own).
    private var made: [KeyRecord] = []
    private let scratch = UnsafeMutableRawPointer.allocate(byteCount: CKeyLayout.pairsScratchBytes, alignment: 8)

    override func tearDown() {
        made.forEach { $0.deallocate() }
        made = []
        super.tearDown()
    }

    deinit { scratch.deallocate() }

    /// The snapshot of a key `name` on stream "orders" and shard `shard`,
    /// of the plain form unless `indexed` (a free-form dimension then
    /// keeps it out of the indexed form).
    private func snapshot(_ name: String, shard: String = "shardId-1", indexed: Bool = false) -> kplm_snapshot {
        let key = indexed ? MetricKey(name: name, stream: "orders", shardId: shard)
            : try! MetricKey(name: name, dimensions: [("stream", "orders"), ("shard", shard), ("zone", "z")])
        let record = KeyRecord.make(key)
        made.append(record)
        XCTAssertEqual(record.indexLine != nil, indexed)
        return CKeyLayout(record: record).snapshot(.empty, windowStart: 0, windowEnd: 1, timestampUnix: 0,
                                                   pairsScratch: scratch)
    }

    func testKPLMetricNamesAreSharedStaticStrings() {
        let a = snapshot("UserRecordsPut", shard: "shardId-1"), b = snapshot("UserRecordsPut", shard: "shardId-2")
        XCTAssertEqual(a.name, b.name, "one string for every key of the name")
        XCTAssertEqual(String(cString: a.name), "UserRecordsPut")
        for name in ["KinesisRecordsPerPutRecordsRequest", "KplmSinkDropped", "AllErrors"] {
            XCTAssertEqual(snapshot(name).name, snapshot(name, shard: "shardId-2").name, name)
            XCTAssertEqual(String(cString: snapshot(name).name), name)
        }
        // The dimensions are laid out as before, after the name.
        XCTAssertEqual(a.dimension_count, 3)
        XCTAssertEqual(String(cString: a.dimensions![1].value), "shardId-1")
        XCTAssertEqual(String(cString: b.dimensions![1].value), "shardId-2")
    }

    func testOtherNamesAreCopiedByteForByte() {
        for indexed in [false, true] {
            let a = snapshot("MyMetric", indexed: indexed), b = snapshot("MyMetric", shard: "shardId-2", indexed: indexed)
            XCTAssertNotEqual(a.name, b.name, "each key has its own copy")
            XCTAssertEqual(String(cString: a.name), "MyMetric")
            // A Kelvin sign (E2 84 AA) is canonically equivalent to "K":
            // Swift's == matches it, the layout must keep its bytes.
            let kelvin = "\u{212A}inesisRecordsPut"
            XCTAssertTrue(kelvin == "KinesisRecordsPut", "the look-alike this test is about")
            let k = snapshot(kelvin, indexed: indexed)
            XCTAssertNotEqual(strcmp(k.name, "KinesisRecordsPut"), 0)
            XCTAssertEqual(Array(String(cString: k.name).utf8), Array(kelvin.utf8))
        }
    }

    /// The indexed form: the name and values are the index line's; the
    /// pairs, written to the scratch room, name the KPL dimensions.
    func testIndexedKeysHandOutTheirLinesStrings() throws {
        let a = snapshot("UserRecordsPut", indexed: true)
        let line = try XCTUnwrap(made.last?.indexLine)
        XCTAssertEqual(UnsafeRawPointer(a.name), UnsafeRawPointer(line + 20))
        XCTAssertEqual(a.dimension_count, 2)
        XCTAssertEqual(UnsafeRawPointer(a.dimensions), UnsafeRawPointer(scratch))
        XCTAssertEqual(String(cString: a.dimensions![0].name), "stream")
        XCTAssertEqual(String(cString: a.dimensions![0].value), "orders")
        XCTAssertEqual(String(cString: a.dimensions![1].name), "shard")
        XCTAssertEqual(UnsafeRawPointer(a.dimensions![1].value), UnsafeRawPointer(line + 20 + 15 + 7))
    }
}
