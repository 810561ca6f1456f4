/// A sink whose calls are `async`: an export that awaits a network client
/// (an HTTP or gRPC request) without blocking a thread while it waits.
///
/// Same contract as ``MetricsSink``: `open` once at start (throwing makes
/// start fail), `export` with snapshots in export order (throwing makes the
/// flush fail with `sinkFailed`, and the data is offered again, merged, at
/// the next flush), `close` once after the final export; never two of
/// them at once.
///
/// Where the calls run: `try await manager.flush()` awaits `export` on the
/// caller's executor (an export declared `nonisolated(nonsending)`, or
/// under Swift's default for nonisolated async functions since 6.2, runs
/// on the caller's actor). Every other call (start's `open`, the periodic
/// flush, a synchronous flush, close's final flush, `close`) is awaited
/// from a task that prefers the sink's own thread ("kplm-sink"), while the
/// kplm thread that made it waits: kplm never blocks a thread of Swift's
/// cooperative pool on it. Cancellation is not observed (a flush runs to
/// its end). A call made from the sink on its own manager (flush, close)
/// is not refused as from a synchronous sink: it waits behind the export
/// in progress and fails after the export timeout.
///
/// Set one with ``MetricsManager/init(configuration:sink:)`` or
/// ``MetricsManager/setSink(_:)-(any AsyncMetricsSink)``. Conforming types
/// must be `Sendable`.
public protocol AsyncMetricsSink: Sendable {
    /// Called once by ``MetricsManager/start()``. Throwing makes start fail.
    nonisolated(nonsending) func open() async throws
    /// Receives one or more snapshots, in export order.
    nonisolated(nonsending) func export(_ snapshots: [MetricSnapshot]) async throws
    /// Called once, after the final export (or when the manager is
    /// released without one).
    nonisolated(nonsending) func close() async
}

extension AsyncMetricsSink {
    /// Default: nothing to open.
    public nonisolated(nonsending) func open() async throws {}
    /// Default: nothing to close.
    public nonisolated(nonsending) func close() async {}
}
