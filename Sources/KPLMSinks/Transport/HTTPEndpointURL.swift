import KPLM
import Glibc

/// The parts of an `http(s)://host[:port][/path]` URL: the one parser of the
/// HTTP sinks' endpoints (``OTLPEndpoint``, ``CloudWatchEndpoint``). Pure:
/// no name is resolved. Thread-safe (a value).
struct HTTPEndpointURL: Sendable, Equatable {
    /// "http" or "https" (lowercase).
    var scheme: String
    /// A name, a numeric IPv4 address, or an IPv6 address (without brackets).
    var host: String
    /// The URL's port, else 443 for https and 80 for http.
    var port: UInt16
    /// The path (with the query where allowed), "/" when the URL has none.
    var path: String

    /// What the sinks' endpoints differ in.
    struct Rules: Sendable {
        /// The sink's name, for error messages ("OTLP", "CloudWatch").
        var label: String
        /// The accepted form, for error messages.
        var form: String
        /// Whether the path may carry a query ("?...").
        var allowsQuery: Bool
        /// Whether a bracketed host must be an IPv6 address (else any host
        /// ``SocketTransport/isValidHost(_:)`` accepts).
        var bracketsHoldIPv6Only: Bool
    }

    /// Parses `url`: "http://" or "https://" (any case), a host (a name, an
    /// IPv4 address or a bracketed IPv6 address), an optional ":port"
    /// (1...65535), then an optional path of printable ASCII. Throws
    /// `invalidArgument` for another scheme, user info, a fragment (or a
    /// query, unless `rules` allow one), a missing or bad host, or a bad port.
    init(parsing url: String, _ rules: Rules) throws(MetricsError) {
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

    /// The value of the Host header: the host (bracketed if IPv6), then
    /// ":port" unless the port is the scheme's default (80 or 443).
    static func hostHeader(scheme: String, host: String, port: UInt16) -> String {
        let name = host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]" : host
        return port == (scheme == "https" ? 443 : 80) ? name : "\(name):\(port)"
    }
}
