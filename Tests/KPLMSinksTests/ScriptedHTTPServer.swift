import Foundation

/// An HTTP/1.1 server on 127.0.0.1 (a free port) for the network sinks'
/// tests: it answers each request from a script, then with `defaultAnswer`
/// once the script is empty, one request per connection, and records every
/// request (head, body, the status it got and when it arrived).
final class ScriptedHTTPServer: @unchecked Sendable {
    /// What the server does with the next request.
    enum Answer {
        /// Answer with this status, extra header lines and body.
        case status(Int, headers: [(String, String)] = [], body: String = "")
        /// Close the connection without an answer.
        case drop
    }

    /// A request as received.
    struct Request {
        /// The request line and header lines, without the blank line.
        var head: String
        var body: [UInt8]
        /// The status answered, nil when the connection was dropped.
        var status: Int?
        /// When it arrived (seconds of system uptime).
        var at: Double

        /// The value of the first header line named `name` (any case).
        func header(_ name: String) -> String? {
            for line in head.components(separatedBy: "\r\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                if line[..<colon].lowercased() == name.lowercased() {
                    return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
            }
            return nil
        }
    }

    let port: UInt16
    private let fd: Int32
    private let defaultAnswer: Answer
    private let lock = NSLock()
    private var script: [Answer] = []
    private var received: [Request] = []
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)

    init(defaultAnswer: Answer = .status(200)) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
                bind(fd, p, length) == 0 && getsockname(fd, p, &length) == 0 && listen(fd, 16) == 0
            }
        }
        guard ok else { close(fd); throw POSIXError(.EADDRINUSE) }
        self.fd = fd
        self.defaultAnswer = defaultAnswer
        port = UInt16(bigEndian: address.sin_port)
        Thread.detachNewThread { [self] in serve() }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    func url(_ path: String = "") -> String { "http://127.0.0.1:\(port)\(path)" }

    /// Appends answers to the script.
    func answer(_ answers: Answer...) { lock.withLock { script += answers } }

    /// Every request received so far, in order.
    var requests: [Request] { lock.withLock { received } }

    /// Stops serving (waits for the request in progress) and closes the port.
    func stop() {
        lock.withLock { stopped = true }
        done.wait()
        close(fd)
    }

    private func serve() {
        defer { done.signal() }
        while !lock.withLock({ stopped }) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 20) == 1 else { continue }
            let conn = accept(fd, nil, nil)
            guard conn >= 0 else { continue }
            handle(conn)
            close(conn)
        }
    }

    private func handle(_ conn: Int32) {
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var headEnd: Int?
        var contentLength = 0
        while true {
            if headEnd == nil, let r = data.firstRange(of: [13, 10, 13, 10]) {
                headEnd = r.lowerBound
                let head = Request(head: String(decoding: data[..<r.lowerBound], as: UTF8.self), body: [],
                                   status: nil, at: 0)
                contentLength = Int(head.header("Content-Length") ?? "0") ?? 0
            }
            if let end = headEnd, data.count >= end + 4 + contentLength { break }
            let n = recv(conn, &buffer, buffer.count, 0)
            guard n > 0 else { return }
            data += buffer[..<n]
        }
        let end = headEnd!
        let answer = lock.withLock { script.isEmpty ? defaultAnswer : script.removeFirst() }
        var request = Request(head: String(decoding: data[..<end], as: UTF8.self),
                              body: Array(data[(end + 4)..<(end + 4 + contentLength)]), status: nil,
                              at: ProcessInfo.processInfo.systemUptime)
        guard case .status(let status, let headers, let body) = answer else {
            lock.withLock { received.append(request) }
            return
        }
        request.status = status
        lock.withLock { received.append(request) }
        var text = "HTTP/1.1 \(status) Whatever\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        text += "\r\n\(body)"
        _ = Array(text.utf8).withUnsafeBytes { send(conn, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }
}
