// The async forms of flush and close: the same calls, made on a thread of
// kplm's own, so that an async caller suspends instead of blocking a thread
// of Swift's cooperative pool for as long as an export (or a dead sink's
// export timeout) lasts.
import Glibc

extension MetricsManager {
    /// ``flush()`` for async code: hands the sink everything not exported
    /// yet, like the synchronous form, but suspends the calling task
    /// instead of blocking its thread. The export runs on a short-lived
    /// thread of kplm's own ("kplm-flush"); the task resumes when it
    /// returned.
    ///
    /// Same results and errors as ``flush()``: `invalidState` before start
    /// (or in a forked child, for a manager created before the fork),
    /// `closed` after close, `sinkFailed` if the export threw or if an
    /// export on another thread was still running after
    /// ``MetricsConfiguration/exportTimeout`` (the data stays queued).
    ///
    /// Overloaded on `async`: in async code `try await m.flush()` calls this
    /// form; synchronous code keeps calling ``flush()``. (Code in an async
    /// function that wrote `try m.flush()` before this form existed is
    /// told to add `await`; to block on purpose, call the synchronous form
    /// through a synchronous function value:
    /// `let flush: () throws(MetricsError) -> Void = m.flush`.)
    ///
    /// Thread-safe, like every method of the manager: any number of tasks
    /// may await it concurrently (each borrows its own thread, and the
    /// exports themselves still run one at a time). Cancellation is not
    /// observed: a flush awaited by a cancelled task still runs and
    /// completes (nothing is half-exported), and the call returns its
    /// result as usual, within the export timeout. If no thread can be
    /// started, the flush runs on the calling thread (blocking it), with
    /// the same result.
    ///
    /// An ``AsyncMetricsSink``'s export is awaited on the caller's
    /// executor (its actor, if the caller is isolated to one).
    public nonisolated(nonsending) func flush() async throws(MetricsError) {
        let isolation = #isolation
        // Refusals that depend on nothing running: said at once, on the
        // caller's thread, without starting a thread.
        // (Keys logged by puts' common case are listed first: a put of this
        // thread may be in progress on one, see ChangedSeries.listed.)
        try checkCallable("flush", evenInsideItsPut: true, putsOn: { [context] in
            context.collector.takeStartedSlotLogs()
            return context.changed.listed
        })
        guard context.level != .none else { return }
        try await Self.onOwnThread(named: "kplm-flush") { [self] () throws(MetricsError) in
            try self.flush(exportingOn: isolation)
        }
    }

    /// ``close()`` for async code: refuses further puts, waits for puts in
    /// progress, then makes the final flush and closes the sink, like the
    /// synchronous form, but suspends the calling task instead of blocking
    /// its thread (the waits run on a short-lived thread of kplm's own,
    /// "kplm-close").
    ///
    /// Same results and errors as ``close()``: it returns within
    /// ``MetricsConfiguration/exportTimeout`` in total; `sinkFailed` if the
    /// final export failed (the data is kept, a later close retries it) or
    /// did not finish in time (it completes in the background);
    /// idempotent once the final export was delivered.
    ///
    /// Overloaded on `async` like the async `flush()`: `try await m.close()`
    /// in async code, `try m.close()` in synchronous code.
    ///
    /// Thread-safe. Cancellation is not observed: a close awaited by a
    /// cancelled task still makes the final flush and returns its result
    /// (a service shutting down because its task was cancelled still
    /// delivers its data). If no thread can be started, the close runs on
    /// the calling thread (blocking it), with the same result.
    public func close() async throws(MetricsError) {
        try await Self.onOwnThread(named: "kplm-close") { [self] () throws(MetricsError) in
            try self.close()
        }
    }

    /// Runs `work` on a new detached thread named `name` and suspends until
    /// it returned, then returns or throws what it did. Without a thread,
    /// runs `work` here.
    private static func onOwnThread(named name: String,
                                    _ work: @escaping @Sendable () throws(MetricsError) -> Void)
        async throws(MetricsError) {
        let result: Result<Void, MetricsError> = await withCheckedContinuation { continuation in
            let job: @Sendable () -> Void = {
                continuation.resume(returning: Result { () throws(MetricsError) in try work() })
            }
            do {
                // Nobody joins it: it ends on its own once `job` returned.
                pthread_detach(try NamedThread.start(named: name, job))
            } catch {
                job()
            }
        }
        try result.get()
    }
}
