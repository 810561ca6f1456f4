import Glibc

/// A value guarded by a pthread mutex.
///
/// The core uses this rather than `Synchronization.Mutex` because
/// ThreadSanitizer intercepts pthread mutexes but cannot see inside the
/// prebuilt futex code of `Mutex`, so with `Mutex` every guarded access
/// would be reported as a race and the sanitizer runs would be useless.
/// (The one exception, a key's series, holds a `Mutex` inline to save two
/// allocations a key, and announces its critical sections to the sanitizer
/// itself: see `MetricSeries.withState`.)
package final class Locked<Value>: @unchecked Sendable {
    // Heap-allocated: a pthread mutex must never move.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    /// A lock guarding `value`.
    package init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value.
    @inline(__always)
    package func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    /// Like ``withLock(_:)``, but gives up and returns nil if the lock is not
    /// acquired within `timeout` seconds.
    package func withLock<R, E: Error>(timeout: Double, _ body: (inout Value) throws(E) -> R) throws(E) -> R? {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var until = Uploader.timespec(at: Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9 + timeout)
        guard pthread_mutex_timedlock(mutex, &until) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
