/// Counts by bucket index for one sign of a ``DistributionSketch``: a dense
/// array over the range of indices seen, `offset` being the index of its
/// first element.
///
/// Bounded: the range never exceeds `capacity` buckets. When a value would
/// widen it further, the lowest indices (the smallest magnitudes) are
/// folded into the lowest bucket kept, so only quantiles that fall among
/// those smallest values lose accuracy (they read as that bucket's value,
/// an over-estimate of their magnitude); every other quantile keeps it.
///
/// A value type; not thread-safe (its owner's lock guards it).
struct BucketStore: Sendable, Equatable {
    /// Counts, `counts[i]` for index `offset + i`.
    private(set) var counts: [UInt64] = []
    /// The index of `counts[0]`.
    private(set) var offset = 0
    /// Sum of `counts`.
    private(set) var total: UInt64 = 0
    /// The most buckets the store spans.
    let capacity: Int

    init(capacity: Int) { self.capacity = Swift.max(capacity, 1) }

    var isEmpty: Bool { total == 0 }

    /// Adds `n` observations to bucket `index`.
    mutating func add(_ index: Int, count n: UInt64 = 1) {
        guard n > 0 else { return }
        if counts.isEmpty {
            counts = [0]
            offset = index
        }
        var at = index
        if at < offset {
            at = extendDown(to: at)
        } else if at >= offset + counts.count {
            at = extendUp(to: at)
        }
        counts[at - offset] &+= n
        total &+= n
    }

    /// Adds every count of `other`.
    mutating func merge(_ other: BucketStore) {
        guard !other.isEmpty else { return }
        // Lowest first: the range widens downwards at most once.
        for (i, n) in other.counts.enumerated() where n > 0 { add(other.offset + i, count: n) }
    }

    /// The non-empty buckets, lowest index first.
    func forEachBucket(_ body: (_ index: Int, _ count: UInt64) -> Void) {
        for (i, n) in counts.enumerated() where n > 0 { body(offset + i, n) }
    }

    /// The non-empty buckets, highest index first, until `body` returns false.
    func forEachBucketDescending(_ body: (_ index: Int, _ count: UInt64) -> Bool) {
        var i = counts.count - 1
        while i >= 0 {
            if counts[i] > 0 && !body(offset + i, counts[i]) { return }
            i -= 1
        }
    }

    /// Bytes of counts held (for the memory figures).
    var byteCount: Int { counts.capacity * MemoryLayout<UInt64>.stride }

    // MARK: Growing

    /// Makes room for `index` below the range; returns where it lands (the
    /// lowest bucket when the range would exceed the capacity).
    private mutating func extendDown(to index: Int) -> Int {
        let top = offset + counts.count - 1
        let newLow = Swift.max(index, top - capacity + 1)
        if newLow < offset {
            counts.insert(contentsOf: repeatElement(0, count: offset - newLow), at: 0)
            offset = newLow
        }
        return Swift.max(index, offset)   // folded into the lowest bucket kept
    }

    /// Makes room for `index` above the range, folding the lowest buckets
    /// into the lowest one kept if the range would exceed the capacity.
    private mutating func extendUp(to index: Int) -> Int {
        let newLow = index - capacity + 1
        if newLow > offset {
            // Fold counts[0 ..< newLow - offset] into the new lowest bucket.
            let drop = Swift.min(newLow - offset, counts.count)
            var folded: UInt64 = 0
            for i in 0..<drop { folded &+= counts[i] }
            counts.removeFirst(drop)
            offset += drop
            if counts.isEmpty || offset < newLow {
                // Everything kept lies below the new range: start it afresh.
                counts = [folded]
                offset = newLow
            } else {
                counts[0] &+= folded
            }
        }
        counts.append(contentsOf: repeatElement(0, count: index - (offset + counts.count) + 1))
        return index
    }
}
