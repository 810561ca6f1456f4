import KPLM
import KPLMCABI
import CKPLM
import Glibc

// kplm_otlp_config_init and kplm_sink_otlp: OTLPSink for C callers, handed
// over as a built-in kplm_sink (see BuiltinSinks).

/// Static C strings of the OTLP defaults (never freed).
private enum OTLPDefaults {
    nonisolated(unsafe) static let endpoint = UnsafePointer(strdup(OTLPSinkConfiguration.defaultEndpoint)!)
    nonisolated(unsafe) static let serviceName = UnsafePointer(strdup(OTLPSinkConfiguration.defaultServiceName)!)
}

/// Longest endpoint or service name accepted from C, in bytes.
private let maxStringBytes = 4096

/// Most extra headers accepted from C.
private let maxHeaders = 256

extension kplm_otlp_config {
    /// Field by field, so that a build against a later header (more fields,
    /// left zero) compiles too.
    package static var defaults: kplm_otlp_config {
        var c = kplm_otlp_config()
        c.struct_size = UInt32(MemoryLayout<kplm_otlp_config>.size)
        c.endpoint = OTLPDefaults.endpoint
        c.timeout_ms = OTLPSinkConfiguration.defaultTimeoutMs
        c.max_retries = UInt32(OTLPSinkConfiguration().maxRetries)
        c.service_name = OTLPDefaults.serviceName
        c.compression = UInt32(KPLM_OTLP_COMPRESSION_DEFAULT.rawValue)
        return c
    }
}

@c @implementation
public func kplm_otlp_config_init(_ config: UnsafeMutablePointer<kplm_otlp_config>?) {
    // Binaries built before 1.0: the 1.0 layout (kplm_otlp_config_init_sized).
    kplm_otlp_config.initialize(config, size: 0)
}

@c @implementation
public func kplm_sink_otlp(_ config: UnsafePointer<kplm_otlp_config>?,
                           _ out: UnsafeMutablePointer<kplm_sink>?) -> kplm_status {
    BuiltinSinks.construct(config, out) { c throws(MetricsError) in
        try reportingMissingLibraries { () throws(MetricsError) in try OTLPSink(configuration: otlpConfiguration(c)) }
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
    guard c.header_count <= maxHeaders else {
        throw MetricsError(.invalidArgument, "OTLP: more than \(maxHeaders) headers")
    }
    if c.header_count > 0 {
        guard let lines = c.headers else {
            throw MetricsError(.invalidArgument, "OTLP: header_count is \(c.header_count) but headers is NULL")
        }
        for i in 0..<c.header_count {
            guard let line = lines[i] else { throw MetricsError(.invalidArgument, "OTLP: header \(i) is NULL") }
            let text = try CArguments.string(line, limit: maxStringBytes, label: "OTLP header")
            let (name, value) = try OTLPEnvironment.parseHeaderLine(text)
            guard !configuration.headers.keys.contains(where: { $0.lowercased() == name.lowercased() }) else {
                throw MetricsError(.invalidArgument, "OTLP: header \(name) is given twice")
            }
            configuration.headers[name] = value
        }
    }
    switch c.compression {
    case UInt32(KPLM_OTLP_COMPRESSION_DEFAULT.rawValue): break
    case UInt32(KPLM_OTLP_COMPRESSION_NONE.rawValue): configuration.compression = OTLPCompression.none
    case UInt32(KPLM_OTLP_COMPRESSION_GZIP.rawValue): configuration.compression = .gzip
    default: throw MetricsError(.invalidArgument, "OTLP: unknown compression \(c.compression)")
    }
    return configuration
}
