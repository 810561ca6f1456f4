import CKPLM
import Glibc
/// Settings of a ``MetricsManager``. Defaults match `kplm_config_init`.
public struct MetricsConfiguration: Sendable {
    /// What is recorded. Default ``MetricsLevel/none``.
    public var level: MetricsLevel = .none
    /// Period of the background flush, in milliseconds; finite and > 0.
    public var uploadIntervalMs: Double = 60_000
    /// Length of the rolling window, in seconds: 1...3600.
    public var windowSeconds: Int = 60
    /// Cap on distinct metric keys; > 0.
    public var maxMetrics: Int = 100_000
    /// Manager clock in monotonic seconds; nil = the system monotonic clock.
    public var clock: (@Sendable () -> Double)? = nil
    /// How long, in milliseconds, a flush waits for an export still running
    /// on another thread, and close for the final export, before giving up
    /// with `sinkFailed` (nothing is lost: the data stays queued, and the
    /// final export still completes in the background). Finite and > 0.
    public var exportTimeoutMs: Double = 10_000
    /// KPL rollups: nil (the default) shows every key as recorded, with the
    /// dimensions "stream", "shard", "error_code"; a granularity shows the
    /// KPL's tree instead (see ``MetricsGranularity``), with the KPL's
    /// dimension names and order.
    public var granularity: MetricsGranularity? = nil
    /// Dimensions added to every exported and reported line (see
    /// ``ExtraDimension``). More can be added before start with
    /// ``MetricsManager/addExtraDimension(_:)``.
    public var extraDimensions: [ExtraDimension] = []
    /// When true, only metrics whose KPL level (``KPLMetrics/level(of:)``) is
    /// within ``level`` are exported and reported, as the KPL uploads them.
    /// Default false: every recorded metric is shown.
    public var kplLevelFilter: Bool = false
    /// The namespace sinks publish under (CloudWatch's): 1...255 bytes.
    public var namespace: String = "KinesisProducerLibrary"

    /// The default configuration.
    public init() {}

