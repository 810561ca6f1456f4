import KPLM
import Glibc

/// Settings of a ``DogStatsDSink``.
public struct DogStatsDConfiguration: Sendable, Equatable {
    /// The agent's host: a numeric IPv4 or IPv6 address, or a name resolved
    /// by ``DogStatsDSink/open()``. Default "127.0.0.1".
    public var host: String
    /// The agent's UDP port; not 0. Default 8125.
    public var port: UInt16
    /// Prepended to every metric name, followed by "."; nil or "" for none.
    public var prefix: String?
    /// Constant tags ("key:value" or "key"), added to every line; none empty.
    public var tags: [String]
    /// Largest datagram sent, in bytes (``DogStatsDConfiguration/datagramBytesRange``).
    /// Default 1432, which fits an Ethernet MTU.
    public var maxDatagramBytes: Int

    /// The accepted values of ``maxDatagramBytes``: 65507 is the largest
    /// UDP payload over IPv4.
    public static let datagramBytesRange = 64...65507

    /// Longest host accepted, in bytes.
    public static let maxHostBytes = 255

    /// Creates a configuration; every argument has the default above.
    public init(host: String = "127.0.0.1", port: UInt16 = 8125, prefix: String? = nil, tags: [String] = [],
                maxDatagramBytes: Int = 1432) {
        self.host = host
        self.port = port
        self.prefix = prefix
        self.tags = tags
        self.maxDatagramBytes = maxDatagramBytes
    }

    /// Throws `invalidArgument` for an empty, over-long or blank-containing
    /// host, port 0, an empty tag, or a datagram size out of range.
    public func validate() throws(MetricsError) {
        guard !host.isEmpty, host.utf8.count <= Self.maxHostBytes else {
            throw MetricsError(.invalidArgument, "the DogStatsD host must be 1...\(Self.maxHostBytes) bytes")
        }
        guard host.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F }) else {
            throw MetricsError(.invalidArgument, "the DogStatsD host contains a blank or control character")
        }
        guard port != 0 else { throw MetricsError(.invalidArgument, "the DogStatsD port must not be 0") }
        guard Self.datagramBytesRange.contains(maxDatagramBytes) else {
            throw MetricsError(.invalidArgument, "max datagram bytes must be within \(Self.datagramBytesRange)")
        }
        guard !tags.contains(where: \.isEmpty) else {
            throw MetricsError(.invalidArgument, "a DogStatsD tag is empty")
        }
    }
}

/// A sink sending every exported snapshot to a DogStatsD agent over UDP.
///
/// Each snapshot becomes four lines, `<prefix.><name>.count:<count>|c`,
/// `.sum:<sum>|c`, `.min:<min>|g` and `.max:<max>|g`, tagged (`|#`) with
/// the constant tags then one `name:value` tag per dimension. Names and
/// tags are sanitized (see ``DogStatsDFormat``); a name or dimension tag
/// that sanitizing changes or cuts, or that ends
/// with "_<8 hex digits>", ends with "_<8 hex digits>", a stable hash of the
/// raw text, so two keys never share a series, at any flush, whichever keys
/// are exported together. Lines are packed, joined
/// by "\n", into datagrams of at most
/// ``DogStatsDConfiguration/maxDatagramBytes``; a longer line (or one with
/// a non-finite value) is dropped and counted in ``droppedLineCount``, and
/// the manager adds each export's drops to its self-metric
/// `KplmSinkDropped` (one observation per dropped line: see
/// ``DropCountingSink``).
///
/// ``open()`` resolves the host and creates the socket; a send waits at
/// most ``sendTimeoutSeconds``. ``export(_:)`` throws when a send fails:
/// the manager then keeps the data and offers it again at the next flush,
/// so datagrams sent before the failing one are sent again (at least once).
public final class DogStatsDSink: DropCountingSink {
    /// How long one send may block (SO_SNDTIMEO), in seconds.
    public static let sendTimeoutSeconds = 1

