// Records through swift-metrics only (Counter, FloatingPointCounter, Timer,
// Recorder, Meter) from several threads, with kplm as the bootstrapped
// backend, then checks the exported totals and dimensions exactly. Exit
// status 0 when everything matches.
import Foundation
import KPLM
import KPLMMetrics
import Metrics

let sink = InMemorySink()
var configuration = MetricsConfiguration()
configuration.level = .detailed
configuration.uploadInterval = .milliseconds(50)
let manager = try MetricsManager(configuration: configuration, sink: sink)
MetricsSystem.bootstrap(KPLMMetricsFactory(manager: manager))
try manager.start()

let threads = 4, perThread = 50_000
DispatchQueue.concurrentPerform(iterations: threads) { t in
    let counter = Counter(label: "requests", dimensions: [("route", "/put"), ("az", "use1-az\(t % 2)")])
    let timer = Metrics.Timer(label: "RequestTime", dimensions: [("route", "/put")])
    for i in 0..<perThread {
        counter.increment()
        timer.recordNanoseconds(Int64(i % 10) * 1_000_000)
    }
}
FloatingPointCounter(label: "bytes").increment(by: 1.5)
Recorder(label: "size", dimensions: [("stream", "orders")]).record(42)
Gauge(label: "depth").record(7)
try manager.close()

var failures: [String] = []
func expect<T: Equatable>(_ what: String, _ got: T, _ want: T) {
    if got != want { failures.append("\(what): got \(got), want \(want)") }
}
func total(_ name: String, _ dimensions: [(String, String)]) -> (count: Int, sum: Double) {
    let want = dimensions.map { MetricDimension($0.0, $0.1) }
    let hits = sink.snapshots.filter { $0.name == name && $0.dimensions == want }
    return (hits.reduce(0) { $0 + $1.count }, hits.reduce(0) { $0 + $1.sum })
}
for az in ["use1-az0", "use1-az1"] {
    let r = total("requests", [("az", az), ("route", "/put")])
    // One observation per flush that saw an increase (the periodic ones, and close's).
    expect("requests \(az) count within the flushes", (1...sink.batches.count).contains(r.count), true)
    expect("requests \(az) sum", r.sum, Double(threads / 2 * perThread))
}
let time = total("RequestTime", [("route", "/put")])
expect("RequestTime count", time.count, threads * perThread)
expect("RequestTime sum (ms)", time.sum, Double(threads * (perThread / 10) * 45))
expect("bytes", total("bytes", []).sum, 1.5)
expect("size", total("size", [("stream", "orders")]).sum, 42)
expect("depth", total("depth", []).sum, 7)
expect("depth.last at the periodic flushes or none", total("depth.last", []).sum.truncatingRemainder(dividingBy: 7), 0)
if failures.isEmpty {
    print("swift-consumer: exact totals and dimensions through swift-metrics (\(sink.snapshots.count) snapshots)")
} else {
    for f in failures { print("FAIL \(f)") }
    exit(1)
}
