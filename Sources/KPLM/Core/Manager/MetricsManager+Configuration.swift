// The configuration of a manager: the settings it is created with and
// their validation, and what may be set before start.

/// Settings of a ``MetricsManager``. Defaults match `kplm_config_init`.
public struct MetricsConfiguration: Sendable {
    /// What is recorded. Default ``MetricsLevel/none``.
    public var level: MetricsLevel = .none
    /// Period of the background flush; > 0. Default 60 seconds.
    public var uploadInterval: Duration {
        get { Self.duration(milliseconds: uploadIntervalMilliseconds) }
        set { uploadIntervalMilliseconds = Self.milliseconds(newValue) }
    }
    /// Where ``uploadInterval`` lives: milliseconds, as the C ABI's
    /// `upload_interval_ms` (which may be out of range until validation).
    package var uploadIntervalMilliseconds: Double = 60_000
    /// Length of the rolling window, in seconds: 1...3600.
    public var windowSeconds: Int = 60
    /// Cap on distinct metric keys; > 0.
    public var maxMetrics: Int = 100_000
    /// Manager clock in monotonic seconds; nil = the system monotonic clock.
    public var clock: (@Sendable () -> Double)? = nil
    /// How long a flush waits for an export still running on another
    /// thread, and close for the final export, before giving up with
    /// `sinkFailed` (nothing is lost: the data stays queued, and the final
    /// export still completes in the background). > 0. Default 10 seconds.
    public var exportTimeout: Duration {
        get { Self.duration(milliseconds: exportTimeoutMilliseconds) }
        set { exportTimeoutMilliseconds = Self.milliseconds(newValue) }
    }
    /// Where ``exportTimeout`` lives: milliseconds, as the C ABI's
    /// `export_timeout_ms` (which may be out of range until validation).
    package var exportTimeoutMilliseconds: Double = 10_000
    /// KPL rollups: nil (the default) shows every key as recorded, with the
    /// dimensions "stream", "shard", "error_code"; a granularity shows the
    /// KPL's tree instead (see ``MetricsGranularity``), with the KPL's
    /// dimension names and order.
    public var granularity: MetricsGranularity? = nil
    /// Dimensions added to every exported and reported line (see
    /// ``ExtraDimension``). More can be added before start with
    /// ``MetricsManager/addExtraDimension(_:)``.
    public var extraDimensions: [ExtraDimension] = []
    /// With a ``granularity``, the level of the KPL's tree a free-form
    /// dimension (``MetricKey/otherDimensions``) attaches at, by dimension
    /// name: ``MetricsGranularity/stream`` puts it on per-stream and
    /// per-shard lines, ``MetricsGranularity/shard`` on per-shard lines.
    /// Names not listed attach at ``MetricsGranularity/global`` (every
    /// line). More can be set before start with
    /// ``MetricsManager/setDimensionGranularity(_:_:)``.
    public var dimensionGranularities: [String: MetricsGranularity] = [:]
    /// When true, only metrics whose KPL level (``KPLMetrics/level(of:)``) is
    /// within ``level`` are exported and reported, as the KPL uploads them.
    /// Default false: every recorded metric is shown.
    public var kplLevelFilter: Bool = false
    /// The namespace sinks publish under (CloudWatch's): 1...255 bytes.
    public var namespace: String = "KinesisProducerLibrary"
    /// Distribution metrics (SPEC §6) by name, with their relative accuracy
    /// (0 < a <= 0.1): the manager starts with them set, as by
    /// ``MetricsManager/setDistribution(_:relativeAccuracy:)``. Empty by
    /// default; ``kplDistributions`` is the KPL's list.
    public var distributions: [String: Double] = [:]

    /// The KPL's latency metrics as distributions at 1%: `BufferingTime`
    /// and `RequestTime` (assign to ``distributions`` to get p50/p99 of
    /// them).
    public static let kplDistributions: [String: Double] = [
        KPLMetrics.bufferingTime: 0.01, KPLMetrics.requestTime: 0.01,
    ]

    /// The default configuration.
    public init() {}

