import CKPLMShims
import Synchronization

// The put part of ``Metric``: the hot path (see Protocol.swift beside this
// file for the ordering argument) and its slow paths.

/// What a put did, without building an error on the hot path.
@usableFromInline
package enum PutOutcome {
    /// Recorded (or, at level none, accepted and dropped).
    case recorded
    /// Refused: close has begun.
    case closed
    /// Refused: the manager was created before a fork (in the child).
    case inherited
    /// Refused: the key had been removed as idle and the cap is full, so
    /// it could not be re-created (counted like a refused new key).
    case limitReached

    /// The error a Swift caller sees, if any.
    @inline(__always)
    package func check() throws(MetricsError) {
        switch self {
        case .recorded: return
        case .closed: throw MetricsError(.closed, "the manager is closed")
        case .inherited: throw ForkGuard.inheritedError
        case .limitReached:
            throw MetricsError(.limitReached, "max_metrics distinct keys reached; this handle's key, "
                               + "removed as idle, could not be re-created")
        }
    }
}

extension Metric {
    /// Records a finite value (the caller checked it).
    ///
    /// The common case (``MetricHeader/tryPutCommonCase(_:)``) reads this
    /// object's first line (its header line's address) and the thread's
    /// cell, with no
    /// call, no lock and no locked instruction. Anything else (level none,
    /// an injected clock, no ticker, no writer index or cell yet, a fork,
    /// closing, an eventful sink) leaves it for ``putGeneral(_:)``.
    @inlinable @inline(__always)
    package func put(finite value: Double) -> PutOutcome {
        if _fastPath(header.tryPutCommonCase(value)) { return .recorded }
        // Everything else, including a new second for this thread's cell
        // (once a second), closing, an eventful sink, and a removed key.
        return putGeneral(value)
    }

    /// ``put(many:at:)`` for finite values and a finite `at` (the caller
    /// checked them).
    package func putMany(finite values: some Collection<Double>, at: Double?) -> PutOutcome {
        if isNoop || values.isEmpty { return context.unrecordedPutOutcome }
        if ForkGuard.isInherited(generation) { return .inherited }
        var statistics = MetricStatistics.empty
        for v in values { statistics.merge(MetricStatistics(count: 1, sum: v, min: v, max: v)) }
        return CallbackGuard.run(for: context.owner ?? ObjectIdentifier(context), kind: .put) { () -> PutOutcome in
            let now = context.clock.currentSecond()
            let second = at.map {
                Swift.min(ManagerClock.second(of: Swift.min(Swift.max($0, -ManagerClock.limit), ManagerClock.limit)), now)
            } ?? now
            var target = self
            while true {
                // Shared path, as one observation: counted in by the gate, so
                // close waits for it; one record reserved per value while admitted.
                guard let admitted = context.gate.enter() else { return .closed }
                guard target.series.recordUnlessRetired(statistics, values: values, second: second,
                                                        windowSeconds: windowSeconds)
                else {
                    context.gate.leave()
                    guard let revived = target.revived(refusedPuts: values.count) else { return target.notRevived }
                    target = revived
                    continue
                }
                if admitted { for _ in 0..<values.count { PutContext.reserveRecord(context.sinkActivity) } }
                context.gate.leave()
                context.changed.mark(target.series)
                if admitted { for v in values { notify(v, at: at) } }
                return .recorded
            }
        }
    }

