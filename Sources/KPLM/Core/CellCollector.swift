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
        turn.withLock { _ in
            var flipped: [(cell: WriterCell, slot: Int, series: MetricSeries)] = []
            for s in series {
                s.forEachCell { cell in
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
    /// section that might not have seen the bit has ended. Later sections
    /// see it and refuse their put.
    func waitForSections(_ series: [MetricSeries]) {
        guard Self.isAvailable else { return }
        Self.barrier()
        for s in series { s.forEachCell { $0.waitForSection() } }
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
