import Glibc
import CKPLMShims

/// The periodic uploader: a detached thread named "kplm-upload" that calls
/// `tick` every `interval` seconds of real (monotonic) time until finished,
/// then runs the final work it was handed (the manager's final flush) and
/// exits. Running the final flush here, not on the closing thread, lets close
/// stop waiting for a dead sink after a bounded time.
///
/// The thread holds the manager weakly (through `tick`), so dropping a
/// manager without closing it ends the thread at its next tick.
final class Uploader: @unchecked Sendable {
    // The pthread mutex and condition live on the heap so they never move.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var stopRequested = false   // guarded by mutex
    private var exited = false          // guarded by mutex
    private var finalWork: (@Sendable () -> Void)?   // guarded by mutex
    private var thread = pthread_t()
    /// Whether `thread` was created, and whether someone joined it (or took
    /// the job to): guarded by mutex. A thread nobody joins (its last
    /// finish timed out, or it released its manager itself) is detached by
    /// deinit, so its resources go back when it ends either way.
    private var created = false
    private var joined = false
    private let interval: Double
    private let tick: @Sendable () -> Bool

    /// Starts the thread. `tick` returns false to end it (manager gone).
    /// Returns nil if no thread could be created.
    init?(intervalSeconds: Double, tick: @escaping @Sendable () -> Bool) {
        self.interval = intervalSeconds
        self.tick = tick
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)

        // Hold the mutex until `thread` is set: stop() reads it under the mutex.
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        // The thread holds the uploader until run() returns.
        guard let created = try? NamedThread.start(named: "kplm-upload", { self.run() }) else { return nil }
        thread = created
        self.created = true
    }

    deinit {
        // On the uploader thread itself (it held the last reference), or
        // after a finish that did not see it exit: let it end detached.
        if created && !joined { pthread_detach(thread) }
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Whether the caller is the uploader thread itself.
    var isCurrentThread: Bool { pthread_equal(pthread_self(), thread) != 0 }

    /// Asks the thread to run `finalWork` (if any) and exit, then waits up to
    /// `timeout` seconds for it to have exited. Returns whether it has.
    ///
    /// Only the first call hands over its `finalWork`; later calls just wait.
    /// Called from the uploader thread itself (a manager released by its own
    /// tick), it runs `finalWork` inline and does not wait.
    @discardableResult
    func finish(timeout: Double, finalWork: (@Sendable () -> Void)? = nil) -> Bool {
        if isCurrentThread {
            pthread_mutex_lock(mutex)
            let first = !stopRequested
            stopRequested = true
            pthread_mutex_unlock(mutex)
            if first { finalWork?() }
            return true
        }
        pthread_mutex_lock(mutex)
        if !stopRequested {
            stopRequested = true
            self.finalWork = finalWork
            pthread_cond_broadcast(condition)
        }
        var until = Self.timespec(at: ManagerClock.monotonicNow() + timeout)
        while !exited {
            if pthread_cond_timedwait(condition, mutex, &until) == ETIMEDOUT { break }
        }
        let done = exited
        // Join once it has said it is done (it only returns after that), so
        // that when close returns the thread is gone, not still ending.
        let join = done && created && !joined
        if join { joined = true }
        pthread_mutex_unlock(mutex)
        if join { pthread_join(thread, nil) }
        return done
    }

    private func run() {
        var deadline = ManagerClock.monotonicNow() + interval
        while true {
            pthread_mutex_lock(mutex)
            while !stopRequested {
                let now = ManagerClock.monotonicNow()
                if now >= deadline { break }
                var until = Self.timespec(at: deadline)
                _ = pthread_cond_timedwait(condition, mutex, &until)
            }
            let stopping = stopRequested
            let work = finalWork
            finalWork = nil
            pthread_mutex_unlock(mutex)
            if stopping {
                work?()
                break
            }
            if !tick() { break }
            // Next tick one interval later; after a long export, do not try to
            // catch up with a burst of flushes.
            deadline = Swift.max(deadline + interval, ManagerClock.monotonicNow())
        }
        pthread_mutex_lock(mutex)
        exited = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    /// An absolute deadline; clamped to ~30 000 years so that a huge interval
    /// or timeout cannot overflow the conversion.
    static func timespec(at seconds: Double) -> Glibc.timespec {
        let seconds = Swift.min(seconds, 1e12)
        let whole = seconds.rounded(.down)
        return Glibc.timespec(tv_sec: Int(whole), tv_nsec: Int((seconds - whole) * 1e9))
    }
}
