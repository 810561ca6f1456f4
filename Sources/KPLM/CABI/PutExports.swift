import CKPLM

// The recording functions of kplm.h.

@c @implementation
public func kplm_put(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ value: Double,
                     _ stream: UnsafePointer<CChar>?, _ shardId: UnsafePointer<CChar>?,
                     _ errorCode: UnsafePointer<CChar>?) -> kplm_status {
    guard let manager = manager(m), let name, name[0] != 0, value.isFinite else { return KPLM_EINVAL }
    if manager.context.level == .none {
        // Nothing is recorded, so nothing else needs checking.
        if manager.context.isInherited { return KPLM_ESTATE }
        return manager.context.gate.isClosing ? KPLM_ECLOSED : KPLM_OK
    }
    return statusOf { () throws(MetricsError) in
        let key = try CArguments.key(manager, name, stream, shardId, errorCode)
        try manager.putValidated(key: key, value)
    }
}

@c @implementation
public func kplm_metric_get(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                            _ stream: UnsafePointer<CChar>?, _ shardId: UnsafePointer<CChar>?,
                            _ errorCode: UnsafePointer<CChar>?,
                            _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kplm_status {
    guard let out else { return KPLM_EINVAL }
    out.pointee = nil
    guard let manager = manager(m) else { return KPLM_EINVAL }
    return statusOf { () throws(MetricsError) in
        let key = try CArguments.key(manager, name, stream, shardId, errorCode)
        let metric = try manager.metricValidated(key: key)
        // The manager keeps the metric alive until kplm_free.
        out.pointee = OpaquePointer(Unmanaged.passUnretained(metric).toOpaque())
    }
}

@c @implementation
public func kplm_metric_put(_ metric: OpaquePointer?, _ value: Double) -> kplm_status {
    guard let metric else { return KPLM_EINVAL }
    let handle = Unmanaged<Metric>.fromOpaque(UnsafeRawPointer(metric)).takeUnretainedValue()
    return statusOf { () throws(MetricsError) in try handle.put(value) }
}
