/// One rendered dimension of a metric: a name ("stream", "shard",
/// "error_code") and its value.
public struct MetricDimension: Sendable, Hashable {
    /// Dimension name.
    public var name: String
    /// Dimension value; never empty.
    public var value: String

    /// Creates a dimension.
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// The identity of a metric: its name plus optional stream, shard and error
/// code. Two keys differ if any part differs. An empty string is the same as
/// `nil`.
public struct MetricKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Metric name, e.g. "UserRecordsPut".
    public let name: String
    /// Stream name, if any.
    public let stream: String?
    /// Shard id, if any.
    public let shardId: String?
    /// Error code, if any.
    public let errorCode: String?

    /// Creates a key; empty dimension strings are stored as `nil`.
    public init(name: String, stream: String? = nil, shardId: String? = nil, errorCode: String? = nil) {
        self.name = name
        self.stream = stream.flatMap { $0.isEmpty ? nil : $0 }
        self.shardId = shardId.flatMap { $0.isEmpty ? nil : $0 }
        self.errorCode = errorCode.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The dimensions sinks see, in this order and with these names:
    /// ("stream", s), ("shard", id), ("error_code", c); absent parts omitted.
    public var dimensions: [MetricDimension] {
        var out: [MetricDimension] = []
        out.reserveCapacity(3)
        if let stream { out.append(MetricDimension("stream", stream)) }
        if let shardId { out.append(MetricDimension("shard", shardId)) }
        if let errorCode { out.append(MetricDimension("error_code", errorCode)) }
        return out
    }

    /// Export order: by name (bytewise), then by the dimension list compared
    /// pair by pair (name bytes, then value bytes); a prefix sorts first.
    public static func < (lhs: MetricKey, rhs: MetricKey) -> Bool {
        ExportOrder.precedes(lhs.name, lhs.dimensions, rhs.name, rhs.dimensions)
    }

    public var description: String {
        let dims = dimensions.map { "\($0.name)=\($0.value)" }.joined(separator: ",")
        return dims.isEmpty ? name : "\(name){\(dims)}"
    }
}
