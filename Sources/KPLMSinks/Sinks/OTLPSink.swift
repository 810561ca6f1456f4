import KPLM

/// Settings of an ``OTLPSink``. Defaults match `kplm_otlp_config_init`.
public struct OTLPSinkConfiguration: Sendable, Equatable {
    /// The default endpoint: a collector's OTLP/HTTP receiver on this host.
    public static let defaultEndpoint = "http://127.0.0.1:4318/v1/metrics"
    /// The default resource attribute `service.name`.
    public static let defaultServiceName = "kplm"

    /// The URL each export is POSTed to: `http://host[:port]/path` (see
    /// ``OTLPEndpoint/init(parsing:)``; plain HTTP only).
    public var endpoint: String
    /// The budget of one export in milliseconds, finite and > 0: every
    /// request (connect included) and every wait between retries ends
    /// within it. Default 5000.
    public var timeoutMs: Double
    /// Retries after a 429, 502, 503 or 504 answer or a connection error;
    /// at least 0. Default 3.
    public var maxRetries: Int
    /// The resource attribute `service.name`; "" means the default, "kplm".
    public var serviceName: String

    /// Creates a configuration; every argument has the default above.
    public init(endpoint: String = defaultEndpoint, timeoutMs: Double = 5_000, maxRetries: Int = 3,
                serviceName: String = defaultServiceName) {
        self.endpoint = endpoint
        self.timeoutMs = timeoutMs
        self.maxRetries = maxRetries
        self.serviceName = serviceName
    }

    /// Throws `invalidArgument` for an endpoint that is not
    /// `http://host[:port]/path`, a timeout that is not finite and > 0, or
    /// a negative retry count.
    public func validate() throws(MetricsError) {
        _ = try OTLPEndpoint(parsing: endpoint)
        guard timeoutMs.isFinite, timeoutMs > 0 else {
            throw MetricsError(.invalidArgument, "the OTLP timeout must be finite and > 0 ms, got \(timeoutMs)")
        }
        guard maxRetries >= 0 else {
            throw MetricsError(.invalidArgument, "the OTLP retry count must be >= 0, got \(maxRetries)")
        }
    }
}

/// A sink POSTing every export to an OpenTelemetry collector over
/// OTLP/HTTP, as one protobuf `ExportMetricsServiceRequest`
/// (Content-Type `application/x-protobuf`; see ``OTLPEncoding``): each
/// key becomes a delta histogram data point with count, sum, min and max.
///
/// Each request uses a fresh connection (`Connection: close`). A 2xx
/// answer is success. A 429, 502, 503 or 504 answer, or a failure to
/// connect, send or read the answer, is retried up to
/// ``OTLPSinkConfiguration/maxRetries`` times, after the answer's
/// Retry-After or else an exponential backoff (0.1 s, 0.2 s, … with
/// jitter). The whole export, waits included, ends within
/// ``OTLPSinkConfiguration/timeoutMs``: a wait that would pass it fails the
/// export at once. Any other status fails it at once. A failed export
/// throws `sinkFailed`, and the manager offers the data again at the next
/// flush (so a collector may see a batch twice: delivery is at least once).
/// A host name is resolved at every export.
public final class OTLPSink: MetricsSink {
    /// The settings this sink was created with.
    public let configuration: OTLPSinkConfiguration
    /// The parsed ``OTLPSinkConfiguration/endpoint``.
    public let endpoint: OTLPEndpoint

    private struct State {
        var requests = 0
        var exports = 0
        var lastStatus: Int?
    }

    private let state = Locked(State())
    private let serviceName: String

    /// Creates a sink; nothing is connected before the first export.
    /// Throws `invalidArgument` for an invalid configuration
    /// (``OTLPSinkConfiguration/validate()``).
    public init(configuration: OTLPSinkConfiguration = OTLPSinkConfiguration()) throws(MetricsError) {
        try configuration.validate()
        self.configuration = configuration
        self.endpoint = try OTLPEndpoint(parsing: configuration.endpoint)
        self.serviceName = configuration.serviceName.isEmpty ? OTLPSinkConfiguration.defaultServiceName
            : configuration.serviceName
    }

    /// HTTP requests sent so far (attempts, retries included).
    public var requestCount: Int { state.withLock { $0.requests } }

    /// Exports that succeeded so far.
    public var successfulExportCount: Int { state.withLock { $0.exports } }

    /// The status of the last answer received, nil before any.
    public var lastStatus: Int? { state.withLock { $0.lastStatus } }

    /// Encodes `snapshots` and POSTs them (see ``OTLPSink``). Throws
    /// ``MetricsError`` `sinkFailed` when the export fails.
    public func export(_ snapshots: [MetricSnapshot]) throws {
        guard !snapshots.isEmpty else { return }
        let body = OTLPEncoding.exportRequest(snapshots, serviceName: serviceName)
        try send(body)
        state.withLock { $0.exports += 1 }
    }

    /// The statuses worth a retry.
    static let retryableStatuses: Set<Int> = [429, 502, 503, 504]

    /// POSTs `body`, retrying as ``OTLPSink`` describes.
    func send(_ body: [UInt8]) throws(MetricsError) {
        let request = OTLPHTTP.request(endpoint, body: body)
        let deadline = EMFSocket.deadline(afterMs: configuration.timeoutMs)
        var attempt = 0
        while true {
            state.withLock { $0.requests += 1 }
            let failure: MetricsError
            var wait: Double?
            switch try OTLPHTTP.exchange(request, with: endpoint, deadline: deadline) {
            case .response(let response):
                state.withLock { $0.lastStatus = response.status }
                if (200..<300).contains(response.status) { return }
                failure = MetricsError(.sinkFailed, "OTLP: \(endpoint.hostHeader)\(endpoint.path) answered "
                                       + "HTTP \(response.status) \(response.reason)")
                guard Self.retryableStatuses.contains(response.status) else { throw failure }
                wait = response.retryAfter
            case .transportFailure(let error):
                failure = error
            }
            OTLPHTTP.sleep(try RetrySchedule.delay(afterAttempt: attempt, maxRetries: configuration.maxRetries,
                                                   wait: wait, deadline: deadline,
                                                   timeoutMs: configuration.timeoutMs, failure: failure.message))
            attempt += 1
        }
    }
}
