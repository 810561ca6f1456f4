import KPLM
import CKPLMShims
import Glibc

/// The HTTP side of ``PrometheusSink``: a listening TCP socket and a thread
/// named "kplm-prometheus" serving up to ``maxConnections`` connections at
/// once with one `poll` event loop over non-blocking sockets.
///
/// Each connection gets one response, then is closed (`Connection: close`).
/// Reading the request and writing the response share a deadline of
/// `timeout` seconds from the accept; a connection still unanswered or
/// still being written to then is closed. A request head longer than
/// ``maxRequestBytes`` gets 431 (the rest is not read). Responses are
/// written as the socket accepts them, so a slow or silent client holds no
/// one else up. With ``maxConnections`` open, a new connection first drops
/// the connection idle the longest (one still sending its request or
/// already answered); if every connection is being answered, new ones wait
/// in the listen backlog. ``stop()`` wakes the thread through a pipe and
/// joins it; the thread closes its connections.
///
/// Thread-safety: ``stop()`` may be called from any thread; everything else
/// runs on the server thread.
final class PrometheusServer: @unchecked Sendable {
    /// A parsed request: method, path (query removed), Accept header values.
    typealias Request = PrometheusRequest

    /// A response: status code, content type, body (and whether to send it).
    struct Response {
        var status: Int
        var contentType: String
        var body: [UInt8]
        var extraHeaders: String = ""
    }

    /// Longest request head read, in bytes; a longer one gets 431.
    static let maxRequestBytes = PrometheusRequest.maxHeadBytes
    /// Most connections open at once (each costs a descriptor and at most
    /// ``maxRequestBytes`` of buffered request, or its response).
    static let maxConnections = 128
    /// How long an answered connection is still read (and what it sends
    /// discarded) before it is closed, at most, in seconds and bytes:
    /// closing with unread input would reset the connection and could
    /// destroy the response in flight.
    static let lingerSeconds = 0.5
    static let maxLingerBytes = 64 * 1024

    private let listener: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let timeout: Double
    private let handler: @Sendable (Request) -> Response
    private var thread = pthread_t()
    /// Set once by stop(); only the stopping thread touches the fds after.
    private let stopped = Locked(false)

    /// Binds and listens on `address`:`port` (SO_REUSEADDR) and starts the
    /// thread. Throws `sinkFailed` if the address cannot be resolved or
    /// bound, or the thread cannot start.
    init(address: String, port: UInt16, timeout: Double,
         handler: @escaping @Sendable (Request) -> Response) throws(MetricsError) {
        self.timeout = timeout
        self.handler = handler
        listener = try Self.listen(address: address, port: port)
        var pipeFds: [Int32] = [-1, -1]
        guard pipe(&pipeFds) == 0 else {
            let error = Self.failure("pipe")
            Glibc.close(listener)
            throw error
        }
        (wakeRead, wakeWrite) = (pipeFds[0], pipeFds[1])
        for fd in pipeFds { Self.setFlags(fd) }
        // The thread holds the server until run() returns.
        do {
            thread = try NamedThread.start(named: "kplm-prometheus") { self.run() }
        } catch {
            for fd in [listener, wakeRead, wakeWrite] { Glibc.close(fd) }
            throw MetricsError(.sinkFailed,
                               "Prometheus: cannot start the server thread: \(String(cString: strerror(error.code)))")
        }
    }

    /// Wakes the thread, joins it and closes every descriptor. Idempotent.
    func stop() {
        let first = stopped.withLock { s -> Bool in
            defer { s = true }
            return !s
        }
        guard first else { return }
        var byte: UInt8 = 1
        while write(wakeWrite, &byte, 1) < 0 && errno == EINTR {}
        pthread_join(thread, nil)
        for fd in [listener, wakeRead, wakeWrite] { Glibc.close(fd) }
    }

    // MARK: - Listening

    private static func failure(_ what: String, _ code: Int32 = errno) -> MetricsError {
        MetricsError(.sinkFailed, "Prometheus: \(what): \(String(cString: strerror(code)))")
    }

