import CKPLMShims
import Synchronization

/// Unexported observations of one key: their statistics and the first and
/// last second they fell in.
package struct PendingExport: Sendable {
    /// Count, sum, min and max of the observations.
    package var statistics: MetricStatistics
    /// The first second they fell in.
    package var firstSecond: Int64
    /// The last second they fell in.
    package var lastSecond: Int64
    // (No reference in here: batches of these are copied per key by every
    // flush. A distribution metric's pending sketch stays in its series:
    // see MetricSeries.takenDistribution.)

    /// What a series holds when nothing is pending (its state keeps a
    /// `PendingExport`, not an optional: a tag byte would cost the object
    /// eight bytes). Merging into it gives the merged data.
    static var nothing: PendingExport {
        PendingExport(statistics: MetricStatistics(count: 0, sum: 0, min: .infinity, max: -.infinity),
                      firstSecond: .max, lastSecond: .min)
    }

    /// Whether this is ``nothing``.
    var isNothing: Bool { firstSecond == .max }

    mutating func merge(_ other: PendingExport) {
        statistics.merge(other.statistics)
        firstSecond = Swift.min(firstSecond, other.firstSecond)
        lastSecond = Swift.max(lastSecond, other.lastSecond)
    }
}

/// Rolling-window statistics of one key, with their bounds.
struct WindowReading: Sendable {
    var statistics: MetricStatistics
    var oldestSecond: Int64
    var newestSecond: Int64
}

