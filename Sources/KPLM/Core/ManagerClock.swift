import CKPLMShims
import Glibc

/// The manager's clock: monotonic seconds, the system's or an injected one;
/// also the system clock readings the rest of kplm (and its sinks) use.
package struct ManagerClock: Sendable {
    private let reading: (@Sendable () -> Double)?

    /// The system monotonic clock (coarse: buckets are whole seconds).
    static let system = ManagerClock(reading: nil)

    /// A clock read by calling `now`.
    static func custom(_ now: @escaping @Sendable () -> Double) -> ManagerClock {
        ManagerClock(reading: now)
    }

    /// Current manager time in seconds. A non-finite or absurd reading from
    /// an injected clock is clamped rather than trusted, so that converting it
    /// to a bucket second can never trap.
    @inline(__always)
    func now() -> Double {
        guard let reading else { return Self.monotonicCoarse() }
        let t = reading()
        if t.isNaN { return 0 }
        return Swift.min(Swift.max(t, -Self.limit), Self.limit)
    }

    /// The second a put falls in. For the system clock, one load of the
    /// second the process-wide ticker keeps fresh (see
    /// `kplmshim_second_ticker_start`; it may lag a boundary by a few
    /// milliseconds, never lead it); without a ticker, the coarse clock.
    @inline(__always)
    func currentSecond() -> Int64 {
        if reading == nil {
            let cached = kplmshim_cached_second()
            if cached != Int64.min { return Int64(cached) }
            return Self.second(of: Self.monotonicCoarse())
        }
        return Self.second(of: now())
    }

    /// Whether this is the system clock.
    var isSystem: Bool { reading == nil }

    /// Starts the process-wide second ticker when this is the system clock.
    func startTicker() {
        if reading == nil { _ = kplmshim_second_ticker_start() }
    }

    /// The integer second (bucket key) of a reading returned by ``now()``
    /// (floor, inlined: readings are within ±2^52, so the conversion is exact).
    @inline(__always)
    static func second(of t: Double) -> Int64 {
        let truncated = Int64(t)
        return Double(truncated) > t ? truncated &- 1 : truncated
    }

    /// Readings are clamped to ±2^52 s, far beyond any real clock, so
    /// `second(of:)` stays exact and in range.
    static let limit = 4_503_599_627_370_496.0

    static func monotonicCoarse() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Wall-clock (Unix) seconds, for snapshot timestamps.
    package static func wallNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Precise monotonic seconds (CLOCK_MONOTONIC), for deadlines and waits.
    package static func monotonicNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
