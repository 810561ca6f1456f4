import KPLM

/// Settings of a ``PrometheusSink``.
public struct PrometheusConfiguration: Sendable, Equatable {
    /// The listen address: a numeric IPv4 or IPv6 address ("0.0.0.0" or
    /// "::" for every interface) or a host name resolved by
    /// ``PrometheusSink/open()``. Default "127.0.0.1".
    public var address: String
    /// The TCP port; not 0. Default 9464.
    public var port: UInt16
    /// Prepended to every metric name before sanitizing and snake-casing
    /// ("MyApp" + "UserRecordsPut" → "my_app_user_records_put"); "" for
    /// none. Default "kplm_".
    public var prefix: String
    /// How long one connection may take to send its request and receive
    /// the response, in seconds (0 < t ≤ 3600). Default 5.
    public var requestTimeoutSeconds: Double

    /// Longest address accepted, in bytes.
    public static let maxAddressBytes = 253
    /// Longest prefix accepted, in bytes.
    public static let maxPrefixBytes = 255

    /// Creates a configuration; every argument has the default above.
    public init(address: String = "127.0.0.1", port: UInt16 = 9464, prefix: String = "kplm_",
                requestTimeoutSeconds: Double = 5) {
        self.address = address
        self.port = port
        self.prefix = prefix
        self.requestTimeoutSeconds = requestTimeoutSeconds
    }

    /// Throws `invalidArgument` for an address that is neither a numeric
    /// address nor a host name, port 0, an over-long prefix, or a timeout
    /// out of range.
    public func validate() throws(MetricsError) {
        guard address.utf8.count <= Self.maxAddressBytes, SocketTransport.isValidHost(address) else {
            throw MetricsError(.invalidArgument, "the Prometheus address is not an IP address or host name")
        }
        guard port != 0 else { throw MetricsError(.invalidArgument, "the Prometheus port must not be 0") }
        guard prefix.utf8.count <= Self.maxPrefixBytes else {
            throw MetricsError(.invalidArgument, "the Prometheus prefix is longer than \(Self.maxPrefixBytes) bytes")
        }
        guard requestTimeoutSeconds.isFinite, requestTimeoutSeconds > 0, requestTimeoutSeconds <= 3600 else {
            throw MetricsError(.invalidArgument, "the Prometheus request timeout must be within (0, 3600] seconds")
        }
    }
}

/// A sink serving what it was exported to Prometheus scrapers over HTTP.
///
/// ``open()`` listens on the configured address and port and serves
/// `GET /metrics` on a thread of its own ("kplm-prometheus") until
/// ``close()``. Every export is merged into a store, per key, under the
/// family name ``PrometheusFormat/familyName(_:unit:)`` of
/// `<prefix><name>` (snake_case, "_seconds" or "_bytes" for KPL metrics in
/// milliseconds or bytes): a summary without quantiles whose samples
/// `<family>_count` and `<family>_sum` are totals since open, and gauges
/// `<family>_min` and `<family>_max` of the last export that had the key;
/// the key's dimensions are labels. Values of metrics in milliseconds are
/// divided by 1000 (seconds). Keys with the same family name are merged.
/// So "UserRecordsPut" with the default prefix is served as
/// `kplm_user_records_put_count`, `_sum`, `_min` and `_max`, and
/// "BufferingTime" as `kplm_buffering_time_seconds_count` and so on; the
/// exposition passes `promtool check metrics` (see ``PrometheusFormat``).
///
/// The text format 0.0.4 is served, or OpenMetrics 1.0 when the request's
/// Accept header contains `application/openmetrics-text`. Other paths get
/// 404, other methods than GET and HEAD 405. A scrape copies the store
/// under its lock and formats outside it.
public final class PrometheusSink: MetricsSink {
    /// Content-Type of the text format.
    public static let textContentType = "text/plain; version=0.0.4; charset=utf-8"
    /// Content-Type of the OpenMetrics format.
    public static let openMetricsContentType = "application/openmetrics-text; version=1.0.0; charset=utf-8"

