/// Unexported observations of one key: their statistics and the first and
/// last second they fell in.
struct PendingExport: Sendable {
    var statistics: MetricStatistics
    var firstSecond: Int64
    var lastSecond: Int64

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
/// window, plus everything not yet exported.
///
/// Both are updated under one lock in the same critical section, so a put is
/// either wholly visible to a reader or not at all, and exports stay exact
/// for any double values (nothing is derived by subtraction).
final class MetricSeries: Sendable {
    let key: MetricKey

    private struct State {
        /// Buckets sorted by second, oldest first. Buckets older than the
        /// window are dropped when a newer second arrives or on a read.
        var buckets: [(second: Int64, statistics: MetricStatistics)] = []
        /// Observations not yet handed to a flush.
        var pending: PendingExport? = nil
    }

    private let state = Locked(State())

    init(key: MetricKey) {
        self.key = key
    }

    /// Records one observation that happened during `second`.
    func record(_ value: Double, second: Int64, windowSeconds: Int64) {
        state.withLock { s in
            if s.pending == nil {
                s.pending = PendingExport(statistics: .empty, firstSecond: second, lastSecond: second)
            }
            s.pending!.statistics.add(value)
            if second < s.pending!.firstSecond { s.pending!.firstSecond = second }
            if second > s.pending!.lastSecond { s.pending!.lastSecond = second }

            // Common case: same second as the newest bucket, or a new second.
            if let last = s.buckets.indices.last {
                if s.buckets[last].second == second {
                    s.buckets[last].statistics.add(value)
                    return
                }
                if s.buckets[last].second < second {
                    Self.evict(&s.buckets, olderThan: second - windowSeconds)
                    s.buckets.append((second, Self.single(value)))
                    return
                }
                // A late observation (its second is older than the newest
                // bucket): merge into its bucket, or insert one in place while
                // it is still inside the window. Older than that, it only
                // counts towards the next export.
                let newest = s.buckets[last].second
                guard newest - second < windowSeconds else { return }
                var i = last
                while i >= 0 && s.buckets[i].second > second { i -= 1 }
                if i >= 0 && s.buckets[i].second == second {
                    s.buckets[i].statistics.add(value)
                } else {
                    s.buckets.insert((second, Self.single(value)), at: i + 1)
                }
            } else {
                s.buckets.append((second, Self.single(value)))
            }
        }
    }

    /// Takes everything not yet exported, leaving nothing pending.
    func takePending() -> PendingExport? {
        state.withLock { s in
            let taken = s.pending
            s.pending = nil
            return taken
        }
    }

    /// Statistics over the buckets live at `nowSecond`: those whose second is
    /// within the last `windowSeconds` seconds, the current one included.
    ///
    /// A bucket newer than `nowSecond` belongs to a put that read the clock
    /// after this reader did (or to an injected clock that went back): it is
    /// left for a later reading, so a reading never spans more than the window.
    func window(at nowSecond: Int64, windowSeconds: Int64) -> WindowReading? {
        state.withLock { s in
            Self.evict(&s.buckets, olderThan: nowSecond - windowSeconds)
            var merged = MetricStatistics.empty
            var oldest = Int64.max, newest = Int64.min
            for bucket in s.buckets {
                if bucket.second > nowSecond { break }   // sorted: the rest are newer
                merged.merge(bucket.statistics)
                oldest = Swift.min(oldest, bucket.second)
                newest = bucket.second
            }
            guard merged.count > 0 else { return nil }
            return WindowReading(statistics: merged, oldestSecond: oldest, newestSecond: newest)
        }
    }

    private static func single(_ value: Double) -> MetricStatistics {
        MetricStatistics(count: 1, sum: value, min: value, max: value)
    }

    /// Drops buckets whose second is <= `limit` (they left the window).
    private static func evict(_ buckets: inout [(second: Int64, statistics: MetricStatistics)], olderThan limit: Int64) {
        var dead = 0
        while dead < buckets.count && buckets[dead].second <= limit { dead += 1 }
        if dead > 0 { buckets.removeFirst(dead) }
    }
}
