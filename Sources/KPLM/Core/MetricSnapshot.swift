/// Aggregated statistics of one metric key over a span of seconds, as sinks
/// receive them and as ``MetricsManager/snapshots()`` reports them.
public struct MetricSnapshot: Sendable, Equatable {
    /// Metric name.
    public var name: String
    /// Number of observations.
    public var count: Int
    /// Sum of the observed values.
    public var sum: Double
    /// Smallest observed value.
    public var min: Double
    /// Largest observed value.
    public var max: Double
    /// The key's rendered dimensions (see ``MetricKey/dimensions``).
    public var dimensions: [MetricDimension]
    /// First second covered, in manager-clock seconds.
    public var windowStart: Double
    /// End of the span covered (exclusive), in manager-clock seconds.
    public var windowEnd: Double
    /// Wall-clock (Unix) seconds matching `windowEnd`.
    public var timestampUnix: Double
    /// The namespace of the manager that produced it
    /// (``MetricsConfiguration/namespace``); "" when built by hand.
    public var namespace: String
    /// For a distribution metric (``MetricsManager/setDistribution(_:relativeAccuracy:)``),
    /// the distribution of the same observations as the statistics, in
    /// exports; nil otherwise (and in ``MetricsManager/snapshots()``).
    public var distribution: DistributionSketch?

    /// Creates a snapshot from its parts.
    public init(name: String, count: Int, sum: Double, min: Double, max: Double,
                dimensions: [MetricDimension], windowStart: Double, windowEnd: Double,
                timestampUnix: Double, namespace: String = "", distribution: DistributionSketch? = nil) {
        self.namespace = namespace
        self.distribution = distribution
        self.name = name
        self.count = count
        self.sum = sum
        self.min = min
        self.max = max
        self.dimensions = dimensions
        self.windowStart = windowStart
        self.windowEnd = windowEnd
        self.timestampUnix = timestampUnix
    }

    /// The metric's unit (``KPLMetrics/unit(of:)``: None for unknown names).
    public var unit: MetricUnit { KPLMetrics.unit(of: name) }

    /// count, sum, min and max together.
    public var statistics: MetricStatistics {
        MetricStatistics(count: count, sum: sum, min: min, max: max)
    }
}

/// One observation, handed synchronously to an ``EventfulMetricsSink``.
public struct MetricEvent: Sendable, Equatable {
    /// Metric name.
    public var name: String
    /// Observed value.
    public var value: Double
    /// Manager-clock seconds at the put.
    public var timestamp: Double
    /// Dimensions of the key the observation was recorded under.
    public var dimensions: [MetricDimension]

    /// Creates an event.
    public init(name: String, value: Double, timestamp: Double, dimensions: [MetricDimension]) {
        self.name = name
        self.value = value
        self.timestamp = timestamp
        self.dimensions = dimensions
    }
}
