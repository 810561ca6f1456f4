/// One slot's distribution counts in a writer cell of a distribution metric
/// (SPEC §6): the buckets (``BucketMapping``) of the observations the slot's
/// statistics count, per sign over the range of buckets seen, and the zeros.
///
/// Owned like its slot (``WriterCell``): written by the cell's owner inside
/// its sections, read and emptied by a reader that flipped the slot away and
/// waited for the section in progress, or by the owner when it spills. The
/// cell keeps a pointer per slot (bytes 112 and 120, unused by the retired
/// slot index), made by the owner on its first put in the slot. Values the
/// cell does not take (subnormals, which sketches keep exactly; a range past
/// ``maxBuckets``) take the shared path instead, statistics included.
///
/// The mapping's parameters are copied in, so the hot path
/// (``counter(for:in:)``) reads nothing but this struct and the counts.
@usableFromInline
struct CellBuckets {
    /// Raw bucket index (``BucketMapping/index(_:)`` plus ``offset``) of
    /// `positive[0]`, and how many buckets it holds; the same for negatives.
    @usableFromInline var positiveLow = 0
    @usableFromInline var positiveCount = 0
    @usableFromInline var negativeLow = 0
    @usableFromInline var negativeCount = 0
    /// Observations equal to zero (either sign).
    @usableFromInline var zeros: UInt64 = 0
    @usableFromInline var positive: UnsafeMutablePointer<UInt64>? = nil
    @usableFromInline var negative: UnsafeMutablePointer<UInt64>? = nil
    /// The mapping's buckets per octave, and the offset from raw indices to
    /// its indices (see ``BucketMapping``).
    @usableFromInline let bucketsPerOctave: UInt64
    let offset: Int
    /// The raw index of the smallest normal's bucket (K): ranges never
    /// start below it, so zero and subnormals never land in one.
    let lowestRaw: Int
    /// The most buckets a sign spans in a cell.
    let maxBuckets: Int

    static func allocate(_ mapping: BucketMapping) -> UnsafeMutablePointer<CellBuckets> {
        let p = UnsafeMutablePointer<CellBuckets>.allocate(capacity: 1)
        p.initialize(to: CellBuckets(bucketsPerOctave: UInt64(mapping.bucketsPerOctave), offset: mapping.offset,
                                     lowestRaw: mapping.bucketsPerOctave,
                                     maxBuckets: mapping.maxBuckets))
        return p
    }

    static func deallocate(_ p: UnsafeMutablePointer<CellBuckets>) {
        p.pointee.positive?.deallocate()
        p.pointee.negative?.deallocate()
        p.deinitialize(count: 1)
        p.deallocate()
    }

    /// The raw bucket of a double's bits (the sign is ignored; see
    /// ``BucketMapping``): the bits as a number are 2^52·(biased exponent +
    /// fraction); their top 40 (the exponent and 29 bits of fraction) times
    /// K (at most 2^16: 56 bits), shifted back by 29, count the buckets
    /// below. Zero and subnormals give less than K: below every normal's.
    @inlinable @inline(__always)
    static func rawIndex(bits: UInt64, bucketsPerOctave k: UInt64) -> Int {
        // (Shifts bind tighter than &* in Swift: every step parenthesised.)
        Int(truncatingIfNeeded: (((bits & 0x7FFF_FFFF_FFFF_FFFF) &>> 23) &* k) &>> 29)
    }

    /// The hot path: the counter of `value`'s bucket if it is in the range
    /// held (never for zero or a subnormal: their raw index is below every
    /// range, see ``rawIndex(bits:bucketsPerOctave:)``); nil otherwise. Nothing is
    /// changed: the caller increments it.
    @inlinable @inline(__always)
    static func counter(for value: Double, in b: UnsafeMutablePointer<CellBuckets>) -> UnsafeMutablePointer<UInt64>? {
        let bits = value.bitPattern
        let i = rawIndex(bits: bits, bucketsPerOctave: b.pointee.bucketsPerOctave)
        if bits &>> 63 == 0 {
            let k = i &- b.pointee.positiveLow
            guard UInt(bitPattern: k) < UInt(bitPattern: b.pointee.positiveCount) else { return nil }
            return b.pointee.positive.unsafelyUnwrapped + k
        } else {
            let k = i &- b.pointee.negativeLow
            guard UInt(bitPattern: k) < UInt(bitPattern: b.pointee.negativeCount) else { return nil }
            return b.pointee.negative.unsafelyUnwrapped + k
        }
    }

    /// Counts `value` (zero included), widening the range held if need be;
    /// false, changing nothing, when the cell does not take it (see above).
    static func add(_ value: Double, _ mapping: BucketMapping, to b: UnsafeMutablePointer<CellBuckets>) -> Bool {
        if value == 0 { b.pointee.zeros &+= 1; return true }
        if let counter = counter(for: value, in: b) { counter.pointee &+= 1; return true }
        let magnitude = Swift.abs(value)
        // Subnormals (kept exactly by sketches), and an accuracy too fine
        // for the integer index: the shared path.
        guard magnitude >= Double.leastNormalMagnitude, mapping.hasIntegerIndex else { return false }
        let i = rawIndex(bits: value.bitPattern, bucketsPerOctave: b.pointee.bucketsPerOctave)
        let (floor, cap) = (b.pointee.lowestRaw, b.pointee.maxBuckets)
        let widened = value > 0
            ? widen(&b.pointee.positive, &b.pointee.positiveLow, &b.pointee.positiveCount, to: i, floor: floor, max: cap)
            : widen(&b.pointee.negative, &b.pointee.negativeLow, &b.pointee.negativeCount, to: i, floor: floor, max: cap)
        guard widened, let counter = counter(for: value, in: b) else { return false }
        counter.pointee &+= 1
        return true
    }

    /// Widens `counts` (low, count) to hold bucket `i`, with room to spare
    /// (a quarter of the new range on the side it grew), never below
    /// `floor`, within `max` buckets; false if `i` cannot fit.
    private static func widen(_ counts: inout UnsafeMutablePointer<UInt64>?, _ low: inout Int, _ count: inout Int,
                              to i: Int, floor: Int, max: Int) -> Bool {
        let held = count == 0 ? (i, i) : (Swift.min(low, i), Swift.max(low + count - 1, i))
        guard i >= floor, held.1 - held.0 + 1 <= max else { return false }
        var newLow = held.0, newHigh = held.1
        let slack = count == 0 ? 8 : (held.1 - held.0) / 4 + 1
        if count == 0 || i < low { newLow -= slack }
        if count == 0 || i >= low + count { newHigh += slack }
        newLow = Swift.max(newLow, floor)
        if newHigh - newLow + 1 > max {
            // Trim the slack back to the cap, keeping what is held.
            newLow = Swift.max(newLow, held.1 - max + 1)
            newHigh = newLow + max - 1
        }
        let newCount = newHigh - newLow + 1
        let fresh = UnsafeMutablePointer<UInt64>.allocate(capacity: newCount)
        fresh.initialize(repeating: 0, count: newCount)
        if let old = counts {
            (fresh + (low - newLow)).update(from: old, count: count)
            old.deallocate()
        }
        counts = fresh
        low = newLow
        count = newCount
        return true
    }

    /// Empties the counts (keeping the range held, for the next second).
    static func reset(_ b: UnsafeMutablePointer<CellBuckets>) {
        b.pointee.zeros = 0
        b.pointee.positive?.update(repeating: 0, count: b.pointee.positiveCount)
        b.pointee.negative?.update(repeating: 0, count: b.pointee.negativeCount)
    }
}
