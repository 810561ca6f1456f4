import KPLM
import KPLMCABI
import CKPLM
import Glibc

/// Static C strings of the OTLP defaults (never freed).
private enum OTLPDefaults {
    nonisolated(unsafe) static let endpoint = UnsafePointer(strdup(OTLPSinkConfiguration.defaultEndpoint)!)
    nonisolated(unsafe) static let serviceName = UnsafePointer(strdup(OTLPSinkConfiguration.defaultServiceName)!)
}

/// Longest endpoint or service name accepted from C, in bytes.
private let maxStringBytes = 4096

/// Most extra headers accepted from C.
private let maxHeaders = 256

/// kplm_otlp_config (kplm_otlp_config_init, kplm_sink_otlp:
/// SinkConfigExports.swift): its defaults and the OTLPSink it makes.
extension kplm_otlp_config: BuiltinSinkConfig {
    package static var defaults: kplm_otlp_config {
        var c = kplm_otlp_config()
        c.endpoint = OTLPDefaults.endpoint
        c.timeout_ms = OTLPSinkConfiguration.defaultTimeoutMs
        c.max_retries = UInt32(OTLPSinkConfiguration().maxRetries)
        c.service_name = OTLPDefaults.serviceName
        c.compression = UInt32(KPLM_OTLP_COMPRESSION_DEFAULT.rawValue)
        return c
    }

    package func makeSink() throws(MetricsError) -> any MetricsSink {
        try reportingMissingLibraries { () throws(MetricsError) in try OTLPSink(configuration: otlpConfiguration(self)) }
    }
}

/// The Swift configuration of a C one: an endpoint that is NULL or the
/// init's default pointer, and a timeout left at the default 5000, are left
/// to the environment.
private func otlpConfiguration(_ c: kplm_otlp_config) throws(MetricsError) -> OTLPSinkConfiguration {
    var configuration = OTLPSinkConfiguration(maxRetries: Int(c.max_retries))
    if c.timeout_ms != OTLPSinkConfiguration.defaultTimeoutMs {
        configuration.timeoutMs = c.timeout_ms
    }
    if let endpoint = c.endpoint, endpoint != OTLPDefaults.endpoint {
        configuration.endpoint = try CArguments.string(endpoint, limit: maxStringBytes, label: "OTLP endpoint")
    }
    if let name = c.service_name {
        configuration.serviceName = try CArguments.string(name, limit: maxStringBytes, label: "OTLP service name")
    }
    for line in try CArguments.strings(c.headers, count: c.header_count, maxCount: maxHeaders,
                                       limit: maxStringBytes, label: "OTLP header") {
        let (name, value) = try OTLPEnvironment.parseHeaderLine(line)
        guard !configuration.headers.keys.contains(where: { $0.lowercased() == name.lowercased() }) else {
            throw MetricsError(.invalidArgument, "OTLP: header \(name) is given twice")
        }
        configuration.headers[name] = value
    }
    switch c.compression {
    case UInt32(KPLM_OTLP_COMPRESSION_DEFAULT.rawValue): break
    case UInt32(KPLM_OTLP_COMPRESSION_NONE.rawValue): configuration.compression = OTLPCompression.none
    case UInt32(KPLM_OTLP_COMPRESSION_GZIP.rawValue): configuration.compression = .gzip
    default: throw MetricsError(.invalidArgument, "OTLP: unknown compression \(c.compression)")
    }
    return configuration
}
