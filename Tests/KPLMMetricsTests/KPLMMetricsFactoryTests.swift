import CoreMetrics
import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM
@testable import KPLMMetrics

/// KPLMMetricsFactory driven directly, as swift-metrics' own backends test
/// themselves; one test bootstraps the MetricsSystem (once per process).
final class KPLMMetricsFactoryTests: XCTestCase {
    private func manager(_ sink: InMemorySink) throws -> MetricsManager {
        var c = MetricsConfiguration()
        c.level = .detailed
        c.uploadInterval = .seconds(3600)
        c.clock = TestClock(100).reading
        return try MetricsManager(configuration: c, sink: sink)
    }

    /// Every exported snapshot of `name`, merged: (count, sum, min, max).
    private func exported(_ sink: InMemorySink, _ name: String,
                          _ dimensions: [MetricDimension] = []) -> (Int, Double, Double, Double)? {
        let hits = sink.snapshots.filter { $0.name == name && $0.dimensions == dimensions }
        guard !hits.isEmpty else { return nil }
        return (hits.reduce(0) { $0 + $1.count }, hits.reduce(0) { $0 + $1.sum },
                hits.map(\.min).min()!, hits.map(\.max).max()!)
    }

    func testCountersAreSumsPerFlush() throws {
        let sink = InMemorySink()
        let m = try manager(sink)
        let factory = KPLMMetricsFactory(manager: m)
        try m.start()
        let counter = factory.makeCounter(label: "requests", dimensions: [("route", "/put"), ("az", "a")])
        for _ in 0..<1000 { counter.increment(by: 1) }
        counter.increment(by: 500)
        let fp = factory.makeFloatingPointCounter(label: "bytes", dimensions: [])
        fp.increment(by: 0.5)
        fp.increment(by: 2.25)
        try m.flush()
        counter.increment(by: 7)
        counter.reset()
        try m.close()
        // One observation per flush, its increase: 1,500 at the flush, and
        // the 7 added after it at close (the hook runs before puts are refused).
        let r = try XCTUnwrap(exported(sink, "requests", dims(("az", "a"), ("route", "/put"))))
        XCTAssertEqual(r.0, 2)
        XCTAssertEqual(r.1, 1507)
        XCTAssertEqual(sink.snapshots.filter { $0.name == "requests" }.map(\.sum), [1500, 7])
        XCTAssertEqual(exported(sink, "bytes")?.1, 2.75)
    }

    func testRecordersAndTimersAreStatistics() throws {
        let sink = InMemorySink()
        let m = try manager(sink)
        let factory = KPLMMetricsFactory(manager: m)
        try m.start()
        let recorder = factory.makeRecorder(label: "size", dimensions: [("stream", "orders")], aggregate: true)
        recorder.record(Int64(10))
        recorder.record(2.5)
        recorder.record(-1.0)
        let timer = factory.makeTimer(label: "RequestTime", dimensions: [])
        timer.recordNanoseconds(1_500_000)   // 1.5 ms
        timer.recordNanoseconds(20_000_000)  // 20 ms
        try m.close()
        let size = try XCTUnwrap(exported(sink, "size", dims(("stream", "orders"))))
        XCTAssertEqual(size.0, 3)
        XCTAssertEqual(size.1, 11.5)
        XCTAssertEqual(size.2, -1)
        XCTAssertEqual(size.3, 10)
        let time = try XCTUnwrap(exported(sink, "RequestTime"))
        XCTAssertEqual(time.0, 2)
        XCTAssertEqual(time.1, 21.5, "milliseconds")
        XCTAssertEqual(time.2, 1.5)
        XCTAssertEqual(time.3, 20)
    }

