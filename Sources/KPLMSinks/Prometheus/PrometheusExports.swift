import KPLM
import KPLMCABI
import CKPLM
import Glibc

// kplm_prometheus_config_init and kplm_sink_prometheus: PrometheusSink for
// C callers, handed over as a built-in kplm_sink (see BuiltinSinks).

/// Static C strings of the Prometheus defaults (never freed).
private enum PrometheusDefaults {
    nonisolated(unsafe) static let address = UnsafePointer(strdup(PrometheusConfiguration().address)!)
    nonisolated(unsafe) static let prefix = UnsafePointer(strdup(PrometheusConfiguration().prefix)!)
}

extension kplm_prometheus_config {
    package static var defaults: kplm_prometheus_config {
        var c = kplm_prometheus_config()
        c.struct_size = UInt32(MemoryLayout<kplm_prometheus_config>.size)
        c.address = PrometheusDefaults.address
        c.port = PrometheusConfiguration().port
        c.prefix = PrometheusDefaults.prefix
        return c
    }
}

@c @implementation
public func kplm_prometheus_config_init(_ config: UnsafeMutablePointer<kplm_prometheus_config>?) {
    // Binaries built before 1.0: the 1.0 layout (kplm_prometheus_config_init_sized).
    kplm_prometheus_config.initialize(config, size: 0)
}

@c @implementation
public func kplm_sink_prometheus(_ config: UnsafePointer<kplm_prometheus_config>?,
                                 _ out: UnsafeMutablePointer<kplm_sink>?) -> kplm_status {
    BuiltinSinks.construct(config, out) { c throws(MetricsError) in
        var configuration = PrometheusConfiguration()
        if let address = c.address {
            configuration.address = try CArguments.string(address, limit: PrometheusConfiguration.maxAddressBytes,
                                                          label: "Prometheus address")
        }
        configuration.port = c.port
        if let prefix = c.prefix {
            configuration.prefix = try CArguments.string(prefix, limit: PrometheusConfiguration.maxPrefixBytes,
                                                         label: "Prometheus prefix")
        }
        return try PrometheusSink(configuration: configuration)
    }
}
