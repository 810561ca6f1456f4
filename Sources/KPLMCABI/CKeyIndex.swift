import CKPLM
import KPLM
import Glibc
import Synchronization

/// The four C string arguments of a put by names, measured once: a length
/// per argument (an absent or empty dimension has length 0) and a hash of
/// their bytes. No String is built.
struct CPutArguments {
    var pointers: (UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?)
    var lengths: (Int32, Int32, Int32, Int32)
    var hash: UInt64

    /// Measures and hashes the arguments, or returns nil when the slow path
    /// must decide (a NULL or empty name, an over-long argument): that path
    /// validates everything and reports the error.
    @inline(__always)
    init?(_ name: UnsafePointer<CChar>?, _ stream: UnsafePointer<CChar>?, _ shardId: UnsafePointer<CChar>?,
          _ errorCode: UnsafePointer<CChar>?) {
        guard let name else { return nil }
        // strnlen: bounded like the validation (an unterminated string costs
        // at most limit + 1 bytes), and vectorised by the C library.
        // The header's limits (the core's, see CABILayerTests), as constants.
        let n0 = strnlen(name, Int(KPLM_NAME_MAX) + 1)
        guard n0 != 0 && n0 <= Int(KPLM_NAME_MAX) else { return nil }
        let limit = Int(KPLM_DIMENSION_VALUE_MAX)
        let n1 = stream.map { strnlen($0, limit + 1) } ?? 0
        let n2 = shardId.map { strnlen($0, limit + 1) } ?? 0
        let n3 = errorCode.map { strnlen($0, limit + 1) } ?? 0
        guard n1 <= limit && n2 <= limit && n3 <= limit else { return nil }
        pointers = (name, stream, shardId, errorCode)
        lengths = (Int32(n0), Int32(n1), Int32(n2), Int32(n3))
        // One independent chain per argument (they overlap in the CPU), each
        // seeded differently, combined and avalanched at the end.
        let h0 = Self.mix(0x243F_6A88_85A3_08D3 ^ UInt64(n0), name, n0)
        let h1 = n1 == 0 ? 0 : Self.mix(0x1319_8A2E_0370_7344 ^ UInt64(n1), stream!, n1)
        let h2 = n2 == 0 ? 0 : Self.mix(0xA409_3822_299F_31D0 ^ UInt64(n2), shardId!, n2)
        let h3 = n3 == 0 ? 0 : Self.mix(0x082E_FA98_EC4E_6C89 ^ UInt64(n3), errorCode!, n3)
        var h = h0 ^ (h1 << 17 | h1 >> 47) ^ (h2 << 31 | h2 >> 33) ^ (h3 << 47 | h3 >> 17)
        h ^= h >> 32
        h = h &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 29
        h = h &* 0x94D0_49BB_1331_11EB
        hash = h ^ (h >> 32)
    }

    /// Folds `count` bytes at `p` into `h`, eight at a time. Every load
    /// stays within the string (its length is known): the last partial word
    /// is read as an overlapping word, or from 4-byte and single-byte loads
    /// for strings under 8 bytes.
    @inline(__always)
    private static func mix(_ hash: UInt64, _ p: UnsafePointer<CChar>, _ count: Int) -> UInt64 {
        let raw = UnsafeRawPointer(p)
        var h = hash
        var i = 0
        while i + 8 <= count {
            h = fold(h, raw.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i += 8
        }
        if i == count { return h }
        return fold(h, tail(raw, count))
    }

    /// The last (up to) 8 bytes of a `count`-byte string, as one word.
    @inline(__always)
    static func tail(_ raw: UnsafeRawPointer, _ count: Int) -> UInt64 {
        if count >= 8 { return raw.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self) }
        if count >= 4 {
            return UInt64(raw.loadUnaligned(as: UInt32.self)) << 32
                | UInt64(raw.loadUnaligned(fromByteOffset: count - 4, as: UInt32.self))
        }
        return UInt64(raw.load(as: UInt8.self)) << 16
            | UInt64(raw.load(fromByteOffset: count >> 1, as: UInt8.self)) << 8
            | UInt64(raw.load(fromByteOffset: count - 1, as: UInt8.self))
    }