    /// The settings this sink was created with.
    public let configuration: PrometheusConfiguration

    private let store = Locked([String: PrometheusFormat.Family]())
    private let server = Locked<PrometheusServer?>(nil)

    /// Creates a sink; nothing listens before ``open()``.
    ///
    /// Throws `invalidArgument` for an invalid configuration
    /// (``PrometheusConfiguration/validate()``).
    public init(configuration: PrometheusConfiguration = PrometheusConfiguration()) throws(MetricsError) {
        try configuration.validate()
        self.configuration = configuration
    }

    deinit { server.withLock { $0 }?.stop() }

    /// Whether the server is listening.
    public var isServing: Bool { server.withLock { $0 != nil } }

    /// Empties the store and starts serving (stopping an earlier server
    /// first). Throws ``MetricsError`` `sinkFailed` if the address cannot
    /// be resolved or bound (port in use) or the thread cannot start.
    public func open() throws {
        close()
        store.withLock { $0 = [:] }
        let started = try PrometheusServer(address: configuration.address, port: configuration.port,
                                           timeout: configuration.requestTimeoutSeconds) { [store] request in
            Self.respond(to: request, store: store)
        }
        server.withLock { $0 = started }
    }

    /// Merges `snapshots` into the store. Never throws.
    public func export(_ snapshots: [MetricSnapshot]) throws {
        // Sanitize and merge the batch outside the lock.
        var batch: [String: PrometheusFormat.Family] = [:]
        for snapshot in snapshots {
            let (base, labels) = PrometheusFormat.seriesKey(snapshot, prefix: configuration.prefix)
            let new = PrometheusFormat.series(of: snapshot)
            batch[base, default: PrometheusFormat.Family(rawName: configuration.prefix + snapshot.name,
                                                         unit: snapshot.unit)]
                .series[labels, default: PrometheusFormat.Series(count: 0, sum: 0, min: .infinity, max: -.infinity)]
                .merge(new, replacingExtremes: false)
        }
        store.withLock { store in
            for (base, family) in batch {
                if store[base] == nil {
                    store[base] = family
                    continue
                }
                for (labels, series) in family.series {
                    store[base]!.series[labels, default: PrometheusFormat.Series(count: 0, sum: 0, min: 0, max: 0)]
                        .merge(series, replacingExtremes: true)
                }
            }
        }
    }

    /// Stops serving: wakes and joins the server thread, closes its socket.
    public func close() {
        server.withLock { s -> PrometheusServer? in
            defer { s = nil }
            return s
        }?.stop()
    }

    /// The answer to one request: the exposition, 404 or 405.
    private static func respond(to request: PrometheusServer.Request,
                                store: Locked<[String: PrometheusFormat.Family]>) -> PrometheusServer.Response {
        guard request.path == "/metrics" else { return PrometheusServer.plain(404, "404 page not found\n") }
        guard request.method == "GET" || request.method == "HEAD" else {
            return PrometheusServer.plain(405, "405 method not allowed\n", extraHeaders: "Allow: GET, HEAD\r\n")
        }
        let openMetrics = request.accept.lowercased().contains("application/openmetrics-text")
        let snapshot = store.withLock { $0 }
        return PrometheusServer.Response(status: 200,
                                         contentType: openMetrics ? openMetricsContentType : textContentType,
                                         body: PrometheusFormat.render(snapshot, openMetrics: openMetrics))
    }
}

extension PrometheusFormat.Series {
    /// Adds `other`'s count and sum; takes its min and max when
    /// `replacingExtremes` (a later export), else keeps the extremes of both
    /// (keys of one export that sanitize alike).
    mutating func merge(_ other: Self, replacingExtremes: Bool) {
        let (total, overflow) = count.addingReportingOverflow(other.count)
        count = overflow ? .max : total
        sum += other.sum
        min = replacingExtremes ? other.min : Swift.min(min, other.min)
        max = replacingExtremes ? other.max : Swift.max(max, other.max)
    }
}
