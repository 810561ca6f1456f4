import CKPLMShims
import XCTest
import KPLMTestSupport
@testable import KPLM

/// Sink callbacks calling back into their own manager.
final class ReentrancyTests: XCTestCase {
    func testExportCallingPutDoesNotDeadlock() throws {
        let clock = TestClock(100)
        let box = ManagerBox()
        let errors = Collected<String>()
        let sink = RecordingSink(onExport: { batch in
            // Count each export from inside the export itself.
            guard batch.contains(where: { $0.name == "Data" }) else { return }
            do { try box.manager?.put("ExportsSeen", Double(batch.count)) } catch { errors.append("\(error)") }
        })
        let m = try detailed(clock, sink: sink)
        box.manager = m
        try m.start()
        try m.put("Data", 1)
        try m.put("Data", 2, stream: "s")
        try m.flush()
        try requireCount(sink.batches, 1)
        XCTAssertEqual(sink.batches[0].map(\.name), ["Data", "Data"])
        // The put made inside the export is visible at once …
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "ExportsSeen")], MetricStatistics(count: 1, sum: 2, min: 2, max: 2))
        // … and exported by the next flush, once.
        try m.flush()
        try requireCount(try requireCount(sink.batches, 2)[1], 1)
        XCTAssertEqual(sink.batches[1].map(\.name), ["ExportsSeen"])
        XCTAssertEqual(sink.batches[1][0].statistics, MetricStatistics(count: 1, sum: 2, min: 2, max: 2))
        try m.flush()
        XCTAssertEqual(sink.batches.count, 2)
        try m.close()
        XCTAssertEqual(errors.all, [])
        box.manager = nil
    }

    func testPutFromFinalExportDuringCloseIsRefused() throws {
        // Once close has begun, puts are refused: even one from the final export.
        let clock = TestClock(100)
        let box = ManagerBox()
        let codes = Collected<MetricsError.Code?>()
        let sink = RecordingSink(onExport: { _ in
            guard let m = box.manager else { return }
            codes.append(errorCode { try m.put("FromExport") })
        })
        let m = try detailed(clock, sink: sink)
        box.manager = m
        try m.start()
        try m.put("Data", 1)
        try m.close()
        XCTAssertEqual(codes.all, [.closed])
        XCTAssertNil(m.windowStatisticsByKey()[MetricKey(name: "FromExport")])
        box.manager = nil
    }

    func testExportCallingFlushOrCloseGetsInvalidState() throws {
        let clock = TestClock(100)
        let box = ManagerBox()
        let codes = Collected<String>()
        let sink = RecordingSink(onExport: { _ in
            guard let m = box.manager else { return }
            codes.append("flush:\(String(describing: errorCode { try m.flush() }))")
            codes.append("close:\(String(describing: errorCode { try m.close() }))")
            codes.append("start:\(String(describing: errorCode { try m.start() }))")
            codes.append("closed:\(m.isClosed)")
        })
        let m = try detailed(clock, sink: sink)
        box.manager = m
        try m.start()
        try m.put("Data", 1)
        try m.flush()
        XCTAssertEqual(codes.all, ["flush:Optional(KPLM.MetricsError.Code.invalidState)",
                                   "close:Optional(KPLM.MetricsError.Code.invalidState)",
                                   "start:Optional(KPLM.MetricsError.Code.invalidState)",
                                   "closed:false"])
        // The manager still works normally afterwards.
        XCTAssertFalse(m.isClosed)
        try m.put("Data", 2)
        box.manager = nil
        try m.flush()
        try requireCount(sink.batches, 2)
        XCTAssertEqual(sink.batches[1].first?.statistics, MetricStatistics(count: 1, sum: 2, min: 2, max: 2))
        try m.close()
        XCTAssertEqual(sink.closeCount, 1)
    }

    func testOpenCallingFlushOrStartGetsInvalidState() throws {
        let clock = TestClock(100)
        let box = ManagerBox()
        let codes = Collected<MetricsError.Code?>()
        let sink = RecordingSink(onOpen: {
            guard let m = box.manager else { return }
            codes.append(errorCode { try m.start() })
            codes.append(errorCode { try m.flush() })
            codes.append(errorCode { try m.put("FromOpen", 3) })
        })
        let m = try detailed(clock, sink: sink)
        box.manager = m
        try m.start()
        XCTAssertEqual(codes.all, [.invalidState, .invalidState, nil])
        XCTAssertEqual(sink.openCount, 1)
        try m.flush()
        XCTAssertEqual(sink.batches.first?.map(\.name), ["FromOpen"])
        box.manager = nil
        try m.close()
    }

    func testPutsFromRecordAreAccumulatedButDoNotCallRecordAgain() throws {
        let clock = TestClock(100)
        let box = ManagerBox()
        let errors = Collected<String>()
        let sink = EventSink(onRecord: { event in
            // Mirror each "Outer" observation into "Inner": the put is
            // accumulated, but record is not called for it (SPEC §9).
            guard event.name == "Outer", let m = box.manager else { return }
            do { try m.put("Inner", event.value * 2, stream: "mirror") } catch { errors.append("\(error)") }
        })
        let m = try detailed(clock, sink: sink)
        box.manager = m
        try m.start()
        try m.put("Outer", 1.5)
        try m.metric("Outer").put(2)
        XCTAssertEqual(sink.events.map(\.name), ["Outer", "Outer"])
        XCTAssertEqual(sink.events.map(\.value), [1.5, 2])
        XCTAssertEqual(m.windowStatisticsByKey()[MetricKey(name: "Inner", stream: "mirror")],
                       MetricStatistics(count: 2, sum: 7, min: 3, max: 4))
        try m.flush()
        let exported = try requireCount(sink.batches.flatMap { $0 }, 2)
        XCTAssertEqual(exported.map(\.name), ["Inner", "Outer"])
        XCTAssertEqual(exported[1].statistics, MetricStatistics(count: 2, sum: 3.5, min: 1.5, max: 2))
        box.manager = nil
        try m.close()
        XCTAssertEqual(errors.all, [])
    }

    func testRecordCallingFlushOrCloseGetsInvalidState() throws {
        let clock = TestClock(100)
        let box = ManagerBox()
        let codes = Collected<MetricsError.Code?>()
        let sink = EventSink(onRecord: { _ in
            guard let m = box.manager else { return }
            codes.append(errorCode { try m.flush() })
            codes.append(errorCode { try m.close() })
        })
        let m = try detailed(clock, sink: sink)
        box.manager = m
        try m.start()
        try m.put("A", 1)
        XCTAssertEqual(codes.all, [.invalidState, .invalidState])
        XCTAssertFalse(m.isClosed)
        box.manager = nil
        try m.close()
        XCTAssertEqual(sink.batches.flatMap { $0 }.map(\.count), [1])
    }

    /// A signal handler that interrupted a put of this thread in its common
    /// case finds the put's cell section open (its sequence odd): a flush
    /// from there would wait for itself. The flush finds that section in the
    /// pass that flips the changed keys' cells, part-way through them, and
    /// is refused with nothing exported and nothing lost: the keys flipped
    /// before it and those after are all taken by the next flush. With a
    /// flush hook the refusal comes before the hook runs. With many keys
    /// changed out of their memory's order the flush visits them in address
    /// order (AddressOrder), and stops part-way through that order.
    func testFlushInsideAnInterruptedCellPutIsRefusedAndLosesNothing() throws {
        try XCTSkipUnless(CellCollector.isAvailable, "no membarrier: every put takes the shared path")
        for (keys, withHook) in [(50, false), (50, true), (3 * AddressOrder.minimumCount, false)] {
            let label = "\(keys) keys, hook: \(withHook)"
            let clock = TestClock(100)
            let sink = InMemorySink()
            let m = try detailed(clock, sink: sink)
            let hookRuns = Collected<Int>()
            if withHook { try m.setFlushHook { hookRuns.append(1) } }
            try m.start()
            let metrics = try (0..<keys).map { i throws(MetricsError) in try m.metric("Interrupted", stream: "s\(i)") }
            var order = Array(0..<keys)
            let sorts = keys >= AddressOrder.minimumCount
            if sorts {
                try m.flush()   // (takes the keys listed at creation, in its order: nothing to export)
                order.shuffle()
            }
            for i in order { try metrics[i].put(1) }
            // The put on key 30 (of 50) "interrupted": its section is open.
            let writer = Int(kplmshim_writer_index())
            XCTAssertGreaterThanOrEqual(writer, 0)
            let series = metrics[keys * 3 / 5].series
            XCTAssertTrue(series.hasCell(ofWriter: writer))
            let cell = MetricSeries.cell(writer, in: series.cells, of: Unmanaged.passUnretained(series))
            cell.sequence.pointee.wrappingAdd(1, ordering: .relaxed)
            let sortsBefore = AddressOrder.sortCount.load(ordering: .relaxed)
            assertThrows(.invalidState, label) { try m.flush() }
            if sorts { XCTAssertGreaterThan(AddressOrder.sortCount.load(ordering: .relaxed), sortsBefore, label) }
            XCTAssertTrue(sink.snapshots.isEmpty, "\(label): nothing exported")
            XCTAssertTrue(hookRuns.all.isEmpty, "\(label): the hook ran")
            // More puts on keys on both sides of the stop, then the put ends.
            try metrics[3].put(1)
            try metrics[keys - 10].put(1)
            cell.sequence.pointee.wrappingAdd(1, ordering: .releasing)
            try m.flush()
            let exported = sink.snapshots
            var expected = Dictionary(uniqueKeysWithValues: (0..<keys).map { ("s\($0)", 1) })
            expected["s3"] = 2
            expected["s\(keys - 10)"] = 2
            XCTAssertEqual(exported.count, keys, "\(label): each key once")
            XCTAssertEqual(Dictionary(exported.map { ($0.dimensions[0].value, $0.count) }, uniquingKeysWith: +),
                           expected, label)
            // Each key listed once: the next flush has nothing.
            sink.removeAll()
            try m.flush()
            XCTAssertTrue(sink.snapshots.isEmpty, label)
            try m.close()
        }
    }
}
