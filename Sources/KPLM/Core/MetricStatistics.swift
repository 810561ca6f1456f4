/// Count, sum, minimum and maximum of a set of observations.
public struct MetricStatistics: Sendable, Equatable {
    /// Number of observations.
    public var count: Int
    /// Sum of the observed values.
    public var sum: Double
    /// Smallest observed value (`+infinity` when `count == 0`).
    public var min: Double
    /// Largest observed value (`-infinity` when `count == 0`).
    public var max: Double

    /// The statistics of no observation at all.
    public static let empty = MetricStatistics(count: 0, sum: 0, min: .infinity, max: -.infinity)

    /// Creates statistics from their four parts.
    public init(count: Int, sum: Double, min: Double, max: Double) {
        self.count = count
        self.sum = sum
        self.min = min
        self.max = max
    }

    /// Adds one observation.
    @inline(__always)
    mutating func add(_ value: Double) {
        count &+= 1
        sum += value
        if value < min { min = value }
        if value > max { max = value }
    }

    /// Adds every observation summarised by `other`.
    @inline(__always)
    mutating func merge(_ other: MetricStatistics) {
        count &+= other.count
        sum += other.sum
        if other.min < min { min = other.min }
        if other.max > max { max = other.max }
    }
}