    func testMetersAreStatisticsAndTheirLastValueAtEachFlush() throws {
        let sink = InMemorySink()
        let m = try manager(sink)
        let factory = KPLMMetricsFactory(manager: m)
        try m.start()
        let meter = factory.makeMeter(label: "queue", dimensions: [("shard", "1")])
        meter.set(Int64(5))
        meter.increment(by: 3)    // 8
        meter.decrement(by: 6)    // 2
        try m.flush()
        var last = sink.snapshots.filter { $0.name == "queue.last" }
        XCTAssertEqual(last.map(\.sum), [2])
        XCTAssertEqual(last.first?.dimensions, dims(("shard", "1")))
        let values = try XCTUnwrap(exported(sink, "queue", dims(("shard", "1"))))
        XCTAssertEqual(values.0, 3)
        XCTAssertEqual(values.1, 15)
        XCTAssertEqual(values.2, 2)
        XCTAssertEqual(values.3, 8)
        // No new value: the last one is published again at the next flush.
        try m.flush()
        last = sink.snapshots.filter { $0.name == "queue.last" }
        XCTAssertEqual(last.map(\.sum), [2, 2])
        // A non-aggregating recorder of the same label and dimensions is the same gauge.
        let recorder = factory.makeRecorder(label: "queue", dimensions: [("shard", "1")], aggregate: false)
        XCTAssertTrue(recorder === meter)
        recorder.record(9.0)
        meter.set(Double.nan)   // refused: nothing recorded
        try m.flush()
        XCTAssertEqual(sink.snapshots.filter { $0.name == "queue.last" }.map(\.sum), [2, 2, 9])
        // Destroyed: no more last values.
        factory.destroyMeter(meter)
        try m.flush()
        XCTAssertEqual(sink.snapshots.filter { $0.name == "queue.last" }.count, 3)
        try m.close()
    }

    func testHandlersAreCachedPerKindLabelAndDimensions() throws {
        let m = try manager(InMemorySink())
        let factory = KPLMMetricsFactory(manager: m)
        let a = factory.makeCounter(label: "c", dimensions: [("x", "1"), ("y", "2")])
        let b = factory.makeCounter(label: "c", dimensions: [("y", "2"), ("x", "1")])
        XCTAssertTrue(a === b)
        XCTAssertFalse(a === factory.makeCounter(label: "c", dimensions: [("x", "1")]))
        // Another kind of the same label and dimensions records on the same kplm key.
        let fp = factory.makeFloatingPointCounter(label: "c", dimensions: [("x", "1"), ("y", "2")])
        try m.start()
        a.increment(by: 1)
        fp.increment(by: 0.5)
        try m.flush()   // (a counter's increase reaches the key at a flush)
        XCTAssertEqual(try m.statistics("c", dimensions: [("x", "1"), ("y", "2")]).sum, 1.5)
        factory.destroyCounter(a)
        XCTAssertFalse(a === factory.makeCounter(label: "c", dimensions: [("x", "1"), ("y", "2")]))
        XCTAssertEqual(m.metricCount, 2)
    }

    func testRefusedKeysRecordNothingAndSayWhy() throws {
        let m = try manager(InMemorySink())
        let factory = KPLMMetricsFactory(manager: m)
        XCTAssertNil(factory.lastError)
        let empty = factory.makeCounter(label: "", dimensions: [])
        empty.increment(by: 1)
        XCTAssertEqual(factory.lastError?.code, .invalidArgument)
        let repeated = factory.makeTimer(label: "t", dimensions: [("a", "1"), ("a", "2")])
        repeated.recordNanoseconds(1)
        XCTAssertEqual(m.metricCount, 0)
    }

    func testAFactoryMadeAfterStartPublishesStatisticsOnly() throws {
        let sink = InMemorySink()
        let m = try manager(sink)
        try m.start()
        let factory = KPLMMetricsFactory(manager: m)
        XCTAssertEqual(factory.lastError?.code, .invalidState)
        factory.makeMeter(label: "g", dimensions: []).set(Int64(4))
        // Without the hook a counter records each increment.
        let counter = factory.makeCounter(label: "c", dimensions: [])
        counter.increment(by: 2)
        counter.increment(by: 5)
        try m.close()
        XCTAssertEqual(exported(sink, "g")?.1, 4)
        XCTAssertNil(exported(sink, "g.last"))
        XCTAssertEqual(exported(sink, "c").map { [Double($0.0), $0.1, $0.2, $0.3] }, [2, 7, 2, 5])
    }

