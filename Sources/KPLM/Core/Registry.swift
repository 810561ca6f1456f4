/// The live metric keys of a manager, capped at `maxMetrics` distinct keys.
///
/// A key that has gone idle (no observation inside the window, nothing
/// pending) is removed at a flush (``removeIdle(_:nowSecond:keeping:)``),
/// freeing its place and, once nothing references its ``Metric``, its
/// memory. A ``Metric`` handle to a removed key stays valid: its next put
/// re-creates the key with the same series (``revive(_:)``).
///
/// Locks: the registry's own, taken inside the collector's turn (removal
/// and re-creation hold both, in that order), never the other way round.
final class Registry: Sendable {
    /// Name of the metric counting puts refused by the cap (no dimensions).
    static let refusedKey = MetricKey(name: refusedMetricName)
    /// Name of the metric counting what sinks dropped (no dimensions).
    static let droppedKey = MetricKey(name: sinkDroppedMetricName)

    /// A removed metric, found again if something still holds it.
    private struct Removed {
        weak var metric: Metric?
    }

    private struct State {
        /// The live metrics by key (see ``MetricTable``), borrowed: `sorted`
        /// and `unsorted` hold each of them (a key enters and leaves both
        /// under this lock).
        var byKey = MetricTable()
        /// Keys counted against the cap (the self-metrics are not).
        var cappedCount = 0
        /// Live series in export order, and live series added since (not
        /// sorted yet): readers sort the few added and merge them in.
        /// Together, every live series (no list of its own: issue #13,
        /// memory a key); copied (O(1), copy-on-write) by readers so they
        /// never hold this lock while reading a series.
        var sorted: [MetricSeries] = []
        var unsorted: [MetricSeries] = []
        /// Changes at every insertion and removal.
        var generation = 0
        /// Removed keys whose metric something (a handle, a put in
        /// progress) still held at removal: a put by names re-creates the
        /// key with that metric, so a handle and the names never split a
        /// key in two. Entries whose metric is gone are swept at removals.
        var removed: [MetricKey: Removed] = [:]
        var removedAtLastSweep = 0
    }

    private let state = Locked(State())
    private let maxMetrics: Int
    private let context: PutContext

    init(maxMetrics: Int, context: PutContext) {
        self.maxMetrics = maxMetrics
        self.context = context
    }

    /// The metric for `key`, created if new (or re-created, if removed as
    /// idle). Throws `limitReached` for a new key beyond the cap, after
    /// counting the refusal.
    func metric(for key: MetricKey) throws(MetricsError) -> Metric {
        enum Found { case live(Metric), removed(Metric), refused }
        let found: Found = state.withLock { s in
            if let existing = s.byKey[key] { return .live(existing) }
            if let held = s.removed[key]?.metric { return .removed(held) }
            guard Self.isExempt(key) || s.cappedCount < maxMetrics else { return .refused }
            let created = MetricSeries(key: key, context: context)
            insert(created, into: &s)
            return .live(created)
        }
        switch found {
        case .live(let metric): return metric
        case .removed(let metric): return try revive(metric)
        case .refused: throw refuse(key)
        }
    }

    /// Runs `body` under the registry's lock unless a key named `name` is
    /// known (live, or removed and still held); returns whether it ran. A
    /// key is created under the same lock, so none of that name appears
    /// while `body` runs (it may take locks a key's creation takes).
    func ifNoKey(named name: String, _ body: () -> Void) -> Bool {
        state.withLock { s in
            let named = { (series: MetricSeries) in series.record.nameEquals(name) }
            let known = s.sorted.contains(where: named) || s.unsorted.contains(where: named)
                || s.removed.contains { $0.value.metric != nil && ByteIdentity.equal($0.key.name, name) }
            if !known { body() }
            return !known
        }
    }

    /// The metric of `key` if it is live (never creates one).
    func existing(_ key: MetricKey) -> Metric? {
        state.withLock { $0.byKey[key] }
    }

