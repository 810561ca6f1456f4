import CKPLM
import KPLM

// The lifecycle functions of kplm.h. Each is a thin adapter over
// MetricsManager: argument checks, then the Swift call, then the status.

/// The defaults of kplm_config, in this library's layout.
private func defaultConfig() -> kplm_config {
    let defaults = MetricsConfiguration()
    var c = kplm_config()
    c.struct_size = UInt32(MemoryLayout<kplm_config>.size)
    c.level = kplm_level(rawValue: UInt32(defaults.level.rawValue))
    c.upload_interval_ms = defaults.uploadIntervalMilliseconds
    c.window_seconds = UInt32(defaults.windowSeconds)
    c.max_metrics = UInt32(defaults.maxMetrics)
    c.export_timeout_ms = defaults.exportTimeoutMilliseconds
    c.granularity = KPLM_GRANULARITY_NONE
    return c
}

@c @implementation
public func kplm_config_init(_ config: UnsafeMutablePointer<kplm_config>?) {
    // The symbol binaries built before 1.0 call: their struct is the first
    // layout (0.1's 48 bytes, SPEC §2), whatever this header says now.
    // Callers of the 1.0 header reach kplm_config_init_sized (a macro).
    CallerLayouts.config.initialize(config, size: CallerLayouts.config.olderSizes[0], defaults: defaultConfig())
}

@c @implementation
public func kplm_config_init_sized(_ config: UnsafeMutablePointer<kplm_config>?, _ size: Int) {
    CallerLayouts.config.initialize(config, size: size, defaults: defaultConfig())
}

/// A C clock callback and its user data, called from any thread.
private struct CClock: @unchecked Sendable {
    let read: @convention(c) (UnsafeMutableRawPointer?) -> Double
    let userData: UnsafeMutableRawPointer?
}

