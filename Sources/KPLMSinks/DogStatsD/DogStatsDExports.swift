import KPLM
import KPLMCABI
import CKPLM
import Glibc

// kplm_dogstatsd_config_init and kplm_sink_dogstatsd: DogStatsDSink for C
// callers, handed over as a built-in kplm_sink (see BuiltinSinks).

/// Static C strings of the DogStatsD defaults (never freed).
private enum DogStatsDDefaults {
    nonisolated(unsafe) static let host = UnsafePointer(strdup(DogStatsDConfiguration().host)!)
}

/// Longest constant tag or prefix accepted from C, in bytes (they are
/// sanitized and cut to 200 characters afterwards).
private let maxTagBytes = 4096

extension kplm_dogstatsd_config {
    package static var defaults: kplm_dogstatsd_config {
        let defaults = DogStatsDConfiguration()
        var c = kplm_dogstatsd_config()
        c.struct_size = UInt32(MemoryLayout<kplm_dogstatsd_config>.size)
        c.host = DogStatsDDefaults.host
        c.port = defaults.port
        c.max_datagram_bytes = UInt32(defaults.maxDatagramBytes)
        return c
    }
}

@c @implementation
public func kplm_dogstatsd_config_init(_ config: UnsafeMutablePointer<kplm_dogstatsd_config>?) {
    // Binaries built before 1.0: the 1.0 layout (kplm_dogstatsd_config_init_sized).
    kplm_dogstatsd_config.initialize(config, size: 0)
}

@c @implementation
public func kplm_sink_dogstatsd(_ config: UnsafePointer<kplm_dogstatsd_config>?,
                                _ out: UnsafeMutablePointer<kplm_sink>?) -> kplm_status {
    BuiltinSinks.construct(config, out) { c throws(MetricsError) in
        var configuration = DogStatsDConfiguration()
        if let host = c.host {
            configuration.host = try CArguments.string(host, limit: DogStatsDConfiguration.maxHostBytes,
                                                       label: "DogStatsD host")
        }
        configuration.port = c.port
        if let prefix = c.prefix {
            configuration.prefix = try CArguments.string(prefix, limit: maxTagBytes, label: "DogStatsD prefix")
        }
        if c.tag_count > 0 {
            guard let tags = c.tags else { throw MetricsError(.invalidArgument, "DogStatsD tags is NULL") }
            for i in 0..<c.tag_count {
                guard let tag = tags[i] else { throw MetricsError(.invalidArgument, "DogStatsD tag \(i) is NULL") }
                configuration.tags.append(try CArguments.string(tag, limit: maxTagBytes, label: "DogStatsD tag"))
            }
        }
        configuration.maxDatagramBytes = Int(c.max_datagram_bytes)
        return try DogStatsDSink(configuration: configuration)
    }
}
