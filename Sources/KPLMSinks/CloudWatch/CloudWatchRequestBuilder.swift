import KPLM

/// One CloudWatch `MetricDatum` with a statistic set, as ``CloudWatchRequestBuilder``
/// builds it from a ``MetricSnapshot``.
public struct CloudWatchDatum: Sendable, Equatable {
    /// Metric name (the snapshot's name, unchanged).
    public var metricName: String
    /// Dimensions with CloudWatch names ("StreamName", "ShardId",
    /// "ErrorCode", others unchanged), in snapshot order.
    public var dimensions: [MetricDimension]
    /// Unit sent as the datum's `Unit`.
    public var unit: MetricUnit
    /// Wall-clock Unix seconds sent as the datum's `Timestamp`.
    public var timestampUnix: Double
    /// `StatisticValues.SampleCount`: the snapshot's count.
    public var sampleCount: Double
    /// `StatisticValues.Sum`.
    public var sum: Double
    /// `StatisticValues.Minimum`.
    public var minimum: Double
    /// `StatisticValues.Maximum`.
    public var maximum: Double
    /// For a distribution metric (SPEC §6): `Values` (distinct, at most
    /// ``CloudWatchRequestBuilder/maxValuesPerDatum``) and their `Counts`,
    /// sent instead of `StatisticValues` (CloudWatch takes one or the other,
    /// and computes percentiles only from values). Empty otherwise.
    public var values: [Double] = []
    /// `Counts`, one per value.
    public var counts: [Double] = []

    /// Creates a datum from its parts, unchecked.
    public init(metricName: String, dimensions: [MetricDimension], unit: MetricUnit, timestampUnix: Double,
                sampleCount: Double, sum: Double, minimum: Double, maximum: Double) {
        self.metricName = metricName
        self.dimensions = dimensions
        self.unit = unit
        self.timestampUnix = timestampUnix
        self.sampleCount = sampleCount
        self.sum = sum
        self.minimum = minimum
        self.maximum = maximum
    }
}

/// One PutMetricData call: its namespace, its datums and the request body.
public struct CloudWatchRequest: Sendable, Equatable {
    /// The request's `Namespace`.
    public var namespace: String
    /// The datums, in input order.
    public var datums: [CloudWatchDatum]
    /// The AWS JSON 1.0 body for these datums, as
    /// ``CloudWatchRequestBuilder/body(namespace:datums:)`` writes it; send it with
    /// `X-Amz-Target: GraniteServiceVersion20100801.PutMetricData` and
    /// `Content-Type: application/x-amz-json-1.0`.
    public var body: String
}

/// Why a snapshot produced no datum: CloudWatch would reject it, and one
/// rejected datum fails the whole PutMetricData call.
public enum CloudWatchDropReason: Error, Sendable, Hashable, CaseIterable {
    /// The snapshot's count is 0 (or negative): nothing was observed.
    case emptyCount
    /// The metric name is empty or longer than 255 characters.
    case invalidName
    /// A dimension CloudWatch rejects: a name that is empty, blank, over 255
    /// characters or starts with ":"; a value over 1024 characters; a name or
    /// value with characters outside printable ASCII; or two dimensions with
    /// the same name (e.g. "stream" next to "StreamName").
    case invalidDimension
    /// More than 30 dimensions remain after blank values are dropped.
    case tooManyDimensions
    /// Sum, min or max is NaN, infinite, or beyond ±2^360.
    case valueOutOfRange
    /// The timestamp is more than two weeks before `wallNow` (or NaN).
    case timestampTooOld
    /// The timestamp is more than two hours after `wallNow`.
    case timestampInFuture
}

/// The datums of some snapshots, cut into PutMetricData requests.
public struct CloudWatchBatches: Sendable, Equatable {
    /// The requests, in input order; none for an empty input.
    public var requests: [CloudWatchRequest]
    /// How many snapshots produced no datum, by reason; reasons that did not
    /// occur are absent.
    public var dropped: [CloudWatchDropReason: Int]
}

/// A namespace CloudWatch would refuse for every datum.
public struct CloudWatchRequestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong, in words meant for a person.
    public let message: String

    init(_ message: String) {
        self.message = message
    }

    /// The message.
    public var description: String { message }
}