    /// Throws `invalidArgument` if a field is out of range.
    func validate() throws(MetricsError) {
        guard uploadIntervalMs.isFinite && uploadIntervalMs > 0 else {
            throw MetricsError(.invalidArgument, "upload interval must be finite and > 0 ms, got \(uploadIntervalMs)")
        }
        guard Validation.windowSecondsRange.contains(windowSeconds) else {
            throw MetricsError(.invalidArgument, "window must be 1...3600 seconds, got \(windowSeconds)")
        }
        guard exportTimeoutMs.isFinite && exportTimeoutMs > 0 else {
            throw MetricsError(.invalidArgument, "export timeout must be finite and > 0 ms, got \(exportTimeoutMs)")
        }
        guard maxMetrics > 0 else {
            throw MetricsError(.invalidArgument, "max metrics must be > 0, got \(maxMetrics)")
        }
        try Validation.checkName(namespace, label: "namespace")
        for extra in extraDimensions { try extra.validate() }
    }
}

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

    let context: PutContext
    private let registry: Registry
    /// Puts by names from C: argument bytes → metric, without Strings.
    let cKeys: CKeyIndex
    /// At level none, the handle every ``metric(_:stream:shardId:errorCode:)`` returns.
    private let noopMetric: Metric?

    private enum Phase { case new, started, closed }

    /// Where the final export stands (SPEC §9: a failed one is kept and
    /// retried by a later close; the sink is closed once, after the export
    /// that succeeded, or at free).
    private enum FinalOutcome {
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
    private struct Finale {
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
    private struct Control {
        var phase: Phase = .new
        var sink: any MetricsSink = NullSink()
        /// `sink` when it takes series directly (decided at setSink, so a
        /// flush makes no dynamic cast: see ``MetricsManager/warmUpCasts``).
        var seriesExporter: (any SeriesExporting)?
        var uploader: Uploader?
        /// Data whose export failed, offered again (merged) at the next flush.
        var retained: [MetricKey: PendingExport] = [:]
        /// `sink` when it counts what it drops (decided at setSink).
        var dropCounter: (any DropCountingSink)?
        /// Run at the start of every flush (see ``MetricsManager/setFlushHook(_:)``).
        var flushHook: (@Sendable () -> Void)?
    }

    private let control = Locked(Control())
    /// How reads show the recorded keys; extra dimensions may be added
    /// until start, so readers take a copy.
    private let shape: Locked<OutputShape>
    /// The namespace as a C string, for kplm_namespace (freed with the manager).
    nonisolated(unsafe) let namespaceCString: UnsafeMutablePointer<CChar>
    /// The uploader, also reachable when the control lock is held by an
    /// export that hangs (set once, by start).
    private let uploaderSlot = Locked<Uploader?>(nil)
    /// The final export's state (see ``Finale``).
    private let finale = Locked(Finale())
    private var exportTimeout: Double { configuration.exportTimeoutMs / 1000 }

    /// Creates a manager in the "new" state.
    ///
    /// Throws `invalidArgument` for an out-of-range configuration.
    public init(configuration: MetricsConfiguration = MetricsConfiguration(),
                sink: (any MetricsSink)? = nil) throws(MetricsError) {
        try configuration.validate()
        _ = Self.warmUpCasts
        self.configuration = configuration
        let clock = configuration.clock.map { ManagerClock.custom($0) } ?? .system
        let context = PutContext(level: configuration.level, clock: clock, windowSeconds: configuration.windowSeconds)
        self.context = context
        self.registry = Registry(maxMetrics: configuration.maxMetrics, context: context)
        // At SUMMARY several argument tuples map to one metric: room for a few each.
        self.cKeys = CKeyIndex(maxEntries: configuration.maxMetrics > 1 << 28 ? 1 << 30 : configuration.maxMetrics * 4)
        self.noopMetric = configuration.level == .none
            ? Metric(key: MetricKey(name: "-"), context: context, isNoop: true) : nil
        self.shape = Locked(OutputShape(granularity: configuration.granularity,
                                        extras: configuration.extraDimensions,
                                        levelFilter: configuration.kplLevelFilter ? configuration.level : nil))
        self.namespaceCString = strdup(configuration.namespace)
        context.owner = ObjectIdentifier(self)
        if let sink { try setSink(sink) }
    }

    /// Creates a manager from individual settings (see ``MetricsConfiguration``).
    public convenience init(level: MetricsLevel = .none,
                            sink: (any MetricsSink)? = nil,
                            uploadIntervalMs: Double = 60_000,
                            windowSeconds: Int = 60,
                            maxMetrics: Int = 100_000,
                            exportTimeoutMs: Double = 10_000,
                            clock: (@Sendable () -> Double)? = nil) throws(MetricsError) {
        var configuration = MetricsConfiguration()
        configuration.level = level
        configuration.uploadIntervalMs = uploadIntervalMs
        configuration.windowSeconds = windowSeconds
        configuration.maxMetrics = maxMetrics
        configuration.exportTimeoutMs = exportTimeoutMs
        configuration.clock = clock
        try self.init(configuration: configuration, sink: sink)
    }

    /// The dynamic casts setSink makes, made once at the first manager's
    /// creation. The Swift runtime initialises what a cast needs the first
    /// time, under a once-lock; a fork() while another thread holds it would
    /// leave a child's first cast waiting forever. Done early, that window
    /// is the first kplm_new instead of any later setSink.
    ///
    /// The same goes for the lazily initialised globals a put, a flush or a
    /// query uses (each is initialised under a once-lock on first use): a
    /// fork() while another thread runs one of those first uses leaves it
    /// "in progress" for ever in the child. They are all touched here.
    private static let warmUpCasts: Bool = {
        let sinks: [any MetricsSink] = [NullSink(), InMemorySink(), CallbackSink(kplm_sink()),
                                        EventfulCallbackSink(kplm_sink())]
        var found = 0
        for sink in sinks {
            if sink as? any EventfulMetricsSink != nil { found += 1 }
            if sink as? any SeriesExporting != nil { found += 1 }
            if sink as? any DropCountingSink != nil { found += 1 }
        }
        found += MetricStatistics.empty.count
        found += Registry.refusedKey.name.utf8.count + Registry.droppedKey.name.utf8.count
        found += KPLMetrics.all.count + Validation.maxNameBytes + Validation.maxDimensionBytes
        found += Validation.windowSecondsRange.count
        found += CellCollector.isAvailable ? 1 : 0
        found += ForkGuard.inheritedError.message.utf8.count
        found += WriterIndices.capacity + MetricSeries.maxWriters
        return found >= 0
    }()

    deinit {
        // A manager dropped without close: stop the uploader and make the
        // final flush, as close would, then discard what could not be
        // delivered (not in a forked child: see ForkGuard). After kplm_free
        // this finds everything done.
        if !context.isInherited { shutdown() }
        free(namespaceCString)
    }

    /// Whether this manager was created before a fork() of this (child)
    /// process: every call on it is then refused with `invalidState`.
    public var isInheritedAcrossFork: Bool { context.isInherited }

    // MARK: Recording

    /// Records one observation of `value` (default 1) for the key formed from
    /// `name` and the dimensions the level keeps. Works before ``start()``.
    ///
    /// Throws `invalidArgument` (empty or over-long name or dimension, NUL,
    /// NaN or infinite value), `closed` once close has begun, `limitReached`
    /// for a new key beyond ``MetricsConfiguration/maxMetrics``.
    public func put(_ name: String, _ value: Double = 1, stream: String? = nil,
                    shardId: String? = nil, errorCode: String? = nil) throws(MetricsError) {
        if context.level == .none {
            // Nothing is recorded, so only what costs nothing is checked.
            guard !name.isEmpty else { throw MetricsError(.invalidArgument, "metric name is empty") }
            try Validation.checkValue(value)
            try context.checkNotInherited()
            if context.gate.isClosing { throw MetricsError(.closed, "the manager is closed") }
            return
        }
        try Validation.checkValue(value)
        try Validation.checkName(name)
        try Validation.checkDimension(stream, "stream")
        try Validation.checkDimension(shardId, "shard id")
        try Validation.checkDimension(errorCode, "error code")
        try putValidated(key: formKey(name, stream, shardId, errorCode), value)
    }

    /// Records an observation whose inputs are already validated.
    func putValidated(key: MetricKey, _ value: Double) throws(MetricsError) {
        try metricForPut(key: key).record(value).check()
    }

    /// The metric a put on a validated key records on, created if new.
    /// Runs under a put frame (it may hold the registry lock: see
    /// ``CallbackGuard``); not on the hot path, which finds keys resolved.
    func metricForPut(key: MetricKey) throws(MetricsError) -> Metric {
        try context.checkNotInherited()
        // Not to create keys after close began; the put itself checks again.
        if context.gate.isClosing { throw MetricsError(.closed, "the manager is closed") }
        return try CallbackGuard.run(for: ObjectIdentifier(self), kind: .put) { () throws(MetricsError) in
            try registry.metric(for: key)
        }
    }

    /// Resolves a key once, for repeated ``Metric/put(_:)`` calls. Same checks
    /// as ``put(_:_:stream:shardId:errorCode:)``. At level none the handle's
    /// puts do nothing.
    public func metric(_ name: String, stream: String? = nil, shardId: String? = nil,
                       errorCode: String? = nil) throws(MetricsError) -> Metric {
        if noopMetric != nil {
            guard !name.isEmpty else { throw MetricsError(.invalidArgument, "metric name is empty") }
            return try metricValidated(key: MetricKey(name: name))
        }
        try Validation.checkName(name)
        try Validation.checkDimension(stream, "stream")
        try Validation.checkDimension(shardId, "shard id")
        try Validation.checkDimension(errorCode, "error code")
        return try metricValidated(key: formKey(name, stream, shardId, errorCode))
    }

    /// Resolves a key whose inputs are already validated.
    func metricValidated(key: MetricKey) throws(MetricsError) -> Metric {
        try context.checkNotInherited()
        if let noopMetric {
            if context.gate.isClosing { throw MetricsError(.closed, "the manager is closed") }
            return noopMetric
        }
        // A put frame while admitted: a signal handler interrupting this
        // gets invalidState from close instead of waiting for it.
        return try CallbackGuard.run(for: ObjectIdentifier(self), kind: .put) { () throws(MetricsError) in
            guard context.gate.enter() != nil else { throw MetricsError(.closed, "the manager is closed") }
            defer { context.gate.leave() }
            return try registry.metric(for: key)
        }
    }

    /// The key a put forms at this manager's level: SUMMARY drops the shard
    /// and the error code.
    func formKey(_ name: String, _ stream: String?, _ shardId: String?, _ errorCode: String?) -> MetricKey {
        context.level == .detailed
            ? MetricKey(name: name, stream: stream, shardId: shardId, errorCode: errorCode)
            : MetricKey(name: name, stream: stream)
    }

    // MARK: Reading

    /// Rolling-window statistics of every metric with a live bucket, sorted
    /// in export order. Empty at level none. Works in every state.
    public func snapshots() -> [MetricSnapshot] {
        let shape = shape.withLock { $0 }
        let namespace = configuration.namespace
        var result: [MetricSnapshot] = []
        guard shape.isIdentity else {
            // KPL output: windows merged into the lines of the tree.
            var leaves: [(MetricKey, (MetricStatistics, Double, Double, Double))] = []
            forEachLiveWindow { series, statistics, start, end, timestamp in
                leaves.append((series.key, (statistics, start, end, timestamp)))
                return true
            }
            for (line, (statistics, start, end, timestamp)) in shape.shape(leaves, merge: { a, b in
                a.0.merge(b.0)
                a.1 = Swift.min(a.1, b.1)
                if b.2 > a.2 { a.2 = b.2; a.3 = b.3 }
            }) {
                result.append(MetricSnapshot(name: line.name, count: statistics.count, sum: statistics.sum,
                                             min: statistics.min, max: statistics.max, dimensions: line.dimensions,
                                             windowStart: start, windowEnd: end, timestampUnix: timestamp,
                                             namespace: namespace))
            }
            return result
        }
        forEachLiveWindow { series, statistics, start, end, timestamp in
            result.append(MetricSnapshot(name: series.key.name, count: statistics.count, sum: statistics.sum,
                                         min: statistics.min, max: statistics.max, dimensions: series.dimensions,
                                         windowStart: start, windowEnd: end, timestampUnix: timestamp,
                                         namespace: namespace))
            return true
        }
        return result
    }

    /// Whether reads show every key as recorded (no rollups, extra
    /// dimensions or level filter): the C reads then borrow each key's C
    /// strings.
    var showsKeysAsRecorded: Bool { shape.withLock { $0.isIdentity } }

    /// Adds a dimension to every exported and reported line. Allowed only
    /// before ``start()``.
    ///
    /// Throws `invalidArgument` for an empty or over-long name or value,
    /// `invalidState` once started or closed.
    public func addExtraDimension(_ extra: ExtraDimension) throws(MetricsError) {
        try context.checkNotInherited()
        try extra.validate()
        guard !CallbackGuard.isInsideCallback(of: ObjectIdentifier(self)) else {
            throw MetricsError(.invalidState, "addExtraDimension called from a callback of the same manager")
        }
        try control.withLock { (c) throws(MetricsError) in
            guard c.phase == .new, !context.gate.isClosing else {
                throw MetricsError(.invalidState, "extra dimensions can only be added before start")
            }
            shape.withLock { s in
                s = OutputShape(granularity: s.granularity, extras: s.extras + [extra], levelFilter: s.levelFilter)
            }
        }
    }

    // MARK: Queries

    /// Statistics of one key (formed as a put with these arguments would
    /// form it) over the last `lastSeconds` seconds (1...window, the current
    /// second included), or since the manager was created when nil. An
    /// unknown key has count 0.
    ///
    /// Throws `invalidArgument` for a bad name or dimension or an
    /// out-of-range `lastSeconds`.
    public func statistics(_ name: String, stream: String? = nil, shardId: String? = nil, errorCode: String? = nil,
                           lastSeconds: Int? = nil) throws(MetricsError) -> MetricStatistics {
        try Validation.checkName(name)
        try Validation.checkDimension(stream, "stream")
        try Validation.checkDimension(shardId, "shard id")
        try Validation.checkDimension(errorCode, "error code")
        return try statistics(key: formKey(name, stream, shardId, errorCode), lastSeconds: lastSeconds)
    }

    /// ``statistics(_:stream:shardId:errorCode:lastSeconds:)`` for a validated key.
    func statistics(key: MetricKey, lastSeconds: Int?) throws(MetricsError) -> MetricStatistics {
        try checkQuery(lastSeconds)
        guard context.level != .none, let metric = registry.existing(key) else { return .empty }
        return read([metric.series], lastSeconds: lastSeconds)
    }

    /// Statistics of every key with this metric name, merged (the KPL's
    /// per-name view), over the last `lastSeconds` seconds or since creation.
    public func statistics(name: String, lastSeconds: Int? = nil) throws(MetricsError) -> MetricStatistics {
        try Validation.checkName(name)
        try checkQuery(lastSeconds)
        guard context.level != .none else { return .empty }
        return read(registry.allSeries.filter { ByteIdentity.equal($0.key.name, name) }, lastSeconds: lastSeconds)
    }

    private func checkQuery(_ lastSeconds: Int?) throws(MetricsError) {
        try context.checkNotInherited()
        if let lastSeconds, !(1...configuration.windowSeconds).contains(lastSeconds) {
            throw MetricsError(.invalidArgument,
                               "seconds must be 1...\(configuration.windowSeconds) (the window), got \(lastSeconds)")
        }
    }

    private func read(_ series: [MetricSeries], lastSeconds: Int?) -> MetricStatistics {
        guard !series.isEmpty else { return .empty }
        context.collector.collect(series, windowSeconds: context.windowSeconds)
        var merged = MetricStatistics.empty
        if let lastSeconds {
            let nowSecond = ManagerClock.second(of: context.clock.now())
            for s in series {
                if let reading = s.window(at: nowSecond, windowSeconds: context.windowSeconds,
                                          lastSeconds: Int64(lastSeconds)) {
                    merged.merge(reading.statistics)
                }
            }
        } else {
            for s in series { merged.merge(s.total) }
        }
        return merged
    }

    /// (count, sum, min, max) of every metric with a live bucket.
    public func snapshot() -> [MetricKey: MetricStatistics] {
        var result: [MetricKey: MetricStatistics] = [:]
        forEachLiveWindow { series, statistics, _, _, _ in
            result[series.key] = statistics
            return true
        }
        return result
    }

    /// Calls `body` with the rolling window of every metric with a live
    /// bucket, in export order, until it returns false: the series, its
    /// statistics, the window's start and end (manager seconds) and the
    /// end's Unix time. No lock is held while `body` runs.
    func forEachLiveWindow(_ body: (MetricSeries, MetricStatistics, Double, Double, Double) -> Bool) {
        guard context.level != .none, !context.isInherited else { return }
        let now = context.clock.now()
        let wall = ManagerClock.wallNow()
        let nowSecond = ManagerClock.second(of: now)
        let all = registry.seriesInExportOrder
        context.collector.collect(all, windowSeconds: context.windowSeconds)
        for series in all {
            guard let reading = series.window(at: nowSecond, windowSeconds: context.windowSeconds) else { continue }
            let end = Double(reading.newestSecond + 1)
            if !body(series, reading.statistics, Double(reading.oldestSecond), end, wall - (now - end)) { return }
        }
    }

    /// Number of distinct keys recorded (the refused-puts counter excluded).
    public var metricCount: Int { registry.count }

    // MARK: Lifecycle

    /// Replaces the sink. Allowed only before ``start()``.
    ///
    /// Throws `invalidState` once started or closed, or from a callback of
    /// this manager (an export callback runs under the lock this needs).
    public func setSink(_ sink: any MetricsSink) throws(MetricsError) {
        try context.checkNotInherited()
        guard !CallbackGuard.isInsideCallback(of: ObjectIdentifier(self)) else {
            throw MetricsError(.invalidState, "setSink called from a callback of the same manager")
        }
        try control.withLock { (c) throws(MetricsError) in
            guard c.phase == .new else { throw MetricsError(.invalidState, "the sink can only be set before start") }
            c.sink = sink
            c.seriesExporter = sink as? any SeriesExporting
            c.dropCounter = sink as? any DropCountingSink
            context.eventSink = sink as? any EventfulMetricsSink
        }
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
    /// Allowed before start only (`invalidState` after).
    public func setFlushHook(_ hook: (@Sendable () -> Void)?) throws(MetricsError) {
        try context.checkNotInherited()
        guard !CallbackGuard.isInsideCallback(of: ObjectIdentifier(self)) else {
            throw MetricsError(.invalidState, "setFlushHook called from a callback of the same manager")
        }
        try control.withLock { (c) throws(MetricsError) in
            guard c.phase == .new, !context.gate.isClosing else {
                throw MetricsError(.invalidState, "the flush hook can only be set before start")
            }
            c.flushHook = hook
        }
    }

    /// Opens the sink, then starts the periodic uploader. Does nothing at
    /// level none.
    ///
    /// Throws `invalidState` if already started or closed (or from a
    /// callback), `sinkFailed` if the sink's open threw (the manager stays
    /// new; start may be retried), `outOfMemory` if no thread could start.
    public func start() throws(MetricsError) {
        try context.checkNotInherited()
        guard context.level != .none else { return }
        guard !CallbackGuard.isInsideCallback(of: ObjectIdentifier(self)) else {
            throw MetricsError(.invalidState, "start called from a callback of the same manager")
        }
        try control.withLock { (c) throws(MetricsError) in
            guard c.phase == .new, !context.gate.isClosing else {
                throw MetricsError(.invalidState, c.phase == .started ? "already started" : "closed")
            }
            let sink = c.sink
            do {
                try CallbackGuard.run(for: ObjectIdentifier(self)) { try sink.open() }
            } catch {
                throw MetricsError(.sinkFailed, "the sink failed to open: \(error)")
            }
            let intervalSeconds = configuration.uploadIntervalMs / 1000
            guard let uploader = Uploader(intervalSeconds: intervalSeconds, tick: { [weak self] in
                guard let self else { return false }
                _ = try? self.flush()
                return true
            }) else {
                CallbackGuard.run(for: ObjectIdentifier(self)) { sink.close() }
                throw MetricsError(.outOfMemory, "could not start the uploader thread")
            }
            c.uploader = uploader
            c.phase = .started
            uploaderSlot.withLock { $0 = uploader }
            context.sinkToClose = sink
            if context.eventSink != nil { context.gate.markStarted() }
        }
    }

    /// Hands the sink everything not exported yet — one snapshot per key,
    /// merged over its unexported seconds — synchronously on this thread.
    /// Does nothing at level none or when there is nothing new.
    ///
    /// Throws `invalidState` before start or from a callback of this
    /// manager, `closed` after close, `sinkFailed` if the export threw (the
    /// data is kept and offered again at the next flush).
    public func flush() throws(MetricsError) {
        try context.checkNotInherited()
        guard context.level != .none else { return }
        guard !isBusyOnThisThread() else {
            throw MetricsError(.invalidState, "flush called from a callback of the same manager, "
                               + "or from a signal handler that interrupted a put on it")
        }
        // Once close has begun the final flush owns the data (and may hold
        // the control lock for as long as a dead sink takes).
        guard !context.gate.isClosing else { throw MetricsError(.closed, "the manager is closed") }
        let done: Void? = try control.withLock(timeout: exportTimeout) { (c) throws(MetricsError) in
            switch c.phase {
            case .new: throw MetricsError(.invalidState, "flush before start")
            case .closed: throw MetricsError(.closed, "the manager is closed")
            case .started:
                try Self.exportPending(&c, registry: registry, context: context, shape: shape.withLock { $0 },
                                       namespace: configuration.namespace)
            }
        }
        guard done != nil else {
            throw MetricsError(.sinkFailed, "an export on another thread is still running after "
                               + "\(configuration.exportTimeoutMs) ms; the data stays queued")
        }
    }

    /// Refuses further puts, waits for puts in progress, then has the
    /// uploader thread make the final flush and close the sink. Idempotent
    /// once the final export was delivered. Before start it calls no sink
    /// function.
    ///
    /// Returns within ``MetricsConfiguration/exportTimeoutMs`` in total (one
    /// budget for every wait: puts in progress, a running export, the final
    /// export): a dead sink cannot hang close. If that time runs out, close
    /// throws `sinkFailed` and the final export and the sink's close still
    /// happen, in the background, when the sink returns.
    ///
    /// If the final export fails, close throws `sinkFailed` and keeps the
    /// data: a later close retries that export (same bound) and succeeds
    /// once the sink took it. The sink's close runs exactly once: after the
    /// final export that succeeded, or when the manager is released
    /// (``shutdown()``), which discards what is still pending.
    ///
    /// Throws `invalidState` from a callback of this manager, or from a
    /// signal handler that interrupted a put on this thread (it would wait
    /// for itself); nothing changes then. Puts are refused from the start of
    /// any other close, whatever it returns.
    public func close() throws(MetricsError) {
        try close(until: ManagerClock.monotonicNow() + exportTimeout)
    }

    /// ``close()`` with every wait ending at `deadline` (monotonic seconds).
    private func close(until deadline: Double) throws(MetricsError) {
        try context.checkNotInherited()
        guard !isBusyOnThisThread() else {
            throw MetricsError(.invalidState, "close called from a callback of the same manager, "
                               + "or from a signal handler that interrupted a put on it")
        }
        context.gate.beginClosing()
        guard context.level != .none else { return }
        if finale.withLock({ f in
            if case .delivered = f.outcome { return true }
            return f.freed
        }) { return }
        // Every put admitted before the closing bit finishes recording before
        // the final flush; every later one is refused. Puts run no callback
        // while admitted, so this wait is short (bounded all the same).
        guard context.gate.waitForPutsInProgress(until: deadline),
              context.collector.waitForSections(registry.allSeries, until: deadline) else {
            throw MetricsError(.sinkFailed, "puts were still in progress after "
                               + "\(configuration.exportTimeoutMs) ms; nothing was exported, close may be retried")
        }

        // A manager never started is simply marked closed: no sink call.
        let uploader: Uploader?
        if let found = control.withLock(timeout: Self.remaining(deadline), { c -> Uploader? in
            if c.phase == .new { c.phase = .closed }
            return c.uploader
        }) {
            uploader = found
        } else {
            // The control lock is held by an export that has not returned:
            // the manager is started, so the uploader is known.
            uploader = uploaderSlot.withLock { $0 }
            guard uploader != nil else {
                throw MetricsError(.sinkFailed, "the sink's open did not return within the export timeout")
            }
        }
        guard let uploader else { return }

        // Start an attempt unless one runs (then wait for it) or succeeded.
        let work = finalWork()
        let attempt = finale.withLock { f -> (runner: Uploader, work: (@Sendable () -> Void)?)?? in
            switch f.outcome {
            case .delivered: return .some(nil)
            case .running: return f.runner.map { ($0, nil) }
            case .notAttempted:
                // The periodic uploader stops ticking and runs it.
                f.outcome = .running
                f.runner = uploader
                return (uploader, work)
            case .failed:
                // A retry: the uploader has exited; a one-shot thread runs it,
                // so that this close too can stop waiting for a dead sink.
                guard let retry = Uploader(intervalSeconds: 1e9, tick: { false }) else { return nil }
                f.outcome = .running
                f.runner = retry
                return (retry, work)
            }
        }
        guard let attempt else {
            throw MetricsError(.outOfMemory, "could not start a thread for the final export")
        }
        guard let (runner, handOver) = attempt else { return }
        let finished = runner.finish(timeout: Self.remaining(deadline), finalWork: handOver)
        let outcome = finale.withLock { $0.outcome }
        switch outcome {
        case .delivered: return
        case .failed(let error): throw error
        case .running, .notAttempted:
            _ = finished
            throw MetricsError(.sinkFailed, "the final export did not finish within "
                               + "\(configuration.exportTimeoutMs) ms; it completes in the background")
        }
    }

    /// The final export, run by the uploader (or a retry's thread). It
    /// captures the parts it needs, never `self`: close may run from
    /// deinit, and the work may outlive a timed-out close.
    private func finalWork() -> @Sendable () -> Void {
        let (control, registry, context, finale) = (control, registry, context, finale)
        let (shape, namespace) = (shape.withLock { $0 }, configuration.namespace)
        return {
            control.withLock { c in
                c.phase = .closed
                var failure: MetricsError?
                do throws(MetricsError) {
                    // What the sink dropped in the final export is exported at once.
                    if try Self.exportPending(&c, registry: registry, context: context, shape: shape,
                                              namespace: namespace) {
                        try Self.exportPending(&c, registry: registry, context: context, shape: shape,
                                               namespace: namespace)
                    }
                } catch {
                    failure = error
                }
                let closeSink = finale.withLock { f -> Bool in
                    guard let failure else {
                        f.outcome = .delivered
                        return true
                    }
                    f.outcome = .failed(failure)
                    // Released meanwhile: nobody will retry; discard and close.
                    if f.freed { c.retained = [:] }
                    return f.freed
                }
                // Closed now, or by the last record still running.
                if closeSink { context.requestSinkClose() }
            }
        }
    }

    /// What is left of a budget ending at `deadline` (never negative).
    private static func remaining(_ deadline: Double) -> Double {
        Swift.max(0, deadline - ManagerClock.monotonicNow())
    }

    /// Whether this thread is running a callback or a put of this manager
    /// (a signal handler that interrupted one, or a sink callback): close
    /// and flush would then wait for their own thread. Off the hot path.
    private func isBusyOnThisThread() -> Bool {
        CallbackGuard.isInsideCallback(of: ObjectIdentifier(self))
            || context.collector.isOwnSectionOpen(registry.allSeries)
    }

    /// Whether close or flush called now on this thread would be refused
    /// with `invalidState` (for kplm_free, which then does nothing).
    var isReentrantCall: Bool { isBusyOnThisThread() }

    /// What kplm_free and the last release do: close (one export timeout in
    /// total), then give up on what could not be delivered: the pending
    /// data is discarded and the sink closed, unless an export still runs
    /// (it then closes the sink when it returns). Idempotent.
    func shutdown() {
        let deadline = ManagerClock.monotonicNow() + exportTimeout
        _ = try? close(until: deadline)
        guard context.level != .none else { return }
        // Lock order: control, then finale. A timed-out lock means an
        // export holds it: mark the release only, and let it finish.
        let closeSink = control.withLock(timeout: Self.remaining(deadline)) { c -> Bool in
            finale.withLock { f -> Bool in
                f.freed = true
                switch f.outcome {
                case .running, .delivered: return false
                case .failed:
                    c.retained = [:]
                    return true
                case .notAttempted:
                    // Never started (nothing to close), or close gave up
                    // waiting for puts: the uploader may still tick, so the
                    // sink is left open rather than closed under an export.
                    return false
                }
            }
        }
        if let closeSink {
            if closeSink { context.requestSinkClose() }
        } else {
            let failed = finale.withLock { f -> Bool in
                f.freed = true
                if case .failed = f.outcome { return true }
                return false
            }
            if failed { context.requestSinkClose() }
        }
    }

    /// Keys whose failed export is retained for the next flush (for tests:
    /// bounded by the number of keys, since retained data merges per key).
    var retainedKeyCount: Int { control.withLock { $0.retained.count } }

    /// Whether close has begun.
    public var isClosed: Bool { context.gate.isClosing }

    // MARK: Export

    /// Takes every key's unexported data, merges what a failed export left,
    /// and exports it. Called with the control lock held. Returns whether
    /// the sink reported drops (counted under `KplmSinkDropped`, pending
    /// for the next export).
    @discardableResult
    private static func exportPending(_ c: inout Control, registry: Registry, context: PutContext,
                                      shape: OutputShape, namespace: String) throws(MetricsError) -> Bool {
        // A layer that buffers puts hands them over first (setFlushHook).
        if let hook = c.flushHook { CallbackGuard.run(for: context.owner!) { hook() } }
        let all = registry.seriesInExportOrder
        context.collector.collect(all, windowSeconds: context.windowSeconds)
        // In export order already: no sort. Data a failed export left
        // (retained) is merged into its key's new data.
        var retained = c.retained
        c.retained = [:]
        var batch: [(series: MetricSeries, pending: PendingExport)] = []
        for series in all {
            var pending = series.takePending()
            if !retained.isEmpty, let old = retained.removeValue(forKey: series.key) {
                if pending == nil { pending = old } else { pending!.merge(old) }
            }
            if let pending { batch.append((series, pending)) }
        }
        guard !batch.isEmpty else { return false }
        let now = context.clock.now()
        let wall = ManagerClock.wallNow()
        let sink = c.sink
        let seriesExporter = shape.isIdentity ? c.seriesExporter : nil
        do {
            try CallbackGuard.run(for: context.owner!) {
                if let direct = seriesExporter {
                    try direct.export(batch, now: now, wall: wall)
                } else if shape.isIdentity {
                    try sink.export(batch.map { series, pending in
                        Self.snapshot(series.key.name, series.dimensions, pending, now: now, wall: wall,
                                      namespace: namespace)
                    })
                } else {
                    // KPL output: each key's data merged into its lines of the tree.
                    try sink.export(shape.shape(batch.map { ($0.series.key, $0.pending) }, merge: { $0.merge($1) })
                        .map { line, pending in
                            Self.snapshot(line.name, line.dimensions, pending, now: now, wall: wall,
                                          namespace: namespace)
                        })
                }
            }
        } catch {
            // Drops of a failed export are not counted: its data comes back.
            _ = c.dropCounter?.takeDroppedCount()
            c.retained = Dictionary(uniqueKeysWithValues: batch.map { ($0.series.key, $0.pending) })
            throw MetricsError(.sinkFailed, "the sink failed to export \(batch.count) snapshots: \(error)")
        }
        guard let dropped = c.dropCounter?.takeDroppedCount(), dropped > 0 else { return false }
        registry.countSinkDrops(dropped)
        return true
    }

    static func snapshot(_ name: String, _ dimensions: [MetricDimension], _ pending: PendingExport,
                         now: Double, wall: Double, namespace: String) -> MetricSnapshot {
        let windowEnd = Double(pending.lastSecond + 1)
        let statistics = pending.statistics
        return MetricSnapshot(name: name, count: statistics.count, sum: statistics.sum,
                              min: statistics.min, max: statistics.max, dimensions: dimensions,
                              windowStart: Double(pending.firstSecond), windowEnd: windowEnd,
                              timestampUnix: wall - (now - windowEnd), namespace: namespace)
    }
}

/// A sink that takes a flush's batch as series and pending data directly,
/// skipping ``MetricSnapshot`` values (the C callback sink: it lays the
/// batch out as C structs pointing at each series' ``CKeyLayout``).
protocol SeriesExporting {
    func export(_ batch: [(series: MetricSeries, pending: PendingExport)], now: Double, wall: Double) throws
}
