import CKPLMShims
import Glibc

/// A metric key's bytes, laid out once: the one copy of its key a series
/// keeps (issue #13: memory a key). The name and every dimension's name and
/// value are NUL-terminated strings, which the C ABI hands to C callers as
/// they are. The names of the three KPL dimensions are static strings, not
/// copied a key, and so are the KPL metric names (and kplm's own) in the
/// plain form (below; the indexed form holds the name in its line, where a
/// put by names compares it).
///
/// Before, a series kept its ``MetricKey`` (72 bytes in the object, and a
/// heap block for each string over 15 bytes, such as a shard id) and the C
/// ABI a second copy laid out as C strings (a block of its own): 144 bytes
/// a key more than this record for a KPL key with a shard id.
///
/// Two forms. The *indexed form*: a key whose dimensions are KPL's only
/// (stream, shard, error code), whose strings fit, and which is not of a
/// distribution metric, is one 64-byte line of the record pool
/// (`KPLMSHIM_POOL_KEY_RECORDS`), its *index line*, laid out as the C key
/// index lays out the entry of a put by names, which can then be this line
/// instead of a block of its own:
///
///      0  12 bytes for the index (zero until it makes the line an entry)
///     12  the lengths of the name, stream, shard and error code: a UInt16
///         each, the name's in the low bits, 0 for an absent one
///     20  the present ones, NUL-terminated, in that order
///
/// Every other key has the *plain form*, a heap block (8-byte aligned, no
/// object header: issue #13, 16 bytes a key):
///
///      0  name word       the name's address (static, or in the strings)
///                         in bits 0-55, the number of dimensions (at most
///                         ``MetricKey/maxDimensions``) in bits 56-62
///      8  distribution    the series' ``SeriesDistribution`` (retained),
///                         or 0: a plain metric
///     16  pairs           (name, value) pointers, one pair a dimension, in
///                         ``MetricKey/dimensions`` order: `kplm_dimension`'s
///                         layout, which C snapshots point to
///         strings         the copied ones, back to back
///
/// The indexed form has no pairs: a C snapshot of such a key gets them
/// written where its caller says (``dimensionPairs(scratch:)``: at most
/// ``indexedDimensionsMax`` pairs, 48 bytes, during an export instead of
/// in memory for as long as the key lives; issue #13: 64 bytes a key, the
/// line the pairs and a name word took). Nor does it hold a distribution
/// (the object has no room for the pointer; a distribution metric's keys
/// take the plain form).
///
/// A key's strings contain no NUL (every key a registry holds was
/// validated, see `Validation`), so a string's length is where its NUL is.
///
/// A value owning its memory, which ``deallocate()`` frees (its series
/// does, in its deinit): copies share it. Immutable once made, but for the
/// index line's first 12 bytes (the layer above writes those, and guards
/// them): safe to read from any thread.
package struct KeyRecord: @unchecked Sendable {
    /// The record's address, bit 0 set for the indexed form (both forms are
    /// 8-byte aligned).
    private let word: UInt

    private static var distributionWordOffset: Int { 8 }
    private static var pairsOffset: Int { 16 }
    private static var addressBits: UInt { (1 << 56) - 1 }
    private static var indexedBit: UInt { 1 }

    /// Bytes at the start of an index line left to the layer above.
    package static var indexLineHeadBytes: Int { 12 }
    /// Bytes of an index line.
    private static var indexLineBytes: Int { 64 }
    /// Offset of an index line's lengths, and of its strings.
    private static var lengthsOffset: Int { indexLineHeadBytes }
    private static var indexedStringsOffset: Int { indexLineHeadBytes + 8 }
    /// Most dimensions a key of the indexed form has (stream, shard, error
    /// code): the pairs ``dimensionPairs(scratch:)`` may write.
    package static var indexedDimensionsMax: Int { 3 }

    private init(base: UnsafeMutableRawPointer, indexed: Bool) {
        word = UInt(bitPattern: base) | (indexed ? Self.indexedBit : 0)
    }

    /// The record's memory: its index line, or its heap block.
    package var base: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: word & ~Self.indexedBit)! }

    /// `key` laid out (a plain metric's key).
    package static func make(_ key: MetricKey) -> KeyRecord { make(key, distribution: nil) }

    /// `key` laid out, holding `distribution` (a distribution metric's key).
    static func make(_ key: MetricKey, distribution: SeriesDistribution?) -> KeyRecord {
        if distribution == nil, let indexed = makeIndexed(key) { return indexed }
        let knownName = staticMetricName(key.name)
        var stringBytes = knownName == nil ? key.name.utf8.count + 1 : 0
        var count = 0
        for pair in key.dimensionPairs {
            if staticDimensionName(pair.name) == nil { stringBytes += pair.name.utf8.count + 1 }
            stringBytes += pair.value.utf8.count + 1
            count += 1
        }
        let pairWords = 2 * count
        // (Out of memory traps, as any Swift allocation does.)
        let base = UnsafeMutableRawPointer.allocate(byteCount: pairsOffset + 8 * pairWords + stringBytes,
                                                    alignment: 8)
        let pairs = (base + pairsOffset).bindMemory(to: UnsafePointer<CChar>.self, capacity: pairWords)
        var cursor = (base + pairsOffset + 8 * pairWords).bindMemory(to: CChar.self, capacity: stringBytes)
        let name = knownName ?? copy(key.name, &cursor)
        for (i, pair) in key.dimensionPairs.enumerated() {
            (pairs + 2 * i).initialize(to: staticDimensionName(pair.name) ?? copy(pair.name, &cursor))
            (pairs + 2 * i + 1).initialize(to: copy(pair.value, &cursor))
        }
        let address = UInt(bitPattern: name)
        precondition(address & ~addressBits == 0 && count <= MetricKey.maxDimensions && count < 128,
                     "a record's name word holds the name's address and the dimension count")
        base.storeBytes(of: address | UInt(count) << 56, as: UInt.self)
        base.storeBytes(of: distribution.map { UInt(bitPattern: Unmanaged.passRetained($0).toOpaque()) } ?? 0,
                        toByteOffset: distributionWordOffset, as: UInt.self)
        return KeyRecord(base: base, indexed: false)
    }

    /// `key` in the indexed form (see the layout above), or nil if it does
    /// not take it (or the pool is out of memory: the plain form then).
    private static func makeIndexed(_ key: MetricKey) -> KeyRecord? {
        guard key.otherDimensions.isEmpty else { return nil }
        // (MetricKey holds no empty value: an empty one is absent, as a
        // length of 0 says.)
        func length(_ value: String?) -> Int { value?.utf8.count ?? 0 }
        func stored(_ value: String?) -> Int { value.map { $0.utf8.count + 1 } ?? 0 }
        let nameLength = key.name.utf8.count
        let stringBytes = nameLength + 1 + stored(key.stream) + stored(key.shardId) + stored(key.errorCode)
        guard indexedStringsOffset + stringBytes <= indexLineBytes,
              let line = kplmshim_block_alloc(Int32(KPLMSHIM_POOL_KEY_RECORDS)) else { return nil }
        line.initializeMemory(as: UInt8.self, repeating: 0, count: indexLineHeadBytes)
        let lengths = UInt64(nameLength) | UInt64(length(key.stream)) << 16
            | UInt64(length(key.shardId)) << 32 | UInt64(length(key.errorCode)) << 48
        line.storeBytes(of: lengths, toByteOffset: lengthsOffset, as: UInt64.self)
        var cursor = (line + indexedStringsOffset).bindMemory(to: CChar.self, capacity: stringBytes)
        _ = copy(key.name, &cursor)
        if let stream = key.stream { _ = copy(stream, &cursor) }
        if let shardId = key.shardId { _ = copy(shardId, &cursor) }
        if let errorCode = key.errorCode { _ = copy(errorCode, &cursor) }
        return KeyRecord(base: line, indexed: true)
    }

    /// Frees the record (once, by its owner, when nothing reads it any more),
    /// and releases its distribution.
    package func deallocate() {
        if let line = indexLine {
            kplmshim_block_free(Int32(KPLMSHIM_POOL_KEY_RECORDS), line)
        } else {
            if let distribution = distributionReference { distribution.release() }
            base.deallocate()
        }
    }

    /// Copies `string` and its NUL to `cursor`, moving it past them.
    private static func copy(_ string: String, _ cursor: inout UnsafeMutablePointer<CChar>) -> UnsafePointer<CChar> {
        let start = cursor
        for byte in string.utf8 {
            assert(byte != 0, "a key's strings contain no NUL")
            cursor.initialize(to: CChar(bitPattern: byte))
            cursor += 1
        }
        cursor.initialize(to: 0)
        cursor += 1
        return UnsafePointer(start)
    }

    // MARK: - Reading

    /// Whether the record has the indexed form.
    @inline(__always)
    private var isIndexed: Bool { word & Self.indexedBit != 0 }

    /// The name word of the plain form (see the layout above).
    @inline(__always)
    private var nameWord: UInt { base.load(as: UInt.self) }

    /// The four lengths of the indexed form (see the layout above).
    @inline(__always)
    private var lengths: UInt64 { base.loadUnaligned(fromByteOffset: Self.lengthsOffset, as: UInt64.self) }

    /// The name, NUL-terminated.
    @inline(__always)
    package var name: UnsafePointer<CChar> {
        if isIndexed { return UnsafePointer((base + Self.indexedStringsOffset).assumingMemoryBound(to: CChar.self)) }
        return UnsafePointer(bitPattern: nameWord & Self.addressBits)!
    }

    /// The number of dimensions.
    @inline(__always)
    package var dimensionCount: Int {
        if isIndexed {
            let present = lengths >> 16
            return (present & 0xFFFF != 0 ? 1 : 0) + (present >> 16 & 0xFFFF != 0 ? 1 : 0) + (present >> 32 != 0 ? 1 : 0)
        }
        return Int(truncatingIfNeeded: nameWord >> 56 & 0x7F)
    }

    /// The index line (see the layout above), nil for a record of the plain
    /// form. Its first ``indexLineHeadBytes`` bytes are the layer above's
    /// to write (under its own guard); the rest is immutable.
    package var indexLine: UnsafeMutableRawPointer? { isIndexed ? base : nil }

    /// The distribution of a plain record that holds one, unretained.
    private var distributionReference: Unmanaged<SeriesDistribution>? {
        guard !isIndexed else { return nil }
        let bits = base.load(fromByteOffset: Self.distributionWordOffset, as: UInt.self)
        return bits == 0 ? nil : Unmanaged.fromOpaque(UnsafeRawPointer(bitPattern: bits)!)
    }

    /// The distribution the record holds (``make(_:distribution:)``), nil
    /// for a plain metric's key. Valid while the record is.
    var distribution: SeriesDistribution? { distributionReference?.takeUnretainedValue() }

    /// The dimensions' (name, value) pointer pairs (`kplm_dimension`'s
    /// layout), nil when there are none: the plain form's own, or, for the
    /// indexed form, written to `scratch` (room for
    /// ``indexedDimensionsMax`` pairs), which the caller keeps for as long
    /// as it hands the pairs out.
    @inline(__always)
    package func dimensionPairs(scratch: UnsafeMutableRawPointer) -> UnsafeRawPointer? {
        guard isIndexed else { return dimensionCount == 0 ? nil : UnsafeRawPointer(base + Self.pairsOffset) }
        let pairs = scratch.bindMemory(to: UnsafePointer<CChar>.self, capacity: 2 * Self.indexedDimensionsMax)
        var count = 0
        forEachIndexedDimension { i, name, value in
            pairs[2 * i] = name
            pairs[2 * i + 1] = value
            count += 1
        }
        return count == 0 ? nil : UnsafeRawPointer(scratch)
    }

    /// The name and value of dimension `i` (`0..<dimensionCount`).
    @inline(__always)
    private func dimension(_ i: Int) -> (name: UnsafePointer<CChar>, value: UnsafePointer<CChar>) {
        guard isIndexed else {
            let pairs = UnsafeRawPointer(base + Self.pairsOffset).assumingMemoryBound(to: UnsafePointer<CChar>.self)
            return (pairs[2 * i], pairs[2 * i + 1])
        }
        var found: (name: UnsafePointer<CChar>, value: UnsafePointer<CChar>)?
        forEachIndexedDimension { j, name, value in if j == i { found = (name, value) } }
        return found!
    }

    /// Calls `body` with the index and the name and value of each dimension
    /// of the indexed form: the present values follow the name in the order
    /// stream, shard, error code.
    @inline(__always)
    private func forEachIndexedDimension(_ body: (Int, UnsafePointer<CChar>, UnsafePointer<CChar>) -> Void) {
        let lengths = self.lengths
        var offset = Self.indexedStringsOffset + Int(truncatingIfNeeded: lengths & 0xFFFF) + 1
        var i = 0
        for part in 1...3 {
            let length = Int(truncatingIfNeeded: lengths >> UInt64(16 * part) & 0xFFFF)
            guard length != 0 else { continue }
            body(i, part == 1 ? Self.streamName : part == 2 ? Self.shardName : Self.errorCodeName,
                 UnsafePointer((base + offset).assumingMemoryBound(to: CChar.self)))
            offset += length + 1
            i += 1
        }
    }

    /// The key, as a ``MetricKey`` (its strings made at each call).
    package var key: MetricKey {
        var stream: String?, shardId: String?, errorCode: String?
        var others: [MetricDimension] = []
        for i in 0..<dimensionCount {
            let (name, value) = dimension(i)
            switch name {
            case Self.streamName: stream = Self.string(value)
            case Self.shardName: shardId = Self.string(value)
            case Self.errorCodeName: errorCode = Self.string(value)
            default:
                if others.isEmpty { others.reserveCapacity(dimensionCount - i) }
                others.append(MetricDimension(Self.string(name), Self.string(value)))
            }
        }
        return MetricKey(name: Self.string(self.name), stream: stream, shardId: shardId, errorCode: errorCode,
                         otherDimensions: others)
    }

    /// Whether the key's name has exactly the bytes of `name`.
    package func nameEquals(_ name: String) -> Bool { Self.equal(self.name, name) }

    /// Whether this is the record of `key`, byte for byte (as ``MetricKey``'s
    /// `==`; no string is made).
    package func matches(_ key: MetricKey) -> Bool {
        guard Self.equal(name, key.name) else { return false }
        var i = 0
        for pair in key.dimensionPairs {
            guard i < dimensionCount else { return false }
            let (name, value) = dimension(i)
            guard Self.equal(name, pair.name) && Self.equal(value, pair.value) else { return false }
            i += 1
        }
        return i == dimensionCount
    }

    /// Feeds `hasher` what ``MetricKey/hash(into:)`` feeds it for the key:
    /// a record and its key hash alike (the registry's table files records
    /// and looks keys up by the same hash).
    package func hash(into hasher: inout Hasher) {
        Self.hash(name, into: &hasher)
        // The three KPL dimensions come first, in this order (see
        // ``MetricKey/dimensions``); each is hashed as an optional.
        var i = 0
        func hashPart(_ known: UnsafePointer<CChar>) {
            if i < dimensionCount, dimension(i).name == known {
                hasher.combine(true)
                Self.hash(dimension(i).value, into: &hasher)
                i += 1
            } else {
                hasher.combine(false)
            }
        }
        hashPart(Self.streamName)
        hashPart(Self.shardName)
        hashPart(Self.errorCodeName)
        // The others as `[MetricDimension]` hashes: the count, then each pair.
        hasher.combine(dimensionCount - i)
        for j in i..<dimensionCount {
            let (name, value) = dimension(j)
            Self.hash(name, into: &hasher)
            Self.hash(value, into: &hasher)
        }
    }

    /// The hash the registry files the record of a key by: `key.hashValue`.
    package var keyHashValue: Int {
        var hasher = Hasher()
        hash(into: &hasher)
        return hasher.finalize()
    }

    // MARK: - Export order

    /// Whether the key of `a` sorts strictly before the key of `b`
    /// (``ExportOrder``: by name, then pair by pair, name bytes then value
    /// bytes; a prefix first).
    package static func precedes(_ a: KeyRecord, _ b: KeyRecord) -> Bool {
        let byName = compare(a.name, b.name)
        if byName != 0 { return byName < 0 }
        let common = Swift.min(a.dimensionCount, b.dimensionCount)
        for i in 0..<common {
            let p = a.dimension(i), q = b.dimension(i)
            let byDimensionName = compare(p.name, q.name)
            if byDimensionName != 0 { return byDimensionName < 0 }
            let byValue = compare(p.value, q.value)
            if byValue != 0 { return byValue < 0 }
        }
        return a.dimensionCount < b.dimensionCount
    }

    /// Calls `body` with the key's strings in export order: the name, then
    /// each dimension's name and value.
    @inline(__always)
    package func forEachString(_ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        body(Self.bytes(name))
        for i in 0..<dimensionCount {
            let (name, value) = dimension(i)
            body(Self.bytes(name))
            body(Self.bytes(value))
        }
    }

    // MARK: - Strings

    /// The bytes of a NUL-terminated string, without the NUL.
    @inline(__always)
    private static func bytes(_ s: UnsafePointer<CChar>) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: UnsafeRawPointer(s).assumingMemoryBound(to: UInt8.self), count: strlen(s))
    }

    /// The string (its bytes are a key's: valid UTF-8, kept as they are).
    private static func string(_ s: UnsafePointer<CChar>) -> String {
        String(decoding: bytes(s), as: UTF8.self)
    }

    /// Whether `s` has exactly the UTF-8 bytes of `string`.
    private static func equal(_ s: UnsafePointer<CChar>, _ string: String) -> Bool {
        var string = string
        let mine = bytes(s)
        return string.withUTF8 { theirs in
            theirs.count == mine.count && (mine.isEmpty || memcmp(mine.baseAddress!, theirs.baseAddress!, mine.count) == 0)
        }
    }

    /// Bytewise three-way comparison (``ExportOrder/compare(_:_:)``; one
    /// string, such as a static name, equals itself without a read).
    private static func compare(_ a: UnsafePointer<CChar>, _ b: UnsafePointer<CChar>) -> Int {
        a == b ? 0 : ExportOrder.compare(bytes(a), bytes(b))
    }

    /// As ``ByteIdentity/hash(_:into:)-(String,_)`` hashes the string.
    private static func hash(_ s: UnsafePointer<CChar>, into hasher: inout Hasher) {
        ByteIdentity.hash(utf8: bytes(s), into: &hasher)
    }

    // MARK: - Static strings

    // (Computed, each from one literal: one address each, and no lazy
    // global to initialise.)
    private static var streamName: UnsafePointer<CChar> { staticString("stream") }
    private static var shardName: UnsafePointer<CChar> { staticString("shard") }
    private static var errorCodeName: UnsafePointer<CChar> { staticString("error_code") }

    @inline(__always)
    private static func staticString(_ s: StaticString) -> UnsafePointer<CChar> {
        UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
    }

    /// The static copy of a KPL dimension name ("stream", "shard",
    /// "error_code"), nil for any other name.
    private static func staticDimensionName(_ name: String) -> UnsafePointer<CChar>? {
        switch name {
        case "stream": return staticCopy(streamName, of: name)
        case "shard": return staticCopy(shardName, of: name)
        case "error_code": return staticCopy(errorCodeName, of: name)
        default: return nil
        }
    }

    /// The static copy of a KPL metric name or of kplm's own (the
    /// KPLM_METRIC_* names of kplm.h), nil for any other name.
    private static func staticMetricName(_ name: String) -> UnsafePointer<CChar>? {
        let known: StaticString
        switch name {
        case "UserRecordsReceived": known = "UserRecordsReceived"
        case "UserRecordsPending": known = "UserRecordsPending"
        case "UserRecordsPut": known = "UserRecordsPut"
        case "UserRecordsDataPut": known = "UserRecordsDataPut"
        case "KinesisRecordsPut": known = "KinesisRecordsPut"
        case "KinesisRecordsDataPut": known = "KinesisRecordsDataPut"
        case "ErrorsByCode": known = "ErrorsByCode"
        case "AllErrors": known = "AllErrors"
        case "RetriesPerRecord": known = "RetriesPerRecord"
        case "UserRecordExpired": known = "UserRecordExpired"
        case "BufferingTime": known = "BufferingTime"
        case "RequestTime": known = "RequestTime"
        case "UserRecordsPerKinesisRecord": known = "UserRecordsPerKinesisRecord"
        case "KinesisRecordsPerPutRecordsRequest": known = "KinesisRecordsPerPutRecordsRequest"
        case "UserRecordsPerPutRecordsRequest": known = "UserRecordsPerPutRecordsRequest"
        case "KplmMetricsRefused": known = "KplmMetricsRefused"
        case "KplmSinkDropped": known = "KplmSinkDropped"
        default: return nil
        }
        return staticCopy(staticString(known), of: name)
    }

    /// `known` if `name` has exactly its bytes, else nil. The switches above
    /// match by Swift's `==`, which takes "\u{212A}inesisRecordsPut" (a
    /// Kelvin sign) for "KinesisRecordsPut": another key (see
    /// ``MetricKey``), which must keep its own bytes.
    private static func staticCopy(_ known: UnsafePointer<CChar>, of name: String) -> UnsafePointer<CChar>? {
        equal(known, name) ? known : nil
    }
}
