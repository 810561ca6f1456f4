import KPLM

/// The short, stable hash the sinks append to a name that their mapping
/// would otherwise merge with another key's (SPEC §10 "No silent merges").
enum StableHash {
    /// 64-bit FNV-1a of `text`'s UTF-8 bytes: the same in every process,
    /// unlike `Hasher`.
    static func fnv1a(_ text: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return h
    }

    /// Eight lower-case hex digits of `text`'s hash (its two halves XORed),
    /// with `salt` (when not 0) mixed in for a further attempt.
    static func hex8(_ text: String, salt: Int = 0) -> String {
        let h = fnv1a(salt == 0 ? text : text + "\u{0}" + String(salt))
        let folded = UInt32(truncatingIfNeeded: h ^ (h >> 32))
        let digits = String(folded, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// An unambiguous text of a name and dimensions (each part preceded by
    /// its length in bytes), for identity and hashing.
    static func identity(_ name: String, _ dimensions: [MetricDimension], namespace: String = "") -> String {
        var out = ""
        for part in [namespace, name] + dimensions.flatMap({ [$0.name, $0.value] }) {
            out += String(part.utf8.count) + ":" + part
        }
        return out
    }
}
