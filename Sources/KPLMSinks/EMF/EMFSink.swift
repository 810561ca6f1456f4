import KPLM
import Glibc

/// Settings of an ``EMFSink``. Defaults match `kplm_emf_config_init`.
public struct EMFSinkConfiguration: Sendable, Equatable {
    /// Where EMF events go.
    public enum Destination: Sendable, Equatable {
        /// JSON lines on standard output (e.g. for AWS Lambda or a container log driver).
        case stdout
        /// JSON lines appended to the file at `path` (created with mode 0644 if missing).
        case file(path: String)
        /// A CloudWatch agent's TCP listener: newline-delimited events.
        case tcp(host: String, port: UInt16)
        /// A CloudWatch agent's UDP listener: one event per datagram.
        case udp(host: String, port: UInt16)
    }

    /// The CloudWatch agent's default EMF port.
    public static let defaultAgentPort: UInt16 = 25888

    /// Where events go. Default ``Destination/stdout``.
    public var destination: Destination = .stdout
    /// The CloudWatch namespace of every event; nil (the default) uses each
    /// snapshot's namespace, or ``EMFFormat/defaultNamespace`` for one that
    /// has none.
    public var namespace: String? = nil
    /// TCP connect-plus-send budget of one export, and send timeout of
    /// stdout, file and UDP writes, in milliseconds. Finite and > 0.
    public var timeoutMs: Double = 2_000

    /// Creates a configuration.
    public init(destination: Destination = .stdout, namespace: String? = nil, timeoutMs: Double = 2_000) {
        self.destination = destination
        self.namespace = namespace
        self.timeoutMs = timeoutMs
    }

    /// Throws `invalidArgument` for an empty path, a bad host, port 0, a
    /// namespace CloudWatch refuses or a timeout that is not finite and > 0.
    func validate() throws(MetricsError) {
        switch destination {
        case .stdout:
            break
        case .file(let path):
            guard !path.isEmpty, !path.utf8.contains(0) else {
                throw MetricsError(.invalidArgument, "EMF file path is empty or contains NUL")
            }
        case .tcp(let host, let port), .udp(let host, let port):
            guard SocketTransport.isValidHost(host) else {
                throw MetricsError(.invalidArgument, "EMF host \"\(host)\" is neither a numeric address nor a host name")
            }
            guard port != 0 else { throw MetricsError(.invalidArgument, "EMF port is 0") }
        }
        if let namespace {
            do {
                try CloudWatchRequestBuilder.checkNamespace(namespace)
            } catch {
                throw MetricsError(.invalidArgument, error.message)
            }
        }
        guard timeoutMs.isFinite, timeoutMs > 0 else {
            throw MetricsError(.invalidArgument, "EMF timeout must be finite and > 0 ms, got \(timeoutMs)")
        }
    }
}

/// A sink writing CloudWatch Embedded Metric Format events, one JSON object
/// per line (per datagram over UDP), to standard output, a file, or a
/// CloudWatch agent over TCP or UDP.
///
/// Each export is encoded by ``EMFFormat/events(_:namespace:maxEventBytes:unitOf:)``:
/// a snapshot `<Name>` becomes the metrics `<Name>` (the sum, with the
/// metric's unit), `<Name>.Count` (the count, unit "Count"), `<Name>.Min`
/// and `<Name>.Max` (with the metric's unit). Two keys never share a metric
/// of one (namespace, dimension set): a key whose name ends with ".Count",
/// ".Min", ".Max" or "_<8 hex digits>", or with a dimension named
/// "StreamName", "ShardId" or "ErrorCode" or a blank one, is always renamed
/// `<Name>_<8 hex digits>`, a stable hash of the key (see ``EMFFormat``),
/// whichever other keys are exported; a count-0 snapshot and
/// non-finite values are never written (see ``dropped``). A snapshot that
/// produces no metric (``EMFDropReason``: over CloudWatch's limits, or a
/// name or value it would refuse) is counted in ``dropped`` and in the
/// manager's self-metric `KplmSinkDropped` (one observation per snapshot:
/// see ``DropCountingSink``).
///
/// `export` throws `sinkFailed` when a write or send fails or, over TCP,
/// when connecting and sending take longer than
/// ``EMFSinkConfiguration/timeoutMs``; the manager then keeps the data for
/// the next flush (events written before the failure are written again:
/// delivery is at least once). A failed TCP connection is reopened at the
/// next export, and so is one the agent closed. Files are opened with
/// `O_APPEND`, so several processes may share one.
public final class EMFSink: DropCountingSink {
    /// The sockets, their errors labelled "EMF:".
    static let transport = SocketTransport(label: "EMF")
    /// The configuration the sink was created with.
    public let configuration: EMFSinkConfiguration