    /// `duration` in milliseconds (exact to the nanosecond and beyond for
    /// any interval a manager can use).
    static func milliseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }

    /// `milliseconds` as a Duration, for the getters: a value only the
    /// deprecated millisecond spelling can set and validation refuses (NaN)
    /// reads as zero; infinite or huge ones saturate.
    static func duration(milliseconds: Double) -> Duration {
        guard !milliseconds.isNaN else { return .zero }
        // Int64 seconds hold about 9.2e21 ms.
        let limit = 9.2e21
        guard milliseconds.magnitude < limit else {
            return .seconds(milliseconds > 0 ? Int64.max : Int64.min)
        }
        let seconds = (milliseconds / 1000).rounded(.towardZero)
        let rest = milliseconds - seconds * 1000   // ms, |rest| < 1000
        return .seconds(Int64(seconds)) + .nanoseconds(Int64((rest * 1e6).rounded()))
    }

    /// Throws `invalidArgument` if a field is out of range.
    func validate() throws(MetricsError) {
        guard uploadIntervalMilliseconds.isFinite && uploadIntervalMilliseconds > 0 else {
            throw MetricsError(.invalidArgument,
                               "upload interval must be finite and > 0 ms, got \(uploadIntervalMilliseconds) ms")
        }
        guard Validation.windowSecondsRange.contains(windowSeconds) else {
            throw MetricsError(.invalidArgument, "window must be 1...3600 seconds, got \(windowSeconds)")
        }
        guard exportTimeoutMilliseconds.isFinite && exportTimeoutMilliseconds > 0 else {
            throw MetricsError(.invalidArgument,
                               "export timeout must be finite and > 0 ms, got \(exportTimeoutMilliseconds) ms")
        }
        guard maxMetrics > 0 else {
            throw MetricsError(.invalidArgument, "max metrics must be > 0, got \(maxMetrics)")
        }
        try Validation.checkName(namespace, label: "namespace")
        for extra in extraDimensions { try extra.validate() }
        for name in dimensionGranularities.keys { try Validation.checkName(name, label: "dimension name") }
        for (name, accuracy) in distributions {
            try Validation.checkName(name)
            guard DistributionSketch.isValidAccuracy(accuracy), !Registry.isSelfMetricName(name) else {
                throw MetricsError(.invalidArgument, "distribution \(name): relative accuracy must be > 0 and "
                                   + "<= 0.1 (and the name not one of kplm's own), got \(accuracy)")
            }
        }
    }
}

// The earlier spellings of the intervals, in milliseconds (kept for
// existing callers; the C ABI keeps milliseconds).
extension MetricsConfiguration {
    /// ``uploadInterval`` in milliseconds (finite and > 0): the same setting.
    @available(*, deprecated, renamed: "uploadInterval")
    public var uploadIntervalMs: Double {
        get { uploadIntervalMilliseconds }
        set { uploadIntervalMilliseconds = newValue }
    }

    /// ``exportTimeout`` in milliseconds (finite and > 0): the same setting.
    @available(*, deprecated, renamed: "exportTimeout")
    public var exportTimeoutMs: Double {
        get { exportTimeoutMilliseconds }
        set { exportTimeoutMilliseconds = newValue }
    }

    /// A configuration of the settings the manager's convenience
    /// initializers take, `intervals` setting the two intervals.
    static func settings(_ level: MetricsLevel, windowSeconds: Int, maxMetrics: Int,
                         clock: (@Sendable () -> Double)?,
                         intervals: (inout MetricsConfiguration) -> Void) -> MetricsConfiguration {
        var configuration = MetricsConfiguration()
        configuration.level = level
        configuration.windowSeconds = windowSeconds
        configuration.maxMetrics = maxMetrics
        configuration.clock = clock
        intervals(&configuration)
        return configuration
    }
}

extension MetricsManager {
    // MARK: Before start

    /// Adds a dimension to every exported and reported line. Allowed only
    /// before ``start()``.
    ///
    /// Throws `invalidArgument` for an empty or over-long name or value,
    /// `invalidState` once started or closed.
    public func addExtraDimension(_ extra: ExtraDimension) throws(MetricsError) {
        try checkCallable("addExtraDimension")
        try extra.validate()
        try control.withLock { (c) throws(MetricsError) in
            guard c.phase == .new, !context.gate.isClosing else {
                throw MetricsError(.invalidState, "extra dimensions can only be added before start")
            }
            view.withLock { $0.extras.append(extra) }
        }
    }

    /// With a granularity, attaches the free-form dimension `name` at
    /// `granularity` of the KPL's tree instead of the global level (see
    /// ``MetricsConfiguration/dimensionGranularities``). Allowed only before
    /// ``start()``.
    ///
    /// Throws `invalidArgument` for an empty or over-long name,
    /// `invalidState` once started or closed.
    public func setDimensionGranularity(_ name: String, _ granularity: MetricsGranularity) throws(MetricsError) {
        try checkCallable("setDimensionGranularity")
        try Validation.checkName(name, label: "dimension name")
        try control.withLock { (c) throws(MetricsError) in
            guard c.phase == .new, !context.gate.isClosing else {
                throw MetricsError(.invalidState, "dimension granularities can only be set before start")
            }
            view.withLock { $0.dimensionGranularities[name] = granularity }
        }
    }