@c @implementation
public func kplm_new(_ config: UnsafePointer<kplm_config>?,
                     _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kplm_status {
    guard let out else { return KPLM_EINVAL }
    out.pointee = nil
    var configuration = MetricsConfiguration()
    if let config {
        // Read only the bytes the caller's layout has: an older, shorter
        // struct must not be read past its end. Missing fields keep defaults.
        guard let c = CallerLayouts.config.readConfig(config, over: defaultConfig()) else { return KPLM_EINVAL }
        guard let level = MetricsLevel(rawValue: Int(c.level.rawValue)) else { return KPLM_EINVAL }
        configuration.level = level
        configuration.uploadIntervalMilliseconds = c.upload_interval_ms
        configuration.windowSeconds = Int(c.window_seconds)
        configuration.maxMetrics = Int(c.max_metrics)
        configuration.exportTimeoutMilliseconds = c.export_timeout_ms
        if c.granularity != KPLM_GRANULARITY_NONE {
            guard let granularity = MetricsGranularity(rawValue: Int(c.granularity.rawValue)) else { return KPLM_EINVAL }
            configuration.granularity = granularity
        }
        configuration.kplLevelFilter = c.kpl_level_filter != 0
        if c.kpl_distributions != 0 { configuration.distributions = MetricsConfiguration.kplDistributions }
        if let ns = c.metric_namespace {
            guard let text = try? CArguments.string(ns, limit: Validation.maxNameBytes, label: "namespace"),
                  !text.isEmpty else { return KPLM_EINVAL }
            configuration.namespace = text
        }
        if let read = c.clock {
            let clock = CClock(read: read, userData: c.clock_user_data)
            configuration.clock = { clock.read(clock.userData) }
        }
    }
    _ = CManager.warmUp
    return statusOf { () throws(MetricsError) in
        let manager = try MetricsManager(configuration: configuration)
        out.pointee = OpaquePointer(Unmanaged.passRetained(CManager(manager)).toOpaque())
    }
}

@c @implementation
public func kplm_set_sink(_ m: OpaquePointer?, _ sink: UnsafePointer<kplm_sink>?) -> kplm_status {
    // The symbol binaries built before 1.0 call: every struct in its 1.0
    // layout. Callers of the 1.0 header reach kplm_set_sink_sized (a macro).
    kplm_set_sink_sized(m, sink, 0, 0, 0)
}

@c @implementation
public func kplm_set_sink_sized(_ m: OpaquePointer?, _ sink: UnsafePointer<kplm_sink>?, _ sinkSize: Int,
                                _ snapshotSize: Int, _ eventSize: Int) -> kplm_status {
    guard let manager = manager(m), let sink else { return KPLM_EINVAL }
    let layouts = (sink: CallerLayouts.sink, snapshot: CallerLayouts.snapshot, event: CallerLayouts.event)
    // The callbacks index what they are handed with the caller's sizes:
    // smaller than 1.0 cannot be laid out.
    guard layouts.sink.accepts(sink, declared: sinkSize),
          layouts.snapshot.size(snapshotSize) >= layouts.snapshot.v1Size,
          layouts.event.size(eventSize) >= layouts.event.v1Size else { return KPLM_EINVAL }
    let callbacks = layouts.sink.read(sink, size: layouts.sink.size(sinkSize), over: kplm_sink())
    guard callbacks.export_snapshots != nil else { return KPLM_EINVAL }
    if BuiltinSinks.isBuiltin(callbacks) {
        // A built-in sink: the manager takes the Swift sink itself (and its
        // ownership) only if it can be set; otherwise the caller keeps it.
        guard let data = callbacks.user_data else { return KPLM_EINVAL }
        let box = Unmanaged<BuiltinSinkBox>.fromOpaque(data).takeUnretainedValue()
        let status = statusOf { () throws(MetricsError) in try manager.setSink(box.sink) }
        if status == KPLM_OK { _ = BuiltinSinks.take(callbacks) }
        return status
    }
    let strides = CallbackSink.Strides(snapshot: layouts.snapshot.size(snapshotSize),
                                       event: layouts.event.size(eventSize))
    let wrapped = callbacks.record != nil ? EventfulCallbackSink(callbacks, strides)
                                          : CallbackSink(callbacks, strides)
    return statusOf { () throws(MetricsError) in try manager.setSink(wrapped) }
}

@c @implementation
public func kplm_set_flush_hook(_ m: OpaquePointer?, _ hook: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?,
                                _ userData: UnsafeMutableRawPointer?) -> kplm_status {
    guard let manager = manager(m) else { return KPLM_EINVAL }
    var closure: (@Sendable () -> Void)?
    if let hook {
        let context = FlushHookContext(hook, userData)
        closure = { context.hook(context.userData) }
    }
    let installed = closure
    return statusOf { () throws(MetricsError) in try manager.setFlushHook(installed) }
}

/// The user data of a C flush hook, carried into a Sendable closure (the
/// caller keeps it valid until kplm_free; the hook is called serially).
private final class FlushHookContext: @unchecked Sendable {
    let hook: @convention(c) (UnsafeMutableRawPointer?) -> Void
    let userData: UnsafeMutableRawPointer?
    init(_ hook: @escaping @convention(c) (UnsafeMutableRawPointer?) -> Void, _ userData: UnsafeMutableRawPointer?) {
        self.hook = hook
        self.userData = userData
    }
}

@c @implementation
public func kplm_start(_ m: OpaquePointer?) -> kplm_status {
    guard let manager = manager(m) else { return KPLM_EINVAL }
    return statusOf { () throws(MetricsError) in try manager.start() }
}

@c @implementation
public func kplm_flush(_ m: OpaquePointer?) -> kplm_status {
    guard let manager = manager(m) else { return KPLM_EINVAL }
    return statusOf { () throws(MetricsError) in try manager.flush() }
}

@c @implementation
public func kplm_close(_ m: OpaquePointer?) -> kplm_status {
    guard let manager = manager(m) else { return KPLM_EINVAL }
    return statusOf { () throws(MetricsError) in try manager.close() }
}

@c @implementation
public func kplm_free(_ m: OpaquePointer?) {
    guard let c = cManager(m) else { return }
    let manager = c.manager
    // From a callback of this manager: refuse, as close would (the caller is
    // still using the manager further up its own stack).
    // The same from a signal handler that interrupted a put on this thread.
    guard !manager.isInheritedAcrossFork, !manager.isReentrantCall else { return }
    // In a forked child, a manager inherited from the parent may hold locks
    // that no thread will ever release: leak it rather than touch them
    // (checked first, above). Close, then discard what was not delivered
    // and close the sink: one export timeout in total.
    manager.shutdown()
    Unmanaged<CManager>.fromOpaque(UnsafeRawPointer(m!)).release()
}

@c @implementation
public func kplm_snapshots(_ m: OpaquePointer?,
                           _ visit: (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<kplm_snapshot>?) -> Int32)?,
                           _ userData: UnsafeMutableRawPointer?) -> kplm_status {
    // Binaries built before 1.0: 1.0 snapshots (kplm_snapshots_sized).
    kplm_snapshots_sized(m, visit, userData, 0)
}

