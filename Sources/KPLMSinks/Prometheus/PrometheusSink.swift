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
/// divided by 1000 (seconds). Two keys never share a series: a name whose
/// family would clash with another's ("FooCount" next to "Foo", "a-b" next
/// to "a_b", "BufferingTimeSeconds" next to KPL's "BufferingTime") gets a
/// stable 8-hex-digit hash of its raw name before the unit
/// ("kplm_foo_count_1f0e8a3c"), and a key whose labels another key of its
/// family holds gets a `kplm_key` label; the first name seen keeps the
/// plain name until the next ``open()`` (see ``PrometheusFormat``).
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

    /// The families served, by family name, and the names given so far.
    private struct Store {
        var families: [String: PrometheusFormat.Family] = [:]
        var naming = PrometheusFormat.Naming()
    }

    private let store = Locked(Store())
    private let server = Locked<PrometheusServer?>(nil)
    /// The dimension name that owns each label name, among the keys with
    /// free-form dimensions checked so far (see PrometheusKeyCheck.swift).
    let labelOwners = Locked<[String: String]>([:])

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
        store.withLock { $0 = Store() }
        let started = try PrometheusServer(address: configuration.address, port: configuration.port,
                                           timeout: configuration.requestTimeoutSeconds) { [store] request in
            Self.respond(to: request, store: store)
        }
        server.withLock { $0 = started }
    }

    /// Merges `snapshots` into the store. Never throws.
    public func export(_ snapshots: [MetricSnapshot]) throws {
        // Sanitize and merge the batch per key outside the lock (a key can
        // come once per window).
        var batch: [String: Pending] = [:]
        for snapshot in snapshots {
            let raw = configuration.prefix + snapshot.name
            let owner = StableHash.identity("", snapshot.dimensions)
            let new = PrometheusFormat.series(of: snapshot)
            let id = StableHash.identity(raw, snapshot.dimensions)
            if batch[id] == nil {
                let (labels, used) = PrometheusFormat.labels(snapshot.dimensions)
                batch[id] = Pending(raw: raw, unit: snapshot.unit, labels: labels, used: used, owner: owner,
                                    series: new)
            } else {
                batch[id]!.series.merge(new, replacingExtremes: false)
            }
        }
        // Names are claimed in raw name bytes order, whatever the order of the export.
        let ordered = batch.values.sorted {
            ByteIdentity.equal($0.raw, $1.raw) ? $0.owner.utf8.lexicographicallyPrecedes($1.owner.utf8)
                : $0.raw.utf8.lexicographicallyPrecedes($1.raw.utf8)
        }
        store.withLock { store in
            for p in ordered {
                let base = store.naming.family(of: p.raw, unit: p.unit)
                store.families[base, default: PrometheusFormat.Family(rawName: p.raw, unit: p.unit)]
                    .add(p.series, labels: p.labels, used: p.used, owner: p.owner)
            }
        }
    }

    /// One key of an export: its raw name, unit, labels, dimensions
    /// (``StableHash/identity(_:_:namespace:)``) and merged statistics.
    private struct Pending {
        var raw: String
        var unit: MetricUnit
        var labels: String
        var used: [String]
        var owner: String
        var series: PrometheusFormat.Series
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
                                store: Locked<Store>) -> PrometheusServer.Response {
        guard request.path == "/metrics" else { return PrometheusServer.plain(404, "404 page not found\n") }
        guard request.method == "GET" || request.method == "HEAD" else {
            return PrometheusServer.plain(405, "405 method not allowed\n", extraHeaders: "Allow: GET, HEAD\r\n")
        }
        let openMetrics = request.accept.lowercased().contains("application/openmetrics-text")
        let snapshot = store.withLock { $0.families }
        return PrometheusServer.Response(status: 200,
                                         contentType: openMetrics ? openMetricsContentType : textContentType,
                                         body: PrometheusFormat.render(snapshot, openMetrics: openMetrics))
    }
}

extension PrometheusFormat.Series {
    /// Adds `other`'s count and sum; takes its min and max when
    /// `replacingExtremes` (a later export), else keeps the extremes of both
    /// (windows of one key in one export).
    mutating func merge(_ other: Self, replacingExtremes: Bool) {
        let (total, overflow) = count.addingReportingOverflow(other.count)
        count = overflow ? .max : total
        sum += other.sum
        min = replacingExtremes ? other.min : Swift.min(min, other.min)
        max = replacingExtremes ? other.max : Swift.max(max, other.max)
        // The distribution, like the extremes: the later export's, or both
        // windows of one export merged.
        if replacingExtremes || distribution == nil {
            distribution = other.distribution
        } else if let theirs = other.distribution, theirs.relativeAccuracy == distribution!.relativeAccuracy {
            distribution!.merge(theirs)
        }
    }
}
