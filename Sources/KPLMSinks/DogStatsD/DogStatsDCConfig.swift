import KPLM
import KPLMCABI
import CKPLM
import Glibc

/// Static C strings of the DogStatsD defaults (never freed).
private enum DogStatsDDefaults {
    nonisolated(unsafe) static let host = UnsafePointer(strdup(DogStatsDConfiguration().host)!)
}

/// Longest constant tag or prefix accepted from C, in bytes (they are
/// sanitized and cut to 200 characters afterwards).
private let maxTagBytes = 4096

/// kplm_dogstatsd_config (kplm_dogstatsd_config_init, kplm_sink_dogstatsd:
/// SinkConfigExports.swift): its defaults and the DogStatsDSink it makes.
extension kplm_dogstatsd_config: BuiltinSinkConfig {
    package static var defaults: kplm_dogstatsd_config {
        let swiftDefaults = DogStatsDConfiguration()
        var c = kplm_dogstatsd_config()
        c.host = DogStatsDDefaults.host
        c.port = swiftDefaults.port
        c.max_datagram_bytes = UInt32(swiftDefaults.maxDatagramBytes)
        return c
    }

    package func makeSink() throws(MetricsError) -> any MetricsSink {
        let host = try CArguments.optionalString(self.host, limit: DogStatsDConfiguration.maxHostBytes,
                                                 label: "DogStatsD host")
        return try DogStatsDSink(configuration: DogStatsDConfiguration(
            host: host ?? DogStatsDConfiguration().host,
            port: port,
            prefix: try CArguments.optionalString(prefix, limit: maxTagBytes, label: "DogStatsD prefix"),
            tags: try CArguments.strings(tags, count: tag_count, maxCount: Int.max, limit: maxTagBytes,
                                         label: "DogStatsD tag"),
            maxDatagramBytes: Int(max_datagram_bytes)))
    }
}
