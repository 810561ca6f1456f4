import KPLM

/// How an ``OTLPSink`` compresses its requests.
public enum OTLPCompression: String, Sendable, Equatable {
    /// Bodies are sent as they are.
    case none
    /// Bodies are gzipped (Content-Encoding: gzip; zlib, loaded at run time).
    case gzip
}

/// Settings of an ``OTLPSink``. Defaults match `kplm_otlp_config_init`.
///
/// What is left nil (or empty) comes from the standard OpenTelemetry
/// environment variables, read when the sink is created; what is set wins
/// over them: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT (used as is), else
/// OTEL_EXPORTER_OTLP_ENDPOINT (a base URL: "/v1/metrics" is appended);
/// OTEL_EXPORTER_OTLP_METRICS_HEADERS and OTEL_EXPORTER_OTLP_HEADERS
/// (comma-separated key=value, values URL-decoded; a configured header of
/// the same name wins); OTEL_EXPORTER_OTLP_METRICS_TIMEOUT, else
/// OTEL_EXPORTER_OTLP_TIMEOUT (milliseconds);
/// OTEL_EXPORTER_OTLP_METRICS_COMPRESSION, else
/// OTEL_EXPORTER_OTLP_COMPRESSION ("gzip" or "none").
public struct OTLPSinkConfiguration: Sendable, Equatable {
    /// The default endpoint: a collector's OTLP/HTTP receiver on this host.
    public static let defaultEndpoint = "http://127.0.0.1:4318/v1/metrics"
    /// The default resource attribute `service.name`.
    public static let defaultServiceName = "kplm"
    /// The default budget of one export, in milliseconds.
    public static let defaultTimeoutMs: Double = 5_000

    /// The URL each export is POSTed to: `http(s)://host[:port]/path` (see
    /// ``OTLPEndpoint/init(parsing:)``; https needs libcurl.so.4). nil = the
    /// environment (see above), else ``defaultEndpoint``.
    public var endpoint: String?
    /// The budget of one export in milliseconds, finite and > 0: every
    /// request (connect included) and every wait between retries ends
    /// within it. nil = the environment, else 5000.
    public var timeoutMs: Double?
    /// Retries after a 429, 502, 503 or 504 answer or a connection error;
    /// at least 0. Default 3.
    public var maxRetries: Int
    /// The resource attribute `service.name`; "" means the default, "kplm".
    public var serviceName: String
    /// Extra request headers, name to value (names printable ASCII without
    /// separators, values without control characters). Those of the
    /// environment are added unless named here. Default none.
    public var headers: [String: String]
    /// nil = the environment, else ``OTLPCompression/none``.
    public var compression: OTLPCompression?

    /// Creates a configuration; every argument has the default above.
    public init(endpoint: String? = nil, timeoutMs: Double? = nil, maxRetries: Int = 3,
                serviceName: String = defaultServiceName, headers: [String: String] = [:],
                compression: OTLPCompression? = nil) {
        self.endpoint = endpoint
        self.timeoutMs = timeoutMs
        self.maxRetries = maxRetries
        self.serviceName = serviceName
        self.headers = headers
        self.compression = compression
    }

    /// Throws `invalidArgument` for an endpoint that is not
    /// `http(s)://host[:port]/path`, a timeout that is not finite and > 0,
    /// a negative retry count, or a header that is not valid (see
    /// ``headers``). Values left to the environment are not checked here.
    public func validate() throws(MetricsError) {
        if let endpoint { _ = try OTLPEndpoint(parsing: endpoint) }
        if let timeoutMs {
            guard timeoutMs.isFinite, timeoutMs > 0 else {
                throw MetricsError(.invalidArgument, "the OTLP timeout must be finite and > 0 ms, got \(timeoutMs)")
            }
        }
        guard maxRetries >= 0 else {
            throw MetricsError(.invalidArgument, "the OTLP retry count must be >= 0, got \(maxRetries)")
        }
        for (name, value) in headers { try OTLPEnvironment.checkHeader(name, value, source: "OTLP header") }
    }
}

/// A sink POSTing every export to an OpenTelemetry collector over
/// OTLP/HTTP, as one protobuf `ExportMetricsServiceRequest`
/// (Content-Type `application/x-protobuf`; see ``OTLPEncoding``): each
/// key becomes a delta histogram data point with count, sum, min and max.
///
/// Requests go through libcurl (libcurl.so.4, opened at run time) when it
/// can be loaded: http or https. Without it, plain http still works over
/// the sink's own HTTP/1.1 client (a fresh connection per request,
/// `Connection: close`), and an https endpoint fails the sink's creation.
/// gzip compression needs zlib (libz.so.1), also opened at run time.
///
/// A 2xx answer is success. A 429, 502, 503 or 504 answer, or a failure to
/// connect, send or read the answer, is retried up to
/// ``OTLPSinkConfiguration/maxRetries`` times, after the answer's
/// Retry-After or else an exponential backoff (0.1 s, 0.2 s, … with
/// jitter). The whole export, waits included, ends within the timeout: a
/// wait that would pass it fails the export at once. Any other status fails
/// it at once. A failed export throws `sinkFailed`, and the manager offers
/// the data again at the next flush (so a collector may see a batch twice:
/// delivery is at least once). A host name is resolved at every export.
public final class OTLPSink: MetricsSink {
    /// The settings this sink was created with.
    public let configuration: OTLPSinkConfiguration
    /// The endpoint requests go to: the configuration's, the environment's,
    /// or the default.
    public let endpoint: OTLPEndpoint
    /// The budget of one export (ms): the configuration's, the
    /// environment's, or 5000.
    public let timeoutMs: Double
    /// The extra headers sent with every request (configured and from the
    /// environment), sorted by name.
    public let headers: [(name: String, value: String)]
    /// The compression in use (configured, from the environment, or none).
    public let compression: OTLPCompression
    /// Whether requests go through libcurl (else the sink's own HTTP client).
    public let usesLibcurl: Bool

