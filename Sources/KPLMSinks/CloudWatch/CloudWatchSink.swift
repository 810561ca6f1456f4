import KPLM

/// Settings of a ``CloudWatchSink``. Defaults match `kplm_cloudwatch_config_init`.
public struct CloudWatchSinkConfiguration: Sendable, Equatable {
    /// Default budget of one PutMetricData call, retries included (ms).
    public static let defaultTimeoutMs: Double = 10_000
    /// Default number of retries of one PutMetricData call.
    public static let defaultMaxRetries = 5
    /// Default size above which a body is sent gzipped (bytes).
    public static let defaultGzipThresholdBytes = 8_192

    /// The AWS region ("us-east-1"); nil = AWS_REGION, AWS_DEFAULT_REGION,
    /// then the profile's `region` in the config file.
    public var region: String?
    /// Where to POST: nil = https://monitoring.REGION.amazonaws.com/; an
    /// override may be http:// (a local test endpoint) or https://.
    public var endpoint: String?
    /// The CloudWatch namespace; nil = each snapshot's namespace (the
    /// manager's), "KinesisProducerLibrary" when that is empty.
    public var namespace: String?
    /// Static credentials; both or neither. nil = the environment, then the
    /// shared credentials and config files (see ``CloudWatchSink``).
    public var accessKeyId: String?
    public var secretAccessKey: String?
    /// Session token of temporary credentials (with accessKeyId only).
    public var sessionToken: String?
    /// The profile of the shared files; nil = AWS_PROFILE, then "default".
    /// When set, the environment's keys are not used.
    public var profile: String?
    /// Budget of one PutMetricData call in milliseconds, finite and > 0:
    /// every attempt (connect included) and every wait between attempts
    /// ends within it. Default 10000.
    public var timeoutMs: Double
    /// Most time one connection attempt may take, ms (capped by what is left
    /// of ``timeoutMs``). Default 3000.
    public var connectTimeoutMs: Double
    /// Retries after throttling, 429, 5xx or a transport failure; >= 0. Default 5.
    public var maxRetries: Int
    /// Bodies larger than this many bytes are sent gzipped
    /// (Content-Encoding: gzip); `Int.max` never compresses. nil (the
    /// default) = 8192 for an https:// endpoint (AWS's), never for a plain
    /// http:// one: moto's server (5.x) decompresses such bodies twice and
    /// answers 500, for boto3's gzipped PutMetricData calls as well.
    public var gzipThresholdBytes: Int?

    /// Creates a configuration; every argument has the default above.
    public init(region: String? = nil, endpoint: String? = nil, namespace: String? = nil,
                accessKeyId: String? = nil, secretAccessKey: String? = nil, sessionToken: String? = nil,
                profile: String? = nil, timeoutMs: Double = defaultTimeoutMs, connectTimeoutMs: Double = 3_000,
                maxRetries: Int = defaultMaxRetries, gzipThresholdBytes: Int? = nil) {
        self.region = region
        self.endpoint = endpoint
        self.namespace = namespace
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.profile = profile
        self.timeoutMs = timeoutMs
        self.connectTimeoutMs = connectTimeoutMs
        self.maxRetries = maxRetries
        self.gzipThresholdBytes = gzipThresholdBytes
    }
}

