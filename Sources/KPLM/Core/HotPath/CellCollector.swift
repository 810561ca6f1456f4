import CKPLMShims
import Glibc

/// Moves what threads put in their ``WriterCell``s into the shared series:
/// the reader side of the cell protocol, for flush, snapshots and close.
///
/// Readers of one manager take turns (the flip of a cell must not race with
/// another reader's drain); puts never take this lock.
final class CellCollector: Sendable {
    /// The readers' turn, with what it counts (a lock over an empty value
    /// would do, but TSan then reports its inout accesses as racing: the
    /// zero-sized access is not tracked under the mutex).
    private let turn = Locked(Turns())

    /// What the readers' turn guards besides the turn itself.
    private struct Turns {
        /// Turns taken.
        var taken = 0
        /// The cells the last collection looked at (for tests: a flush
        /// reads only the cells of the writers that marked a series).
        var cellsRead = 0
    }

    /// The logs of slots started by puts' common case, and the list they
    /// are taken over into: by every collection, before it flips a cell
    /// (see ``StartedSlotLogs``).
    private let logs: StartedSlotLogs
    private let changed: ChangedSeries

    init(logs: StartedSlotLogs, changed: ChangedSeries) {
        self.logs = logs
        self.changed = changed
    }

    /// Lists the series whose slots puts started in their common case
    /// since the last collection (``StartedSlotLogs/consume(into:)``): a
    /// flush, before it takes the changed list.
    func takeStartedSlotLogs() {
        turn.withLock { _ in logs.consume(into: changed) }
    }

    /// The same, for a caller holding the turn (``withTurn(_:)``): an idle
    /// removal, once it has waited for the sections of the removed keys'
    /// cells, so that no entry for a removed key is left in a log.
    func takeStartedSlotLogsHoldingTurn() { logs.consume(into: changed) }

    /// How many cells the last collection looked at (to flip them, if
    /// they held data).
    var cellsReadByLastCollection: Int { turn.withLock { $0.cellsRead } }

    /// Whether the heavy barrier works on this kernel (checked once per
    /// process). Without it every put takes the shared, locked path.
    static let isAvailable: Bool = kplmshim_heavy_barrier_available() != 0

    /// Drains every cell of `series` that holds data: flip them all, one
    /// barrier, then wait for sections that may still write the old slots
    /// and merge those slots into their series. Many series are visited in
    /// address order, whatever their order in `series` (``AddressOrder``:
    /// a read's collection of every key goes through their lines nearly in
    /// sequence instead of in export order).
    /// Returns the series whose cell of this thread it skipped (a signal
    /// handler that interrupted a put of this thread): their data is taken
    /// by a later collection.
    @discardableResult
    func collect(_ series: [MetricSeries], windowSeconds: Int64) -> [MetricSeries] {
        guard Self.isAvailable else { return [] }
        return series.withUnsafeBufferPointer { series in
            guard let byAddress = AddressOrder.sorted(series) else { return collect(series, windowSeconds: windowSeconds) }
            return byAddress.withUnsafeBufferPointer { byAddress in
                byAddress.withMemoryRebound(to: MetricSeries.self) { collect($0, windowSeconds: windowSeconds) }
            }
        }
    }

    /// ``collect(_:windowSeconds:)`` in the order of `series`, which the
    /// caller keeps alive.
    private func collect(_ series: UnsafeBufferPointer<MetricSeries>, windowSeconds: Int64) -> [MetricSeries] {
        turn.withLock { turns in
            turns.taken &+= 1
            // Before any flip: a slot started before it is listed (a slot
            // started after it is not emptied by it either).
            logs.consume(into: changed)
            var skipped: [MetricSeries] = []
            _ = collectHoldingTurn(series, windowSeconds: windowSeconds, cellsRead: &turns.cellsRead) { s in
                skipped.append(s)
                return true
            }
            return skipped
        }
    }

