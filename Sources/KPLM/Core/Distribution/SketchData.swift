import Glibc

/// The contents of a ``DistributionSketch`` and its algorithms (the design
/// is on ``DistributionSketch``). The public sketch holds one in a
/// copy-on-write box, so that a sketch costs one word where none is kept (a
/// plain metric's pending data, a snapshot). Not thread-safe.
struct SketchData: Sendable, Equatable {
    /// The promised relative accuracy `a`.
    let relativeAccuracy: Double
    private let mapping: BucketMapping
    private var positive: BucketStore
    private var negative: BucketStore
    /// Observations equal to zero (+0 or −0).
    private var zeroCount: UInt64 = 0
    /// Exact subnormals below ``BucketMapping/tinyLimit`` in magnitude, sorted by value.
    private var tiny: [(value: Double, count: UInt64)] = []
    /// Exact extremes (every answer lies between them).
    private var minimum = Double.infinity, maximum = -Double.infinity

    /// Number of observations.
    private(set) var count: UInt64 = 0

    /// The accuracies a sketch accepts: 0 < a <= 0.1.
    static func isValidAccuracy(_ a: Double) -> Bool { a > 0 && a <= 0.1 }

    /// An empty sketch of a valid accuracy.
    init(validAccuracy a: Double) {
        relativeAccuracy = a
        mapping = BucketMapping(relativeAccuracy: a)
        let cap = mapping.maxBuckets
        positive = BucketStore(capacity: cap)
        negative = BucketStore(capacity: cap)
    }

    /// See ``DistributionSketch/maxBuckets(relativeAccuracy:)``.
    static func maxBuckets(relativeAccuracy a: Double) -> Int {
        BucketMapping(relativeAccuracy: a).maxBuckets
    }

    static func == (l: Self, r: Self) -> Bool {
        l.relativeAccuracy == r.relativeAccuracy && l.positive == r.positive && l.negative == r.negative
            && l.zeroCount == r.zeroCount && l.count == r.count && l.tiny.elementsEqual(r.tiny, by: ==)
            && l.minimum == r.minimum && l.maximum == r.maximum
    }

    /// Whether no observation was added.
    var isEmpty: Bool { count == 0 }

    /// Adds one observation. A NaN or infinite value is ignored (kplm
    /// refuses them before they reach a sketch).
    mutating func add(_ value: Double) {
        guard value.isFinite else { return }
        add(value, count: 1)
    }

    /// Adds every observation of `other`, which must have the same accuracy
    /// (a sketch of another accuracy is a programming error: trapped).
    mutating func merge(_ other: SketchData) {
        precondition(other.relativeAccuracy == relativeAccuracy, "merging sketches of different accuracies")
        guard !other.isEmpty else { return }
        count &+= other.count
        zeroCount &+= other.zeroCount
        minimum = Swift.min(minimum, other.minimum)
        maximum = Swift.max(maximum, other.maximum)
        positive.merge(other.positive)
        negative.merge(other.negative)
        for entry in other.tiny { addTiny(entry.value, count: entry.count) }
    }

    /// The value at quantile `q` (0 ... 1): within `a·|x|` of the element of
    /// rank ⌊q·(n−1)⌋ of the sorted observations. NaN when empty or when
    /// `q` is outside [0, 1] or NaN.
    func quantile(_ q: Double) -> Double {
        guard count > 0, q >= 0, q <= 1 else { return .nan }
        if q == 0 { return minimum }
        if q == 1 { return maximum }
        let rank = Swift.min(UInt64((q * Double(count - 1)).rounded(.down)), count - 1)
        var answer = Double.nan
        forEachBucket { value, n, seen in
            if rank < seen + n { answer = value; return false }
            return true
        }
        // Clamping towards the exact extremes never moves an answer away
        // from x, which lies between them.
        return Swift.min(Swift.max(answer, minimum), maximum)
    }

    /// The sketch's buckets in ascending order of value: each bucket's
    /// representative value (within `a` of every observation it holds) and
    /// its count; the counts add up to ``count``. What exporters hand on.
    func forEachBucket(_ body: (_ value: Double, _ count: UInt64) -> Void) {
        forEachBucket { value, n, _ in body(value, n); return true }
    }

