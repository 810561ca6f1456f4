import KPLM
import KPLMCABI
import CKPLM

// The layouts of the built-in sinks' config structs (see CallerLayout in the
// core: struct growth under the rules of kplm.h), and their sized inits,
// which the header's kplm_*_config_init macros call with the caller's
// sizeof. The defaults of each struct live beside its constructor.

extension kplm_dogstatsd_config: CConfigStruct {
    package static let callerLayout = CallerLayout(lastV1Field: \kplm_dogstatsd_config.max_datagram_bytes)
}

extension kplm_emf_config: CConfigStruct {
    package static let callerLayout = CallerLayout(lastV1Field: \kplm_emf_config.timeout_ms)
}

extension kplm_prometheus_config: CConfigStruct {
    package static let callerLayout = CallerLayout(lastV1Field: \kplm_prometheus_config.prefix)
}

extension kplm_otlp_config: CConfigStruct {
    /// 1.0 ends with compression; the 0.x layout ended with service_name.
    package static let callerLayout = CallerLayout(
        lastV1Field: \kplm_otlp_config.compression,
        olderSizes: [MemoryLayout<kplm_otlp_config>.offset(of: \kplm_otlp_config.headers)!])
}

extension kplm_cloudwatch_config: CConfigStruct {
    package static let callerLayout = CallerLayout(lastV1Field: \kplm_cloudwatch_config.max_retries)
}

@c @implementation
public func kplm_dogstatsd_config_init_sized(_ config: UnsafeMutablePointer<kplm_dogstatsd_config>?, _ size: Int) {
    kplm_dogstatsd_config.initialize(config, size: size)
}

@c @implementation
public func kplm_emf_config_init_sized(_ config: UnsafeMutablePointer<kplm_emf_config>?, _ size: Int) {
    kplm_emf_config.initialize(config, size: size)
}

@c @implementation
public func kplm_prometheus_config_init_sized(_ config: UnsafeMutablePointer<kplm_prometheus_config>?, _ size: Int) {
    kplm_prometheus_config.initialize(config, size: size)
}

@c @implementation
public func kplm_otlp_config_init_sized(_ config: UnsafeMutablePointer<kplm_otlp_config>?, _ size: Int) {
    kplm_otlp_config.initialize(config, size: size)
}

@c @implementation
public func kplm_cloudwatch_config_init_sized(_ config: UnsafeMutablePointer<kplm_cloudwatch_config>?, _ size: Int) {
    kplm_cloudwatch_config.initialize(config, size: size)
}
