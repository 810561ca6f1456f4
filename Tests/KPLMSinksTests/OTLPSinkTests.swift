import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM
@testable import KPLMSinks
@testable import KPLMCABI

// MARK: - A tiny protobuf reader (tests only)

/// One decoded protobuf field: a varint or fixed64 number, or the bytes of
/// a length-delimited field.
enum PBValue: Equatable {
    case varint(UInt64)
    case fixed64(UInt64)
    case bytes([UInt8])

    var bytes: [UInt8]? { if case .bytes(let b) = self { b } else { nil } }
    var string: String? { bytes.map { String(decoding: $0, as: UTF8.self) } }
    var number: UInt64? {
        switch self {
        case .varint(let v), .fixed64(let v): v
        case .bytes: nil
        }
    }
    var double: Double? { if case .fixed64(let v) = self { Double(bitPattern: v) } else { nil } }
    /// The fields of an embedded message.
    var message: PBMessage? { bytes.flatMap { try? PBMessage($0) } }
}

struct PBError: Error {}

/// A decoded message: its fields in wire order.
struct PBMessage {
    var fields: [(number: Int, value: PBValue)] = []

    init(_ data: [UInt8]) throws {
        var i = 0
        func varint() throws -> UInt64 {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard i < data.count, shift < 64 else { throw PBError() }
                let b = data[i]
                i += 1
                result |= UInt64(b & 0x7F) << shift
                if b < 0x80 { return result }
                shift += 7
            }
        }
        while i < data.count {
            let key = try varint()
            let number = Int(key >> 3)
            guard number > 0 else { throw PBError() }
            switch key & 7 {
            case 0:
                fields.append((number, .varint(try varint())))
            case 1:
                guard i + 8 <= data.count else { throw PBError() }
                var v: UInt64 = 0
                for k in 0..<8 { v |= UInt64(data[i + k]) << (8 * UInt64(k)) }
                i += 8
                fields.append((number, .fixed64(v)))
            case 2:
                let n = Int(try varint())
                guard n >= 0, i + n <= data.count else { throw PBError() }
                fields.append((number, .bytes(Array(data[i..<(i + n)]))))
                i += n
            default:
                throw PBError()
            }
        }
    }

    func all(_ number: Int) -> [PBValue] { fields.filter { $0.number == number }.map(\.value) }
    func one(_ number: Int) -> PBValue? {
        let found = all(number)
        return found.count == 1 ? found[0] : nil
    }
    var numbers: [Int] { fields.map(\.number) }
}

// MARK: - Tests

final class OTLPSinkTests: XCTestCase {
    // MARK: Wire format

    private func varint(_ v: UInt64) -> [UInt8] {
        var w = OTLPProtobufWriter()
        w.varint(v)
        return w.bytes
    }