/// A sink sending every export to Amazon CloudWatch with PutMetricData
/// (AWS JSON 1.0: `POST /`, `X-Amz-Target:
/// GraniteServiceVersion20100801.PutMetricData`, `Content-Type:
/// application/x-amz-json-1.0`), signed with SigV4 (service "monitoring").
///
/// Each export is cut into requests by ``CloudWatchRequestBuilder/batches(_:namespace:wallNow:unitOf:)``
/// (≤ 1000 datums and ≤ 1 MB each; each key is one datum with a statistic
/// set); snapshots CloudWatch would refuse (``CloudWatchDropReason``: a
/// timestamp outside the accepted range, a value, name or dimension it
/// rejects, a count of 0) are dropped and counted in ``dropped``, and the
/// manager adds each completed export's drops to its self-metric
/// `KplmSinkDropped` (one observation per snapshot: see
/// ``DropCountingSink``). Drops are counted only when the export returns
/// normally: a failed export's data is offered again, and counted then.
/// Bodies above ``CloudWatchSinkConfiguration/gzipThresholdBytes``
/// (8 KiB for https endpoints) are gzipped. HTTPS (and plain HTTP for an endpoint override) goes through
/// libcurl; signing uses OpenSSL's libcrypto. libkplm links neither: the
/// first sink created opens libcurl.so.4, libcrypto.so.3 and libz.so.1 with
/// dlopen (once per process), and creating a sink fails with `sinkFailed`
/// when one is missing.
///
/// Credentials are looked up at every export: the configuration's keys;
/// else (unless a profile is configured) AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; else the profile
/// (configured, AWS_PROFILE, or "default") of AWS_SHARED_CREDENTIALS_FILE
/// (~/.aws/credentials), then of AWS_CONFIG_FILE (~/.aws/config); else the
/// ECS/EKS container credentials endpoint or the EC2 instance metadata
/// service (``CloudWatchRemoteCredentials``; their temporary credentials are
/// cached until five minutes before they expire).
///
/// A 2xx answer is success. A throttling answer (400 whose `__type` or
/// x-amzn-query-error names Throttling), 429, any 5xx, or no answer at all
/// is retried up to ``CloudWatchSinkConfiguration/maxRetries`` times after
/// an exponential backoff with jitter (0.1 s × 2^n, at most 10 s, less up to
/// half); each request, its retries and waits included, ends within
/// ``CloudWatchSinkConfiguration/timeoutMs``. Anything else fails at once.
/// A failed request throws `sinkFailed` and the manager offers the whole
/// export again at the next flush, so requests of that export that had
/// succeeded are sent twice (delivery is at least once).
public final class CloudWatchSink: DropCountingSink {
    /// The X-Amz-Target of PutMetricData.
    public static let target = "GraniteServiceVersion20100801.PutMetricData"
    /// The Content-Type of AWS JSON 1.0.
    public static let contentType = "application/x-amz-json-1.0"
    /// The SigV4 service name of CloudWatch.
    public static let signingService = "monitoring"

    /// The settings this sink was created with.
    public let configuration: CloudWatchSinkConfiguration
    /// The resolved region.
    public let region: String
    /// The parsed endpoint (AWS's for ``region`` unless overridden).
    public let endpoint: CloudWatchEndpoint

    private let env: CloudWatchEnvironment.Lookup
    /// Bodies above this size are gzipped (see ``CloudWatchSinkConfiguration/gzipThresholdBytes``).
    let gzipThreshold: Int
    private let explicitCredentials: CloudWatchCredentials?
    /// Container or instance-metadata credentials, cached while fresh.
    private let remoteCredentials: CloudWatchRemoteCredentials

    private struct State {
        var requests = 0
        var successes = 0
        var dropped: [CloudWatchDropReason: Int] = [:]
        /// Snapshots dropped by completed exports since the manager last took the count.
        var droppedUntaken = 0
        var lastStatus: Int?
    }
    private let state = Locked(State())

    /// Creates a sink; nothing is sent before the first export. Throws
    /// `invalidArgument` for an endpoint that is not http(s)://host[:port][/path],
    /// no region (none configured and none in the environment or config
    /// file) or one that is not [a-z0-9-], a namespace CloudWatch refuses,
    /// only one of accessKeyId/secretAccessKey (or a session token without
    /// them), a timeout that is not finite and > 0, or a negative retry count;
    /// `sinkFailed` when libcurl.so.4, libcrypto.so.3 or libz.so.1 cannot be
    /// loaded (the message names the library and its Debian package).
    public convenience init(configuration: CloudWatchSinkConfiguration = CloudWatchSinkConfiguration())
        throws(MetricsError) {
        try self.init(configuration: configuration, environment: CloudWatchEnvironment.process)
    }