    /// A sketch of accuracy `a` holding `buckets` (values and counts, as
    /// ``forEachBucket(_:)`` gives them, e.g. from a C snapshot), whose exact
    /// extremes are `min` and `max`; nil for an invalid accuracy. Each value
    /// lands back in its own bucket.
    static func rebuilt(relativeAccuracy a: Double, buckets: some Sequence<(Double, UInt64)>,
                                min: Double, max: Double) -> SketchData? {
        guard isValidAccuracy(a) else { return nil }
        var sketch = SketchData(validAccuracy: a)
        for (value, n) in buckets where value.isFinite && n > 0 { sketch.add(value, count: n) }
        guard sketch.count > 0 else { return sketch }
        // The exact extremes (the buckets' values are only within `a` of them).
        if min.isFinite && max.isFinite && min <= max { (sketch.minimum, sketch.maximum) = (min, max) }
        return sketch
    }

    /// Adds the counts of a writer cell's slot (``CellBuckets``, of this
    /// sketch's accuracy), whose exact extremes are `min` and `max`.
    mutating func add(_ b: UnsafePointer<CellBuckets>, min: Double, max: Double) {
        var added: UInt64 = b.pointee.zeros
        zeroCount &+= b.pointee.zeros
        if let counts = b.pointee.positive {
            for k in 0..<b.pointee.positiveCount where counts[k] != 0 {
                positive.add(b.pointee.positiveLow - b.pointee.offset + k, count: counts[k])
                added &+= counts[k]
            }
        }
        if let counts = b.pointee.negative {
            for k in 0..<b.pointee.negativeCount where counts[k] != 0 {
                negative.add(b.pointee.negativeLow - b.pointee.offset + k, count: counts[k])
                added &+= counts[k]
            }
        }
        guard added > 0 else { return }
        count &+= added
        if min < minimum { minimum = min }
        if max > maximum { maximum = max }
    }

    /// Adds `n` observations of a finite `value`.
    private mutating func add(_ value: Double, count n: UInt64) {
        count &+= n
        if value < minimum { minimum = value }
        if value > maximum { maximum = value }
        let magnitude = Swift.abs(value)
        if magnitude == 0 {
            zeroCount &+= n
        } else if magnitude < mapping.tinyLimit {
            addTiny(value, count: n)
        } else if value > 0 {
            positive.add(mapping.index(magnitude), count: n)
        } else {
            negative.add(mapping.index(magnitude), count: n)
        }
    }

    /// Exact smallest and largest observation (NaN when empty).
    var min: Double { count > 0 ? minimum : .nan }
    var max: Double { count > 0 ? maximum : .nan }

    /// Bytes held beyond the struct (for the memory figures).
    var heapByteCount: Int {
        positive.byteCount + negative.byteCount + tiny.capacity * MemoryLayout<(Double, UInt64)>.stride
    }

    /// Buckets in ascending order of value with the number of observations
    /// before each, until `body` returns false.
    private func forEachBucket(_ body: (_ value: Double, _ count: UInt64, _ before: UInt64) -> Bool) {
        var seen: UInt64 = 0
        var going = true
        negative.forEachBucketDescending { index, n in
            going = body(-mapping.value(index), n, seen)
            seen &+= n
            return going
        }
        guard going else { return }
        for entry in tiny where entry.value < 0 {
            guard body(entry.value, entry.count, seen) else { return }
            seen &+= entry.count
        }
        if zeroCount > 0 {
            guard body(0, zeroCount, seen) else { return }
            seen &+= zeroCount
        }
        for entry in tiny where entry.value > 0 {
            guard body(entry.value, entry.count, seen) else { return }
            seen &+= entry.count
        }
        positive.forEachBucket { index, n in
            if going { going = body(mapping.value(index), n, seen) }
            seen &+= n
        }
    }

    /// The most distinct tiny subnormals kept exactly; more fold into the
    /// nearest one kept (only quantiles among them lose accuracy).
    static let maxTinyValues = 4096

    private mutating func addTiny(_ value: Double, count n: UInt64) {
        // Binary search for the value's place (the array is sorted).
        var low = 0, high = tiny.count
        while low < high {
            let mid = (low + high) / 2
            if tiny[mid].value < value { low = mid + 1 } else { high = mid }
        }
        if low < tiny.count && tiny[low].value == value {
            tiny[low].count &+= n
        } else if tiny.count < Self.maxTinyValues {
            tiny.insert((value, n), at: low)
        } else {
            let nearest = low == tiny.count ? low - 1
                : low == 0 ? 0
                : (value - tiny[low - 1].value <= tiny[low].value - value ? low - 1 : low)
            tiny[nearest].count &+= n
        }
    }
}