/// Turns kplm snapshots into CloudWatch PutMetricData requests, enforcing
/// the limits CloudWatch documents. Pure: no I/O, no clock reads.
///
/// "Characters" below are Unicode scalars, as AWS length constraints count
/// them. Rules, checked in this order for each snapshot:
/// 1. A count of 0 (or less) gives no datum (``CloudWatchDropReason/emptyCount``).
/// 2. The metric name must be 1–255 characters (``CloudWatchDropReason/invalidName``).
/// 3. Dimension names "stream", "shard" and "error_code" become "StreamName",
///    "ShardId" and "ErrorCode"; other names are kept. A dimension whose value
///    is blank (empty or only Unicode whitespace) is left out; the datum stays.
///    More than 30 remaining dimensions drop the datum
///    (``CloudWatchDropReason/tooManyDimensions``). Each remaining name must be
///    1–255 characters, not blank and not start with ":"; each value at most
///    1024 characters; both printable ASCII (U+0020–U+007E); names unique
///    (``CloudWatchDropReason/invalidDimension``).
/// 4. Sum, min and max must be finite and within ±2^360, bounds included
///    (``CloudWatchDropReason/valueOutOfRange``). A value whose magnitude is
///    below 2^-260 is sent as 0, as CloudWatch would store it anyway.
/// 5. The timestamp must be no more than two weeks before and no more than
///    two hours after `wallNow`, bounds included
///    (``CloudWatchDropReason/timestampTooOld``,
///    ``CloudWatchDropReason/timestampInFuture``).
public enum CloudWatchRequestBuilder {
    /// Most datums in one PutMetricData request.
    public static let maxDatumsPerRequest = 1000
    /// Most distinct values in one datum's `Values`.
    public static let maxValuesPerDatum = 150
    /// Most UTF-8 bytes in one request body: a margin under PutMetricData's 1 MB.
    public static let maxRequestBodyBytes = 1_000_000
    /// Most dimensions on one datum.
    public static let maxDimensions = 30
    /// Longest metric name, in characters.
    public static let maxMetricNameLength = 255
    /// Longest namespace, in characters.
    public static let maxNamespaceLength = 255
    /// Longest dimension name, in characters.
    public static let maxDimensionNameLength = 255
    /// Longest dimension value, in characters.
    public static let maxDimensionValueLength = 1024
    /// Largest magnitude CloudWatch accepts for a value: 2^360.
    public static let maxValueMagnitude: Double = 0x1p360
    /// Values of smaller magnitude than this (2^-260) are sent as 0.
    public static let minValueMagnitude: Double = 0x1p-260
    /// How far in the past a timestamp may be: two weeks, in seconds.
    public static let maxAgeSeconds: Double = 14 * 86_400
    /// How far in the future a timestamp may be: two hours, in seconds.
    public static let maxFutureSeconds: Double = 2 * 3_600
    /// Namespace prefix reserved for AWS services.
    public static let reservedNamespacePrefix = "AWS/"

    /// The datum for `s` with `unit`, or why CloudWatch would reject it
    /// (see the rules on ``CloudWatchRequestBuilder``). `wallNow` is the current
    /// wall-clock Unix time.
    public static func datum(_ s: MetricSnapshot, unit: MetricUnit,
                             wallNow: Double) -> Result<CloudWatchDatum, CloudWatchDropReason> {
        guard s.count > 0 else { return .failure(.emptyCount) }
        guard (1...maxMetricNameLength).contains(s.name.unicodeScalars.count) else {
            return .failure(.invalidName)
        }

        var dimensions: [MetricDimension] = []
        dimensions.reserveCapacity(s.dimensions.count)
        for d in s.dimensions where !isBlank(d.value) {
            dimensions.append(MetricDimension(cloudWatchName(d.name), d.value))
        }
        guard dimensions.count <= maxDimensions else { return .failure(.tooManyDimensions) }
        for (i, d) in dimensions.enumerated() {
            guard isValidDimensionName(d.name), isValidDimensionValue(d.value) else {
                return .failure(.invalidDimension)
            }
            // At most 30 dimensions: a quadratic scan is cheapest.
            for earlier in dimensions[..<i] where ByteIdentity.equal(earlier.name, d.name) {
                return .failure(.invalidDimension)
            }
        }

        guard let sum = sendable(s.sum), let minimum = sendable(s.min), let maximum = sendable(s.max) else {
            return .failure(.valueOutOfRange)
        }

        let t = s.timestampUnix
        // Written so that a NaN timestamp (or wallNow) fails the first test.
        guard t >= wallNow - maxAgeSeconds else { return .failure(.timestampTooOld) }
        guard t <= wallNow + maxFutureSeconds else { return .failure(.timestampInFuture) }

        return .success(CloudWatchDatum(metricName: s.name, dimensions: dimensions, unit: unit, timestampUnix: t,
                                        sampleCount: Double(s.count), sum: sum, minimum: minimum, maximum: maximum))
    }

