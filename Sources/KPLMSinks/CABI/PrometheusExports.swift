import KPLM
import CKPLM
import Glibc

// kplm_prometheus_config_init and kplm_sink_prometheus: PrometheusSink for
// C callers, handed over as a built-in kplm_sink (see BuiltinSinks).

/// Static C strings of the Prometheus defaults (never freed).
private enum PrometheusDefaults {
    nonisolated(unsafe) static let address = UnsafePointer(strdup(PrometheusConfiguration().address)!)
    nonisolated(unsafe) static let prefix = UnsafePointer(strdup(PrometheusConfiguration().prefix)!)
}

@c @implementation
public func kplm_prometheus_config_init(_ config: UnsafeMutablePointer<kplm_prometheus_config>?) {
    guard let config else { return }
    config.initialize(to: kplm_prometheus_config(
        struct_size: UInt32(MemoryLayout<kplm_prometheus_config>.size),
        address: PrometheusDefaults.address,
        port: PrometheusConfiguration().port,
        prefix: PrometheusDefaults.prefix))
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
