import CoreMetrics
import KPLM
import Synchronization

// The swift-metrics handlers of KPLMMetricsFactory. Each holds resolved kplm
// handles (nil when the manager refused the key: it then records nothing)
// and records with Metric.put(finite:) (a Counter: at each flush), inlined from the core (the public
// Metric.put is a call across modules, and checks what these check once):
// the calling thread's own cell, no lock, no lookup. A put the manager
// refuses (closed, the cap) is dropped, as swift-metrics handlers cannot
// throw; the manager counts cap refusals under KplmMetricsRefused. Values
// that are not finite are dropped. All are thread-safe.

/// `Counter`: increments add to a running total striped by thread (see
/// ``CounterStripes``: no locked instruction); each flush records the
/// increase since the last one as one observation (``publishIncrease()``).
final class KPLMCounterHandler: CounterHandler, Sendable {
    let metric: Metric?
    private let total = CounterStripes()
    init(_ metric: Metric?) { self.metric = metric }

    func increment(by amount: Int64) { total.add(amount) }
    /// Nothing to rewind: kplm exports what each flush period added.
    func reset() {}

    /// Records the increase since the last call, if any, as one
    /// observation. Called from the manager's flush hook (and before
    /// close), and at destroy.
    func publishIncrease() {
        let increase = total.takeIncrease()
        if increase != 0 { _ = metric?.put(finite: Double(increase)) }
    }
}

/// `Counter` of a factory whose flush hook could not be installed (made
/// after start): each increment is one observation of its amount.
final class KPLMDirectCounterHandler: CounterHandler, Sendable {
    let metric: Metric?
    init(_ metric: Metric?) { self.metric = metric }

    func increment(by amount: Int64) { _ = metric?.put(finite: Double(amount)) }
    /// Nothing to rewind: kplm exports what each flush period added.
    func reset() {}
}

/// `FloatingPointCounter`: each increment is one observation of its amount.
final class KPLMFloatingPointCounterHandler: FloatingPointCounterHandler, Sendable {
    let metric: Metric?
    init(_ metric: Metric?) { self.metric = metric }

    func increment(by amount: Double) {
        if amount.isFinite { _ = metric?.put(finite: amount) }
    }
    /// Nothing to rewind: kplm exports what each flush period added.
    func reset() {}
}

/// `Recorder(aggregate: true)`: each value is one observation.
final class KPLMRecorderHandler: RecorderHandler, Sendable {
    let metric: Metric?
    init(_ metric: Metric?) { self.metric = metric }

    func record(_ value: Int64) { _ = metric?.put(finite: Double(value)) }
    func record(_ value: Double) {
        if value.isFinite { _ = metric?.put(finite: value) }
    }
}

/// `Timer`: each duration is one observation in milliseconds.
final class KPLMTimerHandler: TimerHandler, Sendable {
    let metric: Metric?
    init(_ metric: Metric?) { self.metric = metric }

    func recordNanoseconds(_ duration: Int64) { _ = metric?.put(finite: Double(duration) / 1_000_000) }
}

/// `Meter` and `Recorder(aggregate: false)`: each value set is one
/// observation (the statistics), and the current value is recorded under
/// `<label>.last` at each flush (``publishLastValue()``).
final class KPLMMeterHandler: MeterHandler, RecorderHandler, Sendable {
    let values: Metric?
    let last: Metric?
    /// The current value's bits; NaN's until a first set (NaN cannot be
    /// set: kplm refuses non-finite values, and so does this handler).
    private let current = Atomic<UInt64>(Double.nan.bitPattern)

    init(values: Metric?, last: Metric?) {
        self.values = values
        self.last = last
    }

    func set(_ value: Int64) { set(Double(value)) }

    func set(_ value: Double) {
        guard value.isFinite else { return }
        current.store(value.bitPattern, ordering: .relaxed)
        _ = values?.put(finite: value)
    }

    func increment(by amount: Double) { add(amount) }
    func decrement(by amount: Double) { add(-amount) }

    func record(_ value: Int64) { set(Double(value)) }
    func record(_ value: Double) { set(value) }

    /// Adds `delta` to the current value (0 before a first set) and
    /// records the result.
    private func add(_ delta: Double) {
        var old = current.load(ordering: .relaxed)
        while true {
            let base = Double(bitPattern: old)
            let value = (base.isNaN ? 0 : base) + delta
            guard value.isFinite else { return }
            let (exchanged, seen) = current.compareExchange(expected: old, desired: value.bitPattern,
                                                            ordering: .relaxed)
            if exchanged {
                _ = values?.put(finite: value)
                return
            }
            old = seen
        }
    }

    /// Records the current value under `<label>.last` (nothing before a
    /// first set). Called from the manager's flush hook.
    func publishLastValue() {
        let value = Double(bitPattern: current.load(ordering: .relaxed))
        guard !value.isNaN else { return }
        _ = last?.put(finite: value)
    }
}
