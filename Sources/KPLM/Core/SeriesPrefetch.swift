import CKPLMShims

/// Software prefetching for the passes of flushes and reads over many
/// series (issue #13).
///
/// Past the caches, a pass pays a miss for each object it reaches from a
/// series: the series (its state and lock inline), its cell table, its
/// cells, its C key layout. Key after key, those misses queue up, each
/// behind the locked instructions of the key before (a lock, a flip). A
/// pass calls
/// ``ahead(_:_:cells:)`` before visiting series `i`: it starts loading
/// what series `i + 3·d`, `i + 2·d` and `i + d` will need, one level of
/// pointers per stage (a stage reads only lines the stage before asked
/// for), so the misses of several keys overlap.
///
/// Only hints: a prefetch never faults, and a pass reads nothing it would
/// not read anyway (the fields read here are immutable, or loaded with
/// the same ordering the visit uses).
package enum SeriesPrefetch {
    /// Keys between stages: about what a key's misses take, in visits.
    static let distance = 4

    /// Prefetches for the series `distance` to `3 · distance` keys after
    /// `i` in `series`; `cells`: the pass reads their writer cells.
    @inline(__always)
    static func ahead(_ series: UnsafeBufferPointer<MetricSeries>, _ i: Int, cells: Bool) {
        let n = series.count
        let raw = UnsafeRawPointer(series.baseAddress!)
        @inline(__always) func object(_ k: Int) -> UnsafeRawPointer {
            raw.load(fromByteOffset: k &* MemoryLayout<UnsafeRawPointer>.stride, as: UnsafeRawPointer.self)
        }
        if i &+ 3 &* distance < n { prefetchObject(object(i &+ 3 &* distance)) }
        if i &+ 2 &* distance < n {
            Unmanaged<MetricSeries>.fromOpaque(object(i &+ 2 &* distance))._withUnsafeGuaranteedRef {
                $0.prefetchReferents()
            }
        }
        if cells && i &+ distance < n {
            Unmanaged<MetricSeries>.fromOpaque(object(i &+ distance))._withUnsafeGuaranteedRef { $0.prefetchCells() }
        }
    }

    /// For a pass over a flush's batch (an exporter's, see
    /// ``PendingBatchExporting``): series objects two distances ahead,
    /// what they point to (such as a C key layout) one distance ahead.
    @inline(__always)
    package static func ahead(_ batch: UnsafeBufferPointer<(series: MetricSeries, pending: PendingExport)>, _ i: Int) {
        let n = batch.count
        let raw = UnsafeRawPointer(batch.baseAddress!)
        let stride = MemoryLayout<(series: MetricSeries, pending: PendingExport)>.stride
        // (The series is the entry's first field: its address is read
        // without retaining it.)
        @inline(__always) func object(_ k: Int) -> UnsafeRawPointer {
            raw.load(fromByteOffset: k &* stride, as: UnsafeRawPointer.self)
        }
        if i &+ 2 &* distance < n { prefetchObject(object(i &+ 2 &* distance)) }
        if i &+ distance < n {
            Unmanaged<MetricSeries>.fromOpaque(object(i &+ distance))._withUnsafeGuaranteedRef { $0.prefetchReferents() }
        }
    }

    /// The lines of a series object (five: about 270 bytes, its state and
    /// lock included).
    @inline(__always)
    static func prefetchObject(_ object: UnsafeRawPointer) {
        kplmshim_prefetch(object)
        kplmshim_prefetch(object + 64)
        kplmshim_prefetch(object + 128)
        kplmshim_prefetch(object + 192)
        kplmshim_prefetch(object + 256)
    }

    /// Both lines of a writer cell.
    @inline(__always)
    static func prefetchCell(_ base: UnsafeRawPointer) {
        kplmshim_prefetch(base)
        kplmshim_prefetch(base + 64)
    }
}