    /// One step: xor then multiply (3 cycles); the final avalanche brings
    /// the high bits down.
    @inline(__always)
    private static func fold(_ h: UInt64, _ word: UInt64) -> UInt64 {
        (h ^ word) &* 0x9E37_79B9_7F4A_7C15
    }
}

/// Lock-free lookup from the raw bytes of a put's arguments to the
/// ``Metric`` they resolved to, so a put by names on a known key costs a
/// hash and a comparison: no String, no allocation, no lock.
///
/// Entries are keyed by the arguments as given (before level trimming: at
/// SUMMARY several argument tuples lead to one metric), are added only after
/// the slow path validated the arguments and resolved the metric, and are
/// immutable once published. The table is open-addressed; a full table is
/// replaced by a twice larger copy, and superseded tables are kept until the
/// index is released, so a reader still probing an old one stays safe.
final class CKeyIndex: @unchecked Sendable {
    /// Entry layout (raw memory): hash (8), metric (8, unretained: the
    /// registry keeps it alive), four Int32 lengths (16), then the bytes of
    /// the four arguments, back to back.
    private static let headerBytes = 32

    /// The current table: capacity (Int), then `capacity` entry pointers.
    private let table = Atomic<UInt>(0)

    private struct Owned {
        var tables: [UnsafeMutableRawPointer] = []
        var entries: [UnsafeMutableRawPointer] = []
    }
    /// Everything allocated, freed with the index. Also serialises inserts.
    private let owned = Locked(Owned())
    /// Most entries held; beyond it puts by names keep working on the slow path.
    let maxEntries: Int

    init(maxEntries: Int) {
        self.maxEntries = maxEntries
    }

    deinit {
        owned.withLock { o in
            for t in o.tables { t.deallocate() }
            for e in o.entries { e.deallocate() }
        }
    }

    /// The metric these arguments resolved to before, if any (unretained:
    /// the manager's registry keeps it alive).
    @inline(__always)
    func find(_ a: CPutArguments) -> Unmanaged<Metric>? {
        let bits = table.load(ordering: .acquiring)
        guard bits != 0 else { return nil }
        let t = UnsafeMutableRawPointer(bitPattern: bits)!
        let mask = t.load(as: Int.self) &- 1
        let slots = (t + 8).assumingMemoryBound(to: Atomic<UInt>.self)
        var i = Int(truncatingIfNeeded: a.hash) & mask
        while true {
            // Acquire: an entry is published by a release store after it was
            // filled in.
            let e = slots[i].load(ordering: .acquiring)
            if e == 0 { return nil }
            let entry = UnsafeRawPointer(bitPattern: e)!
            if entry.load(as: UInt64.self) == a.hash && Self.matches(entry, a) {
                return Unmanaged<Metric>.fromOpaque(entry.load(fromByteOffset: 8, as: UnsafeRawPointer.self))
            }
            i = (i &+ 1) & mask
        }
    }

    /// Remembers that `a` (validated) resolves to `metric`.
    func insert(_ a: CPutArguments, _ metric: Metric) {
        owned.withLock { o in
            guard o.entries.count < maxEntries, find(a) == nil else { return }
            let current = table.load(ordering: .relaxed)
            var t = current == 0 ? nil : UnsafeMutableRawPointer(bitPattern: current)
            let capacity = t?.load(as: Int.self) ?? 0
            if (o.entries.count + 1) * 2 > capacity {
                let grown = Self.makeTable(capacity: Swift.max(64, capacity * 2), entries: o.entries)
                o.tables.append(grown)
                table.store(UInt(bitPattern: grown), ordering: .releasing)
                t = grown
            }
            let entry = Self.makeEntry(a, metric)
            o.entries.append(entry)
            Self.place(entry, in: t!)
        }
    }

