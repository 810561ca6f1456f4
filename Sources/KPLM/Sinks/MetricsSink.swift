/// Where a ``MetricsManager`` sends flushed aggregates.
///
/// The manager knows nothing about any vendor: a sink only has to export
/// snapshots. `open`, `export` and `close` are never called concurrently
/// with each other; an error thrown by `export` makes the flush fail with
/// `sinkFailed`, and the data is offered again at the next flush.
public protocol MetricsSink: Sendable {
    /// Called once by ``MetricsManager/start()``. Throwing makes start fail.
    func open() throws
    /// Receives one or more snapshots, in export order.
    func export(_ snapshots: [MetricSnapshot]) throws
    /// Called once by ``MetricsManager/close()``, after the final export.
    func close()
}

extension MetricsSink {
    /// Default: nothing to open.
    public func open() throws {}
    /// Default: nothing to close.
    public func close() {}
}

/// A sink that also sees every observation as it is put.
///
/// `record` runs synchronously on the putting thread, inside the put, between
/// start and close, possibly on several threads at once: keep it cheap.
public protocol EventfulMetricsSink: MetricsSink {
    /// Receives one observation.
    func record(_ event: MetricEvent)
}