    /// Makes `name` a distribution metric (SPEC §6): every observation of a
    /// key with this name also feeds a mergeable distribution with relative
    /// accuracy `relativeAccuracy` (0 < a <= 0.1), which
    /// ``quantile(_:of:dimensions:lastSeconds:)`` reads. Count, sum, min
    /// and max stay exact. Setting it again changes the accuracy. Puts to
    /// such a metric stay lock-free: their writer cell also counts the
    /// value's bucket (see ``DistributionSketch`` for memory and accuracy).
    ///
    /// Allowed before ``start()`` only, and before any key of that name
    /// exists (`invalidState` otherwise). Throws `invalidArgument` for a bad
    /// name, an accuracy out of range, or one of kplm's own metrics.
    public func setDistribution(_ name: String, relativeAccuracy: Double) throws(MetricsError) {
        try checkCallable("setDistribution")
        try Validation.checkName(name)
        guard DistributionSketch.isValidAccuracy(relativeAccuracy) else {
            throw MetricsError(.invalidArgument, "relative accuracy must be > 0 and <= 0.1, got \(relativeAccuracy)")
        }
        guard !Registry.isSelfMetricName(name) else {
            throw MetricsError(.invalidArgument, "\(name) is counted by kplm itself and cannot be a distribution")
        }
        try control.withLock { (c) throws(MetricsError) in
            guard c.phase == .new, !context.gate.isClosing else {
                throw MetricsError(.invalidState, "distributions can only be set before start")
            }
            guard context.level != .none else { return }   // nothing is recorded at level none
            // Under the registry's lock (as a key's creation reads the
            // accuracies): no key of the name appears meanwhile.
            let set = registry.ifNoKey(named: name) { context.setDistributionAccuracy(relativeAccuracy, of: name) }
            guard set else {
                throw MetricsError(.invalidState, "keys of \(name) already exist; set a distribution before "
                                   + "the first put of that name")
            }
        }
    }

    /// The relative accuracy of distribution metric `name`, or nil.
    public func distributionAccuracy(_ name: String) -> Double? {
        context.distributionAccuracy(of: name)
    }

    /// Replaces the sink. Allowed only before ``start()``.
    ///
    /// Throws `invalidState` once started or closed, or from a callback of
    /// this manager (an export callback runs under the lock this needs).
    public func setSink(_ sink: any MetricsSink) throws(MetricsError) {
        try checkCallable("setSink")
        try control.withLock { (c) throws(MetricsError) in
            guard c.phase == .new else { throw MetricsError(.invalidState, "the sink can only be set before start") }
            c.sink = sink
            c.asyncSink = sink as? AsyncSinkBridge
            c.batchExporter = sink as? any PendingBatchExporting
            c.dropCounter = sink as? any DropCountingSink
            context.eventSink = sink as? any EventfulMetricsSink
            context.keyChecker.withLock { $0 = sink as? any KeyCheckingSink }
        }
    }

    /// Replaces the sink with an async one (see ``AsyncMetricsSink``).
    /// Allowed only before ``start()``; throws like the synchronous form.
    public func setSink(_ sink: any AsyncMetricsSink) throws(MetricsError) {
        try setSink(AsyncSinkBridge(sink))
    }

    /// Sets (or, with nil, removes) a hook run at the start of every flush:
    /// the periodic one, ``flush()`` and close's final flush, on the thread
    /// making it, before the pending data is taken. It lets a layer that
    /// buffers observations before recording them (the Python binding)
    /// hand them over in time: puts from the hook, ``Metric/put(many:at:)``
    /// included, are part of that flush. At close's final flush puts are
    /// already refused. The hook runs like a sink callback: never
    /// concurrently with open, export or close, and flush, close or setSink
    /// called from it are refused with `invalidState`.
    ///
    /// With `runsBeforeClosing`, close (and a release without close) also
    /// runs it once before refusing puts, for a layer that must hand over
    /// what it holds (running totals, a buffer) so that the final flush
    /// exports it; skipped if an export still holds the manager when close
    /// begins (then until the export timeout).
    ///
    /// Allowed before start only (`invalidState` after).
    public func setFlushHook(_ hook: (@Sendable () -> Void)?, runsBeforeClosing: Bool = false) throws(MetricsError) {
        try checkCallable("setFlushHook")
        try control.withLock { (c) throws(MetricsError) in
            guard c.phase == .new, !context.gate.isClosing else {
                throw MetricsError(.invalidState, "the flush hook can only be set before start")
            }
            c.flushHook = hook
            c.flushHookRunsBeforeClosing = hook != nil && runsBeforeClosing
        }
    }
}

extension MetricsManager {
    /// Sets the function told, during a flush, which metrics that flush
    /// removed as idle (SPEC §10), for a layer that borrows ``Metric``s
    /// without retaining them (the C ABI's key index): it must stop handing
    /// them out, and keep each one it still needs alive (the flush drops
    /// the registry's references when the function returns). Called on the
    /// flushing thread with the manager's control lock held: it must not
    /// call back into this manager. Set once, before any flush.
    package func setKeyRemovalObserver(_ observer: @escaping @Sendable ([Metric]) -> Void) {
        control.withLock { $0.removalObserver = observer }
    }
}