    /// The settings this sink was created with.
    public let configuration: DogStatsDConfiguration

    private struct State {
        var socket: Int32 = -1
        var address = sockaddr_storage()
        var addressLength = socklen_t(0)
        var dropped = 0
        /// Part of `dropped` already handed to the manager.
        var droppedTaken = 0
        var datagrams = 0
        /// Test hook: the next `failSends` sends fail with EIO.
        var failSends = 0
    }

    private let state = Locked(State())
    private let namePrefix: String
    private let constantTags: [String]

    /// Creates a sink; nothing is resolved or opened before ``open()``.
    ///
    /// Throws `invalidArgument` for an invalid configuration
    /// (``DogStatsDConfiguration/validate()``).
    public init(configuration: DogStatsDConfiguration = DogStatsDConfiguration()) throws(MetricsError) {
        try configuration.validate()
        self.configuration = configuration
        var prefix = configuration.prefix ?? ""
        while prefix.hasSuffix(".") { prefix.removeLast() }
        self.namePrefix = prefix.isEmpty ? "" : prefix + "."
        self.constantTags = configuration.tags.map(DogStatsDFormat.tag)
    }

    deinit {
        let fd = state.withLock { $0.socket }
        if fd >= 0 { Glibc.close(fd) }
    }

    /// Lines dropped so far: longer than a datagram, or with a non-finite value.
    public var droppedLineCount: Int { state.withLock { $0.dropped } }

    /// Lines dropped since the last call (see ``DropCountingSink``); the
    /// manager calls it after each export.
    public func takeDroppedCount() -> Int {
        state.withLock { s in
            defer { s.droppedTaken = s.dropped }
            return s.dropped - s.droppedTaken
        }
    }

    /// Datagrams sent successfully so far.
    public var sentDatagramCount: Int { state.withLock { $0.datagrams } }

    /// Whether the socket is open.
    public var isOpen: Bool { state.withLock { $0.socket >= 0 } }

