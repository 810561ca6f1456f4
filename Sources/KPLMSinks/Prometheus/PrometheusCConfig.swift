import KPLM
import KPLMCABI
import CKPLM
import Glibc

/// Static C strings of the Prometheus defaults (never freed).
private enum PrometheusDefaults {
    nonisolated(unsafe) static let address = UnsafePointer(strdup(PrometheusConfiguration().address)!)
    nonisolated(unsafe) static let prefix = UnsafePointer(strdup(PrometheusConfiguration().prefix)!)
}

/// kplm_prometheus_config (kplm_prometheus_config_init, kplm_sink_prometheus:
/// SinkConfigExports.swift): its defaults and the PrometheusSink it makes.
extension kplm_prometheus_config: BuiltinSinkConfig {
    package static var defaults: kplm_prometheus_config {
        var c = kplm_prometheus_config()
        c.address = PrometheusDefaults.address
        c.port = PrometheusConfiguration().port
        c.prefix = PrometheusDefaults.prefix
        return c
    }

    /// NULL address or prefix: the default.
    package func makeSink() throws(MetricsError) -> any MetricsSink {
        let defaults = PrometheusConfiguration()
        return try PrometheusSink(configuration: PrometheusConfiguration(
            address: try CArguments.optionalString(address, limit: PrometheusConfiguration.maxAddressBytes,
                                                   label: "Prometheus address") ?? defaults.address,
            port: port,
            prefix: try CArguments.optionalString(prefix, limit: PrometheusConfiguration.maxPrefixBytes,
                                                  label: "Prometheus prefix") ?? defaults.prefix))
    }
}
