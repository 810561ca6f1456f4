import KPLM
import CKPLM
import Glibc

/// A minimal protocol-buffers writer: just the wire types OTLP metrics need
/// (varint, 64-bit, length-delimited), appended to a byte array.
///
/// Fields are written in the order they are called; ``OTLPEncoding`` calls
/// them in field-number order, which is what the reference implementations
/// produce, so the output is byte-for-byte the canonical serialization.
struct OTLPProtobufWriter: Sendable {
    /// Wire types of the protobuf encoding.
    enum WireType: UInt8, Sendable {
        /// int32, int64, uint32, uint64, sint*, bool, enum.
        case varint = 0
        /// fixed64, sfixed64, double.
        case fixed64 = 1
        /// string, bytes, embedded messages, packed repeated fields.
        case lengthDelimited = 2
    }

    /// The encoded bytes so far.
    private(set) var bytes: [UInt8] = []

    /// Creates an empty writer.
    init() {}

    /// Appends `value` as a base-128 varint (1 to 10 bytes).
    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Appends `value` as 8 little-endian bytes.
    mutating func fixed64(_ value: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }

    /// Appends the key of field `number` (1...2^29-1) with `wireType`.
    mutating func tag(_ number: Int, _ wireType: WireType) {
        precondition(number > 0 && number < 1 << 29, "protobuf field number out of range")
        varint(UInt64(number) << 3 | UInt64(wireType.rawValue))
    }

    /// Field `number` as a varint (uint64, or an enum's number).
    mutating func varintField(_ number: Int, _ value: UInt64) {
        tag(number, .varint)
        varint(value)
    }

    /// Field `number` as fixed64.
    mutating func fixed64Field(_ number: Int, _ value: UInt64) {
        tag(number, .fixed64)
        fixed64(value)
    }

    /// Field `number` as a double (IEEE 754 bits, little-endian).
    mutating func doubleField(_ number: Int, _ value: Double) {
        fixed64Field(number, value.bitPattern)
    }

    /// Field `number` as length-delimited bytes.
    mutating func bytesField(_ number: Int, _ value: some Collection<UInt8>) {
        tag(number, .lengthDelimited)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    /// Field `number` as a UTF-8 string.
    mutating func stringField(_ number: Int, _ value: String) {
        bytesField(number, value.utf8)
    }

    /// Field `number` as an embedded message written by `body`.
    mutating func messageField(_ number: Int, _ body: (inout OTLPProtobufWriter) -> Void) {
        var inner = OTLPProtobufWriter()
        body(&inner)
        bytesField(number, inner.bytes)
    }

    /// Field `number` as a packed repeated fixed64; nothing for no values
    /// (as the reference encoders do).
    mutating func packedFixed64Field(_ number: Int, _ values: [UInt64]) {
        guard !values.isEmpty else { return }
        tag(number, .lengthDelimited)
        varint(UInt64(values.count * 8))
        for value in values { fixed64(value) }
    }

    /// Field `number` as a packed repeated varint (uint64); nothing for no values.
    mutating func packedVarintField(_ number: Int, _ values: [UInt64]) {
        guard !values.isEmpty else { return }
        var inner = OTLPProtobufWriter()
        for value in values { inner.varint(value) }
        bytesField(number, inner.bytes)
    }

    /// Field `number` as a sint32 (zigzag varint).
    mutating func sint32Field(_ number: Int, _ value: Int32) {
        varintField(number, UInt64(UInt32(bitPattern: (value << 1) ^ (value >> 31))))
    }

    /// Field `number` as a packed repeated double; nothing for no values.
    mutating func packedDoubleField(_ number: Int, _ values: [Double]) {
        packedFixed64Field(number, values.map(\.bitPattern))
    }
}

/// How ``OTLPSink`` encodes snapshots: one
/// `opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest`.
///
/// The request holds one ResourceMetrics (resource attribute
/// `service.name`), one ScopeMetrics (scope "kplm", the library version),
/// and one Metric per metric name, in order of first appearance, with its
/// unit (``unit(_:)``) and a delta Histogram. Each snapshot is one data
/// point: its dimensions as string attributes, start and end times in Unix
/// nanoseconds, count, sum, min, max, one bucket holding the count and no
/// bounds. A distribution metric (SPEC §6) is an ExponentialHistogram
/// instead (see ``exponentialDataPoint(_:_:_:)``). Fields whose value is the
/// proto3 default (empty string, 0) are left out, except `sum`, `min` and
/// `max`, which have explicit presence.
public enum OTLPEncoding {
    /// Field numbers of the OTLP protos (opentelemetry-proto v1).
    enum Field {
        // ExportMetricsServiceRequest
        static let resourceMetrics = 1
        // ResourceMetrics
        static let resource = 1, scopeMetrics = 2
        // Resource
        static let resourceAttributes = 1
        // ScopeMetrics
        static let scope = 1, metrics = 2
        // InstrumentationScope
        static let scopeName = 1, scopeVersion = 2
        // Metric
        static let metricName = 1, metricUnit = 3, histogram = 9, exponentialHistogram = 10
        // Histogram
        static let dataPoints = 1, aggregationTemporality = 2
        // HistogramDataPoint
        static let startTimeUnixNano = 2, timeUnixNano = 3, count = 4, sum = 5, bucketCounts = 6,
                   explicitBounds = 7, attributes = 9, min = 11, max = 12
        // ExponentialHistogramDataPoint (and its Buckets)
        static let expAttributes = 1, expStartTimeUnixNano = 2, expTimeUnixNano = 3, expCount = 4, expSum = 5,
                   expScale = 6, expZeroCount = 7, expPositive = 8, expNegative = 9, expMin = 12, expMax = 13
        static let bucketsOffset = 1, bucketsCounts = 2
        // KeyValue
        static let key = 1, value = 2
        // AnyValue
        static let stringValue = 1
    }

