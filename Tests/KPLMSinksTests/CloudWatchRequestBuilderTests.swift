import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM
@testable import KPLMSinks

/// Snapshots → PutMetricData requests: limits, drops, batching and the JSON body.
final class CloudWatchRequestBuilderTests: XCTestCase {
    /// The wall clock every test passes in (exact in binary).
    private let now = 1_700_000_000.0
    private let ns = "KinesisProducerLibrary"

    // MARK: - Helpers

    private func snap(_ name: String = "M", count: Int = 1, sum: Double = 1, min: Double = 1, max: Double = 1,
                      dims: [MetricDimension] = [], at timestamp: Double? = nil) -> MetricSnapshot {
        MetricSnapshot(name: name, count: count, sum: sum, min: min, max: max, dimensions: dims,
                       windowStart: 0, windowEnd: 60, timestampUnix: timestamp ?? now)
    }

    private func shape(_ s: MetricSnapshot, unit: MetricUnit = .count) -> Result<CloudWatchDatum, CloudWatchDropReason> {
        CloudWatchRequestBuilder.datum(s, unit: unit, wallNow: now)
    }

    private func reason(_ s: MetricSnapshot, file: StaticString = #filePath, line: UInt = #line) -> CloudWatchDropReason? {
        if case .failure(let r) = shape(s) { return r }
        return nil
    }

    private func datum(_ s: MetricSnapshot, file: StaticString = #filePath, line: UInt = #line) throws -> CloudWatchDatum {
        switch shape(s) {
        case .success(let d): return d
        case .failure(let r):
            XCTFail("dropped: \(r)", file: file, line: line)
            throw r
        }
    }

    private func batches(_ snapshots: [MetricSnapshot], namespace: String? = nil) throws -> CloudWatchBatches {
        try CloudWatchRequestBuilder.batches(snapshots, namespace: namespace ?? ns, wallNow: now)
    }

    /// The datums of a body read back with JSONDecoder (exact doubles; Linux
    /// JSONSerialization may read long numbers as NSDecimalNumber and round).
    private struct DecodedBody: Decodable {
        struct Dimension: Decodable {
            let name: String, value: String
            enum CodingKeys: String, CodingKey { case name = "Name", value = "Value" }
        }
        struct Statistics: Decodable {
            let sampleCount: Double, sum: Double, minimum: Double, maximum: Double
            enum CodingKeys: String, CodingKey {
                case sampleCount = "SampleCount", sum = "Sum", minimum = "Minimum", maximum = "Maximum"
            }
        }
        struct Datum: Decodable {
            let metricName: String
            let dimensions: [Dimension]?
            let timestamp: Double
            let statisticValues: Statistics
            let unit: String
            enum CodingKeys: String, CodingKey {
                case metricName = "MetricName", dimensions = "Dimensions", timestamp = "Timestamp"
                case statisticValues = "StatisticValues", unit = "Unit"
            }
        }
        let namespace: String
        let metricData: [Datum]
        enum CodingKeys: String, CodingKey { case namespace = "Namespace", metricData = "MetricData" }
    }