    /// The datums of `s`: one with its statistic set; or, for a distribution
    /// metric, its buckets as `Values`/`Counts` split across datums of
    /// ``maxValuesPerDatum`` values each, with the same name, dimensions,
    /// unit and timestamp (CloudWatch adds them up in one period, and
    /// computes every statistic and percentile from the values: sum, min
    /// and max within the metric's accuracy instead of exact). Values below
    /// 2^-260 in magnitude are sent as 0 (merged with other zeros); a value
    /// beyond ±2^360 drops the snapshot, as its min or max would.
    public static func datums(_ s: MetricSnapshot, unit: MetricUnit,
                              wallNow: Double) -> Result<[CloudWatchDatum], CloudWatchDropReason> {
        let base: CloudWatchDatum
        switch datum(s, unit: unit, wallNow: wallNow) {
        case .failure(let reason): return .failure(reason)
        case .success(let d): base = d
        }
        guard let distribution = s.distribution, !distribution.isEmpty else { return .success([base]) }
        var pairs: [(value: Double, count: Double)] = []
        var outOfRange = false
        distribution.forEachBucket { value, n in
            guard let v = sendable(value) else { outOfRange = true; return }
            // Ascending: equal values (several tiny ones sent as 0) are adjacent.
            if let last = pairs.last, last.value == v { pairs[pairs.count - 1].count += Double(n) }
            else { pairs.append((v, Double(n))) }
        }
        guard !outOfRange else { return .failure(.valueOutOfRange) }
        var result: [CloudWatchDatum] = []
        var start = 0
        while start < pairs.count {
            let end = Swift.min(start + maxValuesPerDatum, pairs.count)
            var d = base
            d.values = pairs[start..<end].map(\.value)
            d.counts = pairs[start..<end].map(\.count)
            d.sampleCount = d.counts.reduce(0, +)
            result.append(d)
            start = end
        }
        return .success(result)
    }

    /// The datums of `snapshots` cut into requests for `namespace`.
    ///
    /// Input order is kept. Requests are filled greedily: a request is closed
    /// when the next datum would make it exceed ``maxDatumsPerRequest``
    /// datums or ``maxRequestBodyBytes`` bytes of body. (A single datum's body
    /// is far below that limit, whatever it holds.) Snapshots that give no
    /// datum are counted in ``CloudWatchBatches/dropped``. `unitOf` gives the
    /// unit of a metric name.
    ///
    /// - Throws: ``CloudWatchRequestError`` if `namespace` is empty, longer than
    ///   255 characters, starts with ":" or with the reserved "AWS/".
    public static func batches(_ snapshots: [MetricSnapshot], namespace: String, wallNow: Double,
                               unitOf: (String) -> MetricUnit = KPLMetrics.unit(of:))
        throws(CloudWatchRequestError) -> CloudWatchBatches {
        try checkNamespace(namespace)

        let head = bodyHead(namespace)
        let tail = "]}"
        let emptySize = head.utf8.count + tail.utf8.count
        var requests: [CloudWatchRequest] = []
        var dropped: [CloudWatchDropReason: Int] = [:]

        var datums: [CloudWatchDatum] = []
        var fragments: [String] = []
        var size = emptySize

        func close() {
            guard !datums.isEmpty else { return }
            let body = head + fragments.joined(separator: ",") + tail
            assert(body.utf8.count == size, "body size bookkeeping is off")
            requests.append(CloudWatchRequest(namespace: namespace, datums: datums, body: body))
            datums.removeAll(keepingCapacity: true)
            fragments.removeAll(keepingCapacity: true)
            size = emptySize
        }

        for s in snapshots {
            switch Self.datums(s, unit: unitOf(s.name), wallNow: wallNow) {
            case .failure(let reason):
                dropped[reason, default: 0] += 1
            case .success(let made):
                for d in made {
                    let fragment = datumJSON(d)
                    let bytes = fragment.utf8.count
                    if datums.count == maxDatumsPerRequest || size + 1 + bytes > maxRequestBodyBytes {
                        close()
                    }
                    size += (datums.isEmpty ? 0 : 1) + bytes
                    datums.append(d)
                    fragments.append(fragment)
                }
            }
        }
        close()
        return CloudWatchBatches(requests: requests, dropped: dropped)
    }

