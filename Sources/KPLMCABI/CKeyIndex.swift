import CKPLM
import CKPLMShims
import KPLM
import Glibc
import Synchronization

/// The arguments of a put by names as the key index stores and finds them:
/// a hash, and an entry body (after the entry's 12-byte head: metric, hash)
/// that holds their lengths and bytes. Two kinds (``CPutArguments``,
/// ``CDimensionArguments``) share one index: a body starts with a UInt16
/// that is a name's length (1...255) for the first, and with a negative
/// Int32 for the second (its first two bytes, little-endian, read 0xFFE1 or
/// more as a UInt16), so an entry of one kind never matches arguments of
/// the other.
protocol IndexedArguments {
    /// The hash of the arguments' bytes (well mixed: its low bits pick the slot).
    var hash: UInt64 { get }
    /// Size of the entry body, at least 9 bytes (a match reads the first 8).
    var bodyBytes: Int { get }
    /// Whether the body at `body` holds exactly these arguments.
    func matches(body: UnsafeRawPointer) -> Bool
    /// Writes the body (``bodyBytes`` bytes) at `body`.
    func write(body: UnsafeMutableRawPointer)
}

/// The four C string arguments of a put by names, measured once: a length
/// per argument (an absent or empty dimension has length 0) and a hash of
/// their bytes. No String is built.
struct CPutArguments: IndexedArguments {
    var pointers: (UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?)
    var lengths: (Int32, Int32, Int32, Int32)
    var hash: UInt64
    /// The four lengths as the body's first eight bytes hold them: a UInt16
    /// each (a length is at most 1,024), the name's in the low bits.
    var packedLengths: UInt64

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
        packedLengths = UInt64(n0) | UInt64(n1) << 16 | UInt64(n2) << 32 | UInt64(n3) << 48
        // One independent chain per argument (they overlap in the CPU), each
        // seeded differently, combined and avalanched at the end.
        let h0 = Self.mix(0x243F_6A88_85A3_08D3 ^ UInt64(n0), name, n0)
        let h1 = n1 == 0 ? 0 : Self.mix(0x1319_8A2E_0370_7344 ^ UInt64(n1), stream!, n1)
        let h2 = n2 == 0 ? 0 : Self.mix(0xA409_3822_299F_31D0 ^ UInt64(n2), shardId!, n2)
        let h3 = n3 == 0 ? 0 : Self.mix(0x082E_FA98_EC4E_6C89 ^ UInt64(n3), errorCode!, n3)
        hash = Self.avalanche(h0 ^ (h1 << 17 | h1 >> 47) ^ (h2 << 31 | h2 >> 33) ^ (h3 << 47 | h3 >> 17))
    }

    /// Folds `count` bytes at `p` into `h`, eight at a time. Every load
    /// stays within the string (its length is known): the last partial word
    /// is read as an overlapping word, or from 4-byte and single-byte loads
    /// for strings under 8 bytes.
    @inline(__always)
    static func mix(_ hash: UInt64, _ p: UnsafePointer<CChar>, _ count: Int) -> UInt64 {
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

    /// The final avalanche of a combined hash (its high bits brought down).
    @inline(__always)
    static func avalanche(_ combined: UInt64) -> UInt64 {
        var h = combined
        h ^= h >> 32
        h = h &* 0xBF58_476D_1CE4_E5B9
        h ^= h >> 29
        h = h &* 0x94D0_49BB_1331_11EB
        return h ^ (h >> 32)
    }

    // Body: the four lengths (``packedLengths``), then the present
    // arguments, each NUL-terminated: the layout of a key record's index
    // line (``KeyRecord``), which can be this entry. (The key of the scale
    // benchmark, 40 bytes, makes a 63-byte entry: one line.)

    var bodyBytes: Int {
        8 + Self.stored(lengths.0) + Self.stored(lengths.1) + Self.stored(lengths.2) + Self.stored(lengths.3)
    }

    /// Bytes an argument of `length` takes in a body: none when absent.
    @inline(__always)
    private static func stored(_ length: Int32) -> Int { length == 0 ? 0 : Int(length) + 1 }

    @inline(__always)
    func matches(body: UnsafeRawPointer) -> Bool {
        guard body.loadUnaligned(as: UInt64.self) == packedLengths else { return false }
        // Each present argument is compared with its NUL (an argument's
        // own terminator is there to read: its length came from strnlen).
        var bytes = body + 8
        if !CKeyIndex.same(bytes, pointers.0, Int32(Self.stored(lengths.0))) { return false }
        bytes += Self.stored(lengths.0)
        if !CKeyIndex.same(bytes, pointers.1, Int32(Self.stored(lengths.1))) { return false }
        bytes += Self.stored(lengths.1)
        if !CKeyIndex.same(bytes, pointers.2, Int32(Self.stored(lengths.2))) { return false }
        bytes += Self.stored(lengths.2)
        return CKeyIndex.same(bytes, pointers.3, Int32(Self.stored(lengths.3)))
    }

    func write(body: UnsafeMutableRawPointer) {
        body.storeBytes(of: packedLengths, as: UInt64.self)
        var bytes = body + 8
        for (p, n) in [(pointers.0, lengths.0), (pointers.1, lengths.1),
                       (pointers.2, lengths.2), (pointers.3, lengths.3)] where n != 0 {
            bytes.copyMemory(from: p!, byteCount: Self.stored(n))
            bytes += Self.stored(n)
        }
    }
}