    /// AGGREGATION_TEMPORALITY_DELTA.
    static let aggregationTemporalityDelta: UInt64 = 1

    /// The instrumentation scope name.
    public static let scopeName = "kplm"

    /// The instrumentation scope version: the library's "MAJOR.MINOR.PATCH".
    public static let scopeVersion = "\(KPLM_VERSION_MAJOR).\(KPLM_VERSION_MINOR).\(KPLM_VERSION_PATCH)"

    /// The OTel (UCUM) unit of a kplm unit: Count "1", Bytes "By",
    /// Milliseconds "ms", None "".
    public static func unit(_ unit: MetricUnit) -> String {
        switch unit {
        case .none: ""
        case .count: "1"
        case .bytes: "By"
        case .milliseconds: "ms"
        }
    }

    /// Unix seconds as Unix nanoseconds, the whole seconds and the fraction
    /// converted apart so that whole-second and millisecond times stay
    /// exact; 0 for a negative or non-finite time, saturated at UInt64.max.
    public static func unixNanos(_ seconds: Double) -> UInt64 {
        guard seconds.isFinite, seconds > 0 else { return 0 }
        guard seconds < 18_446_744_073 else { return .max }
        let whole = seconds.rounded(.down)
        let fraction = ((seconds - whole) * 1e9).rounded()
        return UInt64(whole) * 1_000_000_000 + UInt64(fraction)
    }

    /// The ExportMetricsServiceRequest of `snapshots` (see ``OTLPEncoding``).
    public static func exportRequest(_ snapshots: [MetricSnapshot], serviceName: String) -> [UInt8] {
        // Group by name, keeping the order of first appearance.
        var order: [String] = []
        var byName: [String: [MetricSnapshot]] = [:]
        for snapshot in snapshots {
            if byName[snapshot.name] == nil { order.append(snapshot.name) }
            byName[snapshot.name, default: []].append(snapshot)
        }
        var w = OTLPProtobufWriter()
        w.messageField(Field.resourceMetrics) { rm in
            rm.messageField(Field.resource) { resource in
                resource.messageField(Field.resourceAttributes) { keyValue(&$0, "service.name", serviceName) }
            }
            rm.messageField(Field.scopeMetrics) { sm in
                sm.messageField(Field.scope) { scope in
                    scope.stringField(Field.scopeName, scopeName)
                    scope.stringField(Field.scopeVersion, scopeVersion)
                }
                for name in order {
                    let points = byName[name]!
                    sm.messageField(Field.metrics) { metric in
                        metric.stringField(Field.metricName, name)
                        let unit = unit(points[0].unit)
                        if !unit.isEmpty { metric.stringField(Field.metricUnit, unit) }
                        if points.allSatisfy({ $0.distribution != nil }) {
                            metric.messageField(Field.exponentialHistogram) { histogram in
                                for point in points {
                                    histogram.messageField(Field.dataPoints) {
                                        exponentialDataPoint(&$0, point, point.distribution!)
                                    }
                                }
                                histogram.varintField(Field.aggregationTemporality, aggregationTemporalityDelta)
                            }
                        } else {
                            metric.messageField(Field.histogram) { histogram in
                                for point in points {
                                    histogram.messageField(Field.dataPoints) { dataPoint(&$0, point) }
                                }
                                histogram.varintField(Field.aggregationTemporality, aggregationTemporalityDelta)
                            }
                        }
                    }
                }
            }
        }
        return w.bytes
    }

