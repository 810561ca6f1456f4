/// The registry's live metrics by key: an open-addressing hash table
/// (linear probing, backward-shift deletion) of borrowed metric references
/// (issue #13: memory a key).
///
/// A `[MetricKey: Metric]` dictionary stores a copy of every key (72
/// bytes) in each of its buckets, and keeps a quarter to five eighths of
/// its buckets empty: about 210 bytes a key at 100,000 keys. Here a slot
/// is one word: the metric's address, unretained (the registry's lists of
/// live series hold every metric this table holds), with three bits of its
/// key's hash in the address's low bits (a metric is at least 8-byte
/// aligned): 10 to 20 bytes a key (at most four fifths full). A lookup
/// reads a metric's key (its ``KeyRecord``, compared with the key looked up
/// byte for byte) only when those bits match. The hashes of the keys moved
/// by a removal or a growth are computed again from the records, which hash
/// as their keys do (off the put path: the registry's lookups are a key's
/// creation and the slow paths).
///
/// Not thread-safe: the registry holds it under its lock.
struct MetricTable {
    /// Low bits of a slot: the tag (see ``tag(_:)``). A slot is 0 when empty.
    private static let tagMask: UInt = 7

    /// A power of two in length (or empty before the first insertion).
    private var slots: [UInt] = []
    /// Number of metrics held.
    private(set) var count = 0

    /// The metric of `key`, if held.
    subscript(key: MetricKey) -> Metric? {
        slot(hash: key.hashValue) { $0.series.record.matches(key) }.map { Self.metric(slots[$0]) }
    }

    /// Whether `series` is the metric held for its key (found from its
    /// record's hash, compared by identity: no key is made).
    func holds(_ series: MetricSeries) -> Bool {
        slot(hash: series.record.keyHashValue) { $0 === series } != nil
    }

    /// Adds `metric`, whose key must not be held already. The caller keeps
    /// `metric` alive while this table holds it.
    mutating func insert(_ metric: Metric) {
        // At most four fifths full, as the C key index: a probe past another
        // key's slot reads no record unless the tags match (one in eight),
        // and no put reads this table. (Three quarters put 100,000 keys in
        // 262,144 slots, 21 bytes a key; four fifths in 131,072: 10.5.)
        if (count + 1) * 5 > slots.count * 4 { grow() }
        place(metric, hash: metric.series.record.keyHashValue)
        count += 1
    }

    /// Removes the metric of `key` and returns it, if held.
    @discardableResult
    mutating func remove(_ key: MetricKey) -> Metric? {
        guard let i = slot(hash: key.hashValue, where: { $0.series.record.matches(key) }) else { return nil }
        let removed = Self.metric(slots[i])
        empty(i)
        return removed
    }

    /// Removes `series` if it is the metric held for its key (see
    /// ``holds(_:)``); returns whether it was.
    mutating func remove(_ series: MetricSeries) -> Bool {
        guard let i = slot(hash: series.record.keyHashValue, where: { $0 === series }) else { return false }
        empty(i)
        return true
    }

    /// The slot on `hash`'s probe sequence whose metric `matches`, if any
    /// (only those whose tag is the hash's are read).
    private func slot(hash: Int, where matches: (Metric) -> Bool) -> Int? {
        guard count > 0 else { return nil }
        let tag = Self.tag(hash)
        let mask = slots.count - 1
        var i = hash & mask
        while slots[i] != 0 {
            if slots[i] & Self.tagMask == tag && matches(Self.metric(slots[i])) { return i }
            i = (i + 1) & mask
        }
        return nil
    }

    /// Empties slot `hole` (held), keeping every other metric reachable.
    private mutating func empty(_ hole: Int) {
        let mask = slots.count - 1
        var hole = hole
        // Backward shift: each slot after the hole, up to the next empty
        // one, moves into the hole unless its home lies cyclically after
        // the hole (then the probe from its home still reaches it).
        var next = hole
        while true {
            next = (next + 1) & mask
            guard slots[next] != 0 else { break }
            let home = Self.metric(slots[next]).series.record.keyHashValue & mask
            let reachable = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if reachable { continue }
            slots[hole] = slots[next]
            hole = next
        }
        slots[hole] = 0
        count -= 1
    }

    /// Stores `metric` in the first empty slot from its home.
    private mutating func place(_ metric: Metric, hash: Int) {
        let address = UInt(bitPattern: Unmanaged.passUnretained(metric).toOpaque())
        precondition(address & Self.tagMask == 0, "a metric's address is at least 8-byte aligned")
        let mask = slots.count - 1
        var i = hash & mask
        while slots[i] != 0 { i = (i + 1) & mask }
        slots[i] = address | Self.tag(hash)
    }

    /// Doubles the slots (16 at first) and places every metric again.
    private mutating func grow() {
        let old = slots
        slots = Array(repeating: 0, count: Swift.max(16, old.count * 2))
        for slot in old where slot != 0 {
            let metric = Self.metric(slot)
            place(metric, hash: metric.series.record.keyHashValue)
        }
    }

    /// The tag of a hash: its top three bits (the low ones pick the slot).
    private static func tag(_ hash: Int) -> UInt { UInt(bitPattern: hash) >> 61 }

    /// The metric a (non-empty) slot holds.
    private static func metric(_ slot: UInt) -> Metric {
        Unmanaged<Metric>.fromOpaque(UnsafeRawPointer(bitPattern: slot & ~tagMask)!).takeUnretainedValue()
    }
}
