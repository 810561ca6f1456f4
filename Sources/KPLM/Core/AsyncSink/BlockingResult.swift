/// A result one thread waits for and another delivers: how a synchronous
/// caller (the uploader, a flush, close) waits for an ``AsyncMetricsSink``
/// call that runs in a task. Thread-safe; delivered once.
final class BlockingResult<Success: Sendable>: @unchecked Sendable {
    private let lock = WaitableLock()
    private var result: Result<Success, any Error>?   // guarded by `lock`

    /// Delivers the result and wakes the waiter.
    func deliver(_ delivered: Result<Success, any Error>) {
        lock.lock()
        result = delivered
        lock.broadcast()
        lock.unlock()
    }

    /// Blocks the calling thread until the result is delivered; returns it.
    func wait() -> Result<Success, any Error> {
        lock.lock()
        defer { lock.unlock() }
        while true {
            if let result { return result }
            lock.wait()
        }
    }
}