    func testVarintEdgeCases() {
        XCTAssertEqual(varint(0), [0x00])
        XCTAssertEqual(varint(1), [0x01])
        XCTAssertEqual(varint(127), [0x7F])
        XCTAssertEqual(varint(128), [0x80, 0x01])
        XCTAssertEqual(varint(150), [0x96, 0x01])
        XCTAssertEqual(varint(300), [0xAC, 0x02])
        XCTAssertEqual(varint(16_383), [0xFF, 0x7F])
        XCTAssertEqual(varint(16_384), [0x80, 0x80, 0x01])
        XCTAssertEqual(varint(UInt64(UInt32.max)), [0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
        XCTAssertEqual(varint(1 << 63), [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
        XCTAssertEqual(varint(.max), [UInt8](repeating: 0xFF, count: 9) + [0x01])
    }

    func testFixed64DoublesAndKeys() {
        var w = OTLPProtobufWriter()
        w.fixed64(0x0102_0304_0506_0708)
        XCTAssertEqual(w.bytes, [0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01])

        w = OTLPProtobufWriter()
        w.doubleField(5, 1.0)
        w.doubleField(11, -0.0)
        w.doubleField(12, .infinity)
        XCTAssertEqual(w.bytes, [0x29, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F,
                                 0x59, 0, 0, 0, 0, 0, 0, 0, 0x80,
                                 0x61, 0, 0, 0, 0, 0, 0, 0xF0, 0x7F])

        w = OTLPProtobufWriter()
        w.fixed64Field(4, 0)
        w.fixed64Field(4, .max)
        XCTAssertEqual(w.bytes, [0x21] + [UInt8](repeating: 0, count: 8) + [0x21] + [UInt8](repeating: 0xFF, count: 8))

        // Keys: field 9 length-delimited is 0x4A; field 16 needs two bytes.
        w = OTLPProtobufWriter()
        w.tag(9, .lengthDelimited)
        w.tag(16, .varint)
        w.tag(2, .fixed64)
        XCTAssertEqual(w.bytes, [0x4A, 0x80, 0x01, 0x11])

        // Packed repeated: length then the values; nothing when empty.
        w = OTLPProtobufWriter()
        w.packedFixed64Field(6, [1, 2])
        w.packedDoubleField(7, [])
        XCTAssertEqual(w.bytes, [0x32, 0x10, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])

        // Strings: UTF-8 bytes; a 200-byte one has a two-byte length.
        w = OTLPProtobufWriter()
        w.stringField(1, "é")
        w.stringField(1, String(repeating: "x", count: 200))
        XCTAssertEqual(Array(w.bytes.prefix(7)), [0x0A, 0x02, 0xC3, 0xA9, 0x0A, 0xC8, 0x01])
        XCTAssertEqual(w.bytes.count, 7 + 200)
    }

    func testUnitsAndTimes() {
        XCTAssertEqual(OTLPEncoding.unit(.count), "1")
        XCTAssertEqual(OTLPEncoding.unit(.bytes), "By")
        XCTAssertEqual(OTLPEncoding.unit(.milliseconds), "ms")
        XCTAssertEqual(OTLPEncoding.unit(.none), "")
        XCTAssertEqual(OTLPEncoding.unixNanos(0), 0)
        XCTAssertEqual(OTLPEncoding.unixNanos(-5), 0)
        XCTAssertEqual(OTLPEncoding.unixNanos(.nan), 0)
        XCTAssertEqual(OTLPEncoding.unixNanos(.infinity), 0)
        XCTAssertEqual(OTLPEncoding.unixNanos(1.5), 1_500_000_000)
        XCTAssertEqual(OTLPEncoding.unixNanos(1_700_000_000), 1_700_000_000_000_000_000)
        XCTAssertEqual(OTLPEncoding.unixNanos(1_700_000_000.25), 1_700_000_000_250_000_000)
        XCTAssertEqual(OTLPEncoding.unixNanos(1e30), .max)
        XCTAssertEqual(OTLPEncoding.scopeVersion, String(cString: StaticCStrings.version))
    }

    /// Two metrics, the bytes checked against the serialization of the same
    /// request by the official `opentelemetry-proto` Python package.
    func testExactBytesOfASmallRequest() {
        let snapshots = [
            MetricSnapshot(name: "A", count: 2, sum: 3, min: 1, max: 2, dimensions: [MetricDimension("k", "v")],
                           windowStart: 10, windowEnd: 11, timestampUnix: 1_700_000_000),
            MetricSnapshot(name: "UserRecordsPut", count: 1, sum: 0, min: 0, max: 0, dimensions: [],
                           windowStart: 20, windowEnd: 22, timestampUnix: 1_700_000_000.5),
        ]
        let hex = "0adb010a170a150a0c736572766963652e6e616d6512050a0373766312bf010a"
            + "0d0a046b706c6d1205312e322e3012530a01414a4e0a4a1100368ffafd9c9717"
            + "1900002a36fe9c97172102000000000000002900000000000008403208020000"
            + "00000000004a080a016b12030a017659000000000000f03f6100000000000000"
            + "40100112590a0e557365725265636f7264735075741a01314a440a401100d1c1"
            + "dcfd9c9717190065f753fe9c9717210100000000000000290000000000000000"
            + "320801000000000000005900000000000000006100000000000000001001"
        let expected = stride(from: 0, to: hex.count, by: 2).map { i -> UInt8 in
            let start = hex.index(hex.startIndex, offsetBy: i)
            return UInt8(hex[start..<hex.index(start, offsetBy: 2)], radix: 16)!
        }
        XCTAssertEqual(OTLPEncoding.scopeVersion, "1.2.0", "the expected bytes carry version 1.2.0")
        XCTAssertEqual(OTLPEncoding.exportRequest(snapshots, serviceName: "svc"), expected)
    }

    func testDecodeBack() throws {
        let snapshots = [
            MetricSnapshot(name: "BufferingTime", count: 3, sum: 7.5, min: 0.5, max: 4,
                           dimensions: [MetricDimension("stream", "s1")], windowStart: 100, windowEnd: 103,
                           timestampUnix: 1_000_000_003),
            MetricSnapshot(name: "BufferingTime", count: 1, sum: -1, min: -1, max: -1,
                           dimensions: [MetricDimension("stream", "s2"), MetricDimension("shard", "7")],
                           windowStart: 102, windowEnd: 103, timestampUnix: 1_000_000_003),
            MetricSnapshot(name: "UserRecordsDataPut", count: 300, sum: 1e6, min: 1, max: 9e5, dimensions: [],
                           windowStart: 100, windowEnd: 101, timestampUnix: 1_000_000_001),
        ]
        let request = try PBMessage(OTLPEncoding.exportRequest(snapshots, serviceName: "my service"))
        XCTAssertEqual(request.numbers, [1])
        let rm = try XCTUnwrap(request.one(1)?.message)
        XCTAssertEqual(rm.numbers, [1, 2])
        let resource = try XCTUnwrap(rm.one(1)?.message)
        let attribute = try XCTUnwrap(resource.one(1)?.message)
        XCTAssertEqual(attribute.one(1)?.string, "service.name")
        XCTAssertEqual(attribute.one(2)?.message?.one(1)?.string, "my service")
        let sm = try XCTUnwrap(rm.one(2)?.message)
        let scope = try XCTUnwrap(sm.one(1)?.message)
        XCTAssertEqual(scope.one(1)?.string, "kplm")
        XCTAssertEqual(scope.one(2)?.string, OTLPEncoding.scopeVersion)
        let metrics = sm.all(2).compactMap(\.message)
        XCTAssertEqual(metrics.count, 2)
        XCTAssertEqual(metrics.map { $0.one(1)?.string }, ["BufferingTime", "UserRecordsDataPut"])
        XCTAssertEqual(metrics.map { $0.one(3)?.string }, ["ms", "By"])

        let histogram = try XCTUnwrap(metrics[0].one(9)?.message)
        XCTAssertEqual(histogram.one(2), .varint(1), "AGGREGATION_TEMPORALITY_DELTA")
        let points = histogram.all(1).compactMap(\.message)
        XCTAssertEqual(points.count, 2)
        let p = points[0]
        XCTAssertEqual(p.numbers, [2, 3, 4, 5, 6, 9, 11, 12])
        XCTAssertEqual(p.one(2), .fixed64(1_000_000_000 * 1_000_000_000))
        XCTAssertEqual(p.one(3), .fixed64(1_000_000_003 * 1_000_000_000))
        XCTAssertEqual(p.one(4), .fixed64(3))
        XCTAssertEqual(p.one(5)?.double, 7.5)
        XCTAssertEqual(p.one(6)?.bytes, [3, 0, 0, 0, 0, 0, 0, 0], "bucket_counts = [count], packed fixed64")
        XCTAssertNil(p.one(7), "no explicit bounds")
        XCTAssertEqual(p.one(11)?.double, 0.5)
        XCTAssertEqual(p.one(12)?.double, 4)
        let attrs = points[1].all(9).compactMap(\.message).map {
            ($0.one(1)?.string ?? "?") + "=" + ($0.one(2)?.message?.one(1)?.string ?? "?")
        }
        XCTAssertEqual(attrs, ["stream=s2", "shard=7"])
        XCTAssertEqual(points[1].one(2), .fixed64(1_000_000_002 * 1_000_000_000))

        let big = try XCTUnwrap(metrics[1].one(9)?.message?.one(1)?.message)
        XCTAssertEqual(big.one(4), .fixed64(300))
        XCTAssertEqual(big.one(6)?.bytes, [44, 1, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(big.one(5)?.double, 1e6)
    }

    // MARK: Configuration and HTTP parsing

    func testEndpointParsing() throws {
        var e = try OTLPEndpoint(parsing: "http://127.0.0.1:4318/v1/metrics")
        XCTAssertEqual([e.host, String(e.port), e.path, e.hostHeader], ["127.0.0.1", "4318", "/v1/metrics", "127.0.0.1:4318"])
        e = try OTLPEndpoint(parsing: "HTTP://Collector.local")
        XCTAssertEqual([e.host, String(e.port), e.path, e.hostHeader], ["Collector.local", "80", "/", "Collector.local"])
        e = try OTLPEndpoint(parsing: "http://[::1]:9/a?b=c")
        XCTAssertEqual([e.host, String(e.port), e.path, e.hostHeader], ["::1", "9", "/a?b=c", "[::1]:9"])
        e = try OTLPEndpoint(parsing: "HTTPS://collector.example/v1/metrics")
        XCTAssertEqual([e.scheme, String(e.port), e.hostHeader, e.url],
                       ["https", "443", "collector.example", "https://collector.example/v1/metrics"])
        for bad in ["ftp://h/", "http://", "http:///x", "http://:80/x", "http://h:0/x",
                    "http://h:65536/x", "http://h:-1/x", "http://h:/x", "http://h:80:81/x", "http://u:p@h/x",
                    "http://h/a b", "http://h/x#frag", "http://h?x", "http://[::1/x", "http://[nope]/x",
                    "http://::1/x", "http://bad host/x", "h:80/x", ""] {
            XCTAssertThrowsError(try OTLPEndpoint(parsing: bad), bad) { error in
                XCTAssertEqual((error as? MetricsError)?.code, .invalidArgument, bad)
            }
        }
    }

    func testConfigurationValidation() throws {
        XCTAssertNoThrow(try OTLPSinkConfiguration().validate())
        for timeout in [0, -1, .nan, .infinity] as [Double] {
            XCTAssertThrowsError(try OTLPSink(configuration: OTLPSinkConfiguration(timeoutMs: timeout)))
        }
        XCTAssertThrowsError(try OTLPSink(configuration: OTLPSinkConfiguration(maxRetries: -1)))
        // https goes through libcurl, loaded at run time (installed where the tests run).
        XCTAssertTrue(CloudWatchHTTP.available(.curl))
        XCTAssertNoThrow(try OTLPSink(configuration: OTLPSinkConfiguration(endpoint: "https://h/x")))
        let sink = try OTLPSink(configuration: OTLPSinkConfiguration(), environment: { _ in nil })
        XCTAssertEqual(sink.endpoint, try OTLPEndpoint(parsing: "http://127.0.0.1:4318/v1/metrics"))
        XCTAssertEqual(sink.timeoutMs, 5_000)
        XCTAssertEqual(sink.compression, OTLPCompression.none)
        XCTAssertTrue(sink.headers.isEmpty)
        XCTAssertTrue(sink.usesLibcurl)
        for (name, value) in [("", "v"), ("Bad Name", "v"), ("a:b", "v"), ("Caf\u{E9}", "v"), ("X", "a\r\nInjected: 1"),
                              ("X", "a\nb"), ("X", "\u{0}"), ("Host", "h"), ("content-length", "1"),
                              ("Content-Encoding", "br")] {
            XCTAssertThrowsError(try OTLPSinkConfiguration(headers: [name: value]).validate(), name) { error in
                XCTAssertEqual((error as? MetricsError)?.code, .invalidArgument, name)
            }
        }
        XCTAssertNoThrow(try OTLPSinkConfiguration(headers: ["X-Api-Key": "s3cr\u{E9}t =,;", "t": ""]).validate())
    }

    /// The OTEL_EXPORTER_OTLP_* variables fill what the configuration leaves
    /// unset; METRICS_ ones win over the general ones; explicit settings win.
    func testEnvironmentVariables() throws {
        func sink(_ c: OTLPSinkConfiguration, _ vars: [String: String]) throws(MetricsError) -> OTLPSink {
            try OTLPSink(configuration: c, environment: { vars[$0] })
        }
        var s = try sink(OTLPSinkConfiguration(), ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"])
        XCTAssertEqual(s.endpoint.url, "http://collector:4318/v1/metrics")
        s = try sink(OTLPSinkConfiguration(), ["OTEL_EXPORTER_OTLP_ENDPOINT": "https://c.example/base/"])
        XCTAssertEqual(s.endpoint.url, "https://c.example/base/v1/metrics")
        s = try sink(OTLPSinkConfiguration(), ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1",
                                               "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://b:2/custom"])
        XCTAssertEqual(s.endpoint.url, "http://b:2/custom")
        s = try sink(OTLPSinkConfiguration(endpoint: "http://explicit:3/x"),
                     ["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://b:2/custom"])
        XCTAssertEqual(s.endpoint.url, "http://explicit:3/x")

        s = try sink(OTLPSinkConfiguration(), ["OTEL_EXPORTER_OTLP_TIMEOUT": "1500",
                                               "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"])
        XCTAssertEqual(s.timeoutMs, 1_500)
        XCTAssertEqual(s.compression, .gzip)
        s = try sink(OTLPSinkConfiguration(timeoutMs: 250, compression: OTLPCompression.none),
                     ["OTEL_EXPORTER_OTLP_TIMEOUT": "1500", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "700",
                      "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"])
        XCTAssertEqual(s.timeoutMs, 250)
        XCTAssertEqual(s.compression, OTLPCompression.none)
        s = try sink(OTLPSinkConfiguration(), ["OTEL_EXPORTER_OTLP_TIMEOUT": "1500",
                                               "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "700",
                                               "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "none",
                                               "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"])
        XCTAssertEqual(s.timeoutMs, 700)
        XCTAssertEqual(s.compression, OTLPCompression.none)

        s = try sink(OTLPSinkConfiguration(headers: ["Tenant": "explicit"]),
                     ["OTEL_EXPORTER_OTLP_HEADERS": " api-key = a%20b%2Cc , tenant=env,x=1",
                      "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "x=2"])
        XCTAssertEqual(s.headers.map { "\($0.name): \($0.value)" }, ["api-key: a b,c", "Tenant: explicit", "x: 2"])

        for (name, value) in [("OTEL_EXPORTER_OTLP_TIMEOUT", "0"), ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
                              ("OTEL_EXPORTER_OTLP_COMPRESSION", "br"), ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
                              ("OTEL_EXPORTER_OTLP_HEADERS", "a=%zz"), ("OTEL_EXPORTER_OTLP_HEADERS", "a=%0D%0Ab"),
                              ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "ftp://x/")] {
            XCTAssertThrowsError(try sink(OTLPSinkConfiguration(), [name: value]), "\(name)=\(value)") { error in
                XCTAssertEqual((error as? MetricsError)?.code, .invalidArgument)
                XCTAssertTrue((error as? MetricsError)?.message.contains("OTEL_EXPORTER_OTLP") == true,
                              (error as? MetricsError)?.message ?? "")
            }
        }
    }

    /// Extra headers and gzip through libcurl: the collector gets the
    /// headers and a gzip body that inflates to the protobuf request.
    func testHeadersAndGzipThroughLibcurl() throws {
        let collector = try ScriptedHTTPServer()
        defer { collector.stop() }
        let sink = try OTLPSink(configuration: OTLPSinkConfiguration(
            endpoint: collector.url("/v1/metrics"), serviceName: "svc",
            headers: ["X-Api-Key": "k1", "Tenant": "t"], compression: .gzip), environment: { _ in nil })
        XCTAssertTrue(sink.usesLibcurl)
        try sink.export([snapshot])
        let requests = collector.requests
        XCTAssertEqual(requests.count, 1)
        XCTAssertEqual(requests[0].header("X-Api-Key"), "k1")
        XCTAssertEqual(requests[0].header("Tenant"), "t")
        XCTAssertEqual(requests[0].header("Content-Encoding"), "gzip")
        XCTAssertEqual(requests[0].header("Content-Type"), "application/x-protobuf")
        XCTAssertEqual(CloudWatchHTTP.gunzip(requests[0].body),
                       OTLPEncoding.exportRequest([snapshot], serviceName: "svc"))
    }

    func testResponseHeadParsing() throws {
        func head(_ s: String) -> OTLPHTTP.Response? { OTLPHTTP.parseHead(Array(s.utf8)[...], wallNow: 784_111_000) }
        XCTAssertEqual(head("HTTP/1.1 200 OK\r\nContent-Length: 0"), .init(status: 200, reason: "OK"))
        XCTAssertEqual(head("HTTP/1.0 503 Service Unavailable\r\nretry-after:  7 "),
                       .init(status: 503, reason: "Service Unavailable", retryAfter: 7))
        XCTAssertEqual(head("HTTP/1.1 429\r\nRetry-After: Sun, 06 Nov 1994 08:49:37 GMT")?.retryAfter, 777)
        XCTAssertEqual(head("HTTP/1.1 429 x\r\nRetry-After: soon")?.retryAfter, nil)
        XCTAssertEqual(head("HTTP/1.1 429 x\r\nRetry-After: Sun, 06 Nov 1994 08:00:00 GMT")?.retryAfter, 0)
        XCTAssertNil(head("SSH-2.0-OpenSSH"))
        XCTAssertNil(head("HTTP/1.1 20 OK"))
        XCTAssertNil(head("HTTP/1.1 2000 OK"))
        XCTAssertNil(head("HTTP/2 200 OK"))
    }

    func testRequestBytes() throws {
        let e = try OTLPEndpoint(parsing: "http://localhost:4318/v1/metrics")
        let text = String(decoding: OTLPHTTP.request(e, body: [1, 2, 3]), as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("POST /v1/metrics HTTP/1.1\r\nHost: localhost:4318\r\n"), text)
        XCTAssertTrue(text.contains("\r\nContent-Type: application/x-protobuf\r\n"))
        XCTAssertTrue(text.contains("\r\nContent-Length: 3\r\n"))
        XCTAssertTrue(text.hasSuffix("\r\nConnection: close\r\n\r\n\u{1}\u{2}\u{3}"))
    }

    // MARK: End to end

    private let snapshot = MetricSnapshot(name: "UserRecordsPut", count: 1, sum: 2, min: 2, max: 2,
                                          dimensions: [MetricDimension("stream", "s")], windowStart: 1,
                                          windowEnd: 2, timestampUnix: 1_700_000_000)

    func testSuccessSendsOneDecodableRequest() throws {
        let collector = try ScriptedHTTPServer()
        defer { collector.stop() }
        let sink = try OTLPSink(configuration: OTLPSinkConfiguration(endpoint: collector.url("/v1/metrics"), serviceName: "svc"))
        try sink.export([snapshot])
        let requests = collector.requests
        XCTAssertEqual(requests.count, 1)
        XCTAssertTrue(requests[0].head.hasPrefix("POST /v1/metrics HTTP/1.1\r\n"))
        XCTAssertTrue(requests[0].head.contains("Host: 127.0.0.1:\(collector.port)"))
        XCTAssertEqual(requests[0].body, OTLPEncoding.exportRequest([snapshot], serviceName: "svc"))
        XCTAssertEqual(sink.lastStatus, 200)
        XCTAssertEqual(sink.successfulExportCount, 1)
    }

    func testRetryAfterIsHonoured() throws {
        let collector = try ScriptedHTTPServer()
        defer { collector.stop() }
        collector.answer(.status(503, headers: [("Retry-After", "1")]), .status(204))
        let sink = try OTLPSink(configuration: OTLPSinkConfiguration(endpoint: collector.url("/v1/metrics")))
        let start = Date()
        try sink.export([snapshot])
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 0.95)
        let requests = collector.requests
        XCTAssertEqual(requests.map(\.status), [503, 204])
        XCTAssertEqual(requests[0].body, requests[1].body)
        XCTAssertGreaterThanOrEqual(requests[1].at - requests[0].at, 0.95)
        XCTAssertEqual(sink.requestCount, 2)
    }

    func testRetryableFailuresThenExhaustion() throws {
        let collector = try ScriptedHTTPServer()
        defer { collector.stop() }
        collector.answer(.status(502), .drop, .status(429, headers: [("Retry-After", "0")]), .status(504))
        let sink = try OTLPSink(configuration: OTLPSinkConfiguration(endpoint: collector.url("/v1/metrics"), maxRetries: 3))
        XCTAssertThrowsError(try sink.export([snapshot])) { error in
            XCTAssertEqual((error as? MetricsError)?.code, .sinkFailed)
            XCTAssertTrue("\(error)".contains("504"), "\(error)")
        }
        XCTAssertEqual(collector.requests.map(\.status), [502, nil, 429, 504])
        try sink.export([snapshot])
        XCTAssertEqual(collector.requests.count, 5)
    }

    func testOtherStatusFailsAtOnce() throws {
        let collector = try ScriptedHTTPServer()
        defer { collector.stop() }
        collector.answer(.status(400), .status(500))
        let sink = try OTLPSink(configuration: OTLPSinkConfiguration(endpoint: collector.url("/v1/metrics"), maxRetries: 5))
        XCTAssertThrowsError(try sink.export([snapshot])) { error in
            XCTAssertTrue("\(error)".contains("HTTP 400"), "\(error)")
        }
        XCTAssertThrowsError(try sink.export([snapshot]))
        XCTAssertEqual(collector.requests.map(\.status), [400, 500])
    }

    func testRetryAfterBeyondTheTimeoutFailsAtOnce() throws {
        let collector = try ScriptedHTTPServer()
        defer { collector.stop() }
        collector.answer(.status(429, headers: [("Retry-After", "60")]))
        let sink = try OTLPSink(configuration: OTLPSinkConfiguration(endpoint: collector.url("/v1/metrics"), timeoutMs: 2_000))
        let start = Date()
        XCTAssertThrowsError(try sink.export([snapshot]))
        XCTAssertLessThan(Date().timeIntervalSince(start), 1)
        XCTAssertEqual(collector.requests.count, 1)
    }

    func testManagerKeepsDataAfterAFailedExport() throws {
        let collector = try ScriptedHTTPServer()
        defer { collector.stop() }
        collector.answer(.status(400))
        let clock = TestClock(100)
        let sink = try OTLPSink(configuration: OTLPSinkConfiguration(endpoint: collector.url("/v1/metrics")))
        let m = try MetricsManager(level: .detailed, sink: sink, uploadIntervalMs: 3_600_000, clock: clock.reading)
        try m.start()
        try m.put("A", 1)
        clock.advance(1)
        XCTAssertThrowsError(try m.flush()) { XCTAssertEqual(($0 as? MetricsError)?.code, .sinkFailed) }
        try m.put("A", 5)
        try m.flush()
        try m.close()
        let requests = collector.requests
        XCTAssertEqual(requests.count, 2)
        let point = try XCTUnwrap(PBMessage(requests[1].body).one(1)?.message?.one(2)?.message?.one(2)?.message?
            .one(9)?.message?.one(1)?.message)
        XCTAssertEqual(point.one(4), .fixed64(2))
        XCTAssertEqual(point.one(5)?.double, 6)
    }

    func testDeadEndpointFailsWithinTheTimeout() throws {
        // A bound socket that never listens: every connection is refused.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) + getsockname(fd, $0, &length) }
        }
        let sink = try OTLPSink(configuration: OTLPSinkConfiguration(
            endpoint: "http://127.0.0.1:\(UInt16(bigEndian: address.sin_port))/v1/metrics", timeoutMs: 1_000))
        let start = Date()
        XCTAssertThrowsError(try sink.export([snapshot])) { error in
            XCTAssertTrue("\(error)".contains("OTLP"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 1.5)
        XCTAssertGreaterThanOrEqual(sink.requestCount, 2, "connection errors are retried")
    }
}
