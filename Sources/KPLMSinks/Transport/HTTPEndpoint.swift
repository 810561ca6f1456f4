import KPLM
import Glibc

/// Where an HTTP sink sends: the parts of an `http(s)://host[:port][/path]`
/// URL, parsed by the one parser of the HTTP sinks' endpoints under the
/// rules of `Kind` (``OTLPEndpoint``, ``CloudWatchEndpoint``). Pure: no name
/// is resolved. Thread-safe (a value).
public struct HTTPEndpoint<Kind: HTTPEndpointKind>: Sendable, Equatable {
    /// "http" or "https" (lowercase).
    public var scheme: String
    /// The host: a name, a numeric IPv4 address, or an IPv6 address
    /// (without the brackets of the URL).
    public var host: String
    /// The TCP port: the URL's, else 443 for https and 80 for http.
    public var port: UInt16
    /// The request target: the path (and the query, where `Kind` allows
    /// one), "/" when the URL has none.
    public var path: String

    /// Parses `url`: "http://" or "https://" (any case), a host (a name, an
    /// IPv4 address or a bracketed IPv6 address), an optional ":port"
    /// (1...65535), then an optional path of printable ASCII. Throws
    /// `invalidArgument` for another scheme, user info, a fragment (or a
    /// query, unless `Kind` allows one), a missing or bad host, or a bad
    /// port. (https needs libcurl at run time: see the sink.)
    public init(parsing url: String) throws(MetricsError) {
        try self.init(parsing: url, Kind.endpointRules)
    }

    /// The value of the Host header: the host (bracketed if IPv6), then
    /// ":port" unless the port is the scheme's default (80 or 443).
    public var hostHeader: String {
        let name = host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]" : host
        return port == (scheme == "https" ? 443 : 80) ? name : "\(name):\(port)"
    }

    /// The URL requests go to.
    public var url: String { "\(scheme)://\(hostHeader)\(path)" }

    /// Parses `url` under `rules` (see ``init(parsing:)``).
    init(parsing url: String, _ rules: HTTPEndpointRules) throws(MetricsError) {
        func invalid(_ why: String) -> MetricsError {
            MetricsError(.invalidArgument, "\(rules.label) endpoint \"\(url)\" is not \(rules.form): \(why)")
        }
        let bytes = Array(url.utf8)
        func hasPrefix(_ p: String) -> Bool {
            let p = Array(p.utf8)
            return bytes.count >= p.count && zip(bytes, p).allSatisfy { $0 | 0x20 == $1 | 0x20 }
        }
        let rest: ArraySlice<UInt8>
        if hasPrefix("https://") {
            scheme = "https"
            rest = bytes[8...]
        } else if hasPrefix("http://") {
            scheme = "http"
            rest = bytes[7...]
        } else {
            throw invalid("it must start with http:// or https://")
        }
        let slash = rest.firstIndex(of: UInt8(ascii: "/")) ?? rest.endIndex
        let authority = rest[..<slash]
        let pathBytes = rest[slash...]
        guard pathBytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "#")
                                     && (rules.allowsQuery || $0 != UInt8(ascii: "?")) }) else {
            throw invalid("the path must be printable ASCII without blanks, a fragment"
                          + (rules.allowsQuery ? "" : " or a query"))
        }
        guard !authority.contains(where: { $0 == UInt8(ascii: "@") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") })
        else { throw invalid("user info, a query or a fragment right after the host is not supported") }

        var hostBytes = authority
        var portBytes: ArraySlice<UInt8>?
        if authority.first == UInt8(ascii: "[") {
            guard let close = authority.firstIndex(of: UInt8(ascii: "]")) else {
                throw invalid("an IPv6 address lacks its closing \"]\"")
            }
            hostBytes = authority[(authority.startIndex + 1)..<close]
            let after = authority[(close + 1)...]
            if let first = after.first {
                guard first == UInt8(ascii: ":") else { throw invalid("unexpected text after \"]\"") }
                portBytes = after.dropFirst()
            }
            var v6 = in6_addr()
            guard !rules.bracketsHoldIPv6Only
                    || inet_pton(AF_INET6, String(decoding: hostBytes, as: UTF8.self), &v6) == 1 else {
                throw invalid("the bracketed host is not an IPv6 address")
            }
        } else if let colon = authority.firstIndex(of: UInt8(ascii: ":")) {
            hostBytes = authority[..<colon]
            portBytes = authority[(colon + 1)...]
        }
        host = String(decoding: hostBytes, as: UTF8.self)
        guard !host.isEmpty else { throw invalid("it has no host") }
        guard SocketTransport.isValidHost(host) else { throw invalid("the host is not a valid name or address") }
        port = scheme == "https" ? 443 : 80
        if let portBytes {
            guard (1...5).contains(portBytes.count), portBytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let value = UInt16(String(decoding: portBytes, as: UTF8.self)), value != 0
            else { throw invalid("the port must be a number within 1...65535") }
            port = value
        }
        path = pathBytes.isEmpty ? "/" : String(decoding: pathBytes, as: UTF8.self)
    }
}

/// Which sink an ``HTTPEndpoint`` belongs to: the rules its URL is parsed
/// under.
public protocol HTTPEndpointKind: Sendable {
    /// How this sink's endpoints are parsed.
    static var endpointRules: HTTPEndpointRules { get }
}

/// What the sinks' endpoints differ in (opaque outside kplm).
public struct HTTPEndpointRules: Sendable {
    /// The sink's name, for error messages ("OTLP", "CloudWatch").
    package var label: String
    /// The accepted form, for error messages.
    package var form: String
    /// Whether the path may carry a query ("?...").
    package var allowsQuery: Bool
    /// Whether a bracketed host must be an IPv6 address (else any host
    /// ``SocketTransport/isValidHost(_:)`` accepts).
    package var bracketsHoldIPv6Only: Bool

    /// Rules from their parts.
    package init(label: String, form: String, allowsQuery: Bool, bracketsHoldIPv6Only: Bool) {
        (self.label, self.form, self.allowsQuery, self.bracketsHoldIPv6Only) = (label, form, allowsQuery,
                                                                                bracketsHoldIPv6Only)
    }
}
