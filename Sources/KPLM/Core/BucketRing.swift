/// The older buckets of a series' window (``WindowBuckets``), oldest first,
/// as a ring in one heap block: the bucket that leaves the window is dropped
/// by moving the ring's start, and a new one is written after the last.
///
/// Issue #13: an array dropped its oldest bucket by moving all the others
/// down. A key put every second with a 60-second window moved 59 buckets
/// (2.3 KB, 37 lines, each a miss once there are many keys) at the first
/// put of each second; the ring reads and writes one or two lines.
///
/// A reference type used as a value by ``WindowBuckets``, which copies it
/// before a change unless it holds the only reference (as it does in a
/// series). Buckets are plain values (nothing to deinitialise). Not
/// thread-safe: the series holds it under its lock.
final class BucketRing: ManagedBuffer<BucketRing.Header, WindowBuckets.Bucket> {
    /// Where the ring's buckets are in the block.
    struct Header {
        /// Index of the oldest bucket.
        var start: Int
        /// Buckets in the ring.
        var count: Int
    }

    /// An empty ring with room for at least `capacity` buckets.
    static func make(capacity: Int) -> BucketRing {
        let made = create(minimumCapacity: Swift.max(capacity, 2)) { _ in Header(start: 0, count: 0) }
        return unsafeDowncast(made, to: BucketRing.self)
    }

    /// Buckets in the ring.
    var count: Int { header.count }

    /// The element index of the ring's `i`-th bucket (0: the oldest).
    @inline(__always)
    private func slot(_ i: Int) -> Int {
        let j = header.start &+ i
        return j >= capacity ? j &- capacity : j
    }

    /// The `i`-th bucket, oldest first (`i` in `0..<count`).
    subscript(i: Int) -> WindowBuckets.Bucket {
        get {
            precondition(i >= 0 && i < count)
            return withUnsafeMutablePointerToElements { $0[slot(i)] }
        }
        set {
            precondition(i >= 0 && i < count)
            let k = slot(i)
            withUnsafeMutablePointerToElements { $0[k] = newValue }
        }
    }

    /// Whether one more bucket fits without growing.
    var hasRoom: Bool { count < capacity }

    /// Appends `bucket` after the newest (there must be room: ``hasRoom``).
    func append(_ bucket: WindowBuckets.Bucket) {
        precondition(hasRoom)
        let k = slot(count)
        withUnsafeMutablePointerToElements { ($0 + k).initialize(to: bucket) }
        header.count += 1
    }

    /// Drops the `k` oldest buckets (`k` at most ``count``): the start moves,
    /// no bucket does.
    func removeFirst(_ k: Int) {
        precondition(k >= 0 && k <= count)
        header.start = slot(k)
        header.count -= k
    }

    /// Inserts `bucket` at position `i` (`0...count`), moving the newer
    /// buckets up by one (there must be room). For a late observation: rare.
    func insert(_ bucket: WindowBuckets.Bucket, at i: Int) {
        precondition(i >= 0 && i <= count && hasRoom)
        append(bucket)
        var j = count - 1
        while j > i {
            self[j] = self[j - 1]
            j -= 1
        }
        self[i] = bucket
    }

    /// A copy of the buckets, in a ring with room for at least `capacity`.
    func copy(capacity: Int) -> BucketRing {
        let ring = BucketRing.make(capacity: Swift.max(capacity, count))
        for i in 0..<count { ring.append(self[i]) }
        return ring
    }

    /// The address of the ring's block (its header, then the buckets): for
    /// a prefetch hint only.
    var address: UInt { UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque()) }
}
