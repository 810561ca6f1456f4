import KPLM
import CKPLMShims
import Glibc

/// The HTTP side of ``PrometheusSink``: a listening TCP socket and a thread
/// named "kplm-prometheus" serving one connection at a time.
///
/// Each connection gets one response, then is closed (`Connection: close`).
/// Reading the request and writing the response share a deadline of
/// `timeout` seconds, so a slow or silent client holds the thread that long
/// at most. ``stop()`` wakes the thread through a pipe (also while it waits
/// on a client) and joins it.
final class PrometheusServer: @unchecked Sendable {
    /// A parsed request: method, path (query removed), Accept header values.
    struct Request {
        var method: String
        var path: String
        var accept: String
    }

    /// A response: status code, content type, body (and whether to send it).
    struct Response {
        var status: Int
        var contentType: String
        var body: [UInt8]
        var extraHeaders: String = ""
    }

    /// Longest request head read, in bytes; a longer one gets 431.
    static let maxRequestBytes = 16 * 1024

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
            if a.withSockaddr({ Glibc.bind(fd, $0, $1) }) == 0 && Glibc.listen(fd, 64) == 0 { return fd }
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

    private func run() {
        while true {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let rc = poll(&fds, 2, -1)
            if rc < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[1].revents != 0 { return }
            guard fds[0].revents != 0 else { continue }
            let client = accept(listener, nil, nil)
            if client < 0 {
                switch errno {
                case EINTR, EAGAIN, EWOULDBLOCK, ECONNABORTED, EPROTO: continue
                default:
                    // Out of descriptors or memory: retry a little later.
                    if wait(nil, events: 0, until: ManagerClock.monotonicNow() + 0.1) == .stopping { return }
                    continue
                }
            }
            Self.setFlags(client)
            let outcome = serve(client)
            Glibc.close(client)
            if outcome == .stopping { return }
        }
    }

    private enum Wait { case ready, timedOut, stopping }

    /// Waits until `fd` is ready for `events` (nil: just sleeps), the
    /// deadline passes or stop() is called.
    private func wait(_ fd: Int32?, events: Int16, until deadline: Double) -> Wait {
        while true {
            let left = EMFSocket.remainingMs(deadline)
            guard left > 0 else { return .timedOut }
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: fd ?? -1, events: events, revents: 0)]
            let rc = poll(&fds, 2, left)
            if rc < 0 && errno != EINTR { return .timedOut }
            if fds[0].revents != 0 { return .stopping }
            if fds[1].revents != 0 { return .ready }
        }
    }

    /// Reads one request head, answers it, closes our side.
    private func serve(_ client: Int32) -> Wait {
        let deadline = ManagerClock.monotonicNow() + timeout
        var head: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var end: Int?
        while end == nil {
            let n = recv(client, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 {
                head += buffer[0..<n]
                end = Self.headEnd(head)
                if end == nil && head.count > Self.maxRequestBytes { break }
            } else if n == 0 {
                return .ready   // closed before a whole request
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                let w = wait(client, events: Int16(POLLIN), until: deadline)
                if w != .ready { return w }
            } else if errno != EINTR {
                return .ready
            }
        }
        if let e = end, e > Self.maxRequestBytes { end = nil }
        let request = end.flatMap { Self.parse(head[..<$0]) }
        let response: Response
        if let request {
            response = handler(request)
        } else if end == nil {
            response = Self.plain(431, "request header fields too large\n")
        } else {
            response = Self.plain(400, "bad request\n")
        }
        let isHead = request?.method == "HEAD"
        var bytes = Array(("HTTP/1.1 \(response.status) \(Self.reason(response.status))\r\n"
            + "Content-Type: \(response.contentType)\r\n"
            + "Content-Length: \(response.body.count)\r\n"
            + response.extraHeaders
            + "Connection: close\r\n\r\n").utf8)
        if !isHead { bytes += response.body }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(client, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                offset += n
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                let w = wait(client, events: Int16(POLLOUT), until: deadline)
                if w != .ready { return w }
            } else if !(n < 0 && errno == EINTR) {
                return .ready
            }
        }
        // Half-close, then read what the client still sends until it closes
        // (briefly): closing with unread input would reset the connection
        // and could destroy the response in flight.
        shutdown(client, Int32(SHUT_WR))
        let lingerUntil = Swift.min(deadline, ManagerClock.monotonicNow() + 0.5)
        while true {
            let n = recv(client, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 || (n < 0 && errno == EINTR) { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                let w = wait(client, events: Int16(POLLIN), until: lingerUntil)
                if w == .ready { continue }
                return w == .stopping ? .stopping : .ready
            }
            return .ready
        }
    }

    /// Index just past the blank line ending the head ("\r\n\r\n" or "\n\n").
    static func headEnd(_ bytes: [UInt8]) -> Int? {
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x0A {
                if i + 1 < bytes.count && bytes[i + 1] == 0x0A { return i + 2 }
                if i + 2 < bytes.count && bytes[i + 1] == 0x0D && bytes[i + 2] == 0x0A { return i + 3 }
            }
            i += 1
        }
        return nil
    }

    /// The request line and Accept headers of a head; nil if malformed.
    static func parse(_ head: ArraySlice<UInt8>) -> Request? {
        // Bytes, not Characters: "\r\n" is a single Character in Swift.
        var lines = head.split(separator: 0x0A, omittingEmptySubsequences: false).map { line in
            String(decoding: line.last == 0x0D ? line.dropLast() : line, as: UTF8.self)
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let first = lines.first else { return nil }
        let parts = first.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[1].hasPrefix("/") || parts[1] == "*",
              parts[2].hasPrefix("HTTP/1.") else { return nil }
        let path = parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        var accept: [Substring] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { return nil }
            if line[..<colon].lowercased() == "accept" { accept.append(line[line.index(after: colon)...]) }
        }
        return Request(method: String(parts[0]), path: String(path),
                       accept: accept.map { $0.trimmingBlanks() }.joined(separator: ","))
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
