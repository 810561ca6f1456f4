import CKPLM
import KPLM

/// A metric key laid out once as the C structs of kplm.h: its name and
/// dimensions as NUL-terminated strings and a `kplm_dimension` array, in one
/// allocation owned by the key's series. C snapshots and exports point into
/// it instead of copying strings at every read.
final class CKeyLayout: @unchecked Sendable {
    /// The name, NUL-terminated.
    let name: UnsafePointer<CChar>
    /// The dimensions (nil when there are none).
    let dimensions: UnsafePointer<kplm_dimension>?
    let dimensionCount: Int
    private let storage: UnsafeMutableRawPointer

    init(_ key: MetricKey) {
        let dims = key.dimensions
        var stringBytes = key.name.utf8.count + 1
        for d in dims { stringBytes += d.name.utf8.count + d.value.utf8.count + 2 }
        let dimensionBytes = dims.count * MemoryLayout<kplm_dimension>.stride
        storage = .allocate(byteCount: dimensionBytes + stringBytes, alignment: MemoryLayout<kplm_dimension>.alignment)
        let structs = storage.bindMemory(to: kplm_dimension.self, capacity: dims.count)
        var cursor = (storage + dimensionBytes).bindMemory(to: CChar.self, capacity: stringBytes)
        name = CLayout.copy(key.name, &cursor)
        CLayout.copy(dims, into: structs, &cursor)
        dimensions = dims.isEmpty ? nil : UnsafePointer(structs)
        dimensionCount = dims.count
    }

    deinit { storage.deallocate() }

    /// A C snapshot of this key with the given statistics and span.
    @inline(__always)
    func snapshot(_ statistics: MetricStatistics, windowStart: Double, windowEnd: Double,
                  timestampUnix: Double) -> kplm_snapshot {
        kplm_snapshot(name: name, statistics: statistics, dimensions: dimensions, dimensionCount: dimensionCount,
                      windowStart: windowStart, windowEnd: windowEnd, timestampUnix: timestampUnix)
    }
}
