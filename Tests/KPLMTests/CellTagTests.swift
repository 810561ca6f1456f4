import CKPLMShims
import Synchronization
import XCTest
import KPLMTestSupport
@testable import KPLM

/// The tag of a dense writer cell (``WriterCell/Offset/tag``): a put by
/// handle reads its manager's gate and the put flags there instead of in
/// the metric's header line, so the tag must be set exactly while the cell
/// is its series' and cleared before the line can be another metric's.
final class CellTagTests: XCTestCase {
    /// A started manager on the system clock (the common case needs the
    /// ticker's second), with the ticker running.
    private func started(distribution: String? = nil) throws -> MetricsManager {
        try XCTSkipUnless(CellCollector.isAvailable, "no membarrier: every put takes the shared path")
        let m = try MetricsManager(level: .detailed, sink: NullSink(), uploadInterval: .seconds(3600), windowSeconds: 60)
        if let distribution { try m.setDistribution(distribution, relativeAccuracy: 0.01) }
        try m.start()
        XCTAssertTrue(waitUntil { kplmshim_cached_second() != Int64.min }, "the ticker never ticked")
        return m
    }

    /// The calling thread's dense cell for `metric` (its region mapped).
    private func denseCell(_ metric: Metric) throws -> WriterCell {
        let writerPlus1 = kplmshim_writer_raw()
        XCTAssertGreaterThan(writerPlus1, 0, "the thread has no writer index")
        let base = try XCTUnwrap(kplmshim_dense_cell_of(metric.header.address, writerPlus1))
        return WriterCell(base: base)
    }

    func testAPutByHandleFindsItsGateAndFlagsInTheCellsTag() throws {
        let m = try started()
        let metric = try m.metric("Tagged", stream: "s")
        try metric.put(1)   // the general path: makes this thread's cell
        let cell = try denseCell(metric)
        XCTAssertEqual(UInt(bitPattern: cell.base), metric.cellTable.load(Int(kplmshim_writer_raw()) - 1))
        XCTAssertEqual(cell.tag, UInt(bitPattern: m.context.gate.wordPointer) | MetricHeader.plainCells)
        XCTAssertEqual(PutGate.generation(gate: m.context.gate.wordPointer), m.context.generation)

        // The common case records through the tag, and without it leaves the
        // put to the general path (the header line still holds the gate).
        XCTAssertTrue(metric.header.tryPutCommonCase(2))
        let tag = cell.tag
        cell.setTag(0)
        XCTAssertFalse(metric.header.tryPutCommonCase(4), "the common case did not need the cell's tag")
        cell.setTag(tag)
        XCTAssertTrue(metric.header.tryPutCommonCase(8))
        try m.flush()
        XCTAssertEqual(metric.series.total.count, 3)
        XCTAssertEqual(metric.series.total.sum, 11)
        try m.close()
    }

    func testADistributionMetricsCellIsTaggedAsOne() throws {
        let m = try started(distribution: "Latency")
        let metric = try m.metric("Latency", stream: "s")
        try metric.put(5)
        XCTAssertEqual(try denseCell(metric).tag,
                       UInt(bitPattern: m.context.gate.wordPointer) | MetricHeader.distributionCells)
        XCTAssertTrue(metric.header.tryPutCommonCase(5), "a value in the bucket the first put made")
        try m.close()
    }

    func testAReleasedMetricsCellLosesItsTag() throws {
        // Lines of released metrics, with a metric kept alive in each of
        // their chunks (so that the chunk, and its cells' region, stay).
        let keys = 3000
        var kept: [Metric] = []
        var released: [UnsafeMutableRawPointer] = []
        let writerPlus1: Int32
        do {
            let m = try started()
            let handles = try (0..<keys).map { try m.metric("Released", stream: "s", shardId: "shard-\($0)") }
            for h in handles { try h.put(1) }
            writerPlus1 = kplmshim_writer_raw()
            XCTAssertGreaterThan(writerPlus1, 0)
            var keptChunks = Set<UInt>()
            for h in handles {
                XCTAssertNotEqual(try denseCell(h).tag, 0, "a cell made by a put has no tag")
                let chunk = UInt(bitPattern: h.header.address) & ~UInt(KPLMSHIM_LINE_CHUNK_BYTES - 1)
                if keptChunks.insert(chunk).inserted { kept.append(h) } else { released.append(h.header.address) }
            }
            try m.close()
        }
        XCTAssertFalse(released.isEmpty)
        for line in released {
            let base = try XCTUnwrap(kplmshim_dense_cell_of(line, writerPlus1), "a kept chunk's region was unmapped")
            XCTAssertEqual(WriterCell(base: base).tag, 0, "a released metric's cell kept its tag")
        }
        withExtendedLifetime(kept) {}
    }
}
