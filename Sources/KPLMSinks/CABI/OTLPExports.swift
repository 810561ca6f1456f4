import KPLM
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

@c @implementation
public func kplm_otlp_config_init(_ config: UnsafeMutablePointer<kplm_otlp_config>?) {
    guard let config else { return }
    let defaults = OTLPSinkConfiguration()
    config.initialize(to: kplm_otlp_config(
        struct_size: UInt32(MemoryLayout<kplm_otlp_config>.size),
        endpoint: OTLPDefaults.endpoint,
        timeout_ms: defaults.timeoutMs,
        max_retries: UInt32(defaults.maxRetries),
        service_name: OTLPDefaults.serviceName))
}

@c @implementation
public func kplm_sink_otlp(_ config: UnsafePointer<kplm_otlp_config>?,
                           _ out: UnsafeMutablePointer<kplm_sink>?) -> kplm_status {
    BuiltinSinks.construct(config, out) { c throws(MetricsError) in
        var configuration = OTLPSinkConfiguration(timeoutMs: c.timeout_ms, maxRetries: Int(c.max_retries))
        if let endpoint = c.endpoint {
            configuration.endpoint = try CArguments.string(endpoint, limit: maxStringBytes, label: "OTLP endpoint")
        }
        if let name = c.service_name {
            configuration.serviceName = try CArguments.string(name, limit: maxStringBytes, label: "OTLP service name")
        }
        return try OTLPSink(configuration: configuration)
    }
}
