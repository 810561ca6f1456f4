extension MetricsManager {
    /// Takes every key's unexported data, merges what a failed export left,
    /// and exports it. Called with the control lock held. Returns whether
    /// the sink reported drops (counted under `KplmSinkDropped`, pending
    /// for the next export).
    @discardableResult
    static func exportPending(_ c: inout Control, registry: Registry, context: PutContext,
                                      view: OutputView, namespace: String) throws(MetricsError) -> Bool {
        // A layer that buffers puts hands them over first (setFlushHook).
        if let hook = c.flushHook { CallbackGuard.run(for: context.owner!) { hook() } }
        let all = registry.seriesInExportOrder
        context.collector.collect(all, windowSeconds: context.windowSeconds)
        // Idle keys give their place back (SPEC §10), not at the final
        // flush. Puts racing with the removal are in `all`'s series now,
        // taken below; a layer borrowing the removed metrics lets go first.
        if !context.gate.isClosing {
            let retainedKeys = c.retained
            let removed = registry.removeIdle(all, nowSecond: ManagerClock.second(of: context.clock.now()),
                                              keeping: { retainedKeys[$0] != nil })
            if !removed.isEmpty, let observer = c.removalObserver { observer(removed) }
        }
        // In export order already: no sort. Data a failed export left
        // (retained) is merged into its key's new data.
        var retained = c.retained
        c.retained = [:]
        var batch: [(series: MetricSeries, pending: PendingExport)] = []
        for series in all {
            var pending = series.takePending()
            if !retained.isEmpty, let old = retained.removeValue(forKey: series.key) {
                if pending == nil { pending = old } else { pending!.merge(old) }
            }
            if let pending { batch.append((series, pending)) }
        }
        guard !batch.isEmpty else { return false }
        let now = context.clock.now()
        let wall = ManagerClock.wallNow()
        let sink = c.sink
        let batchExporter = view.showsKeysAsRecorded ? c.batchExporter : nil
        do {
            try CallbackGuard.run(for: context.owner!) {
                if let direct = batchExporter {
                    try direct.export(batch, now: now, wall: wall)
                } else if view.showsKeysAsRecorded {
                    try sink.export(batch.map { series, pending in
                        Self.exportedSnapshot(series.key.name, series.dimensions, pending, now: now, wall: wall,
                                      namespace: namespace)
                    })
                } else {
                    // KPL output: each key's data merged into its lines of the tree.
                    try sink.export(view.lines(batch.map { ($0.series.key, $0.pending) }, merge: { $0.merge($1) })
                        .map { line, pending in
                            Self.exportedSnapshot(line.name, line.dimensions, pending, now: now, wall: wall,
                                          namespace: namespace)
                        })
                }
            }
        } catch {
            // Drops of a failed export are not counted: its data comes back.
            _ = c.dropCounter?.takeDroppedCount()
            c.retained = Dictionary(uniqueKeysWithValues: batch.map { ($0.series.key, $0.pending) })
            throw MetricsError(.sinkFailed, "the sink failed to export \(batch.count) snapshots: \(error)")
        }
        guard let dropped = c.dropCounter?.takeDroppedCount(), dropped > 0 else { return false }
        registry.countSinkDrops(dropped)
        return true
    }

    /// The line a sink is handed for `pending` data of a key (or a KPL line)
    /// exported at manager time `now`, Unix time `wall`.
    static func exportedSnapshot(_ name: String, _ dimensions: [MetricDimension], _ pending: PendingExport,
                         now: Double, wall: Double, namespace: String) -> MetricSnapshot {
        let windowEnd = Double(pending.lastSecond + 1)
        let statistics = pending.statistics
        return MetricSnapshot(name: name, count: statistics.count, sum: statistics.sum,
                              min: statistics.min, max: statistics.max, dimensions: dimensions,
                              windowStart: Double(pending.firstSecond), windowEnd: windowEnd,
                              timestampUnix: wall - (now - windowEnd), namespace: namespace)
    }
}

/// A sink that takes a flush's batch as series and pending data directly,
/// skipping ``MetricSnapshot`` values, when keys are shown as recorded
/// (``OutputView/showsKeysAsRecorded``). The C ABI's callback sink is one:
/// it lays the batch out as C structs borrowing each series' strings.
/// Called like ``MetricsSink/export(_:)`` (with the control lock held,
/// never concurrently with open, export or close).
package protocol PendingBatchExporting {
    /// Exports `batch` (in export order); `now` is the manager clock's
    /// reading and `wall` the Unix time at that reading.
    func export(_ batch: [(series: MetricSeries, pending: PendingExport)], now: Double, wall: Double) throws
}
