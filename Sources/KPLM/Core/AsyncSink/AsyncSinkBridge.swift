/// An ``AsyncMetricsSink`` seen by the manager as a synchronous
/// ``MetricsSink``: each call runs in a task, and the kplm thread that made
/// it waits for the result. The manager's rules for sinks (one call at a
/// time, under its control lock; the export timeout of close; data kept
/// when an export throws) therefore hold unchanged.
///
/// A task runs with the bridge's ``SinkExecutor`` as its executor
/// preference, so the sink's nonisolated code runs on "kplm-sink", not on
/// the cooperative pool. An export made for an async flush runs isolated
/// to that flush's caller instead (``export(_:awaitingOn:)``).
final class AsyncSinkBridge: MetricsSink {
    let sink: any AsyncMetricsSink
    private let executor = SinkExecutor()

    init(_ sink: any AsyncMetricsSink) { self.sink = sink }

    deinit { executor.stop() }

    func open() throws {
        let sink = sink
        try run(on: nil) { try await sink.open() }
    }

    func export(_ snapshots: [MetricSnapshot]) throws {
        try export(snapshots, awaitingOn: nil)
    }

    /// Exports `snapshots` with `isolation` (the caller of an async flush),
    /// or on the sink's thread for nil.
    func export(_ snapshots: [MetricSnapshot], awaitingOn isolation: (any Actor)?) throws {
        let sink = sink
        try run(on: isolation) { try await sink.export(snapshots) }
    }

    /// Closes the sink, then lets the sink's thread end.
    func close() {
        let sink = sink
        try? run(on: nil) { await sink.close() }
        executor.stop()
    }

    /// Runs `call` in a task isolated to `isolation` (nil: nonisolated, on
    /// the sink's thread) and blocks this thread until it returned.
    private func run(on isolation: (any Actor)?,
                     _ call: nonisolated(nonsending) @escaping @Sendable () async throws -> Void) throws {
        let result = BlockingResult<Void>()
        Task(executorPreference: executor) {
            do {
                try await Self.call(call, isolatedTo: isolation)
                result.deliver(.success(()))
            } catch {
                result.deliver(.failure(error))
            }
        }
        try result.wait().get()
    }

    /// Awaits `call` on `isolation`'s executor (the closure inherits the
    /// isolation of its caller, this function's isolated parameter).
    private static func call(_ call: nonisolated(nonsending) @Sendable () async throws -> Void,
                             isolatedTo isolation: isolated (any Actor)?) async throws {
        try await call()
    }
}
