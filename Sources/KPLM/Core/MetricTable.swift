/// The registry's live metrics by key: an open-addressing hash table
/// (linear probing, backward-shift deletion) of metric references, each
/// with its key's hash (issue #13).
///
/// A `[MetricKey: Metric]` dictionary stores a copy of every key (72
/// bytes) in each of its buckets, and keeps a quarter to five eighths of
/// its buckets empty: about 210 bytes a key at 100,000 keys. Here a slot
/// is 16 bytes (the hash and the reference; the key is the metric's own),
/// about 42 bytes a key. A lookup compares hashes in the slot array first
/// and reads a metric's key only when its hash is equal.
///
/// Not thread-safe: the registry holds it under its lock.
struct MetricTable {
    /// A slot: empty while `metric` is nil.
    private struct Slot {
        var hash = 0
        var metric: Metric? = nil
    }

    /// A power of two in length (or empty before the first insertion).
    private var slots: [Slot] = []
    /// Number of metrics held.
    private(set) var count = 0

    /// The metric of `key`, if held.
    subscript(key: MetricKey) -> Metric? {
        guard count > 0 else { return nil }
        let hash = key.hashValue
        let mask = slots.count - 1
        var i = hash & mask
        while let metric = slots[i].metric {
            if slots[i].hash == hash && metric.key == key { return metric }
            i = (i + 1) & mask
        }
        return nil
    }

    /// Adds `metric`, whose key must not be held already.
    mutating func insert(_ metric: Metric) {
        // At most three quarters full: probes stay short.
        if (count + 1) * 4 > slots.count * 3 { grow() }
        place(Slot(hash: metric.key.hashValue, metric: metric))
        count += 1
    }

    /// Removes the metric of `key` and returns it, if held.
    @discardableResult
    mutating func remove(_ key: MetricKey) -> Metric? {
        guard count > 0 else { return nil }
        let hash = key.hashValue
        let mask = slots.count - 1
        var hole = hash & mask
        while true {
            guard let metric = slots[hole].metric else { return nil }
            if slots[hole].hash == hash && metric.key == key { break }
            hole = (hole + 1) & mask
        }
        let removed = slots[hole].metric
        // Backward shift: each slot after the hole, up to the next empty
        // one, moves into the hole unless its home lies cyclically after
        // the hole (then the probe from its home still reaches it).
        var next = hole
        while true {
            next = (next + 1) & mask
            guard slots[next].metric != nil else { break }
            let home = slots[next].hash & mask
            let reachable = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if reachable { continue }
            slots[hole] = slots[next]
            hole = next
        }
        slots[hole] = Slot()
        count -= 1
        return removed
    }

    /// Stores `slot` in the first empty slot from its home.
    private mutating func place(_ slot: Slot) {
        let mask = slots.count - 1
        var i = slot.hash & mask
        while slots[i].metric != nil { i = (i + 1) & mask }
        slots[i] = slot
    }

    /// Doubles the slots (16 at first) and places every metric again.
    private mutating func grow() {
        let old = slots
        slots = Array(repeating: Slot(), count: Swift.max(16, old.count * 2))
        for slot in old where slot.metric != nil { place(slot) }
    }
}
