import KPLM
import CKPLMCloudWatch
import Glibc

/// Where a ``CloudWatchSink`` sends: the parts of an
/// `http(s)://host[:port][/path]` URL (no query).
public typealias CloudWatchEndpoint = HTTPEndpoint<CloudWatchEndpointKind>

/// The rules of ``CloudWatchEndpoint``: no query; a bracketed host is any
/// host the socket layer accepts.
public enum CloudWatchEndpointKind: HTTPEndpointKind {
    /// How CloudWatch endpoints are parsed.
    public static let endpointRules = HTTPEndpointRules(label: "CloudWatch", form: "http(s)://host[:port][/path]",
                                                        allowsQuery: false, bracketsHoldIPv6Only: false)
}

extension HTTPEndpoint where Kind == CloudWatchEndpointKind {
    /// AWS's endpoint of `region`: https://monitoring.REGION.amazonaws.com
    /// (amazonaws.com.cn for the "cn-" regions).
    public static func aws(region: String) -> String {
        "https://monitoring.\(region).amazonaws.com\(region.hasPrefix("cn-") ? ".cn" : "")/"
    }
}

/// The transport of ``CloudWatchSink`` (and of ``OTLPSink`` where libcurl is
/// present): gzip (zlib) and HTTP requests (libcurl), through the private
/// CKPLMCloudWatch shim, which loads the libraries at run time.
enum CloudWatchHTTP {
    /// A library the shim loads with dlopen (its `KPLMSHIM_LIB_*` bit).
    struct Library: OptionSet, Sendable {
        let rawValue: UInt32
        /// libcurl.so.4: HTTP(S) requests.
        static let curl = Library(rawValue: UInt32(KPLMSHIM_LIB_CURL))
        /// libcrypto.so.3: SHA-256 and HMAC (SigV4).
        static let crypto = Library(rawValue: UInt32(KPLMSHIM_LIB_CRYPTO))
        /// libz.so.1: gzip.
        static let zlib = Library(rawValue: UInt32(KPLMSHIM_LIB_Z))
    }

    /// Loads `libraries` (once per process; thread-safe). Throws
    /// `sinkFailed` naming the first one that cannot be loaded, why, and the
    /// Debian packages that provide it, after `label` ("CloudWatch").
    static func load(_ libraries: Library, for label: String) throws(MetricsError) {
        var error = [CChar](repeating: 0, count: 512)
        guard kplmshim_load(libraries.rawValue, &error, error.count) != 0 else { return }
        let why = error.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        throw MetricsError(.sinkFailed, "\(label): \(why)")
    }

    /// Whether `libraries` can be loaded (see ``load(_:for:)``).
    static func available(_ libraries: Library) -> Bool {
        kplmshim_load(libraries.rawValue, nil, 0) == 0
    }

    /// What one POST came to.
    struct Response: Equatable {
        var status: Int
        var body: String
        /// The x-amzn-query-error header ("Throttling;Sender"), "" if absent.
        var queryError: String
        /// The Retry-After header's value, "" if absent.
        var retryAfter: String = ""
    }

    enum Outcome: Equatable {
        case response(Response)
        /// No answer (resolution, connection, TLS, timeout): worth a retry.
        case transportFailure(String)
    }

    /// Most bytes of an answer kept (error answers are short).
    static let maxResponseBytes = 65_536

    /// A gzip member of `data` (zlib).
    static func gzip(_ data: [UInt8]) throws(MetricsError) -> [UInt8] {
        var out: UnsafeMutablePointer<UInt8>?
        var count = 0
        let rc = data.withUnsafeBytes { kplmshim_cw_gzip($0.baseAddress, $0.count, &out, &count) }
        defer { kplmshim_cw_free(out) }
        guard rc == 0, let out else { throw MetricsError(.sinkFailed, "CloudWatch: gzip failed") }
        return Array(UnsafeBufferPointer(start: out, count: count))
    }

    /// The data of a gzip member, nil if it is not one (or inflates beyond `limit` bytes).
    static func gunzip(_ data: [UInt8], limit: Int = 16 << 20) -> [UInt8]? {
        var out: UnsafeMutablePointer<UInt8>?
        var count = 0
        let rc = data.withUnsafeBytes { kplmshim_cw_gunzip($0.baseAddress, $0.count, limit, &out, &count) }
        defer { kplmshim_cw_free(out) }
        guard rc == 0, let out else { return nil }
        return Array(UnsafeBufferPointer(start: out, count: count))
    }

    /// POSTs `body` to `url` with `headers`, within the timeouts (ms).
    static func post(_ url: String, headers: [(name: String, value: String)], body: [UInt8],
                     connectTimeoutMs: Int, totalTimeoutMs: Int) -> Outcome {
        request("POST", url, headers: headers, body: body, connectTimeoutMs: connectTimeoutMs,
                totalTimeoutMs: totalTimeoutMs)
    }

    /// Sends one `method` ("GET", "PUT" or "POST") request to `url` with
    /// `headers` (and `body`, except for GET), within the timeouts (ms).
    /// `bypassProxy`: never through a proxy (the metadata services); else
    /// http_proxy / https_proxy / no_proxy apply, as in the AWS SDKs.
    static func request(_ method: String, _ url: String, headers: [(name: String, value: String)],
                        body: [UInt8] = [], connectTimeoutMs: Int, totalTimeoutMs: Int,
                        bypassProxy: Bool = false) -> Outcome {
        let lines = headers.map { "\($0.name): \($0.value)" }
        var response = kplmshim_cw_response()
        // Header lines as C strings that live through the call.
        var cLines = lines.map { strdupUnsafe($0) }
        defer { cLines.forEach { kplmshim_cw_free($0) } }
        let rc = cLines.withUnsafeMutableBufferPointer { lineBuffer in
            lineBuffer.withMemoryRebound(to: UnsafePointer<CChar>?.self) { constLines in
                body.withUnsafeBytes { b in
                    kplmshim_cw_request(method, url, constLines.baseAddress, constLines.count, b.baseAddress,
                                        b.count, connectTimeoutMs, totalTimeoutMs, maxResponseBytes,
                                        bypassProxy ? 1 : 0, &response)
                }
            }
        }
        defer { kplmshim_cw_free(response.body) }
        guard rc == 0 else {
            let why = withUnsafeBytes(of: &response.error) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            return .transportFailure("\(url): \(why)")
        }
        let text = response.body.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: response.body_len),
                                              as: UTF8.self) } ?? ""
        let queryError = withUnsafeBytes(of: &response.query_error) {
            String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
        }
        let retryAfter = withUnsafeBytes(of: &response.retry_after) {
            String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
        }
        return .response(Response(status: response.status, body: text, queryError: queryError, retryAfter: retryAfter))
    }

    /// A malloc'd copy of `s` (free with kplmshim_cw_free).
    private static func strdupUnsafe(_ s: String) -> UnsafeMutablePointer<CChar>? {
        s.withCString { strdup($0) }
    }
}