    private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// Parses `body` with JSONSerialization (structure, keys, strings) and
    /// JSONDecoder (numbers) and checks it says exactly `datums` in `namespace`,
    /// strings byte for byte and numbers bit for bit.
    private func assertBody(_ body: String, is namespace: String, _ datums: [CloudWatchDatum],
                            file: StaticString = #filePath, line: UInt = #line) throws {
        let data = Data(body.utf8)
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any], file: file, line: line)
        XCTAssertEqual(Set(root.keys), ["Namespace", "MetricData"], file: file, line: line)
        XCTAssertEqual(bytes(try XCTUnwrap(root["Namespace"] as? String)), bytes(namespace), file: file, line: line)
        let items = try XCTUnwrap(root["MetricData"] as? [[String: Any]], file: file, line: line)
        XCTAssertEqual(items.count, datums.count, file: file, line: line)
        for (item, d) in zip(items, datums) {
            var keys: Set<String> = ["MetricName", "Timestamp", "StatisticValues", "Unit"]
            if !d.dimensions.isEmpty { keys.insert("Dimensions") }
            XCTAssertEqual(Set(item.keys), keys, file: file, line: line)
            XCTAssertEqual(bytes(try XCTUnwrap(item["MetricName"] as? String)), bytes(d.metricName), file: file, line: line)
            XCTAssertEqual(item["Unit"] as? String, d.unit.name, file: file, line: line)
            let stats = try XCTUnwrap(item["StatisticValues"] as? [String: Any], file: file, line: line)
            XCTAssertEqual(Set(stats.keys), ["SampleCount", "Sum", "Minimum", "Maximum"], file: file, line: line)
            if !d.dimensions.isEmpty {
                let dims = try XCTUnwrap(item["Dimensions"] as? [[String: String]], file: file, line: line)
                XCTAssertEqual(dims.map { Set($0.keys) }, Array(repeating: ["Name", "Value"], count: d.dimensions.count),
                               file: file, line: line)
                XCTAssertEqual(dims.map { bytes($0["Name"] ?? "") }, d.dimensions.map { bytes($0.name) }, file: file, line: line)
                XCTAssertEqual(dims.map { bytes($0["Value"] ?? "") }, d.dimensions.map { bytes($0.value) }, file: file, line: line)
            }
        }

        let decoded = try JSONDecoder().decode(DecodedBody.self, from: data)
        XCTAssertEqual(decoded.metricData.count, datums.count, file: file, line: line)
        for (got, d) in zip(decoded.metricData, datums) {
            let numbers = [got.timestamp, got.statisticValues.sampleCount, got.statisticValues.sum,
                           got.statisticValues.minimum, got.statisticValues.maximum]
            let expected = [d.timestampUnix, d.sampleCount, d.sum, d.minimum, d.maximum]
            XCTAssertEqual(numbers.map(\.bitPattern), expected.map(\.bitPattern),
                           "\(numbers) != \(expected)", file: file, line: line)
            XCTAssertEqual((got.dimensions ?? []).map { MetricDimension($0.name, $0.value) }, d.dimensions,
                           file: file, line: line)
        }
    }

    /// Checks every request: body as `body(namespace:datums:)` writes it,
    /// within both limits, and a faithful JSON rendering of its datums.
    private func assertWellFormed(_ b: CloudWatchBatches, namespace: String? = nil,
                                  file: StaticString = #filePath, line: UInt = #line) throws {
        for r in b.requests {
            XCTAssertEqual(r.namespace, namespace ?? ns, file: file, line: line)
            XCTAssertFalse(r.datums.isEmpty, file: file, line: line)
            XCTAssertLessThanOrEqual(r.datums.count, CloudWatchRequestBuilder.maxDatumsPerRequest, file: file, line: line)
            XCTAssertLessThanOrEqual(r.body.utf8.count, CloudWatchRequestBuilder.maxRequestBodyBytes, file: file, line: line)
            XCTAssertEqual(r.body, CloudWatchRequestBuilder.body(namespace: r.namespace, datums: r.datums), file: file, line: line)
            try assertBody(r.body, is: r.namespace, r.datums, file: file, line: line)
        }
    }

    // MARK: - Rule 1: dimensions and names

    func testDimensionNamesAreMappedToTheKPLs() throws {
        let d = try datum(snap(dims: [MetricDimension("stream", "orders"), MetricDimension("shard", "shardId-000000000007"),
                                      MetricDimension("error_code", "ProvisionedThroughputExceededException"),
                                      MetricDimension("Host", "h1"), MetricDimension("Stream", "x"),
                                      MetricDimension("streams", "y")]))
        XCTAssertEqual(d.dimensions, [MetricDimension("StreamName", "orders"), MetricDimension("ShardId", "shardId-000000000007"),
                                      MetricDimension("ErrorCode", "ProvisionedThroughputExceededException"),
                                      MetricDimension("Host", "h1"), MetricDimension("Stream", "x"),
                                      MetricDimension("streams", "y")])
        // The KPL's own names pass through unchanged.
        let kpl = try datum(snap(dims: [MetricDimension("ShardId", "s"), MetricDimension("StreamName", "t")]))
        XCTAssertEqual(kpl.dimensions, [MetricDimension("ShardId", "s"), MetricDimension("StreamName", "t")])
        // And in the body.
        let b = try batches([snap(dims: [MetricDimension("stream", "orders"), MetricDimension("error_code", "E")])])
        XCTAssertTrue(b.requests[0].body.contains(
            #""Dimensions":[{"Name":"StreamName","Value":"orders"},{"Name":"ErrorCode","Value":"E"}]"#))
    }

    func testBlankDimensionValuesAreRemovedAndTheDatumKept() throws {
        let d = try datum(snap(dims: [MetricDimension("stream", ""), MetricDimension("a", " "),
                                      MetricDimension("b", "\t\r\n \u{0B}\u{0C}"), MetricDimension("c", "\u{3000}\u{A0}\u{2028}"),
                                      MetricDimension("shard", " s 1 "), MetricDimension("d", "v")]))
        // Kept values are not trimmed.
        XCTAssertEqual(d.dimensions, [MetricDimension("ShardId", " s 1 "), MetricDimension("d", "v")])
        let only = try datum(snap(dims: [MetricDimension("stream", "   ")]))
        XCTAssertEqual(only.dimensions, [])
    }

    func testThirtyDimensionsKeptThirtyOneDropped() throws {
        let thirty = (0..<30).map { MetricDimension("D\($0)", "v\($0)") }
        XCTAssertEqual(try datum(snap(dims: thirty)).dimensions, thirty)
        let thirtyOne = thirty + [MetricDimension("D30", "v30")]
        XCTAssertEqual(reason(snap(dims: thirtyOne)), .tooManyDimensions)
        // Blank values are removed before counting.
        XCTAssertEqual(try datum(snap(dims: thirty + [MetricDimension("D30", " ")])).dimensions, thirty)
        let b = try batches([snap(dims: thirtyOne), snap(dims: thirty)])
        XCTAssertEqual(b.dropped, [.tooManyDimensions: 1])
        XCTAssertEqual(b.requests.map(\.datums.count), [1])
        XCTAssertEqual(CloudWatchRequestBuilder.maxDimensions, 30)
    }

    func testDimensionNameAndValueLengths() throws {
        let name255 = String(repeating: "n", count: 255), value1024 = String(repeating: "v", count: 1024)
        XCTAssertEqual(try datum(snap(dims: [MetricDimension(name255, value1024)])).dimensions,
                       [MetricDimension(name255, value1024)])
        XCTAssertEqual(reason(snap(dims: [MetricDimension(name255 + "n", "v")])), .invalidDimension)
        XCTAssertEqual(reason(snap(dims: [MetricDimension("n", value1024 + "v")])), .invalidDimension)
        XCTAssertEqual(reason(snap(dims: [MetricDimension("", "v")])), .invalidDimension)
        // A dimension with a blank value is removed, whatever its name.
        XCTAssertEqual(try datum(snap(dims: [MetricDimension("", "")])).dimensions, [])
    }

    func testDimensionCharactersCloudWatchRejects() throws {
        for bad in [MetricDimension(" ", "v"), MetricDimension("\t", "v"), MetricDimension(":n", "v"),
                    MetricDimension("é", "v"), MetricDimension("n", "é"), MetricDimension("n", "a\tb"),
                    MetricDimension("n", "a\u{7F}"), MetricDimension("n\u{0}", "v"), MetricDimension("n", "😀")] {
            XCTAssertEqual(reason(snap(dims: [MetricDimension("ok", "ok"), bad])), .invalidDimension, "\(bad)")
        }
        // Printable ASCII is fine, colons too after the first character.
        let fine = [MetricDimension("a:b", " ~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ "), MetricDimension("x y", ":v")]
        XCTAssertEqual(try datum(snap(dims: fine)).dimensions, fine)
    }

    func testDuplicateDimensionNamesAfterMappingAreRejected() throws {
        XCTAssertEqual(reason(snap(dims: [MetricDimension("stream", "a"), MetricDimension("StreamName", "b")])),
                       .invalidDimension)
        XCTAssertEqual(reason(snap(dims: [MetricDimension("k", "a"), MetricDimension("k", "a")])), .invalidDimension)
        // No clash once the blank one is removed.
        XCTAssertEqual(try datum(snap(dims: [MetricDimension("stream", " "), MetricDimension("StreamName", "b")])).dimensions,
                       [MetricDimension("StreamName", "b")])
    }

    func testMetricNameLength() throws {
        XCTAssertEqual(reason(snap("")), .invalidName)
        XCTAssertEqual(try datum(snap(String(repeating: "a", count: 255))).metricName, String(repeating: "a", count: 255))
        XCTAssertEqual(reason(snap(String(repeating: "a", count: 256))), .invalidName)
        // Characters are Unicode scalars, not bytes: 255 × "é" (510 bytes) fits, 256 × "😀" does not.
        XCTAssertEqual(try datum(snap(String(repeating: "é", count: 255))).metricName.utf8.count, 510)
        XCTAssertEqual(reason(snap(String(repeating: "😀", count: 256))), .invalidName)
        XCTAssertEqual(reason(snap(String(repeating: "e\u{301}", count: 128))), .invalidName) // 256 scalars
    }

    // MARK: - Rule 2: empty count

    func testCountZeroIsNeverADatum() throws {
        XCTAssertEqual(reason(snap(count: 0, sum: 0, min: 0, max: 0)), .emptyCount)
        XCTAssertEqual(reason(snap(count: -1)), .emptyCount)
        let d = try datum(snap(count: 7, sum: 10, min: 0.5, max: 4))
        XCTAssertEqual(d.sampleCount, 7)
        XCTAssertEqual([d.sum, d.minimum, d.maximum], [10, 0.5, 4])
        let b = try batches([snap("A", count: 0), snap("B", count: 2), snap("C", count: 0)])
        XCTAssertEqual(b.dropped, [.emptyCount: 2])
        XCTAssertEqual(b.requests.flatMap(\.datums).map(\.metricName), ["B"])
        XCTAssertTrue(b.requests[0].body.contains(#""SampleCount":2.0,"#))
    }

    // MARK: - Rule 3: values

    func testValuesOutOfRangeAreDropped() throws {
        let limit = 0x1p360
        XCTAssertEqual(CloudWatchRequestBuilder.maxValueMagnitude, limit)
        for bad in [Double.nan, .infinity, -.infinity, limit.nextUp, -limit.nextUp, .greatestFiniteMagnitude] {
            XCTAssertEqual(reason(snap(sum: bad)), .valueOutOfRange, "sum \(bad)")
            XCTAssertEqual(reason(snap(min: bad)), .valueOutOfRange, "min \(bad)")
            XCTAssertEqual(reason(snap(max: bad)), .valueOutOfRange, "max \(bad)")
        }
        // The bounds themselves are accepted, unchanged.
        let d = try datum(snap(sum: limit, min: -limit, max: limit))
        XCTAssertEqual([d.sum, d.minimum, d.maximum], [limit, -limit, limit])
        let b = try batches([snap(sum: .nan), snap(max: .infinity), snap(sum: limit)])
        XCTAssertEqual(b.dropped, [.valueOutOfRange: 2])
        XCTAssertEqual(b.requests.flatMap(\.datums).count, 1)
    }

    func testTinyValuesAreSentAsZero() throws {
        let tiny = 0x1p-260
        XCTAssertEqual(CloudWatchRequestBuilder.minValueMagnitude, tiny)
        let d = try datum(snap(sum: tiny.nextDown, min: -tiny.nextDown, max: .leastNonzeroMagnitude))
        XCTAssertEqual([d.sum, d.minimum, d.maximum].map(\.bitPattern), [0, 0, 0]) // +0.0, not -0.0
        let negZero = try datum(snap(sum: -0.0, min: -0.0, max: -0.0))
        XCTAssertEqual([negZero.sum, negZero.minimum, negZero.maximum].map(\.bitPattern), [0, 0, 0])
        // 2^-260 itself is kept.
        let kept = try datum(snap(sum: tiny, min: -tiny, max: tiny))
        XCTAssertEqual([kept.sum, kept.minimum, kept.maximum], [tiny, -tiny, tiny])
        let b = try batches([snap(sum: 1e-100, min: 1e-100, max: 1e-70)])
        XCTAssertTrue(b.requests[0].body.contains(#""Sum":0.0,"Minimum":0.0,"Maximum":1e-70}"#), b.requests[0].body)
    }

    // MARK: - Rule 4: timestamps

    func testTimestampBoundaries() throws {
        let oldest = now - 14 * 86_400, newest = now + 2 * 3_600
        XCTAssertEqual(oldest, 1_698_790_400)
        XCTAssertEqual(newest, 1_700_007_200)
        XCTAssertEqual(try datum(snap(at: oldest)).timestampUnix, oldest)
        XCTAssertEqual(reason(snap(at: oldest.nextDown)), .timestampTooOld)
        XCTAssertEqual(reason(snap(at: oldest - 1)), .timestampTooOld)
        XCTAssertEqual(try datum(snap(at: newest)).timestampUnix, newest)
        XCTAssertEqual(reason(snap(at: newest.nextUp)), .timestampInFuture)
        XCTAssertEqual(reason(snap(at: newest + 1)), .timestampInFuture)
        XCTAssertEqual(try datum(snap(at: now - 0.25)).timestampUnix, now - 0.25)
        XCTAssertEqual(reason(snap(at: .nan)), .timestampTooOld)
        XCTAssertEqual(reason(snap(at: -.infinity)), .timestampTooOld)
        XCTAssertEqual(reason(snap(at: .infinity)), .timestampInFuture)
        // Only wallNow counts: the same snapshot is fine a day earlier, not a day later.
        let s = snap(at: oldest + 3600)
        XCTAssertNotNil(try? CloudWatchRequestBuilder.datum(s, unit: .none, wallNow: now).get())
        XCTAssertEqual(CloudWatchRequestBuilder.datum(s, unit: .none, wallNow: now + 86_400), .failure(.timestampTooOld))
        XCTAssertEqual(CloudWatchRequestBuilder.datum(s, unit: .none, wallNow: .nan), .failure(.timestampTooOld))

        let b = try batches([snap("old", at: oldest.nextDown), snap("new", at: newest.nextUp), snap("a", at: oldest),
                             snap("b", at: newest), snap("c", at: .infinity)])
        XCTAssertEqual(b.dropped, [.timestampTooOld: 1, .timestampInFuture: 2])
        XCTAssertEqual(b.requests.flatMap(\.datums).map(\.metricName), ["a", "b"])
    }

    // MARK: - Rule 5: batching

    func testEmptyInputGivesNoRequest() throws {
        XCTAssertEqual(try batches([]), CloudWatchBatches(requests: [], dropped: [:]))
        let allDropped = try batches([snap(count: 0), snap(sum: .nan)])
        XCTAssertEqual(allDropped.requests, [])
        XCTAssertEqual(allDropped.dropped, [.emptyCount: 1, .valueOutOfRange: 1])
    }

    func testAtMostOneThousandDatumsPerRequest() throws {
        XCTAssertEqual(CloudWatchRequestBuilder.maxDatumsPerRequest, 1000)
        for (n, sizes) in [(1, [1]), (999, [999]), (1000, [1000]), (1001, [1000, 1]), (2000, [1000, 1000]), (2500, [1000, 1000, 500])] {
            let input = (0..<n).map { snap("M\($0)", dims: [MetricDimension("stream", "s")]) }
            let b = try batches(input)
            XCTAssertEqual(b.requests.map(\.datums.count), sizes, "\(n)")
            XCTAssertEqual(b.requests.flatMap(\.datums).map(\.metricName), input.map(\.name), "\(n)")
            XCTAssertEqual(b.dropped, [:])
            if n == 1001 { try assertWellFormed(b) }
        }
    }

    func testRequestsAreSplitByBodySize() throws {
        XCTAssertEqual(CloudWatchRequestBuilder.maxRequestBodyBytes, 1_000_000)
        // About 20 KB per datum, of uneven sizes.
        let input = (0..<150).map { i in
            snap("Metric\(i)", count: i + 1, sum: Double(i) * 1.5, min: -Double(i), max: Double(i) + 0.125,
                 dims: (0..<20).map { MetricDimension("Dim\($0)", String(repeating: "\($0 % 10)", count: 900 + (i * 7 + $0) % 124)) })
        }
        let b = try batches(input)
        XCTAssertGreaterThanOrEqual(b.requests.count, 3)
        XCTAssertEqual(b.dropped, [:])
        // Every datum exactly once, in input order.
        XCTAssertEqual(b.requests.flatMap(\.datums).map(\.metricName), input.map(\.name))
        try assertWellFormed(b)
        // Greedy: each request but the last would overflow with the next datum.
        for (r, next) in zip(b.requests, b.requests.dropFirst()) {
            let bigger = CloudWatchRequestBuilder.body(namespace: ns, datums: r.datums + [next.datums[0]])
            XCTAssertGreaterThan(bigger.utf8.count, CloudWatchRequestBuilder.maxRequestBodyBytes)
            XCTAssertLessThan(r.datums.count, CloudWatchRequestBuilder.maxDatumsPerRequest)
        }
    }

    func testBodyOfExactlyTheLimitFitsOneByteMoreSplits() throws {
        let limit = CloudWatchRequestBuilder.maxRequestBodyBytes
        let filler = snap("Filler", dims: (0..<20).map { MetricDimension("D\($0)", String(repeating: "f", count: 1000)) })
        // A last snapshot with `valueChars` value characters (30…30 720) over
        // 30 dimensions: its body fragment grows one byte per character.
        func last(_ valueChars: Int) -> MetricSnapshot {
            snap("Last", dims: (0..<30).map { i in
                MetricDimension("L\(i)", String(repeating: "l", count: 1 + Swift.min(1023, Swift.max(0, valueChars - 30 - i * 1023))))
            })
        }
        func size(_ snapshots: [MetricSnapshot]) throws -> Int {
            let datums = try snapshots.map { try CloudWatchRequestBuilder.datum($0, unit: KPLMetrics.unit(of: $0.name), wallNow: now).get() }
            return CloudWatchRequestBuilder.body(namespace: ns, datums: datums).utf8.count
        }
        let fillerSize = try size([filler]) - size([])
        var k = (limit - (try size([]))) / (fillerSize + 1)
        let base = try size([last(30)]) - size([]) - 30 // the fragment without its value characters
        var room = limit - (try size(Array(repeating: filler, count: k))) - 1 - base
        if room < 30 { k -= 1; room += fillerSize + 1 }
        XCTAssertLessThanOrEqual(room, 30 * 1024)
        let exact = Array(repeating: filler, count: k) + [last(room)]
        XCTAssertEqual(try size(exact), limit)

        let fits = try batches(exact)
        XCTAssertEqual(fits.requests.map(\.datums.count), [k + 1])
        XCTAssertEqual(fits.requests[0].body.utf8.count, limit)
        let over = try batches(Array(repeating: filler, count: k) + [last(room + 1)])
        XCTAssertEqual(over.requests.map(\.datums.count), [k, 1])
        XCTAssertEqual(over.requests.map(\.datums.last?.metricName), ["Filler", "Last"])
        try assertWellFormed(over)
    }

    func testWorstCaseDatumFitsInOneRequest() throws {
        // Everything at its limit and as expensive to escape as allowed.
        let namespace = String(repeating: "\u{1}", count: 255)
        let name = String(repeating: "\u{1}", count: 255)
        let dims = (0..<30).map { i in
            MetricDimension(String(format: "%02d", i) + String(repeating: "\"", count: 253), String(repeating: "\\", count: 1024))
        }
        let one = try datum(snap(name, dims: dims))
        XCTAssertEqual(one.dimensions.count, 30)
        let single = CloudWatchRequestBuilder.body(namespace: namespace, datums: [one])
        XCTAssertGreaterThan(single.utf8.count, 70_000)
        XCTAssertLessThan(single.utf8.count, CloudWatchRequestBuilder.maxRequestBodyBytes)
        let b = try batches(Array(repeating: snap(name, dims: dims), count: 30), namespace: namespace)
        XCTAssertEqual(b.requests.flatMap(\.datums).count, 30)
        XCTAssertGreaterThan(b.requests.count, 1)
        try assertWellFormed(b, namespace: namespace)
    }

    func testOrderKeptAndDropsCountedByReason() throws {
        let input = [snap("a"), snap("b", count: 0), snap("c", sum: .infinity), snap("d"), snap(""),
                     snap("e", at: 0), snap("f", dims: [MetricDimension("n", "é")]),
                     snap("g", dims: (0...30).map { MetricDimension("D\($0)", "v") }), snap("h", at: now + 86_400), snap("i")]
        let b = try batches(input)
        XCTAssertEqual(b.requests.count, 1)
        XCTAssertEqual(b.requests[0].datums.map(\.metricName), ["a", "d", "i"])
        XCTAssertEqual(b.dropped, [.emptyCount: 1, .valueOutOfRange: 1, .invalidName: 1, .timestampTooOld: 1,
                                   .invalidDimension: 1, .tooManyDimensions: 1, .timestampInFuture: 1])
        XCTAssertEqual(b.dropped.values.reduce(0, +) + 3, input.count)
        try assertWellFormed(b)
    }

    // MARK: - Rule 6: namespace

    func testInvalidNamespacesThrow() throws {
        func message(_ namespace: String) -> String? {
            do {
                _ = try CloudWatchRequestBuilder.batches([snap()], namespace: namespace, wallNow: now)
                return nil
            } catch {
                return error.message
            }
        }
        XCTAssertEqual(message(""), "CloudWatch namespace is empty")
        XCTAssertEqual(message(String(repeating: "n", count: 256)), "CloudWatch namespace is 256 characters; the limit is 255")
        XCTAssertEqual(message("AWS/Kinesis"), "CloudWatch namespace \"AWS/Kinesis\" starts with \"AWS/\", which AWS reserves")
        XCTAssertNotNil(message("AWS/"))
        XCTAssertNotNil(message("AWS/\u{301}x")) // still "AWS/" byte for byte
        XCTAssertEqual(message(":ns"), "CloudWatch namespace \":ns\" starts with \":\"")
        // Empty input does not skip the check.
        XCTAssertThrowsError(try CloudWatchRequestBuilder.batches([], namespace: "AWS/X", wallNow: now))
        for fine in ["AWS", "MyAWS/x", "Custom/AWS/", "a:b", String(repeating: "n", count: 255), String(repeating: "é", count: 255)] {
            XCTAssertNil(message(fine), fine)
            XCTAssertEqual(try batches([snap()], namespace: fine).requests.map(\.namespace), [fine])
        }
    }

    // MARK: - Rule 7: body

    func testExactBody() throws {
        let b = try batches([
            snap("UserRecordsPut", count: 3, sum: 6, min: 1, max: 3,
                 dims: [MetricDimension("stream", "s1"), MetricDimension("shard", "shardId-000000000001")], at: now + 0.5),
            snap("BufferingTime", count: 1, sum: 0.1, min: 0.1, max: 0.1, at: now - 60),
        ])
        XCTAssertEqual(b.requests.count, 1)
        XCTAssertEqual(b.requests[0].body, """
            {"Namespace":"KinesisProducerLibrary","MetricData":[\
            {"MetricName":"UserRecordsPut","Dimensions":[{"Name":"StreamName","Value":"s1"},\
            {"Name":"ShardId","Value":"shardId-000000000001"}],"Timestamp":1700000000.5,\
            "StatisticValues":{"SampleCount":3.0,"Sum":6.0,"Minimum":1.0,"Maximum":3.0},"Unit":"Count"},\
            {"MetricName":"BufferingTime","Timestamp":1699999940.0,\
            "StatisticValues":{"SampleCount":1.0,"Sum":0.1,"Minimum":0.1,"Maximum":0.1},"Unit":"Milliseconds"}]}
            """)
        XCTAssertEqual(CloudWatchRequestBuilder.body(namespace: "N", datums: []), #"{"Namespace":"N","MetricData":[]}"#)
        try assertWellFormed(b)
    }

    func testStringsAreEscapedAndRoundTrip() throws {
        let controls = String(String.UnicodeScalarView((0..<0x20).compactMap(Unicode.Scalar.init)))
        let name = "q\"b\\s/" + controls + "\u{7F}é e\u{301} 😀 \u{2028}\u{2029} \u{FEFF}"
        let namespace = "ns \"x\" \\ é\u{9}"
        let b = try batches([snap(name, dims: [MetricDimension("stream", #"a"b\c"#), MetricDimension("k", "/")])],
                            namespace: namespace)
        let body = b.requests[0].body
        XCTAssertTrue(body.hasPrefix(#"{"Namespace":"ns \"x\" \\ é\t","#), body)
        let escapedControls = #"\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f"#
            + #"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f"#
        XCTAssertTrue(body.contains(#""MetricName":"q\"b\\s/"# + escapedControls + "\u{7F}é e\u{301} 😀 \u{2028}\u{2029} \u{FEFF}\","),
                      body)
        XCTAssertTrue(body.contains(#"{"Name":"StreamName","Value":"a\"b\\c"},{"Name":"k","Value":"/"}"#), body)
        // Non-ASCII goes out as raw UTF-8, never as \u escapes.
        XCTAssertTrue(body.utf8.starts(with: Array(#"{"Namespace":"ns \"x\" \\ "#.utf8) + [0xC3, 0xA9]))
        try assertWellFormed(b, namespace: namespace)

        // body() escapes dimensions too, whatever they hold.
        let raw = CloudWatchDatum(metricName: "m", dimensions: [MetricDimension("n\n\u{0}", "v\"\u{1F}é")], unit: .bytes,
                                  timestampUnix: now, sampleCount: 1, sum: 2, minimum: 2, maximum: 2)
        let rawBody = CloudWatchRequestBuilder.body(namespace: "N", datums: [raw])
        XCTAssertTrue(rawBody.contains(#"{"Name":"n\n\u0000","Value":"v\"\u001fé"}"#), rawBody)
        try assertBody(rawBody, is: "N", [raw])
    }

    func testNumbersRoundTripExactly() throws {
        let values: [Double] = [0, -0.0, 1, -1, 0.1, 1.0 / 3, 1e16, 1e-7, 0x1p360, -0x1p360, 0x1p-260, .leastNonzeroMagnitude,
                                .greatestFiniteMagnitude, .leastNormalMagnitude, 123_456_789.123_456_78, 0x1p53 + 2,
                                2.5e-300, -7.0e+200]
        let datums = values.map {
            CloudWatchDatum(metricName: "m", dimensions: [], unit: .none, timestampUnix: $0,
                            sampleCount: $0, sum: $0, minimum: $0, maximum: $0)
        }
        let body = CloudWatchRequestBuilder.body(namespace: "N", datums: datums)
        try assertBody(body, is: "N", datums)
        for (v, text) in [(1e16, "1e+16"), (.leastNonzeroMagnitude, "5e-324"), (-0.0, "-0.0"), (1e-7, "1e-07"), (100, "100.0")] {
            let one = CloudWatchRequestBuilder.body(namespace: "N", datums: [
                CloudWatchDatum(metricName: "m", dimensions: [], unit: .none, timestampUnix: 1,
                                sampleCount: 1, sum: v, minimum: 1, maximum: 1)])
            XCTAssertTrue(one.contains("\"Sum\":\(text),"), one)
        }
        // Non-finite numbers (never produced by datum()) still give valid JSON.
        let odd = CloudWatchDatum(metricName: "m", dimensions: [], unit: .none, timestampUnix: .nan,
                                  sampleCount: 1, sum: .infinity, minimum: -.infinity, maximum: 1)
        let oddBody = CloudWatchRequestBuilder.body(namespace: "N", datums: [odd])
        XCTAssertTrue(oddBody.contains(#""Timestamp":null,"#) && oddBody.contains(#""Sum":null,"Minimum":null,"#), oddBody)
        XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(oddBody.utf8)))
        XCTAssertFalse(oddBody.contains("inf") || oddBody.contains("nan"), oddBody)
    }

    func testSampleCountAndTimestampComeFromTheSnapshot() throws {
        let b = try batches([snap(count: 123_456, sum: 1, min: 0, max: 1, at: now - 1.75)])
        let d = b.requests[0].datums[0]
        XCTAssertEqual(d.sampleCount, 123_456)
        XCTAssertEqual(d.timestampUnix, now - 1.75)
        XCTAssertTrue(b.requests[0].body.contains(#""Timestamp":1699999998.25,"StatisticValues":{"SampleCount":123456.0,"#))
    }

    // MARK: - Units

    func testUnitsComeFromKPLMetrics() throws {
        let b = try batches([snap(KPLMetrics.userRecordsPut), snap(KPLMetrics.userRecordsDataPut),
                             snap(KPLMetrics.bufferingTime), snap("MyOwnMetric")])
        XCTAssertEqual(b.requests[0].datums.map(\.unit), [.count, .bytes, .milliseconds, .none])
        let units = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(b.requests[0].body.utf8)) as? [String: Any])
        let names = try XCTUnwrap(units["MetricData"] as? [[String: Any]]).map { $0["Unit"] as? String }
        XCTAssertEqual(names, ["Count", "Bytes", "Milliseconds", "None"])
        // A caller-supplied mapping wins.
        let custom = try CloudWatchRequestBuilder.batches([snap(KPLMetrics.userRecordsPut)], namespace: ns, wallNow: now) { _ in .bytes }
        XCTAssertEqual(custom.requests[0].datums.map(\.unit), [.bytes])
        XCTAssertTrue(custom.requests[0].body.contains(#""Unit":"Bytes"}"#))
        // datum() uses the unit it is given.
        XCTAssertEqual(try CloudWatchRequestBuilder.datum(snap(), unit: .milliseconds, wallNow: now).get().unit, .milliseconds)
    }
}
