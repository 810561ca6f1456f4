import CKPLM

// The lifecycle functions of kplm.h. Each is a thin adapter over
// MetricsManager: argument checks, then the Swift call, then the status.

@c @implementation
public func kplm_config_init(_ config: UnsafeMutablePointer<kplm_config>?) {
    guard let config else { return }
    let defaults = MetricsConfiguration()
    config.initialize(to: kplm_config(
        struct_size: UInt32(MemoryLayout<kplm_config>.size),
        level: kplm_level(rawValue: UInt32(defaults.level.rawValue)),
        upload_interval_ms: defaults.uploadIntervalMs,
        window_seconds: UInt32(defaults.windowSeconds),
        clock: nil,
        clock_user_data: nil,
        max_metrics: UInt32(defaults.maxMetrics),
        export_timeout_ms: defaults.exportTimeoutMs,
        granularity: KPLM_GRANULARITY_NONE,
        kpl_level_filter: 0,
        metric_namespace: nil))
}

/// The sizes of kplm_config this version reads: the current layout, the
/// first one (0.1.0, which ended after max_metrics) and the second (which
/// ended after export_timeout_ms).
private let configSizeCurrent = UInt32(MemoryLayout<kplm_config>.size)
private let configSizeFirst = UInt32(MemoryLayout<kplm_config>.offset(of: \kplm_config.export_timeout_ms)!)
private let configSizeSecond = UInt32(MemoryLayout<kplm_config>.offset(of: \kplm_config.granularity)!)

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
        let size = UnsafeRawPointer(config).load(as: UInt32.self)
        guard size == configSizeCurrent || size == configSizeFirst || size == configSizeSecond else {
            return KPLM_EINVAL
        }
        var c = kplm_config()
        kplm_config_init(&c)
        withUnsafeMutableBytes(of: &c) { $0.copyMemory(from: UnsafeRawBufferPointer(start: config, count: Int(size))) }
        guard let level = MetricsLevel(rawValue: Int(c.level.rawValue)) else { return KPLM_EINVAL }
        configuration.level = level
        configuration.uploadIntervalMs = c.upload_interval_ms
        configuration.windowSeconds = Int(c.window_seconds)
        configuration.maxMetrics = Int(c.max_metrics)
        configuration.exportTimeoutMs = c.export_timeout_ms
        if c.granularity != KPLM_GRANULARITY_NONE {
            guard let granularity = MetricsGranularity(rawValue: Int(c.granularity.rawValue)) else { return KPLM_EINVAL }
            configuration.granularity = granularity
        }
        configuration.kplLevelFilter = c.kpl_level_filter != 0
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
    return statusOf { () throws(MetricsError) in
        let manager = try MetricsManager(configuration: configuration)
        out.pointee = OpaquePointer(Unmanaged.passRetained(manager).toOpaque())
    }
}

@c @implementation
public func kplm_set_sink(_ m: OpaquePointer?, _ sink: UnsafePointer<kplm_sink>?) -> kplm_status {
    guard let manager = manager(m), let sink, sink.pointee.export_snapshots != nil else { return KPLM_EINVAL }
    let callbacks = sink.pointee
    if BuiltinSinks.isBuiltin(callbacks) {
        // A built-in sink: the manager takes the Swift sink itself (and its
        // ownership) only if it can be set; otherwise the caller keeps it.
        guard let data = callbacks.user_data else { return KPLM_EINVAL }
        let box = Unmanaged<BuiltinSinkBox>.fromOpaque(data).takeUnretainedValue()
        let status = statusOf { () throws(MetricsError) in try manager.setSink(box.sink) }
        if status == KPLM_OK { _ = BuiltinSinks.take(callbacks) }
        return status
    }
    let wrapped = callbacks.record != nil ? EventfulCallbackSink(callbacks) : CallbackSink(callbacks)
    return statusOf { () throws(MetricsError) in try manager.setSink(wrapped) }
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
    guard let manager = manager(m) else { return }
    // From a callback of this manager: refuse, as close would (the caller is
    // still using the manager further up its own stack).
    guard !CallbackGuard.isInsideCallback(of: ObjectIdentifier(manager)) else { return }
    // In a forked child, a manager inherited from the parent may hold locks
    // that no thread will ever release: leak it rather than touch them.
    guard !manager.context.isInherited else { return }
    _ = try? manager.close()
    Unmanaged<MetricsManager>.fromOpaque(UnsafeRawPointer(m!)).release()
}

@c @implementation
public func kplm_snapshots(_ m: OpaquePointer?,
                           _ visit: (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<kplm_snapshot>?) -> Int32)?,
                           _ userData: UnsafeMutableRawPointer?) -> kplm_status {
    guard let manager = manager(m), let visit else { return KPLM_EINVAL }
    if manager.context.isInherited { return KPLM_ESTATE }
    guard manager.showsKeysAsRecorded else {
        // KPL output (rollups, extra dimensions, level filter): lines built
        // first, then laid out as C structs.
        let snapshots = manager.snapshots()
        guard !snapshots.isEmpty else { return KPLM_OK }
        CLayout.withSnapshots(snapshots) { array, count in
            CallbackGuard.run(for: ObjectIdentifier(manager)) {
                for i in 0..<count where visit(userData, array + i) != 0 { break }
            }
        }
        return KPLM_OK
    }
    // Every window is read first (so that what a visit does, such as a put,
    // cannot change the later ones), as C structs whose strings are borrowed
    // from each series' C layout; no lock is held while the visits run.
    var lines: [(series: MetricSeries, snapshot: kplm_snapshot)] = []
    manager.forEachLiveWindow { series, statistics, start, end, timestamp in
        lines.append((series, series.cKey.snapshot(statistics, windowStart: start, windowEnd: end,
                                                    timestampUnix: timestamp)))
        return true
    }
    CallbackGuard.run(for: ObjectIdentifier(manager)) {
        for i in lines.indices {
            // `lines` keeps each series (and so its C strings) alive.
            if withUnsafePointer(to: &lines[i].snapshot, { visit(userData, $0) }) != 0 { break }
        }
    }
    return KPLM_OK
}
