import Synchronization

/// The series that may hold data no flush has taken yet, so that a flush
/// costs what changed since the last one, not every key (issue #13), and,
/// within a series, which writers' cells did (a cell no put filled since
/// the last flush is not read: a key put on by many threads over time, by
/// few since the last flush, costs those few cells).
///
/// A series is listed once between two flushes: by the put that starts a
/// slot of one of its writer cells (the general path, once per second per
/// (thread, key); the common case never starts one), which also sets its
/// writer's bit in ``MetricSeries/changedWriters``; by a shared-path or
/// batch put, by the key's creation or re-creation (bit 63, ``otherBit``).
/// The series is listed while that mask is nonzero. A flush takes the list
/// and, just before it collects a series' cells, clears the mask and flips
/// the cells of the writers it held (``takeKeepingMarks()``, then the
/// collector's pass); a put that marks afterwards lists the series again,
/// for the next flush.
///
/// Why nothing is missed: a cell's slot is only ever started empty (a
/// reader emptied it), by a put that, after writing it, sets its writer's
/// bit (an atomic or); the flush clears the mask (an exchange), then flips
/// and reads the slots of the writers it read. If the flush's exchange
/// reads the put's bit, the put's slot write happens before the flush
/// reads the slot; if not, the put's or comes later and reads the cleared
/// mask, so it lists the series again. A common-case put writes a slot that
/// was started since the last flush of its cell (a flip empties the slot
/// it leaves, and the other one was emptied by the flip before): its
/// writer's bit was set since that flush, or the flush found it listed.
/// Close's final flush reads every cell of every series, listed or not.
///
/// Each listed series is retained once by the list, and a flush takes
/// those references over (``takeKeepingMarks()``): its batch keeps them, so
/// that no pass over the keys retains or releases one (a locked instruction
/// and, past the caches, a miss a key).
final class ChangedSeries: Sendable {
    /// The listed series, each retained once (``mark(_:)``).
    private let list = Locked<[Unmanaged<MetricSeries>]>([])

    deinit {
        list.withLock { listed in
            for series in listed { series.release() }
            listed = []
        }
    }

    /// The bit of ``MetricSeries/changedWriters`` for a listing that is
    /// not a writer cell's (writer index 63's too: a flush then also looks
    /// at that cell, if it exists).
    static let otherBit: UInt64 = 1 << 63

    /// Lists `series` unless it is listed already, with the cell of writer
    /// index `writer` (-1: no cell's data, ``otherBit``). Thread-safe; one
    /// atomic or when listed, plus a retain and a short lock the first time.
    @inline(__always)
    func mark(_ series: MetricSeries, writer: Int = -1) {
        let bit = writer >= 0 ? 1 &<< UInt64(writer) : Self.otherBit
        guard series.changedWriters.bitwiseOr(bit, ordering: .sequentiallyConsistent).oldValue == 0 else { return }
        let listed = Unmanaged.passRetained(series)
        list.withLock { $0.append(listed) }
    }

    /// The listed series, without taking them. A thread's put in its
    /// common case (``WriterCell/tryPut(_:second:gate:)``) writes a slot
    /// whose start listed its series, and the flush that took the series
    /// since emptied that slot (or listed the series again, see
    /// ``CellCollector/collectChanged(_:windowSeconds:)``): so such a put
    /// is always on a listed series (for the check of a signal handler
    /// that interrupted one). Each retained: for a caller that no flush
    /// excludes.
    var listed: [MetricSeries] { list.withLock { $0.map { $0.takeUnretainedValue() } } }

    /// Runs `body` with the listed series, not taken and not retained: for
    /// a caller holding the manager's control lock, so that no flush can
    /// take the list and release them meanwhile (every flush holds it).
    func withListed<R>(_ body: (UnsafeBufferPointer<MetricSeries>) -> R) -> R {
        let listed = list.withLock { $0 }   // (a copy on write: no element copied)
        return listed.withUnsafeBufferPointer { $0.withMemoryRebound(to: MetricSeries.self, body) }
    }

    /// Takes every listed series and clears their marks (see above). For
    /// flushes, one at a time.
    func take() -> [MetricSeries] {
        let taken = takeKeepingMarks().map { $0.takeRetainedValue() }
        for series in taken { _ = Self.clearMark(series) }
        return taken
    }

    /// Takes every listed series, leaving their marks set: the caller
    /// clears each one with ``clearMark(_:)`` before it reads that series'
    /// slots (the collector does, in the pass where it reads the series
    /// anyway: one pass over the keys fewer), and reads the cells of the
    /// writers it returns. Until then, a put on one of them does not list
    /// it again. The caller owns one reference to each
    /// series taken (`takeRetainedValue()` or `release()` once each). For
    /// flushes, one at a time.
    func takeKeepingMarks() -> [Unmanaged<MetricSeries>] {
        list.withLock { l -> [Unmanaged<MetricSeries>] in
            // The next list starts with this one's capacity: a list of
            // every key is not grown again, copy by copy, after each flush.
            var taken = [Unmanaged<MetricSeries>]()
            taken.reserveCapacity(l.count)
            swap(&taken, &l)
            return taken
        }
    }

    /// Lists again the series a flush took with ``takeKeepingMarks()`` and
    /// then gave up on (``CellCollector/collectChanged(_:windowSeconds:)``),
    /// with the references taken: those before index `clearedBefore` had
    /// their marks cleared, and are marked again with every writer (the
    /// next flush reads all their cells; unless a put listed one
    /// meanwhile); the others kept theirs and go back in the list as they
    /// are.
    func giveBack(_ taken: [Unmanaged<MetricSeries>], clearedBefore: Int) {
        var back = Array(taken[clearedBefore...])
        for series in taken[..<clearedBefore] {
            if series._withUnsafeGuaranteedRef({
                $0.changedWriters.bitwiseOr(.max, ordering: .sequentiallyConsistent).oldValue != 0
            }) {
                series.release()   // listed again by a put meanwhile
            } else {
                back.append(series)
            }
        }
        list.withLock { $0.append(contentsOf: back) }
    }

    /// Clears the mark of a series taken by ``takeKeepingMarks()``, and
    /// returns the writer indices whose cells may hold its new data (bit
    /// 63 may stand for no cell: ``otherBit``).
    @inline(__always)
    static func clearMark(_ series: MetricSeries) -> UInt64 {
        series.changedWriters.exchange(0, ordering: .sequentiallyConsistent)
    }
}
