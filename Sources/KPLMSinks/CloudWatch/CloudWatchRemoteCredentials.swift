import KPLM
import Glibc

/// Temporary credentials served over HTTP, where the AWS SDKs look after
/// the environment and the shared files: the ECS/EKS container credentials
/// endpoint, then the EC2 instance metadata service (IMDSv2). What one
/// returns is cached until five minutes before it expires.
///
/// - Container: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (a path on
///   http://169.254.170.2), else `AWS_CONTAINER_CREDENTIALS_FULL_URI` (https,
///   or http to a loopback address or the ECS/EKS agent's 169.254.170.2,
///   169.254.170.23 or fd00:ec2::23), sent the `Authorization` header from
///   the file named by `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or from
///   `AWS_CONTAINER_AUTHORIZATION_TOKEN`. 2 s per request.
/// - Instance metadata, unless `AWS_EC2_METADATA_DISABLED=true`: a session
///   token from `PUT /latest/api/token`, then the role named by
///   `GET /latest/meta-data/iam/security-credentials/` and its credentials.
///   At `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else http://169.254.169.254
///   (http://[fd00:ec2::254] when `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE`
///   is IPv6). `AWS_METADATA_SERVICE_TIMEOUT` (s, default 1) and
///   `AWS_METADATA_SERVICE_NUM_ATTEMPTS` (default 1) apply to each request.
///
/// Both answer JSON with AccessKeyId, SecretAccessKey, Token and Expiration.
final class CloudWatchRemoteCredentials: Sendable {
    /// Credentials and when they expire (Unix seconds; nil: unknown, not cached).
    struct Fetched: Equatable {
        var credentials: CloudWatchCredentials
        var expiration: Double?
    }

    /// Refresh this many seconds before the expiration.
    static let refreshMargin = 300.0
    static let containerHost = "http://169.254.170.2"
    static let containerTimeoutMs = 2_000

    private let env: CloudWatchEnvironment.Lookup
    private let cached = Locked<Fetched?>(nil)

    init(env: @escaping CloudWatchEnvironment.Lookup) {
        self.env = env
    }

    /// Credentials from the first source that applies: cached ones while
    /// fresh, else fetched (falling back to cached ones that have not expired
    /// yet when the fetch fails). Throws `sinkFailed` naming what was tried.
    func credentials(now: Double) throws(MetricsError) -> CloudWatchCredentials {
        if let c = cached.withLock({ $0 }), let expiration = c.expiration, now < expiration - Self.refreshMargin {
            return c.credentials
        }
        do {
            let fetched = try fetch()
            cached.withLock { $0 = fetched.expiration == nil ? nil : fetched }
            return fetched.credentials
        } catch {
            if let c = cached.withLock({ $0 }), let expiration = c.expiration, now < expiration {
                return c.credentials
            }
            throw error
        }
    }

    private func fetch() throws(MetricsError) -> Fetched {
        if let (url, headers) = try containerRequest() {
            let what = "the container credentials endpoint \(url)"
            return try Self.parse(try send("GET", url, headers: headers, timeoutMs: Self.containerTimeoutMs,
                                           attempts: 1, what: what), from: what)
        }
        guard !Self.isTrue(env("AWS_EC2_METADATA_DISABLED")) else {
            throw MetricsError(.sinkFailed, "instance metadata disabled (AWS_EC2_METADATA_DISABLED)")
        }
        return try instanceMetadata()
    }

    // MARK: Container credentials

