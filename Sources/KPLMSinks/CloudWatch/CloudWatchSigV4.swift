import KPLM
import CKPLMCloudWatch
import Glibc

/// AWS Signature Version 4 (header-based), as the CloudWatch sink signs its
/// PutMetricData calls. SHA-256 and HMAC-SHA256 come from OpenSSL's
/// libcrypto (through the private CKPLMCloudWatch shim); nothing
/// cryptographic is implemented here, only the canonical forms.
enum SigV4 {
    /// What signing produced, every intermediate step included (the test
    /// vectors of the aws-sig-v4-test-suite check each).
    struct Signature: Equatable {
        var canonicalRequest: String
        var stringToSign: String
        var signedHeaders: String
        var signature: String
        var authorization: String
    }

    static let algorithm = "AWS4-HMAC-SHA256"

    /// Lowercase hex of `bytes`.
    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// SHA-256 of `data` (libcrypto).
    static func sha256(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let rc = data.withUnsafeBytes { d in
            out.withUnsafeMutableBufferPointer { kplmshim_cw_sha256(d.baseAddress, d.count, $0.baseAddress) }
        }
        precondition(rc == 0, "libcrypto SHA256 failed")
        return out
    }

    /// HMAC-SHA256 of `data` under `key` (libcrypto).
    static func hmac(_ key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let rc = key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                out.withUnsafeMutableBufferPointer {
                    kplmshim_cw_hmac_sha256(k.baseAddress, k.count, d.baseAddress, d.count, $0.baseAddress)
                }
            }
        }
        precondition(rc == 0, "libcrypto HMAC failed")
        return out
    }

    /// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters
    /// (A-Z a-z 0-9 - . _ ~) kept, every other byte as %XX (uppercase);
    /// "/" kept too when `keepSlash`.
    static func uriEncode(_ s: String, keepSlash: Bool = false) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for b in s.utf8 {
            let unreserved = (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
                || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "~")
            if unreserved || (keepSlash && b == UInt8(ascii: "/")) {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(digits[Int(b >> 4)])
                out.append(digits[Int(b & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The canonical query string of a raw query ("b=2&a=1"): each
    /// parameter's name and value encoded, then sorted by name, then value.
    static func canonicalQuery(_ query: String) -> String {
        guard !query.isEmpty else { return "" }
        let pairs = query.split(separator: "&", omittingEmptySubsequences: true).map { part -> (String, String) in
            if let eq = part.firstIndex(of: "=") {
                return (uriEncode(String(part[..<eq])), uriEncode(String(part[part.index(after: eq)...])))
            }
            return (uriEncode(String(part)), "")
        }
        return pairs.sorted { a, b in
            a.0 != b.0 ? Array(a.0.utf8).lexicographicallyPrecedes(Array(b.0.utf8))
                : Array(a.1.utf8).lexicographicallyPrecedes(Array(b.1.utf8))
        }.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// A header value trimmed, its runs of blanks collapsed to one space.
    static func canonicalValue(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
    }

    /// The canonical headers block (each "name:value\n") and the signed
    /// headers list of `headers`: names lowercased, sorted, repeated names'
    /// values joined with ",".
    static func canonicalHeaders(_ headers: [(name: String, value: String)]) -> (block: String, signed: String) {
        var merged: [String: [String]] = [:]
        for h in headers { merged[h.name.lowercased(), default: []].append(canonicalValue(h.value)) }
        let names = merged.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let block = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        return (block, names.joined(separator: ";"))
    }

    /// Signs a request. `headers` are every header to sign (Host and
    /// X-Amz-Date included); `amzDate` is "YYYYMMDDTHHMMSSZ".
    static func sign(method: String, path: String, query: String = "", headers: [(name: String, value: String)],
                     payload: [UInt8], accessKeyId: String, secretAccessKey: String, region: String,
                     service: String, amzDate: String) -> Signature {
        let canonical = canonicalHeaders(headers)
        let canonicalRequest = [
            method,
            uriEncode(path.isEmpty ? "/" : path, keepSlash: true),
            canonicalQuery(query),
            canonical.block,
            canonical.signed,
            hex(sha256(payload)),
        ].joined(separator: "\n")
        let date = String(amzDate.prefix(8))
        let scope = "\(date)/\(region)/\(service)/aws4_request"
        let stringToSign = [algorithm, amzDate, scope, hex(sha256(Array(canonicalRequest.utf8)))]
            .joined(separator: "\n")
        var key = hmac(Array("AWS4\(secretAccessKey)".utf8), Array(date.utf8))
        key = hmac(key, Array(region.utf8))
        key = hmac(key, Array(service.utf8))
        key = hmac(key, Array("aws4_request".utf8))
        let signature = hex(hmac(key, Array(stringToSign.utf8)))
        let authorization = "\(algorithm) Credential=\(accessKeyId)/\(scope), SignedHeaders=\(canonical.signed), "
            + "Signature=\(signature)"
        return Signature(canonicalRequest: canonicalRequest, stringToSign: stringToSign,
                         signedHeaders: canonical.signed, signature: signature, authorization: authorization)
    }

    /// "YYYYMMDDTHHMMSSZ" (UTC) of Unix time `t`.
    static func amzDate(_ t: Double) -> String {
        var seconds = time_t(t.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }
}