    private struct State {
        var requests = 0
        var exports = 0
        var lastStatus: Int?
    }

    private let state = Locked(State())
    private let serviceName: String

    /// Creates a sink; nothing is connected before the first export.
    /// Throws `invalidArgument` for an invalid configuration
    /// (``OTLPSinkConfiguration/validate()``) or environment variable;
    /// `sinkFailed` for an https endpoint without libcurl.so.4, or gzip
    /// without libz.so.1 (the message names the library and its Debian package).
    public convenience init(configuration: OTLPSinkConfiguration = OTLPSinkConfiguration()) throws(MetricsError) {
        try self.init(configuration: configuration, environment: CloudWatchEnvironment.process)
    }

    init(configuration: OTLPSinkConfiguration, environment: @escaping CloudWatchEnvironment.Lookup) throws(MetricsError) {
        try configuration.validate()
        let resolved = try OTLPEnvironment.resolve(configuration, env: environment)
        self.configuration = configuration
        self.endpoint = resolved.endpoint
        self.timeoutMs = resolved.timeoutMs
        self.headers = resolved.headers
        self.compression = resolved.compression
        self.serviceName = configuration.serviceName.isEmpty ? OTLPSinkConfiguration.defaultServiceName
            : configuration.serviceName
        if endpoint.scheme == "https" { try CloudWatchHTTP.load(.curl, for: "OTLP (https)") }
        if compression == .gzip { try CloudWatchHTTP.load(.zlib, for: "OTLP (gzip)") }
        self.usesLibcurl = CloudWatchHTTP.available(.curl)
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

    /// The headers of every request besides Host and Content-Length: the
    /// protobuf Content-Type, User-Agent, Content-Encoding if gzipped, then
    /// the extra ones.
    func requestHeaders() -> [(name: String, value: String)] {
        var lines: [(name: String, value: String)] = [
            ("User-Agent", "kplm/\(OTLPEncoding.scopeVersion)"),
            ("Content-Type", "application/x-protobuf"),
        ]
        if compression == .gzip { lines.append(("Content-Encoding", "gzip")) }
        return lines + headers
    }

    /// POSTs `body`, retrying as ``OTLPSink`` describes.
    func send(_ body: [UInt8]) throws(MetricsError) {
        let payload = compression == .gzip ? try CloudWatchHTTP.gzip(body) : body
        let lines = requestHeaders()
        let request = usesLibcurl ? [] : OTLPHTTP.request(endpoint, headers: lines, body: payload)
        let deadline = SocketTransport.deadline(afterMs: timeoutMs)
        let target = "\(endpoint.hostHeader)\(endpoint.path)"
        var attempt = 0
        while true {
            state.withLock { $0.requests += 1 }
            let failure: MetricsError
            var wait: Double?
            let outcome = usesLibcurl ? curlExchange(payload, headers: lines, deadline: deadline)
                : try OTLPHTTP.exchange(request, with: endpoint, deadline: deadline)
            switch outcome {
            case .response(let response):
                state.withLock { $0.lastStatus = response.status }
                if (200..<300).contains(response.status) { return }
                failure = MetricsError(.sinkFailed, "OTLP: \(target) answered "
                                       + "HTTP \(response.status)" + (response.reason.isEmpty ? "" : " \(response.reason)"))
                guard Self.retryableStatuses.contains(response.status) else { throw failure }
                wait = response.retryAfter
            case .transportFailure(let error):
                failure = error
            }
            OTLPHTTP.sleep(try RetrySchedule.delay(afterAttempt: attempt, maxRetries: configuration.maxRetries,
                                                   wait: wait, deadline: deadline,
                                                   timeoutMs: timeoutMs, failure: failure.message))
            attempt += 1
        }
    }

    /// One POST through libcurl, within what is left before `deadline`.
    private func curlExchange(_ payload: [UInt8], headers: [(name: String, value: String)],
                              deadline: Double) -> OTLPHTTP.Outcome {
        let leftMs = SocketTransport.remainingMs(deadline)
        guard leftMs > 0 else { return .transportFailure(MetricsError(.sinkFailed, "OTLP: timed out")) }
        // A fresh connection per request, as the sink's own client does.
        switch CloudWatchHTTP.post(endpoint.url, headers: headers + [("Connection", "close")], body: payload,
                                   connectTimeoutMs: Int(leftMs),
                                   totalTimeoutMs: Int(leftMs)) {
        case .response(let r):
            let retryAfter = r.retryAfter.isEmpty ? nil
                : OTLPHTTP.retryAfterSeconds(r.retryAfter, wallNow: ManagerClock.wallNow())
            return .response(OTLPHTTP.Response(status: r.status, reason: "", retryAfter: retryAfter))
        case .transportFailure(let why):
            return .transportFailure(MetricsError(.sinkFailed, "OTLP: " + why))
        }
    }
}