    /// One HistogramDataPoint, fields in number order.
    private static func dataPoint(_ w: inout OTLPProtobufWriter, _ s: MetricSnapshot) {
        let end = unixNanos(s.timestampUnix)
        let start = unixNanos(s.timestampUnix - (s.windowEnd - s.windowStart))
        let count = UInt64(clamping: s.count)
        if start != 0 { w.fixed64Field(Field.startTimeUnixNano, start) }
        if end != 0 { w.fixed64Field(Field.timeUnixNano, end) }
        if count != 0 { w.fixed64Field(Field.count, count) }
        w.doubleField(Field.sum, s.sum)
        w.packedFixed64Field(Field.bucketCounts, [count])
        w.packedDoubleField(Field.explicitBounds, [])
        for d in s.dimensions {
            w.messageField(Field.attributes) { keyValue(&$0, d.name, d.value) }
        }
        w.doubleField(Field.min, s.min)
        w.doubleField(Field.max, s.max)
    }

    /// The scale of an exponential histogram for relative accuracy `a`: the
    /// smallest whose buckets (ratio 2^(2^−scale) between bounds) read
    /// within `a` of their values, (base − 1)/(base + 1) <= a, in [−10, 20].
    public static func exponentialScale(relativeAccuracy a: Double) -> Int32 {
        // (base − 1)/(base + 1) <= a  ⇔  ln(base) <= ln((1 + a)/(1 − a)).
        let scale = log2(log(2.0) / log((1 + a) / (1 - a))).rounded(.up)
        return Int32(Swift.min(Swift.max(scale, -10), 20))
    }

    /// The bucket of magnitude `v` at `scale`: index i covers
    /// (2^(i·2^−scale), 2^((i+1)·2^−scale)].
    static func exponentialIndex(_ v: Double, scale: Int32) -> Int {
        Int((log2(v) * exp2(Double(scale))).rounded(.up)) - 1
    }

    /// One ExponentialHistogramDataPoint, fields in number order: the
    /// sketch's buckets re-bucketed at the scale of its accuracy (each
    /// sketch bucket's count in the exponential bucket of its value), zeros
    /// in `zero_count` (threshold 0); the counts add up to `count`.
    private static func exponentialDataPoint(_ w: inout OTLPProtobufWriter, _ s: MetricSnapshot,
                                             _ d: DistributionSketch) {
        let scale = exponentialScale(relativeAccuracy: d.relativeAccuracy)
        var positive: [Int: UInt64] = [:], negative: [Int: UInt64] = [:]
        var zeros: UInt64 = 0
        d.forEachBucket { value, n in
            if value == 0 { zeros &+= n }
            else if value > 0 { positive[exponentialIndex(value, scale: scale), default: 0] &+= n }
            else { negative[exponentialIndex(-value, scale: scale), default: 0] &+= n }
        }
        for d in s.dimensions {
            w.messageField(Field.expAttributes) { keyValue(&$0, d.name, d.value) }
        }
        let end = unixNanos(s.timestampUnix)
        let start = unixNanos(s.timestampUnix - (s.windowEnd - s.windowStart))
        if start != 0 { w.fixed64Field(Field.expStartTimeUnixNano, start) }
        if end != 0 { w.fixed64Field(Field.expTimeUnixNano, end) }
        if d.count != 0 { w.fixed64Field(Field.expCount, d.count) }
        w.doubleField(Field.expSum, s.sum)
        if scale != 0 { w.sint32Field(Field.expScale, scale) }
        if zeros != 0 { w.fixed64Field(Field.expZeroCount, zeros) }
        for (field, buckets) in [(Field.expPositive, positive), (Field.expNegative, negative)] where !buckets.isEmpty {
            let low = buckets.keys.min()!, high = buckets.keys.max()!
            var dense = [UInt64](repeating: 0, count: high - low + 1)
            for (i, n) in buckets { dense[i - low] = n }
            w.messageField(field) { b in
                if low != 0 { b.sint32Field(Field.bucketsOffset, Int32(clamping: low)) }
                b.packedVarintField(Field.bucketsCounts, dense)
            }
        }
        w.doubleField(Field.expMin, s.min)
        w.doubleField(Field.expMax, s.max)
    }

    /// A KeyValue with a string AnyValue (the oneof member is always written).
    private static func keyValue(_ w: inout OTLPProtobufWriter, _ key: String, _ value: String) {
        if !key.isEmpty { w.stringField(Field.key, key) }
        w.messageField(Field.value) { $0.stringField(Field.stringValue, value) }
    }
}
