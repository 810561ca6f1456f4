/// Input checks shared by the Swift API and the C ABI. (The limits are
/// inlinable constants: the C ABI's puts by names use them inline.)
package enum Validation {
    /// Longest metric name, in bytes.
    @inlinable @inline(__always) package static var maxNameBytes: Int { 255 }   // KPLM_NAME_MAX (checked by KPLMCABITests)
    /// Longest dimension value, in bytes.
    @inlinable @inline(__always) package static var maxDimensionBytes: Int { 1024 }   // KPLM_DIMENSION_VALUE_MAX
    /// Allowed window lengths, in seconds.
    package static var windowSecondsRange: ClosedRange<Int> { 1...3600 }   // KPLM_WINDOW_SECONDS_MIN...KPLM_WINDOW_SECONDS_MAX

    /// Whether `bytes` is well-formed UTF-8: no overlong forms, no surrogates
    /// (U+D800…U+DFFF), nothing past U+10FFFF, no truncated sequence.
    package static func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var i = 0
        let n = bytes.count
        while i < n {
            let b0 = bytes[i]
            if b0 < 0x80 { i += 1; continue }
            // Allowed range of the second byte, and the sequence length.
            let length: Int
            var low: UInt8 = 0x80, high: UInt8 = 0xBF
            switch b0 {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; low = 0xA0           // no overlong 3-byte
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; high = 0x9F          // no surrogates
            case 0xF0: length = 4; low = 0x90           // no overlong 4-byte
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; high = 0x8F          // nothing past U+10FFFF
            default: return false                       // C0, C1, F5…FF, stray continuation
            }
            guard i + length <= n else { return false }
            let b1 = bytes[i + 1]
            guard b1 >= low && b1 <= high else { return false }
            var j = 2
            while j < length {
                guard bytes[i + j] & 0xC0 == 0x80 else { return false }
                j += 1
            }
            i += length
        }
        return true
    }

    /// Checks a Swift-API name: non-empty, at most 255 bytes, no NUL.
    static func checkName(_ name: String, label: String = "metric name") throws(MetricsError) {
        let count = name.utf8.count
        guard count > 0 else { throw MetricsError(.invalidArgument, "\(label) is empty") }
        guard count <= maxNameBytes else {
            throw MetricsError(.invalidArgument, "\(label) is \(count) bytes; the limit is \(maxNameBytes)")
        }
        guard !name.utf8.contains(0) else { throw MetricsError(.invalidArgument, "\(label) contains NUL") }
    }

    /// Checks a Swift-API dimension value: at most 1024 bytes, no NUL.
    static func checkDimension(_ value: String?, _ label: String) throws(MetricsError) {
        guard let value else { return }
        let count = value.utf8.count
        guard count <= maxDimensionBytes else {
            throw MetricsError(.invalidArgument, "\(label) is \(count) bytes; the limit is \(maxDimensionBytes)")
        }
        guard !value.utf8.contains(0) else { throw MetricsError(.invalidArgument, "\(label) contains NUL") }
    }

    /// Checks an observed value.
    @inline(__always)
    static func checkValue(_ value: Double) throws(MetricsError) {
        guard value.isFinite else { throw MetricsError(.invalidArgument, "value must be finite, got \(value)") }
    }
}

/// Name of the metric that counts puts refused by `maxMetrics`.
let refusedMetricName = "KplmMetricsRefused"   // KPLM_METRIC_REFUSED

/// Name of the metric that counts what sinks accepted but could not deliver
/// (see ``DropCountingSink``).
let sinkDroppedMetricName = "KplmSinkDropped"   // KPLM_METRIC_SINK_DROPPED