    init(configuration c: CloudWatchSinkConfiguration,
         environment: @escaping CloudWatchEnvironment.Lookup) throws(MetricsError) {
        func bad(_ why: String) -> MetricsError { MetricsError(.invalidArgument, "CloudWatch: " + why) }
        try CloudWatchHTTP.load([.curl, .crypto, .zlib], for: "CloudWatch")
        guard c.timeoutMs.isFinite, c.timeoutMs > 0 else { throw bad("the timeout must be finite and > 0 ms, got \(c.timeoutMs)") }
        guard c.connectTimeoutMs.isFinite, c.connectTimeoutMs > 0 else {
            throw bad("the connect timeout must be finite and > 0 ms, got \(c.connectTimeoutMs)")
        }
        guard c.maxRetries >= 0 else { throw bad("the retry count must be >= 0, got \(c.maxRetries)") }
        guard (c.gzipThresholdBytes ?? 0) >= 0 else { throw bad("the gzip threshold must be >= 0") }
        switch (c.accessKeyId, c.secretAccessKey) {
        case (let id?, let secret?):
            guard !id.isEmpty, !secret.isEmpty else { throw bad("empty access key id or secret access key") }
            explicitCredentials = CloudWatchCredentials(accessKeyId: id, secretAccessKey: secret,
                                                        sessionToken: c.sessionToken.flatMap { $0.isEmpty ? nil : $0 })
        case (nil, nil):
            guard c.sessionToken == nil else { throw bad("a session token needs an access key id and a secret") }
            explicitCredentials = nil
        default:
            throw bad("give both an access key id and a secret access key, or neither")
        }
        for (label, value) in [("access key id", c.accessKeyId), ("secret access key", c.secretAccessKey),
                               ("session token", c.sessionToken), ("profile", c.profile)] {
            guard let value else { continue }
            guard CloudWatchCredentials.isClean(value) else {
                throw bad("the \(label) must be printable ASCII without blanks")
            }
        }
        if let namespace = c.namespace {
            do { try CloudWatchRequestBuilder.checkNamespace(namespace) } catch { throw bad(error.message) }
        }
        guard let region = c.region ?? CloudWatchEnvironment.region(profile: c.profile, env: environment) else {
            throw bad("no region: set one, or AWS_REGION / AWS_DEFAULT_REGION, or region in the config file")
        }
        guard !region.isEmpty, region.utf8.count <= 64, region.utf8.allSatisfy({
            ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-")
        }) else { throw bad("the region \"\(region)\" is not lowercase letters, digits and \"-\"") }
        self.region = region
        self.endpoint = try CloudWatchEndpoint(parsing: c.endpoint ?? CloudWatchEndpoint.aws(region: region))
        self.configuration = c
        self.env = environment
        self.remoteCredentials = CloudWatchRemoteCredentials(env: environment)
        self.gzipThreshold = c.gzipThresholdBytes
            ?? (endpoint.scheme == "https" ? CloudWatchSinkConfiguration.defaultGzipThresholdBytes : Int.max)
    }

    /// HTTP requests sent so far (attempts, retries included).
    public var requestCount: Int { state.withLock { $0.requests } }
    /// PutMetricData calls that succeeded so far.
    public var successfulRequestCount: Int { state.withLock { $0.successes } }
    /// Snapshots dropped so far because CloudWatch would refuse them, over
    /// every export that completed (a failed export's are not counted: its
    /// data is offered again).
    public var droppedCount: Int { state.withLock { $0.dropped.values.reduce(0, +) } }
    /// Snapshots dropped so far by completed exports, by reason; reasons
    /// that did not occur are absent.
    public var dropped: [CloudWatchDropReason: Int] { state.withLock { $0.dropped } }

    /// Snapshots dropped by the exports completed since the last call,
    /// whatever the reason (see ``DropCountingSink``); the manager calls it
    /// after each export. Thread-safe.
    public func takeDroppedCount() -> Int {
        state.withLock { s in
            defer { s.droppedUntaken = 0 }
            return s.droppedUntaken
        }
    }
    /// The HTTP status of the last answer, nil before any.
    public var lastStatus: Int? { state.withLock { $0.lastStatus } }

