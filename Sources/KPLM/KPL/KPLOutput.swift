/// How finely the KPL reports a metric: the levels of its tree
/// metric → stream → shard. The raw values are those of `kplm_granularity`.
public enum MetricsGranularity: Int, Sendable, CaseIterable, Comparable {
    /// Metric name only (plus the error code and global extra dimensions).
    case global = 1
    /// Also per stream.
    case stream = 2
    /// Also per stream and shard.
    case shard = 3

    public static func < (lhs: MetricsGranularity, rhs: MetricsGranularity) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A dimension added to every metric at a granularity, as the KPL's
/// `AdditionalMetricsDimension` (e.g. the host name at ``MetricsGranularity/global``).
public struct ExtraDimension: Sendable, Hashable {
    /// Dimension name (1...255 bytes of UTF-8).
    public var name: String
    /// Dimension value (1...1024 bytes of UTF-8).
    public var value: String
    /// The level it is attached at: global extras appear on every metric,
    /// stream extras on per-stream and per-shard ones, shard extras on
    /// per-shard ones.
    public var granularity: MetricsGranularity

    /// Creates an extra dimension.
    public init(_ name: String, _ value: String, granularity: MetricsGranularity) {
        self.name = name
        self.value = value
        self.granularity = granularity
    }

    /// Throws `invalidArgument` for an empty or over-long name or value.
    func validate() throws(MetricsError) {
        try Validation.checkName(name, label: "extra dimension name")
        guard !value.isEmpty else { throw MetricsError(.invalidArgument, "extra dimension value is empty") }
        try Validation.checkDimension(value, "extra dimension value")
    }
}

/// The KPL's dimension names.
public enum KPLDimensionNames {
    /// Stream name dimension.
    public static let streamName = "StreamName"
    /// Shard id dimension.
    public static let shardId = "ShardId"
    /// Error code dimension.
    public static let errorCode = "ErrorCode"
}

/// The identity of an exported line: a metric name and its dimensions,
/// compared byte for byte.
struct OutputKey: Hashable {
    let name: String
    let dimensions: [MetricDimension]

    static func == (a: OutputKey, b: OutputKey) -> Bool {
        ByteIdentity.equal(a.name, b.name) && a.dimensions == b.dimensions
    }

    func hash(into hasher: inout Hasher) {
        ByteIdentity.hash(name, into: &hasher)
        hasher.combine(dimensions)
    }
}

/// How recorded keys are shown when read (exports, snapshots): KPL rollups,
/// extra dimensions and KPL level filtering, all opt-in. Applied at read
/// time by merging statistics: a put costs the same whatever is enabled.
struct OutputView: Sendable {
    /// nil: every key as recorded (one line per recorded key, dimensions
    /// "stream", "shard", "error_code"). Otherwise the KPL's tree.
    let granularity: MetricsGranularity?
    var extras: [ExtraDimension]
    /// Where free-form dimensions attach in the KPL's tree, by name (absent:
    /// global). Used only with a granularity.
    var dimensionGranularities: [String: MetricsGranularity]
    /// When set, only metrics whose KPL level is within it are shown.
    let levelFilter: MetricsLevel?

    /// Whether reads show every key as recorded (the fast paths apply).
    var showsKeysAsRecorded: Bool { granularity == nil && extras.isEmpty && levelFilter == nil }

    /// Whether a metric of this name is shown at all. The self-metrics
    /// (refused keys, sink drops) are always shown.
    func admits(_ name: String) -> Bool {
        guard let levelFilter else { return true }
        if ByteIdentity.equal(name, refusedMetricName) || ByteIdentity.equal(name, sinkDroppedMetricName) { return true }
        return KPLMetrics.level(of: name).rawValue <= levelFilter.rawValue
    }

    private func extras(at g: MetricsGranularity) -> [MetricDimension] {
        extras.filter { $0.granularity == g }.map { MetricDimension($0.name, $0.value) }
    }

    /// The dimension lists a recorded key contributes to.
    ///
    /// Seed output: one list, the extras inserted by level (global first,
    /// stream extras after the stream, shard extras after the shard), then
    /// the error code and the key's free-form dimensions.
    ///
    /// KPL output: the KPL's order — global extras and the key's free-form
    /// dimensions attached there (all, unless configured otherwise),
    /// ErrorCode, StreamName with the stream extras and the free-form
    /// dimensions attached at the stream, ShardId with the shard ones — and one line per
    /// level of the tree down to the configured granularity: the name alone
    /// (with its global extras), then with the error code, then with the
    /// stream, then with the shard. A parent's statistics are the merge of
    /// its children's.
    func lines(of key: MetricKey) -> [[MetricDimension]] {
        guard let granularity else {
            var dims = extras(at: .global)
            if let stream = key.stream {
                dims.append(MetricDimension("stream", stream))
                dims += extras(at: .stream)
            }
            if let shard = key.shardId {
                dims.append(MetricDimension("shard", shard))
                dims += extras(at: .shard)
            }
            if let code = key.errorCode { dims.append(MetricDimension("error_code", code)) }
            dims += key.otherDimensions
            return [dims]
        }
        var current = extras(at: .global) + free(key, at: .global)
        var out = [current]
        if let code = key.errorCode {
            current.append(MetricDimension(KPLDimensionNames.errorCode, code))
            out.append(current)
        }
        if let stream = key.stream, granularity >= .stream {
            current.append(MetricDimension(KPLDimensionNames.streamName, stream))
            current += extras(at: .stream) + free(key, at: .stream)
            out.append(current)
        }
        if let shard = key.shardId, granularity >= .shard, key.stream != nil {
            current.append(MetricDimension(KPLDimensionNames.shardId, shard))
            current += extras(at: .shard) + free(key, at: .shard)
            out.append(current)
        }
        return out
    }

    /// The key's free-form dimensions that attach at `g` (global: those not
    /// configured elsewhere). A key has none on the common path: no work.
    private func free(_ key: MetricKey, at g: MetricsGranularity) -> [MetricDimension] {
        guard !key.otherDimensions.isEmpty else { return [] }
        return key.otherDimensions.filter { (dimensionGranularities[$0.name] ?? .global) == g }
    }

    /// Merges per-key values into output lines, in export order.
    func lines<Value>(_ items: [(MetricKey, Value)], merge: (inout Value, Value) -> Void) -> [(OutputKey, Value)] {
        var merged: [OutputKey: Value] = [:]
        for (key, value) in items where admits(key.name) {
            for dims in lines(of: key) {
                let line = OutputKey(name: key.name, dimensions: dims)
                if merged[line] == nil { merged[line] = value } else { merge(&merged[line]!, value) }
            }
        }
        return merged.sorted { ExportOrder.precedes($0.key.name, $0.key.dimensions, $1.key.name, $1.key.dimensions) }
            .map { ($0.key, $0.value) }
    }
}
