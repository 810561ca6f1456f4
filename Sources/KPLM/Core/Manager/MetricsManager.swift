import Synchronization

/// Owns the metric registry and flushes aggregated snapshots to a sink.
///
/// Every observation lands in a per-second bucket of (count, sum, min, max).
/// ``snapshots()`` reports the rolling window; ``flush()`` hands the sink what
/// has not been exported yet, exactly once. ``start()`` opens the sink and
/// starts the periodic uploader; ``close()`` makes a final flush.
///
/// All methods are thread-safe. Sink callbacks run with no lock held that
/// ``put(_:_:stream:shardId:errorCode:)`` needs; a callback calling ``flush()``
/// or ``close()`` on its own manager gets `invalidState`. In a child process
/// after fork(), a manager created before the fork refuses every call with
/// `invalidState` (its snapshots are empty); create a new one in the child.
public final class MetricsManager: Sendable {
    /// The configuration the manager was created with.
    public let configuration: MetricsConfiguration
    /// What the manager records.
    public var level: MetricsLevel { context.level }

    @usableFromInline let context: PutContext
    let registry: Registry
    /// At level none, the handle every ``metric(_:stream:shardId:errorCode:)`` returns.
    let noopMetric: Metric?

    enum Phase { case new, started, closed }

    /// Where the final export stands (SPEC §9: a failed one is kept and
    /// retried by a later close; the sink is closed once, after the export
    /// that succeeded, or at free).
    enum FinalOutcome {
        /// No final export has been started.
        case notAttempted
        /// A final export runs on `Finale.runner`.
        case running
        /// The last attempt failed; its data is retained for the next close.
        case failed(MetricsError)
        /// The final export succeeded and the sink's close was requested:
        /// later closes succeed at once.
        case delivered
    }

    /// The final export and who runs it. Lock order: `control`, then this.
    struct Finale {
        var outcome = FinalOutcome.notAttempted
        /// The thread running (or that ran) the latest attempt: the periodic
        /// uploader for the first, a one-shot thread for each retry.
        var runner: Uploader?
        /// Set by free (or the last release): a failed attempt then discards
        /// its data and closes the sink instead of keeping it for a retry.
        var freed = false
    }

    /// Lifecycle, sink and export state. Held while open, export and close
    /// run, which keeps them from running concurrently; never taken by puts.
    struct Control {
        var phase: Phase = .new
        var sink: any MetricsSink = NullSink()
        /// `sink` when it takes a flush's batch directly (decided at setSink,
        /// so a flush makes no dynamic cast: see ``MetricsManager/warmUpRuntime``).
        var batchExporter: (any PendingBatchExporting)?
        /// `sink` when it bridges an ``AsyncMetricsSink`` (decided at setSink):
        /// an async flush has it await the export on the flush's caller.
        var asyncSink: AsyncSinkBridge?
        var uploader: Uploader?
        /// Data whose export failed, offered again (merged) at the next flush.
        var retained: [MetricKey: (series: MetricSeries, pending: PendingExport)] = [:]
        /// Flushes so far (numbers the batches: ``MetricSeries/batchedByFlush``).
        var flushCount: UInt64 = 0
        /// When to check keys for idleness (SPEC §10).
        var idleWatch = IdleWatch()
        /// The registry generation whose export order the series' ranks
        /// (``MetricSeries/exportRank``) hold, and its number of keys.
        var rankedGeneration = -1
        var rankedCount = 0
        /// `sink` when it counts what it drops (decided at setSink).
        var dropCounter: (any DropCountingSink)?
        /// Run at the start of every flush (see ``MetricsManager/setFlushHook(_:)``).
        var flushHook: (@Sendable () -> Void)?
        /// Close runs `flushHook` once before refusing puts, too.
        var flushHookRunsBeforeClosing = false
        /// Told which metrics a flush removed as idle (see
        /// ``MetricsManager/setKeyRemovalObserver(_:)``).
        var removalObserver: (@Sendable ([Metric]) -> Void)?
    }

    let control = Locked(Control())
    /// How reads show the recorded keys; extra dimensions may be added
    /// until start, so readers take a copy.
    let view: Locked<OutputView>
    /// The uploader, also reachable when the control lock is held by an
    /// export that hangs (set once, by start).
    let startedUploader = Locked<Uploader?>(nil)
    /// The final export's state (see ``Finale``).
    let finale = Locked(Finale())
    var exportTimeout: Double { configuration.exportTimeoutMilliseconds / 1000 }

    /// Creates a manager in the "new" state.
    ///
    /// Throws `invalidArgument` for an out-of-range configuration.
    public init(configuration: MetricsConfiguration = MetricsConfiguration(),
                sink: (any MetricsSink)? = nil) throws(MetricsError) {
        try configuration.validate()
        _ = Self.warmUpRuntime
        self.configuration = configuration
        let clock = configuration.clock.map { ManagerClock.custom($0) } ?? .system
        let context = PutContext(level: configuration.level, clock: clock, windowSeconds: configuration.windowSeconds)
        self.context = context
        self.registry = Registry(maxMetrics: configuration.maxMetrics, context: context)
        context.registry = registry
        self.noopMetric = configuration.level == .none
            ? MetricSeries(key: MetricKey(name: "-"), context: context, isNoop: true) : nil
        self.view = Locked(OutputView(granularity: configuration.granularity,
                                        extras: configuration.extraDimensions,
                                        dimensionGranularities: configuration.dimensionGranularities,
                                        levelFilter: configuration.kplLevelFilter ? configuration.level : nil))
        context.owner = ObjectIdentifier(self)
        if configuration.level != .none {
            for (name, accuracy) in configuration.distributions { context.setDistributionAccuracy(accuracy, of: name) }
        }
        if let sink { try setSink(sink) }
    }

