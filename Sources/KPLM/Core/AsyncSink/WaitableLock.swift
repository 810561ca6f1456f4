import Glibc

/// A pthread mutex with a condition variable, both on the heap (they must
/// never move): for a thread that waits until another one changes guarded
/// state (``BlockingResult``, ``SinkExecutor``). ThreadSanitizer sees it.
/// Thread-safe.
final class WaitableLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    /// Releases the lock, waits for a signal, takes the lock again (the
    /// caller holds it, and checks its condition in a loop).
    func wait() { pthread_cond_wait(condition, mutex) }
    /// Wakes one waiter (the caller holds the lock).
    func signal() { pthread_cond_signal(condition) }
    /// Wakes every waiter (the caller holds the lock).
    func broadcast() { pthread_cond_broadcast(condition) }
}
