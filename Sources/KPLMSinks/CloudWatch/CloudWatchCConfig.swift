import KPLM
import KPLMCABI
import CKPLM
import Glibc

/// Longest string accepted from C, in bytes.
private let maxStringBytes = 4096

/// kplm_cloudwatch_config (kplm_cloudwatch_config_init, kplm_sink_cloudwatch:
/// SinkConfigExports.swift): its defaults and the CloudWatchSink it makes.
extension kplm_cloudwatch_config: BuiltinSinkConfig {
    package static var defaults: kplm_cloudwatch_config {
        var c = kplm_cloudwatch_config()
        c.timeout_ms = CloudWatchSinkConfiguration.defaultTimeoutMs
        c.max_retries = UInt32(CloudWatchSinkConfiguration.defaultMaxRetries)
        return c
    }

    package func makeSink() throws(MetricsError) -> any MetricsSink {
        func string(_ p: UnsafePointer<CChar>?, _ label: String) throws(MetricsError) -> String? {
            try CArguments.optionalString(p, limit: maxStringBytes, label: "CloudWatch \(label)")
        }
        let configuration = CloudWatchSinkConfiguration(
            region: try string(region, "region"),
            endpoint: try string(endpoint, "endpoint"),
            namespace: try string(cw_namespace, "namespace"),
            accessKeyId: try string(access_key_id, "access key id"),
            secretAccessKey: try string(secret_access_key, "secret access key"),
            sessionToken: try string(session_token, "session token"),
            profile: try string(profile, "profile"),
            timeoutMs: timeout_ms,
            maxRetries: Int(max_retries))
        return try reportingMissingLibraries { () throws(MetricsError) in try CloudWatchSink(configuration: configuration) }
    }
}
