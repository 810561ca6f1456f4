import CoreMetrics
import KPLM

/// kplm as an apple/swift-metrics backend:
/// `MetricsSystem.bootstrap(KPLMMetricsFactory(manager: m))` routes every
/// swift-metrics `Counter`, `FloatingPointCounter`, `Meter`, `Recorder` and
/// `Timer` into the manager. A label is a metric name; dimensions are
/// free-form dimensions (SPEC §5, in any order).
///
/// | swift-metrics | kplm |
/// |---|---|
/// | `Counter` | one observation per flush, the increase since the last flush (sum = the increase; count = flushes that saw one) |
/// | `FloatingPointCounter` | one observation per increment: the flush's sum is the increase (count = increments) |
/// | `Recorder(aggregate: true)` | one observation per value: count, sum, min, max |
/// | `Timer` | one observation per duration, in milliseconds (the KPL's unit of `BufferingTime` and `RequestTime`) |
/// | `Recorder(aggregate: false)`, `Meter` | one observation per value set (statistics), and the last value as the metric `<label>.last`, recorded once at each flush |
///
/// Handlers hold a resolved kplm handle (a put costs what `Metric.put`
/// costs: no lookup) and are cached per (kind, label, dimensions): making
/// the same metric twice gives the same handler. `destroy*` drops the
/// factory's references (a meter stops publishing its last value); the
/// key itself stays until it is idle (SPEC §10).
///
/// A label or dimensions the manager refuses (an empty label, more than 30
/// dimensions, a repeated dimension name, the manager's cap) give a handler
/// that records nothing; the error is kept in ``lastError``. A counter's
/// `reset()` does not rewind what was recorded (kplm exports per-flush
/// sums). Thread-safe.
///
/// Counters publish their increase, and meters their last value, from the
/// manager's flush hook, which this factory installs when it is created
/// (run at every flush and once before close, so the final flush has
/// them): create it before the manager starts. Created after, counters
/// record one observation per increment and meters their statistics only,
/// and ``lastError`` says why. The hook replaces any other flush hook of
/// the manager. A counter's increments reach the manager's queries
/// (`statistics`, `snapshots`) at the next flush.
public struct KPLMMetricsFactory: MetricsFactory, Sendable {
    /// The manager every handler records into.
    public let manager: MetricsManager
    private let state: FactoryState

    /// A factory over `manager` (see the type's documentation for the flush
    /// hook it installs).
    public init(manager: MetricsManager) {
        self.manager = manager
        let state = FactoryState()
        self.state = state
        do {
            try manager.setFlushHook({ state.publish() }, runsBeforeClosing: true)
            state.notePublishing()
        } catch {
            state.keep(error)
        }
    }

    /// The most recent error of the manager a handler was made with, or the
    /// flush hook could not be installed with; nil if none.
    public var lastError: MetricsError? { state.lastError }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> CounterHandler {
        state.handler(.counter, label, dimensions) { (label, dimensions) -> CounterHandler in
            state.publishes ? KPLMCounterHandler(metric(label, dimensions))
                : KPLMDirectCounterHandler(metric(label, dimensions))
        }
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> FloatingPointCounterHandler {
        state.handler(.floatingPointCounter, label, dimensions) { KPLMFloatingPointCounterHandler(metric($0, $1)) }
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> RecorderHandler {
        if aggregate {
            return state.handler(.recorder, label, dimensions) { KPLMRecorderHandler(metric($0, $1)) }
        }
        return state.handler(.meter, label, dimensions) { gauge($0, $1) }
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> MeterHandler {
        state.handler(.meter, label, dimensions) { gauge($0, $1) }
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> TimerHandler {
        state.handler(.timer, label, dimensions) { KPLMTimerHandler(metric($0, $1)) }
    }

    public func destroyCounter(_ handler: CounterHandler) { state.destroy(handler) }
    public func destroyFloatingPointCounter(_ handler: FloatingPointCounterHandler) { state.destroy(handler) }
    public func destroyRecorder(_ handler: RecorderHandler) { state.destroy(handler) }
    public func destroyMeter(_ handler: MeterHandler) { state.destroy(handler) }
    public func destroyTimer(_ handler: TimerHandler) { state.destroy(handler) }

    /// The manager's handle for a label and dimensions, or nil (the error
    /// kept) when the manager refuses them.
    private func metric(_ label: String, _ dimensions: [(String, String)]) -> Metric? {
        do {
            return try manager.metric(label, dimensions: dimensions)
        } catch {
            state.keep(error)
            return nil
        }
    }

    /// A meter: its values' statistics under `label`, its last value under
    /// `label.last`, published at each flush.
    private func gauge(_ label: String, _ dimensions: [(String, String)]) -> KPLMMeterHandler {
        KPLMMeterHandler(values: metric(label, dimensions), last: metric(label + ".last", dimensions))
    }
}
