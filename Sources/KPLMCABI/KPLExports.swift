import CKPLM
import KPLM
import Glibc

// The KPL-parity functions of kplm.h: extra dimensions, namespace, local
// queries, and the metric catalogue (units and levels).

@c @implementation
public func kplm_add_dimension(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ value: UnsafePointer<CChar>?,
                               _ granularity: kplm_granularity) -> kplm_status {
    guard let manager = manager(m), let name, let value,
          let level = MetricsGranularity(rawValue: Int(granularity.rawValue)) else { return KPLM_EINVAL }
    return statusOf { () throws(MetricsError) in
        let n = try CArguments.string(name, limit: Validation.maxNameBytes, label: "extra dimension name")
        let v = try CArguments.string(value, limit: Validation.maxDimensionBytes, label: "extra dimension value")
        try manager.addExtraDimension(ExtraDimension(n, v, granularity: level))
    }
}

@c @implementation
public func kplm_set_dimension_granularity(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                                          _ granularity: kplm_granularity) -> kplm_status {
    guard let manager = manager(m), let name,
          let level = MetricsGranularity(rawValue: Int(granularity.rawValue)) else { return KPLM_EINVAL }
    return statusOf { () throws(MetricsError) in
        let n = try CArguments.string(name, limit: Validation.maxNameBytes, label: "dimension name")
        try manager.setDimensionGranularity(n, level)
    }
}

@c @implementation
public func kplm_namespace(_ m: OpaquePointer?) -> UnsafePointer<CChar>? {
    guard let c = cManager(m) else { return nil }
    return UnsafePointer(c.namespace)
}

@c @implementation
public func kplm_query(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ stream: UnsafePointer<CChar>?,
                       _ shardId: UnsafePointer<CChar>?, _ errorCode: UnsafePointer<CChar>?, _ seconds: UInt32,
                       _ out: UnsafeMutablePointer<kplm_statistics>?) -> kplm_status {
    // Binaries built before 1.0: a 1.0 kplm_statistics (kplm_query_sized).
    kplm_query_sized(m, name, stream, shardId, errorCode, seconds, out, 0)
}

@c @implementation
public func kplm_query_sized(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ stream: UnsafePointer<CChar>?,
                             _ shardId: UnsafePointer<CChar>?, _ errorCode: UnsafePointer<CChar>?, _ seconds: UInt32,
                             _ out: UnsafeMutablePointer<kplm_statistics>?, _ outSize: Int) -> kplm_status {
    answerQuery(m, out, outSize) { manager throws(MetricsError) in
        let key = try CArguments.key(manager, name, stream, shardId, errorCode)
        return try manager.statistics(key: key, lastSeconds: lastSeconds(seconds))
    }
}

@c @implementation
public func kplm_query_dims_sized(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?,
                                  _ dims: UnsafePointer<kplm_dimension>?, _ dimCount: Int, _ seconds: UInt32,
                                  _ out: UnsafeMutablePointer<kplm_statistics>?, _ outSize: Int) -> kplm_status {
    answerQuery(m, out, outSize) { manager throws(MetricsError) in
        try manager.statistics(key: try CArguments.key(manager, name, dims, dimCount), lastSeconds: lastSeconds(seconds))
    }
}

@c @implementation
public func kplm_query_name(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ seconds: UInt32,
                            _ out: UnsafeMutablePointer<kplm_statistics>?) -> kplm_status {
    // Binaries built before 1.0: a 1.0 kplm_statistics (kplm_query_name_sized).
    kplm_query_name_sized(m, name, seconds, out, 0)
}

@c @implementation
public func kplm_query_name_sized(_ m: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ seconds: UInt32,
                                  _ out: UnsafeMutablePointer<kplm_statistics>?, _ outSize: Int) -> kplm_status {
    answerQuery(m, out, outSize) { manager throws(MetricsError) in
        try manager.statistics(name: try CArguments.name(name), lastSeconds: lastSeconds(seconds))
    }
}

/// The body of the query functions: checks `out` and its size, writes zero
/// statistics to it, then `query`'s answer (at the caller's `outSize`, see
/// ``CallerLayout``).
private func answerQuery(_ m: OpaquePointer?, _ out: UnsafeMutablePointer<kplm_statistics>?, _ outSize: Int,
                         _ query: (MetricsManager) throws(MetricsError) -> MetricStatistics) -> kplm_status {
    let layout = CallerLayouts.statistics
    let size = layout.size(outSize)
    guard let out, size >= layout.v1Size else { return KPLM_EINVAL }
    layout.write(kplm_statistics(), to: out, size: size)
    guard let manager = manager(m) else { return KPLM_EINVAL }
    return statusOf { () throws(MetricsError) in
        layout.write(cStatistics(try query(manager)), to: out, size: size)
    }
}

@c @implementation
public func kplm_metric_unit(_ name: UnsafePointer<CChar>?) -> kplm_unit {
    guard let name else { return KPLM_UNIT_NONE }
    return kplm_unit(rawValue: UInt32(KPLMetricCatalog.lookup(name)?.unit.rawValue ?? MetricUnit.none.rawValue))
}

@c @implementation
public func kplm_metric_level(_ name: UnsafePointer<CChar>?) -> kplm_level {
    guard let name else { return KPLM_LEVEL_DETAILED }
    return kplm_level(rawValue: UInt32(KPLMetricCatalog.lookup(name)?.level.rawValue ?? MetricsLevel.detailed.rawValue))
}

@c @implementation
public func kplm_unit_name(_ unit: kplm_unit) -> UnsafePointer<CChar>! {
    let index = Int(unit.rawValue)
    return index < KPLMetricCatalog.unitNames.count ? KPLMetricCatalog.unitNames[index] : KPLMetricCatalog.unitNames[0]
}

/// KPLM_CUMULATIVE (0) means since creation.
private func lastSeconds(_ seconds: UInt32) -> Int? { seconds == KPLM_CUMULATIVE ? nil : Int(seconds) }

private func cStatistics(_ s: MetricStatistics) -> kplm_statistics {
    var c = kplm_statistics()
    guard s.count > 0 else { return c }
    c.count = UInt64(s.count)
    c.sum = s.sum
    c.min = s.min
    c.max = s.max
    return c
}

/// The catalogue for C callers: names compared as bytes, no String built.
enum KPLMetricCatalog {
    /// Unit names as static C strings, by raw value.
    nonisolated(unsafe) static let unitNames: [UnsafePointer<CChar>] =
        MetricUnit.allCases.map { UnsafePointer(strdup($0.name)!) }

    private static let entries: [(bytes: [UInt8], unit: MetricUnit, level: MetricsLevel)] =
        KPLMetrics.all.map { (Array($0.name.utf8), $0.unit, $0.level) }

    /// The KPL entry of a C string name, if it is one.
    static func lookup(_ name: UnsafePointer<CChar>) -> (unit: MetricUnit, level: MetricsLevel)? {
        let n = strnlen(name, 64)
        let bytes = UnsafeRawBufferPointer(start: name, count: n)
        for e in entries where e.bytes.count == n && e.bytes.elementsEqual(bytes) { return (e.unit, e.level) }
        return nil
    }
}
