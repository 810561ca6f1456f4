import Glibc

/// A task executor with one thread of its own ("kplm-sink"): where an
/// ``AsyncMetricsSink``'s nonisolated code runs when no caller awaits it
/// (the periodic flush, close's final flush, a synchronous flush), so that
/// kplm never needs a thread of Swift's cooperative pool, which its
/// blocking callers may be holding.
///
/// Jobs run one at a time, in the order enqueued. The thread starts with
/// the first job and ends once ``stop()`` was called and no job is left
/// (a job enqueued after that starts a thread again). Thread-safe.
final class SinkExecutor: TaskExecutor, @unchecked Sendable {
    private let lock = WaitableLock()
    // Guarded by `lock`.
    private var jobs: [UnownedJob] = []
    private var head = 0
    private var running = false
    private var stopRequested = false

    /// Queues `job` for the executor's thread (started if not running).
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        lock.lock()
        defer { lock.unlock() }
        jobs.append(job)
        if running {
            lock.signal()
            return
        }
        // The thread holds the executor until it ends. Without a thread the
        // job would never run: it runs here instead (the awaiting side is
        // another thread, so this cannot wait for itself).
        running = true
        stopRequested = false
        do {
            pthread_detach(try NamedThread.start(named: "kplm-sink") { self.runJobs() })
        } catch {
            running = false
            jobs.removeLast()
            lock.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
            lock.lock()
        }
    }

    /// Lets the thread end once its queue is empty.
    func stop() {
        lock.lock()
        stopRequested = true
        lock.signal()
        lock.unlock()
    }

    /// The thread's loop: runs jobs until stopped with nothing queued.
    private func runJobs() {
        lock.lock()
        while true {
            if head < jobs.count {
                let job = jobs[head]
                head += 1
                if head == jobs.count {
                    jobs.removeAll(keepingCapacity: true)
                    head = 0
                }
                lock.unlock()
                job.runSynchronously(on: asUnownedTaskExecutor())
                lock.lock()
            } else if stopRequested {
                running = false
                lock.unlock()
                return
            } else {
                lock.wait()
            }
        }
    }
}
