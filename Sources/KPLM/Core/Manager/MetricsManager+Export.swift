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
        // Keys whose slots puts started in their common case join the
        // changed list first (StartedSlotLogs): for the hook's check below
        // and for the collection.
        context.collector.takeStartedSlotLogs()
        // A layer that buffers puts hands them over first (setFlushHook).
        // Its puts must not run in a signal handler that interrupted a put
        // of this thread (found below by the collection, after the hook):
        // looked for first, over the keys where such a put can be (this
        // flush holds the control lock: the list's series stay alive).
        if let hook = c.flushHook {
            guard !context.changed.withListed({ context.collector.isOwnSectionOpen($0) }) else {
                throw reentryError("flush")
            }
            CallbackGuard.run(for: context.owner!) { hook() }
        }
        // (`kept`: the batch's series that no registry holds, alive until
        // the export is over, or a failed one's data kept.)
        let (batch, kept) = try takeBatch(&c, registry: registry, context: context)
        defer { withExtendedLifetime(kept) {} }
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
                if sink is NullSink {
                    // The default sink keeps nothing: nothing is made for
                    // it (a flush of 100,000 keys made as many snapshots,
                    // each key's strings copied, to drop them).
                } else if let direct = batchExporter {
                    try direct.export(batch, now: now, wall: wall, withDistributions: context.hasDistributionMetrics)
                } else if view.showsKeysAsRecorded {
                    try export(batch.map { entry in
                        let series = entry.series.takeUnretainedValue(), pending = entry.pending
                        let key = series.key   // (made from the series' record)
                        return Self.exportedSnapshot(key.name, key.dimensions, pending, now: now, wall: wall,
                                                     namespace: namespace, distribution: series.takenDistribution)
                    })
                } else {
                    // KPL output: each key's data (and distribution) merged into its lines of the tree.
                    let items = batch.map { entry in
                        entry.series._withUnsafeGuaranteedRef { ($0.key, (entry.pending, $0.takenDistribution)) }
                    }
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
            if context.hasDistributionMetrics {
                for item in batch { item.series._withUnsafeGuaranteedRef { $0.clearTakenDistribution() } }
            }
        } catch {
            // Drops of a failed export are not counted: its data comes back.
            _ = c.dropCounter?.takeDroppedCount()
            c.retained = Dictionary(uniqueKeysWithValues: batch.map { entry in
                let series = entry.series.takeUnretainedValue()
                return (series.key, (series, entry.pending))
            })
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
    /// changed, not every key. Throws `invalidState`, taking nothing, in a
    /// signal handler that interrupted a put of this thread.
    private static func takeBatch(_ c: inout Control, registry: Registry, context: PutContext)
        throws(MetricsError) -> (batch: [BatchEntry], kept: [MetricSeries]) {
        // One reference to each, owned: moved into the batch, or released.
        var candidates: [Unmanaged<MetricSeries>]
        c.flushCount &+= 1
        let flush = c.flushCount
        let nowSecond = ManagerClock.second(of: context.clock.now())
        // Made once the candidates are known (see BatchBuilder).
        var batch: BatchBuilder
        // Candidates whose entry the collection made as it drained them
        // (issue #13: taken while their lines are in the cache, and not
        // read again below), bit i for candidate i.
        var inBatch: [UInt64] = []
        if context.gate.isClosing {
            _ = context.changed.take()
            let all = registry.seriesInExportOrder   // the final flush reads every key
            context.collector.collect(all, windowSeconds: context.windowSeconds)
            candidates = all.map { Unmanaged.passRetained($0) }
            batch = BatchBuilder(&c, registry: registry, listed: candidates.count, more: 0)
        } else {
            // (The collection clears each mark: see ChangedSeries. It also
            // finds a put of this thread that a signal handler interrupted,
            // which only a listed key can have: see ChangedSeries.listed.)
            candidates = context.changed.takeKeepingMarks()
            // Listed in the order puts changed them; visited (collected,
            // taken, batched) in address order, their lines nearly in
            // sequence (see AddressOrder). The batch is put in export order
            // by rank (inExportOrder).
            AddressOrder.sort(&candidates)
            // Keys due for the idle check are taken after it (below): the
            // check must see the data this flush is about to export as
            // pending (a key is kept until its last data is exported:
            // testAKeyChangedAndDueIsKeptByTheFlushExportingItsData), and a
            // removal drains their cells again.
            let idleBefore = nowSecond - context.windowSeconds
            let due = c.idleWatch.due(atOrBefore: idleBefore)
            let dueIDs = Set(due.lazy.map { ObjectIdentifier($0) })
            batch = BatchBuilder(&c, registry: registry, listed: candidates.count, more: due.count)
            inBatch = Array(repeating: 0, count: (candidates.count + 63) / 64)
            let stoppedAt = candidates.withUnsafeBufferPointer { taken in
                taken.withMemoryRebound(to: MetricSeries.self) { listed in
                    context.collector.collectChanged(listed, windowSeconds: context.windowSeconds) { i in
                        let reference = taken[i]
                        let isDue = !dueIDs.isEmpty && reference._withUnsafeGuaranteedRef {
                            dueIDs.contains(ObjectIdentifier($0))
                        }
                        // (A key listed twice is taken once: the second
                        // time, and with nothing pending, it is left to
                        // the loop below, which releases it.)
                        guard !isDue, let taken = reference._withUnsafeGuaranteedRef({
                            take($0, flush: flush, nowSecond: nowSecond, watch: &c.idleWatch)
                        }), batch.add(reference, taken.pending, isRemoved: taken.isRemoved) else { return }
                        inBatch[i >> 6] |= 1 << UInt64(i & 63)
                    }
                }
            }
            if let stoppedAt {
                // (Nothing was taken: the collection calls back only when it
                // did not stop.)
                batch.giveBack(&c)
                c.idleWatch.note(due, at: idleBefore)   // looked at again by the next flush
                context.changed.giveBack(candidates, clearedBefore: stoppedAt)
                throw reentryError("flush")
            }
            // Idle keys give their place back. Puts racing with a removal
            // recorded into the removed series: they are candidates too. A
            // layer borrowing the removed metrics lets go first.
            if !due.isEmpty {
                // (Keys whose failed export's data is still to be merged
                // stay; looked up only if there are any: a key is made.)
                let retained = batch.retained
                let removed = registry.removeIdle(due, nowSecond: idleBefore + context.windowSeconds,
                                                  keeping: retained.isEmpty ? nil : { retained[$0] != nil })
                if !removed.isEmpty, let observer = c.removalObserver { observer(removed) }
                for metric in removed { metric.series.exportRank = -1 }   // no longer in the order
                candidates += removed.map { Unmanaged.passRetained($0.series) }
                // Kept (data a failed export left, a bucket ahead of the
                // clock): looked at again by the next flush.
                c.idleWatch.note(due.filter { !$0.isRemoved }, at: idleBefore)
            }
        }
        // The candidates the collection did not take: taken now.
        candidates.withUnsafeBufferPointer { taken in taken.withMemoryRebound(to: MetricSeries.self) { candidates in
            for i in candidates.indices where !Self.isSet(i, in: inBatch) {
                let ahead = i &+ 3 &* SeriesPrefetch.distance
                if ahead < candidates.count && !Self.isSet(ahead, in: inBatch) {
                    SeriesPrefetch.prefetchObject(UnsafeRawPointer(candidates.unretained(at: ahead).toOpaque()))
                }
                let reference = taken[i]   // moved into the entry, or released
                guard let taken = reference._withUnsafeGuaranteedRef({
                    take($0, flush: flush, nowSecond: nowSecond, watch: &c.idleWatch)
                }), batch.add(reference, taken.pending, isRemoved: taken.isRemoved) else {
                    reference.release()
                    continue
                }
            }
        } }
        return batch.finish(rankCount: c.rankedCount)
    }

    /// Whether bit `i` of `bits` is set (false past their end).
    @inline(__always)
    private static func isSet(_ i: Int, in bits: [UInt64]) -> Bool {
        i < bits.count &* 64 && bits[i >> 6] & (1 << UInt64(i & 63)) != 0
    }

    /// A flush's batch as it is built: its entries in place (moved, never
    /// copied, into the array it returns), with each entry's rank when the
    /// batch is put in export order by rank; and the data a failed export
    /// left, merged in.
    ///
    /// An entry's series is unretained. A candidate's reference is released
    /// as its entry is made, while the series' first line is in the cache
    /// (issue #13: the batch released every series after the export, a
    /// miss a key, 14% of a flush of every key at 100,000 keys created in
    /// a random order): its registry holds the series until this flush's
    /// export is over, since only a flush removes keys and this one holds
    /// the control lock. The series no registry holds (a key removed, by
    /// this flush or since its last data came) and those of what a failed
    /// export left are ``kept`` instead, until the export is over.
    /// (A struct the collection's callback mutates: a closure's captured
    /// variables are checked for exclusive access at compile time, a local
    /// function's at run time, a call into the runtime at every access.)
    private struct BatchBuilder {
        private let entries: UnsafeMutablePointer<BatchEntry>
        private let capacity: Int
        private var count = 0
        private var ranks: [Int] = []
        private let byRank: Bool
        /// The series of entries whose reference was kept (see above).
        private var kept: [MetricSeries] = []
        /// What a failed export left, by key, until merged.
        private(set) var retained: [MetricKey: (series: MetricSeries, pending: PendingExport)]

        /// Takes what a failed export left, and ranks the keys if the batch
        /// is large next to the key set (`listed` candidates: a pass over
        /// every key, only after keys were added or removed). The batch is
        /// put in export order by the keys' ranks, read where each series
        /// is read anyway (no comparison of keys); a small one uses ranks
        /// only if they are still those of the key set, else compares keys.
        /// Room for the `listed` candidates, `more` (the keys an idle
        /// removal may add) and what a failed export left.
        init(_ c: inout Control, registry: Registry, listed: Int, more: Int) {
            retained = c.retained
            c.retained = [:]
            let upTo = listed + retained.count
            if upTo >= 64 && upTo * 16 >= registry.count {
                rankKeys(&c, registry: registry)
                byRank = true
            } else {
                byRank = upTo > 1 && registry.generation == c.rankedGeneration
            }
            capacity = upTo + more
            entries = .allocate(capacity: capacity)
            if byRank { ranks.reserveCapacity(capacity) }
        }

        /// Adds `reference`'s entry (taking the reference over: released,
        /// or kept if the key `isRemoved`) if it has data pending (`taken`,
        /// merged with what a failed export left). Returns false, keeping
        /// the reference, if it has none.
        mutating func add(_ reference: Unmanaged<MetricSeries>, _ taken: PendingExport?, isRemoved: Bool) -> Bool {
            // (Borrowed from the reference: no retain and release a key.)
            let entry = reference._withUnsafeGuaranteedRef { series -> (PendingExport, rank: Int, KeyRecord)? in
                var pending = taken
                if !retained.isEmpty, let old = retained.removeValue(forKey: series.key) {
                    if pending == nil { pending = old.pending } else { pending!.merge(old.pending) }
                }
                return pending.map { ($0, series.exportRank, series.record) }
            }
            guard let (pending, rank, record) = entry else { return false }
            precondition(count < capacity)
            (entries + count).initialize(to: (reference, pending, record))
            count += 1
            if byRank { ranks.append(rank) }
            if isRemoved { kept.append(reference.takeRetainedValue()) } else { reference.release() }
            return true
        }

        /// Nothing was added (a refused flush): what a failed export left
        /// goes back, and the entries' room is freed.
        consuming func giveBack(_ c: inout Control) {
            c.retained = retained
            entries.deallocate()
        }

        /// The batch, in export order: the entries added, then the keys a
        /// failed export left with nothing new; and the series kept (see
        /// above). Frees the entries' room.
        consuming func finish(rankCount: Int) -> (batch: [BatchEntry], kept: [MetricSeries]) {
            defer { entries.deallocate() }   // (every entry moved out by then)
            for (_, old) in retained {
                (entries + count).initialize(to: (Unmanaged.passUnretained(old.series), old.pending, old.series.record))
                count += 1
                if byRank { ranks.append(old.series.exportRank) }
                kept.append(old.series)
            }
            // (Never Array(unsafeUninitializedCapacity: 0): it stores the
            // count into the shared empty-array storage, a race with every
            // reader.)
            guard count > 0 else { return ([], kept) }
            guard byRank else {
                let batch = Array(unsafeUninitializedCapacity: count) { [entries, count] buffer, initialized in
                    buffer.baseAddress!.moveInitialize(from: entries, count: count)
                    initialized = count
                }
                return (batch.sorted { Self.precedes($0, $1) }, kept)
            }
            return (inExportOrder(moving: entries, count: count, ranks: ranks, rankCount: rankCount), kept)
        }

        /// Whether `a`'s key sorts before `b`'s (``ExportOrder``).
        @inline(__always)
        static func precedes(_ a: BatchEntry, _ b: BatchEntry) -> Bool {
            a.series._withUnsafeGuaranteedRef { x in b.series._withUnsafeGuaranteedRef { ExportOrder.precedes(x, $0) } }
        }
    }

    /// Takes `series`' pending data for flush number `flush` (nil inside:
    /// nothing pending) and says whether the key is removed, unless this
    /// flush took it already (a key listed twice): nil then. A changed key
    /// may go idle a window after its newest observation: it is noted in
    /// the idle watch (unless removed: the watch would keep it, memory and
    /// all, for another window).
    private static func take(_ series: MetricSeries, flush: UInt64, nowSecond: Int64,
                             watch: inout IdleWatch) -> (pending: PendingExport?, isRemoved: Bool)? {
        guard series.batchedByFlush != flush else { return nil }
        series.batchedByFlush = flush
        let (pending, isRemoved) = series.takePending()
        if !isRemoved { watch.note(series, at: Swift.min(pending?.lastSecond ?? nowSecond, nowSecond)) }
        return (pending, isRemoved)
    }

    /// An entry of a flush's batch (its series unretained: see ``BatchBuilder``).
    private typealias BatchEntry = PendingBatchEntry

    /// Sets every live series' ``MetricSeries/exportRank`` to its place in
    /// the registry's export order, unless the key set has not changed
    /// since the last time (a pass over every key, only after keys were
    /// added or removed). Removed series are set to -1 by the flush that
    /// removes them; a series created since reads -1 too.
    private static func rankKeys(_ c: inout Control, registry: Registry) {
        let (order, generation) = registry.exportOrder
        guard generation != c.rankedGeneration else { return }
        order.withUnsafeBufferPointer { series in
            for i in series.indices where series[i].exportRank != i { series[i].exportRank = i }
        }
        c.rankedGeneration = generation
        c.rankedCount = order.count
    }

    /// The `count` entries at `entries` in export order, moved out of
    /// there, `ranks` holding each entry's rank: entries ordered by rank
    /// (placed in a table of every rank when they are many next to the
    /// keys: O(keys), sequential; else their ranks sorted), then those
    /// without one (keys created or removed since the ranking) sorted by
    /// comparing keys and merged in.
    private static func inExportOrder(moving entries: UnsafeMutablePointer<BatchEntry>, count: Int, ranks: [Int],
                                      rankCount: Int) -> [BatchEntry] {
        var rest: [BatchEntry] = []
        var order: [Int32] = []   // indices of the ranked entries, by rank
        if count * 16 >= rankCount {
            var byRank = [Int32](repeating: -1, count: rankCount)
            for (i, rank) in ranks.enumerated() {
                if rank >= 0 && rank < rankCount && byRank[rank] < 0 {
                    byRank[rank] = Int32(i)
                } else {
                    rest.append((entries + i).move())
                }
            }
            order.reserveCapacity(count)
            for i in byRank where i >= 0 { order.append(i) }
        } else {
            var ranked: [(rank: Int, index: Int32)] = []
            ranked.reserveCapacity(count)
            for (i, rank) in ranks.enumerated() {
                if rank >= 0 && rank < rankCount { ranked.append((rank, Int32(i))) } else { rest.append((entries + i).move()) }
            }
            ranked.sort { $0.rank < $1.rank }
            for (j, entry) in ranked.enumerated() {
                if j > 0 && ranked[j - 1].rank == entry.rank {   // never, unless a rank is stale
                    rest.append((entries + Int(entry.index)).move())
                } else {
                    order.append(entry.index)
                }
            }
        }
        let ordered: [BatchEntry] = order.isEmpty ? [] : Array(unsafeUninitializedCapacity: order.count) { buffer, initialized in
            for i in order {
                (buffer.baseAddress! + initialized).moveInitialize(from: entries + Int(i), count: 1)
                initialized += 1
            }
        }
        rest.sort { BatchBuilder.precedes($0, $1) }
        return ExportOrder.merge(ordered, rest, by: { $0.series.takeUnretainedValue() })
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
    func export(_ batch: [PendingBatchEntry], now: Double, wall: Double, withDistributions: Bool) throws
}

/// An entry of a flush's batch: a key's series, unretained (the flush keeps
/// it alive until the export returns), its pending data, and its key's
/// record (read from the series as the flush takes its data, so that an
/// export laying out the key's strings reads the record, not the series
/// again: issue #13; 64 bytes, one line an entry).
package typealias PendingBatchEntry = (series: Unmanaged<MetricSeries>, pending: PendingExport, record: KeyRecord)
