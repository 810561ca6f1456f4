import CKPLMShims
import Glibc

/// Moves what threads put in their ``WriterCell``s into the shared series:
/// the reader side of the cell protocol, for flush, snapshots and close.
///
/// Readers of one manager take turns (the flip of a cell must not race with
/// another reader's drain); puts never take this lock.
final class CellCollector: Sendable {
    private let turn = Locked(())

    /// Whether the heavy barrier works on this kernel (checked once per
    /// process). Without it every put takes the shared, locked path.
    static let isAvailable: Bool = kplmshim_heavy_barrier_available() != 0

    /// Drains every cell of `series` that holds data: flip them all, one
    /// barrier, then wait for sections that may still write the old slots
    /// and merge those slots into their series.
    func collect(_ series: [MetricSeries], windowSeconds: Int64) {
        guard Self.isAvailable else { return }
        // This thread's own cell is skipped while one of its sections is
        // open (a signal handler that interrupted a put of this thread): the
        // wait below would wait for ourselves. Its data is collected later.
        let own = Self.ownWriterIndex
        turn.withLock { _ in
            var flipped: [(cell: WriterCell, slot: Int, series: MetricSeries)] = []
            for s in series {
                s.forEachCell { cell in
                    if own >= 0 && cell.base == Self.cellBase(own, of: s) && cell.isSectionOpen { return }
                    if let slot = cell.flipIfUsed() { flipped.append((cell, slot, s)) }
                }
            }
            guard !flipped.isEmpty else { return }
            Self.barrier()
            for (cell, slot, s) in flipped {
                cell.waitForSection()
                cell.drain(slot, into: s, windowSeconds: windowSeconds)
            }
        }
    }

    /// For close, once the gate's closing bit is set: waits until every put
    /// section that might not have seen the bit has ended, or until
    /// `deadline` (monotonic seconds). Later sections see it and refuse
    /// their put. Returns whether every section ended in time.
    func waitForSections(_ series: [MetricSeries], until deadline: Double) -> Bool {
        guard Self.isAvailable else { return true }
        Self.barrier()
        var ended = true
        for s in series where ended {
            s.forEachCell { if ended && !$0.waitForSection(until: deadline) { ended = false } }
        }
        return ended
    }

    /// Whether this thread has a put section open on one of `series`' cells:
    /// it is then a signal handler that interrupted its own put, which
    /// cannot end before the handler returns. Reads the thread's writer
    /// index without assigning one; off the hot path (close, flush).
    func isOwnSectionOpen(_ series: [MetricSeries]) -> Bool {
        let own = Self.ownWriterIndex
        guard own >= 0, Self.isAvailable else { return false }
        for s in series {
            if let base = Self.cellBase(own, of: s), WriterCell(base: base).isSectionOpen { return true }
        }
        return false
    }

    /// The calling thread's writer index, or -1 if it has none (never
    /// assigns one).
    private static var ownWriterIndex: Int {
        let raw = Int(kplmshim_writer_raw())
        return raw > 0 ? raw - 1 : -1
    }

    /// The cell of writer index `writer` in `series`, if created.
    private static func cellBase(_ writer: Int, of series: MetricSeries) -> UnsafeMutableRawPointer? {
        UnsafeMutableRawPointer(bitPattern: series.cells[writer].load(ordering: .acquiring))
    }

    /// The reader's half of the Dekker pair (see ``WriterCell``). Once
    /// registered (again in a forked child) the call does not fail; should it,
    /// it is retried for a while rather than trusted.
    private static func barrier() {
        var attempts = 0
        while kplmshim_heavy_barrier() != 0 && attempts < 1_000 {
            attempts += 1
            sched_yield()
        }
    }
}
