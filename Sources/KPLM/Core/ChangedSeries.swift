import CKPLMShims
import Synchronization

/// The series that may hold data no flush has taken yet, so that a flush
/// costs what changed since the last one, not every key (issue #13), and,
/// within a series, which writers' cells did (a cell no put filled since
/// the last flush is not read: a key put on by many threads over time, by
/// few since the last flush, costs those few cells).
///
/// A series is listed once between two flushes: for the put that starts a
/// slot of one of its writer cells (its writer's bit in
/// ``MetricSeries/changedWriters``), by that put on the general path, or,
/// when the put's common case started it, by the next reader, which takes
/// over the writer's log (``StartedSlotLogs``, ``mark(all:count:writer:)``);
/// by a shared-path or batch put, by the key's creation or re-creation
/// (bit 63, ``otherBit``).
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

    /// How many entries ahead ``mark(all:count:writer:)`` prefetches: its
    /// loop does little besides the miss it waits for.
    private static var prefetchDistance: Int { 16 }

    /// ``mark(_:writer:)`` for every series of `entries` (`count` series'
    /// addresses, unretained: consumed from a ``StartedSlotLogs`` log, whose
    /// series the caller's turn keeps alive), with one lock for those it lists.
    func mark(all entries: UnsafeRawPointer, count: Int, writer: Int) {
        let bit = UInt64(1) &<< UInt64(writer)
        var listed: [Unmanaged<MetricSeries>] = []
        for i in 0..<count {
            // The series' first line, a few entries ahead (past the caches,
            // each is a miss: let several overlap).
            if i &+ Self.prefetchDistance < count {
                kplmshim_prefetch(UnsafeRawPointer(bitPattern: entries.load(
                    fromByteOffset: (i &+ Self.prefetchDistance) &* 8, as: UInt.self)))
            }
            let series = Unmanaged<MetricSeries>.fromOpaque(
                UnsafeRawPointer(bitPattern: entries.load(fromByteOffset: i &* 8, as: UInt.self))!)
            let first = series._withUnsafeGuaranteedRef {
                $0.changedWriters.bitwiseOr(bit, ordering: .sequentiallyConsistent).oldValue == 0
            }
            if first { listed.append(series.retain()) }
        }
        if !listed.isEmpty { list.withLock { $0.append(contentsOf: listed) } }
    }

    /// The listed series, without taking them. A thread's put in its
    /// common case (``WriterCell/tryPut(_:second:gate:writer:header:)``)
    /// writes a slot whose start listed or logged its series, and the flush
    /// that took the series since emptied that slot (or listed the series
    /// again, see ``CellCollector/collectChanged(_:windowSeconds:)``): so
    /// once the logs are taken over (``CellCollector/takeStartedSlotLogs()``)
    /// such a put is on a listed series (for the check of a signal handler
    /// that interrupted one). The one exception, a common-case put
    /// interrupted while it starts a slot, before it logged it: a flush
    /// reads that cell only if the series is listed for an earlier slot of
    /// the same writer, and then its collection finds the open section of
    /// its own thread, and refuses, as for any put. Each retained: for a
    /// caller that no flush excludes.
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
