import CKPLM
import KPLM

// The C ABI of distribution metrics (SPEC §6): kplm_set_distribution and
// kplm_query_quantile, over MetricsManager's setDistribution and distribution.

@c @implementation
public func kplm_set_distribution(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                                  _ relativeAccuracy: Double) -> kplm_status {
    guard let manager = manager(m) else { return KPLM_EINVAL }
    return statusOf { () throws(MetricsError) in
        try manager.setDistribution(try CArguments.name(name), relativeAccuracy: relativeAccuracy)
    }
}

@c @implementation
public func kplm_query_quantile(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                                _ dims: UnsafePointer<kplm_dimension>?, _ dimCount: Int, _ seconds: UInt32,
                                _ q: Double, _ out: UnsafeMutablePointer<Double>?) -> kplm_status {
    guard let out else { return KPLM_EINVAL }
    out.pointee = .nan
    guard let manager = manager(m) else { return KPLM_EINVAL }
    return statusOf { () throws(MetricsError) in
        guard q >= 0 && q <= 1 else { throw MetricsError(.invalidArgument, "q must be in [0, 1], got \(q)") }
        let key = try CArguments.key(manager, name, dims, dimCount)
        let lastSeconds = seconds == KPLM_CUMULATIVE ? nil : Int(seconds)
        out.pointee = try manager.distribution(key: key, lastSeconds: lastSeconds)?.quantile(q) ?? .nan
    }
}
