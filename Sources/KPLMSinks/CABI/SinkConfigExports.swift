import KPLM
import KPLMCABI
import CKPLM
import Glibc

// The C exports of the built-in sinks, one line each: every config struct
// has an init for the 1.0 layout (binaries built before 1.0), a sized init
// (the header's kplm_*_config_init macros call it with the caller's sizeof)
// and a constructor. Their bodies are generic (CallerLayout, BuiltinSinks);
// what differs per sink, its defaults and the sink a config makes, lives
// beside the sink (<Sink>/<Sink>CConfig.swift). Thread-safe: each touches
// only its arguments.

// The layouts of the config structs (struct growth under the rules of kplm.h).

extension kplm_dogstatsd_config: CConfigStruct { package static let callerLayout = CallerLayout(lastV1Field: \kplm_dogstatsd_config.max_datagram_bytes) }
extension kplm_emf_config: CConfigStruct { package static let callerLayout = CallerLayout(lastV1Field: \kplm_emf_config.timeout_ms) }
extension kplm_prometheus_config: CConfigStruct { package static let callerLayout = CallerLayout(lastV1Field: \kplm_prometheus_config.prefix) }
extension kplm_cloudwatch_config: CConfigStruct { package static let callerLayout = CallerLayout(lastV1Field: \kplm_cloudwatch_config.max_retries) }

extension kplm_otlp_config: CConfigStruct {
    /// 1.0 ends with compression; the 0.x layout ended with service_name.
    package static let callerLayout = CallerLayout(
        lastV1Field: \kplm_otlp_config.compression,
        olderSizes: [MemoryLayout<kplm_otlp_config>.offset(of: \kplm_otlp_config.headers)!])
}

// kplm_*_config_init: the 1.0 layout.

@c @implementation public func kplm_dogstatsd_config_init(_ config: UnsafeMutablePointer<kplm_dogstatsd_config>?) { kplm_dogstatsd_config.initialize(config, size: 0) }
@c @implementation public func kplm_emf_config_init(_ config: UnsafeMutablePointer<kplm_emf_config>?) { kplm_emf_config.initialize(config, size: 0) }
@c @implementation public func kplm_prometheus_config_init(_ config: UnsafeMutablePointer<kplm_prometheus_config>?) { kplm_prometheus_config.initialize(config, size: 0) }
@c @implementation public func kplm_otlp_config_init(_ config: UnsafeMutablePointer<kplm_otlp_config>?) { kplm_otlp_config.initialize(config, size: 0) }
@c @implementation public func kplm_cloudwatch_config_init(_ config: UnsafeMutablePointer<kplm_cloudwatch_config>?) { kplm_cloudwatch_config.initialize(config, size: 0) }

// kplm_*_config_init_sized: the caller's `size` bytes.

@c @implementation public func kplm_dogstatsd_config_init_sized(_ config: UnsafeMutablePointer<kplm_dogstatsd_config>?, _ size: Int) { kplm_dogstatsd_config.initialize(config, size: size) }
@c @implementation public func kplm_emf_config_init_sized(_ config: UnsafeMutablePointer<kplm_emf_config>?, _ size: Int) { kplm_emf_config.initialize(config, size: size) }
@c @implementation public func kplm_prometheus_config_init_sized(_ config: UnsafeMutablePointer<kplm_prometheus_config>?, _ size: Int) { kplm_prometheus_config.initialize(config, size: size) }
@c @implementation public func kplm_otlp_config_init_sized(_ config: UnsafeMutablePointer<kplm_otlp_config>?, _ size: Int) { kplm_otlp_config.initialize(config, size: size) }
@c @implementation public func kplm_cloudwatch_config_init_sized(_ config: UnsafeMutablePointer<kplm_cloudwatch_config>?, _ size: Int) { kplm_cloudwatch_config.initialize(config, size: size) }

// kplm_sink_*: a built-in kplm_sink owning the sink the config makes (BuiltinSinks.construct).

@c @implementation public func kplm_sink_dogstatsd(_ config: UnsafePointer<kplm_dogstatsd_config>?, _ out: UnsafeMutablePointer<kplm_sink>?) -> kplm_status { BuiltinSinks.construct(config, out) }
@c @implementation public func kplm_sink_emf(_ config: UnsafePointer<kplm_emf_config>?, _ out: UnsafeMutablePointer<kplm_sink>?) -> kplm_status { BuiltinSinks.construct(config, out) }
@c @implementation public func kplm_sink_prometheus(_ config: UnsafePointer<kplm_prometheus_config>?, _ out: UnsafeMutablePointer<kplm_sink>?) -> kplm_status { BuiltinSinks.construct(config, out) }
@c @implementation public func kplm_sink_otlp(_ config: UnsafePointer<kplm_otlp_config>?, _ out: UnsafeMutablePointer<kplm_sink>?) -> kplm_status { BuiltinSinks.construct(config, out) }
@c @implementation public func kplm_sink_cloudwatch(_ config: UnsafePointer<kplm_cloudwatch_config>?, _ out: UnsafeMutablePointer<kplm_sink>?) -> kplm_status { BuiltinSinks.construct(config, out) }

/// `make()`, after writing the message of a `sinkFailed` error (a library
/// that cannot be loaded: libcurl, zlib) to stderr: the C ABI has no message
/// channel.
func reportingMissingLibraries<T>(_ make: () throws(MetricsError) -> T) throws(MetricsError) -> T {
    do {
        return try make()
    } catch {
        if error.code == .sinkFailed {
            let line = Array("kplm: \(error.message)\n".utf8)
            _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        }
        throw error
    }
}