    /// Creates a manager in the "new" state, exporting to an async sink
    /// (see ``AsyncMetricsSink``).
    ///
    /// Throws `invalidArgument` for an out-of-range configuration.
    public convenience init(configuration: MetricsConfiguration = MetricsConfiguration(),
                            sink: any AsyncMetricsSink) throws(MetricsError) {
        try self.init(configuration: configuration, sink: AsyncSinkBridge(sink))
    }

    /// Creates a manager from individual settings (see ``MetricsConfiguration``).
    public convenience init(level: MetricsLevel = .none,
                            sink: (any MetricsSink)? = nil,
                            uploadInterval: Duration = .seconds(60),
                            windowSeconds: Int = 60,
                            maxMetrics: Int = 100_000,
                            exportTimeout: Duration = .seconds(10),
                            clock: (@Sendable () -> Double)? = nil) throws(MetricsError) {
        let configuration = MetricsConfiguration.settings(level, windowSeconds: windowSeconds, maxMetrics: maxMetrics,
                                                          clock: clock) {
            $0.uploadInterval = uploadInterval
            $0.exportTimeout = exportTimeout
        }
        try self.init(configuration: configuration, sink: sink)
    }

    /// Creates a manager from individual settings, intervals in
    /// milliseconds (the earlier spelling of the initializer above).
    @available(*, deprecated, message: "use uploadInterval: and exportTimeout: (Duration)")
    @_disfavoredOverload
    public convenience init(level: MetricsLevel = .none, sink: (any MetricsSink)? = nil, uploadIntervalMs: Double = 60_000,
                            windowSeconds: Int = 60, maxMetrics: Int = 100_000, exportTimeoutMs: Double = 10_000,
                            clock: (@Sendable () -> Double)? = nil) throws(MetricsError) {
        // Milliseconds as given: validation refuses what a Duration could not hold (NaN).
        try self.init(configuration: .settings(level, windowSeconds: windowSeconds, maxMetrics: maxMetrics, clock: clock) {
            $0.uploadIntervalMilliseconds = uploadIntervalMs
            $0.exportTimeoutMilliseconds = exportTimeoutMs
        }, sink: sink)
    }

    /// The dynamic casts setSink makes and the lazily initialised globals
    /// puts, flushes and queries use, made once at the first manager's
    /// creation. The Swift runtime initialises what a cast needs the first
    /// time, under a once-lock; a fork() while another thread holds it would
    /// leave a child's first cast waiting forever. Done early, that window
    /// is the first manager's creation instead of any later setSink.
    ///
    /// The same goes for the lazily initialised globals a put, a flush or a
    /// query uses (each is initialised under a once-lock on first use): a
    /// fork() while another thread runs one of those first uses leaves it
    /// "in progress" for ever in the child. They are all touched here. A
    /// layer with sinks of its own (the C ABI) warms their casts with
    /// ``warmUpCasts(of:)`` before it creates its first manager.
    private static let warmUpRuntime: Bool = {
        var found = warmUpCasts(of: [NullSink(), InMemorySink()])
        found += MetricStatistics.empty.count
        found += Registry.refusedKey.name.utf8.count + Registry.droppedKey.name.utf8.count
        found += KPLMetrics.all.count + Validation.maxNameBytes + Validation.maxDimensionBytes
        found += Validation.windowSecondsRange.count
        found += CellCollector.isAvailable ? 1 : 0
        found += ForkGuard.inheritedError.message.utf8.count
        found += WriterIndices.capacity
        found += WriterCell.retiredPlaceholderBits != 0 ? 1 : 0
        found += CellTable.retiredOverflowBits != 0 ? 1 : 0
        return found >= 0
    }()

    /// Makes the dynamic casts ``setSink(_:)`` makes on each of `sinks`
    /// (see ``warmUpRuntime``). Thread-safe; returns a count to keep.
    package static func warmUpCasts(of sinks: [any MetricsSink]) -> Int {
        var found = 0
        for sink in sinks {
            if sink as? any EventfulMetricsSink != nil { found += 1 }
            if sink as? any PendingBatchExporting != nil { found += 1 }
            if sink as? any DropCountingSink != nil { found += 1 }
            if sink as? any KeyCheckingSink != nil { found += 1 }
        }
        return found
    }

    deinit {
        // A manager dropped without close: stop the uploader and make the
        // final flush, as close would, then discard what could not be
        // delivered (not in a forked child: see ForkGuard). After kplm_free
        // this finds everything done.
        if !context.isInherited { shutdown() }
    }

    /// Whether this manager was created before a fork() of this (child)
    /// process: every call on it is then refused with `invalidState`.
    public var isInheritedAcrossFork: Bool { context.isInherited }
}