    /// Resolves the host and creates the UDP socket (replacing an earlier
    /// one). Throws ``MetricsError`` `sinkFailed` if either fails.
    public func open() throws {
        let (address, length, family) = try resolve()
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Self.systemError("socket", errno) }
        var timeout = timeval(tv_sec: Self.sendTimeoutSeconds, tv_usec: 0)
        guard setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw Self.systemError("setsockopt(SO_SNDTIMEO)", code)
        }
        let old = state.withLock { s -> Int32 in
            defer { (s.socket, s.address, s.addressLength) = (fd, address, length) }
            return s.socket
        }
        if old >= 0 { Glibc.close(old) }
    }

    /// Sends the lines of `snapshots`. Throws ``MetricsError`` `sinkFailed`
    /// when the sink is not open or a send fails.
    public func export(_ snapshots: [MetricSnapshot]) throws {
        var lines: [String] = []
        lines.reserveCapacity(snapshots.count * 4)
        var dropped = 0
        let bases = DogStatsDFormat.baseNames(snapshots, prefix: namePrefix)
        for (snapshot, base) in zip(snapshots, bases) {
            for line in DogStatsDFormat.lines(snapshot, base: base, tags: constantTags) {
                if let line { lines.append(line) } else { dropped += 1 }
            }
        }
        let (datagrams, oversized) = DogStatsDFormat.pack(lines, limit: configuration.maxDatagramBytes)
        // The socket stays valid: open, export and close never overlap. The
        // lock is not held while sending, so the counters stay readable.
        let target = state.withLock { s -> Target? in
            s.dropped += dropped + oversized
            return s.socket >= 0 ? Target(socket: s.socket, address: s.address, length: s.addressLength) : nil
        }
        guard let target else { throw MetricsError(.sinkFailed, "the DogStatsD sink is not open") }
        for datagram in datagrams {
            let injected = state.withLock { s -> Bool in
                defer { s.failSends = Swift.max(0, s.failSends - 1) }
                return s.failSends > 0
            }
            if injected { throw Self.systemError("sendto", EIO) }
            try target.send(datagram)
            state.withLock { $0.datagrams += 1 }
        }
    }

    /// Closes the socket.
    public func close() {
        let fd = state.withLock { s -> Int32 in
            defer { s.socket = -1 }
            return s.socket
        }
        if fd >= 0 { Glibc.close(fd) }
    }

    /// Test hook: makes the next `count` sends fail as if the network had.
    func failNextSends(_ count: Int) { state.withLock { $0.failSends = count } }

    /// Where datagrams go: the socket and the resolved address.
    private struct Target {
        var socket: Int32
        var address: sockaddr_storage
        var length: socklen_t

        /// Sends one datagram whole, retrying on EINTR.
        func send(_ datagram: [UInt8]) throws(MetricsError) {
            var address = self.address
            while true {
                let sent = datagram.withUnsafeBytes { bytes in
                    withUnsafePointer(to: &address) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(socket, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), $0, length)
                        }
                    }
                }
                if sent == datagram.count { return }
                if sent < 0 && errno == EINTR { continue }
                throw sent < 0 ? DogStatsDSink.systemError("sendto", errno)
                    : MetricsError(.sinkFailed, "sendto sent \(sent) of \(datagram.count) bytes")
            }
        }
    }

    /// The first IPv4 or IPv6 address of the configured host and port.
    private func resolve() throws(MetricsError) -> (sockaddr_storage, socklen_t, Int32) {
        let addresses: [SocketAddress]
        do {
            addresses = try SocketAddress.resolveAll(host: configuration.host, port: configuration.port, datagram: true)
        } catch {
            throw MetricsError(.sinkFailed, "cannot resolve DogStatsD host \(configuration.host): \(error.reason)")
        }
        guard let a = addresses.first(where: { $0.family == AF_INET || $0.family == AF_INET6 }) else {
            throw MetricsError(.sinkFailed, "DogStatsD host \(configuration.host) has no IPv4 or IPv6 address")
        }
        return (a.storage, a.length, a.family)
    }

    fileprivate static func systemError(_ call: String, _ code: Int32) -> MetricsError {
        MetricsError(.sinkFailed, "DogStatsD \(call) failed: \(String(cString: strerror(code)))")
    }
}

/// The DogStatsD text rules of ``DogStatsDSink``.
///
/// - Metric names: ASCII letters, digits, "_" and "."; any other Unicode
///   scalar becomes "_"; "m_" is put in front of a name not starting with a
///   letter; at most 200 characters, suffix (".count"...) included: a
///   longer name is cut and ends with "_<8 hex digits>", the FNV-1a hash of
///   the raw name (``StableHash``).
/// - Tags: ASCII letters (case kept: the agent or backend may lower-case
///   them, kplm does not merge them), digits and "_-:./"; any other scalar
///   becomes "_"; "t_" in front of a tag not starting with a letter; at most
///   200 characters: a longer tag is cut to 191 and ends with
///   "_<8 hex digits>", the hash of the raw "name:value".
/// - No silent merges (SPEC §10): two keys never get the same name and tag
///   set, at any flush, by a rule of each key alone (never of the other
///   keys exported): a key's name (prefix included) is sent as given when
///   sanitizing leaves it unchanged, it fits and it does not end with
///   "_<8 hex digits>"; else it is sanitized, cut to 185 and ends with
///   "_<8 hex digits>", the hash of the raw name (``seriesName(_:)``). A
///   dimension's "name:value" tag likewise, cut to 191, the hash of the raw
///   tag, also when the dimension name has a ":" ("a:b"="c" and "a"="b:c";
///   ``dimensionTag(_:)``). KPL tags such as "shard:shardId-000000000001"
///   are sent as given.
/// - Numbers: plain decimal, never an exponent, the shortest digits that
///   read back as the same Double.
public enum DogStatsDFormat {
    /// Longest metric name or tag, in characters.
    public static let maxLength = 200