    private struct State {
        var fd: Int32 = -1
        var udpTarget: SocketAddress?
        var dropped: [EMFDropReason: Int] = [:]
        /// Snapshots dropped since the manager last took the count.
        var droppedUntaken = 0
    }

    private let state = Locked(State())

    /// Creates a sink; nothing is opened before ``open()`` or the first export.
    /// Throws `invalidArgument` for a bad configuration.
    public init(_ configuration: EMFSinkConfiguration = EMFSinkConfiguration()) throws(MetricsError) {
        try configuration.validate()
        self.configuration = configuration
    }

    deinit { state.withLock { Self.closeDescriptor(&$0) } }

    /// Snapshots left out of every export so far, by reason.
    public var dropped: [EMFDropReason: Int] { state.withLock { $0.dropped } }

    /// Snapshots dropped since the last call, whatever the reason (see
    /// ``DropCountingSink``); the manager calls it after each export.
    public func takeDroppedCount() -> Int {
        state.withLock { s in
            defer { s.droppedUntaken = 0 }
            return s.droppedUntaken
        }
    }

    /// Opens the file, or resolves the UDP address. Stdout and TCP open
    /// nothing here: a TCP agent is connected to at the first export.
    public func open() throws {
        try state.withLock { (s) throws(MetricsError) in
            switch configuration.destination {
            case .file, .udp: try ensureOpen(&s)
            case .stdout, .tcp: break
            }
        }
    }

    /// Encodes `snapshots` and writes the events (see ``EMFSink``).
    public func export(_ snapshots: [MetricSnapshot]) throws {
        let maxBytes: Int
        if case .udp = configuration.destination { maxBytes = EMFFormat.maxDatagramBytes } else {
            maxBytes = EMFFormat.maxEventBytes
        }
        let events = EMFFormat.events(snapshots, namespace: configuration.namespace, maxEventBytes: maxBytes)
        try state.withLock { (s) throws(MetricsError) in
            for (reason, n) in events.dropped {
                s.dropped[reason, default: 0] += n
                s.droppedUntaken += n
            }
            guard !events.lines.isEmpty else { return }
            let deadline = SocketTransport.deadline(afterMs: configuration.timeoutMs)
            do throws(MetricsError) {
                try ensureOpen(&s, deadline: deadline)
                if case .udp = configuration.destination {
                    for line in events.lines {
                        try Self.transport.sendDatagram(s.fd, Array(line.utf8), to: s.udpTarget!, deadline: deadline)
                    }
                } else {
                    var text = events.lines.joined(separator: "\n")
                    text += "\n"
                    let fd = configuration.destination == .stdout ? STDOUT_FILENO : s.fd
                    try Self.transport.writeAll(fd, Array(text.utf8), deadline: deadline,
                                           isSocket: configuration.destination.isTCP)
                }
            } catch {
                // A TCP stream in an unknown state is useless: reconnect next time.
                if configuration.destination.isTCP { Self.closeDescriptor(&s) }
                throw error
            }
        }
    }

    /// Closes the file or socket.
    public func close() {
        state.withLock { Self.closeDescriptor(&$0) }
    }

    // MARK: - Descriptors

    private func ensureOpen(_ s: inout State,
                            deadline: Double? = nil) throws(MetricsError) {
        switch configuration.destination {
        case .stdout:
            break
        case .file(let path):
            guard s.fd < 0 else { return }
            let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw Self.transport.failure("cannot open \(path)") }
            s.fd = fd
        case .tcp(let host, let port):
            if s.fd >= 0, SocketTransport.peerClosed(s.fd) { Self.closeDescriptor(&s) }
            guard s.fd < 0 else { return }
            s.fd = try Self.transport.connect(host: host, port: port,
                                         deadline: deadline ?? SocketTransport.deadline(afterMs: configuration.timeoutMs))
        case .udp(let host, let port):
            guard s.fd < 0 else { return }
            let target = try Self.transport.resolve(host: host, port: port, datagram: true)
            let fd = socket(target.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
                            | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw Self.transport.failure("cannot create a UDP socket") }
            s.fd = fd
            s.udpTarget = target
        }
    }

    private static func closeDescriptor(_ s: inout State) {
        // Standard output is never stored here, so every stored descriptor is ours.
        if s.fd >= 0 { Glibc.close(s.fd) }
        s.fd = -1
    }
}

extension EMFSinkConfiguration.Destination {
    var isTCP: Bool { if case .tcp = self { true } else { false } }
}
