import KPLM
import Glibc

/// AWS credentials a ``CloudWatchSink`` signs with.
public struct CloudWatchCredentials: Sendable, Equatable {
    public var accessKeyId: String
    public var secretAccessKey: String
    /// The session token of temporary credentials (sent as X-Amz-Security-Token).
    public var sessionToken: String?

    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    /// Whether a credential value can go into a signed request as is:
    /// printable ASCII without blanks (no CR or LF that could start a header).
    static func isClean(_ value: String) -> Bool {
        value.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }

    /// These credentials, once every field passed ``isClean(_:)``; otherwise
    /// `sinkFailed` naming the field and `source` (never the value). The one
    /// check for every source: the environment, the shared files and the
    /// metadata services (the config's values are checked the same way at
    /// construction, as `invalidArgument`).
    func checked(from source: String) throws(MetricsError) -> CloudWatchCredentials {
        for (field, value) in [("access key id", accessKeyId), ("secret access key", secretAccessKey),
                               ("session token", sessionToken ?? "x")] where !Self.isClean(value) {
            throw MetricsError(.sinkFailed, "CloudWatch: the \(field) from \(source) is not printable ASCII "
                               + "without blanks; it is not sent")
        }
        return self
    }
}

/// Where the CloudWatch sink looks up static credentials and its region, the
/// way the AWS SDKs and CLI do (then ``CloudWatchRemoteCredentials`` for the
/// container and instance-metadata credentials; no SSO, process or
/// web-identity providers).
enum CloudWatchEnvironment {
    /// Reads one environment variable; injectable for tests.
    typealias Lookup = @Sendable (String) -> String?

    /// The process environment (an empty value counts as unset).
    static let process: Lookup = { name in
        guard let v = getenv(name) else { return nil }
        let s = String(cString: v)
        return s.isEmpty ? nil : s
    }

    /// Resolves credentials: `explicit` if given; else, unless `profile` is
    /// given, AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
    /// else the profile (`profile` ?? AWS_PROFILE ?? "default") of the shared
    /// credentials file (AWS_SHARED_CREDENTIALS_FILE ?? ~/.aws/credentials),
    /// then of the config file (AWS_CONFIG_FILE ?? ~/.aws/config). Throws
    /// `sinkFailed` when none has both keys.
    static func credentials(explicit: CloudWatchCredentials?, profile: String?,
                            env: Lookup) throws(MetricsError) -> CloudWatchCredentials {
        if let explicit { return explicit }
        if profile == nil, let id = env("AWS_ACCESS_KEY_ID"), let secret = env("AWS_SECRET_ACCESS_KEY") {
            return try CloudWatchCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: env("AWS_SESSION_TOKEN"))
                .checked(from: "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)")
        }
        let name = profile ?? env("AWS_PROFILE") ?? "default"
        for (path, section) in [(credentialsFile(env), name), (configFile(env), configSection(name))] {
            guard let path, let text = readFile(path), let values = parseINI(text)[section] else { continue }
            if let id = values["aws_access_key_id"], let secret = values["aws_secret_access_key"],
               !id.isEmpty, !secret.isEmpty {
                return try CloudWatchCredentials(accessKeyId: id, secretAccessKey: secret,
                                                 sessionToken: values["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 })
                    .checked(from: "profile \"\(section)\" of \(path)")
            }
        }
        let where_ = profile == nil ? "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, " : ""
        throw MetricsError(.sinkFailed, "CloudWatch: no AWS credentials found (looked at \(where_)profile \"\(name)\" "
                           + "of \(credentialsFile(env) ?? "~/.aws/credentials") and \(configFile(env) ?? "~/.aws/config"))")
    }

    /// The region: AWS_REGION, AWS_DEFAULT_REGION, then `region` of the
    /// profile (`profile` ?? AWS_PROFILE ?? "default") in the config file.
    static func region(profile: String?, env: Lookup) -> String? {
        if let r = env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") { return r }
        let name = profile ?? env("AWS_PROFILE") ?? "default"
        guard let path = configFile(env), let text = readFile(path),
              let r = parseINI(text)[configSection(name)]?["region"], !r.isEmpty else { return nil }
        return r
    }

    /// The config file names profiles "[profile NAME]", except "[default]".
    static func configSection(_ profile: String) -> String {
        profile == "default" ? "default" : "profile \(profile)"
    }

    static func credentialsFile(_ env: Lookup) -> String? {
        expand(env("AWS_SHARED_CREDENTIALS_FILE"), env) ?? env("HOME").map { "\($0)/.aws/credentials" }
    }

    static func configFile(_ env: Lookup) -> String? {
        expand(env("AWS_CONFIG_FILE"), env) ?? env("HOME").map { "\($0)/.aws/config" }
    }

    /// `path` with a leading "~/" replaced by $HOME.
    static func expand(_ path: String?, _ env: Lookup) -> String? {
        guard let path else { return nil }
        if path.hasPrefix("~/"), let home = env("HOME") { return home + path.dropFirst(1) }
        return path
    }

    /// Sections of an INI file as the AWS tools read it: "[name]" headers
    /// (name trimmed; "[profile x]" kept as "profile x" with single spaces),
    /// "key = value" lines (key lowercased, both trimmed), "#" and ";"
    /// comment lines; indented lines (nested settings) are skipped. A
    /// repeated section merges, later values winning.
    static func parseINI(_ text: String) -> [String: [String: String]] {
        var sections: [String: [String: String]] = [:]
        var current: String?
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            var line = Substring(rawLine)
            if line.last == "\r" { line = line.dropLast() }
            if let first = line.first, first == " " || first == "\t" { continue }
            let trimmedLine = line.trimmingBlanks()
            if trimmedLine.isEmpty || trimmedLine.first == "#" || trimmedLine.first == ";" { continue }
            if trimmedLine.first == "[" {
                guard trimmedLine.last == "]" else { current = nil; continue }
                let name = trimmedLine.dropFirst().dropLast().split(separator: " ").joined(separator: " ")
                current = name
                if sections[name] == nil { sections[name] = [:] }
                continue
            }
            guard let current, let eq = trimmedLine.firstIndex(of: "=") else { continue }
            let key = trimmedLine[..<eq].trimmingBlanks().lowercased()
            let value = String(trimmedLine[trimmedLine.index(after: eq)...].trimmingBlanks())
            sections[current]![key] = value
        }
        return sections
    }

    /// The contents of a (small) text file, nil if it cannot be read.
    static func readFile(_ path: String, limit: Int = 1 << 20) -> String? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count <= limit {
            let n = fread(&chunk, 1, chunk.count, f)
            if n > 0 { bytes.append(contentsOf: chunk[..<n]) }
            if n < chunk.count { break }
        }
        guard ferror(f) == 0, bytes.count <= limit else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
