import CKPLMShims
import Synchronization

/// What every put needs from its manager, shared by the manager and its
/// ``Metric`` handles (a handle does not keep the registry alive).
final class PutContext: Sendable {
    let level: MetricsLevel
    let clock: ManagerClock
    let windowSeconds: Int64
    let gate = PutGate()
    /// Drains the writer cells of this manager's metrics.
    let collector = CellCollector()
    /// Whether puts use per-thread writer cells (not at level none, nor
    /// where the kernel lacks the barrier they rely on).
    let usesWriterCells: Bool
    /// The fork generation this manager was created in (see ``ForkGuard``).
    let generation = ForkGuard.currentGeneration()
    /// The eventful sink, if any. Written only before start (under the
    /// manager's control lock) and read only by puts admitted after start:
    /// the gate's started bit orders the write before those reads.
    nonisolated(unsafe) var eventSink: (any EventfulMetricsSink)?
    /// Identity of the manager, for the re-entrancy guard of `record`
    /// callbacks. Set once, in the manager's init.
    nonisolated(unsafe) var owner: ObjectIdentifier?

    // Deferred sink close. `record` runs outside every manager lock and
    // after the put left its section (or the gate), so when close wants to
    // close the sink a record may still be due or running on another thread;
    // the sink is then closed by whichever finishes last.
    //
    // A put that will call `record` *reserves* it while it is still admitted
    // (inside its cell section, or between gate enter and leave): it adds
    // one to `sinkActivity`. Close waits for every admitted put, so by the
    // time the final flush marks the close due, every accepted put's record
    // is counted there; none is skipped. `sinkCloseState` is 0 = open,
    // 1 = close due, 2 = closed. Both sides use sequentially consistent
    // operations (store-then-load on each side, Dekker style), so at least
    // one of them sees the other, and the exchange 1 → 2 makes the close
    // happen exactly once.
    /// Record callbacks reserved or running (raw memory: cell sections
    /// reserve through a plain pointer).
    nonisolated(unsafe) let sinkActivity: UnsafeMutablePointer<Atomic<Int>>
    private let sinkCloseState = Atomic<Int>(0)
    /// The sink to close, set at start (before any record can run).
    nonisolated(unsafe) var sinkToClose: (any MetricsSink)?

    init(level: MetricsLevel, clock: ManagerClock, windowSeconds: Int) {
        self.level = level
        self.clock = clock
        self.windowSeconds = Int64(windowSeconds)
        self.sinkActivity = .allocate(capacity: 1)
        self.sinkActivity.initialize(to: Atomic(0))
        self.usesWriterCells = level != .none && CellCollector.isAvailable
        if level != .none { clock.startTicker() }
    }

    /// Throws `invalidState` in a child process for a manager created before
    /// the fork. Checked before any lock is touched.
    @inline(__always)
    func checkNotInherited() throws(MetricsError) {
        if ForkGuard.isInherited(generation) { throw ForkGuard.inheritedError }
    }

    /// Whether this manager was created before a fork (in the child).
    var isInherited: Bool { ForkGuard.isInherited(generation) }

    deinit {
        sinkActivity.deinitialize(count: 1)
        sinkActivity.deallocate()
    }

    /// Reserves a `record` call for a put still admitted (see above).
    @inline(__always)
    static func reserveRecord(_ activity: UnsafeMutablePointer<Atomic<Int>>) {
        activity.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
    }

    /// Runs a reserved `record`, then closes the sink if its close became
    /// due meanwhile and this was the last record.
    func deliverReserved(_ event: MetricEvent, to sink: any EventfulMetricsSink, owner: ObjectIdentifier) {
        CallbackGuard.run(for: owner, kind: .record) { sink.record(event) }
        releaseRecord()
    }

    /// Ends a reservation (delivered, or its put was refused after all).
    func releaseRecord() {
        let remaining = sinkActivity.pointee.wrappingSubtract(1, ordering: .sequentiallyConsistent).newValue
        if remaining == 0 && sinkCloseState.load(ordering: .sequentiallyConsistent) == 1 {
            closeSinkOnce()
        }
    }

