import KPLM

/// When the HTTP sinks (CloudWatch, OTLP) try again: after an exponential
/// backoff with jitter (or the server's Retry-After), at most a given number
/// of times, and never past the request's deadline.
enum RetrySchedule {
    /// The wait before retry `attempt + 1`: 0.1 s × 2^attempt (at most
    /// 10 s), less a random part of up to half (jitter), drawn from the
    /// system's generator. Thread-safe.
    static func backoff(attempt: Int) -> Double {
        var generator = SystemRandomNumberGenerator()
        return backoff(attempt: attempt, using: &generator)
    }

    /// ``backoff(attempt:)`` with its jitter drawn from `generator`: one
    /// `next()`, whose top 53 bits give u in [0, 1); the wait is
    /// full × (1 − u / 2), in (full / 2, full].
    static func backoff<G: RandomNumberGenerator>(attempt: Int, using generator: inout G) -> Double {
        let full = Swift.min(10, 0.1 * Double(1 << Swift.min(attempt, 10)))
        let u = Double(generator.next() >> 11) * 0x1p-53
        return full * (1 - u / 2)
    }

    /// The seconds to wait before retry `attempt + 1` after `failure`: `wait`
    /// (a Retry-After) or the backoff. Throws `sinkFailed` with `failure`
    /// when `attempt` already used up `maxRetries`, or when the wait would
    /// end at or past `deadline` (monotonic seconds) of a `timeoutMs` timeout.
    static func delay(afterAttempt attempt: Int, maxRetries: Int, wait: Double? = nil, deadline: Double,
                      timeoutMs: Double, failure: String) throws(MetricsError) -> Double {
        guard attempt < maxRetries else {
            throw MetricsError(.sinkFailed, failure + (attempt > 0 ? " (after \(attempt) retries)" : ""))
        }
        let delay = wait ?? backoff(attempt: attempt)
        guard ManagerClock.monotonicNow() + delay < deadline else {
            throw MetricsError(.sinkFailed, failure + "; a retry in \(delay) s would pass the \(timeoutMs) ms timeout")
        }
        return delay
    }
}