    /// Every live series, in no particular order (export order but for
    /// the keys added since the last ordering).
    var allSeries: [MetricSeries] {
        let (sorted, unsorted) = state.withLock { s in (s.sorted, s.unsorted) }
        return unsorted.isEmpty ? sorted : sorted + unsorted
    }

    /// Every live series in export order (see ``ExportOrder``). Keys added
    /// since the last call are sorted and merged in (O(n + k log k)); the
    /// work runs outside the lock, so puts creating keys never wait for it.
    var seriesInExportOrder: [MetricSeries] { exportOrder.series }

    /// ``seriesInExportOrder``, with the generation of the key set it
    /// holds (it changes at every insertion and removal).
    var exportOrder: (series: [MetricSeries], generation: Int) {
        let (sorted, unsorted, generation) = state.withLock { s in (s.sorted, s.unsorted, s.generation) }
        if unsorted.isEmpty { return (sorted, generation) }
        let merged = ExportOrder.merge(sorted, ExportOrder.sorted(unsorted))
        state.withLock { s in
            // Keep it only if the key set has not changed meanwhile.
            if s.generation == generation {
                s.sorted = merged
                s.unsorted = []
            }
        }
        return (merged, generation)
    }

    /// Adds `count` observations of 1 to the dropped-by-sinks counter.
    func countSinkDrops(_ count: Int) {
        guard count > 0 else { return }
        countSelf(Self.droppedKey, MetricStatistics(count: count, sum: Double(count), min: 1, max: 1))
    }

    /// Number of keys counted against the cap.
    var count: Int { state.withLock { $0.cappedCount } }

    /// The key set's generation: it changes at every insertion and removal.
    var generation: Int { state.withLock { $0.generation } }

    // MARK: Removal of idle keys

    /// Removes the keys of `series` (live ones, in export order) that are
    /// idle at `nowSecond`, except those `keeping` names (data a failed
    /// export retained; nil when there is none). Called by a flush, before
    /// it takes what is pending. Returns the removed metrics: the caller
    /// keeps them alive until a layer that borrows them (the C ABI's key
    /// index) has let them go.
    ///
    /// The idle check is racy (a put may land right after it), so the
    /// candidates' puts are stopped first (``MetricSeries/markRetired()``,
    /// then the collector waits for the puts in progress and drains them),
    /// and only then is each key checked again: one that a racing put made
    /// busy stays (its puts resume), the others leave the registry. A put
    /// that meets a marked key waits for this turn to end, then finds the
    /// key live, or re-creates it. A key is never missing from reads while
    /// it holds an observation of the window.
    func removeIdle(_ series: [MetricSeries], nowSecond: Int64,
                    keeping: ((MetricKey) -> Bool)?) -> [Metric] {
        let window = context.windowSeconds
        let idle = series.filter {
            $0.isIdle(at: nowSecond, windowSeconds: window) && !(keeping?($0.key) ?? false)
        }
        guard !idle.isEmpty else { return [] }
        let collector = context.collector
        return collector.withTurn { () -> [Metric] in
            // (Re-created keys are re-created under the turn: the registry's
            // view of these keys holds until it ends.)
            let live = state.withLock { s in idle.filter { s.byKey.holds($0) } }
            let marked = live.map { ($0, $0.markRetired()) }
            collector.finishRetiring(marked, windowSeconds: window)
            // Every log entry for these keys was written by now (inside a
            // section the wait covered): listed, each is retained by the
            // changed list, removed or not (StartedSlotLogs).
            collector.takeStartedSlotLogsHoldingTurn()
            var candidates: [MetricSeries] = []
            for series in live {
                if series.isIdle(at: nowSecond, windowSeconds: window) {
                    candidates.append(series)
                } else {
                    series.cancelRetirement()   // a put raced with the first check
                }
            }
            guard !candidates.isEmpty else { return [] }
            return state.withLock { s in
                var removed: [Metric] = []
                for series in candidates where s.byKey.remove(series) {
                    if !Self.isExempt(series.record) { s.cappedCount -= 1 }
                    s.removed[series.key] = Removed(metric: series)
                    removed.append(series)
                }
                guard !removed.isEmpty else { return [] }
                // New arrays (filter), never in-place removal: readers iterate
                // the arrays they copied out, without this lock.
                let gone = Set(removed.map { ObjectIdentifier($0.series) })
                s.sorted = s.sorted.filter { !gone.contains(ObjectIdentifier($0)) }
                s.unsorted = s.unsorted.filter { !gone.contains(ObjectIdentifier($0)) }
                s.generation += 1
                Self.sweepRemoved(&s)
                return removed
            }
        }
    }

