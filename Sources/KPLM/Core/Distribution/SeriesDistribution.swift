/// The distribution of one key of a distribution metric (SPEC §6): a
/// sketch per second of the rolling window, and one since the key was
/// created. Kept in step with the series' statistics buckets: the same
/// observations, the same seconds, the same eviction rules, so a quantile
/// over the last N seconds summarises exactly what the statistics over
/// those seconds count.
///
/// Part of the series state, guarded by the series lock (a class: a plain
/// metric's state holds one word for it).
final class SeriesDistribution: @unchecked Sendable {
    /// One sketch per second, oldest first.
    private(set) var seconds: [(second: Int64, sketch: DistributionSketch)] = []
    /// Every observation since the key was created (or re-created).
    private(set) var total: DistributionSketch
    /// Observations not yet taken by a flush (as the series' pending
    /// statistics), and those taken by flushes whose export has not yet
    /// succeeded (as a failed export's retained statistics).
    private var pending: DistributionSketch?
    private(set) var taken: DistributionSketch?

    /// The metric's accuracy. Immutable: read without the lock (a put's
    /// general path makes its bucket mapping from it).
    let relativeAccuracy: Double

    init(relativeAccuracy: Double) {
        self.relativeAccuracy = relativeAccuracy
        total = DistributionSketch(validAccuracy: relativeAccuracy)
    }

    /// Adds observations that fell in `second`, as ``MetricSeries`` adds
    /// their statistics: into the newest second or a new one; a late one
    /// into its second while that is inside the window, else only into the
    /// total.
    func add(_ values: some Collection<Double>, second: Int64, windowSeconds: Int64) {
        guard !values.isEmpty else { return }
        add(second: second, windowSeconds: windowSeconds) { for v in values { $0.add(v) } }
    }

    /// Adds a writer cell slot's counts that fell in `second` (see
    /// ``add(_:second:windowSeconds:)``), with their exact extremes.
    func add(_ buckets: UnsafePointer<CellBuckets>, min: Double, max: Double, second: Int64,
                      windowSeconds: Int64) {
        add(second: second, windowSeconds: windowSeconds) { $0.add(buckets, min: min, max: max) }
    }

    /// Moves the pending sketch to the taken one (see ``taken``).
    func takePending() {
        guard let moving = pending else { return }
        pending = nil
        if taken == nil { taken = moving } else { taken!.merge(moving) }
    }

    /// The taken sketch was exported.
    func clearTaken() { taken = nil }

    /// Applies `observe` to the pending sketch, the total and the sketch of
    /// `second`.
    private func add(second: Int64, windowSeconds: Int64, _ observe: (inout DistributionSketch) -> Void) {
        if pending == nil { pending = DistributionSketch(validAccuracy: relativeAccuracy) }
        observe(&pending!)
        observe(&total)
        guard let last = seconds.indices.last else {
            seconds.append((second, fresh(observe)))
            return
        }
        if seconds[last].second == second {
            observe(&seconds[last].sketch)
        } else if seconds[last].second < second {
            evict(olderThan: second - windowSeconds)
            seconds.append((second, fresh(observe)))
        } else if seconds[last].second - second < windowSeconds {
            var i = last
            while i >= 0 && seconds[i].second > second { i -= 1 }
            if i >= 0 && seconds[i].second == second {
                observe(&seconds[i].sketch)
            } else {
                seconds.insert((second, fresh(observe)), at: i + 1)
            }
        }
    }

    /// The merged sketch of the seconds in (nowSecond − lastSeconds,
    /// nowSecond] (after evicting those out of the window), or of
    /// everything since creation when `lastSeconds` is nil.
    func sketch(at nowSecond: Int64, windowSeconds: Int64, lastSeconds: Int64?) -> DistributionSketch {
        guard let lastSeconds else { return total }
        evict(olderThan: nowSecond - windowSeconds)
        var merged = DistributionSketch(validAccuracy: relativeAccuracy)
        for entry in seconds where entry.second > nowSecond - lastSeconds && entry.second <= nowSecond {
            merged.merge(entry.sketch)
        }
        return merged
    }

    /// Starts the cumulative sketch again (a key re-created after removal).
    func resetTotal() { total = DistributionSketch(validAccuracy: relativeAccuracy) }

    /// Drops seconds <= `limit` (they left the window).
    func evict(olderThan limit: Int64) {
        var dead = 0
        while dead < seconds.count && seconds[dead].second <= limit { dead += 1 }
        if dead > 0 { seconds.removeFirst(dead) }
    }

    private func fresh(_ observe: (inout DistributionSketch) -> Void) -> DistributionSketch {
        var s = DistributionSketch(validAccuracy: relativeAccuracy)
        observe(&s)
        return s
    }
}