    /// The credentials the next request would be signed with: the
    /// configuration's, the environment's or the shared files' (looked up
    /// afresh), else the container endpoint's or the instance metadata's
    /// (``CloudWatchRemoteCredentials``, cached until shortly before they
    /// expire). Throws `sinkFailed` saying where it looked.
    public func resolveCredentials() throws(MetricsError) -> CloudWatchCredentials {
        let local: MetricsError
        do {
            return try CloudWatchEnvironment.credentials(explicit: explicitCredentials, profile: configuration.profile,
                                                         env: env)
        } catch {
            local = error
        }
        do {
            return try remoteCredentials.credentials(now: ManagerClock.wallNow())
        } catch {
            throw MetricsError(.sinkFailed, local.message + "; " + error.message)
        }
    }

    /// Sends `snapshots` (see ``CloudWatchSink``); the snapshots CloudWatch
    /// would refuse are counted once every request has succeeded. Throws
    /// ``MetricsError`` `sinkFailed` when a request fails or no credentials
    /// are found (and then counts nothing).
    public func export(_ snapshots: [MetricSnapshot]) throws {
        guard !snapshots.isEmpty else { return }
        let credentials = try resolveCredentials()
        let wallNow = ManagerClock.wallNow()
        // One batch per namespace, namespaces in order of first appearance.
        var order: [String] = []
        var groups: [String: [MetricSnapshot]] = [:]
        for s in snapshots {
            let ns = configuration.namespace ?? (s.namespace.isEmpty ? EMFFormat.defaultNamespace : s.namespace)
            if groups[ns] == nil { order.append(ns) }
            groups[ns, default: []].append(s)
        }
        var dropped: [CloudWatchDropReason: Int] = [:]
        for ns in order {
            let batches: CloudWatchBatches
            do {
                batches = try CloudWatchRequestBuilder.batches(groups[ns]!, namespace: ns, wallNow: wallNow)
            } catch {
                throw MetricsError(.sinkFailed, "CloudWatch: " + error.message)
            }
            dropped.merge(batches.dropped, uniquingKeysWith: +)
            for request in batches.requests {
                try send(Array(request.body.utf8), credentials: credentials)
                state.withLock { $0.successes += 1 }
            }
        }
        // Only now: a throw above has the manager offer this data again.
        guard !dropped.isEmpty else { return }
        state.withLock { s in
            for (reason, n) in dropped {
                s.dropped[reason, default: 0] += n
                s.droppedUntaken += n
            }
        }
    }

    /// The headers of one attempt, Authorization included, and the bytes to send.
    func signedRequest(_ body: [UInt8], credentials: CloudWatchCredentials,
                       wallNow: Double) throws(MetricsError) -> (headers: [(name: String, value: String)], payload: [UInt8]) {
        let gzipped = body.count > gzipThreshold
        let payload = gzipped ? try CloudWatchHTTP.gzip(body) : body
        var headers: [(name: String, value: String)] = [
            ("Host", endpoint.hostHeader),
            ("X-Amz-Date", SigV4.amzDate(wallNow)),
            ("X-Amz-Target", Self.target),
            ("Content-Type", Self.contentType),
        ]
        if gzipped { headers.append(("Content-Encoding", "gzip")) }
        if let token = credentials.sessionToken { headers.append(("X-Amz-Security-Token", token)) }
        let signature = SigV4.sign(method: "POST", path: endpoint.path, headers: headers, payload: payload,
                                   accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey,
                                   region: region, service: Self.signingService, amzDate: SigV4.amzDate(wallNow))
        headers.append(("Authorization", signature.authorization))
        return (headers, payload)
    }

    /// What to do with an answer.
    enum Disposition: Equatable { case success, retry, fail }

    /// Success for 2xx; retry for 429, 5xx and throttling (a 400 whose
    /// `__type` or x-amzn-query-error names Throttling); fail otherwise.
    static func disposition(_ r: CloudWatchHTTP.Response) -> Disposition {
        if (200..<300).contains(r.status) { return .success }
        if r.status == 429 || (500..<600).contains(r.status) { return .retry }
        if r.status == 400 && (errorType(r.body)?.contains("Throttling") == true || r.queryError.hasPrefix("Throttling")) {
            return .retry
        }
        return .fail
    }