    /// Marks the sink's close due and closes it now unless a record is
    /// running (that record's thread then closes it when it returns).
    /// Only the first request counts: the sink is closed exactly once.
    func requestSinkClose() {
        guard sinkCloseState.compareExchange(expected: 0, desired: 1, ordering: .sequentiallyConsistent).exchanged
        else { return }
        if sinkActivity.pointee.load(ordering: .sequentiallyConsistent) == 0 {
            closeSinkOnce()
        }
    }

    private func closeSinkOnce() {
        guard sinkCloseState.compareExchange(expected: 1, desired: 2, ordering: .sequentiallyConsistent).exchanged,
              let sink = sinkToClose, let owner else { return }
        CallbackGuard.run(for: owner) { sink.close() }
    }
}

/// What a put did, without building an error on the hot path.
enum PutOutcome {
    case recorded
    case closed
    case inherited

    /// The error a Swift caller sees, if any.
    @inline(__always)
    func check() throws(MetricsError) {
        switch self {
        case .recorded: return
        case .closed: throw MetricsError(.closed, "the manager is closed")
        case .inherited: throw ForkGuard.inheritedError
        }
    }
}

/// A resolved metric key: puts through it skip the key lookup.
///
/// Obtain one with ``MetricsManager/metric(_:stream:shardId:errorCode:)``.
/// At level ``MetricsLevel/none`` the handle's puts do nothing.
public final class Metric: Sendable {
    /// The key this handle records under (after level trimming).
    public let key: MetricKey
    let series: MetricSeries
    private let context: PutContext
    private let isNoop: Bool

    // Copies for the hot path, as plain pointers: the strong references
    // above keep what they point to alive as long as this handle, and using
    // them costs no reference counting (a retain is a locked instruction on
    // a line every thread putting on this metric would then share).
    nonisolated(unsafe) private let gateWord: UnsafeMutablePointer<Atomic<UInt64>>
    nonisolated(unsafe) private let cellTable: UnsafeMutablePointer<Atomic<UInt>>
    nonisolated(unsafe) private let activityWord: UnsafeMutablePointer<Atomic<Int>>
    private let seriesRef: Unmanaged<MetricSeries>
    private let windowSeconds: Int64
    private let usesWriterCells: Bool
    /// Writer cells and the system clock (the second comes from the ticker).
    private let cellsWithTicker: Bool
    private let generation: UInt64

    init(key: MetricKey, context: PutContext, isNoop: Bool = false) {
        self.key = key
        let series = MetricSeries(key: key)
        self.series = series
        self.context = context
        self.isNoop = isNoop
        self.gateWord = context.gate.wordPointer
        self.cellTable = series.cells
        self.activityWord = context.sinkActivity
        self.seriesRef = Unmanaged.passUnretained(series)
        self.windowSeconds = context.windowSeconds
        self.usesWriterCells = context.usesWriterCells
        self.cellsWithTicker = !isNoop && context.usesWriterCells && context.clock.isSystem
        self.generation = context.generation
    }

    /// Records one observation (default 1).
    ///
    /// Throws `invalidArgument` for NaN or infinity and `closed` once the
    /// manager's close has begun.
    @inline(__always)
    public func put(_ value: Double = 1) throws(MetricsError) {
        try Validation.checkValue(value)
        try put(finite: value).check()
    }

    /// Records a finite value (the caller checked it).
    ///
    /// The common case is straight-line code with no call, no lock and no
    /// locked instruction: the second from the process-wide ticker, this
    /// thread's writer index from TLS, its cell from the metric's table, one
    /// section on the cell. Anything else (level none, an injected clock, no
    /// ticker, no writer index or cell yet, a fork, closing, an eventful
    /// sink) leaves it for ``putGeneral(_:)``.
    @inline(__always)
    func put(finite value: Double) -> PutOutcome {
        let second = kplmshim_cached_second()
        let writer = Int(kplmshim_writer_raw())
        if _fastPath(cellsWithTicker && second != Int64.min && writer > 0 && !ForkGuard.isInherited(generation)) {
            let bits = cellTable[writer &- 1].load(ordering: .acquiring)
            if _fastPath(bits != 0 && WriterCell(base: UnsafeMutableRawPointer(bitPattern: bits)!)
                .tryPut(value, second: Int64(second), gate: gateWord)) {
                return .recorded
            }
        }
        // Everything else, including a new second for this thread's cell
        // (once a second), closing, and an eventful sink.
        return putGeneral(value)
    }

