import KPLM
import Glibc

/// The socket and deadline layer of the network sinks: name resolution, a
/// TCP connect and writes bounded by a deadline (monotonic seconds), UDP
/// datagrams (``EMFSink``, ``OTLPSink``; ``PrometheusSink`` and
/// ``CloudWatchSink`` use its deadlines and host check). Every failure is a
/// `sinkFailed` ``MetricsError`` naming the errno, prefixed with the label
/// of the sink using the transport ("EMF: ...", "OTLP: ...").
struct SocketTransport: Sendable {
    /// The prefix of this transport's error messages (the sink's name).
    let label: String

    /// `ms` milliseconds from now, in monotonic seconds.
    static func deadline(afterMs ms: Double) -> Double { ManagerClock.monotonicNow() + ms / 1000 }

    /// Milliseconds left before `deadline`, rounded up, for poll; 0 when past.
    static func remainingMs(_ deadline: Double) -> Int32 {
        let left = (deadline - ManagerClock.monotonicNow()) * 1000
        guard left > 0 else { return 0 }
        return Int32(min(left.rounded(.up), Double(Int32.max)))
    }

    func failure(_ what: String, errno code: Int32 = errno) -> MetricsError {
        MetricsError(.sinkFailed, "\(label): \(what): \(String(cString: strerror(code)))")
    }

    func timedOut(_ what: String) -> MetricsError {
        MetricsError(.sinkFailed, "\(label): \(what): timed out")
    }

    // MARK: - Names

    /// A numeric IPv4 or IPv6 address, or a host name of dot-separated
    /// labels of letters, digits, "-" and "_" (1–63 each, 253 at most in all).
    static func isValidHost(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 { return true }
        let bytes = Array(host.utf8)
        guard (1...253).contains(bytes.count) else { return false }
        var name = bytes[...]
        if name.last == UInt8(ascii: ".") { name = name.dropLast() }
        let labels = name.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return labels.allSatisfy { label in
            (1...63).contains(label.count) && label.first != UInt8(ascii: "-") && label.last != UInt8(ascii: "-")
                && label.allSatisfy { b in
                    (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7A)
                        || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
                }
        }
    }

    /// Every address of `host`:`port` (a name may block on DNS).
    func resolveAll(host: String, port: UInt16, datagram: Bool) throws(MetricsError) -> [SocketAddress] {
        do {
            return try SocketAddress.resolveAll(host: host, port: port, datagram: datagram)
        } catch {
            throw MetricsError(.sinkFailed, "\(label): cannot resolve \(host): \(error.reason)")
        }
    }

    /// The first address of `host`:`port`.
    func resolve(host: String, port: UInt16, datagram: Bool) throws(MetricsError) -> SocketAddress {
        try resolveAll(host: host, port: port, datagram: datagram)[0]
    }

    // MARK: - TCP

    /// A connected non-blocking TCP socket, trying each address of `host`
    /// until `deadline`.
    func connect(host: String, port: UInt16, deadline: Double) throws(MetricsError) -> Int32 {
        var lastError = MetricsError(.sinkFailed, "\(label): cannot connect to \(host):\(port)")
        for address in try resolveAll(host: host, port: port, datagram: false) {
            let fd = socket(address.family, address.socketType | Int32(SOCK_CLOEXEC.rawValue)
                            | Int32(SOCK_NONBLOCK.rawValue), address.proto)
            guard fd >= 0 else {
                lastError = failure("cannot create a TCP socket")
                continue
            }
            do throws(MetricsError) {
                try connect(fd, address, deadline: deadline, peer: "\(host):\(port)")
                return fd
            } catch {
                Glibc.close(fd)
                lastError = error
                if Self.remainingMs(deadline) == 0 { break }
            }
        }
        throw lastError
    }

    private func connect(_ fd: Int32, _ address: SocketAddress, deadline: Double,
                         peer: String) throws(MetricsError) {
        let rc = address.withSockaddr { Glibc.connect(fd, $0, $1) }
        if rc == 0 { return }
        guard errno == EINPROGRESS || errno == EINTR else { throw failure("cannot connect to \(peer)") }
        try wait(fd, for: Int16(POLLOUT), until: deadline, what: "connecting to \(peer)")
        var code: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &size) == 0 else {
            throw failure("cannot connect to \(peer)")
        }
        guard code == 0 else { throw failure("cannot connect to \(peer)", errno: code) }
    }

    /// Whether the peer of a connected stream closed it or reset it. The
    /// agent never sends anything, so any readability means that.
    static func peerClosed(_ fd: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 0) > 0 else { return false }
        if p.revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 { return true }
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
    }

    // MARK: - Writes

    /// Waits until `fd` is ready for `events`, or throws at `deadline`.
    private func wait(_ fd: Int32, for events: Int16, until deadline: Double,
                             what: String) throws(MetricsError) {
        while true {
            let left = Self.remainingMs(deadline)
            guard left > 0 else { throw timedOut(what) }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&p, 1, left)
            if rc > 0 { return }
            if rc < 0 && errno != EINTR { throw failure(what) }
        }
    }

    /// Writes every byte (send with MSG_NOSIGNAL on a socket), waiting for
    /// a full buffer to drain until `deadline`.
    func writeAll(_ fd: Int32, _ bytes: [UInt8], deadline: Double, isSocket: Bool) throws(MetricsError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                let p = raw.baseAddress! + offset
                let count = raw.count - offset
                return isSocket ? send(fd, p, count, Int32(MSG_NOSIGNAL)) : write(fd, p, count)
            }
            if n > 0 {
                offset += n
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                try wait(fd, for: Int16(POLLOUT), until: deadline, what: "writing")
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                throw failure("write failed")
            }
        }
    }

    /// Sends one datagram to `target`. An ICMP "port unreachable" reported
    /// for an earlier datagram is ignored: UDP delivery is best effort.
    func sendDatagram(_ fd: Int32, _ bytes: [UInt8], to target: SocketAddress,
                             deadline: Double) throws(MetricsError) {
        while true {
            let n = bytes.withUnsafeBytes { raw in
                target.withSockaddr {
                    sendto(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT), $0, $1)
                }
            }
            if n >= 0 { return }
            switch errno {
            case EINTR, ECONNREFUSED: continue
            case EAGAIN, EWOULDBLOCK: try wait(fd, for: Int16(POLLOUT), until: deadline, what: "sending a datagram")
            default: throw failure("sending a datagram of \(bytes.count) bytes failed")
            }
        }
    }
}
