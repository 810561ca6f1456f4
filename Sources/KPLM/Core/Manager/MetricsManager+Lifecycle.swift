extension MetricsManager {
    /// Opens the sink, then starts the periodic uploader. Does nothing at
    /// level none.
    ///
    /// Throws `invalidState` if already started or closed (or from a
    /// callback), `sinkFailed` if the sink's open threw (the manager stays
    /// new; start may be retried), `outOfMemory` if no thread could start.
    public func start() throws(MetricsError) {
        try checkCallable("start")
        guard context.level != .none else { return }
        try control.withLock { (c) throws(MetricsError) in
            guard c.phase == .new, !context.gate.isClosing else {
                throw MetricsError(.invalidState, c.phase == .started ? "already started" : "closed")
            }
            let sink = c.sink
            do {
                try CallbackGuard.run(for: ObjectIdentifier(self)) { try sink.open() }
            } catch {
                throw MetricsError(.sinkFailed, "the sink failed to open: \(error)")
            }
            let intervalSeconds = configuration.uploadIntervalMilliseconds / 1000
            guard let uploader = Uploader(intervalSeconds: intervalSeconds, tick: { [weak self] in
                guard let self else { return false }
                _ = try? self.flush()
                return true
            }) else {
                CallbackGuard.run(for: ObjectIdentifier(self)) { sink.close() }
                throw MetricsError(.outOfMemory, "could not start the uploader thread")
            }
            c.uploader = uploader
            c.phase = .started
            startedUploader.withLock { $0 = uploader }
            context.sinkToClose = sink
            if context.eventSink != nil { context.gate.markStartedWithEventfulSink() }
            // A put after a flush starts its slot in its common case from
            // now on, unless a flush hook needs every slot started in a put
            // frame (see StartedSlotLogs.enable()).
            if c.flushHook == nil { context.startedSlotLogs.enable() }
        }
    }

    /// Hands the sink everything not exported yet — one snapshot per key,
    /// merged over its unexported seconds — synchronously on this thread.
    /// Does nothing at level none or when there is nothing new.
    ///
    /// Throws `invalidState` before start or from a callback of this
    /// manager, `closed` after close, `sinkFailed` if the export threw (the
    /// data is kept and offered again at the next flush).
    public func flush() throws(MetricsError) {
        try flush(exportingOn: nil)
    }

    /// ``flush()``, with an async sink's export awaited on `isolation` (the
    /// caller of the async form; nil: on the sink's thread).
    func flush(exportingOn isolation: (any Actor)?) throws(MetricsError) {
        // A put of this thread in its common case, interrupted by a signal
        // handler, is looked for by the collection (exportPending), which
        // reads every changed key's cells anyway: no pass of its own here.
        try checkCallable("flush", evenInsideItsPut: true, putsOn: { [] })
        guard context.level != .none else { return }
        // Once close has begun the final flush owns the data (and may hold
        // the control lock for as long as a dead sink takes).
        guard !context.gate.isClosing else { throw MetricsError(.closed, "the manager is closed") }
        let done: Void? = try control.withLock(timeout: exportTimeout) { (c) throws(MetricsError) in
            switch c.phase {
            case .new: throw MetricsError(.invalidState, "flush before start")
            case .closed: throw MetricsError(.closed, "the manager is closed")
            case .started:
                try Self.exportPending(&c, registry: registry, context: context, view: view.withLock { $0 },
                                       namespace: configuration.namespace, isolation: isolation)
            }
        }
        guard done != nil else {
            throw MetricsError(.sinkFailed, "an export on another thread is still running after "
                               + "\(configuration.exportTimeoutMilliseconds) ms; the data stays queued")
        }
    }

    /// Refuses further puts, waits for puts in progress, then has the
    /// uploader thread make the final flush and close the sink. Idempotent
    /// once the final export was delivered. Before start it calls no sink
    /// function.
    ///
    /// Returns within ``MetricsConfiguration/exportTimeout`` in total (one
    /// budget for every wait: puts in progress, a running export, the final
    /// export): a dead sink cannot hang close. If that time runs out, close
    /// throws `sinkFailed` and the final export and the sink's close still
    /// happen, in the background, when the sink returns.
    ///
    /// If the final export fails, close throws `sinkFailed` and keeps the
    /// data: a later close retries that export (same bound) and succeeds
    /// once the sink took it. The sink's close runs exactly once: after the
    /// final export that succeeded, or when the manager is released
    /// (``shutdown()``), which discards what is still pending.
    ///
    /// Throws `invalidState` from a callback of this manager, or from a
    /// signal handler that interrupted a put on this thread (it would wait
    /// for itself); nothing changes then. Puts are refused from the start of
    /// any other close, whatever it returns.
    public func close() throws(MetricsError) {
        try close(until: ManagerClock.monotonicNow() + exportTimeout)
    }

    /// ``close()`` with every wait ending at `deadline` (monotonic seconds).
    private func close(until deadline: Double) throws(MetricsError) {
        try checkCallable("close", evenInsideItsPut: true)
        runFlushHookBeforeClosing(until: deadline)
        context.gate.beginClosing()
        guard context.level != .none else { return }
        if finale.withLock({ f in
            if case .delivered = f.outcome { return true }
            return f.freed
        }) { return }
        // Every put admitted before the closing bit finishes recording before
        // the final flush; every later one is refused. Puts run no callback
        // while admitted, so this wait is short (bounded all the same).
        guard Self.waitForPutsInProgress(context, registry, until: deadline) else {
            throw MetricsError(.sinkFailed, "puts were still in progress after "
                               + "\(configuration.exportTimeoutMilliseconds) ms; nothing was exported, close may be retried")
        }

        // A manager never started is simply marked closed: no sink call.
        let uploader: Uploader?
        if let found = control.withLock(timeout: Self.remaining(deadline), { c -> Uploader? in
            if c.phase == .new { c.phase = .closed }
            return c.uploader
        }) {
            uploader = found
        } else {
            // The control lock is held by an export that has not returned:
            // the manager is started, so the uploader is known.
            uploader = startedUploader.withLock { $0 }
            guard uploader != nil else {
                throw MetricsError(.sinkFailed, "the sink's open did not return within the export timeout")
            }
        }
        guard let uploader else { return }

        // Start an attempt unless one runs (then wait for it) or succeeded.
        let work = finalWork()
        let attempt = finale.withLock { f -> (runner: Uploader, work: (@Sendable () -> Void)?)?? in
            switch f.outcome {
            case .delivered: return .some(nil)
            case .running: return f.runner.map { ($0, nil) }
            case .notAttempted:
                // The periodic uploader stops ticking and runs it.
                f.outcome = .running
                f.runner = uploader
                return (uploader, work)
            case .failed:
                // A retry: the uploader has exited; a one-shot thread runs it,
                // so that this close too can stop waiting for a dead sink.
                guard let retry = Uploader(intervalSeconds: 1e9, tick: { false }) else { return nil }
                f.outcome = .running
                f.runner = retry
                return (retry, work)
            }
        }
        guard let attempt else {
            throw MetricsError(.outOfMemory, "could not start a thread for the final export")
        }
        guard let (runner, handOver) = attempt else { return }
        let finished = runner.finish(timeout: Self.remaining(deadline), finalWork: handOver)
        let outcome = finale.withLock { $0.outcome }
        switch outcome {
        case .delivered: return
        case .failed(let error): throw error
        case .running, .notAttempted:
            _ = finished
            throw MetricsError(.sinkFailed, "the final export did not finish within "
                               + "\(configuration.exportTimeoutMilliseconds) ms; it completes in the background")
        }
    }

    /// Runs a flush hook set with `runsBeforeClosing` (see
    /// ``setFlushHook(_:runsBeforeClosing:)``), at the first close of a
    /// started manager, while puts are still accepted. Skipped if the
    /// control lock stays held (by an export) until `deadline`.
    private func runFlushHookBeforeClosing(until deadline: Double) {
        guard context.level != .none, !context.gate.isClosing else { return }
        _ = control.withLock(timeout: Self.remaining(deadline)) { c in
            guard c.phase == .started, c.flushHookRunsBeforeClosing, let hook = c.flushHook else { return }
            CallbackGuard.run(for: ObjectIdentifier(self)) { hook() }
        }
    }

    /// The final export, run by the uploader (or a retry's thread). It
    /// captures the parts it needs, never `self`: close may run from
    /// deinit, and the work may outlive a timed-out close.
    private func finalWork() -> @Sendable () -> Void {
        let (control, registry, context, finale) = (control, registry, context, finale)
        let (view, namespace) = (self.view.withLock { $0 }, configuration.namespace)
        return {
            control.withLock { c in
                c.phase = .closed
                var failure: MetricsError?
                do throws(MetricsError) {
                    // What the sink dropped in the final export is exported at once.
                    if try Self.exportPending(&c, registry: registry, context: context, view: view,
                                              namespace: namespace) {
                        try Self.exportPending(&c, registry: registry, context: context, view: view,
                                               namespace: namespace)
                    }
                } catch {
                    failure = error
                }
                let closeSink = finale.withLock { f -> Bool in
                    guard let failure else {
                        f.outcome = .delivered
                        return true
                    }
                    f.outcome = .failed(failure)
                    // Released meanwhile: nobody will retry; discard and close.
                    if f.freed { c.retained = [:] }
                    return f.freed
                }
                // Closed now, or by the last record still running.
                if closeSink { context.requestSinkClose() }
            }
        }
    }

    /// Waits, until `deadline`, for the puts admitted before the closing bit
    /// to finish recording: those counted by the gate, and those in a
    /// writer cell's section. False if time ran out.
    private static func waitForPutsInProgress(_ context: PutContext, _ registry: Registry,
                                              until deadline: Double) -> Bool {
        context.gate.waitForPutsInProgress(until: deadline)
            && context.collector.waitForSections(registry.allSeries, until: deadline)
    }

    /// What is left of a budget ending at `deadline` (never negative).
    private static func remaining(_ deadline: Double) -> Double {
        Swift.max(0, deadline - ManagerClock.monotonicNow())
    }

    /// The preamble of every call that sets the manager up or changes its
    /// state (written once here): refused with `invalidState` in a forked
    /// child for a manager created before the fork, and from a callback of
    /// this manager; with `evenInsideItsPut` (flush, close: they would wait
    /// for their own thread) also from a signal handler that interrupted a
    /// put of this manager on this thread. `call` names the call in the error.
    func checkCallable(_ call: String, evenInsideItsPut: Bool = false,
                       putsOn series: (() -> [MetricSeries])? = nil) throws(MetricsError) {
        try context.checkNotInherited()
        if evenInsideItsPut {
            guard !isBusyOnThisThread(putsOn: series) else { throw Self.reentryError(call) }
        } else if CallbackGuard.isInsideCallback(of: ObjectIdentifier(self)) {
            throw MetricsError(.invalidState, "\(call) called from a callback of the same manager")
        }
    }

    /// The refusal of `call` (flush, close) on a thread that would wait for
    /// itself.
    static func reentryError(_ call: String) -> MetricsError {
        MetricsError(.invalidState, "\(call) called from a callback of the same manager, "
                     + "or from a signal handler that interrupted a put on it")
    }

    /// Whether this thread is running a callback or a put of this manager
    /// (a signal handler that interrupted one, or a sink callback): close
    /// and flush would then wait for their own thread. Off the hot path.
    /// `series`: where a put of this thread may be in its common case
    /// (default: every key).
    private func isBusyOnThisThread(putsOn series: (() -> [MetricSeries])? = nil) -> Bool {
        CallbackGuard.isInsideCallback(of: ObjectIdentifier(self))
            || context.collector.isOwnSectionOpen(series?() ?? registry.allSeries)
    }

    /// Whether close or flush called now on this thread would be refused
    /// with `invalidState` (for kplm_free, which then does nothing).
    package var isReentrantCall: Bool { isBusyOnThisThread() }

    /// What kplm_free and the last release do: close (one export timeout in
    /// total), then give up on what could not be delivered: the pending
    /// data is discarded and the sink closed, unless an export still runs
    /// (it then closes the sink when it returns). Idempotent.
    package func shutdown() {
        let deadline = ManagerClock.monotonicNow() + exportTimeout
        _ = try? close(until: deadline)
        guard context.level != .none else { return }
        handOverFinalExportIfNotAttempted()
        // Lock order: control, then finale. A timed-out lock means an
        // export holds it: mark the release only, and let it finish.
        let closeSink = control.withLock(timeout: Self.remaining(deadline)) { c -> Bool in
            finale.withLock { f -> Bool in
                f.freed = true
                switch f.outcome {
                case .running, .delivered: return false
                case .failed:
                    c.retained = [:]
                    return true
                case .notAttempted:
                    // Never started: no sink call.
                    return false
                }
            }
        }
        if let closeSink {
            if closeSink { context.requestSinkClose() }
        } else {
            let failed = finale.withLock { f -> Bool in
                f.freed = true
                if case .failed = f.outcome { return true }
                return false
            }
            if failed { context.requestSinkClose() }
        }
    }

    /// For a release after a close that gave up before its final export
    /// (the puts in progress outlasted a tiny export timeout): the final
    /// export is handed to the uploader all the same, behind a bounded wait
    /// for those puts, so that what was accepted is still offered to the
    /// sink and the sink is closed after it (by the final work, the manager
    /// being released) instead of being left open. Nothing for a manager
    /// never started.
    private func handOverFinalExportIfNotAttempted() {
        guard let uploader = startedUploader.withLock({ $0 }) else { return }
        let work = finalWork()
        let (context, registry) = (context, registry)
        // At least a second: this runs in the background, and a put still in
        // progress is about to end (new ones are refused).
        let patience = Swift.max(exportTimeout, 1)
        let handOver = finale.withLock { f -> (@Sendable () -> Void)? in
            guard case .notAttempted = f.outcome else { return nil }
            f.outcome = .running
            f.runner = uploader
            return {
                _ = Self.waitForPutsInProgress(context, registry, until: ManagerClock.monotonicNow() + patience)
                work()
            }
        }
        if let handOver { _ = uploader.finish(timeout: 0, finalWork: handOver) }
    }

    /// Keys whose failed export is retained for the next flush (for tests:
    /// bounded by the number of keys, since retained data merges per key).
    var retainedKeyCount: Int { control.withLock { $0.retained.count } }

    /// Whether close has begun.
    public var isClosed: Bool { context.gate.isClosing }
}