/// Lock-free lookup from the raw bytes of a put's arguments to the
/// ``Metric`` they resolved to, so a put by names on a known key costs a
/// hash and a comparison: no String, no allocation, no lock.
///
/// Entries are keyed by the arguments as given (before level trimming: at
/// SUMMARY several argument tuples lead to one metric), are added only after
/// the slow path validated the arguments and resolved the metric, and are
/// immutable once published. The table is open-addressed (linear probing).
/// When a flush removes idle keys (``remove(_:)``), their entries become
/// tombstones; a table too full (of entries or tombstones) is replaced by a
/// rebuilt copy. Lookups run in read sections (``KeyIndexReaders``): an
/// unlinked entry, a superseded table and the metric an entry pointed to
/// are kept until every section that may see them has ended, then freed.
final class CKeyIndex: @unchecked Sendable {
    /// Entry layout (raw memory, 16-byte aligned):
    ///
    ///      0  the metric's header line (see ``MetricHeader``; the metric is
    ///         unretained: kept alive by the registry while the entry is
    ///         linked, then by this index's limbo), with ``mallocated`` or
    ///         ``inRecord`` in its low bits (a line is 64-byte aligned)
    ///      8  the hash's low 32 bits (they pick the slot, and hold the tag)
    ///     12  the arguments' body (``IndexedArguments``)
    ///
    /// Where an entry is (issue #13: a put by names at 100,000 keys misses
    /// on its entry, which must be one line; and 64 bytes a key):
    /// - The index line of its metric's key record (``KeyRecord``), when
    ///   that line holds these arguments (a put by names with the key's own
    ///   name and KPL dimensions, in a line: the common case). The line is
    ///   the record's, freed with it: this index writes its head only.
    /// - Otherwise, for at most 64 bytes (the arguments' bytes and NULs up
    ///   to 44 bytes in all), a block of the entry pool
    ///   (`KPLMSHIM_POOL_INDEX_ENTRIES`): one line, 64-byte aligned, beside
    ///   the other entries (a heap block of 72 bytes or more spanned two
    ///   lines, and cost 80 bytes with the allocator's header).
    /// - A longer one comes from the C allocator.
    ///
    /// Issue #13: a put by names reads the slot, the entry and this
    /// thread's cell (the header line's dense cell, whose tag holds what
    /// the put needs besides: ``MetricHeader/tryPutThroughCell(_:writerPlus1:)``;
    /// the slot's line hint starts its loading early), not the header line.
    private static let headBytes = KeyRecord.indexLineHeadBytes
    /// Bytes of a pool block.
    private static let pooledBytes = 64
    /// Bit 0 of an entry's first word: the entry comes from the C allocator,
    /// not the pool.
    private static let mallocated: UInt = 1
    /// Bit 1 of an entry's first word: the entry is its key record's index
    /// line, not this index's to free. A slot's line hint carries it in its
    /// bit 0 (see ``place(_:in:)``), for the deinit, which must not read an
    /// entry whose record may be gone.
    private static let inRecord: UInt = 2
    /// The low bits of an entry's first word that are not the line's.
    private static let entryFlags: UInt = mallocated | inRecord
    /// Bit 0 of a slot's line hint: its entry is in a key record.
    private static let lineHintInRecord: UInt = 1
    /// A slot whose entry was removed: probing goes on past it.
    private static let tombstone: UInt = 1
    /// A slot holds its entry's address (16-byte aligned) with a tag in the
    /// low four bits: bits 28-31 of the entry's hash, which do not pick the
    /// slot while a table has fewer than 2^28 slots (past that, a tag only
    /// filters less). A lookup reads an entry only when its tag matches, so
    /// probing past another key's slot costs no memory access (issue #13:
    /// with 100,000 keys, each entry read is a cache miss).
    private static let tagMask: UInt = 15

