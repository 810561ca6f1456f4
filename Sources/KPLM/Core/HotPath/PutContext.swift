import Synchronization

/// What every put needs from its manager, shared by the manager and its
/// ``Metric`` handles (a handle does not keep the registry alive).
@usableFromInline
final class PutContext: Sendable {
    let level: MetricsLevel
    let clock: ManagerClock
    let windowSeconds: Int64
    /// Admission of puts (see ``PutGate``).
    @usableFromInline let gate: PutGate
    /// Drains the writer cells of this manager's metrics.
    let collector: CellCollector
    /// The metrics changed since the last flush.
    let changed = ChangedSeries()
    /// The logs of the series whose slots puts started in their common case
    /// (in the gate's memory), taken over into ``changed`` by every reader.
    let startedSlotLogs: StartedSlotLogs
    /// Whether puts use per-thread writer cells (not at level none, nor
    /// where the kernel lacks the barrier they rely on).
    let usesWriterCells: Bool
    /// The fork generation this manager was created in (see ``ForkGuard``).
    @usableFromInline let generation: UInt64
    /// The eventful sink, if any. Written only before start (under the
    /// manager's control lock) and read only by puts admitted after start:
    /// the gate's started bit orders the write before those reads.
    nonisolated(unsafe) var eventSink: (any EventfulMetricsSink)?
    /// The sink's key check, if it has one (see ``KeyCheckingSink``): set
    /// with the sink, read when a key with free-form dimensions is created.
    let keyChecker = Locked<(any KeyCheckingSink)?>(nil)
    /// Relative accuracy by metric name, for the distribution metrics
    /// (SPEC §6): set before start, read when a key is created.
    /// (Keyed by a name-only key: names compare bytewise, as keys do.)
    private let distributionAccuracies = Locked<[MetricKey: Double]>([:])
    /// Set once a distribution is set (before any key of its name exists,
    /// under the registry's lock): a key's creation looks the accuracies up
    /// only then, so a manager without distributions pays no lock for it.
    private let hasDistributions = Atomic<Bool>(false)

    /// Whether any name is a distribution metric.
    var hasDistributionMetrics: Bool { hasDistributions.load(ordering: .acquiring) }

    /// The relative accuracy of `name` if it is a distribution metric.
    func distributionAccuracy(of name: String) -> Double? {
        guard hasDistributions.load(ordering: .acquiring) else { return nil }
        return distributionAccuracies.withLock { $0[MetricKey(name: name)] }
    }

    /// Makes `name` a distribution metric of accuracy `a`.
    func setDistributionAccuracy(_ a: Double, of name: String) {
        distributionAccuracies.withLock { $0[MetricKey(name: name)] = a }
        hasDistributions.store(true, ordering: .releasing)
    }
    /// Identity of the manager, for the re-entrancy guard of `record`
    /// callbacks. Set once, in the manager's init.
    nonisolated(unsafe) var owner: ObjectIdentifier?
    /// The manager's keys, for a put that finds its key removed as idle
    /// (it re-creates it). Set once, in the manager's init; weak, so a
    /// handle does not keep the registry alive.
    nonisolated(unsafe) weak var registry: Registry?

    // Deferred sink close: the sink is closed by whichever finishes last,
    // the final flush or the last reserved `record` (the ordering argument
    // is pair 4 of Protocol.swift). `sinkCloseState` is 0 = open,
    // 1 = close due, 2 = closed.
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
        let generation = ForkGuard.currentGeneration()
        self.generation = generation
        let gate = PutGate(generation: generation)
        self.gate = gate
        self.startedSlotLogs = StartedSlotLogs(gate: gate)
        self.collector = CellCollector(logs: startedSlotLogs, changed: changed)
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
    @inlinable var isInherited: Bool { ForkGuard.isInherited(generation) }

    /// The outcome of a put that records nothing (level none, or an empty
    /// batch): only what costs nothing is checked, a manager inherited
    /// across a fork, then closing. The one place level NONE's puts are
    /// decided (the Swift API's puts, ``Metric`` handles, the C ABI's puts
    /// by names through ``MetricsManager/unrecordedPutOutcome``).
    @inlinable @inline(__always)
    var unrecordedPutOutcome: PutOutcome {
        if isInherited { return .inherited }
        return gate.isClosing ? .closed : .recorded
    }

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