    /// Counters from many threads at once, more than there are writer
    /// indices (the rest share the atomic stripe), while flushes run: every
    /// increment is exported exactly once.
    func testCounterIncrementsFromManyThreadsAreExportedExactlyOnce() throws {
        let sink = InMemorySink()
        let m = try manager(sink)
        let factory = KPLMMetricsFactory(manager: m)
        try m.start()
        let counter = factory.makeCounter(label: "hits", dimensions: [])
        let threads = 80, perThread = 2_000
        let ready = DispatchGroup(), go = DispatchSemaphore(value: 0), done = DispatchGroup()
        for t in 0..<threads {
            ready.enter()
            done.enter()
            Thread {
                // Each thread holds its writer index (or finds none) until all have started.
                counter.increment(by: 0)
                ready.leave()
                go.wait()
                for _ in 0..<perThread { counter.increment(by: Int64(t % 3 + 1)) }
                done.leave()
            }.start()
        }
        ready.wait()
        for _ in 0..<threads { go.signal() }
        while done.wait(timeout: .now() + .milliseconds(2)) == .timedOut { try m.flush() }
        try m.close()
        let expected = (0..<threads).reduce(0) { $0 + ($1 % 3 + 1) * perThread }
        XCTAssertEqual(exported(sink, "hits")?.1, Double(expected))
    }

    /// Destroying a counter records what it added since the last flush.
    func testADestroyedCounterRecordsItsLastIncrease() throws {
        let sink = InMemorySink()
        let m = try manager(sink)
        let factory = KPLMMetricsFactory(manager: m)
        try m.start()
        let counter = factory.makeCounter(label: "c", dimensions: [])
        counter.increment(by: 4)
        factory.destroyCounter(counter)
        counter.increment(by: 100)   // after destroy: dropped
        try m.flush()
        XCTAssertEqual(exported(sink, "c")?.1, 4)
        try m.close()
        XCTAssertEqual(exported(sink, "c")?.1, 4)
    }

    /// A manager released without close still exports what counters added
    /// since the last flush (the hook runs before the final flush).
    func testAReleasedManagerExportsTheCountersLastIncrease() throws {
        let sink = InMemorySink()
        do {
            let m = try manager(sink)
            let factory = KPLMMetricsFactory(manager: m)
            try m.start()
            factory.makeCounter(label: "c", dimensions: []).increment(by: 9)
        }
        XCTAssertEqual(exported(sink, "c")?.1, 9)
    }

    func testTheMetricsSystemRoutesEveryKindIntoKPLM() throws {
        let sink = InMemorySink()
        let m = try manager(sink)
        MetricsSystem.bootstrap(KPLMMetricsFactory(manager: m))   // once in this process
        try m.start()
        Counter(label: "boot.counter", dimensions: [("k", "v")]).increment(by: 3)
        CoreMetrics.Timer(label: "boot.timer").recordNanoseconds(2_000_000)
        Recorder(label: "boot.recorder").record(7)
        Meter(label: "boot.meter").set(1.5)
        FloatingPointCounter(label: "boot.fp").increment(by: 0.25)
        try m.close()
        XCTAssertEqual(exported(sink, "boot.counter", dims(("k", "v")))?.1, 3)
        XCTAssertEqual(exported(sink, "boot.timer")?.1, 2)
        XCTAssertEqual(exported(sink, "boot.recorder")?.1, 7)
        XCTAssertEqual(exported(sink, "boot.meter")?.1, 1.5)
        XCTAssertEqual(exported(sink, "boot.fp")?.1, 0.25)
    }
}
