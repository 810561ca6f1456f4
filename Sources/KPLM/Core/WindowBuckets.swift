/// The per-second buckets of a series' rolling window, oldest first: the
/// newest one inline, the older ones in a ring (``BucketRing``; issue #13). A key put to
/// in one second of the window (most keys, when there are many) allocates
/// nothing, and a flush or a read that reaches the series' state reaches
/// its buckets without another miss.
///
/// Not thread-safe: the series holds it under its lock. (`@unchecked
/// Sendable`: its ring is a class, copied before a change unless this value
/// holds the only reference, and the series' lock guards the one that
/// moves between threads.)
struct WindowBuckets: Sequence, @unchecked Sendable {
    typealias Bucket = (second: Int64, statistics: MetricStatistics)

    /// Buckets older than the newest, sorted by second (nil or empty while
    /// there are none; empty while there is no newest).
    private var older: BucketRing?
    /// The newest bucket's second (`.min`: no bucket at all).
    private var newestSecond = Int64.min
    private var newestStatistics = MetricStatistics.empty

    /// Whether there is no bucket.
    var isEmpty: Bool { newestSecond == .min }

    /// Older buckets.
    private var olderCount: Int { older?.count ?? 0 }

    /// The address of the older buckets' ring (0 when there are none): for
    /// a prefetch hint only.
    var olderAddress: UInt {
        guard let older, older.count > 0 else { return 0 }
        return older.address
    }

    /// Merges observations made during `second` into its bucket: the
    /// newest (the common case), a new one (dropping those that left the
    /// window then), or, for a late observation still inside the window,
    /// an older one (inserted in place if need be). Older than the window,
    /// it is not kept.
    mutating func merge(_ statistics: MetricStatistics, second: Int64, windowSeconds: Int64) {
        if second == newestSecond {
            newestStatistics.merge(statistics)
        } else if second > newestSecond {
            // (Also the first bucket: `.min` is older than any second.)
            let limit = second - windowSeconds
            if !isEmpty {
                dropOlder(atOrBefore: limit)
                if newestSecond > limit { ringWithRoom().append((newestSecond, newestStatistics)) }
            }
            newestSecond = second
            newestStatistics = statistics
        } else {
            guard newestSecond - second < windowSeconds else { return }
            var i = olderCount - 1
            while i >= 0 && older![i].second > second { i -= 1 }
            if i >= 0 && older![i].second == second {
                let ring = uniqueRing()
                ring[i].statistics.merge(statistics)
            } else {
                ringWithRoom().insert((second, statistics), at: i + 1)
            }
        }
    }

    /// Drops the buckets whose second is at or before `limit` (they left
    /// the window).
    mutating func drop(atOrBefore limit: Int64) {
        guard !isEmpty else { return }
        if newestSecond <= limit {
            older = nil
            newestSecond = .min
            newestStatistics = .empty
        } else {
            dropOlder(atOrBefore: limit)
        }
    }

    private mutating func dropOlder(atOrBefore limit: Int64) {
        // (No local reference to the ring: it would make the ring look
        // shared to uniqueRing(), which would then copy it.)
        let n = olderCount
        var dead = 0
        while dead < n && older![dead].second <= limit { dead += 1 }
        if dead > 0 { uniqueRing().removeFirst(dead) }
    }

    /// The older buckets' ring, held by this value alone (copied if it was
    /// shared): for a change in place. There must be one. (A caller must
    /// not hold a reference to it meanwhile.)
    private mutating func uniqueRing() -> BucketRing {
        if !isKnownUniquelyReferenced(&older) { older = older!.copy(capacity: older!.capacity) }
        return older!
    }

    /// ``uniqueRing()`` with room for one more bucket: made, or grown to
    /// twice its capacity, if need be.
    private mutating func ringWithRoom() -> BucketRing {
        if older == nil {
            older = BucketRing.make(capacity: 2)
        } else if !older!.hasRoom {
            older = older!.copy(capacity: 2 * older!.capacity)
        }
        return uniqueRing()
    }

    /// The buckets, oldest first.
    struct Iterator: IteratorProtocol {
        fileprivate let buckets: WindowBuckets
        fileprivate var index = 0

        mutating func next() -> Bucket? {
            defer { index += 1 }
            let olderCount = buckets.olderCount
            if index < olderCount { return buckets.older![index] }
            if index == olderCount && !buckets.isEmpty {
                return (buckets.newestSecond, buckets.newestStatistics)
            }
            return nil
        }
    }

    func makeIterator() -> Iterator { Iterator(buckets: self) }
}
