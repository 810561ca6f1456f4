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

/// The identity of a metric: its name plus a set of (dimension name, value)
/// pairs: optional stream, shard and error code, and free-form dimensions
/// (``otherDimensions``). Two keys differ if any part differs, byte for byte: unlike Swift's
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
    /// The free-form dimensions (SPEC §5): every pair whose name is not
    /// "stream", "shard" or "error_code", sorted by name bytewise; values
    /// never empty. Empty for a key formed from the three alone.
    public let otherDimensions: [MetricDimension]

    /// Most (name, value) pairs one key may be formed from (CloudWatch's
    /// limit on dimensions).
    public static let maxDimensions = 30

    /// Creates a key; empty dimension strings are stored as `nil`.
    public init(name: String, stream: String? = nil, shardId: String? = nil, errorCode: String? = nil) {
        self.init(name: name, stream: stream, shardId: shardId, errorCode: errorCode, otherDimensions: [])
    }

    /// Creates a key from a name and a set of (dimension name, value) pairs,
    /// in any order: the same pairs in another order make the same key. The
    /// pairs named "stream", "shard" and "error_code" fill ``stream``,
    /// ``shardId`` and ``errorCode``; the others are ``otherDimensions``. A
    /// pair with an empty value is absent.
    ///
    /// Throws `invalidArgument` for more than ``maxDimensions`` pairs, a
    /// dimension name that is empty, over 255 bytes or contains NUL, a name
    /// given twice, or a value over 1024 bytes or containing NUL. The metric
    /// name is checked where the key is used (a put, a query).
    public init(name: String, dimensions: some Sequence<(String, String)>) throws(MetricsError) {
        // .some(value) once a pair of that name was seen (value may be empty).
        var stream: String?? = nil, shardId: String?? = nil, errorCode: String?? = nil
        var others: [MetricDimension] = []
        var count = 0
        for (dimension, value) in dimensions {
            count += 1
            guard count <= Self.maxDimensions else {
                throw MetricsError(.invalidArgument, "more than \(Self.maxDimensions) dimensions")
            }
            try Validation.checkName(dimension, label: "dimension name")
            try Validation.checkDimension(value, "value of dimension \(dimension)")
            switch dimension {
            case "stream": try Self.setOnce(&stream, value, dimension)
            case "shard": try Self.setOnce(&shardId, value, dimension)
            case "error_code": try Self.setOnce(&errorCode, value, dimension)
            default: others.append(MetricDimension(dimension, value))
            }
        }
        // Repeated names are checked on every pair, empty values included.
        others.sort { ExportOrder.compare($0.name, $1.name) < 0 }
        for i in others.indices.dropFirst() where ByteIdentity.equal(others[i - 1].name, others[i].name) {
            throw MetricsError(.invalidArgument, "dimension \(others[i].name) is given twice")
        }
        self.init(name: name, stream: stream ?? nil, shardId: shardId ?? nil, errorCode: errorCode ?? nil,
                  otherDimensions: others.filter { !$0.value.isEmpty })
    }

    /// A key from parts already in their stored form (``otherDimensions``
    /// sorted, no empty value, no name of the three).
    package init(name: String, stream: String?, shardId: String?, errorCode: String?,
                 otherDimensions: [MetricDimension]) {
        self.name = name
        self.stream = stream.flatMap { $0.isEmpty ? nil : $0 }
        self.shardId = shardId.flatMap { $0.isEmpty ? nil : $0 }
        self.errorCode = errorCode.flatMap { $0.isEmpty ? nil : $0 }
        self.otherDimensions = otherDimensions
    }

    /// Sets one of the three named parts, refusing a second pair of that
    /// name (even after a first one with an empty value).
    private static func setOnce(_ part: inout String??, _ value: String, _ dimension: String) throws(MetricsError) {
        guard part == nil else { throw MetricsError(.invalidArgument, "dimension \(dimension) is given twice") }
        part = .some(value)
    }

    /// The dimensions sinks see, in this order and with these names:
    /// ("stream", s), ("shard", id), ("error_code", c), absent parts omitted,
    /// then ``otherDimensions`` (by name, bytewise).
    public var dimensions: [MetricDimension] {
        var out: [MetricDimension] = []
        out.reserveCapacity(3 + otherDimensions.count)
        if let stream { out.append(MetricDimension("stream", stream)) }
        if let shardId { out.append(MetricDimension("shard", shardId)) }
        if let errorCode { out.append(MetricDimension("error_code", errorCode)) }
        out.append(contentsOf: otherDimensions)
        return out
    }

    /// ``dimensions``, one at a time, without building the array (for
    /// comparisons: a flush sorts keys by them).
    var dimensionPairs: DimensionPairs { DimensionPairs(key: self) }

    /// The pairs of ``dimensions``, in that order.
    struct DimensionPairs: Sequence, IteratorProtocol {
        let key: MetricKey
        /// 0-2: the stream, shard and error code parts; then the others.
        private var position = 0

        init(key: MetricKey) { self.key = key }

        mutating func next() -> (name: String, value: String)? {
            while position < 3 {
                position += 1
                switch position {
                case 1: if let stream = key.stream { return ("stream", stream) }
                case 2: if let shardId = key.shardId { return ("shard", shardId) }
                default: if let errorCode = key.errorCode { return ("error_code", errorCode) }
                }
            }
            let other = position - 3
            guard other < key.otherDimensions.count else { return nil }
            position += 1
            return (key.otherDimensions[other].name, key.otherDimensions[other].value)
        }
    }

    /// Export order: by name (bytewise), then by the dimension list compared
    /// pair by pair (name bytes, then value bytes); a prefix sorts first.
    public static func < (lhs: MetricKey, rhs: MetricKey) -> Bool {
        ExportOrder.precedes(lhs, rhs)
    }

    public static func == (lhs: MetricKey, rhs: MetricKey) -> Bool {
        ByteIdentity.equal(lhs.name, rhs.name) && ByteIdentity.equal(lhs.stream, rhs.stream)
            && ByteIdentity.equal(lhs.shardId, rhs.shardId) && ByteIdentity.equal(lhs.errorCode, rhs.errorCode)
            && lhs.otherDimensions == rhs.otherDimensions
    }

    public func hash(into hasher: inout Hasher) {
        ByteIdentity.hash(name, into: &hasher)
        ByteIdentity.hash(stream, into: &hasher)
        ByteIdentity.hash(shardId, into: &hasher)
        ByteIdentity.hash(errorCode, into: &hasher)
        hasher.combine(otherDimensions)
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
        let hashed: Void? = s.utf8.withContiguousStorageIfAvailable { hash(utf8: $0, into: &hasher) }
        if hashed == nil {
            hasher.combine(s.utf8.count)
            for byte in s.utf8 { hasher.combine(byte) }
        }
    }

    /// Feeds the length and the bytes of a UTF-8 string to `hasher`, as
    /// ``hash(_:into:)-(String,_)`` does for a `String` of these bytes (a
    /// ``KeyRecord`` hashes its strings with it).
    @inline(__always)
    package static func hash(utf8: UnsafeBufferPointer<UInt8>, into hasher: inout Hasher) {
        hasher.combine(utf8.count)
        hasher.combine(bytes: UnsafeRawBufferPointer(utf8))
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
