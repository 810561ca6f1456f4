import Glibc
import Synchronization

/// The logarithmic bucket mapping of one relative accuracy, shared by every
/// sketch of that accuracy (see ``forAccuracy(_:)``). Immutable; thread-safe.
///
/// Bucket `i` holds the magnitudes in [γ^i, γ^(i+1)), with γ = 2^(1/K):
/// `K` buckets per octave, the fewest for which the bucket's value
/// γ^i·2γ/(1+γ) is within (γ−1)/(γ+1) ≤ a′ of everything in it, a′ being
/// `a` less 0.1% (a margin for the rounding of boundaries and values).
///
/// Octaves make the index cheap on the hot path: for a normal double
/// 2^e·m, the index is e·K plus the bucket of m in [1, 2), read from a table
/// by the top bits of the mantissa (cells narrower than half a bucket, so a
/// cell holds at most one boundary) and one comparison with that boundary.
/// No logarithm is computed except for subnormals.
final class BucketMapping: Sendable {
    /// The declared accuracy `a`.
    let relativeAccuracy: Double
    /// (γ−1)/(γ+1): the accuracy the buckets keep (<= a′).
    let bucketAccuracy: Double
    /// K: buckets per octave.
    let bucketsPerOctave: Int
    /// Magnitudes below this (subnormals only) are kept exactly by sketches.
    let tinyLimit: Double
    /// log2 of a bucket value's factor over its lower bound, 2γ/(1+γ).
    private let logValueFactor: Double
    /// The mantissa table (nil when K is too large for one: a below ~2.6e-5):
    /// per cell, the bucket of its start within the octave, and the
    /// mantissa from which the next bucket begins (UInt64.max: none).
    private let cellShift: UInt64
    nonisolated(unsafe) private let firstBucket: UnsafeMutablePointer<Int32>?
    nonisolated(unsafe) private let boundary: UnsafeMutablePointer<UInt64>?
    private let cellCount: Int

    init(relativeAccuracy a: Double) {
        relativeAccuracy = a
        let inner = a * (1 - 1e-3)
        let k = (log(2.0) / log((1 + inner) / (1 - inner))).rounded(.up)
        bucketsPerOctave = Int(Swift.min(k, 0x1p40))
        let gamma = exp2(1 / Double(bucketsPerOctave))
        bucketAccuracy = (gamma - 1) / (gamma + 1)
        logValueFactor = log2(2 * gamma / (1 + gamma))
        // Where 4 units of the last place (the rounding of a subnormal
        // result, with room to spare) are at most 0.1% of a·x:
        // x >= 4000/a times the smallest subnormal.
        tinyLimit = Swift.min((4000 / a).rounded(.up) * Double.leastNonzeroMagnitude, Double.leastNormalMagnitude)
        // Cells of at most half a bucket: 2^-bits <= ln2 / (2K).
        let bits = Int(log2(2 * Double(bucketsPerOctave) / log(2.0)).rounded(.up))
        guard bits <= 16 else {
            cellShift = 0
            cellCount = 0
            firstBucket = nil
            boundary = nil
            return
        }
        let cells = 1 << Swift.max(bits, 1)
        cellCount = cells
        cellShift = UInt64(52 - Swift.max(bits, 1))
        let first = UnsafeMutablePointer<Int32>.allocate(capacity: cells)
        let bound = UnsafeMutablePointer<UInt64>.allocate(capacity: cells)
        let perOctave = Double(bucketsPerOctave)
        for c in 0..<cells {
            let start = 1 + Double(c) / Double(cells)
            let end = 1 + Double(c + 1) / Double(cells)
            let j = Swift.min(Int((log2(start) * perOctave).rounded(.down)), bucketsPerOctave - 1)
            first[c] = Int32(j)
            let next = exp2(Double(j + 1) / perOctave)
            bound[c] = j + 1 < bucketsPerOctave && next < end
                ? next.bitPattern & Self.mantissaMask : UInt64.max
        }
        firstBucket = first
        boundary = bound
    }

    deinit {
        firstBucket?.deallocate()
        boundary?.deallocate()
    }

    static let mantissaMask: UInt64 = (1 << 52) - 1

    /// The bucket of a finite magnitude >= ``tinyLimit``.
    @inline(__always)
    func index(_ magnitude: Double) -> Int {
        let bits = magnitude.bitPattern
        let exponentField = Int(truncatingIfNeeded: bits >> 52)
        guard exponentField != 0, let firstBucket, let boundary else { return slowIndex(magnitude) }
        let mantissa = bits & Self.mantissaMask
        let cell = Int(truncatingIfNeeded: mantissa >> cellShift)
        let within = Int(firstBucket[cell]) &+ (mantissa >= boundary[cell] ? 1 : 0)
        return (exponentField &- 1023) &* bucketsPerOctave &+ within
    }

    /// The bucket by logarithm (subnormals, or no table).
    @inline(never)
    private func slowIndex(_ magnitude: Double) -> Int {
        Int((log2(magnitude) * Double(bucketsPerOctave)).rounded(.down))
    }

    /// The value of bucket `index`: γ^index·2γ/(1+γ), the greatest finite
    /// double if that overflows.
    func value(_ index: Int) -> Double {
        let v = exp2(Double(index) / Double(bucketsPerOctave) + logValueFactor)   // one rounding
        return v.isFinite ? v : .greatestFiniteMagnitude
    }

    /// How many buckets every magnitude a double can have spans.
    var fullRange: Int { index(.greatestFiniteMagnitude) - index(tinyLimit) + 1 }

    // MARK: Sharing

    /// The mapping of accuracy `a` (valid), made once per accuracy and
    /// kept for the process's life for up to 64 accuracies (a table can be
    /// hundreds of KB); more are made per call. Lock-free (fork-safe).
    static func forAccuracy(_ a: Double) -> BucketMapping {
        let cache = Cache.shared
        let key = a.bitPattern   // never 0: a > 0
        for i in 0..<Cache.capacity {
            let k = (cache.keys + i).pointee.load(ordering: .acquiring)
            if k == key, let m = (cache.mappings + i).pointee.load(ordering: .acquiring) {
                return m.takeUnretainedValue()
            }
            guard k == 0 else { continue }
            // Claim the slot, then publish the mapping (a reader that sees
            // the key before the mapping looks further, or makes its own).
            let made = BucketMapping(relativeAccuracy: a)
            if (cache.keys + i).pointee.compareExchange(expected: 0, desired: key,
                                                        ordering: .acquiringAndReleasing).exchanged {
                (cache.mappings + i).pointee.store(Unmanaged.passRetained(made), ordering: .releasing)
                return made
            }
        }
        return BucketMapping(relativeAccuracy: a)
    }

    /// The process-wide mappings, in raw memory never freed (made at the
    /// first manager's creation, see `MetricsManager.warmUpRuntime`, so no
    /// lazy initialisation happens after a fork).
    final class Cache: @unchecked Sendable {
        static let capacity = 64
        static let shared = Cache()
        let keys: UnsafeMutablePointer<Atomic<UInt64>>
        let mappings: UnsafeMutablePointer<Atomic<Unmanaged<BucketMapping>?>>
        private init() {
            keys = .allocate(capacity: Self.capacity)
            mappings = .allocate(capacity: Self.capacity)
            for i in 0..<Self.capacity {
                (keys + i).initialize(to: Atomic(0))
                (mappings + i).initialize(to: Atomic(nil))
            }
        }
    }
}
