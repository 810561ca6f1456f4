import Synchronization

/// What every put needs from its manager, shared by the manager and its
/// ``Metric`` handles (a handle does not keep the registry alive).
final class PutContext: Sendable {
    let level: MetricsLevel
    let clock: ManagerClock
    let windowSeconds: Int64
    let gate = PutGate()
    /// The fork generation this manager was created in (see ``ForkGuard``).
    let generation = ForkGuard.currentGeneration()
    /// The eventful sink, if any. Written only before start (under the
    /// manager's control lock) and read only by puts admitted after start:
    /// the gate's started bit orders the write before those reads.
    nonisolated(unsafe) var eventSink: (any EventfulMetricsSink)?
    /// Identity of the manager, for the re-entrancy guard of `record`
    /// callbacks. Set once, in the manager's init.
    nonisolated(unsafe) var owner: ObjectIdentifier?

    // Deferred sink close. `record` runs outside every manager lock, so when
    // close wants to close the sink a record may still be running on another
    // thread; the sink is then closed by whichever of the two finishes last.
    // `sinkActivity` counts record callbacks in progress; `sinkCloseState` is
    // 0 = open, 1 = close due, 2 = closed. Both sides use sequentially
    // consistent operations (store-then-load on each side, Dekker style), so
    // at least one of them sees the other and the exchange 1 → 2 makes the
    // close happen exactly once.
    private let sinkActivity = Atomic<Int>(0)
    private let sinkCloseState = Atomic<Int>(0)
    /// The sink to close, set at start (before any record can run).
    nonisolated(unsafe) var sinkToClose: (any MetricsSink)?

    init(level: MetricsLevel, clock: ManagerClock, windowSeconds: Int) {
        self.level = level
        self.clock = clock
        self.windowSeconds = Int64(windowSeconds)
    }

    /// Throws `invalidState` in a child process for a manager created before
    /// the fork. Checked before any lock is touched.
    @inline(__always)
    func checkNotInherited() throws(MetricsError) {
        if ForkGuard.isInherited(generation) { throw ForkGuard.inheritedError }
    }

    /// Whether this manager was created before a fork (in the child).
    var isInherited: Bool { ForkGuard.isInherited(generation) }

    /// Runs an eventful sink's `record` unless the sink's close is due.
    @inline(__always)
    func deliver(_ event: @autoclosure () -> MetricEvent, to sink: any EventfulMetricsSink, owner: ObjectIdentifier) {
        sinkActivity.wrappingAdd(1, ordering: .sequentiallyConsistent)
        if sinkCloseState.load(ordering: .sequentiallyConsistent) == 0 {
            let e = event()
            CallbackGuard.run(for: owner) { sink.record(e) }
        }
        let remaining = sinkActivity.wrappingSubtract(1, ordering: .sequentiallyConsistent).newValue
        if remaining == 0 && sinkCloseState.load(ordering: .sequentiallyConsistent) == 1 {
            closeSinkOnce()
        }
    }

    /// Marks the sink's close due and closes it now unless a record is
    /// running (that record's thread then closes it when it returns).
    func requestSinkClose() {
        sinkCloseState.store(1, ordering: .sequentiallyConsistent)
        if sinkActivity.load(ordering: .sequentiallyConsistent) == 0 {
            closeSinkOnce()
        }
    }

    private func closeSinkOnce() {
        guard sinkCloseState.compareExchange(expected: 1, desired: 2, ordering: .sequentiallyConsistent).exchanged,
              let sink = sinkToClose, let owner else { return }
        CallbackGuard.run(for: owner) { sink.close() }
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

    init(key: MetricKey, context: PutContext, isNoop: Bool = false) {
        self.key = key
        self.series = MetricSeries(key: key)
        self.context = context
        self.isNoop = isNoop
    }

    /// Records one observation (default 1).
    ///
    /// Throws `invalidArgument` for NaN or infinity and `closed` once the
    /// manager's close has begun.
    public func put(_ value: Double = 1) throws(MetricsError) {
        try Validation.checkValue(value)
        try context.checkNotInherited()
        if isNoop {
            if context.gate.isClosing { throw MetricsError(.closed, "the manager is closed") }
            return
        }
        guard let started = context.gate.enter() else { throw MetricsError(.closed, "the manager is closed") }
        let now = record(value)
        context.gate.leave()
        notify(value, at: now, started: started)
    }

    /// Records an admitted observation. The caller holds a gate admission.
    /// Returns the clock reading, for the event.
    @inline(__always)
    func record(_ value: Double) -> Double {
        let now = context.clock.now()
        series.record(value, second: ManagerClock.second(of: now), windowSeconds: context.windowSeconds)
        return now
    }

    /// After start, hands an eventful sink the observation just recorded.
    /// Called after leaving the gate: close waits only for the recording,
    /// never for a sink callback.
    @inline(__always)
    func notify(_ value: Double, at now: Double, started: Bool) {
        guard started, let sink = context.eventSink, let owner = context.owner else { return }
        context.deliver(MetricEvent(name: key.name, value: value, timestamp: now, dimensions: key.dimensions),
                        to: sink, owner: owner)
    }
}