    // MARK: Helpers

    @inline(__always)
    private static func matches(_ entry: UnsafeRawPointer, _ a: CPutArguments) -> Bool {
        let lengths = entry.load(fromByteOffset: 16, as: (Int32, Int32, Int32, Int32).self)
        guard lengths == a.lengths else { return false }
        var bytes = entry + headerBytes
        if !same(bytes, a.pointers.0, a.lengths.0) { return false }
        bytes += Int(a.lengths.0)
        if !same(bytes, a.pointers.1, a.lengths.1) { return false }
        bytes += Int(a.lengths.1)
        if !same(bytes, a.pointers.2, a.lengths.2) { return false }
        bytes += Int(a.lengths.2)
        return same(bytes, a.pointers.3, a.lengths.3)
    }

    /// Whether `count` bytes at `stored` and `p` are equal: inline word
    /// compares (within bounds, as in ``CPutArguments``), memcmp past 32.
    @inline(__always)
    private static func same(_ stored: UnsafeRawPointer, _ p: UnsafePointer<CChar>?, _ count: Int32) -> Bool {
        let n = Int(count)
        if n == 0 { return true }
        let q = UnsafeRawPointer(p!)
        if n > 32 { return memcmp(stored, q, n) == 0 }
        var i = 0
        while i + 8 <= n {
            if stored.loadUnaligned(fromByteOffset: i, as: UInt64.self) != q.loadUnaligned(fromByteOffset: i, as: UInt64.self) {
                return false
            }
            i += 8
        }
        return i == n || CPutArguments.tail(stored, n) == CPutArguments.tail(q, n)
    }

    private static func makeEntry(_ a: CPutArguments, _ metric: Metric) -> UnsafeMutableRawPointer {
        let total = Int(a.lengths.0) + Int(a.lengths.1) + Int(a.lengths.2) + Int(a.lengths.3)
        let entry = UnsafeMutableRawPointer.allocate(byteCount: headerBytes + total, alignment: 8)
        entry.storeBytes(of: a.hash, as: UInt64.self)
        entry.storeBytes(of: Unmanaged.passUnretained(metric).toOpaque(), toByteOffset: 8, as: UnsafeMutableRawPointer.self)
        entry.storeBytes(of: a.lengths, toByteOffset: 16, as: (Int32, Int32, Int32, Int32).self)
        var bytes = entry + headerBytes
        for (p, n) in [(a.pointers.0, a.lengths.0), (a.pointers.1, a.lengths.1),
                       (a.pointers.2, a.lengths.2), (a.pointers.3, a.lengths.3)] where n != 0 {
            bytes.copyMemory(from: p!, byteCount: Int(n))
            bytes += Int(n)
        }
        return entry
    }

    private static func makeTable(capacity: Int, entries: [UnsafeMutableRawPointer]) -> UnsafeMutableRawPointer {
        let t = UnsafeMutableRawPointer.allocate(byteCount: 8 + capacity * 8, alignment: 8)
        t.storeBytes(of: capacity, as: Int.self)
        let slots = (t + 8).bindMemory(to: Atomic<UInt>.self, capacity: capacity)
        for i in 0..<capacity { (slots + i).initialize(to: Atomic(0)) }
        for e in entries { place(e, in: t) }
        return t
    }

    private static func place(_ entry: UnsafeMutableRawPointer, in t: UnsafeMutableRawPointer) {
        let mask = t.load(as: Int.self) - 1
        let slots = (t + 8).assumingMemoryBound(to: Atomic<UInt>.self)
        var i = Int(truncatingIfNeeded: entry.load(as: UInt64.self)) & mask
        while slots[i].load(ordering: .relaxed) != 0 { i = (i + 1) & mask }
        slots[i].store(UInt(bitPattern: entry), ordering: .releasing)
    }
}
