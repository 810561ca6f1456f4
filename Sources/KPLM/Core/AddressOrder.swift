import Synchronization

/// Puts the keys of a pass over many series in the order of the series'
/// addresses (issue #13): for the passes of flushes and reads.
///
/// A flush takes its keys in the order puts changed them, and reads and
/// exports go in export order: both unrelated to where the keys' memory is,
/// so past the caches every line a pass reads is a miss of its own, and
/// prefetching a few keys ahead overlaps only some of them. In address
/// order the same lines are read nearly in sequence (a key's object, its
/// C layout, its header line and its cells were allocated in the order the
/// keys were created), which the hardware prefetchers stream, and a line
/// read for one key often holds part of the next. (100,000 keys put in
/// random order, `kplm_flush_alone`, medians of nine alternations: a flush
/// of every key 24.6-36.9 ms in the order puts changed them, 17.4-22.7 ms
/// in address order, the sort's 0.6 ms included.)
///
/// A least-significant-digit radix sort over the bits in which the values
/// differ: a few sequential passes, no comparisons. Called by one reader
/// at a time on buffers of its own (it sorts them in place); reads no
/// object.
enum AddressOrder {
    /// Fewer keys than this keep their order: their lines are few, and the
    /// sort's tables would cost more than it saves.
    static let minimumCount = 1_024

    /// How many times a pass was put in address order (for tests).
    static let sortCount = Atomic<Int>(0)

    /// Bits of a value sorted per pass (a table of 2,048 counts: 16 KiB,
    /// which stays in the first-level cache).
    private static let digitBits = 11

    /// Sorts `references` by address, unless there are fewer than
    /// ``minimumCount`` or they are in address order already but for a few
    /// (``isNearlySorted(_:)``). Stable: a reference listed twice keeps the
    /// order of its places. Returns whether it sorted them.
    @discardableResult
    static func sort<T: AnyObject>(_ references: inout [Unmanaged<T>]) -> Bool {
        // (An unmanaged reference is its object's address.)
        guard references.count >= minimumCount,
              !references.withUnsafeBufferPointer({ $0.withMemoryRebound(to: UInt.self, isNearlySorted) })
        else { return false }
        references.withUnsafeMutableBufferPointer { $0.withMemoryRebound(to: UInt.self, radixSort) }
        sortCount.add(1, ordering: .relaxed)
        return true
    }

    /// `series` (unretained: the caller keeps them alive) in address order,
    /// or nil when ``sort(_:)`` would leave them as they are.
    static func sorted(_ series: UnsafeBufferPointer<MetricSeries>) -> [Unmanaged<MetricSeries>]? {
        guard series.count >= minimumCount,
              !series.withMemoryRebound(to: UInt.self, isNearlySorted) else { return nil }
        var references = series.indices.map { series.unretained(at: $0) }
        references.withUnsafeMutableBufferPointer { $0.withMemoryRebound(to: UInt.self, radixSort) }
        sortCount.add(1, ordering: .relaxed)
        return references
    }

    /// Whether fewer than one value in sixteen is below the one before it:
    /// the keys' order is their memory's already (keys created in export
    /// order, read in export order, say), and sorting would gain nothing.
    static func isNearlySorted(_ values: UnsafeBufferPointer<UInt>) -> Bool {
        var descents = 0
        for i in values.indices.dropFirst() where values[i] < values[i &- 1] { descents &+= 1 }
        return descents &* 16 < values.count
    }

    /// Sorts `values` in ascending order (stable; in place, through one
    /// scratch buffer of the same size). Only the bits in which the values
    /// differ are sorted: as many passes as those bits need, 11 a pass.
    static func radixSort(_ values: UnsafeMutableBufferPointer<UInt>) {
        let n = values.count
        guard n > 1 else { return }
        var low = UInt.max, differing: UInt = 0
        for v in values { low = Swift.min(low, v) }
        for v in values { differing |= v &- low }
        guard differing != 0 else { return }
        // Bits below the lowest that differs are equal in every value (the
        // low four bits of an object's address, say): not sorted.
        let shift = differing.trailingZeroBitCount
        let bits = UInt.bitWidth &- differing.leadingZeroBitCount &- shift
        let passes = (bits &+ digitBits &- 1) / digitBits
        let radix = 1 &<< digitBits
        let scratch = UnsafeMutableBufferPointer<UInt>.allocate(capacity: n)
        defer { scratch.deallocate() }
        let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: radix)
        defer { counts.deallocate() }
        var from = values, to = scratch
        for pass in 0..<passes {
            let digitShift = UInt(shift &+ pass &* digitBits)
            @inline(__always) func digit(_ v: UInt) -> Int {
                Int(truncatingIfNeeded: ((v &- low) &>> digitShift) & UInt(radix &- 1))
            }
            counts.initialize(repeating: 0)
            for v in from { counts[digit(v)] &+= 1 }
            var start = 0
            for d in 0..<radix {
                let c = counts[d]
                counts[d] = start
                start &+= c
            }
            for v in from {
                let d = digit(v)
                to[counts[d]] = v
                counts[d] &+= 1
            }
            swap(&from, &to)
        }
        // After an odd number of passes the result is in the scratch buffer.
        if from.baseAddress != values.baseAddress {
            _ = values.update(fromContentsOf: from)
        }
    }
}
