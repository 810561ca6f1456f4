import CKPLM
import KPLM

/// Decoding of C string arguments: bounded length, strict UTF-8, then a Swift
/// String. An empty dimension is the same as NULL.
package enum CArguments {
    /// Length of `p`, or nil if it is longer than `limit` (the scan stops
    /// there, so an unterminated or huge string costs at most limit+1 bytes).
    @inline(__always)
    package static func length(_ p: UnsafePointer<CChar>, limit: Int) -> Int? {
        var n = 0
        while p[n] != 0 {
            n += 1
            if n > limit { return nil }
        }
        return n
    }

    /// A validated UTF-8 string of at most `limit` bytes; "" for an empty one.
    package static func string(_ p: UnsafePointer<CChar>, limit: Int, label: String) throws(MetricsError) -> String {
        guard let n = length(p, limit: limit) else {
            throw MetricsError(.invalidArgument, "\(label) is longer than \(limit) bytes")
        }
        let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: n)
        guard Validation.isValidUTF8(bytes) else { throw MetricsError(.invalidArgument, "\(label) is not valid UTF-8") }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// ``string(_:limit:label:)`` of `p`, or nil for NULL.
    package static func optionalString(_ p: UnsafePointer<CChar>?, limit: Int,
                                       label: String) throws(MetricsError) -> String? {
        guard let p else { return nil }
        return try string(p, limit: limit, label: label)
    }

    /// The `count` strings of a C array (each as ``string(_:limit:label:)``):
    /// `.invalidArgument` for more than `maxCount`, a NULL array with a
    /// non-zero count, or a NULL entry.
    package static func strings(_ array: UnsafePointer<UnsafePointer<CChar>?>?, count: Int, maxCount: Int,
                                limit: Int, label: String) throws(MetricsError) -> [String] {
        guard count > 0 else { return [] }
        guard count <= maxCount else { throw MetricsError(.invalidArgument, "more than \(maxCount) \(label)s") }
        guard let array else { throw MetricsError(.invalidArgument, "\(label) count is \(count) but the array is NULL") }
        var strings: [String] = []
        strings.reserveCapacity(count)
        for i in 0..<count {
            guard let p = array[i] else { throw MetricsError(.invalidArgument, "\(label) \(i) is NULL") }
            strings.append(try string(p, limit: limit, label: label))
        }
        return strings
    }

    /// The metric name argument: non-NULL, non-empty, ≤ 255 bytes, UTF-8.
    static func name(_ p: UnsafePointer<CChar>?) throws(MetricsError) -> String {
        guard let p else { throw MetricsError(.invalidArgument, "metric name is NULL") }
        guard p[0] != 0 else { throw MetricsError(.invalidArgument, "metric name is empty") }
        return try string(p, limit: Validation.maxNameBytes, label: "metric name")
    }

    /// A dimension argument: NULL or "" = absent; else ≤ 1024 bytes, UTF-8.
    static func dimension(_ p: UnsafePointer<CChar>?, _ label: String) throws(MetricsError) -> String? {
        guard let p, p[0] != 0 else { return nil }
        return try string(p, limit: Validation.maxDimensionBytes, label: label)
    }

    /// The key a C put forms, every argument checked (SUMMARY still checks
    /// the shard and error code it then drops).
    static func key(_ manager: MetricsManager, _ name: UnsafePointer<CChar>?, _ stream: UnsafePointer<CChar>?,
                    _ shardId: UnsafePointer<CChar>?, _ errorCode: UnsafePointer<CChar>?) throws(MetricsError) -> MetricKey {
        let name = try CArguments.name(name)
        let stream = try dimension(stream, "stream")
        let shardId = try dimension(shardId, "shard id")
        let errorCode = try dimension(errorCode, "error code")
        return manager.formKey(name, stream, shardId, errorCode)
    }

    /// The key a C put by free-form dimensions forms (kplm_put_dims), every
    /// argument checked: the name, then each pair (a NULL or empty name,
    /// over-long or non-UTF-8 bytes), then the set (MetricKey: more than
    /// 30 pairs, a repeated name); a NULL value is an absent pair.
    static func key(_ manager: MetricsManager, _ name: UnsafePointer<CChar>?,
                    _ dimensions: UnsafePointer<kplm_dimension>?, _ count: Int) throws(MetricsError) -> MetricKey {
        let name = try CArguments.name(name)
        // size_t beyond Int.max arrives negative.
        guard count >= 0 && count <= MetricKey.maxDimensions else {
            throw MetricsError(.invalidArgument, "more than \(MetricKey.maxDimensions) dimensions")
        }
        guard count == 0 || dimensions != nil else {
            throw MetricsError(.invalidArgument, "dimension count is \(count) but dims is NULL")
        }
        var pairs: [(String, String)] = []
        pairs.reserveCapacity(count)
        for i in 0..<count {
            let pair = dimensions![i]
            guard let pairName = pair.name else { throw MetricsError(.invalidArgument, "dimension \(i) has a NULL name") }
            guard pairName[0] != 0 else { throw MetricsError(.invalidArgument, "dimension \(i) has an empty name") }
            let label = try string(pairName, limit: Validation.maxNameBytes, label: "dimension name")
            pairs.append((label, try dimension(pair.value, "value of dimension \(label)") ?? ""))
        }
        return manager.formKey(try MetricKey(name: name, dimensions: pairs))
    }
}
