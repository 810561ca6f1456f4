import KPLM
import KPLMCABI
import CKPLM
import Glibc

// kplm_cloudwatch_config_init and kplm_sink_cloudwatch: CloudWatchSink for C
// callers, handed over as a built-in kplm_sink (see BuiltinSinks).

/// Longest string accepted from C, in bytes.
private let maxStringBytes = 4096

extension kplm_cloudwatch_config {
    /// Field by field, so that a build against a later header (more fields,
    /// left zero) compiles too.
    package static var defaults: kplm_cloudwatch_config {
        var c = kplm_cloudwatch_config()
        c.struct_size = UInt32(MemoryLayout<kplm_cloudwatch_config>.size)
        c.timeout_ms = CloudWatchSinkConfiguration.defaultTimeoutMs
        c.max_retries = UInt32(CloudWatchSinkConfiguration.defaultMaxRetries)
        return c
    }
}

@c @implementation
public func kplm_cloudwatch_config_init(_ config: UnsafeMutablePointer<kplm_cloudwatch_config>?) {
    // Binaries built before 1.0: the 1.0 layout (kplm_cloudwatch_config_init_sized).
    kplm_cloudwatch_config.initialize(config, size: 0)
}

@c @implementation
public func kplm_sink_cloudwatch(_ config: UnsafePointer<kplm_cloudwatch_config>?,
                                 _ out: UnsafeMutablePointer<kplm_sink>?) -> kplm_status {
    BuiltinSinks.construct(config, out) { c throws(MetricsError) in
        func string(_ p: UnsafePointer<CChar>?, _ label: String) throws(MetricsError) -> String? {
            guard let p else { return nil }
            return try CArguments.string(p, limit: maxStringBytes, label: "CloudWatch \(label)")
        }
        let configuration = CloudWatchSinkConfiguration(
            region: try string(c.region, "region"),
            endpoint: try string(c.endpoint, "endpoint"),
            namespace: try string(c.cw_namespace, "namespace"),
            accessKeyId: try string(c.access_key_id, "access key id"),
            secretAccessKey: try string(c.secret_access_key, "secret access key"),
            sessionToken: try string(c.session_token, "session token"),
            profile: try string(c.profile, "profile"),
            timeoutMs: c.timeout_ms,
            maxRetries: Int(c.max_retries))
        return try reportingMissingLibraries { () throws(MetricsError) in try CloudWatchSink(configuration: configuration) }
    }
}

/// `make()`, after writing the message of a `sinkFailed` error (a library
/// that cannot be loaded) to stderr: the C ABI has no message channel.
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