    /// A flush's collection of the series it took with
    /// ``ChangedSeries/takeKeepingMarks()``: clears each one's mark just
    /// before its cells are flipped, and flips only the cells of the
    /// writers the mark held (see ``ChangedSeries`` for why that loses
    /// nothing), then drains like ``collect(_:windowSeconds:)``.
    ///
    /// Returns nil once every series is collected; or, if a cell of this
    /// thread has a put section open on one of `series` (a signal handler
    /// that interrupted a put of this thread in its common case: the flush
    /// would wait for itself, and is refused instead), the index of that
    /// series: the flips stop there, the cells flipped before are drained
    /// into their series, and the caller lists every series again
    /// (``ChangedSeries/giveBack(_:clearedBefore:)``; the marks of those
    /// before the index were cleared). That is checked in the pass that
    /// flips the cells, not in a pass of its own.
    ///
    /// Unless it stops, `drained(i)` is called once the cells flipped for
    /// `series[i]` are drained into it (series without a flipped cell are
    /// not drained), still holding the readers' turn: the flush takes that
    /// key's pending data there, while its lines are in the cache.
    func collectChanged(_ series: UnsafeBufferPointer<MetricSeries>, windowSeconds: Int64,
                        drained: (Int) -> Void = { _ in }) -> Int? {
        guard Self.isAvailable else {
            for s in series { _ = ChangedSeries.clearMark(s) }
            return nil
        }
        return turn.withLock { turns in
            turns.taken &+= 1
            return collectHoldingTurn(series, windowSeconds: windowSeconds, clearingChangedMarks: true,
                                      cellsRead: &turns.cellsRead, drained: drained) { _ in false }
        }
    }

    /// The collection. A cell of this thread with a section open (only a
    /// signal handler that interrupted a put of this thread can see one:
    /// waiting for it would never end) is handed to `ownSectionOpen` with
    /// its series, before that series' mark is cleared or any of its cells
    /// flipped: true skips the cell, false stops the flips there.
    /// What was flipped is drained either way. Returns the index it
    /// stopped at, if it stopped.
    private func collectHoldingTurn(_ series: UnsafeBufferPointer<MetricSeries>, windowSeconds: Int64,
                                    clearingChangedMarks: Bool = false, cellsRead: inout Int,
                                    drained: (Int) -> Void = { _ in },
                                    ownSectionOpen: (MetricSeries) -> Bool) -> Int? {
        let own = Self.ownWriterIndex
        // Unretained: the caller keeps every series alive for the whole call
        // (no reference counting per cell: a flush of every key is this loop).
        // `index`: the series' place in `series` (a series listed twice has
        // its cells flipped where its mark held writers: at one place, or at
        // both when a put marked it again in between).
        var flipped: [(cell: WriterCell, slot: Int, series: Unmanaged<MetricSeries>, index: Int)] = []
        flipped.reserveCapacity(series.count)
        var stoppedAt: Int?
        var read = 0
        defer { cellsRead = read }
        for i in series.indices {
            SeriesPrefetch.ahead(series, i, reading: clearingChangedMarks ? .changedCells : .cells)
            let unretained = series.unretained(at: i)
            let stop = unretained._withUnsafeGuaranteedRef { s -> Bool in
                let ownCell = own >= 0 ? Self.cellBase(own, of: s) : nil
                let ownOpen = ownCell.map { WriterCell(base: $0).isSectionOpen } ?? false
                if ownOpen && !ownSectionOpen(s) { return true }
                // A flush reads the cells of the writers that marked the
                // series only (see ChangedSeries); a read, every cell.
                let writers = clearingChangedMarks ? ChangedSeries.clearMark(s) : .max
                s.forEachCell(of: writers) { cell in
                    read &+= 1
                    if ownOpen && cell.base == ownCell { return }
                    if let slot = cell.flipIfUsed() { flipped.append((cell, slot, unretained, i)) }
                }
                return false
            }
            if stop {
                stoppedAt = i
                break
            }
        }
        guard !flipped.isEmpty else { return stoppedAt }
        Self.barrier()
        let ahead = 2 &* SeriesPrefetch.distance
        // (Through a buffer pointer: indexing the array in this loop made
        // the compiler retain and release its buffer at every element, two
        // locked instructions a key.)
        flipped.withUnsafeBufferPointer { flipped in
            for i in flipped.indices {
                // The drain reads the cell again and locks the series' state
                // (inline in the series): both addresses are in the list.
                if i &+ ahead < flipped.count {
                    SeriesPrefetch.prefetchCell(flipped[i &+ ahead].cell.base)
                    SeriesPrefetch.prefetchState(flipped[i &+ ahead].series.toOpaque())
                }
                // A drain that starts a new second moves the newest bucket to
                // the older ones: their address is in the state asked for above.
                if i &+ SeriesPrefetch.distance < flipped.count {
                    flipped[i &+ SeriesPrefetch.distance].series._withUnsafeGuaranteedRef { $0.prefetchOlderBuckets() }
                }
                let (cell, slot, s, index) = flipped[i]
                cell.waitForSection()
                s._withUnsafeGuaranteedRef { cell.drain(slot, into: $0, windowSeconds: windowSeconds) }
                // The last flipped cell of its series (a series' cells are
                // flipped together): the series is drained. (Not when the flips
                // stopped: the caller then lists every series again, data and all.)
                if stoppedAt == nil && (i &+ 1 == flipped.count || flipped[i &+ 1].index != index) { drained(index) }
            }
        }
        return stoppedAt
    }