    /// Re-creates the key of `metric`, removed as idle, with that metric
    /// (its series and cells); or returns the key's live metric if another
    /// thread re-created it first. Throws `limitReached` when the cap is
    /// full, counting `refusedPuts` refused puts (a batch's values).
    func revive(_ metric: Metric, refusedPuts: Int = 1) throws(MetricsError) -> Metric {
        let key = metric.key
        let revived: Metric? = context.collector.withTurn { () -> Metric? in
            state.withLock { s -> Metric? in
                if let live = s.byKey[key] { return live }
                guard Self.isExempt(key) || s.cappedCount < maxMetrics else { return nil }
                // Its cells are usable again before any reader lists it.
                metric.series.unmarkRetired()
                s.removed[key] = nil
                insert(metric, into: &s)
                return metric
            }
        }
        if let revived { return revived }
        throw refuse(key, puts: refusedPuts)
    }

    // MARK: Helpers

    /// The self-metrics are exempt from the cap.
    private static func isExempt(_ key: MetricKey) -> Bool { key == refusedKey || key == droppedKey }

    /// ``isExempt(_:)`` of a record's key (no key made).
    private static func isExempt(_ record: KeyRecord) -> Bool {
        record.matches(refusedKey) || record.matches(droppedKey)
    }

    /// Whether `name` is one of the metrics kplm counts itself.
    static func isSelfMetricName(_ name: String) -> Bool {
        ByteIdentity.equal(name, refusedKey.name) || ByteIdentity.equal(name, droppedKey.name)
    }

    /// Adds a created or re-created metric; listed as changed, so that
    /// flushes watch it (a key never put to goes idle too).
    private func insert(_ metric: Metric, into s: inout State) {
        context.changed.mark(metric.series)
        s.byKey.insert(metric)
        s.unsorted.append(metric.series)
        if !Self.isExempt(metric.series.record) { s.cappedCount += 1 }
        s.generation += 1
    }

    /// Drops the entries of removed metrics nothing holds any more, when
    /// their number has doubled since the last sweep (amortised O(1)).
    private static func sweepRemoved(_ s: inout State) {
        guard s.removed.count > 2 * s.removedAtLastSweep + 64 else { return }
        s.removed = s.removed.filter { $0.value.metric != nil }
        s.removedAtLastSweep = s.removed.count
    }

    /// Counts `puts` puts refused by the cap; returns the error to throw.
    private func refuse(_ key: MetricKey, puts: Int = 1) -> MetricsError {
        countSelf(Self.refusedKey, MetricStatistics(count: puts, sum: Double(puts), min: 1, max: 1))
        return MetricsError(.limitReached, "max_metrics (\(maxMetrics)) distinct keys reached; new key \(key) refused")
    }

    /// Records on one of the self-metrics (exempt from the cap: never
    /// refused), re-creating it if it was removed meanwhile.
    private func countSelf(_ key: MetricKey, _ statistics: MetricStatistics) {
        let second = ManagerClock.second(of: context.clock.now())
        while let metric = try? metric(for: key) {
            // (Never a distribution metric: see MetricsManager.setDistribution.)
            if metric.series.recordUnlessRetired(statistics, values: EmptyCollection(), second: second,
                                                 windowSeconds: context.windowSeconds) {
                context.changed.mark(metric.series)
                return
            }
        }
    }
}