    /// The AWS JSON 1.0 PutMetricData body for `datums` in `namespace`:
    /// `{"Namespace":…,"MetricData":[{"MetricName":…,"Dimensions":[{"Name":…,"Value":…}],
    /// "Timestamp":…,"StatisticValues":{"SampleCount":…,"Sum":…,"Minimum":…,"Maximum":…},"Unit":…}]}`.
    ///
    /// "Dimensions" is omitted when empty. The timestamp is epoch seconds as
    /// a JSON number. Numbers are written in their shortest form that reads
    /// back as the same `Double`; non-finite ones, which
    /// ``datum(_:unit:wallNow:)`` never produces, as `null`. Strings escape
    /// `"`, `\` and U+0000–U+001F; everything else is written as UTF-8.
    /// Nothing is checked here: ``batches(_:namespace:wallNow:unitOf:)`` does that.
    public static func body(namespace: String, datums: [CloudWatchDatum]) -> String {
        var out = bodyHead(namespace)
        for (i, d) in datums.enumerated() {
            if i > 0 { out += "," }
            out += datumJSON(d)
        }
        out += "]}"
        return out
    }

    // MARK: - Checks

    /// Throws unless CloudWatch accepts `namespace`: 1...255 characters, not
    /// starting with "AWS/" or ":".
    package static func checkNamespace(_ namespace: String) throws(CloudWatchRequestError) {
        let length = namespace.unicodeScalars.count
        guard length > 0 else { throw CloudWatchRequestError("CloudWatch namespace is empty") }
        guard length <= maxNamespaceLength else {
            throw CloudWatchRequestError(
                "CloudWatch namespace is \(length) characters; the limit is \(maxNamespaceLength)")
        }
        // Bytes, not Characters: "AWS/" followed by a combining mark is still reserved.
        guard !namespace.utf8.starts(with: reservedNamespacePrefix.utf8) else {
            throw CloudWatchRequestError(
                "CloudWatch namespace \"\(namespace)\" starts with \"\(reservedNamespacePrefix)\", which AWS reserves")
        }
        guard namespace.utf8.first != UInt8(ascii: ":") else {
            throw CloudWatchRequestError("CloudWatch namespace \"\(namespace)\" starts with \":\"")
        }
    }

    /// The CloudWatch (KPL) name of a kplm dimension name.
    package static func cloudWatchName(_ name: String) -> String {
        if ByteIdentity.equal(name, "stream") { return "StreamName" }
        if ByteIdentity.equal(name, "shard") { return "ShardId" }
        if ByteIdentity.equal(name, "error_code") { return "ErrorCode" }
        return name
    }

    /// Empty, or only Unicode whitespace.
    package static func isBlank(_ s: String) -> Bool {
        s.unicodeScalars.allSatisfy { $0.properties.isWhitespace }
    }

