import Glibc

/// A mergeable summary of a set of finite doubles that answers quantiles
/// within a relative accuracy (SPEC §6).
///
/// For `q` in [0, 1], ``quantile(_:)`` returns a value within `a·|x|` of
/// the exact sample quantile `x` (the element of rank ⌊q·(n−1)⌋ of the
/// sorted observations), `a` being ``relativeAccuracy``, for any finite
/// doubles: negative, zero, subnormal and huge included.
///
/// ## Design
///
/// - Mapping (``BucketMapping``): each octave [2^e, 2^(e+1)) is cut into
///   K buckets of equal width, so a normal double's bucket is its bits read
///   as a number, scaled and truncated (no logarithm); a bucket's value,
///   the harmonic mean of its bounds, is within 1/(2K + 1) ≤ a′ of every x
///   it holds. a′ is `a` less 0.1%: the margin absorbs the rounding of the
///   index and of the value.
/// - Storage: positive and negative magnitudes each in a dense array of
///   counts over the range of buckets seen (``BucketStore``), plus a count
///   of zeros (both signs), plus the exact values of the smallest
///   subnormals (below ⌈4000/a⌉ times the smallest; up to 4,096 distinct
///   ones, more fold into the nearest kept), and the exact minimum and
///   maximum, which bound every answer.
/// - Merge: counts add, bucket by bucket; nothing is re-sampled, so a merge
///   of sketches answers as one sketch of all their observations.
/// - Memory: 8 bytes per bucket in the range seen, per sign: K ≈ 1/(2a)
///   buckets per octave, so 1% over 1 ms..10 s (13.3 octaves) is ~680
///   buckets (5.4 KB). Each sign spans at most ``maxBuckets(relativeAccuracy:)``
///   buckets, up to 131,072 (1 MB), which covers every double's magnitude
///   for a >= 0.8%. Beyond it (a finer accuracy and a
///   wider range seen) the smallest magnitudes fold into the lowest bucket
///   kept, and only quantiles that fall among them lose accuracy (see
///   ``BucketStore``).
///
/// A value type; not thread-safe (guard a shared one with a lock).
public struct DistributionSketch: Sendable, Equatable {
    /// The contents, shared between copies until one of them changes.
    private final class Box: @unchecked Sendable {   // (immutable once shared: copy on write)
        var data: SketchData
        init(_ data: SketchData) { self.data = data }
    }
    private var box: Box

    /// The contents, for reading.
    private var data: SketchData { box.data }
    /// The contents, for changing: copied first if another sketch shares them.
    private var unique: SketchData {
        get { box.data }
        _modify {
            if !isKnownUniquelyReferenced(&box) { box = Box(box.data) }
            yield &box.data
        }
    }

    private init(_ data: SketchData) { box = Box(data) }

    /// The accuracies a sketch accepts: 0 < a <= 0.1.
    public static func isValidAccuracy(_ a: Double) -> Bool { SketchData.isValidAccuracy(a) }

    /// An empty sketch with relative accuracy `relativeAccuracy` (0 < a <= 0.1).
    ///
    /// Throws `invalidArgument` for an accuracy out of that range or NaN.
    public init(relativeAccuracy: Double) throws(MetricsError) {
        guard Self.isValidAccuracy(relativeAccuracy) else {
            throw MetricsError(.invalidArgument,
                               "relative accuracy must be > 0 and <= 0.1, got \(relativeAccuracy)")
        }
        self.init(validAccuracy: relativeAccuracy)
    }

    init(validAccuracy a: Double) { self.init(SketchData(validAccuracy: a)) }

    /// The most buckets one sign spans at accuracy `a`: every magnitude a
    /// double can have, at most 131,072 (1 MB).
    public static func maxBuckets(relativeAccuracy a: Double) -> Int { SketchData.maxBuckets(relativeAccuracy: a) }

    public static func == (l: Self, r: Self) -> Bool { l.box === r.box || l.data == r.data }

    /// The promised relative accuracy `a`.
    public var relativeAccuracy: Double { data.relativeAccuracy }
    /// Number of observations.
    public var count: UInt64 { data.count }
    /// Whether no observation was added.
    public var isEmpty: Bool { data.isEmpty }
    /// Exact smallest and largest observation (NaN when empty).
    public var min: Double { data.min }
    public var max: Double { data.max }

    /// Adds one observation. A NaN or infinite value is ignored (kplm
    /// refuses them before they reach a sketch).
    public mutating func add(_ value: Double) { unique.add(value) }

    /// Adds every observation of `other`, which must have the same accuracy
    /// (a sketch of another accuracy is a programming error: trapped).
    public mutating func merge(_ other: DistributionSketch) { unique.merge(other.data) }

    /// The value at quantile `q` (0 ... 1): within `a·|x|` of the element of
    /// rank ⌊q·(n−1)⌋ of the sorted observations. NaN when empty or when
    /// `q` is outside [0, 1] or NaN.
    public func quantile(_ q: Double) -> Double { data.quantile(q) }

    /// The sketch's buckets in ascending order of value: each bucket's
    /// representative value (within `a` of every observation it holds) and
    /// its count; the counts add up to ``count``. What exporters hand on.
    public func forEachBucket(_ body: (_ value: Double, _ count: UInt64) -> Void) { data.forEachBucket(body) }

    /// A sketch of accuracy `a` holding `buckets` (values and counts, as
    /// ``forEachBucket(_:)`` gives them, e.g. from a C snapshot), whose exact
    /// extremes are `min` and `max`; nil for an invalid accuracy.
    package static func rebuilt(relativeAccuracy a: Double, buckets: some Sequence<(Double, UInt64)>,
                                min: Double, max: Double) -> DistributionSketch? {
        SketchData.rebuilt(relativeAccuracy: a, buckets: buckets, min: min, max: max).map { Self($0) }
    }

    /// Adds the counts of a writer cell's slot (see ``SketchData``).
    mutating func add(_ b: UnsafePointer<CellBuckets>, min: Double, max: Double) { unique.add(b, min: min, max: max) }

    /// Bytes held beyond the struct (for the memory figures).
    var heapByteCount: Int { data.heapByteCount }
}
