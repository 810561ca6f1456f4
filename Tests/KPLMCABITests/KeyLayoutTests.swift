import Glibc
import XCTest
@testable import KPLM
@testable import KPLMCABI

/// A key laid out as C strings (``CKeyLayout``, a view of its
/// ``KeyRecord``): the KPL metric names are
/// shared static strings, any other name (a byte-different look-alike
/// included) is the key's own copy.
final class KeyLayoutTests: XCTestCase {
    /// The records made, freed after each test (a series frees its own).
    private var made: [KeyRecord] = []

    override func tearDown() {
        made.forEach { $0.deallocate() }
        made = []
        super.tearDown()
    }

    private func layout(_ name: String, shard: String = "shardId-1") -> CKeyLayout {
        let record = KeyRecord.make(MetricKey(name: name, stream: "orders", shardId: shard))
        made.append(record)
        return CKeyLayout(record: record)
    }

    func testKPLMetricNamesAreSharedStaticStrings() {
        let a = layout("UserRecordsPut", shard: "shardId-1"), b = layout("UserRecordsPut", shard: "shardId-2")
        XCTAssertEqual(a.name, b.name, "one string for every key of the name")
        XCTAssertEqual(String(cString: a.name), "UserRecordsPut")
        for name in ["KinesisRecordsPerPutRecordsRequest", "KplmSinkDropped", "AllErrors"] {
            XCTAssertEqual(layout(name).name, layout(name, shard: "shardId-2").name, name)
            XCTAssertEqual(String(cString: layout(name).name), name)
        }
        // The dimensions are laid out as before, after the name.
        XCTAssertEqual(a.dimensionCount, 2)
        XCTAssertEqual(String(cString: a.dimensions![1].value), "shardId-1")
        XCTAssertEqual(String(cString: b.dimensions![1].value), "shardId-2")
    }

    func testOtherNamesAreCopiedByteForByte() {
        let a = layout("MyMetric"), b = layout("MyMetric", shard: "shardId-2")
        XCTAssertNotEqual(a.name, b.name, "each key has its own copy")
        XCTAssertEqual(String(cString: a.name), "MyMetric")
        // A Kelvin sign (E2 84 AA) is canonically equivalent to "K": Swift's
        // == matches it, the layout must keep its bytes.
        let kelvin = "\u{212A}inesisRecordsPut"
        XCTAssertTrue(kelvin == "KinesisRecordsPut", "the look-alike this test is about")
        let k = layout(kelvin)
        XCTAssertNotEqual(strcmp(k.name, "KinesisRecordsPut"), 0)
        XCTAssertEqual(Array(String(cString: k.name).utf8), Array(kelvin.utf8))
    }
}
