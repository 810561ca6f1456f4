import CKPLM
import KPLM

// The recording functions of kplm.h.

@c @implementation
public func kplm_put(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ value: Double,
                     _ stream: UnsafePointer<CChar>?, _ shardId: UnsafePointer<CChar>?,
                     _ errorCode: UnsafePointer<CChar>?) -> kplm_status {
    guard let m, let name, name[0] != 0, value.isFinite else { return KPLM_EINVAL }
    // Borrowed without a retain: see kplm_metric_put.
    return Unmanaged<CManager>.fromOpaque(UnsafeRawPointer(m))._withUnsafeGuaranteedRef { c in
        // Nothing is recorded, so nothing else needs checking (and this
        // path stays a leaf: the recording one is out of line).
        if c.recordsNothing { return status(c.manager.unrecordedPutOutcome) }
        return putRecorded(c, name, value, stream, shardId, errorCode)
    }
}

/// A put by names on a manager that records.
@inline(never)
private func putRecorded(_ c: CManager, _ name: UnsafePointer<CChar>, _ value: Double,
                         _ stream: UnsafePointer<CChar>?, _ shardId: UnsafePointer<CChar>?,
                         _ errorCode: UnsafePointer<CChar>?) -> kplm_status {
    putThroughIndex(c, CPutArguments(name, stream, shardId, errorCode), value) { manager throws(MetricsError) in
        try CArguments.key(manager, name, stream, shardId, errorCode)
    }
}

/// The body of both puts by names: the fast path when these exact argument
/// bytes were validated and resolved before (the key index), else `key`
/// validates them and forms the key (``putResolvingKey(_:_:_:_:)``).
@inline(__always)
private func putThroughIndex<Arguments: IndexedArguments>(
    _ c: CManager, _ arguments: Arguments?, _ value: Double,
    _ key: (MetricsManager) throws(MetricsError) -> MetricKey
) -> kplm_status {
    if let arguments {
        switch c.keys.put(arguments, value) {
        case .recorded: return KPLM_OK
        case .general(let metric): return status(metric.put(finite: value))
        case .missing: break
        }
    }
    return putResolvingKey(c, arguments, value, key)
}

/// The status of a put's outcome.
@inline(__always)
private func status(_ outcome: PutOutcome) -> kplm_status {
    switch outcome {
    case .recorded: KPLM_OK
    case .closed: KPLM_ECLOSED
    case .inherited: KPLM_ESTATE
    case .limitReached: KPLM_ELIMIT
    }
}

/// A put by names whose arguments are not in the index yet: `key`
/// validates them and forms the key, which is resolved (or created); the
/// arguments are remembered, then the value recorded.
@inline(never)
private func putResolvingKey<Arguments: IndexedArguments>(
    _ c: CManager, _ arguments: Arguments?, _ value: Double,
    _ key: (MetricsManager) throws(MetricsError) -> MetricKey
) -> kplm_status {
    // Under a put frame: the key index's lock is held a moment (see
    // CallbackGuard: a signal handler's close refuses instead of waiting).
    let manager = c.manager
    return CallbackGuard.run(for: ObjectIdentifier(manager), kind: .put) {
        statusOf { () throws(MetricsError) in
            let metric = try manager.metricForPut(key: try key(manager))
            if let arguments { c.keys.insert(arguments, metric) }
            try metric.put(finite: value).check()
        }
    }
}

@c @implementation
public func kplm_put_dims(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ value: Double,
                          _ dims: UnsafePointer<kplm_dimension>?, _ dimCount: Int) -> kplm_status {
    guard let m, let name, name[0] != 0, value.isFinite, dims != nil || dimCount == 0 else { return KPLM_EINVAL }
    // Borrowed without a retain: see kplm_metric_put.
    return Unmanaged<CManager>.fromOpaque(UnsafeRawPointer(m))._withUnsafeGuaranteedRef { c in
        if c.recordsNothing { return status(c.manager.unrecordedPutOutcome) }
        return putDimensionsRecorded(c, name, value, dims, dimCount)
    }
}

/// A put by free-form dimensions on a manager that records: as
/// ``putRecorded``, the pairs' lengths measured into a stack buffer.
@inline(never)
private func putDimensionsRecorded(_ c: CManager, _ name: UnsafePointer<CChar>, _ value: Double,
                                   _ dims: UnsafePointer<kplm_dimension>?, _ count: Int) -> kplm_status {
    withUnsafeTemporaryAllocation(of: Int32.self, capacity: 2 * CDimensionArguments.maxPairs) { lengths in
        putThroughIndex(c, CDimensionArguments(name, dims, count, lengths: lengths.baseAddress!), value) {
            manager throws(MetricsError) in try CArguments.key(manager, name, dims, count)
        }
    }
}

@c @implementation
public func kplm_metric_get(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                            _ stream: UnsafePointer<CChar>?, _ shardId: UnsafePointer<CChar>?,
                            _ errorCode: UnsafePointer<CChar>?,
                            _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kplm_status {
    resolveHandle(m, out) { manager throws(MetricsError) in
        try CArguments.key(manager, name, stream, shardId, errorCode)
    }
}

@c @implementation
public func kplm_metric_get_dims(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                                 _ dims: UnsafePointer<kplm_dimension>?, _ dimCount: Int,
                                 _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kplm_status {
    resolveHandle(m, out) { manager throws(MetricsError) in try CArguments.key(manager, name, dims, dimCount) }
}

/// The body of kplm_metric_get and kplm_metric_get_dims: clears `*out`,
/// forms the key (`key` checks the arguments), resolves it and pins the
/// metric for the manager's lifetime.
private func resolveHandle(_ m: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                           _ key: (MetricsManager) throws(MetricsError) -> MetricKey) -> kplm_status {
    guard let out else { return KPLM_EINVAL }
    out.pointee = nil
    guard let manager = manager(m) else { return KPLM_EINVAL }
    return statusOf { () throws(MetricsError) in
        let metric = try manager.metricValidated(key: try key(manager))
        // Kept alive until kplm_free, even if its key is removed as idle
        // (a put through the handle then re-creates it).
        if let c = cManager(m) { c.pin(metric) }
        // The handle is the metric's header line: a put through it reads
        // that line and its cell, not the metric object (issue #13).
        out.pointee = OpaquePointer(metric.header.address)
    }
}

@c @implementation
public func kplm_metric_put(_ metric: OpaquePointer?, _ value: Double) -> kplm_status {
    guard let metric, value.isFinite else { return KPLM_EINVAL }
    // The manager keeps the metric, and so its header line, alive until
    // kplm_free: borrow it without a retain (a locked instruction on a line
    // every putting thread shares).
    let header = MetricHeader(address: UnsafeRawPointer(metric))
    if _fastPath(header.tryPutCommonCase(value)) { return KPLM_OK }
    return header.metric._withUnsafeGuaranteedRef { status($0.putGeneral(value)) }
}

@c @implementation
public func kplm_metric_put_many(_ metric: OpaquePointer?, _ values: UnsafePointer<Double>?, _ count: Int,
                                 _ at: Double) -> kplm_status {
    guard let metric, values != nil || count == 0, !at.isInfinite else { return KPLM_EINVAL }
    let buffer = UnsafeBufferPointer(start: values, count: count)
    for v in buffer where !v.isFinite { return KPLM_EINVAL }
    // Borrowed without a retain: see kplm_metric_put.
    return MetricHeader(address: UnsafeRawPointer(metric)).metric._withUnsafeGuaranteedRef { handle in
        status(handle.putMany(finite: buffer, at: at.isNaN ? nil : at))
    }
}
