/// The default sink: accepts every export and keeps nothing.
public struct NullSink: MetricsSink {
    /// Creates a null sink.
    public init() {}

    public func export(_ snapshots: [MetricSnapshot]) throws {}
}