/// The accumulator of one metric key: per-second buckets for the rolling
/// window, plus everything not yet exported, plus one ``WriterCell`` per
/// thread that put on it.
///
/// Puts land in their thread's cell without a lock (see ``WriterCell``);
/// cells are spilled into the shared state below when their second changes
/// and drained into it by every read (flush, snapshots, close). Buckets and
/// pending are updated under one lock in the same critical section, so a
/// merge is either wholly visible to a reader or not at all, and exports stay
/// exact for any double values (nothing is derived by subtraction).
///
/// Memory: the object (232 bytes: Metric's fields, the state, lock and
/// newest bucket inline) and its key's ``KeyRecord`` (the strings once: one
/// 64-byte line for a KPL key whose strings fit), a
/// ``MetricHeader`` line (64 bytes: the ``CellTable`` with the cells of the
/// first four writer indices, the put's other fields; an overflow table of
/// 480 bytes once a thread with a higher index puts); a 128-byte dense cell
/// per (thread, metric) made on that thread's first put (its place follows
/// from the header line's: ``WriterCell/dense(of:writer:)``), reused by the
/// next thread given the same writer index when the thread exits;
/// 40 bytes per live second before the newest (see ``WindowBuckets``).
package final class MetricSeries: Metric, @unchecked Sendable {
    // Stored properties in this order (issue #13), after ``Metric``'s (the
    // header line's address and the context's fields a put's slow paths
    // read): a pass of a flush over many keys reads a series' first line
    // (its reference count, the changed mark, the cells in use, the header
    // line's address: the collection and the checks need nothing else; and
    // the flush that last took it), then its second to fourth (the idle
    // watch's second, the key record's address, the lock and the state).
    // ``SeriesPrefetch`` asks for those lines only.

    // First line, after the object header (16 bytes) and Metric's fields.

    /// Removed from its registry as idle (see ``Registry/removeIdle(_:nowSecond:keeping:)``):
    /// shared-path puts refuse to record and re-create the key instead.
    /// Guarded by the series lock (read and written in ``withState(_:)``
    /// only); a byte here rather than in the state, whose padding it would
    /// grow by eight (the object then needs a 256-byte block, not 240).
    nonisolated(unsafe) private var isRetired = false
    /// ``exportRank``, in four bytes: the padding after Metric's fields.
    nonisolated(unsafe) private var exportRankValue: Int32 = -1
    /// The writer indices whose cells may hold data no flush has taken,
    /// bit i for writer index i (bit 63 also for a listing that is not a
    /// cell's: a shared-path or batch put, the key's creation): nonzero
    /// while the series is on its manager's ``ChangedSeries`` list. A flush
    /// flips only these cells (see ``ChangedSeries``).
    let changedWriters = Atomic<UInt64>(0)
    /// Bit i set: cells[i] is non-zero (lets readers skip empty entries).
    private let used = Atomic<UInt64>(0)
    /// Flush bookkeeping, read and written only by flushes (under the
    /// manager's control lock): the number of the last flush that took
    /// the series' data, the second ``IdleWatch`` last noted it at.
    nonisolated(unsafe) var batchedByFlush: UInt64 = 0

    // Second to fourth lines.

    nonisolated(unsafe) var idleWatchSecond: Int64 = .min
    /// Where the window's older buckets are and how many lines they span
    /// (``WindowBuckets/olderHint``, 0: none), a hint for prefetching
    /// outside the lock: set under the lock whenever they move or grow,
    /// read with no ordering. A pass of reads over many keys starts
    /// loading them a few keys ahead (with several live seconds a key,
    /// that array is several misses of its own). Prefetching a stale
    /// address is harmless: a prefetch never faults.
    private let olderBucketsHint = Atomic<UInt>(0)

    /// The key, laid out once (``KeyRecord``: its one copy, which the C
    /// ABI also hands to C callers as it is). Read by lookups, sorting and
    /// sinks, not by puts; on the second line, which a pass over a batch
    /// prefetches with the record (see ``SeriesPrefetch``).
    package let record: KeyRecord

    /// A word the C key index keeps for the key (its entries: see
    /// `CKeyIndex`), 0 until it writes it. Read and written under that
    /// index's lock only. (Here rather than in the record: the indexed
    /// record is a line with no room for it.)
    nonisolated(unsafe) package var keyIndexWord: UInt64 = 0

    /// For a distribution metric (SPEC §6), its distribution: each
    /// observation also feeds it (through ``CellBuckets`` on a writer cell,
    /// or directly on the shared path). Guarded by the state's lock; held
    /// by the key's record (the object has no room for it; a plain
    /// metric's key does not read the record for it: ``isDistribution``).
    private var distribution: SeriesDistribution? { isDistribution ? record.distribution : nil }

    private struct State {
        /// The window's buckets. Buckets older than the window are
        /// dropped when a newer second arrives or on a read.
        var buckets = WindowBuckets()
        /// Observations not yet handed to a flush (``PendingExport/nothing``: none).
        var pending = PendingExport.nothing
        /// Every observation since the series was created.
        var total = MetricStatistics(count: 0, sum: 0, min: .infinity, max: -.infinity)   // (no lazy global: see ForkGuard)
    }

    /// The series lock and what it guards, inline: a flush or a read that
    /// reaches the series reaches its state without another miss. Taken
    /// through ``withState(_:)`` only.
    private let state: Mutex<State>

    /// Runs `body` holding the series lock. (`Mutex`'s futex code is
    /// prebuilt, out of ThreadSanitizer's sight: the critical section is
    /// announced to it, with the series as the lock's identity; nothing
    /// happens outside sanitized processes.)
    @inline(__always)
    private func withState<R>(_ body: (inout State) -> R) -> R {
        let identity = Unmanaged.passUnretained(self).toOpaque()
        return state.withLock { s in
            kplmshim_tsan_acquire(identity)
            defer { kplmshim_tsan_release(identity) }
            return body(&s)
        }
    }

    /// A distribution metric's bucket mapping (for the general path of a
    /// put; made on the spot: a few operations).
    var bucketMapping: BucketMapping? {
        distribution.map { BucketMapping(relativeAccuracy: $0.relativeAccuracy) }
    }

    /// Cell pointers by writer index (see ``CellTable``), in ``header``.
    /// Written once per entry, by compare-exchange; never cleared while the
    /// series lives (except the retired placeholders a re-creation clears).
    var cells: CellTable { header.cells }

    /// The series of `key` in `context` (of a distribution metric if the
    /// context names its metric one); with `isNoop`, a handle whose puts
    /// do nothing (level none).
    init(key: MetricKey, context: PutContext, isNoop: Bool = false) {
        let accuracy = isNoop ? nil : context.distributionAccuracy(of: key.name)
        record = KeyRecord.make(key, distribution: accuracy.map { SeriesDistribution(relativeAccuracy: $0) })
        state = Mutex(State())
        super.init(header: MetricHeader.allocate(), context: context, isNoop: isNoop, accuracy: accuracy)
    }

    deinit {
        forEachCell { $0.releaseDense() }
        cells.deallocateOverflow()
        header.deallocate()
        record.deallocate()
    }

    /// The cell of writer index `writer` in the table `cells` of `series`,
    /// created on first use. Static, on plain pointers: no reference counting.
    @inline(__always)
    static func cell(_ writer: Int, in cells: CellTable, of series: Unmanaged<MetricSeries>) -> WriterCell {
        // Acquire: a cell published by another thread (a reader scanning, or
        // a later owner of the index) is seen initialised.
        let bits = cells.load(writer)
        if bits != 0 { return WriterCell(base: UnsafeMutableRawPointer(bitPattern: bits)!) }
        return series._withUnsafeGuaranteedRef { $0.createCell(writer) }
    }

    @inline(never)
    func createCell(_ writer: Int) -> WriterCell {
        let created = WriterCell.dense(of: header, writer: writer)
        let bits = UInt(bitPattern: created.base)
        let (exchanged, existing) = cells.entry(writer).pointee.compareExchange(
            expected: 0, desired: bits, ordering: .acquiringAndReleasing)
        if exchanged {
            used.bitwiseOr(1 << UInt64(writer), ordering: .releasing)
            // From now on this thread's puts by handle read the cell only.
            created.setTag(WriterCell.tagBits(gate: header.gateWord, flags: header.flags))
            return created
        }
        // The series was removed as idle (the entry holds the placeholder,
        // whose put reports it), or, which cannot happen (one owner per
        // index at a time), another cell was published: use what is there.
        // (The dense cell stays unused: nothing to free.)
        return WriterCell(base: UnsafeMutableRawPointer(bitPattern: existing)!)
    }

    /// The series' place in its registry's export order when a flush last
    /// ranked the keys (-1: not since it was created, or removed). Flushes
    /// put their batches in export order by it (see
    /// `MetricsManager.takeBatch`). Read and written only by flushes (under
    /// the manager's control lock). A place past `Int32.max` reads -1 (the
    /// key is then ordered by comparison).
    var exportRank: Int {
        get { Int(exportRankValue) }
        set { exportRankValue = newValue <= Int(Int32.max) ? Int32(newValue) : -1 }
    }

    /// Number of writer cells this series has (at most one per writer index).
    var cellCount: Int { used.load(ordering: .acquiring).nonzeroBitCount }

    /// Whether writer index `writer` has created its cell here.
    @inline(__always)
    func hasCell(ofWriter writer: Int) -> Bool {
        used.load(ordering: .acquiring) & (1 &<< UInt64(writer)) != 0
    }

    /// The cell of writer index `writer`, which has one (``hasCell(ofWriter:)``):
    /// its dense cell for the header line (`createCell` makes no other),
    /// found from the line's address and a word of its chunk, without
    /// reading the line (issue #13: a collection of many keys reads one line
    /// fewer a key).
    @inline(__always)
    func createdCell(ofWriter writer: Int) -> WriterCell {
        WriterCell(base: kplmshim_dense_cell_of(header.address, Int32(truncatingIfNeeded: writer &+ 1))!)
    }

    /// Calls `body` with every cell created so far of the writer indices in
    /// `writers` (default: all).
    @inline(__always)
    func forEachCell(of writers: UInt64 = .max, _ body: (WriterCell) -> Void) {
        // Acquire: a cell counted in `used` is seen initialised.
        var mask = used.load(ordering: .acquiring) & writers
        while mask != 0 {
            let i = mask.trailingZeroBitCount
            mask &= mask &- 1
            body(createdCell(ofWriter: i))
        }
    }

    /// A hint (see ``SeriesPrefetch``): starts loading the key's record.
    @inline(__always)
    func prefetchRecord() {
        kplmshim_prefetch(record.base)
    }

    /// A hint (see ``SeriesPrefetch``), once the series' first line had
    /// time: starts loading its cells (`changedOnly`: of the writers in
    /// ``changedWriters``).
    @inline(__always)
    func prefetchCells(changedOnly: Bool = false) {
        var mask = used.load(ordering: .relaxed)
        if changedOnly { mask &= changedWriters.load(ordering: .relaxed) }
        while mask != 0 {
            let i = mask.trailingZeroBitCount
            mask &= mask &- 1
            SeriesPrefetch.prefetchCell(createdCell(ofWriter: i).base)
        }
    }

    /// Records one observation that happened during `second` (shared path).
    func record(_ value: Double, second: Int64, windowSeconds: Int64) {
        record(MetricStatistics(count: 1, sum: value, min: value, max: value), second: second,
               windowSeconds: windowSeconds)
    }

    /// Merges observations of a put on the shared path, unless the series
    /// was removed as idle (then returns false: nothing recorded, the
    /// caller re-creates the key). Under the series lock, so a removal
    /// (which sets the flag under it, then takes what is pending) either
    /// sees this put's data or this put sees the flag.
    /// `values` are the observations `statistics` summarises, for the
    /// distribution of a distribution metric (ignored otherwise).
    func recordUnlessRetired(_ statistics: MetricStatistics, values: some Collection<Double>, second: Int64,
                             windowSeconds: Int64) -> Bool {
        withState { s in
            guard !isRetired else { return false }
            Self.merge(statistics, second: second, windowSeconds: windowSeconds, into: &s)
            noteBuckets(s)
            if let distribution, !values.isEmpty {
                // The window's sketches and the pending one, in the same
                // critical section as the statistics.
                distribution.add(values, second: second, windowSeconds: windowSeconds)
            }
            return true
        }
    }

    /// Merges observations that happened during `second`: a writer cell's
    /// slot (spilled by its owner inside a section, or drained by a
    /// reader), or the library's own counters. Recorded even on a removed
    /// series: a removal waits for those sections and exports what they left.
    ///
    /// `buckets`, a distribution metric's cell slot counts of the same
    /// observations, feed its distribution in the same critical section.
    func record(_ statistics: MetricStatistics, second: Int64, windowSeconds: Int64,
                buckets: UnsafeMutablePointer<CellBuckets>? = nil) {
        withState { s in
            Self.merge(statistics, second: second, windowSeconds: windowSeconds, into: &s)
            noteBuckets(s)
            guard let buckets, let distribution else { return }
            distribution.add(buckets, min: statistics.min, max: statistics.max, second: second,
                             windowSeconds: windowSeconds)
        }
    }

    private static func merge(_ statistics: MetricStatistics, second: Int64, windowSeconds: Int64,
                              into s: inout State) {
        s.pending.statistics.merge(statistics)
        s.total.merge(statistics)
        if second < s.pending.firstSecond { s.pending.firstSecond = second }
        if second > s.pending.lastSecond { s.pending.lastSecond = second }
        // (A late observation older than the window only counts towards
        // the next export.)
        s.buckets.merge(statistics, second: second, windowSeconds: windowSeconds)
    }

    /// Keeps ``olderBucketsHint`` current (under the lock, after the
    /// buckets changed): a store only when the older buckets moved or
    /// their lines changed.
    @inline(__always)
    private func noteBuckets(_ s: borrowing State) {
        let hint = s.buckets.olderHint
        if olderBucketsHint.load(ordering: .relaxed) != hint {
            olderBucketsHint.store(hint, ordering: .relaxed)
        }
    }

    /// A hint (see ``SeriesPrefetch``): starts loading the window's older
    /// buckets, if any (see ``olderBucketsHint``): every line from the
    /// array's count (16 bytes before its elements) to the last bucket for
    /// a read that merges each (`everyBucket`: issue #13, snapshots with
    /// ten live seconds a key stalled on the buckets past the first two
    /// lines), else the first two (a drain checks the count and the oldest
    /// bucket, and appends: asking for every line cost a flush more than
    /// it saved).
    @inline(__always)
    func prefetchOlderBuckets(everyBucket: Bool = false) {
        let hint = olderBucketsHint.load(ordering: .relaxed)
        guard let elements = UnsafeRawPointer(bitPattern: hint & ~15) else { return }
        guard everyBucket else {
            kplmshim_prefetch(elements - 16)
            kplmshim_prefetch(elements + 48)
            return
        }
        var line = UnsafeRawPointer(bitPattern: UInt(bitPattern: elements - 16) & ~63)!
        for _ in 0..<(hint & 15) {
            kplmshim_prefetch(line)
            line += 64
        }
    }

    // MARK: Removal of an idle key (under the collector's turn lock)

    /// Whether the key is idle at `nowSecond`: no observation inside the
    /// window, nothing pending, and no writer cell holding data. Racy by
    /// design (a put may land right after): the removal that follows stops
    /// puts, waits for those in progress, and checks again.
    func isIdle(at nowSecond: Int64, windowSeconds: Int64) -> Bool {
        let quiet = withState { s in
            s.buckets.drop(atOrBefore: nowSecond - windowSeconds)
            noteBuckets(s)
            return s.buckets.isEmpty && s.pending.isNothing
        }
        guard quiet else { return false }
        var empty = true
        forEachCell { if !$0.isEmpty { empty = false } }
        return empty
    }

    /// Step 1 of a removal: shared-path puts stop recording (they see the
    /// flag under the lock), cell puts too (every entry of the cell table
    /// either holds a cell, now marked, or the placeholder). Returns the
    /// cells to wait for after the heavy barrier.
    func markRetired() -> [WriterCell] {
        withState { _ in isRetired = true }
        let marked = cells.retireEmptyEntries()
        for cell in marked { cell.markRetired() }
        return marked
    }

    /// Whether the key was removed as idle (and not re-created since).
    /// Thread-safe (takes the series lock).
    package var isRemoved: Bool { withState { _ in isRetired } }

    /// Undoes ``markRetired()`` for a removed key that is re-created with
    /// this series (a handle's put, or a lookup while a handle held it).
    /// Its cells are empty: the removal drained them after the last
    /// section that could write them.
    func unmarkRetired() {
        for cell in cells.clearRetiredEntries() { cell.unmarkRetired() }
        withState { s in
            isRetired = false
            // Cumulative statistics start again, as for a key created anew.
            s.total = MetricStatistics(count: 0, sum: 0, min: .infinity, max: -.infinity)
            distribution?.resetTotal()
        }
    }

    /// Undoes ``markRetired()`` for a key that stays (a put made it busy
    /// while it was being removed): its puts resume, nothing is reset.
    func cancelRetirement() {
        for cell in cells.clearRetiredEntries() { cell.unmarkRetired() }
        withState { _ in isRetired = false }
    }

    /// Every observation merged into the series so far (cumulative).
    var total: MetricStatistics { withState { $0.total } }

    /// Takes everything not yet exported, leaving nothing pending. A
    /// distribution metric's pending sketch moves, in the same critical
    /// section, to ``takenDistribution`` (merged with what a failed export
    /// left there), where the export reads it. Also says whether the key
    /// is removed (``isRemoved``), read in the same critical section.
    func takePending() -> (pending: PendingExport?, isRemoved: Bool) {
        withState { s in
            let taken = s.pending.isNothing ? nil : s.pending
            s.pending = .nothing
            distribution?.takePending()
            return (taken, isRetired)
        }
    }

    /// The distribution of the observations the pending data taken by the
    /// flushes since the last successful export count (nil for a plain
    /// metric, or when none). Read and cleared by flushes (one at a time).
    package var takenDistribution: DistributionSketch? {
        guard let distribution else { return nil }   // (a plain metric: no lock)
        return withState { _ in distribution.taken }
    }

    /// After a successful export: the taken distribution was exported.
    func clearTakenDistribution() {
        guard let distribution else { return }
        withState { _ in distribution.clearTaken() }
    }

    /// Statistics over the buckets live at `nowSecond`: those whose second is
    /// within the last `windowSeconds` seconds, the current one included.
    ///
    /// A bucket newer than `nowSecond` belongs to a put that read the clock
    /// after this reader did (or to an injected clock that went back): it is
    /// left for a later reading, so a reading never spans more than the window.
    ///
    /// `lastSeconds` (at most `windowSeconds`) narrows the reading to the
    /// most recent seconds without dropping the older buckets of the window.
    func window(at nowSecond: Int64, windowSeconds: Int64, lastSeconds: Int64? = nil) -> WindowReading? {
        withState { s in
            s.buckets.drop(atOrBefore: nowSecond - windowSeconds)
            noteBuckets(s)
            let oldestWanted = nowSecond - (lastSeconds ?? windowSeconds)
            var merged = MetricStatistics.empty
            var oldest = Int64.max, newest = Int64.min
            for bucket in s.buckets {
                if bucket.second <= oldestWanted { continue }
                if bucket.second > nowSecond { break }   // sorted: the rest are newer
                merged.merge(bucket.statistics)
                oldest = Swift.min(oldest, bucket.second)
                newest = bucket.second
            }
            guard merged.count > 0 else { return nil }
            return WindowReading(statistics: merged, oldestSecond: oldest, newestSecond: newest)
        }
    }

    /// The distribution over the last `lastSeconds` seconds at `nowSecond`
    /// (the current second included), or since creation when nil; nil for
    /// a key that is not of a distribution metric.
    func distribution(at nowSecond: Int64, windowSeconds: Int64, lastSeconds: Int64?) -> DistributionSketch? {
        withState { s in
            distribution?.sketch(at: nowSecond, windowSeconds: windowSeconds, lastSeconds: lastSeconds)
        }
    }
}
