import KPLM

/// The OpenTelemetry exporter environment variables of an ``OTLPSink``
/// (see ``OTLPSinkConfiguration``), and the header rules. Stateless; the
/// lookups are the caller's (thread-safe when the lookup is).
enum OTLPEnvironment {
    /// What a sink sends with: the configuration, completed by the
    /// environment, completed by the defaults.
    struct Resolved {
        var endpoint: OTLPEndpoint
        var timeoutMs: Double
        var headers: [(name: String, value: String)]
        var compression: OTLPCompression
    }

    /// Header names a caller may not set: the sink writes them itself.
    static let reservedHeaders: Set<String> = ["host", "content-length", "content-type", "content-encoding",
                                               "transfer-encoding", "connection", "expect"]

    /// Resolves `c` against `env` (an explicit setting wins; the
    /// METRICS_ variable wins over the general one). Throws
    /// `invalidArgument` naming a variable that is not valid.
    static func resolve(_ c: OTLPSinkConfiguration, env: CloudWatchEnvironment.Lookup) throws(MetricsError) -> Resolved {
        let url: String
        if let explicit = c.endpoint {
            url = explicit
        } else if let specific = env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
            url = specific
        } else if let base = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            url = base + (base.hasSuffix("/") ? "v1/metrics" : "/v1/metrics")
        } else {
            url = OTLPSinkConfiguration.defaultEndpoint
        }
        let endpoint: OTLPEndpoint
        do { endpoint = try OTLPEndpoint(parsing: url) } catch {
            throw c.endpoint == nil ? bad("from OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT: " + error.message) : error
        }

        var timeoutMs = OTLPSinkConfiguration.defaultTimeoutMs
        if let explicit = c.timeoutMs {
            timeoutMs = explicit
        } else if let (name, text) = first(["OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"], env) {
            guard let value = Double(trim(text)), value.isFinite, value > 0 else {
                throw bad("\(name)=\"\(text)\" is not a number of milliseconds > 0")
            }
            timeoutMs = value
        }

        var compression = OTLPCompression.none
        if let explicit = c.compression {
            compression = explicit
        } else if let (name, text) = first(["OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
                                            "OTEL_EXPORTER_OTLP_COMPRESSION"], env) {
            guard let value = OTLPCompression(rawValue: trim(text).lowercased()) else {
                throw bad("\(name)=\"\(text)\" is not gzip or none")
            }
            compression = value
        }

        // General, then signal-specific, then configured: a later one of the
        // same name (case-insensitive) replaces an earlier one.
        var byName: [String: (name: String, value: String)] = [:]
        for name in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS"] {
            guard let text = env(name) else { continue }
            for (key, value) in try parseHeaderList(text, variable: name) { byName[key.lowercased()] = (key, value) }
        }
        for (key, value) in c.headers { byName[key.lowercased()] = (key, value) }
        let headers = byName.values.sorted { $0.name.lowercased() < $1.name.lowercased() }
        return Resolved(endpoint: endpoint, timeoutMs: timeoutMs, headers: headers, compression: compression)
    }

    /// The first of `names` set in `env`, with its value.
    private static func first(_ names: [String], _ env: CloudWatchEnvironment.Lookup) -> (String, String)? {
        for name in names { if let value = env(name) { return (name, value) } }
        return nil
    }

    /// The entries of an OTEL_EXPORTER_OTLP_*HEADERS value: comma-separated
    /// `key=value` (blanks around each trimmed, values URL-decoded), each
    /// checked with ``checkHeader(_:_:source:)``; empty entries are skipped.
    static func parseHeaderList(_ text: String, variable: String) throws(MetricsError) -> [(String, String)] {
        var out: [(String, String)] = []
        for entry in text.split(separator: ",", omittingEmptySubsequences: false) {
            let trimmed = trim(entry)
            if trimmed.isEmpty { continue }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw bad("\(variable): \"\(trimmed)\" is not key=value")
            }
            let key = trim(trimmed[..<eq])
            let raw = trim(trimmed[trimmed.index(after: eq)...])
            guard let value = percentDecoded(raw) else {
                throw bad("\(variable): the value of \"\(key)\" is not valid URL-encoded UTF-8")
            }
            try checkHeader(key, value, source: variable)
            out.append((key, value))
        }
        return out
    }

    /// `s` with its %XX escapes decoded; nil for a bad escape or bytes
    /// that are not UTF-8.
    static func percentDecoded(_ s: String) -> String? {
        var bytes: [UInt8] = []
        var utf8 = Array(s.utf8)[...]
        while let b = utf8.popFirst() {
            guard b == UInt8(ascii: "%") else { bytes.append(b); continue }
            guard utf8.count >= 2, let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
            else { return nil }
            bytes.append(value)
            utf8 = utf8.dropFirst(2)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// Throws `invalidArgument` (saying `source`) unless `name` is an HTTP
    /// token (printable ASCII without separators) that the sink does not
    /// write itself, and `value` has no control character (tab aside), so no
    /// CR or LF.
    static func checkHeader(_ name: String, _ value: String, source: String) throws(MetricsError) {
        let separators = Array("()<>@,;:\\\"/[]?={} \t".utf8)
        guard !name.isEmpty, name.utf8.count <= 256,
              name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && !separators.contains($0) }) else {
            throw bad("\(source): the header name \"\(name)\" is not printable ASCII without separators")
        }
        guard !reservedHeaders.contains(name.lowercased()) else {
            throw bad("\(source): the header \(name) is set by the sink itself")
        }
        guard value.utf8.count <= 8192, value.utf8.allSatisfy({ ($0 >= 0x20 && $0 != 0x7F) || $0 == 0x09 }) else {
            throw bad("\(source): the value of header \(name) has a control character (CR, LF…)")
        }
    }

    /// Parses a "Name: value" line (the C API's form; blanks around the
    /// value trimmed) and checks it.
    static func parseHeaderLine(_ line: String) throws(MetricsError) -> (String, String) {
        guard let colon = line.firstIndex(of: ":") else {
            throw bad("OTLP header \"\(line)\" is not \"Name: value\"")
        }
        let name = String(line[..<colon])
        let value = trim(line[line.index(after: colon)...])
        try checkHeader(name, value, source: "OTLP header")
        return (name, value)
    }

    /// `s` without leading and trailing spaces and tabs.
    private static func trim<S: StringProtocol>(_ s: S) -> String {
        String(Substring(s).trimmingBlanks())
    }

    private static func bad(_ why: String) -> MetricsError {
        MetricsError(.invalidArgument, "OTLP: " + why)
    }
}
