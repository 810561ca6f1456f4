import CKPLM
import KPLM

/// A metric key as the C structs of kplm.h: a view of the key's
/// ``KeyRecord``, which the core lays out as C strings once a key. C
/// snapshots and exports point into it instead of copying strings at every
/// read; the KPL dimension names, and in a record of the plain form the
/// KPL metric names, point to static strings.
/// The dimensions' `kplm_dimension` pairs are the record's own, or, for a
/// record of the indexed form (which keeps none), written to scratch room
/// the reader provides (``pairsScratchBytes`` a key) for as long as it
/// hands the snapshot out.
struct CKeyLayout {
    /// The record viewed (kept alive by its series).
    let record: KeyRecord

    /// Scratch bytes a snapshot may need for its dimension pairs.
    static var pairsScratchBytes: Int { KeyRecord.indexedDimensionsMax * MemoryLayout<kplm_dimension>.stride }

    /// A C snapshot of this key with the given statistics and span, its
    /// dimension pairs the record's or written to `pairsScratch`
    /// (``pairsScratchBytes``, valid as long as the snapshot is handed out).
    @inline(__always)
    func snapshot(_ statistics: MetricStatistics, windowStart: Double, windowEnd: Double,
                  timestampUnix: Double, pairsScratch: UnsafeMutableRawPointer) -> kplm_snapshot {
        // (Pointer pairs, bound as such once: the same layout as
        // kplm_dimension, whose fields are two pointers.)
        let pairs = record.dimensionPairs(scratch: pairsScratch)?.assumingMemoryBound(to: kplm_dimension.self)
        return kplm_snapshot(name: record.name, statistics: statistics, dimensions: pairs,
                             dimensionCount: pairs == nil ? 0 : record.dimensionCount, windowStart: windowStart,
                             windowEnd: windowEnd, timestampUnix: timestampUnix)
    }
}
