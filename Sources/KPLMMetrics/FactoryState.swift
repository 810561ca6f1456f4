import CoreMetrics
import KPLM

/// What a ``KPLMMetricsFactory`` shares between its copies: the handler
/// cache, the counters and meters each flush publishes, and the last
/// error. Thread-safe (one lock; never held while recording).
final class FactoryState: Sendable {
    /// The kinds of handler, part of the cache key (a counter and a timer
    /// of one label are two handlers on one kplm key).
    enum Kind: Hashable, Sendable {
        case counter, floatingPointCounter, recorder, meter, timer
    }

    /// A cache key: the kind, the label and the dimensions sorted by name
    /// (the key kplm forms does not depend on their order).
    struct CacheKey: Hashable, Sendable {
        let kind: Kind
        let label: String
        let dimensions: [MetricDimension]

        init(_ kind: Kind, _ label: String, _ dimensions: [(String, String)]) {
            self.kind = kind
            self.label = label
            self.dimensions = dimensions.map { MetricDimension($0.0, $0.1) }.sorted { $0.name < $1.name }
        }
    }

    private struct Shared {
        var handlers: [CacheKey: AnyObject] = [:]
        var meters: [ObjectIdentifier: KPLMMeterHandler] = [:]
        var counters: [ObjectIdentifier: KPLMCounterHandler] = [:]
        var lastError: MetricsError?
        var publishes = false
    }

    private let shared = Locked(Shared())

    /// Whether the manager runs ``publish()`` (its flush hook was installed).
    var publishes: Bool { shared.withLock { $0.publishes } }

    /// Notes that the manager runs ``publish()``.
    func notePublishing() { shared.withLock { $0.publishes = true } }

    /// The cached handler of this kind, label and dimensions, made by
    /// `make` if there is none. `make` runs outside the lock (it resolves
    /// a kplm key); when two threads race, the first stored wins.
    func handler<Handler>(_ kind: Kind, _ label: String, _ dimensions: [(String, String)],
                          _ make: (String, [(String, String)]) -> Handler) -> Handler {
        let key = CacheKey(kind, label, dimensions)
        let found: AnyObject? = shared.withLock { $0.handlers[key] }
        if let found, let cached = found as? Handler { return cached }
        let made = make(label, dimensions)
        return shared.withLock { s in
            if let found = s.handlers[key], let cached = found as? Handler { return cached }
            s.handlers[key] = made as AnyObject
            if let meter = made as? KPLMMeterHandler { s.meters[ObjectIdentifier(meter)] = meter }
            if let counter = made as? KPLMCounterHandler { s.counters[ObjectIdentifier(counter)] = counter }
            return made
        }
    }

    /// Forgets `handler`: the cache lets it go, a meter stops publishing,
    /// a counter records what it added since the last flush, then stops
    /// (later increments through it are dropped).
    func destroy(_ handler: AnyObject) {
        let counter = shared.withLock { s -> KPLMCounterHandler? in
            s.meters[ObjectIdentifier(handler)] = nil
            if let key = s.handlers.first(where: { $0.value === handler })?.key { s.handlers[key] = nil }
            return s.counters.removeValue(forKey: ObjectIdentifier(handler))
        }
        counter?.publishIncrease()
    }

    /// Keeps the most recent error.
    func keep(_ error: MetricsError) {
        shared.withLock { $0.lastError = error }
    }

    var lastError: MetricsError? { shared.withLock { $0.lastError } }

    /// The flush hook (also run before close): each counter records its
    /// increase since the last flush, each meter that was set its current
    /// value under `<label>.last`.
    func publish() {
        let (counters, meters) = shared.withLock { (Array($0.counters.values), Array($0.meters.values)) }
        for counter in counters { counter.publishIncrease() }
        for meter in meters { meter.publishLastValue() }
    }
}