    /// Runs `body` holding the readers' turn: a removal or a re-creation
    /// of idle keys (``Registry``) never interleaves with a collection.
    func withTurn<T>(_ body: () -> T) -> T {
        turn.withLock { turns in
            turns.taken &+= 1
            return body()
        }
    }

    /// Step 2 of removing `series` (their registry dropped them and
    /// ``MetricSeries/markRetired()`` marked their cells; the caller holds
    /// the turn): one barrier, then waits for every section that may not
    /// have seen a mark and moves what it recorded into its series, where
    /// the flush running the removal takes it. Afterwards no put writes a
    /// cell of these series until one is re-created.
    func finishRetiring(_ marked: [(series: MetricSeries, cells: [WriterCell])], windowSeconds: Int64) {
        guard Self.isAvailable, marked.contains(where: { !$0.cells.isEmpty }) else { return }
        Self.barrier()
        let own = Self.ownWriterIndex
        for (series, cells) in marked {
            for cell in cells {
                // A section of this thread would never end while it waits
                // (a signal handler that interrupted it). Cannot happen: a
                // flush from there is refused first (`isBusyOnThisThread`);
                // kept so that a mistake would cost a put, not a hang.
                if own >= 0 && cell.base == Self.cellBase(own, of: series) && cell.isSectionOpen { continue }
                cell.waitForSection()
                cell.drainBoth(into: series, windowSeconds: windowSeconds)
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
        series.withUnsafeBufferPointer { isOwnSectionOpen($0) }
    }

    /// The same, over series the caller keeps alive (read in place, not
    /// retained).
    func isOwnSectionOpen(_ series: UnsafeBufferPointer<MetricSeries>) -> Bool {
        let own = Self.ownWriterIndex
        guard own >= 0, Self.isAvailable else { return false }
        // Series, cell: two dependent misses a key once the keys outgrow
        // the caches; prefetched ahead, several keys' overlap.
        for i in series.indices {
            SeriesPrefetch.ahead(series, i, reading: .cells)
            let base = series.unretained(at: i)._withUnsafeGuaranteedRef { Self.cellBase(own, of: $0) }
            if let base, WriterCell(base: base).isSectionOpen { return true }
        }
        return false
    }

    /// The calling thread's writer index, or -1 if it has none (never
    /// assigns one).
    private static var ownWriterIndex: Int {
        let raw = Int(kplmshim_writer_raw())
        return raw > 0 ? raw - 1 : -1
    }

    /// The cell of writer index `writer` in `series`, if created (found
    /// from the series' first line, as the passes prefetch it; never the
    /// placeholder of a removed metric, which is no thread's cell).
    @inline(__always)
    private static func cellBase(_ writer: Int, of series: MetricSeries) -> UnsafeMutableRawPointer? {
        series.hasCell(ofWriter: writer) ? series.createdCell(ofWriter: writer).base : nil
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
