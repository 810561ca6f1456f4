@testable import KPLM

extension MetricSeries {
    /// A series of `key` outside any manager (for tests of structures that
    /// hold series: export order, the idle watch).
    static func standalone(_ key: MetricKey) -> MetricSeries {
        MetricSeries(key: key, context: PutContext(level: .detailed, clock: .system, windowSeconds: 60))
    }
}