    /// A listening socket on the first address of `address` that binds.
    private static func listen(address: String, port: UInt16) throws(MetricsError) -> Int32 {
        let addresses: [SocketAddress]
        do {
            addresses = try SocketAddress.resolveAll(host: address, port: port, datagram: false, passive: true)
        } catch {
            throw MetricsError(.sinkFailed, "Prometheus: cannot resolve \(address): \(error.reason)")
        }
        var lastError = MetricsError(.sinkFailed, "Prometheus: \(address) has no usable address")
        for a in addresses {
            let fd = socket(a.family, a.socketType | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), a.proto)
            guard fd >= 0 else {
                lastError = failure("socket")
                continue
            }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            // The kernel's largest backlog (SOMAXCONN): a burst of clients
            // (more than the connection cap) waits there instead of having
            // its SYNs dropped, which costs a scraper a 1 s retransmit.
            if a.withSockaddr({ Glibc.bind(fd, $0, $1) }) == 0 && Glibc.listen(fd, SOMAXCONN) == 0 { return fd }
            lastError = failure("cannot listen on \(address):\(port)")
            Glibc.close(fd)
        }
        throw lastError
    }

    /// Makes `fd` non-blocking and close-on-exec.
    private static func setFlags(_ fd: Int32) {
        _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    // MARK: - Serving

    /// One accepted connection, owned by the server thread.
    private struct Connection {
        /// What the connection is waiting for.
        enum Phase {
            /// The rest of the request head (POLLIN).
            case reading
            /// Room in the socket for the rest of the response (POLLOUT).
            case writing
            /// The client closing, after the whole response (POLLIN).
            case lingering
        }

        let fd: Int32
        /// The accept time plus the timeout.
        let deadline: Double
        /// When the connection was accepted or last sent something: the
        /// least recent is dropped first when the connections are full.
        var lastActivity: Double
        var phase = Phase.reading
        /// The request head received so far (reading).
        var head: [UInt8] = []
        /// The response and how much of it was sent (writing).
        var output: [UInt8] = []
        var written = 0
        /// The end of lingering, and the bytes discarded (lingering).
        var lingerUntil = 0.0
        var discarded = 0

        /// When the connection is closed if nothing else happens first.
        var expiry: Double { phase == .lingering ? lingerUntil : deadline }
        /// Whether it may be dropped for a new one: not being answered.
        var isIdle: Bool { phase != .writing }
    }

    private func run() {
        var connections: [Connection] = []
        defer { for c in connections { Glibc.close(c.fd) } }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        // After accept failed for lack of descriptors or memory: retry then.
        var acceptPausedUntil = 0.0
        var fds: [pollfd] = []
        while true {
            let now = ManagerClock.monotonicNow()
            connections.removeAll { c in
                guard now >= c.expiry else { return false }
                Glibc.close(c.fd)
                return true
            }
            let accepting = now >= acceptPausedUntil
                && (connections.count < Self.maxConnections || connections.contains { $0.isIdle })
            fds.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            fds.append(pollfd(fd: accepting ? listener : -1, events: Int16(POLLIN), revents: 0))
            var wakeAt = now < acceptPausedUntil ? acceptPausedUntil : Double.infinity
            for c in connections {
                fds.append(pollfd(fd: c.fd, events: Int16(c.phase == .writing ? POLLOUT : POLLIN), revents: 0))
                wakeAt = Swift.min(wakeAt, c.expiry)
            }
            // (Rounded up: the loop wakes once the earliest expiry is past.)
            let rc = poll(&fds, nfds_t(fds.count), wakeAt.isFinite ? SocketTransport.remainingMs(wakeAt) : -1)
            if rc < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[0].revents != 0 { return }
            guard rc > 0 else { continue }
            var done: [Int] = []
            for i in connections.indices where fds[i + 2].revents != 0 {
                if !advance(&connections[i], revents: fds[i + 2].revents, buffer: &buffer) { done.append(i) }
            }
            for i in done.reversed() { Glibc.close(connections.remove(at: i).fd) }
            if fds[1].revents != 0 {
                acceptAll(into: &connections, buffer: &buffer, pausedUntil: &acceptPausedUntil)
            }
        }
    }

    /// Accepts the pending connections (for each one beyond
    /// ``maxConnections``, dropping the connection idle the longest) and
    /// reads what they already sent.
    private func acceptAll(into connections: inout [Connection], buffer: inout [UInt8],
                           pausedUntil: inout Double) {
        for _ in 0..<Self.maxConnections {
            // Full, and every connection being answered: the rest wait in
            // the listen backlog.
            if connections.count >= Self.maxConnections && !connections.contains(where: { $0.isIdle }) { return }
            // (Accepted first: a connection is only dropped for one that is
            // there.)
            let client = accept(listener, nil, nil)
            guard admit(client, &pausedUntil) else { return }
            Self.setFlags(client)
            if connections.count >= Self.maxConnections,
               let victim = connections.indices.filter({ connections[$0].isIdle })
                   .min(by: { connections[$0].lastActivity < connections[$1].lastActivity }) {
                Glibc.close(connections.remove(at: victim).fd)
            }
            let now = ManagerClock.monotonicNow()
            var c = Connection(fd: client, deadline: now + timeout, lastActivity: now)
            if advance(&c, revents: Int16(POLLIN), buffer: &buffer) {
                connections.append(c)
            } else {
                Glibc.close(client)
            }
        }
    }

    /// Whether accept returned a connection; on an error other than "none
    /// pending", pauses accepting for 0.1 s if the process is out of
    /// descriptors or memory.
    private func admit(_ client: Int32, _ pausedUntil: inout Double) -> Bool {
        if client >= 0 { return true }
        switch errno {
        case EINTR, EAGAIN, EWOULDBLOCK, ECONNABORTED, EPROTO: break
        default: pausedUntil = ManagerClock.monotonicNow() + 0.1
        }
        return false
    }

    /// Does what `c` is ready for (`revents` from poll); false once the
    /// connection is to be closed.
    private func advance(_ c: inout Connection, revents: Int16, buffer: inout [UInt8]) -> Bool {
        if revents & Int16(POLLNVAL) != 0 { return false }
        switch c.phase {
        case .reading:
            while true {
                let classified = c.head.count
                // Never more than the limit: a longer head is not read.
                let want = Swift.min(buffer.count, Self.maxRequestBytes - classified)
                let n = recv(c.fd, &buffer, want, Int32(MSG_DONTWAIT))
                if n > 0 {
                    c.lastActivity = ManagerClock.monotonicNow()
                    c.head += buffer[0..<n]
                    let parse = PrometheusRequest.classify(c.head, searchFrom: classified)
                    if parse == .incomplete { continue }
                    c.output = response(to: parse)
                    c.head = []
                    c.phase = .writing
                    return advance(&c, revents: Int16(POLLOUT), buffer: &buffer)
                }
                if n == 0 { return false }   // closed before a whole request
                if errno == EINTR { continue }
                return errno == EAGAIN || errno == EWOULDBLOCK
            }
        case .writing:
            while c.written < c.output.count {
                let n = c.output.withUnsafeBytes {
                    send(c.fd, $0.baseAddress! + c.written, $0.count - c.written, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
                if n > 0 {
                    c.written += n
                } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                    return true
                } else if !(n < 0 && errno == EINTR) {
                    return false
                }
            }
            c.output = []
            // Half-close, then read until the client closes (see
            // lingerSeconds).
            shutdown(c.fd, Int32(SHUT_WR))
            c.phase = .lingering
            c.lingerUntil = Swift.min(c.deadline, ManagerClock.monotonicNow() + Self.lingerSeconds)
            return advance(&c, revents: Int16(POLLIN), buffer: &buffer)
        case .lingering:
            while true {
                let n = recv(c.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if n > 0 {
                    c.lastActivity = ManagerClock.monotonicNow()
                    c.discarded += n
                    if c.discarded > Self.maxLingerBytes { return false }
                    continue
                }
                if n < 0 && errno == EINTR { continue }
                return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
            }
        }
    }

    /// The bytes of the answer to a head that is not incomplete: the
    /// handler's response, 400 or 431.
    private func response(to parse: PrometheusRequest.Parse) -> [UInt8] {
        let response: Response
        var isHead = false
        switch parse {
        case .complete(let request):
            response = handler(request)
            isHead = request.method == "HEAD"
        case .tooLarge, .incomplete:
            response = Self.plain(431, "request header fields too large\n")
        case .malformed:
            response = Self.plain(400, "bad request\n")
        }
        var bytes = Array(("HTTP/1.1 \(response.status) \(Self.reason(response.status))\r\n"
            + "Content-Type: \(response.contentType)\r\n"
            + "Content-Length: \(response.body.count)\r\n"
            + response.extraHeaders
            + "Connection: close\r\n\r\n").utf8)
        if !isHead { bytes += response.body }
        return bytes
    }

    /// A text/plain response.
    static func plain(_ status: Int, _ text: String, extraHeaders: String = "") -> Response {
        Response(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8),
                 extraHeaders: extraHeaders)
    }

    private static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 431: "Request Header Fields Too Large"
        default: "Error"
        }
    }
}