@c @implementation
public func kplm_snapshots_sized(_ m: OpaquePointer?,
                                 _ visit: (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<kplm_snapshot>?) -> Int32)?,
                                 _ userData: UnsafeMutableRawPointer?, _ snapshotSize: Int) -> kplm_status {
    let layout = CallerLayouts.snapshot
    let size = layout.size(snapshotSize)
    guard let manager = manager(m), let visit, size >= layout.v1Size else { return KPLM_EINVAL }
    if manager.isInheritedAcrossFork { return KPLM_ESTATE }
    // From a signal handler that interrupted a slow put (which may hold a
    // series lock this read takes): refused rather than deadlocked.
    if CallbackGuard.isInsidePut(of: ObjectIdentifier(manager)) { return KPLM_ESTATE }
    guard manager.showsKeysAsRecorded else {
        // KPL output (rollups, extra dimensions, level filter): lines built
        // first, then laid out as C structs.
        let snapshots = manager.snapshots()
        guard !snapshots.isEmpty else { return KPLM_OK }
        CLayout.withSnapshots(snapshots, stride: size) { array, count in
            CallbackGuard.run(for: ObjectIdentifier(manager)) {
                for i in 0..<count where visit(userData, layout.element(i, of: array, stride: size)) != 0 { break }
            }
        }
        return KPLM_OK
    }
    // Every window is read first (so that what a visit does, such as a put,
    // cannot change the later ones), as C structs whose strings are borrowed
    // from each series' C layout, while the pass has the key's record in
    // cache (the pass prefetches it); no lock is held while the visits run.
    var lines: [SnapshotLine] = []
    // (Sized for every key at once: 100,000 keys grown append by append
    // copied the lines about twice over, a third of the read.)
    lines.reserveCapacity(manager.metricCount)
    manager.forEachLiveWindow({ series, statistics, start, end, timestamp in
        lines.append(SnapshotLine(series.cKey, statistics, windowStart: start, windowEnd: end, timestampUnix: timestamp))
        return true
    }, then: {
        // The series (and so the C strings the lines borrow) are alive
        // until this returns.
        CallbackGuard.run(for: ObjectIdentifier(manager)) {
            for line in lines where line.withSnapshot({ c in
                layout.withArray(count: 1, stride: size, { _ in c }, { visit(userData, $0) })
            }) != 0 { break }
        }
    })
    return KPLM_OK
}

/// A line of `kplm_snapshots`: what a key's C snapshot holds, with a copy
/// of its dimension pairs when its record keeps none (``CKeyLayout``).
/// (Kept compact: 128 bytes a key, read once more by the visits.)
private struct SnapshotLine {
    private let statistics: MetricStatistics
    private let windowStart: Double, windowEnd: Double, timestampUnix: Double
    private let name: UnsafePointer<CChar>
    /// The record's pairs; nil with a count > 0: the pairs are ``pairs``.
    private let dimensions: UnsafePointer<kplm_dimension>?
    private let dimensionCount: Int
    private var pairs = (kplm_dimension(), kplm_dimension(), kplm_dimension())

    init(_ key: CKeyLayout, _ statistics: MetricStatistics, windowStart: Double, windowEnd: Double,
         timestampUnix: Double) {
        assert(MemoryLayout.size(ofValue: pairs) >= CKeyLayout.pairsScratchBytes)
        self.statistics = statistics
        self.windowStart = windowStart
        self.windowEnd = windowEnd
        self.timestampUnix = timestampUnix
        let record = key.record
        name = record.name
        dimensionCount = record.dimensionCount
        var copied = pairs
        dimensions = withUnsafeMutableBytes(of: &copied) { scratch in
            let written = record.dimensionPairs(scratch: scratch.baseAddress!)
            return written == UnsafeRawPointer(scratch.baseAddress) ? nil
                : written?.assumingMemoryBound(to: kplm_dimension.self)
        }
        pairs = copied
    }

    /// Calls `body` with the snapshot, its pairs valid during the call.
    func withSnapshot<R>(_ body: (kplm_snapshot) -> R) -> R {
        var copied = pairs
        return withUnsafeBytes(of: &copied) { bytes in
            let pairs = dimensionCount == 0 ? nil
                : dimensions ?? bytes.baseAddress!.assumingMemoryBound(to: kplm_dimension.self)
            return body(kplm_snapshot(name: name, statistics: statistics, dimensions: pairs,
                                      dimensionCount: dimensionCount, windowStart: windowStart,
                                      windowEnd: windowEnd, timestampUnix: timestampUnix))
        }
    }
}
