import XCTest
import KPLMTestSupport
@testable import KPLM
@testable import KPLMSinks

/// Every sink publishes a key's free-form dimensions (SPEC §5), in the
/// reported order: the snapshots come from a manager, as in production.
final class FreeFormDimensionsSinkTests: XCTestCase {
    /// One snapshot of "UserRecordsPut" with stream, shard and two free-form
    /// dimensions given out of order.
    private func snapshots() throws -> [MetricSnapshot] {
        var c = MetricsConfiguration()
        c.level = .detailed
        c.uploadInterval = .seconds(3600)
        c.clock = TestClock(1_000_000_000).reading
        let m = try MetricsManager(configuration: c)
        try m.put("UserRecordsPut", 2, dimensions: [("host", "ip-10-0-0-1"), ("shard", "shardId-1"),
                                                     ("az", "use1-az1"), ("stream", "orders")])
        try m.put("UserRecordsPut", 3, dimensions: [("stream", "orders"), ("az", "use1-az1"),
                                                     ("shard", "shardId-1"), ("host", "ip-10-0-0-1")])
        let all = m.snapshots()
        XCTAssertEqual(all.count, 1)
        return all
    }

    private let expected = [("stream", "orders"), ("shard", "shardId-1"), ("az", "use1-az1"), ("host", "ip-10-0-0-1")]

    func testPrometheusLabels() throws {
        let s = try XCTUnwrap(snapshots().first)
        let (_, labels) = PrometheusFormat.seriesKey(s, prefix: "kplm_")
        XCTAssertEqual(labels, expected.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ","))
    }

    func testDogStatsDTags() throws {
        let s = try XCTUnwrap(snapshots().first)
        let lines = DogStatsDFormat.lines(s, base: "kplm.UserRecordsPut", tags: []).compactMap { $0 }
        XCTAssertEqual(lines.count, 4)
        let tags = "|#" + expected.map { "\($0.0):\($0.1)" }.joined(separator: ",")
        XCTAssertEqual(lines[0], "kplm.UserRecordsPut.count:2|c" + tags)
        XCTAssertEqual(lines[1], "kplm.UserRecordsPut.sum:5|c" + tags)
    }

    func testEMFDimensionSetAndMembers() throws {
        let events = EMFFormat.events(try snapshots())
        XCTAssertEqual(events.dropped, [:])
        let line = try XCTUnwrap(events.lines.first)
        // EMF names the KPL's dimensions as the KPL does (StreamName, ShardId).
        let emf = [("StreamName", "orders"), ("ShardId", "shardId-1")] + expected.dropFirst(2)
        let names = emf.map { "\"\($0.0)\"" }.joined(separator: ",")
        XCTAssertTrue(line.contains("\"Dimensions\":[[\(names)]]"), line)
        for (name, value) in emf { XCTAssertTrue(line.contains("\"\(name)\":\"\(value)\""), line) }
    }

    func testCloudWatchDatumDimensions() throws {
        let s = try XCTUnwrap(snapshots().first)
        let datum = try CloudWatchRequestBuilder.datum(s, unit: .count, wallNow: s.timestampUnix).get()
        // CloudWatch, as EMF, names the KPL's dimensions as the KPL does.
        let cloudWatch = [("StreamName", "orders"), ("ShardId", "shardId-1")] + expected.dropFirst(2)
        XCTAssertEqual(datum.dimensions.map(\.name), cloudWatch.map(\.0))
        XCTAssertEqual(datum.dimensions.map(\.value), cloudWatch.map(\.1))
    }

    func testOTLPDataPointAttributes() throws {
        let request = try PBMessage(OTLPEncoding.exportRequest(try snapshots(), serviceName: "svc"))
        let metric = try XCTUnwrap(request.one(1)?.message?.one(2)?.message?.one(2)?.message)
        let point = try XCTUnwrap(metric.one(9)?.message?.one(1)?.message)
        let attributes = point.all(9).compactMap(\.message).map {
            ($0.one(1)?.string ?? "?", $0.one(2)?.message?.one(1)?.string ?? "?")
        }
        XCTAssertEqual(attributes.map(\.0), expected.map(\.0))
        XCTAssertEqual(attributes.map(\.1), expected.map(\.1))
    }

    func testPrometheusRefusesDimensionNamesThatBecomeOneLabel() throws {
        var c = MetricsConfiguration()
        c.level = .detailed
        c.uploadInterval = .seconds(3600)
        c.clock = TestClock(100).reading
        let m = try MetricsManager(configuration: c, sink: try PrometheusSink())
        // In one key.
        do {
            try m.put("R", 1, dimensions: [("a-b", "1"), ("a_b", "2")])
            XCTFail("a-b and a_b in one key were accepted")
        } catch {
            XCTAssertEqual(error.code, .invalidArgument)
            XCTAssertTrue(error.message.contains("\"a-b\"") && error.message.contains("\"a_b\""), error.message)
        }
        // Across keys: the first name seen owns the label.
        try m.put("R", 1, dimensions: [("zone.id", "1")])
        try m.put("S", 1, dimensions: [("zone.id", "2"), ("host", "h")])
        assertThrows(.invalidArgument) { try m.put("T", 1, dimensions: [("zone_id", "1")]) }
        assertThrows(.invalidArgument) { _ = try m.metric("T", dimensions: [("zone-id", "1")]) }
        // Byte for byte: two canonically equivalent names (equal as Swift
        // Strings, different bytes) that both become the label "x__".
        XCTAssertEqual("x\u{1E0B}\u{323}", "x\u{1E0D}\u{307}")
        try m.put("U", 1, dimensions: [("x\u{1E0B}\u{323}", "1")])
        assertThrows(.invalidArgument) { try m.put("U", 1, dimensions: [("x\u{1E0D}\u{307}", "1")]) }
        // "error-code" would be the label of the KPL's error_code.
        assertThrows(.invalidArgument) { try m.put("V", 1, dimensions: [("error-code", "x"), ("error_code", "E")]) }
        // Keys already recorded, and keys without free-form dimensions, are not checked.
        try m.put("S", 1, dimensions: [("host", "h"), ("zone.id", "2")])
        try m.put("W", 1, stream: "s", shardId: "sh", errorCode: "E")
        XCTAssertEqual(m.metricCount, 4)
    }

    func testOtherSinksAcceptWhatPrometheusRefuses() throws {
        var c = MetricsConfiguration()
        c.level = .detailed
        c.uploadInterval = .seconds(3600)
        c.clock = TestClock(100).reading
        let m = try MetricsManager(configuration: c, sink: InMemorySink())
        try m.put("R", 1, dimensions: [("a-b", "1"), ("a_b", "2")])
        XCTAssertEqual(m.metricCount, 1)
    }
}
