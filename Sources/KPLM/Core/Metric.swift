import Synchronization

/// A resolved metric key: puts through it skip the key lookup.
///
/// Obtain one with ``MetricsManager/metric(_:stream:shardId:errorCode:)``.
/// At level ``MetricsLevel/none`` the handle's puts do nothing.
///
/// Every metric is its key's series (``MetricSeries``, the one subclass):
/// one object a key (issue #13), whose first line holds what a put's slow
/// paths read (these fields, then the series' flush bookkeeping). Not open,
/// and its members are final (those of its extensions too): no other
/// subclass exists, and no call goes through a vtable.
public class Metric: @unchecked Sendable {
    /// The line a put reads first (see ``MetricHeader``), allocated and
    /// freed by the series. (Usable from inline: the C ABI inlines
    /// ``put(finite:)``.)
    @usableFromInline nonisolated(unsafe) package let header: MetricHeader
    let context: PutContext

    // Copies of the context's fields for the slow paths: read from this
    // line, which the put reaches anyway, instead of the context's.
    /// The window (1...3,600 seconds: two bytes, so that the series' fields
    /// after these fill the rest of the first line).
    private let windowSecondsValue: UInt16
    /// ``usesWriterCells``, ``isNoop`` and whether the metric is a
    /// distribution metric, in one byte (the series' fields fill the next).
    private let modes: UInt8
    // (@unchecked Sendable: immutable, the pointers to atomics included; a
    // non-final class cannot be checked.)

    /// Called by ``MetricSeries/init(key:context:isNoop:)`` only, once its
    /// own fields are set: `header` is the series', `accuracy` its
    /// distribution's (nil for a plain metric).
    init(header: MetricHeader, context: PutContext, isNoop: Bool, accuracy: Double?) {
        self.header = header
        self.context = context
        self.windowSecondsValue = UInt16(context.windowSeconds)
        self.modes = (context.usesWriterCells ? Self.writerCellsMode : 0) | (isNoop ? Self.noopMode : 0)
            | (accuracy != nil ? Self.distributionMode : 0)
        // The common case runs with writer cells and the system clock (the
        // second comes from the ticker); its kind follows the metric's.
        let withTicker = !isNoop && context.usesWriterCells && context.clock.isSystem
        let flags = !withTicker ? 0 : accuracy == nil ? MetricHeader.plainCells : MetricHeader.distributionCells
        header.publish(gate: context.gate.wordPointer, generation: context.generation,
                       metric: Unmanaged.passUnretained(self), flags: flags)
    }

    /// The window, in seconds.
    @inline(__always)
    final var windowSeconds: Int64 { Int64(windowSecondsValue) }

    private static var writerCellsMode: UInt8 { 1 }
    private static var noopMode: UInt8 { 2 }
    private static var distributionMode: UInt8 { 4 }
    /// Whether puts go through writer cells (the context's setting).
    @inline(__always)
    final var usesWriterCells: Bool { modes & Self.writerCellsMode != 0 }
    /// Whether puts do nothing (level none).
    @inline(__always)
    final var isNoop: Bool { modes & Self.noopMode != 0 }
    /// Whether this is a distribution metric's key (its series' record
    /// holds the distribution).
    @inline(__always)
    final var isDistribution: Bool { modes & Self.distributionMode != 0 }

    /// This metric as its series (the same object).
    @inline(__always)
    package final var series: MetricSeries { unsafeDowncast(self, to: MetricSeries.self) }

    /// This metric as its series, unretained (for the slow paths).
    @inline(__always)
    final var seriesRef: Unmanaged<MetricSeries> { Unmanaged.passUnretained(series) }

    /// The key this handle records under (after level trimming), made from
    /// its series' ``KeyRecord`` at each call (one copy a key, issue #13).
    public final var key: MetricKey { series.record.key }

    /// The manager's gate word (in ``header``).
    final var gateWord: UnsafeMutablePointer<Atomic<UInt64>> { header.gateWord }
    /// The cells of this metric's series (in ``header``).
    final var cellTable: CellTable { header.cells }
    /// The fork generation of the manager (see ``ForkGuard``).
    final var generation: UInt64 { header.generation }

    /// Records one observation (default 1).
    ///
    /// Throws `invalidArgument` for NaN or infinity and `closed` once the
    /// manager's close has begun.
    @inline(__always)
    public final func put(_ value: Double = 1) throws(MetricsError) {
        try Validation.checkValue(value)
        try put(finite: value).check()
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
    public final func put(many values: some Collection<Double>, at: Double? = nil) throws(MetricsError) {
        for v in values { try Validation.checkValue(v) }
        if let at, !at.isFinite { throw MetricsError(.invalidArgument, "the time of a batch must be finite") }
        try putMany(finite: values, at: at).check()
    }
}
