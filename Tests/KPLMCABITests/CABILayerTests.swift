import CKPLM
import XCTest
@testable import KPLM
@testable import KPLMCABI

/// The C ABI module over the core: the core's copies of kplm.h's limits and
/// names, and the C side data the C ABI keeps itself (per manager, per key).
final class CABILayerTests: XCTestCase {
    /// The core does not see kplm.h: its limits and reserved names must be
    /// the header's.
    func testCoreConstantsMatchTheHeader() {
        XCTAssertEqual(Validation.maxNameBytes, Int(KPLM_NAME_MAX))
        XCTAssertEqual(Validation.maxDimensionBytes, Int(KPLM_DIMENSION_VALUE_MAX))
        XCTAssertEqual(Validation.windowSecondsRange, Int(KPLM_WINDOW_SECONDS_MIN)...Int(KPLM_WINDOW_SECONDS_MAX))
        XCTAssertEqual(refusedMetricName, KPLM_METRIC_REFUSED)
        XCTAssertEqual(sinkDroppedMetricName, KPLM_METRIC_SINK_DROPPED)
        XCTAssertEqual(MetricsLevel.detailed.rawValue, Int(KPLM_LEVEL_DETAILED.rawValue))
    }

    /// A key is laid out once, when it is made (its ``KeyRecord``, the
    /// series' only copy of it): every C read borrows the same strings.
    /// The pairs of a record that keeps none are written to the reader's
    /// scratch room; a plain record's are its own.
    func testKeysAreLaidOutOnceAsCStrings() throws {
        let m = try MetricsManager(level: .detailed)
        try m.put("A", 2, stream: "s")
        try m.put("A", 3, dimensions: [("zone", "z")])
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: CKeyLayout.pairsScratchBytes, alignment: 8)
        defer { scratch.deallocate() }
        func snapshot(_ series: MetricSeries) -> kplm_snapshot {
            series.cKey.snapshot(.empty, windowStart: 0, windowEnd: 1, timestampUnix: 0, pairsScratch: scratch)
        }
        let indexed = try XCTUnwrap(m.metric("A", stream: "s").series)
        let first = snapshot(indexed), again = snapshot(indexed)
        XCTAssertEqual(first.name, again.name)
        XCTAssertEqual(first.dimensions, UnsafeRawPointer(scratch).assumingMemoryBound(to: kplm_dimension.self))
        XCTAssertEqual(first.dimensions?[0].value, again.dimensions?[0].value, "the value is the record's")
        XCTAssertEqual(String(cString: first.name), "A")
        XCTAssertEqual(first.dimension_count, 1)
        XCTAssertEqual(String(cString: first.dimensions![0].name), "stream")
        XCTAssertEqual(String(cString: first.dimensions![0].value), "s")
        let plain = try XCTUnwrap(m.metric("A", dimensions: [("zone", "z")]).series)
        let p = snapshot(plain)
        XCTAssertEqual(p.dimension_count, 1)
        XCTAssertNotEqual(p.dimensions, UnsafeRawPointer(scratch).assumingMemoryBound(to: kplm_dimension.self),
                          "a plain record's own pairs")
        XCTAssertEqual(p.dimensions, snapshot(plain).dimensions)
        XCTAssertEqual(String(cString: p.dimensions![0].name), "zone")
        XCTAssertEqual(String(cString: p.dimensions![0].value), "z")
        XCTAssertNil(snapshot(try XCTUnwrap(m.metric("B").series)).dimensions)
        XCTAssertEqual(MemoryLayout<kplm_dimension>.stride, 2 * MemoryLayout<UnsafePointer<CChar>>.stride,
                       "the record's (name, value) pointer pairs are kplm_dimension's layout")
    }

    /// A `kplm_manager *` carries the C side data beside the manager: the
    /// namespace as a C string and the index of puts by names.
    func testHandleKeepsCSideData() throws {
        var config = kplm_config()
        kplm_config_init_sized(&config, MemoryLayout<kplm_config>.size)
        config.level = KPLM_LEVEL_SUMMARY
        var handle: OpaquePointer?
        XCTAssertEqual(kplm_new(&config, &handle), KPLM_OK)
        defer { kplm_free(handle) }
        let c = try XCTUnwrap(cManager(handle))
        XCTAssertEqual(String(cString: kplm_namespace(handle)!), "KinesisProducerLibrary")
        XCTAssertFalse(c.recordsNothing)
        XCTAssertEqual(kplm_put(handle, "P", 3, "s", "shard-1", nil), KPLM_OK)
        XCTAssertEqual(kplm_put(handle, "P", 4, "s", "shard-1", nil), KPLM_OK)
        XCTAssertEqual(c.manager.windowStatisticsByKey()[MetricKey(name: "P", stream: "s")],
                       MetricStatistics(count: 2, sum: 7, min: 3, max: 4))
    }

    /// At level none a put by names checks only what costs nothing, through
    /// the core's one decision (``MetricsManager/unrecordedPutOutcome``).
    func testLevelNonePutsAreDecidedByTheCore() throws {
        var handle: OpaquePointer?
        XCTAssertEqual(kplm_new(nil, &handle), KPLM_OK)
        defer { kplm_free(handle) }
        XCTAssertTrue(try XCTUnwrap(cManager(handle)).recordsNothing)
        XCTAssertEqual(kplm_put(handle, "N", 1, nil, nil, nil), KPLM_OK)
        XCTAssertEqual(kplm_close(handle), KPLM_OK)
        XCTAssertEqual(kplm_put(handle, "N", 1, nil, nil, nil), KPLM_ECLOSED)
    }
}
