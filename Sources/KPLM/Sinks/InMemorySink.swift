/// A sink that keeps every exported batch in memory, for tests and for
/// embedding applications that read the aggregates themselves.
public final class InMemorySink: MetricsSink {
    private struct State {
        var batches: [[MetricSnapshot]] = []
        var openCount = 0
        var closeCount = 0
    }

    private let state = Locked(State())

    /// Creates an empty sink.
    public init() {}

    public func open() throws { state.withLock { $0.openCount += 1 } }

    public func export(_ snapshots: [MetricSnapshot]) throws {
        state.withLock { $0.batches.append(snapshots) }
    }

    public func close() { state.withLock { $0.closeCount += 1 } }

    /// Every batch exported so far, oldest first.
    public var batches: [[MetricSnapshot]] { state.withLock { $0.batches } }

    /// Every snapshot exported so far, batch after batch.
    public var snapshots: [MetricSnapshot] { state.withLock { $0.batches.flatMap { $0 } } }

    /// How many times the sink was opened and closed.
    public var openCount: Int { state.withLock { $0.openCount } }
    public var closeCount: Int { state.withLock { $0.closeCount } }

    /// Forgets every batch kept so far.
    public func removeAll() { state.withLock { $0.batches.removeAll() } }
}
