import CKPLMShims

/// Software prefetching for the passes of flushes and reads over many
/// series (issue #13).
///
/// Past the caches, a pass pays a miss for each object it reaches from a
/// series: the series (its state and lock inline), its cells (whose
/// addresses follow from the series' first line, see
/// ``MetricSeries/createdCell(ofWriter:)``), its C key layout. Key after
/// key, those misses queue up, each
/// behind the locked instructions of the key before (a lock, a flip). A
/// pass calls ``ahead(_:_:reading:)`` before visiting series `i`: it starts
/// loading what series `i + 3·d`, `i + 2·d` and `i + d` will need, one level
/// of pointers per stage (a stage reads only lines the stage before asked
/// for), so the misses of several keys overlap.
///
/// Only hints: a prefetch never faults, and a pass reads nothing it would
/// not read anyway (the fields read here are immutable, or loaded with
/// the same ordering the visit uses).
package enum SeriesPrefetch {
    /// Keys between stages: about what a key's misses take, in visits.
    static let distance = 4

    /// What a pass reads of each series, so that only those lines are
    /// asked for (each line asked for and not read costs memory bandwidth,
    /// which a pass over 100,000 keys runs short of).
    enum Reads {
        /// The first line and the cells: a read's collection, close's
        /// check for a put it interrupted.
        case cells
        /// The same, with only the cells of the writers that marked the
        /// series (``MetricSeries/changedWriters``): a flush's collection.
        case changedCells
        /// The first four lines (bookkeeping, the lock and the state), the
        /// window's older buckets and the key's record (a read of every
        /// window, which the C ABI hands out with the record's strings).
        case stateAndRecord
    }

    /// Prefetches for the series `distance` to `3 · distance` keys after
    /// `i` in `series`, for a pass that reads `reads`.
    @inline(__always)
    static func ahead(_ series: UnsafeBufferPointer<MetricSeries>, _ i: Int, reading reads: Reads) {
        let n = series.count
        @inline(__always) func object(_ k: Int) -> UnsafeRawPointer {
            UnsafeRawPointer(series.unretained(at: k).toOpaque())
        }
        @inline(__always) func withSeries(_ k: Int, _ body: (MetricSeries) -> Void) {
            series.unretained(at: k)._withUnsafeGuaranteedRef(body)
        }
        if i &+ 3 &* distance < n {
            if reads == .cells || reads == .changedCells {
                prefetchFirstLine(object(i &+ 3 &* distance))
            } else {
                prefetchObject(object(i &+ 3 &* distance))
            }
        }
        switch reads {
        case .cells, .changedCells:
            // (A cell's address follows from the first line: no header line.)
            if i &+ distance < n { withSeries(i &+ distance) { $0.prefetchCells(changedOnly: reads == .changedCells) } }
        case .stateAndRecord:
            if i &+ 2 &* distance < n {
                withSeries(i &+ 2 &* distance) {
                    $0.prefetchRecord()
                    $0.prefetchOlderBuckets(everyBucket: true)
                }
            }
        }
    }

    /// For a pass over a flush's batch (an exporter's, see
    /// ``PendingBatchExporting``), which reads each key's record (the C
    /// export's strings): the record two distances ahead (its address is in
    /// the entry; the distance twice the other passes': a C export's visit
    /// of a key is short, and at one distance a flush of every key at
    /// 100,000 keys waited on the record).
    @inline(__always)
    package static func ahead(_ batch: UnsafeBufferPointer<PendingBatchEntry>, _ i: Int) {
        if i &+ 2 &* distance < batch.count { kplmshim_prefetch(batch[i &+ 2 &* distance].record.base) }
    }

    /// A series' first line: its reference count and the flush's
    /// bookkeeping (see the order of ``MetricSeries``' stored properties).
    /// (With ``prefetchObject(_:)``, for a flush's taking of pending data.)
    @inline(__always)
    static func prefetchFirstLine(_ object: UnsafeRawPointer) {
        kplmshim_prefetch(object)
    }

    /// A series' lock and state (its second to fourth lines).
    @inline(__always)
    static func prefetchState(_ object: UnsafeRawPointer) {
        kplmshim_prefetch(object + 64)
        kplmshim_prefetch(object + 128)
        kplmshim_prefetch(object + 192)
    }

    /// A series' first four lines: all but (most of) its key.
    @inline(__always)
    static func prefetchObject(_ object: UnsafeRawPointer) {
        prefetchFirstLine(object)
        prefetchState(object)
    }

    /// Both lines of a writer cell.
    @inline(__always)
    static func prefetchCell(_ base: UnsafeRawPointer) {
        kplmshim_prefetch(base)
        kplmshim_prefetch(base + 64)
    }
}

extension UnsafeBufferPointer where Element == MetricSeries {
    /// Series `i`, read in place without retaining it: a pass over the keys
    /// that copied each one out could retain and release it, two locked
    /// instructions a key. Valid while the buffer's owner keeps it alive.
    @inline(__always)
    func unretained(at i: Int) -> Unmanaged<MetricSeries> {
        Unmanaged.fromOpaque(UnsafeRawPointer(baseAddress! + i).load(as: UnsafeRawPointer.self))
    }
}
