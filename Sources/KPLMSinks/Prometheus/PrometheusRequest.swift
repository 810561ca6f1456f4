/// An HTTP request to ``PrometheusServer``, and the parser of request heads:
/// a pure function of the bytes a connection has sent so far, with no I/O
/// and no state, so that it can be fuzzed on its own
/// (Tests/fuzz/fuzz_prometheus.swift compiles this file, Trimming.swift and
/// the fuzz entry into one executable). Values; safe from any thread.
struct PrometheusRequest: Equatable {
    /// The method of the request line ("GET", "HEAD", anything else).
    var method: String
    /// The target of the request line without its query ("/metrics", "*").
    var path: String
    /// The values of every Accept header, trimmed, joined by ",".
    var accept: String

    /// What the bytes received so far amount to.
    enum Parse: Equatable {
        /// No blank line yet, within the limit: wait for more.
        case incomplete
        /// A whole head, well formed: answer it.
        case complete(PrometheusRequest)
        /// A whole head that is not a request: 400.
        case malformed
        /// No blank line within the limit: 431 (the rest is not read).
        case tooLarge
    }

    /// Longest request head accepted, in bytes (the blank line included).
    static let maxHeadBytes = 16 * 1024

    /// Classifies `bytes`, everything a connection has sent so far.
    ///
    /// A head ends at the first blank line ("\n\n" or "\n\r\n"); one that
    /// ends past `limit` bytes, or `limit` bytes with no end yet, is
    /// `tooLarge`, so a caller never needs to hold more than `limit` bytes.
    /// `searchFrom` lets a caller that appends to `bytes` resume the search
    /// for the blank line: any index up to the number of bytes already
    /// classified as `incomplete` (earlier bytes are searched again from 2
    /// before it). The result does not depend on it.
    static func classify(_ bytes: [UInt8], limit: Int = maxHeadBytes, searchFrom: Int = 0) -> Parse {
        guard let end = headEnd(bytes, from: searchFrom) else {
            return bytes.count >= limit ? .tooLarge : .incomplete
        }
        guard end <= limit else { return .tooLarge }
        return parse(bytes[..<end]).map { .complete($0) } ?? .malformed
    }

    /// Index just past the first blank line ("\n\n" or "\n\r\n"), searching
    /// from 2 bytes before `start` (so a line end split between two reads
    /// is found); nil if there is none.
    static func headEnd(_ bytes: [UInt8], from start: Int = 0) -> Int? {
        var i = Swift.max(0, Swift.min(start, bytes.count) - 2)
        while i < bytes.count {
            if bytes[i] == 0x0A {
                if i + 1 < bytes.count && bytes[i + 1] == 0x0A { return i + 2 }
                if i + 2 < bytes.count && bytes[i + 1] == 0x0D && bytes[i + 2] == 0x0A { return i + 3 }
            }
            i += 1
        }
        return nil
    }

    /// The request line and Accept headers of a whole head; nil if
    /// malformed (not "METHOD TARGET HTTP/1.x", a target that is neither
    /// "*" nor a path, a header line without a colon, a CR that does not
    /// end a line: RFC 9112 §2.2).
    static func parse(_ head: ArraySlice<UInt8>) -> PrometheusRequest? {
        // Bytes, not Characters: "\r\n" is a single Character in Swift.
        var lines: [String] = []
        for raw in head.split(separator: 0x0A, omittingEmptySubsequences: false) {
            let line = raw.last == 0x0D ? raw.dropLast() : raw
            guard !line.contains(0x0D) else { return nil }
            lines.append(String(decoding: line, as: UTF8.self))
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
        return PrometheusRequest(method: String(parts[0]), path: String(path),
                                 accept: accept.map { $0.trimmingBlanks() }.joined(separator: ","))
    }
}
