import Glibc

/// A result one thread waits for and another delivers: how a synchronous
/// caller (the uploader, a flush, close) waits for an ``AsyncMetricsSink``
/// call that runs in a task. Thread-safe; delivered once.
final class BlockingResult<Success: Sendable>: @unchecked Sendable {
    // On the heap: a pthread mutex and condition must never move.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var result: Result<Success, any Error>?   // guarded by `mutex`

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

    /// Delivers the result and wakes the waiter.
    func deliver(_ delivered: Result<Success, any Error>) {
        pthread_mutex_lock(mutex)
        result = delivered
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Blocks the calling thread until the result is delivered; returns it.
    func wait() -> Result<Success, any Error> {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while true {
            if let result { return result }
            pthread_cond_wait(condition, mutex)
        }
    }
}
