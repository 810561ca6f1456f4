/// Every metric key a manager has seen, capped at `maxMetrics` distinct keys.
///
/// Keys are never removed while the manager lives, so a ``Metric`` handle
/// stays valid until the manager is released.
final class Registry: Sendable {
    /// Name of the metric counting puts refused by the cap (no dimensions).
    static let refusedKey = MetricKey(name: refusedMetricName)
    /// Name of the metric counting what sinks dropped (no dimensions).
    static let droppedKey = MetricKey(name: sinkDroppedMetricName)

    private struct State {
        var byKey: [MetricKey: Metric] = [:]
        /// Every series, in creation order; copied (O(1), copy-on-write) by
        /// readers so they never hold this lock while reading a series.
        var all: [MetricSeries] = []
        /// Keys counted against the cap (the refused-counter key is not).
        var cappedCount = 0
        /// `all` in export order, recomputed by a reader after keys were
        /// added (the key set is mostly stable: flushes rarely sort).
        var sorted: [MetricSeries] = []
        var sortedCount = 0
    }

    private let state = Locked(State())
    private let maxMetrics: Int
    private let context: PutContext

    init(maxMetrics: Int, context: PutContext) {
        self.maxMetrics = maxMetrics
        self.context = context
    }

    /// The metric for `key`, created if new. Throws `limitReached` for a new
    /// key beyond the cap, after counting the refusal.
    func metric(for key: MetricKey) throws(MetricsError) -> Metric {
        let found: Metric? = state.withLock { s in
            if let existing = s.byKey[key] { return existing }
            // The self-metrics are exempt from the cap.
            let isExempt = key == Self.refusedKey || key == Self.droppedKey
            guard isExempt || s.cappedCount < maxMetrics else { return nil }
            let created = Metric(key: key, context: context)
            s.byKey[key] = created
            s.all.append(created.series)
            if !isExempt { s.cappedCount += 1 }
            return created
        }
        if let found { return found }
        // The refused counter is exempt from the cap, so this cannot recurse.
        if let refused = try? metric(for: Self.refusedKey) {
            refused.series.record(1, second: ManagerClock.second(of: context.clock.now()),
                                  windowSeconds: context.windowSeconds)
        }
        throw MetricsError(.limitReached, "max_metrics (\(maxMetrics)) distinct keys reached; new key \(key) refused")
    }

    /// The metric of `key` if it exists (never creates one).
    func existing(_ key: MetricKey) -> Metric? {
        state.withLock { $0.byKey[key] }
    }

    /// Every series, in creation order.
    var allSeries: [MetricSeries] { state.withLock { $0.all } }

    /// Every series in export order (see ``ExportOrder``). Sorted again only
    /// when keys were added since the last call; the sort runs outside the
    /// lock, so puts creating keys never wait for it.
    var seriesInExportOrder: [MetricSeries] {
        let (cached, all) = state.withLock { s -> ([MetricSeries]?, [MetricSeries]) in
            s.sortedCount == s.all.count ? (s.sorted, s.all) : (nil, s.all)
        }
        if let cached { return cached }
        let sorted = all.sorted { ExportOrder.precedes($0.key.name, $0.key.dimensions, $1.key.name, $1.key.dimensions) }
        state.withLock { s in
            // Keep the newest: another reader may have sorted more keys.
            if all.count > s.sortedCount {
                s.sorted = sorted
                s.sortedCount = all.count
            }
        }
        return sorted
    }

    /// Adds `count` observations of 1 to the dropped-by-sinks counter.
    func countSinkDrops(_ count: Int) {
        guard count > 0, let dropped = try? metric(for: Self.droppedKey) else { return }
        dropped.series.record(MetricStatistics(count: count, sum: Double(count), min: 1, max: 1),
                              second: ManagerClock.second(of: context.clock.now()),
                              windowSeconds: context.windowSeconds)
    }

    /// Number of keys counted against the cap.
    var count: Int { state.withLock { $0.cappedCount } }
}
