import Glibc

/// The bucket mapping of one relative accuracy: which bucket a normal
/// double's magnitude falls in, and the value that stands for a bucket.
/// A value type; thread-safe.
///
/// Each octave [2^e, 2^(e+1)) is cut into `K` buckets of equal width:
/// [2^e·(1 + j/K), 2^e·(1 + (j+1)/K)). That is a double's own layout (the
/// exponent, then the mantissa's fraction), so the index is the magnitude's
/// bits read as a number, scaled: a shift, a multiplication and a shift
/// (``CellBuckets/rawIndex(bits:bucketsPerOctave:)``); no logarithm, no
/// table. A bucket's widest ratio of bounds is 1 + 1/K (its first one),
/// and the value that stands for it, the harmonic mean of its bounds, is
/// within (r − 1)/(r + 1) ≤ 1/(2K + 1) of everything in it; `K` is the
/// fewest for which that is ≤ a′, a′ being `a` less 0.1% (a margin for the
/// fraction's bits the index drops, at most 2^-29 of a value, and for the
/// rounding of the value). A subnormal is mapped as itself times 2^64 (a
/// normal), 64 octaves down: the same buckets, continued below the normal
/// range. Below ``tinyLimit``, where a double's spacing is no longer small
/// next to a·x, sketches keep values exactly.
///
/// Past K = 65,536 (a below about 7.6e-6) that margin would be too thin
/// for the integer index: the index is then computed in floating point,
/// and such a metric's puts take the shared path (no writer cell).
struct BucketMapping: Sendable {
    /// The declared accuracy `a`.
    let relativeAccuracy: Double
    /// K: buckets per octave.
    let bucketsPerOctave: Int
    /// 1023·K: the raw index of 1.0's bucket, subtracted so that index 0
    /// is 1.0's.
    let offset: Int
    /// Whether the integer index applies (K <= 65,536; see above).
    let hasIntegerIndex: Bool

    init(relativeAccuracy a: Double) {
        relativeAccuracy = a
        let inner = a * (1 - 1e-3)
        let k = Swift.max(((1 / inner - 1) / 2).rounded(.up), 1)
        bucketsPerOctave = Int(Swift.min(k, 0x1p40))
        offset = 1023 * bucketsPerOctave
        hasIntegerIndex = bucketsPerOctave <= 65_536
        tinyLimit = Swift.min((4000 / a).rounded(.up) * .leastNonzeroMagnitude, .leastNormalMagnitude)
    }

    /// Magnitudes below this are kept exactly by sketches: ⌈4000/a⌉ times
    /// the smallest subnormal (from there up, rounding a bucket's value to
    /// a subnormal moves it by at most a/8000 of it: within the margin).
    let tinyLimit: Double

    /// The bucket of a finite magnitude >= ``tinyLimit``.
    @inline(__always)
    func index(_ magnitude: Double) -> Int {
        if magnitude < .leastNormalMagnitude { return index(magnitude * 0x1p64) - 64 * bucketsPerOctave }
        guard hasIntegerIndex else {
            // (E + fraction)·K in floating point, for a very fine accuracy.
            let bits = magnitude.bitPattern & 0x7FFF_FFFF_FFFF_FFFF
            return Int((Double(bits) * 0x1p-52 * Double(bucketsPerOctave)).rounded(.down)) - offset
        }
        return CellBuckets.rawIndex(bits: magnitude.bitPattern, bucketsPerOctave: UInt64(bucketsPerOctave)) &- offset
    }

    /// The value of bucket `index`: the harmonic mean of its bounds.
    func value(_ index: Int) -> Double {
        let k = bucketsPerOctave
        let q = index + offset   // (biased exponent)·K + j
        let biased = q >= 0 ? q / k : (q - k + 1) / k
        let j = q - biased * k
        let low = 1 + Double(j) / Double(k), high = 1 + Double(j + 1) / Double(k)
        return scalbn(2 * low * high / (low + high), Int32(clamping: biased - 1023))
    }

    /// How many buckets every magnitude from ``tinyLimit`` up spans.
    var fullRange: Int { index(.greatestFiniteMagnitude) - index(tinyLimit) + 1 }

    /// The most buckets one sign spans (in a sketch or a writer cell): the
    /// full range, at most 131,072 (1 MB of counts).
    var maxBuckets: Int { Swift.min(fullRange, 131_072) }
}