    /// The current table: capacity (Int) and a word of padding, then
    /// `capacity` slots of two words (16 bytes, 16-byte aligned: a slot never
    /// straddles two lines): the entry word (0 = empty, ``tombstone``, or an
    /// entry's address with its tag: see ``tagMask``), then the line hint
    /// (see ``place(_:in:)``).
    private let table = Atomic<UInt>(0)
    /// Bytes before the first slot.
    private static let tableHeadBytes = 16

    /// Slot `i`'s entry word, in table `t` (its line hint is the next word).
    @inline(__always)
    private static func slot(_ i: Int, in t: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt>> {
        (t + tableHeadBytes).assumingMemoryBound(to: Atomic<UInt>.self) + 2 &* i
    }

    /// What was unlinked and waits for the readers that may see it.
    private struct Limbo {
        var entries: [UnsafeMutableRawPointer] = []
        var tables: [UnsafeMutableRawPointer] = []
        var metrics: [Metric] = []
        var isEmpty: Bool { entries.isEmpty && tables.isEmpty && metrics.isEmpty }
    }

    private struct Owned {
        /// The linked entries of metrics with several (argument tuples
        /// that differ but map to one key, such as a dimension the level
        /// drops). A metric's entries are found from its series'
        /// `keyIndexWord`: 0 for none, the entry's address for one,
        /// ``severalEntries`` for those listed here.
        var several: [ObjectIdentifier: [UnsafeMutableRawPointer]] = [:]
        var linked = 0
        var tombstones = 0
        var limbo = Limbo()
    }
    /// A series' `keyIndexWord` for a metric whose entries are in ``Owned/several``.
    private static let severalEntries: UInt64 = 1
    /// Everything allocated, freed with the index. Also serialises writers.
    private let owned = Locked(Owned())
    /// Most entries linked at once; beyond it puts by names keep working on
    /// the slow path.
    let maxEntries: Int
    init(maxEntries: Int) {
        self.maxEntries = maxEntries
    }

    deinit {
        owned.withLock { o in
            if let t = UnsafeMutableRawPointer(bitPattern: table.load(ordering: .acquiring)) {
                // Every linked entry is in the current table.
                for e in Self.linkedEntries(of: t, madeHere: true) { Self.freeEntry(e) }
                t.deallocate()
            }
            Self.free(o.limbo)
        }
    }

    /// What ``put(_:_:)`` did.
    enum IndexedPut {
        /// The arguments are not in the index (or this thread cannot use it).
        case missing
        /// Found, and recorded by the put's common case.
        case recorded
        /// Found; the put must take the general path (held strongly: the
        /// read section has ended).
        case general(Metric)
    }

    /// Looks `a` up and, if found, tries the common case of a put of
    /// `value` on its metric, inside one read section.
    @inline(__always)
    func put<Arguments: IndexedArguments>(_ a: Arguments, _ value: Double) -> IndexedPut {
        let writer = Int(kplmshim_writer_raw())
        guard writer > 0 && KeyIndexReaders.isAvailable else { return .missing }
        let section = KeyIndexReaders.enter(writer)
        guard let entry = find(a, writerPlus1: writer) else {
            KeyIndexReaders.leave(section)
            return .missing
        }
        let header = Self.header(entry)
        if header.tryPutThroughCell(value, writerPlus1: writer) {
            KeyIndexReaders.leave(section)
            return .recorded
        }
        // Retained before the section ends (then the index may let it go).
        let held = header.metric.retain()
        KeyIndexReaders.leave(section)
        return .general(held.takeRetainedValue())
    }

    /// The entry of these arguments, if any. Call inside a read section
    /// (the result is borrowed, valid until it ends).
    @inline(__always)
    private func find<Arguments: IndexedArguments>(_ a: Arguments, writerPlus1: Int) -> UnsafeRawPointer? {
        let bits = table.load(ordering: .acquiring)
        guard bits != 0 else { return nil }
        let t = UnsafeMutableRawPointer(bitPattern: bits)!
        let mask = t.load(as: Int.self) &- 1
        var i = Self.firstSlot(Self.storedHash(a), mask)
        let tag = Self.tag(a.hash)
        while true {
            // Acquire: an entry is published by a release store after it was
            // filled in (and after its slot's line hint).
            let slot = Self.slot(i, in: t)
            let e = slot.pointee.load(ordering: .acquiring)
            if e == 0 { return nil }
            if e & Self.tagMask == tag && e != Self.tombstone {
                // Start loading this thread's cell of the entry's metric
                // before the entry arrives (see place(_:in:)): at many keys
                // the entry's miss and the cell's overlap.
                kplmshim_prefetch_dense_cell(UnsafeRawPointer(bitPattern: slot[1].load(ordering: .relaxed)),
                                             Int32(truncatingIfNeeded: writerPlus1))
                let entry = UnsafeRawPointer(bitPattern: e & ~Self.tagMask)!
                if Self.isEntry(entry, of: a) { return entry }
            }
            i = (i &+ 1) & mask
        }
    }

    /// Remembers that `a` (validated) resolves to `metric`, unless the
    /// metric's key was removed meanwhile (a removal sets that before it
    /// unlinks under this index's lock, so an entry is never left behind).
    /// A table it replaces is freed before it returns, once no lookup can
    /// read it (unless this thread's own section is open: then at a later
    /// reclaim).
    func insert<Arguments: IndexedArguments>(_ a: Arguments, _ metric: Metric) {
        let replacedTable = owned.withLock { o -> Bool in
            guard o.linked < maxEntries, !metric.series.isRemoved else { return false }
            var t = UnsafeMutableRawPointer(bitPattern: table.load(ordering: .relaxed))
            if let current = t, Self.lookUp(a, in: current) { return false }
            var replaced = false
            let capacity = t?.load(as: Int.self) ?? 0
            if (o.linked + o.tombstones + 1) * 5 > capacity * 4 {
                // Past 80% full: grow to at most half full (2 MB at 100,000
                // keys; a probe past another key's slot reads no entry, see
                // tagMask), or rebuild at the same size to clear the
                // tombstones if the entries fill at most half.
                var grown = Swift.max(64, capacity)
                while (o.linked + 1) * 2 > grown { grown *= 2 }
                let rebuilt = Self.makeTable(capacity: grown, entries: t.map { Self.linkedEntries(of: $0) } ?? [])
                table.store(UInt(bitPattern: rebuilt), ordering: .releasing)
                if let old = t {
                    o.limbo.tables.append(old)
                    replaced = true
                }
                o.tombstones = 0
                t = rebuilt
            }
            let entry = Self.entry(a, metric)
            let series = metric.series
            switch series.keyIndexWord {
            case 0:
                series.keyIndexWord = UInt64(UInt(bitPattern: entry))
            case Self.severalEntries:
                o.several[ObjectIdentifier(metric), default: []].append(entry)
            case let one:
                o.several[ObjectIdentifier(metric)] = [UnsafeMutableRawPointer(bitPattern: UInt(one))!, entry]
                series.keyIndexWord = Self.severalEntries
            }
            o.linked += 1
            if Self.place(entry, in: t!) { o.tombstones -= 1 }
            return replaced
        }
        // (Before, superseded tables waited for the next removal of a key:
        // the halves, quarters… of the table, 20 bytes a key at 100,000.)
        if replacedTable { reclaim() }
    }

    /// Unlinks the entries of `removed` (metrics a flush removed as idle)
    /// and frees what no read section can see any more. The metrics with
    /// entries are kept alive until then.
    func remove(_ removed: [Metric]) {
        owned.withLock { o in
            guard let bits = UnsafeMutableRawPointer(bitPattern: table.load(ordering: .relaxed)) else { return }
            for metric in removed {
                let series = metric.series
                let list: [UnsafeMutableRawPointer]
                switch series.keyIndexWord {
                case 0: continue
                case Self.severalEntries: list = o.several.removeValue(forKey: ObjectIdentifier(metric)) ?? []
                case let one: list = [UnsafeMutableRawPointer(bitPattern: UInt(one))!]
                }
                series.keyIndexWord = 0
                for entry in list { Self.unlink(entry, from: bits) }
                o.linked -= list.count
                o.tombstones += list.count
                o.limbo.entries += list
                o.limbo.metrics.append(metric)
            }
        }
        reclaim()
    }

    /// Frees what was unlinked, once no read section can see it. Kept for a
    /// later call when this thread's own section is open.
    func reclaim() {
        let limbo = owned.withLock { o -> Limbo in
            defer { o.limbo = Limbo() }
            return o.limbo
        }
        guard !limbo.isEmpty else { return }
        if KeyIndexReaders.waitForReaders() {
            Self.free(limbo)   // the metrics are released with `limbo`
        } else {
            owned.withLock { o in
                o.limbo.entries += limbo.entries
                o.limbo.tables += limbo.tables
                o.limbo.metrics += limbo.metrics
            }
        }
    }

    /// Number of linked entries (for tests).
    var count: Int { owned.withLock { $0.linked } }

    /// Number of tables allocated: the current one and those waiting for
    /// their readers (for tests).
    var tablesHeld: Int {
        owned.withLock { o in (table.load(ordering: .relaxed) == 0 ? 0 : 1) + o.limbo.tables.count }
    }

    // MARK: Helpers

    /// Whether `count` bytes at `stored` and `p` are equal: inline word
    /// compares (within bounds, as in ``CPutArguments``), memcmp past 32.
    @inline(__always)
    static func same(_ stored: UnsafeRawPointer, _ p: UnsafePointer<CChar>?, _ count: Int32) -> Bool {
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

    /// The entry of `a` for `metric`, to link (see the entry layout): its
    /// key record's index line if that holds `a`, else a block made.
    private static func entry<Arguments: IndexedArguments>(_ a: Arguments, _ metric: Metric)
        -> UnsafeMutableRawPointer {
        // (16-byte aligned either way: the low four bits of its address
        // hold its tag.)
        var line = UInt(bitPattern: metric.header.address)
        let entry: UnsafeMutableRawPointer
        if let indexLine = metric.series.record.indexLine, a.matches(body: indexLine + headBytes) {
            // (Not linked now: the caller looked `a` up. Written under this
            // index's lock, read by lookups after the slot's release.)
            line |= inRecord
            // A line linked before (its key removed, then re-created with
            // this series while a handle held it) already holds this head,
            // and is not written again: a lookup that found it before the
            // removal, or the freeing of what the removal unlinked, may be
            // reading it now (the same metric, the same arguments: the same
            // head).
            if indexLine.load(as: UInt.self) == line && storedHash(indexLine) == storedHash(a) { return indexLine }
            entry = indexLine
        } else {
            let bytes = headBytes + a.bodyBytes
            if bytes <= pooledBytes, let block = kplmshim_block_alloc(Int32(KPLMSHIM_POOL_INDEX_ENTRIES)) {
                entry = block
            } else {
                entry = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 16)
                line |= mallocated
            }
            a.write(body: entry + headBytes)
        }
        entry.storeBytes(of: line, as: UInt.self)
        entry.storeBytes(of: storedHash(a), toByteOffset: 8, as: UInt32.self)
        return entry
    }

    /// Gives an entry back to the pool or the C allocator it came from
    /// (an index line stays: its record frees it).
    private static func freeEntry(_ entry: UnsafeMutableRawPointer) {
        let word = entry.load(as: UInt.self)
        if word & inRecord != 0 { return }
        if word & mallocated != 0 {
            entry.deallocate()
        } else {
            kplmshim_block_free(Int32(KPLMSHIM_POOL_INDEX_ENTRIES), entry)
        }
    }

    /// The hash an entry keeps (its low 32 bits).
    @inline(__always)
    private static func storedHash(_ entry: UnsafeRawPointer) -> UInt32 {
        entry.load(fromByteOffset: 8, as: UInt32.self)
    }

    /// The part of `a`'s hash an entry of it keeps.
    @inline(__always)
    private static func storedHash<Arguments: IndexedArguments>(_ a: Arguments) -> UInt32 {
        UInt32(truncatingIfNeeded: a.hash)
    }

    /// The slot a probe sequence starts at, for a stored hash (the same
    /// 32 bits for a lookup and for the entry it finds, whatever the
    /// table's size).
    @inline(__always)
    private static func firstSlot(_ hash: UInt32, _ mask: Int) -> Int { Int(hash) & mask }

    /// Whether `entry` is the entry of `a` (its stored hash first, then the body).
    @inline(__always)
    private static func isEntry<Arguments: IndexedArguments>(_ entry: UnsafeRawPointer, of a: Arguments) -> Bool {
        storedHash(entry) == storedHash(a) && a.matches(body: entry + headBytes)
    }

    /// The entries linked in table `t` (for a rebuild); with `madeHere`,
    /// only those this index made (for the deinit: an index line is not
    /// read, told apart by its slot's line hint, since its record may be
    /// gone by then).
    private static func linkedEntries(of t: UnsafeMutableRawPointer, madeHere: Bool = false)
        -> [UnsafeMutableRawPointer] {
        let capacity = t.load(as: Int.self)
        return (0..<capacity).compactMap { i in
            let e = slot(i, in: t).pointee.load(ordering: .relaxed)
            guard e != tombstone else { return nil }
            if madeHere && slot(i, in: t)[1].load(ordering: .relaxed) & lineHintInRecord != 0 { return nil }
            return UnsafeMutableRawPointer(bitPattern: e & ~tagMask)
        }
    }

    private static func makeTable(capacity: Int, entries: some Sequence<UnsafeMutableRawPointer>)
        -> UnsafeMutableRawPointer {
        let t = UnsafeMutableRawPointer.allocate(byteCount: tableHeadBytes + capacity * 16, alignment: 16)
        t.storeBytes(of: capacity, as: Int.self)
        let words = (t + tableHeadBytes).bindMemory(to: Atomic<UInt>.self, capacity: 2 * capacity)
        for i in 0..<(2 * capacity) { (words + i).initialize(to: Atomic(0)) }
        for e in entries { _ = place(e, in: t) }
        return t
    }

    /// Links `entry` at the first free slot of its probe sequence; returns
    /// whether that slot held a tombstone. A reader probing past the slot
    /// meanwhile sees either the tombstone or the entry: both let it go on.
    ///
    /// The slot's second word, its line hint, is the header line of the
    /// entry's metric, stored before the entry word's release store: a
    /// lookup that matches the slot's tag starts loading its thread's dense
    /// cell of that line (`kplmshim_prefetch_dense_cell`) before it reads
    /// the entry (issue #13: a put by names read the slot, then the entry,
    /// then the cell, three misses in a row at 100,000 keys). It is a hint
    /// only: the put uses the cell address the entry gives. It may be the line
    /// of an entry unlinked since, which read sections keep alive like the
    /// entry, or of the entry placed there since: a live line either way,
    /// whose chunk the prefetch reads a word of.
    ///
    /// The hint's bit 0 says the entry is in a key record (``inRecord``);
    /// a line's cell does not depend on it (`kplmshim_dense_cell_in`
    /// divides the line's offset by 64).
    @discardableResult
    private static func place(_ entry: UnsafeMutableRawPointer, in t: UnsafeMutableRawPointer) -> Bool {
        let mask = t.load(as: Int.self) - 1
        var i = firstSlot(storedHash(entry), mask)
        while true {
            let slot = slot(i, in: t)
            let e = slot.pointee.load(ordering: .relaxed)
            if e == 0 || e == tombstone {
                let word = entry.load(as: UInt.self)
                let hint = word & ~entryFlags | (word & inRecord == 0 ? 0 : lineHintInRecord)
                slot[1].store(hint, ordering: .relaxed)
                slot.pointee.store(slotBits(entry), ordering: .releasing)
                return e == tombstone
            }
            i = (i + 1) & mask
        }
    }

    /// Replaces `entry`'s slot in `t` with a tombstone.
    private static func unlink(_ entry: UnsafeMutableRawPointer, from t: UnsafeMutableRawPointer) {
        let mask = t.load(as: Int.self) - 1
        var i = firstSlot(storedHash(entry), mask)
        let bits = slotBits(entry)
        while true {
            let e = slot(i, in: t).pointee.load(ordering: .relaxed)
            if e == bits {
                // (The line hint stays: a lookup reading it now still sees
                // a live line, see place(_:in:).)
                slot(i, in: t).pointee.store(tombstone, ordering: .releasing)
                return
            }
            if e == 0 { return }   // not linked here (cannot happen)
            i = (i + 1) & mask
        }
    }

    /// Whether `a` has an entry in `t` (for insert, under the lock).
    private static func lookUp<Arguments: IndexedArguments>(_ a: Arguments, in t: UnsafeMutableRawPointer) -> Bool {
        let mask = t.load(as: Int.self) - 1
        var i = firstSlot(storedHash(a), mask)
        let tag = tag(a.hash)
        while true {
            let e = slot(i, in: t).pointee.load(ordering: .relaxed)
            if e == 0 { return false }
            if e & tagMask == tag && e != tombstone {
                let entry = UnsafeRawPointer(bitPattern: e & ~tagMask)!
                if Self.isEntry(entry, of: a) { return true }
            }
            i = (i + 1) & mask
        }
    }

    /// The header line of an entry's metric.
    @inline(__always)
    private static func header(_ entry: UnsafeRawPointer) -> MetricHeader {
        MetricHeader(address: UnsafeRawPointer(bitPattern: entry.load(as: UInt.self) & ~entryFlags)!)
    }

    /// The tag of a hash: bits 28-31 (the low ones pick the slot; an entry
    /// keeps the low 32).
    @inline(__always)
    private static func tag(_ hash: UInt64) -> UInt { UInt(truncatingIfNeeded: hash >> 28) & tagMask }

    /// What a slot holding `entry` holds: its address and its tag.
    private static func slotBits(_ entry: UnsafeMutableRawPointer) -> UInt {
        UInt(bitPattern: entry) | tag(UInt64(storedHash(entry)))
    }

    private static func free(_ limbo: Limbo) {
        for e in limbo.entries { freeEntry(e) }
        for t in limbo.tables { t.deallocate() }
    }
}
