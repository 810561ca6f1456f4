// fuzz_prometheus.swift: a libFuzzer target for the request-head parser of
// the Prometheus sink's HTTP server (PrometheusRequest.classify, in
// Sources/KPLMSinks/Prometheus/PrometheusRequest.swift). The parser is internal
// to the library, so this file is compiled into one module together with
// PrometheusRequest.swift and Trimming.swift (scripts/fuzz.sh, and the CMake
// replayer kplm_fuzz_prometheus_replay with Tests/fuzz/replay_main.c); it is
// never part of libkplm.so.
//
// Input: byte 0 picks a small head limit (1 + byte * 16, so 1..4081 bytes)
// used besides the real one (16 KiB); byte 1 seeds how the rest is cut into
// reads; the rest is what a client sends. For each limit the parser is
// called as the server calls it: on the bytes received so far, after every
// read (never holding more than the limit, resuming the search with
// searchFrom), until the answer is not `incomplete`. Checked: that answer
// equals the answer for all the bytes at once (whatever the reads), a head
// of `limit` bytes or more is never incomplete, a request has a method
// without blanks and a target that is "*" or a path without a query, the
// Accept value has no line end, and parsing is deterministic.
// A violated check prints "fuzz_prometheus: invariant ..." and aborts.
import Glibc

private func fail(_ what: String, _ bytes: [UInt8]) -> Never {
    let shown = bytes.prefix(200).map { b in
        (0x20..<0x7F).contains(b) ? String(UnicodeScalar(b)) : "\\x" + String(b, radix: 16)
    }.joined()
    let message = Array("fuzz_prometheus: invariant violated: \(what)\n  input (\(bytes.count) bytes): \(shown)\n".utf8)
    _ = message.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    abort()
}

/// The answer of the server's read loop for `bytes` under `limit`, the
/// reads' sizes taken from `seed`.
private func incremental(_ bytes: [UInt8], limit: Int, seed: UInt8) -> PrometheusRequest.Parse {
    var received: [UInt8] = []
    var state = UInt32(seed) &* 2_654_435_761 | 1
    var offset = 0
    while offset < bytes.count {
        state ^= state << 13; state ^= state >> 17; state ^= state << 5
        // Reads of 1..64 bytes, or larger, never beyond the limit.
        let want = state % 4 == 0 ? Int(state >> 8) % 4096 + 1 : Int(state >> 8) % 64 + 1
        let n = min(want, bytes.count - offset, limit - received.count)
        let classified = received.count
        received += bytes[offset..<offset + n]
        offset += n
        let parse = PrometheusRequest.classify(received, limit: limit, searchFrom: classified)
        if parse != .incomplete {
            if parse != PrometheusRequest.classify(received, limit: limit) {
                fail("the answer depends on searchFrom (limit \(limit))", bytes)
            }
            return parse
        }
        if received.count >= limit { fail("\(received.count) bytes of a \(limit)-byte limit are incomplete", bytes) }
    }
    return .incomplete
}

private func check(_ bytes: [UInt8], limit: Int, seed: UInt8) {
    let whole = PrometheusRequest.classify(bytes, limit: limit)
    if whole == .incomplete && (bytes.count >= limit || PrometheusRequest.headEnd(bytes) != nil) {
        fail("incomplete with \(bytes.count) bytes (limit \(limit))", bytes)
    }
    if incremental(bytes, limit: limit, seed: seed) != whole {
        fail("read by read, the answer differs from the whole input's (limit \(limit))", bytes)
    }
    if case .complete(let request) = whole {
        if request.method.isEmpty || request.method.contains(" ") { fail("method \(request.method)", bytes) }
        if !(request.path == "*" || request.path.hasPrefix("/")) || request.path.contains("?") {
            fail("path \(request.path)", bytes)
        }
        if request.accept.contains("\n") || request.accept.contains("\r") { fail("accept has a line end", bytes) }
        if PrometheusRequest.classify(bytes, limit: limit) != whole { fail("not deterministic", bytes) }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPrometheusRequest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size >= 2 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 2, count: size - 2))
    check(bytes, limit: 1 + Int(data[0]) * 16, seed: data[1])
    check(bytes, limit: PrometheusRequest.maxHeadBytes, seed: data[1])
    return 0
}
