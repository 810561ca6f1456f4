/// The per-second buckets of a series' rolling window, oldest first: the
/// newest one inline, the older ones in an array (issue #13). A key put to
/// in one second of the window (most keys, when there are many) allocates
/// nothing, and a flush or a read that reaches the series' state reaches
/// its buckets without another miss.
///
/// Not thread-safe: the series holds it under its lock.
struct WindowBuckets: Sequence {
    typealias Bucket = (second: Int64, statistics: MetricStatistics)

    /// Buckets older than the newest, sorted by second (empty while there
    /// is no newest).
    private var older: [Bucket] = []
    /// The newest bucket's second (`.min`: no bucket at all).
    private var newestSecond = Int64.min
    private var newestStatistics = MetricStatistics.empty

    /// Whether there is no bucket.
    var isEmpty: Bool { newestSecond == .min }

    /// Where the older buckets are, for a prefetch hint only (0 when there
    /// are none): the address of their storage (16-byte aligned) with, in
    /// its low four bits, the number of lines from the array's count (16
    /// bytes before the first bucket) to the last bucket, at most 15.
    var olderHint: UInt {
        older.isEmpty ? 0 : older.withUnsafeBufferPointer { buffer in
            assert(UInt(bitPattern: buffer.baseAddress) & 15 == 0, "an array's elements are 16-byte aligned")
            let first = UInt(bitPattern: buffer.baseAddress) &- 16
            let last = first &+ 16 &+ UInt(buffer.count &* MemoryLayout<Bucket>.stride) &- 1
            let lines = Swift.min(15, (last >> 6) &- (first >> 6) &+ 1)
            return UInt(bitPattern: buffer.baseAddress) | lines
        }
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
                if newestSecond > limit { older.append((newestSecond, newestStatistics)) }
            }
            newestSecond = second
            newestStatistics = statistics
        } else {
            guard newestSecond - second < windowSeconds else { return }
            var i = older.count - 1
            while i >= 0 && older[i].second > second { i -= 1 }
            if i >= 0 && older[i].second == second {
                older[i].statistics.merge(statistics)
            } else {
                older.insert((second, statistics), at: i + 1)
            }
        }
    }

    /// Drops the buckets whose second is at or before `limit` (they left
    /// the window).
    mutating func drop(atOrBefore limit: Int64) {
        guard !isEmpty else { return }
        if newestSecond <= limit {
            older.removeAll()
            newestSecond = .min
            newestStatistics = .empty
        } else {
            dropOlder(atOrBefore: limit)
        }
    }

    private mutating func dropOlder(atOrBefore limit: Int64) {
        var dead = 0
        while dead < older.count && older[dead].second <= limit { dead += 1 }
        if dead > 0 { older.removeFirst(dead) }
    }

    /// The buckets, oldest first.
    struct Iterator: IteratorProtocol {
        fileprivate let buckets: WindowBuckets
        fileprivate var index = 0

        mutating func next() -> Bucket? {
            defer { index += 1 }
            if index < buckets.older.count { return buckets.older[index] }
            if index == buckets.older.count && !buckets.isEmpty {
                return (buckets.newestSecond, buckets.newestStatistics)
            }
            return nil
        }
    }

    func makeIterator() -> Iterator { Iterator(buckets: self) }
}
