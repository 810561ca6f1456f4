import CKPLM
import Glibc

/// The arguments of a put by free-form dimensions (kplm_put_dims), measured
/// once for the key index: the name's length, two lengths per pair (name,
/// value; an absent or empty value has length 0) in a buffer the caller
/// provides (no allocation), and a hash of the bytes in the order given.
/// The same pairs in another order are another entry of the same metric.
struct CDimensionArguments: IndexedArguments {
    let name: UnsafePointer<CChar>
    let nameLength: Int32
    let dimensions: UnsafePointer<kplm_dimension>?
    let count: Int
    /// 2 × count lengths: the name then the value of each pair.
    let lengths: UnsafeMutablePointer<Int32>
    let hash: UInt64

    /// Most pairs; more go to the slow path, which refuses them.
    static let maxPairs = Int(KPLM_DIMENSIONS_MAX)

    /// Measures and hashes the arguments into `lengths` (room for
    /// 2 × ``maxPairs``), or returns nil when the slow path must decide:
    /// too many pairs, a NULL array with pairs, a NULL, empty or over-long
    /// name, an over-long value. That path validates everything (UTF-8 and
    /// repeated names too) and reports the error; an entry is only made for
    /// argument bytes it accepted.
    @inline(__always)
    init?(_ name: UnsafePointer<CChar>, _ dimensions: UnsafePointer<kplm_dimension>?, _ count: Int,
          lengths: UnsafeMutablePointer<Int32>) {
        guard count >= 0 && count <= Self.maxPairs, count == 0 || dimensions != nil else { return nil }
        let nameLimit = Int(KPLM_NAME_MAX), valueLimit = Int(KPLM_DIMENSION_VALUE_MAX)
        let n = strnlen(name, nameLimit + 1)
        guard n != 0 && n <= nameLimit else { return nil }
        var h = CPutArguments.mix(0x452_821E_638D_0137 ^ UInt64(n), name, n)
        for i in 0..<count {
            let pair = dimensions![i]
            guard let pairName = pair.name else { return nil }
            let nameBytes = strnlen(pairName, nameLimit + 1)
            guard nameBytes != 0 && nameBytes <= nameLimit else { return nil }
            let valueBytes = pair.value.map { strnlen($0, valueLimit + 1) } ?? 0
            guard valueBytes <= valueLimit else { return nil }
            lengths[2 * i] = Int32(nameBytes)
            lengths[2 * i + 1] = Int32(valueBytes)
            let hn = CPutArguments.mix(0xBE54_66CF_34E9_0C6C ^ UInt64(nameBytes), pairName, nameBytes)
            let hv = valueBytes == 0 ? 0 : CPutArguments.mix(0xC0AC_29B7_C97C_50DD ^ UInt64(valueBytes), pair.value!, valueBytes)
            // Rotating first makes the hash depend on the position of each pair.
            h = (h << 23 | h >> 41) ^ hn ^ (hv << 29 | hv >> 35)
        }
        self.name = name
        self.nameLength = Int32(n)
        self.dimensions = dimensions
        self.count = count
        self.lengths = lengths
        self.hash = CPutArguments.avalanche(h ^ UInt64(count))
    }

    // Body: a marker Int32 (-1 - count: negative, see IndexedArguments), the
    // name's length, the 2 × count lengths, then the bytes (name, then each
    // pair's name and value) back to back: at least 9 bytes (a name has
    // one).

    private var marker: Int32 { -1 - Int32(count) }
    private var lengthBytes: Int { 8 * count }

    var bodyBytes: Int {
        var total = 8 + lengthBytes + Int(nameLength)
        for i in 0..<(2 * count) { total += Int(lengths[i]) }
        return total
    }

    @inline(__always)
    func matches(body: UnsafeRawPointer) -> Bool {
        guard body.load(as: Int32.self) == marker, body.load(fromByteOffset: 4, as: Int32.self) == nameLength,
              count == 0 || memcmp(body + 8, lengths, lengthBytes) == 0 else { return false }
        var bytes = body + 8 + lengthBytes
        if !CKeyIndex.same(bytes, name, nameLength) { return false }
        bytes += Int(nameLength)
        for i in 0..<count {
            let pair = dimensions![i]
            if !CKeyIndex.same(bytes, pair.name, lengths[2 * i]) { return false }
            bytes += Int(lengths[2 * i])
            if !CKeyIndex.same(bytes, pair.value, lengths[2 * i + 1]) { return false }
            bytes += Int(lengths[2 * i + 1])
        }
        return true
    }

    func write(body: UnsafeMutableRawPointer) {
        body.storeBytes(of: marker, as: Int32.self)
        body.storeBytes(of: nameLength, toByteOffset: 4, as: Int32.self)
        if count > 0 { (body + 8).copyMemory(from: lengths, byteCount: lengthBytes) }
        var bytes = body + 8 + lengthBytes
        bytes.copyMemory(from: name, byteCount: Int(nameLength))
        bytes += Int(nameLength)
        for i in 0..<count {
            let pair = dimensions![i]
            for (p, n) in [(pair.name, lengths[2 * i]), (pair.value, lengths[2 * i + 1])] where n != 0 {
                bytes.copyMemory(from: p!, byteCount: Int(n))
                bytes += Int(n)
            }
        }
    }
}
