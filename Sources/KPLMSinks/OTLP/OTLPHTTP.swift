import KPLM
import Glibc

/// Where an ``OTLPSink`` POSTs: the parts of an `http(s)://host[:port]/path`
/// URL (the path may carry a query).
public typealias OTLPEndpoint = HTTPEndpoint<OTLPEndpointKind>

/// The rules of ``OTLPEndpoint``: a query is allowed; a bracketed host must
/// be an IPv6 address.
public enum OTLPEndpointKind: HTTPEndpointKind {
    /// How OTLP endpoints are parsed.
    public static let endpointRules = HTTPEndpointRules(label: "OTLP", form: "http(s)://host[:port]/path",
                                                        allowsQuery: true, bracketsHoldIPv6Only: true)
}

/// The HTTP/1.1 client of ``OTLPSink``: one connection per request
/// (`Connection: close`), every step bounded by a deadline in monotonic
/// seconds (see ``SocketTransport``).
enum OTLPHTTP {
    /// The sockets, their errors labelled "OTLP:".
    static let transport = SocketTransport(label: "OTLP")

    /// The status line and the headers the sink needs.
    struct Response: Equatable {
        var status: Int
        var reason: String
        /// Retry-After, in seconds from now, if the response had a usable one.
        var retryAfter: Double?
    }

    /// What one attempt came to.
    enum Outcome {
        /// The server answered.
        case response(Response)
        /// No answer: resolution, connection, write or read failed (worth a retry).
        case transportFailure(MetricsError)
    }

    /// Longest response head read, in bytes.
    static let maxHeadBytes = 65_536