    /// The four statistics of a snapshot: suffix, DogStatsD type.
    static let statistics: [(suffix: String, type: String)] =
        [(".count", "c"), (".sum", "c"), (".min", "g"), (".max", "g")]
    private static let longestSuffix = 6

    /// The lines of one snapshot under the metric name `base`: count, sum,
    /// min, max; nil for a statistic whose value is not finite.
    static func lines(_ snapshot: MetricSnapshot, base: String, tags: [String]) -> [String?] {
        var allTags = tags
        for d in snapshot.dimensions { allTags.append(dimensionTag(d)) }
        let tagText = allTags.isEmpty ? "" : "|#" + allTags.joined(separator: ",")
        let values: [String?] = [String(snapshot.count), number(snapshot.sum), number(snapshot.min),
                                 number(snapshot.max)]
        return zip(statistics, values).map { stat, value in
            value.map { base + stat.suffix + ":" + $0 + "|" + stat.type + tagText }
        }
    }

    /// The metric name of each snapshot: ``seriesName(_:)`` of `prefix` + name.
    static func baseNames(_ snapshots: [MetricSnapshot], prefix: String) -> [String] {
        snapshots.map { seriesName(prefix + $0.name) }
    }

    /// Whether `text` ends with "_" and 8 lower-case hex digits, the form
    /// of a name or tag given a hash.
    static func endsWithHash(_ text: String) -> Bool {
        let tail = Array(text.utf8.suffix(9))
        guard tail.count == 9, tail[0] == UInt8(ascii: "_") else { return false }
        return tail.dropFirst().allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// The metric name of a key (SPEC §10), from its raw name alone: the raw
    /// name when sanitizing leaves it unchanged, it has at most 194
    /// characters and does not end with "_<8 hex digits>"; else the
    /// sanitized name, cut to 185 characters, + "_<8 hex digits>", the hash
    /// of the raw name.
    static func seriesName(_ raw: String) -> String {
        let clean = sanitizedName(raw)
        let limit = maxLength - longestSuffix
        if ByteIdentity.equal(clean, raw), !endsWithHash(raw), clean.count <= limit { return raw }
        return String(clean.prefix(limit - 9)) + "_" + StableHash.hex8(raw)
    }

    /// The tag of a dimension (SPEC §10), from the dimension alone:
    /// "name:value" when sanitizing leaves it unchanged, it has at most 200
    /// characters, does not end with "_<8 hex digits>" and the name has no
    /// ":"; else the sanitized tag, cut to 191 characters, + "_<8 hex
    /// digits>", the hash of the raw "name:value" (salted with the name's
    /// length when the name has a ":").
    static func dimensionTag(_ d: MetricDimension) -> String {
        let raw = d.name + ":" + d.value
        let clean = sanitizedTag(raw)
        let colon = d.name.utf8.contains(UInt8(ascii: ":"))
        if !colon, ByteIdentity.equal(clean, raw), !endsWithHash(raw), clean.count <= maxLength { return raw }
        return String(clean.prefix(maxLength - 9)) + "_"
            + StableHash.hex8(raw, salt: colon ? d.name.utf8.count : 0)
    }

    /// A sanitized metric name, without the statistic's suffix: at most 194
    /// characters, leaving room for the longest suffix (".count"); a longer
    /// one is cut to 185 and gets "_<8 hex digits>", the hash of `raw`.
    public static func metricName(_ raw: String) -> String {
        shortened(sanitizedName(raw), to: maxLength - longestSuffix, raw: raw)
    }

    /// `raw` sanitized as a metric name, at any length.
    static func sanitizedName(_ raw: String) -> String {
        var out = ""
        out.reserveCapacity(raw.utf8.count)
        for scalar in raw.unicodeScalars {
            let v = scalar.value
            let keep = isLetter(v) || isDigit(v) || v == 0x5F || v == 0x2E
            out.unicodeScalars.append(keep ? scalar : "_")
        }
        if let first = out.unicodeScalars.first, isLetter(first.value) {} else { out = "m_" + out }
        return out
    }

    /// `text` if it has at most `limit` characters, else its first
    /// `limit` - 9 and "_<8 hex digits>", the hash of `raw`: texts that
    /// differ only beyond the cut stay apart.
    private static func shortened(_ text: String, to limit: Int, raw: String) -> String {
        guard text.count > limit else { return text }
        return String(text.prefix(limit - 9)) + "_" + StableHash.hex8(raw)
    }

    /// A sanitized tag; at most 200 characters (a longer one is cut to 191
    /// and gets "_<8 hex digits>", the hash of `raw`).
    public static func tag(_ raw: String) -> String {
        shortened(sanitizedTag(raw), to: maxLength, raw: raw)
    }

    /// `raw` sanitized as a tag, at any length.
    static func sanitizedTag(_ raw: String) -> String {
        var out = ""
        out.reserveCapacity(raw.utf8.count)
        for scalar in raw.unicodeScalars {
            let v = scalar.value
            if isLetter(v) || isDigit(v) || "_-:./".unicodeScalars.contains(scalar) {
                out.unicodeScalars.append(scalar)
            } else {
                out.unicodeScalars.append("_")
            }
        }
        if let first = out.unicodeScalars.first, isLetter(first.value) {} else { out = "t_" + out }
        return out
    }

    /// `value` in plain decimal (no exponent), with the shortest digits that
    /// read back exactly; nil for infinity and NaN. -0 is "0".
    public static func number(_ value: Double) -> String? {
        guard value.isFinite else { return nil }
        if value == 0 { return "0" }
        // Swift's description has the shortest round-trip digits, sometimes
        // with an exponent ("1e-07", "1.2345e+16"): move the point instead.
        let text = value.magnitude.description
        let parts = text.split(separator: "e", maxSplits: 1)
        let exponent = parts.count == 2 ? Int(parts[1])! : 0
        let mantissa = Array(parts[0].utf8)
        var digits = mantissa.filter { $0 != UInt8(ascii: ".") }
        var point = (mantissa.firstIndex(of: UInt8(ascii: ".")) ?? mantissa.count) + exponent
        while digits.first == UInt8(ascii: "0") { digits.removeFirst(); point -= 1 }
        while digits.last == UInt8(ascii: "0") { digits.removeLast() }
        var out: [UInt8] = value < 0 ? [UInt8(ascii: "-")] : []
        if point <= 0 {
            out += Array("0.".utf8) + Array(repeating: UInt8(ascii: "0"), count: -point) + digits
        } else if point >= digits.count {
            out += digits + Array(repeating: UInt8(ascii: "0"), count: point - digits.count)
        } else {
            out += digits[..<point] + [UInt8(ascii: ".")] + digits[point...]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Lines joined by "\n" into datagrams of at most `limit` bytes, in
    /// order; lines longer than `limit` are left out and counted.
    static func pack(_ lines: [String], limit: Int) -> (datagrams: [[UInt8]], dropped: Int) {
        var datagrams: [[UInt8]] = []
        var current: [UInt8] = []
        var dropped = 0
        for line in lines {
            let n = line.utf8.count
            guard n <= limit else { dropped += 1; continue }
            if !current.isEmpty && current.count + 1 + n > limit {
                datagrams.append(current)
                current.removeAll(keepingCapacity: true)
            }
            if !current.isEmpty { current.append(UInt8(ascii: "\n")) }
            current.append(contentsOf: line.utf8)
        }
        if !current.isEmpty { datagrams.append(current) }
        return (datagrams, dropped)
    }

    private static func isLetter(_ v: UInt32) -> Bool { (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A) }
    private static func isDigit(_ v: UInt32) -> Bool { v >= 0x30 && v <= 0x39 }
}
