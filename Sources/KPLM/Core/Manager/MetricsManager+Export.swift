extension MetricsManager {
    /// Takes every key's unexported data, merges what a failed export left,
    /// and exports it. Called with the control lock held. Returns whether
    /// the sink reported drops (counted under `KplmSinkDropped`, pending
    /// for the next export). An async sink awaits the export on
    /// `isolation` (an async flush's caller; nil: on the sink's thread).
    @discardableResult
    static func exportPending(_ c: inout Control, registry: Registry, context: PutContext,
                              view: OutputView, namespace: String,
                              isolation: (any Actor)? = nil) throws(MetricsError) -> Bool {
        // A layer that buffers puts hands them over first (setFlushHook).
        if let hook = c.flushHook { CallbackGuard.run(for: context.owner!) { hook() } }
        let batch = takeBatch(&c, registry: registry, context: context)
        guard !batch.isEmpty else { return false }
        let now = context.clock.now()
        let wall = ManagerClock.wallNow()
        let sink = c.sink, asyncSink = c.asyncSink
        let batchExporter = view.showsKeysAsRecorded ? c.batchExporter : nil
        let export = { (snapshots: [MetricSnapshot]) throws in
            if let asyncSink { try asyncSink.export(snapshots, awaitingOn: isolation) } else { try sink.export(snapshots) }
        }
        do {
            try CallbackGuard.run(for: context.owner!) {
                if let direct = batchExporter {
                    try direct.export(batch, now: now, wall: wall, withDistributions: context.hasDistributionMetrics)
                } else if view.showsKeysAsRecorded {
                    try export(batch.map { series, pending in
                        Self.exportedSnapshot(series.key.name, series.dimensions, pending, now: now, wall: wall,
                                              namespace: namespace, distribution: series.takenDistribution)
                    })
                } else {
                    // KPL output: each key's data (and distribution) merged into its lines of the tree.
                    let items = batch.map { ($0.series.key, ($0.pending, $0.series.takenDistribution)) }
                    try export(view.lines(items, merge: { line, key in
                        line.0.merge(key.0)
                        if let theirs = key.1 {
                            // Keys of one name share its accuracy; a mismatch cannot happen.
                            if line.1 == nil { line.1 = theirs }
                            else if line.1!.relativeAccuracy == theirs.relativeAccuracy { line.1!.merge(theirs) }
                        }
                    }).map { line, data in
                        Self.exportedSnapshot(line.name, line.dimensions, data.0, now: now, wall: wall,
                                              namespace: namespace, distribution: data.1)
                    })
                }
            }
            // Exported: the distributions taken with the data go too.
            if context.hasDistributionMetrics { for item in batch { item.series.clearTakenDistribution() } }
        } catch {
            // Drops of a failed export are not counted: its data comes back.
            _ = c.dropCounter?.takeDroppedCount()
            c.retained = Dictionary(uniqueKeysWithValues: batch.map { ($0.series.key, $0) })
            throw MetricsError(.sinkFailed, "the sink failed to export \(batch.count) snapshots: \(error)")
        }
        guard let dropped = c.dropCounter?.takeDroppedCount(), dropped > 0 else { return false }
        registry.countSinkDrops(dropped)
        return true
    }

    /// What a flush exports, in export order: the unexported data of every
    /// key changed since the last flush (``ChangedSeries``; at close's final
    /// flush, of every key), merged with what a failed export left. Also
    /// removes the keys that went idle (SPEC §10, ``IdleWatch``). Costs what
    /// changed, not every key.
    private static func takeBatch(_ c: inout Control, registry: Registry, context: PutContext)
        -> [(series: MetricSeries, pending: PendingExport)] {
        let changed = context.changed.take()
        var candidates: [MetricSeries]
        if context.gate.isClosing {
            candidates = registry.seriesInExportOrder   // the final flush reads every key
            context.collector.collect(candidates, windowSeconds: context.windowSeconds)
        } else {
            for skipped in context.collector.collect(changed, windowSeconds: context.windowSeconds) {
                context.changed.mark(skipped)
            }
            candidates = changed
            // Idle keys give their place back. Puts racing with a removal
            // recorded into the removed series: they are candidates too. A
            // layer borrowing the removed metrics lets go first.
            let idleBefore = ManagerClock.second(of: context.clock.now()) - context.windowSeconds
            let due = c.idleWatch.due(atOrBefore: idleBefore)
            if !due.isEmpty {
                let retained = c.retained
                let removed = registry.removeIdle(due, nowSecond: idleBefore + context.windowSeconds,
                                                  keeping: { retained[$0] != nil })
                if !removed.isEmpty, let observer = c.removalObserver { observer(removed) }
                candidates += removed.map(\.series)
                // Kept (data a failed export left, a bucket ahead of the
                // clock): looked at again by the next flush.
                c.idleWatch.note(due.filter { !$0.isRemoved }, at: idleBefore)
            }
        }
        c.flushCount &+= 1
        let flush = c.flushCount
        var retained = c.retained
        c.retained = [:]
        var batch: [(series: MetricSeries, pending: PendingExport)] = []
        let nowSecond = ManagerClock.second(of: context.clock.now())
        for series in candidates where series.batchedByFlush != flush {
            series.batchedByFlush = flush
            var pending = series.takePending()
            // A changed key may go idle a window after its newest observation.
            c.idleWatch.note(series, at: Swift.min(pending?.lastSecond ?? nowSecond, nowSecond))
            if !retained.isEmpty, let old = retained.removeValue(forKey: series.key) {
                if pending == nil { pending = old.pending } else { pending!.merge(old.pending) }
            }
            if let pending { batch.append((series, pending)) }
        }
        for (_, old) in retained { batch.append(old) }   // keys with nothing new
        return inExportOrder(batch, registry: registry)
    }

    /// `batch` in export order: sorted directly when small next to the key
    /// set, else picked out of the registry's ordered keys (O(n), no
    /// comparison), with keys no longer live sorted and merged in.
    private static func inExportOrder(_ batch: [(series: MetricSeries, pending: PendingExport)], registry: Registry)
        -> [(series: MetricSeries, pending: PendingExport)] {
        if batch.count < 64 || batch.count * 16 < registry.count {
            return batch.sorted { ExportOrder.precedes($0.series, $1.series) }
        }
        for (i, entry) in batch.enumerated() { entry.series.batchIndex = i }
        var ordered: [(series: MetricSeries, pending: PendingExport)] = []
        ordered.reserveCapacity(batch.count)
        for series in registry.seriesInExportOrder where series.batchIndex >= 0 {
            ordered.append(batch[series.batchIndex])
            series.batchIndex = -1
        }
        // Keys no longer live (removed with data a racing put left).
        let rest = batch.filter { $0.series.batchIndex >= 0 }.sorted { ExportOrder.precedes($0.series, $1.series) }
        for entry in rest { entry.series.batchIndex = -1 }
        return ExportOrder.merge(ordered, rest, by: \.series)
    }

    /// The line a sink is handed for `pending` data of a key (or a KPL line)
    /// exported at manager time `now`, Unix time `wall`.
    static func exportedSnapshot(_ name: String, _ dimensions: [MetricDimension], _ pending: PendingExport,
                                 now: Double, wall: Double, namespace: String,
                                 distribution: DistributionSketch?) -> MetricSnapshot {
        let windowEnd = Double(pending.lastSecond + 1)
        let statistics = pending.statistics
        return MetricSnapshot(name: name, count: statistics.count, sum: statistics.sum,
                              min: statistics.min, max: statistics.max, dimensions: dimensions,
                              windowStart: Double(pending.firstSecond), windowEnd: windowEnd,
                              timestampUnix: wall - (now - windowEnd), namespace: namespace,
                              distribution: distribution)
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
    /// reading and `wall` the Unix time at that reading. Without
    /// `withDistributions` no pending data carries a distribution (the
    /// manager has no distribution metric): nothing needs looking for one.
    func export(_ batch: [(series: MetricSeries, pending: PendingExport)], now: Double, wall: Double,
                withDistributions: Bool) throws
}