    static func isPrintableASCII(_ s: String) -> Bool {
        s.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E }
    }

    /// Whether CloudWatch accepts `name` as a dimension name.
    package static func isValidDimensionName(_ name: String) -> Bool {
        // Printable ASCII, so bytes are characters.
        (1...maxDimensionNameLength).contains(name.utf8.count) && isPrintableASCII(name)
            && !isBlank(name) && name.utf8.first != UInt8(ascii: ":")
    }

    /// Whether CloudWatch accepts `value` as a dimension value.
    package static func isValidDimensionValue(_ value: String) -> Bool {
        // Blank values never get here.
        value.utf8.count <= maxDimensionValueLength && isPrintableASCII(value)
    }

    /// `v` as CloudWatch stores it, or nil if CloudWatch rejects it.
    package static func sendable(_ v: Double) -> Double? {
        guard v.isFinite, v.magnitude <= maxValueMagnitude else { return nil }
        return v.magnitude < minValueMagnitude ? 0 : v
    }

    // MARK: - JSON

    static func bodyHead(_ namespace: String) -> String {
        var out = "{\"Namespace\":"
        appendJSONString(namespace, to: &out)
        out += ",\"MetricData\":["
        return out
    }

    /// One element of `MetricData`.
    static func datumJSON(_ d: CloudWatchDatum) -> String {
        var out = "{\"MetricName\":"
        appendJSONString(d.metricName, to: &out)
        if !d.dimensions.isEmpty {
            out += ",\"Dimensions\":["
            for (i, dim) in d.dimensions.enumerated() {
                out += i == 0 ? "{\"Name\":" : ",{\"Name\":"
                appendJSONString(dim.name, to: &out)
                out += ",\"Value\":"
                appendJSONString(dim.value, to: &out)
                out += "}"
            }
            out += "]"
        }
        out += ",\"Timestamp\":"
        appendJSONNumber(d.timestampUnix, to: &out)
        if d.values.isEmpty {
            out += ",\"StatisticValues\":{\"SampleCount\":"
            appendJSONNumber(d.sampleCount, to: &out)
            out += ",\"Sum\":"
            appendJSONNumber(d.sum, to: &out)
            out += ",\"Minimum\":"
            appendJSONNumber(d.minimum, to: &out)
            out += ",\"Maximum\":"
            appendJSONNumber(d.maximum, to: &out)
            out += "}"
        } else {
            for (key, numbers) in [("Values", d.values), ("Counts", d.counts)] {
                out += ",\"\(key)\":"
                appendJSONArray(numbers, to: &out, appendJSONNumber)
            }
        }
        out += ",\"Unit\":"
        appendJSONString(d.unit.name, to: &out)
        out += "}"
        return out
    }

    /// Swift prints a finite `Double` in the shortest form that reads back
    /// exactly ("0.1", "100.0", "1e+16", "5e-324", "-0.0"), always within
    /// JSON's number grammar.
    package static func appendJSONNumber(_ v: Double, to out: inout String) {
        out += v.isFinite ? v.description : "null"
    }

    /// Appends `elements` as a JSON array, each element written by `append`.
    package static func appendJSONArray<Elements: Sequence>(
        _ elements: Elements, to out: inout String, _ append: (Elements.Element, inout String) -> Void) {
        out += "["
        var first = true
        for element in elements {
            if !first { out += "," }
            first = false
            append(element, &out)
        }
        out += "]"
    }

    /// Appends `s` to `out` as a JSON string literal (quoted, escaped).
    package static func appendJSONString(_ s: String, to out: inout String) {
        out += "\""
        let needsEscape = s.utf8.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
        if !needsEscape {
            out += s
        } else {
            for scalar in s.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case "\u{08}": out += "\\b"
                case "\u{0C}": out += "\\f"
                case "\u{00}"..."\u{1F}":
                    let hex: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7",
                                            "8", "9", "a", "b", "c", "d", "e", "f"]
                    out += "\\u00"
                    out.append(hex[Int(scalar.value >> 4)])
                    out.append(hex[Int(scalar.value & 0xF)])
                default:
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

/// The former name of ``CloudWatchRequestBuilder`` ("Shape" also named the
/// KPL rollups).
@available(*, deprecated, renamed: "CloudWatchRequestBuilder")
public typealias CloudWatchShape = CloudWatchRequestBuilder

/// The former name of ``CloudWatchRequestError``.
@available(*, deprecated, renamed: "CloudWatchRequestError")
public typealias CloudWatchShapeError = CloudWatchRequestError
