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

    /// Bytewise equality (see ``MetricKey``).
    public static func == (lhs: MetricDimension, rhs: MetricDimension) -> Bool {
        ByteIdentity.equal(lhs.name, rhs.name) && ByteIdentity.equal(lhs.value, rhs.value)
    }

    public func hash(into hasher: inout Hasher) {
        ByteIdentity.hash(name, into: &hasher)
        ByteIdentity.hash(value, into: &hasher)
    }
}

/// The identity of a metric: its name plus optional stream, shard and error
/// code. Two keys differ if any part differs, byte for byte: unlike Swift's
/// `String ==`, "é" (C3 A9) and "e\u{301}" (65 CC 81) are different keys, as
/// they are for C and Python callers. An empty string is the same as `nil`.
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

    public static func == (lhs: MetricKey, rhs: MetricKey) -> Bool {
        ByteIdentity.equal(lhs.name, rhs.name) && ByteIdentity.equal(lhs.stream, rhs.stream)
            && ByteIdentity.equal(lhs.shardId, rhs.shardId) && ByteIdentity.equal(lhs.errorCode, rhs.errorCode)
    }

    public func hash(into hasher: inout Hasher) {
        ByteIdentity.hash(name, into: &hasher)
        ByteIdentity.hash(stream, into: &hasher)
        ByteIdentity.hash(shardId, into: &hasher)
        ByteIdentity.hash(errorCode, into: &hasher)
    }

    public var description: String {
        let dims = dimensions.map { "\($0.name)=\($0.value)" }.joined(separator: ",")
        return dims.isEmpty ? name : "\(name){\(dims)}"
    }
}

/// Equality and hashing of strings by their UTF-8 bytes, with no Unicode
/// normalisation (Swift's `String` treats canonically equivalent strings as
/// equal, which would merge keys that C callers see as different).
package enum ByteIdentity {
    /// Whether `a` and `b` have the same UTF-8 bytes.
    @inline(__always)
    package static func equal(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && a.utf8.elementsEqual(b.utf8)
    }

    /// Both nil, or the same UTF-8 bytes.
    @inline(__always)
    package static func equal(_ a: String?, _ b: String?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case let (x?, y?): return equal(x, y)
        default: return false
        }
    }

    /// Feeds the length and the UTF-8 bytes of `s` to `hasher`.
    @inline(__always)
    package static func hash(_ s: String, into hasher: inout Hasher) {
        // The length first keeps ("ab", "c") apart from ("a", "bc").
        hasher.combine(s.utf8.count)
        let hashed: Void? = s.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if hashed == nil {
            for byte in s.utf8 { hasher.combine(byte) }
        }
    }

    @inline(__always)
    static func hash(_ s: String?, into hasher: inout Hasher) {
        if let s {
            hasher.combine(true)
            hash(s, into: &hasher)
        } else {
            hasher.combine(false)
        }
    }
}
