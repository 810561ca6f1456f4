import Glibc

/// A socket address resolved by getaddrinfo, with what socket(2) needs to
/// use it. Shared by the sinks that open sockets (DogStatsD, EMF, Prometheus).
struct SocketAddress: @unchecked Sendable {
    var storage = sockaddr_storage()
    var length: socklen_t = 0
    var family: Int32 = 0
    var socketType: Int32 = 0
    var proto: Int32 = 0

    /// Why a host did not resolve: gai_strerror's text, or "no address".
    struct ResolutionFailure: Error {
        let reason: String
    }

    /// Every address of `host`:`port` (a numeric port) for a datagram or a
    /// stream socket, in getaddrinfo's order; `passive` for an address to
    /// bind. A name may block on DNS. Throws when there is none.
    static func resolveAll(host: String, port: UInt16, datagram: Bool,
                           passive: Bool = false) throws(ResolutionFailure) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32((datagram ? SOCK_DGRAM : SOCK_STREAM).rawValue)
        hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw ResolutionFailure(reason: rc == 0 ? "no address" : String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(first) }
        var out: [SocketAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            let ai = info.pointee
            if let addr = ai.ai_addr, Int(ai.ai_addrlen) <= MemoryLayout<sockaddr_storage>.size {
                var a = SocketAddress()
                withUnsafeMutableBytes(of: &a.storage) { raw in
                    raw.copyMemory(from: UnsafeRawBufferPointer(start: addr, count: Int(ai.ai_addrlen)))
                }
                a.length = ai.ai_addrlen
                a.family = ai.ai_family
                a.socketType = ai.ai_socktype
                a.proto = ai.ai_protocol
                out.append(a)
            }
            cursor = ai.ai_next
        }
        guard !out.isEmpty else { throw ResolutionFailure(reason: "no address") }
        return out
    }

    /// Calls `body` with the address as a `sockaddr` and its length.
    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var storage = self.storage
        let length = self.length
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}
