import KPLM
import KPLMCABI
import CKPLM
import Glibc

/// Static C strings of the EMF defaults (never freed).
private enum EMFDefaults {
    nonisolated(unsafe) static let host = UnsafePointer(strdup("127.0.0.1")!)
}

/// Longest path accepted, in bytes (Linux PATH_MAX less the NUL).
private let maxPathBytes = 4095

/// kplm_emf_config (kplm_emf_config_init, kplm_sink_emf:
/// SinkConfigExports.swift): its defaults and the EMFSink it makes.
extension kplm_emf_config: BuiltinSinkConfig {
    package static var defaults: kplm_emf_config {
        var c = kplm_emf_config()
        c.destination = KPLM_EMF_STDOUT
        c.host = EMFDefaults.host
        c.port = EMFSinkConfiguration.defaultAgentPort
        c.timeout_ms = EMFSinkConfiguration().timeoutMs
        return c
    }

    package func makeSink() throws(MetricsError) -> any MetricsSink { try EMFSink(emfConfiguration(self)) }
}

/// The Swift configuration of a C one, strings checked (bounded, UTF-8).
private func emfConfiguration(_ c: kplm_emf_config) throws(MetricsError) -> EMFSinkConfiguration {
    var configuration = EMFSinkConfiguration(timeoutMs: c.timeout_ms)
    switch c.destination {
    case KPLM_EMF_STDOUT:
        configuration.destination = .stdout
    case KPLM_EMF_FILE:
        guard let path = c.path else { throw MetricsError(.invalidArgument, "EMF file destination without a path") }
        configuration.destination = .file(path: try CArguments.string(path, limit: maxPathBytes, label: "EMF path"))
    case KPLM_EMF_TCP, KPLM_EMF_UDP:
        guard let hostPointer = c.host else { throw MetricsError(.invalidArgument, "EMF host is NULL") }
        let host = try CArguments.string(hostPointer, limit: 253, label: "EMF host")
        configuration.destination = c.destination == KPLM_EMF_TCP ? .tcp(host: host, port: c.port)
            : .udp(host: host, port: c.port)
    default:
        throw MetricsError(.invalidArgument, "unknown EMF destination \(c.destination.rawValue)")
    }
    if let ns = c.cw_namespace {
        // Bytes: 4 per character at most, the limit itself is checked in characters.
        configuration.namespace = try CArguments.string(ns, limit: 4 * CloudWatchRequestBuilder.maxNamespaceLength,
                                                        label: "EMF namespace")
    }
    return configuration
}
