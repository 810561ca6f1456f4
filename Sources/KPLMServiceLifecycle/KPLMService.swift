// A kplm manager as a swift-service-lifecycle Service: the group starts it
// with the other services and closes it (final flush) at shutdown.
import KPLM
import ServiceLifecycle

/// A ``MetricsManager`` run as a ServiceLifecycle `Service`:
///
/// ```swift
/// let manager = try MetricsManager(level: .detailed, sink: sink, uploadInterval: .seconds(60))
/// let group = ServiceGroup(services: [KPLMService(manager: manager), server],
///                          gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
///
/// ``run()`` starts the manager (opens the sink, starts the periodic
/// uploader), waits for the group's graceful shutdown, then closes the
/// manager with the async `close()`: puts are refused from then on and the
/// final flush hands the sink everything not exported yet, within the
/// manager's ``MetricsConfiguration/exportTimeout``. Put this service
/// before the services that record into the manager: a ServiceGroup shuts
/// its services down in reverse order, so their last puts come before the
/// final flush.
///
/// Thread-safe (`Sendable`); the manager stays usable from any thread or
/// task while the service runs.
public struct KPLMService: Service {
    /// The manager this service starts and closes.
    public let manager: MetricsManager

    /// A service for `manager`, which must not have been started: ``run()``
    /// starts it (or throws `invalidState`).
    public init(manager: MetricsManager) {
        self.manager = manager
    }

    /// Starts the manager, waits for graceful shutdown (or cancellation),
    /// then closes it: the final flush.
    ///
    /// Returns normally once the final flush was delivered, after graceful
    /// shutdown and after cancellation alike: the close runs (and
    /// completes, bounded by the export timeout) even when the task running
    /// the service is cancelled, so cancelling a group does not drop the
    /// data not exported yet.
    ///
    /// Throws `MetricsError`: from `start()` (`invalidState` for a manager
    /// already started or closed, `sinkFailed` if the sink failed to open:
    /// nothing is closed then), or from `close()` (`sinkFailed` if the
    /// final export failed, the data being kept for a later `close()`, or
    /// did not finish within the export timeout).
    public func run() async throws {
        try manager.start()
        // gracefulShutdown() throws CancellationError when the task is
        // cancelled first: close all the same.
        try? await gracefulShutdown()
        try await manager.close()
    }
}
