import CKPLM
import KPLM

/// A metric key laid out once as the C structs of kplm.h: its name and
/// dimensions as NUL-terminated strings and a `kplm_dimension` array, in the
/// object's own tail (one allocation a key, owned by the key's series). C
/// snapshots and exports point into it instead of copying strings at every
/// read. The names of the three KPL dimensions, and the KPL metric names
/// (KPLM_METRIC_* of kplm.h), point to static strings: not copied a key, and
/// a sink that reads the names of many keys reads one string each (issue
/// #13: 16 bytes a key, and a cache miss a snapshot for such a sink).
///
/// The tail's first word belongs to the key index (``indexEntries``): the
/// index entries of puts by names that resolve to this key, kept with the
/// key instead of in a map of the index's own (issue #13: memory a key).
final class CKeyLayout: ManagedBuffer<CKeyLayout.Fields, UInt64> {
    /// Where the laid-out key is (into the tail, or static strings).
    struct Fields {
        /// The name, NUL-terminated.
        var name: UnsafePointer<CChar>
        var dimensionCount: Int
    }

    /// `key` laid out. (Immutable once made, but for ``indexEntries``:
    /// safe to read from any thread.)
    static func make(_ key: MetricKey) -> CKeyLayout {
        let dims = key.dimensions
        let names = dims.map { staticName($0.name) }
        let knownName = staticMetricName(key.name)
        var stringBytes = knownName == nil ? key.name.utf8.count + 1 : 0
        for (d, known) in zip(dims, names) {
            if known == nil { stringBytes += d.name.utf8.count + 1 }
            stringBytes += d.value.utf8.count + 1
        }
        let dimensionBytes = dims.count * MemoryLayout<kplm_dimension>.stride
        let words = 1 + (dimensionBytes + stringBytes + 7) / 8
        let made = create(minimumCapacity: words) { buffer in
            buffer.withUnsafeMutablePointerToElements { tail in
                tail.initialize(to: 0)   // indexEntries
                let raw = UnsafeMutableRawPointer(tail + 1)
                let structs = raw.bindMemory(to: kplm_dimension.self, capacity: dims.count)
                var cursor = (raw + dimensionBytes).bindMemory(to: CChar.self, capacity: stringBytes)
                let name = knownName ?? CLayout.copy(key.name, &cursor)
                for (i, (d, known)) in zip(dims, names).enumerated() {
                    structs[i] = kplm_dimension(name: known ?? CLayout.copy(d.name, &cursor),
                                                value: CLayout.copy(d.value, &cursor))
                }
                return Fields(name: name, dimensionCount: dims.count)
            }
        }
        return unsafeDowncast(made, to: CKeyLayout.self)
    }

    /// The static copy of a KPL dimension name ("stream", "shard",
    /// "error_code"), nil for any other name.
    private static func staticName(_ name: String) -> UnsafePointer<CChar>? {
        let known: StaticString
        switch name {
        case "stream": known = "stream"
        case "shard": known = "shard"
        case "error_code": known = "error_code"
        default: return nil
        }
        return staticCopy(known, of: name)
    }

    /// The static copy of a KPL metric name or of kplm's own (the
    /// KPLM_METRIC_* names of kplm.h), nil for any other name.
    static func staticMetricName(_ name: String) -> UnsafePointer<CChar>? {
        let known: StaticString
        switch name {
        case "UserRecordsReceived": known = "UserRecordsReceived"
        case "UserRecordsPending": known = "UserRecordsPending"
        case "UserRecordsPut": known = "UserRecordsPut"
        case "UserRecordsDataPut": known = "UserRecordsDataPut"
        case "KinesisRecordsPut": known = "KinesisRecordsPut"
        case "KinesisRecordsDataPut": known = "KinesisRecordsDataPut"
        case "ErrorsByCode": known = "ErrorsByCode"
        case "AllErrors": known = "AllErrors"
        case "RetriesPerRecord": known = "RetriesPerRecord"
        case "UserRecordExpired": known = "UserRecordExpired"
        case "BufferingTime": known = "BufferingTime"
        case "RequestTime": known = "RequestTime"
        case "UserRecordsPerKinesisRecord": known = "UserRecordsPerKinesisRecord"
        case "KinesisRecordsPerPutRecordsRequest": known = "KinesisRecordsPerPutRecordsRequest"
        case "UserRecordsPerPutRecordsRequest": known = "UserRecordsPerPutRecordsRequest"
        case "KplmMetricsRefused": known = "KplmMetricsRefused"
        case "KplmSinkDropped": known = "KplmSinkDropped"
        default: return nil
        }
        return staticCopy(known, of: name)
    }

    /// `known` as a C string if `name` has exactly its bytes, else nil. The
    /// switches above match by Swift's `==`, which takes
    /// "\u{212A}inesisRecordsPut" (a Kelvin sign) for "KinesisRecordsPut":
    /// another key (see ``MetricKey``), which must keep its own bytes.
    private static func staticCopy(_ known: StaticString, of name: String) -> UnsafePointer<CChar>? {
        let bytes = UnsafeBufferPointer(start: known.utf8Start, count: known.utf8CodeUnitCount)
        guard name.utf8.elementsEqual(bytes) else { return nil }
        return UnsafeRawPointer(known.utf8Start).assumingMemoryBound(to: CChar.self)
    }

    /// The name, NUL-terminated.
    var name: UnsafePointer<CChar> { header.name }
    /// The dimensions (nil when there are none): after ``indexEntries``.
    var dimensions: UnsafePointer<kplm_dimension>? {
        dimensionCount == 0 ? nil : withUnsafeMutablePointerToElements {
            UnsafeRawPointer($0 + 1).assumingMemoryBound(to: kplm_dimension.self)
        }
    }
    var dimensionCount: Int { header.dimensionCount }

    /// The key index's word (see `CKeyIndex`): read and written only under
    /// that index's lock, never by the readers of the laid-out key.
    var indexEntries: UnsafeMutablePointer<UInt64> { withUnsafeMutablePointerToElements { $0 } }

    /// A C snapshot of this key with the given statistics and span.
    @inline(__always)
    func snapshot(_ statistics: MetricStatistics, windowStart: Double, windowEnd: Double,
                  timestampUnix: Double) -> kplm_snapshot {
        let fields = header
        return kplm_snapshot(name: fields.name, statistics: statistics, dimensions: dimensions,
                             dimensionCount: fields.dimensionCount, windowStart: windowStart,
                             windowEnd: windowEnd, timestampUnix: timestampUnix)
    }
}
