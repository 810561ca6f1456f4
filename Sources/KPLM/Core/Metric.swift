/// What every put needs from its manager, shared by the manager and its
/// ``Metric`` handles (a handle does not keep the registry alive).
final class PutContext: Sendable {
    let level: MetricsLevel
    let clock: ManagerClock
    let windowSeconds: Int64
    let gate = PutGate()
    /// The eventful sink, if any. Written only before start (under the
    /// manager's control lock) and read only by puts admitted after start:
    /// the gate's started bit orders the write before those reads.
    nonisolated(unsafe) var eventSink: (any EventfulMetricsSink)?
    /// Identity of the manager, for the re-entrancy guard of `record`
    /// callbacks. Set once, in the manager's init.
    nonisolated(unsafe) var owner: ObjectIdentifier?

    init(level: MetricsLevel, clock: ManagerClock, windowSeconds: Int) {
        self.level = level
        self.clock = clock
        self.windowSeconds = Int64(windowSeconds)
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
        if isNoop {
            if context.gate.isClosing { throw MetricsError(.closed, "the manager is closed") }
            return
        }
        guard let started = context.gate.enter() else { throw MetricsError(.closed, "the manager is closed") }
        defer { context.gate.leave() }
        record(value, started: started)
    }

    /// Records an admitted observation and, after start, tells the eventful
    /// sink. The caller holds a gate admission.
    @inline(__always)
    func record(_ value: Double, started: Bool) {
        let now = context.clock.now()
        series.record(value, second: ManagerClock.second(of: now), windowSeconds: context.windowSeconds)
        if started, let sink = context.eventSink, let owner = context.owner {
            let event = MetricEvent(name: key.name, value: value, timestamp: now, dimensions: key.dimensions)
            CallbackGuard.run(for: owner) { sink.record(event) }
        }
    }
}