    /// Every case the fast path of ``put(finite:)`` leaves (for a caller
    /// that tried ``MetricHeader/tryPutCommonCase(_:)`` itself).
    @usableFromInline @inline(never)
    package func putGeneral(_ value: Double) -> PutOutcome {
        // Mostly a put that starts a new second: it spills its slot under
        // the series lock (the object's second to fourth lines) and marks
        // the series changed (its first). At many keys each line is a miss:
        // asked for together here, they arrive together instead of one
        // after the other (issue #13: a put in a new second at 100,000
        // keys, about 10% less; see docs/performance.md).
        SeriesPrefetch.prefetchObject(UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque()))
        if isNoop { return context.unrecordedPutOutcome }
        if ForkGuard.isInherited(generation) { return .inherited }
        return record(value)
    }

    /// Records a validated observation: on this thread's writer cell (no
    /// lock, no locked instruction), or on the shared path when the thread
    /// has no writer index (more threads than ``WriterIndices/capacity``).
    ///
    /// Runs under a put frame of ``CallbackGuard`` (a thread-local mark):
    /// this is the slow path (a new second or cell, the shared path, an
    /// injected clock, an eventful sink), where it costs little next to the
    /// gate's locked add, the series lock or the sink call. A signal handler
    /// that interrupted it sees the mark, and its close or flush returns
    /// `invalidState` instead of waiting for this put (which holds the
    /// gate's in-flight count, or a series lock) to end.
    func record(_ value: Double) -> PutOutcome {
        CallbackGuard.run(for: context.owner ?? ObjectIdentifier(context), kind: .put) { recordMarked(value) }
    }

    func recordMarked(_ value: Double) -> PutOutcome {
        let second = context.clock.currentSecond()
        let writer = usesWriterCells ? Int(kplmshim_writer_index()) : -1
        // The key may have been removed as idle (then nothing was recorded):
        // re-create it, with this metric or the one that replaced it, and
        // put again. (A flush may remove it again meanwhile: rare, and each
        // round is a flush's doing, so this ends.)
        var target = self
        while true {
            let word: UInt64
            var cellWriter = -1   // the writer index whose cell took the value
            if writer >= 0 {
                let cell = MetricSeries.cell(writer, in: target.cellTable, of: target.seriesRef)
                let put = cell.put(value, second: second, gate: gateWord, activity: context.sinkActivity,
                                   series: target.seriesRef, windowSeconds: windowSeconds,
                                   distribution: target.seriesRef._withUnsafeGuaranteedRef { $0.bucketMapping })
                if put & WriterCell.sharedPathBit != 0 {
                    // A value the distribution cell does not take (see CellBuckets).
                    guard let shared = target.sharedRecord(value, second: second) else { return .closed }
                    word = shared
                } else {
                    word = put
                    cellWriter = writer
                }
            } else {
                guard let shared = target.sharedRecord(value, second: second) else { return .closed }
                word = shared
            }
            if word & WriterCell.retiredBit != 0 {
                guard let revived = target.revived() else { return target.notRevived }
                target = revived
                continue
            }
            if word & WriterCell.startedSlotBit != 0 {
                context.changed.mark(target.series, writer: cellWriter)
                // The common case could not log it (no log yet, or its
                // block full): make room for the next one.
                if cellWriter >= 0 { context.startedSlotLogs.prepare(writer: cellWriter) }
            }
            if PutGate.isClosing(word) { return .closed }
            if PutGate.isStartedWithEventfulSink(word) { target.notify(value) }
            return .recorded
        }
    }

    /// Shared path: counted in by the gate, so close can wait for it.
    /// Returns the gate word seen at admission (with
    /// ``WriterCell/retiredBit`` if the key was removed: nothing recorded),
    /// nil when closing.
    @inline(never)
    func sharedRecord(_ value: Double, second: Int64) -> UInt64? {
        guard let admitted = context.gate.enter() else { return nil }
        defer { context.gate.leave() }
        guard series.recordUnlessRetired(MetricStatistics(count: 1, sum: value, min: value, max: value),
                                         values: CollectionOfOne(value), second: second, windowSeconds: windowSeconds)
        else { return WriterCell.retiredBit }
        if admitted { PutContext.reserveRecord(context.sinkActivity) }   // while admitted: see PutContext
        return (admitted ? PutGate.startedWithEventfulSinkBit : 0) | WriterCell.startedSlotBit
    }

    /// The live metric of this metric's key, removed as idle: this one
    /// re-created, or the one another thread re-created first; nil when
    /// the cap is full (`refusedPuts` refusals counted), the manager is
    /// closing or gone (then nothing is re-created: see ``notRevived``).
    @inline(never)
    func revived(refusedPuts: Int = 1) -> Metric? {
        guard !context.gate.isClosing else { return nil }
        return try? context.registry?.revive(self, refusedPuts: refusedPuts)
    }

    /// What a put on a removed key that could not be re-created reports:
    /// closed once close has begun or the manager is gone (a put after
    /// close is refused as closed, whatever its key), else the cap.
    var notRevived: PutOutcome {
        context.gate.isClosing || context.registry == nil ? .closed : .limitReached
    }

    /// After start, hands an eventful sink the observation just recorded.
    /// Called after the put left its section or the gate: close waits only
    /// for the recording, never for a sink callback.
    /// The put reserved the call while admitted (see ``PutContext``).
    /// A put made inside a `record` callback of the same manager is
    /// recorded but not handed to `record` again (no recursion).
    @inline(never)
    func notify(_ value: Double, at: Double? = nil) {
        guard let sink = context.eventSink, let owner = context.owner,
              !CallbackGuard.isInsideRecord(of: owner) else {
            context.releaseRecord()
            return
        }
        let now = at ?? context.clock.now()
        let key = self.key   // (made from the series' record: once)
        context.deliverReserved(MetricEvent(name: key.name, value: value, timestamp: now,
                                            dimensions: key.dimensions), to: sink, owner: owner)
    }
}
