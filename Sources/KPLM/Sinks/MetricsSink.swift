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

/// A sink that refuses keys it could not publish apart from others (the
/// Prometheus sink: two dimension names that become the same label name),
/// so that the put creating such a key fails with a clear error instead of
/// the sink renaming or merging series.
///
/// ``check(newKey:)`` runs when a key with free-form dimensions
/// (``MetricKey/otherDimensions``) is resolved and not yet recorded, on the
/// putting thread, under no lock of the manager; keys created before the
/// sink was set are not checked. It must be thread-safe.
public protocol KeyCheckingSink: MetricsSink {
    /// Throws `invalidArgument`, saying why, to refuse `key`.
    func check(newKey key: MetricKey) throws(MetricsError)
}

/// A sink that also sees every observation as it is put.
///
/// `record` runs synchronously on the putting thread, inside the put, between
/// start and close, possibly on several threads at once: keep it cheap.
public protocol EventfulMetricsSink: MetricsSink {
    /// Receives one observation.
    func record(_ event: MetricEvent)
}