    /// Records several observations that happened at manager-clock time
    /// `at` (seconds; nil = now), as if each had been put then: for a layer
    /// that buffers observations and hands them over in batches. A time
    /// after now counts as now; one older than the window counts towards
    /// the next export only (like any late observation).
    ///
    /// Throws `invalidArgument` (nothing recorded) if a value is NaN or
    /// infinite, `closed` once the manager's close has begun, and
    /// `invalidState` in a forked child. With an eventful sink, `record` is
    /// called once per value, in order, with the time `at`.
    public func put(many values: some Collection<Double>, at: Double? = nil) throws(MetricsError) {
        for v in values { try Validation.checkValue(v) }
        if let at, !at.isFinite { throw MetricsError(.invalidArgument, "the time of a batch must be finite") }
        try putMany(finite: values, at: at).check()
    }

    /// ``put(many:at:)`` for finite values and a finite `at` (the caller
    /// checked them).
    func putMany(finite values: some Collection<Double>, at: Double?) -> PutOutcome {
        if ForkGuard.isInherited(generation) { return .inherited }
        if isNoop || values.isEmpty { return PutGate.isClosing(PutGate.load(gateWord)) ? .closed : .recorded }
        var statistics = MetricStatistics.empty
        for v in values { statistics.merge(MetricStatistics(count: 1, sum: v, min: v, max: v)) }
        return CallbackGuard.run(for: context.owner ?? ObjectIdentifier(context), kind: .put) { () -> PutOutcome in
            let now = context.clock.currentSecond()
            let second = at.map {
                Swift.min(ManagerClock.second(of: Swift.min(Swift.max($0, -ManagerClock.limit), ManagerClock.limit)), now)
            } ?? now
            // Shared path, as one observation: counted in by the gate, so
            // close waits for it; one record reserved per value while admitted.
            guard let admitted = context.gate.enter() else { return .closed }
            if admitted { for _ in 0..<values.count { PutContext.reserveRecord(activityWord) } }
            series.record(statistics, second: second, windowSeconds: windowSeconds)
            context.gate.leave()
            if admitted { for v in values { notify(v, at: at) } }
            return .recorded
        }
    }

    /// Every case the fast path of ``put(finite:)`` leaves.
    @inline(never)
    private func putGeneral(_ value: Double) -> PutOutcome {
        if ForkGuard.isInherited(generation) { return .inherited }
        if isNoop { return PutGate.isClosing(PutGate.load(gateWord)) ? .closed : .recorded }
        return record(value)
    }

    /// Records a validated observation: on this thread's writer cell (no
    /// lock, no locked instruction), or on the shared path when the thread
    /// has no writer index (more threads than ``MetricSeries/maxWriters``).
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

    private func recordMarked(_ value: Double) -> PutOutcome {
        let second = context.clock.currentSecond()
        let writer = usesWriterCells ? Int(kplmshim_writer_index()) : -1
        let started: Bool
        if writer >= 0 {
            let cell = MetricSeries.cell(writer, in: cellTable, of: seriesRef)
            let word = cell.put(value, second: second, gate: gateWord, activity: activityWord, series: seriesRef,
                                windowSeconds: windowSeconds)
            if PutGate.isClosing(word) { return .closed }
            started = PutGate.isStarted(word)
        } else {
            guard let admitted = sharedRecord(value, second: second) else { return .closed }
            started = admitted
        }
        if started { notify(value) }
        return .recorded
    }

    /// Shared path: counted in by the gate, so close can wait for it.
    /// Returns whether the manager was started, nil when closing.
    @inline(never)
    private func sharedRecord(_ value: Double, second: Int64) -> Bool? {
        guard let admitted = context.gate.enter() else { return nil }
        if admitted { PutContext.reserveRecord(activityWord) }   // while admitted: see PutContext
        series.record(value, second: second, windowSeconds: windowSeconds)
        context.gate.leave()
        return admitted
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
        context.deliverReserved(MetricEvent(name: key.name, value: value, timestamp: now,
                                            dimensions: series.dimensions), to: sink, owner: owner)
    }
}
