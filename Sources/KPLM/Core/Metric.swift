import Synchronization

/// A resolved metric key: puts through it skip the key lookup.
///
/// Obtain one with ``MetricsManager/metric(_:stream:shardId:errorCode:)``.
/// At level ``MetricsLevel/none`` the handle's puts do nothing.
public final class Metric: Sendable {
    /// The line a put reads first (its series', see ``MetricHeader``):
    /// declared first, so that a put's first load is from this object's
    /// first line. (Usable from inline: the C ABI inlines ``put(finite:)``.)
    @usableFromInline nonisolated(unsafe) package let header: MetricHeader
    package let series: MetricSeries
    let context: PutContext

    // Copies for the slow paths, as plain pointers: the strong references
    // above keep what they point to alive as long as this handle, and using
    // them costs no reference counting (a retain is a locked instruction on
    // a line every thread putting on this metric would then share).
    nonisolated(unsafe) let activityWord: UnsafeMutablePointer<Atomic<Int>>
    let seriesRef: Unmanaged<MetricSeries>
    let windowSeconds: Int64
    let usesWriterCells: Bool
    // (The two flags last and together: the object stays within 72 bytes,
    // an 80-byte heap block.)
    let isNoop: Bool

    init(key: MetricKey, context: PutContext, isNoop: Bool = false) {
        let accuracy = isNoop ? nil : context.distributionAccuracy(of: key.name)
        let series = MetricSeries(key: key, distributionAccuracy: accuracy)
        self.header = series.header
        self.series = series
        self.context = context
        self.isNoop = isNoop
        self.activityWord = context.sinkActivity
        self.seriesRef = Unmanaged.passUnretained(series)
        self.windowSeconds = context.windowSeconds
        self.usesWriterCells = context.usesWriterCells
        // The common case runs with writer cells and the system clock (the
        // second comes from the ticker); its kind follows the metric's.
        let withTicker = !isNoop && usesWriterCells && context.clock.isSystem
        let flags = !withTicker ? 0 : accuracy == nil ? MetricHeader.plainCells : MetricHeader.distributionCells
        header.publish(gate: context.gate.wordPointer, generation: context.generation,
                       metric: Unmanaged.passUnretained(self), flags: flags)
    }

    /// The key this handle records under (after level trimming): its
    /// series' (one copy a key, issue #13).
    public var key: MetricKey { series.key }

    /// The manager's gate word (in ``header``).
    var gateWord: UnsafeMutablePointer<Atomic<UInt64>> { header.gateWord }
    /// The cells of this metric's series (in ``header``).
    var cellTable: CellTable { header.cells }
    /// The fork generation of the manager (see ``ForkGuard``).
    var generation: UInt64 { header.generation }

    /// Records one observation (default 1).
    ///
    /// Throws `invalidArgument` for NaN or infinity and `closed` once the
    /// manager's close has begun.
    @inline(__always)
    public func put(_ value: Double = 1) throws(MetricsError) {
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
    public func put(many values: some Collection<Double>, at: Double? = nil) throws(MetricsError) {
        for v in values { try Validation.checkValue(v) }
        if let at, !at.isFinite { throw MetricsError(.invalidArgument, "the time of a batch must be finite") }
        try putMany(finite: values, at: at).check()
    }
}
