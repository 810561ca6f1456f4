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
    // On the heap: a pthread mutex and condition must never move.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Guarded by `mutex`.
    private var jobs: [UnownedJob] = []
    private var head = 0
    private var running = false
    private var stopRequested = false

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

    /// Queues `job` for the executor's thread (started if not running).
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        jobs.append(job)
        if running {
            pthread_cond_signal(condition)
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
            pthread_mutex_unlock(mutex)
            job.runSynchronously(on: asUnownedTaskExecutor())
            pthread_mutex_lock(mutex)
        }
    }

    /// Lets the thread end once its queue is empty.
    func stop() {
        pthread_mutex_lock(mutex)
        stopRequested = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// The thread's loop: runs jobs until stopped with nothing queued.
    private func runJobs() {
        pthread_mutex_lock(mutex)
        while true {
            if head < jobs.count {
                let job = jobs[head]
                head += 1
                if head == jobs.count {
                    jobs.removeAll(keepingCapacity: true)
                    head = 0
                }
                pthread_mutex_unlock(mutex)
                job.runSynchronously(on: asUnownedTaskExecutor())
                pthread_mutex_lock(mutex)
            } else if stopRequested {
                running = false
                pthread_mutex_unlock(mutex)
                return
            } else {
                pthread_cond_wait(condition, mutex)
            }
        }
    }
}