    /// The `__type` of an AWS JSON error body, without a "namespace#" prefix.
    static func errorType(_ body: String) -> String? {
        guard let t = jsonString(body, key: "__type") else { return nil }
        return t.split(separator: "#").last.map(String.init) ?? t
    }

    /// The string value of the first `"key": "…"` member of `json`, its
    /// escapes decoded; nil when absent or not a string.
    static func jsonString(_ json: String, key: String) -> String? {
        let bytes = Array(json.utf8)
        let needle = Array("\"\(key)\"".utf8)
        var i = 0
        func skipBlanks(_ j: inout Int) {
            while j < bytes.count, bytes[j] == 32 || bytes[j] == 9 || bytes[j] == 10 || bytes[j] == 13 { j += 1 }
        }
        while i + needle.count <= bytes.count {
            guard bytes[i..<(i + needle.count)].elementsEqual(needle) else { i += 1; continue }
            var j = i + needle.count
            skipBlanks(&j)
            guard j < bytes.count, bytes[j] == UInt8(ascii: ":") else { i += 1; continue }
            j += 1
            skipBlanks(&j)
            guard j < bytes.count, bytes[j] == UInt8(ascii: "\"") else { return nil }
            j += 1
            var out: [UInt8] = []
            while j < bytes.count {
                let b = bytes[j]
                if b == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
                guard b == UInt8(ascii: "\\") else { out.append(b); j += 1; continue }
                guard j + 1 < bytes.count else { return nil }
                let e = bytes[j + 1]
                j += 2
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "u"):
                    guard j + 4 <= bytes.count, let unit = UInt32(String(decoding: bytes[j..<(j + 4)], as: UTF8.self),
                                                                  radix: 16) else { return nil }
                    j += 4
                    // Credentials are ASCII: a surrogate is not decoded further.
                    out.append(contentsOf: Array(String(Character(Unicode.Scalar(unit) ?? "\u{FFFD}")).utf8))
                default: return nil
                }
            }
            return nil
        }
        return nil
    }

    /// POSTs `body`, retrying as ``CloudWatchSink`` describes.
    func send(_ body: [UInt8], credentials: CloudWatchCredentials) throws(MetricsError) {
        let deadline = SocketTransport.deadline(afterMs: configuration.timeoutMs)
        var attempt = 0
        while true {
            // Signed afresh at each attempt: X-Amz-Date must be recent.
            let request = try signedRequest(body, credentials: credentials, wallNow: ManagerClock.wallNow())
            let leftMs = Int(((deadline - ManagerClock.monotonicNow()) * 1000).rounded(.up))
            let failure: String
            if leftMs <= 0 {
                failure = "timed out"
            } else {
                state.withLock { $0.requests += 1 }
                let outcome = CloudWatchHTTP.post(endpoint.url, headers: request.headers, body: request.payload,
                                                  connectTimeoutMs: Swift.min(leftMs, Int(configuration.connectTimeoutMs.rounded(.up))),
                                                  totalTimeoutMs: leftMs)
                switch outcome {
                case .response(let r):
                    state.withLock { $0.lastStatus = r.status }
                    let what = [Self.errorType(r.body), Self.jsonString(r.body, key: "message")
                                    ?? Self.jsonString(r.body, key: "Message")].compactMap { $0 }.joined(separator: ": ")
                    failure = "\(endpoint.url) answered HTTP \(r.status)" + (what.isEmpty ? "" : " (\(what))")
                    switch Self.disposition(r) {
                    case .success: return
                    case .fail: throw MetricsError(.sinkFailed, "CloudWatch: " + failure)
                    case .retry: break
                    }
                case .transportFailure(let why):
                    failure = why
                }
            }
            OTLPHTTP.sleep(try RetrySchedule.delay(afterAttempt: attempt, maxRetries: configuration.maxRetries,
                                                   deadline: deadline, timeoutMs: configuration.timeoutMs,
                                                   failure: "CloudWatch: " + failure))
            attempt += 1
        }
    }
}