    /// The bytes of a POST of `body` to `endpoint` with `headers` (by
    /// default those of a sink without extra headers or compression).
    static func request(_ endpoint: OTLPEndpoint, headers: [(name: String, value: String)] = [
        ("User-Agent", "kplm/\(OTLPEncoding.scopeVersion)"), ("Content-Type", "application/x-protobuf"),
    ], body: [UInt8]) -> [UInt8] {
        var head = "POST \(endpoint.path) HTTP/1.1\r\n"
        head += "Host: \(endpoint.hostHeader)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "Content-Length: \(body.count)\r\n"
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8) + body
    }

    /// Sends `request` to `endpoint` and reads the final response's status
    /// line and headers, all before `deadline`. Throws only for a response
    /// that is not HTTP; every other failure is a ``Outcome/transportFailure(_:)``.
    static func exchange(_ request: [UInt8], with endpoint: OTLPEndpoint,
                         deadline: Double) throws(MetricsError) -> Outcome {
        let fd: Int32
        do throws(MetricsError) {
            fd = try Self.transport.connect(host: endpoint.host, port: endpoint.port, deadline: deadline)
        } catch {
            return .transportFailure(error)
        }
        defer { Glibc.close(fd) }
        var writeFailure: MetricsError?
        do throws(MetricsError) {
            try Self.transport.writeAll(fd, request, deadline: deadline, isSocket: true)
        } catch {
            // The server may have answered (say 413) and closed early: read that answer if any.
            writeFailure = error
        }
        switch readHead(fd, deadline: deadline) {
        case .success(let head):
            guard let response = parseHead(head) else {
                throw MetricsError(.sinkFailed, "OTLP: \(endpoint.hostHeader) answered with something other than HTTP")
            }
            return .response(response)
        case .failure(let error):
            return .transportFailure(writeFailure ?? error)
        }
    }

    /// The head (status line and headers, without the blank line) of the
    /// first non-1xx response on `fd`.
    private static func readHead(_ fd: Int32, deadline: Double) -> Result<ArraySlice<UInt8>, MetricsError> {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        var searchFrom = 0
        while true {
            if let end = headEnd(buffer, from: searchFrom) {
                let head = buffer[..<end]
                // Skip an interim response (100 Continue and the like).
                if let r = parseHead(head), (100..<200).contains(r.status), r.status != 101 {
                    buffer.removeFirst(end + 4)
                    searchFrom = 0
                    continue
                }
                return .success(head)
            }
            searchFrom = Swift.max(0, buffer.count - 3)
            guard buffer.count <= maxHeadBytes else {
                return .failure(MetricsError(.sinkFailed, "OTLP: response head longer than \(maxHeadBytes) bytes"))
            }
            let left = SocketTransport.remainingMs(deadline)
            guard left > 0 else { return .failure(MetricsError(.sinkFailed, "OTLP: waiting for the response: timed out")) }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, left)
            if ready < 0 && errno != EINTR { return .failure(Self.transport.failure("waiting for the response")) }
            guard ready > 0 else { continue }
            let n = recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if n > 0 {
                buffer.append(contentsOf: chunk[..<n])
            } else if n == 0 {
                return .failure(MetricsError(.sinkFailed, "OTLP: the server closed the connection without a response"))
            } else if errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK {
                return .failure(Self.transport.failure("reading the response"))
            }
        }
    }

    /// Index of the "\r\n\r\n" ending a head, searching from `start`.
    private static func headEnd(_ buffer: [UInt8], from start: Int) -> Int? {
        guard buffer.count >= 4 else { return nil }
        var i = start
        while i + 4 <= buffer.count {
            if buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 { return i }
            i += 1
        }
        return nil
    }

    /// The status and Retry-After of a response head; nil if its status
    /// line is not "HTTP/1.x NNN[ reason]".
    static func parseHead(_ head: ArraySlice<UInt8>, wallNow: Double = ManagerClock.wallNow()) -> Response? {
        var lines = head.split(separator: 10, omittingEmptySubsequences: false).map { line in
            line.last == 13 ? line.dropLast() : line
        }[...]
        guard let statusLine = lines.popFirst() else { return nil }
        let prefix = Array("HTTP/1.".utf8)
        guard statusLine.count >= 12, statusLine.starts(with: prefix),
              statusLine[statusLine.startIndex + 8] == UInt8(ascii: " ") else { return nil }
        let digits = statusLine[(statusLine.startIndex + 9)..<(statusLine.startIndex + 12)]
        guard digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), digits.first != UInt8(ascii: "0") else { return nil }
        let status = digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        let afterCode = statusLine[(statusLine.startIndex + 12)...]
        guard afterCode.isEmpty || afterCode.first == UInt8(ascii: " ") else { return nil }
        var response = Response(status: status, reason: String(decoding: afterCode.dropFirst(), as: UTF8.self))
        for line in lines {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = String(decoding: line[..<colon], as: UTF8.self).lowercased()
            guard name == "retry-after" else { continue }
            let value = String(decoding: trimmed(line[(colon + 1)...]), as: UTF8.self)
            response.retryAfter = retryAfterSeconds(value, wallNow: wallNow)
        }
        return response
    }

    /// Seconds to wait for a Retry-After value: delta-seconds, or an
    /// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") less `wallNow`
    /// (at least 0); nil for anything else.
    static func retryAfterSeconds(_ value: String, wallNow: Double) -> Double? {
        let bytes = Array(value.utf8)
        if !bytes.isEmpty, bytes.count <= 12, bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            return Double(Int(value)!)
        }
        let parts = value.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard parts.count == 6, parts[0].count == 4, parts[0].hasSuffix(","), parts[5] == "GMT",
              let day = Int(parts[1]), let month = months.firstIndex(of: String(parts[2])), let year = Int(parts[3])
        else { return nil }
        let clock = parts[4].split(separator: ":")
        guard clock.count == 3, let hour = Int(clock[0]), let minute = Int(clock[1]), let second = Int(clock[2]),
              (1...31).contains(day), (1970...9999).contains(year), (0...23).contains(hour), (0...59).contains(minute),
              (0...60).contains(second) else { return nil }
        var t = tm()
        t.tm_year = Int32(year - 1900)
        t.tm_mon = Int32(month)
        t.tm_mday = Int32(day)
        t.tm_hour = Int32(hour)
        t.tm_min = Int32(minute)
        t.tm_sec = Int32(second)
        let when = timegm(&t)
        guard when != -1 else { return nil }
        return Swift.max(0, Double(when) - wallNow)
    }

    private static func trimmed(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var s = s
        while let f = s.first, f == 32 || f == 9 { s.removeFirst() }
        while let l = s.last, l == 32 || l == 9 { s.removeLast() }
        return s
    }

    /// Sleeps `seconds` (monotonic, resumed after a signal).
    static func sleep(_ seconds: Double) {
        guard seconds > 0 else { return }
        let until = ManagerClock.monotonicNow() + seconds
        while true {
            let left = until - ManagerClock.monotonicNow()
            guard left > 0 else { return }
            var request = timespec(tv_sec: Int(left), tv_nsec: Int((left - left.rounded(.down)) * 1e9))
            _ = nanosleep(&request, nil)
        }
    }
}
