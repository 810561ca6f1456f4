import CKPLM
import KPLM

/// A metric key as the C structs of kplm.h: a view of the key's
/// ``KeyRecord``, which the core lays out as C strings and (name, value)
/// pointer pairs, `kplm_dimension`'s layout, once a key. C snapshots and
/// exports point into it instead of copying strings at every read; the
/// KPL metric names and dimension names point to static strings.
///
/// The record's layer word belongs to the key index (``indexEntries``): the
/// index entries of puts by names that resolve to this key, kept with the
/// key instead of in a map of the index's own (issue #13: memory a key).
struct CKeyLayout {
    /// The record viewed (kept alive by its series).
    let record: KeyRecord

    /// The name, NUL-terminated.
    var name: UnsafePointer<CChar> { record.name }
    /// The dimensions (nil when there are none).
    var dimensions: UnsafePointer<kplm_dimension>? {
        // (Pointer pairs in the record, bound as such once: the same
        // layout as kplm_dimension, whose fields are two pointers.)
        record.dimensionPairsAddress?.assumingMemoryBound(to: kplm_dimension.self)
    }
    var dimensionCount: Int { record.dimensionCount }

    /// The key index's word (see `CKeyIndex`): read and written only under
    /// that index's lock, never by the readers of the laid-out key.
    var indexEntries: UnsafeMutablePointer<UInt64> { record.layerWord }

    /// A C snapshot of this key with the given statistics and span.
    @inline(__always)
    func snapshot(_ statistics: MetricStatistics, windowStart: Double, windowEnd: Double,
                  timestampUnix: Double) -> kplm_snapshot {
        kplm_snapshot(name: name, statistics: statistics, dimensions: dimensions,
                      dimensionCount: dimensionCount, windowStart: windowStart,
                      windowEnd: windowEnd, timestampUnix: timestampUnix)
    }
}