    /// The URL and headers of the container credentials request, nil when
    /// no container variable is set.
    func containerRequest() throws(MetricsError) -> (String, [(name: String, value: String)])? {
        let url: String
        if let relative = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            url = Self.containerHost + (relative.hasPrefix("/") ? relative : "/" + relative)
        } else if let full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            guard Self.isAllowedContainerURL(full) else {
                throw MetricsError(.sinkFailed, "AWS_CONTAINER_CREDENTIALS_FULL_URI \(full) is neither https nor "
                                   + "a loopback or ECS/EKS agent address")
            }
            url = full
        } else {
            return nil
        }
        var token: String?
        if let path = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            guard let text = CloudWatchEnvironment.readFile(path, limit: 16_384) else {
                throw MetricsError(.sinkFailed, "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(path)")
            }
            token = Self.trimmed(text)
        } else {
            token = env("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        }
        if let t = token, t.utf8.contains(where: { $0 == 10 || $0 == 13 }) {
            throw MetricsError(.sinkFailed, "the container authorization token spans several lines")
        }
        return (url, token.map { [("Authorization", $0)] } ?? [])
    }

    /// https, or http to loopback or to the ECS/EKS agent (what the SDKs accept).
    static func isAllowedContainerURL(_ url: String) -> Bool {
        guard let endpoint = try? CloudWatchEndpoint(parsing: url) else { return false }
        if endpoint.scheme == "https" { return true }
        let host = endpoint.host
        if host == "localhost" || host == "::1" || host == "169.254.170.2" || host == "169.254.170.23"
            || host.lowercased() == "fd00:ec2::23" {
            return true
        }
        // 127.0.0.0/8
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    // MARK: Instance metadata (IMDSv2)

    /// The instance metadata endpoint, without a trailing "/".
    var instanceMetadataEndpoint: String {
        var base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            ?? (env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")?.lowercased() == "ipv6"
                ? "http://[fd00:ec2::254]" : "http://169.254.169.254")
        while base.hasSuffix("/") { base.removeLast() }
        return base
    }

    private func instanceMetadata() throws(MetricsError) -> Fetched {
        let base = instanceMetadataEndpoint
        let timeoutMs = Int(((Double(env("AWS_METADATA_SERVICE_TIMEOUT") ?? "") ?? 1) * 1000).rounded(.up))
        let attempts = Int(env("AWS_METADATA_SERVICE_NUM_ATTEMPTS") ?? "") ?? 1
        guard timeoutMs > 0, attempts > 0 else {
            throw MetricsError(.sinkFailed, "AWS_METADATA_SERVICE_TIMEOUT and AWS_METADATA_SERVICE_NUM_ATTEMPTS "
                               + "must be > 0")
        }
        let where_ = "the instance metadata service at \(base)"
        let token = Self.trimmed(try send("PUT", base + "/latest/api/token",
                                          headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
                                          timeoutMs: timeoutMs, attempts: attempts, what: where_))
        guard !token.isEmpty else { throw MetricsError(.sinkFailed, "\(where_) gave an empty session token") }
        let tokenHeader = [(name: "X-aws-ec2-metadata-token", value: token)]
        let roles = try send("GET", base + "/latest/meta-data/iam/security-credentials/", headers: tokenHeader,
                             timeoutMs: timeoutMs, attempts: attempts, what: where_)
        guard let role = roles.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).map({ Self.trimmed(String($0)) })
            .first(where: { !$0.isEmpty }) else {
            throw MetricsError(.sinkFailed, "\(where_) names no IAM role (no instance profile attached?)")
        }
        guard role.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") }) else {
            throw MetricsError(.sinkFailed, "\(where_) named an unusable role \"\(role)\"")
        }
        let body = try send("GET", base + "/latest/meta-data/iam/security-credentials/" + role, headers: tokenHeader,
                            timeoutMs: timeoutMs, attempts: attempts, what: where_)
        return try Self.parse(body, from: where_ + " (role \(role))")
    }

    // MARK: HTTP and parsing

    /// The body of a 200 answer; throws `sinkFailed` for anything else
    /// after `attempts` tries (only failures without an answer are retried).
    private func send(_ method: String, _ url: String, headers: [(name: String, value: String)],
                      timeoutMs: Int, attempts: Int, what: String) throws(MetricsError) -> String {
        var failure = ""
        for _ in 0..<attempts {
            // Metadata services are link-local or the container agent, and
            // their answers are credentials: never through a proxy.
            switch CloudWatchHTTP.request(method, url, headers: headers, connectTimeoutMs: timeoutMs,
                                          totalTimeoutMs: timeoutMs, bypassProxy: true) {
            case .response(let r) where r.status == 200:
                return r.body
            case .response(let r):
                throw MetricsError(.sinkFailed, "\(what): \(method) \(url) answered HTTP \(r.status)")
            case .transportFailure(let why):
                failure = why
            }
        }
        throw MetricsError(.sinkFailed, "\(what): \(failure)")
    }

    /// The credentials of a JSON answer (AccessKeyId, SecretAccessKey, and
    /// optional Token, Expiration; a Code other than Success is a failure).
    static func parse(_ json: String, from what: String) throws(MetricsError) -> Fetched {
        if let code = CloudWatchSink.jsonString(json, key: "Code"), code != "Success" {
            throw MetricsError(.sinkFailed, "\(what) answered Code \(code)")
        }
        guard let id = CloudWatchSink.jsonString(json, key: "AccessKeyId"), let secret = CloudWatchSink.jsonString(json, key: "SecretAccessKey"),
              !id.isEmpty, !secret.isEmpty else {
            throw MetricsError(.sinkFailed, "\(what) answered without AccessKeyId and SecretAccessKey")
        }
        let token = CloudWatchSink.jsonString(json, key: "Token").flatMap { $0.isEmpty ? nil : $0 }
        let credentials = try CloudWatchCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token)
            .checked(from: what)
        return Fetched(credentials: credentials,
                       expiration: CloudWatchSink.jsonString(json, key: "Expiration").flatMap(iso8601))
    }

    /// Unix seconds of an RFC 3339 time such as "2026-11-30T10:00:00Z"
    /// (fractional seconds and a ±hh:mm offset accepted); nil otherwise.
    static func iso8601(_ text: String) -> Double? {
        let b = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var v = 0
            for c in b[from..<(from + count)] {
                guard c >= 0x30, c <= 0x39 else { return nil }
                v = v * 10 + Int(c - 0x30)
            }
            return v
        }
        guard b.count >= 20, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
              b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t") || b[10] == UInt8(ascii: " "),
              b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"),
              let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
              let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var i = 19
        var fraction = 0.0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            let start = i
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { fraction += Double(b[i] - 0x30) * scale; scale /= 10; i += 1 }
            guard i > start else { return nil }
        }
        var offset = 0
        guard i < b.count else { return nil }
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
            i += 1
        } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            guard i + 6 == b.count, b[i + 3] == UInt8(ascii: ":"), let h = number(i + 1, 2), let m = number(i + 4, 2),
                  h < 24, m < 60 else { return nil }
            offset = (h * 60 + m) * 60 * (b[i] == UInt8(ascii: "-") ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        // Days since 1970-01-01 of a proleptic Gregorian date.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return Double(days * 86_400 + hour * 3_600 + minute * 60 + second - offset) + fraction
    }

    static func isTrue(_ value: String?) -> Bool { value?.lowercased() == "true" }

    /// `s` without leading and trailing blanks and line ends.
    static func trimmed(_ s: String) -> String { String(Substring(s).trimmingBlanks(lineEnds: true)) }
}
