import XCTest
import KPLMTestSupport
@testable import KPLM

/// KPL parity: catalogue, rollups, level filter, extra dimensions,
/// namespace, local queries.
final class KPLParityTests: XCTestCase {
    private func manager(_ clock: TestClock, level: MetricsLevel = .detailed, granularity: MetricsGranularity? = nil,
                         filter: Bool = false, extras: [ExtraDimension] = [], window: Int = 60,
                         sink: (any MetricsSink)? = nil) throws -> MetricsManager {
        var c = MetricsConfiguration()
        c.level = level
        c.uploadIntervalMs = 3_600_000
        c.windowSeconds = window
        c.clock = clock.reading
        c.granularity = granularity
        c.kplLevelFilter = filter
        c.extraDimensions = extras
        return try MetricsManager(configuration: c, sink: sink)
    }

    private func lines(_ snapshots: [MetricSnapshot]) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: snapshots.map { (Totals.label($0.name, $0.dimensions), $0.count) })
    }

    func testCatalogueHasEveryKPLMetricWithItsUnitAndLevel() {
        let summary: Set = ["UserRecordsPut", "KinesisRecordsPut", "ErrorsByCode", "AllErrors",
                            "UserRecordExpired", "BufferingTime"]
        XCTAssertEqual(KPLMetrics.all.count, 15)
        for entry in KPLMetrics.all {
            XCTAssertEqual(KPLMetrics.level(of: entry.name), summary.contains(entry.name) ? .summary : .detailed, entry.name)
        }
        XCTAssertEqual(KPLMetrics.unit(of: KPLMetrics.userRecordsDataPut), .bytes)
        XCTAssertEqual(KPLMetrics.unit(of: KPLMetrics.kinesisRecordsDataPut), .bytes)
        XCTAssertEqual(KPLMetrics.unit(of: KPLMetrics.bufferingTime), .milliseconds)
        XCTAssertEqual(KPLMetrics.unit(of: KPLMetrics.requestTime), .milliseconds)
        XCTAssertEqual(KPLMetrics.unit(of: KPLMetrics.retriesPerRecord), .count)
        XCTAssertEqual(KPLMetrics.unit(of: "userrecordsput"), .none)   // bytewise
        XCTAssertEqual(KPLMetrics.level(of: "Custom"), .detailed)
        XCTAssertEqual(MetricUnit.milliseconds.name, "Milliseconds")
    }

    func testShardGranularityShowsEveryLevelOfTheTreeWithMergedStatistics() throws {
        let m = try manager(TestClock(100), granularity: .shard)
        try m.put("UserRecordsPut", 1, stream: "s1", shardId: "a")
        try m.put("UserRecordsPut", 2, stream: "s1", shardId: "a")
        try m.put("UserRecordsPut", 3, stream: "s1", shardId: "b")
        try m.put("UserRecordsPut", 4, stream: "s2", shardId: "c")
        try m.put("UserRecordsPut", 5)
        let snaps = m.snapshots()
        XCTAssertEqual(lines(snaps), [
            "UserRecordsPut": 5,
            "UserRecordsPut|StreamName=s1": 3,
            "UserRecordsPut|StreamName=s1|ShardId=a": 2,
            "UserRecordsPut|StreamName=s1|ShardId=b": 1,
            "UserRecordsPut|StreamName=s2": 1,
            "UserRecordsPut|StreamName=s2|ShardId=c": 1,
        ])
        let root = try XCTUnwrap(snaps.first { $0.dimensions.isEmpty })
        XCTAssertEqual(root.statistics, MetricStatistics(count: 5, sum: 15, min: 1, max: 5))
        // Export order: a parent before its children.
        XCTAssertEqual(snaps.map { $0.dimensions.count }, [0, 1, 2, 2, 1, 2])
    }

    func testCoarserGranularitiesStopAtTheirLevel() throws {
        for (g, expected) in [(MetricsGranularity.global, ["A": 2]),
                              (.stream, ["A": 2, "A|StreamName=s": 2])] {
            let m = try manager(TestClock(100), granularity: g)
            try m.put("A", 1, stream: "s", shardId: "x")
            try m.put("A", 1, stream: "s", shardId: "y")
            XCTAssertEqual(lines(m.snapshots()), expected, "\(g)")
        }
    }

    func testErrorCodesHangUnderTheNameAsInTheKPL() throws {
        let m = try manager(TestClock(100), granularity: .shard)
        try m.put("ErrorsByCode", 1, stream: "s", shardId: "x", errorCode: "Throttled")
        try m.put("ErrorsByCode", 1, stream: "s", shardId: "x", errorCode: "Internal")
        XCTAssertEqual(lines(m.snapshots()), [
            "ErrorsByCode": 2,
            "ErrorsByCode|ErrorCode=Internal": 1,
            "ErrorsByCode|ErrorCode=Internal|StreamName=s": 1,
            "ErrorsByCode|ErrorCode=Internal|StreamName=s|ShardId=x": 1,
            "ErrorsByCode|ErrorCode=Throttled": 1,
            "ErrorsByCode|ErrorCode=Throttled|StreamName=s": 1,
            "ErrorsByCode|ErrorCode=Throttled|StreamName=s|ShardId=x": 1,
        ])
    }

    func testRollupsApplyToExportsExactlyOnce() throws {
        let sink = EventSink()
        let m = try manager(TestClock(100), granularity: .stream, sink: sink)
        try m.start()
        try m.put("A", 1.5, stream: "s")
        try m.put("A", 2.5, stream: "t")
        try m.flush()
        try m.flush()   // nothing new: no second export
        let batches = sink.batches
        XCTAssertEqual(batches.count, 1)
        XCTAssertEqual(lines(batches[0]), ["A": 2, "A|StreamName=s": 1, "A|StreamName=t": 1])
        XCTAssertEqual(batches[0].first?.statistics, MetricStatistics(count: 2, sum: 4, min: 1.5, max: 2.5))
        XCTAssertEqual(batches[0].first?.namespace, "KinesisProducerLibrary")
        try m.close()
    }

    func testDefaultOutputIsTheSeeds() throws {
        let m = try manager(TestClock(100))
        try m.put("A", 1, stream: "s", shardId: "x", errorCode: "E")
        XCTAssertEqual(lines(m.snapshots()), ["A|stream=s|shard=x|error_code=E": 1])
    }

    func testKPLLevelFilterShowsOnlyMetricsWithinTheLevel() throws {
        let m = try manager(TestClock(100), level: .summary, filter: true)
        try m.put(KPLMetrics.userRecordsPut, 1)
        try m.put(KPLMetrics.userRecordsReceived, 1)
        try m.put("Custom", 1)
        XCTAssertEqual(lines(m.snapshots()), ["UserRecordsPut": 1])
        // Without the filter, SUMMARY keeps its seed meaning (trimming only).
        let plain = try manager(TestClock(100), level: .summary)
        try plain.put(KPLMetrics.userRecordsReceived, 1)
        XCTAssertEqual(lines(plain.snapshots()), ["UserRecordsReceived": 1])
    }

    func testExtraDimensionsGoWhereTheKPLPutsThem() throws {
        let extras = [ExtraDimension("Host", "h1", granularity: .global),
                      ExtraDimension("Zone", "z", granularity: .stream),
                      ExtraDimension("Slot", "7", granularity: .shard)]
        let m = try manager(TestClock(100), granularity: .shard, extras: extras)
        try m.put("A", 1, stream: "s", shardId: "x", errorCode: "E")
        XCTAssertEqual(lines(m.snapshots()), [
            "A|Host=h1": 1,
            "A|Host=h1|ErrorCode=E": 1,
            "A|Host=h1|ErrorCode=E|StreamName=s|Zone=z": 1,
            "A|Host=h1|ErrorCode=E|StreamName=s|Zone=z|ShardId=x|Slot=7": 1,
        ])
        // Without a granularity: one line, the extras by level.
        let seed = try manager(TestClock(100), extras: extras)
        try seed.put("A", 1, stream: "s", shardId: "x", errorCode: "E")
        XCTAssertEqual(lines(seed.snapshots()), ["A|Host=h1|stream=s|Zone=z|shard=x|Slot=7|error_code=E": 1])
    }

    func testExtraDimensionsAreAddedBeforeStartOnly() throws {
        let m = try manager(TestClock(100), granularity: .global)
        try m.addExtraDimension(ExtraDimension("Host", "h", granularity: .global))
        assertThrows(.invalidArgument) { try m.addExtraDimension(ExtraDimension("", "h", granularity: .global)) }
        assertThrows(.invalidArgument) { try m.addExtraDimension(ExtraDimension("H", "", granularity: .global)) }
        try m.put("A", 1)
        XCTAssertEqual(lines(m.snapshots()), ["A|Host=h": 1])
        try m.start()
        assertThrows(.invalidState) { try m.addExtraDimension(ExtraDimension("Late", "x", granularity: .global)) }
        try m.close()
    }

    func testNamespaceIsCarriedAndValidated() throws {
        var c = MetricsConfiguration()
        c.level = .detailed
        c.namespace = "MyApp"
        let m = try MetricsManager(configuration: c)
        try m.put("A", 1)
        XCTAssertEqual(m.snapshots().first?.namespace, "MyApp")
        c.namespace = ""
        assertThrows(.invalidArgument) { _ = try MetricsManager(configuration: c) }
        c.namespace = String(repeating: "n", count: 256)
        assertThrows(.invalidArgument) { _ = try MetricsManager(configuration: c) }
    }

    func testQueriesOverTheLastSecondsAndSinceStart() throws {
        let clock = TestClock(100)
        let m = try manager(clock, window: 10)
        try m.put("A", 1, stream: "s")    // second 100
        clock.now = 105
        try m.put("A", 2, stream: "s")    // 105
        try m.put("A", 4, stream: "t")
        clock.now = 109
        try m.put("A", 8, stream: "s")    // 109
        XCTAssertEqual(try m.statistics("A", stream: "s", lastSeconds: 1), MetricStatistics(count: 1, sum: 8, min: 8, max: 8))
        XCTAssertEqual(try m.statistics("A", stream: "s", lastSeconds: 5).count, 2)   // 105...109
        XCTAssertEqual(try m.statistics("A", stream: "s", lastSeconds: 10).count, 3)
        XCTAssertEqual(try m.statistics(name: "A", lastSeconds: 10), MetricStatistics(count: 4, sum: 15, min: 1, max: 8))
        // Later, the window has moved on; cumulative keeps everything.
        clock.now = 130
        XCTAssertEqual(try m.statistics("A", stream: "s", lastSeconds: 10).count, 0)
        XCTAssertEqual(try m.statistics("A", stream: "s"), MetricStatistics(count: 3, sum: 11, min: 1, max: 8))
        XCTAssertEqual(try m.statistics(name: "A"), MetricStatistics(count: 4, sum: 15, min: 1, max: 8))
        XCTAssertEqual(try m.statistics("Unknown").count, 0)
        assertThrows(.invalidArgument) { _ = try m.statistics("A", lastSeconds: 0) }
        assertThrows(.invalidArgument) { _ = try m.statistics("A", lastSeconds: 11) }
        assertThrows(.invalidArgument) { _ = try m.statistics(name: "", lastSeconds: nil) }
    }

    func testQueriesSeePutsStillInThreadCells() throws {
        let m = try MetricsManager(level: .detailed, uploadIntervalMs: 3_600_000)   // system clock: writer cells
        let metric = try m.metric("Hot")
        XCTAssertTrue(runThreads(4) { _ in for _ in 0..<1_000 { try! metric.put(1) } })
        XCTAssertEqual(try m.statistics("Hot").count, 4_000)
        XCTAssertEqual(try m.statistics(name: "Hot", lastSeconds: 60).count, 4_000)
    }
}
