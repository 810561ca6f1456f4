// kplm-metrics-bench: swift-metrics handlers through KPLMMetricsFactory next
// to swift-prometheus 2.x's PrometheusMetricsFactory, measured in the same
// run (the peer named by issue #14): Counter.increment, Recorder.record
// (aggregating: a histogram in swift-prometheus) and Timer.recordNanoseconds,
// one thread, through the handlers a factory makes (what a swift-metrics
// Counter calls). Each figure is the median over repetitions of ns per call;
// each ratio the median of per-repetition ratios (kplm / swift-prometheus,
// measured back to back, so a slow phase of the shared machine lands on
// both). Build and run in release: scripts/bench.sh does it, or
//   swift run -c release kplm-metrics-bench [--quick] [--json FILE]
import CoreMetrics
import Glibc
import KPLM
import KPLMMetrics
import Prometheus

nonisolated(unsafe) var iterations = 5_000_000
nonisolated(unsafe) var repetitions = 7
var jsonPath: String?
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--quick": iterations = 1_000_000; repetitions = 3
    case "--json": jsonPath = arguments.popFirst()
    default:
        print("usage: kplm-metrics-bench [--quick] [--json FILE]")
        exit(2)
    }
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// ns per call of `body(i)` over `iterations` calls.
@inline(never)
func measure(_ body: (Int) -> Void) -> Double {
    let t0 = now()
    for i in 0..<iterations { body(i) }
    return (now() - t0) / Double(iterations) * 1e9
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// (kplm ns, peer ns, ratio): `kplm` and `peer` measured back to back per
/// repetition after one untimed warm-up each.
func paired(_ kplm: (Int) -> Void, _ peer: (Int) -> Void) -> (Double, Double, Double) {
    _ = measure(kplm)
    _ = measure(peer)
    var a: [Double] = [], b: [Double] = [], q: [Double] = []
    for _ in 0..<repetitions {
        let x = measure(kplm), y = measure(peer)
        a.append(x); b.append(y); q.append(x / y)
    }
    return (median(a), median(b), median(q))
}

var configuration = MetricsConfiguration()
configuration.level = .detailed
configuration.uploadInterval = .seconds(3600)
let manager = try MetricsManager(configuration: configuration)
let kplm = KPLMMetricsFactory(manager: manager)
let prometheus = PrometheusMetricsFactory(registry: PrometheusCollectorRegistry())
let dimensions = [("stream", "orders"), ("shard", "shardId-000000000001")]

let kCounter = kplm.makeCounter(label: "UserRecordsPut", dimensions: dimensions)
let pCounter = prometheus.makeCounter(label: "UserRecordsPut", dimensions: dimensions)
let kRecorder = kplm.makeRecorder(label: "UserRecordSize", dimensions: dimensions, aggregate: true)
let pRecorder = prometheus.makeRecorder(label: "UserRecordSize", dimensions: dimensions, aggregate: true)
let kTimer = kplm.makeTimer(label: "RequestTime", dimensions: dimensions)
let pTimer = prometheus.makeTimer(label: "RequestTime", dimensions: dimensions)

let rows: [(id: String, what: String, goal: String, figures: (Double, Double, Double))] = [
    ("counter_increment", "Counter.increment(by: 1)", "<= 1x",
     paired({ _ in kCounter.increment(by: 1) }, { _ in pCounter.increment(by: 1) })),
    ("recorder_record", "Recorder.record (aggregate), varying values", "<= 0.5x",
     paired({ i in kRecorder.record(Double(i & 1023)) }, { i in pRecorder.record(Double(i & 1023)) })),
    ("timer_record_ns", "Timer.recordNanoseconds, varying durations", "<= 0.5x",
     paired({ i in kTimer.recordNanoseconds(Int64(i & 0xFFFFF) * 1000) },
            { i in pTimer.recordNanoseconds(Int64(i & 0xFFFFF) * 1000) })),
]

print("kplm-metrics-bench: swift-metrics handlers, kplm vs swift-prometheus 2.x (same run);")
print("median of \(repetitions) runs of \(iterations) calls, one thread\n")
func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
print(pad("figure", 46) + pad("kplm ns", 10) + pad("prom ns", 10) + pad("kplm/prom", 11) + "goal")
for row in rows {
    let (k, p, q) = row.figures
    func f(_ v: Double) -> String {
        let scaled = (v * 100).rounded() / 100
        return "\(scaled)"
    }
    print(pad(row.what, 46) + pad(f(k), 10) + pad(f(p), 10) + pad(f(q) + "x", 11) + row.goal)
}
if let jsonPath {
    var json = "{\n  \"iterations\": \(iterations),\n  \"repetitions\": \(repetitions),\n  \"figures\": [\n"
    for (i, row) in rows.enumerated() {
        let (k, p, q) = row.figures
        json += "    {\"id\": \"\(row.id)\", \"what\": \"\(row.what)\", \"kplm_ns\": \(k), "
            + "\"swift_prometheus_ns\": \(p), \"ratio\": \(q), \"goal\": \"\(row.goal)\"}"
            + (i + 1 < rows.count ? ",\n" : "\n")
    }
    json += "  ]\n}\n"
    guard let file = fopen(jsonPath, "w") else { perror(jsonPath); exit(1) }
    fputs(json, file)
    fclose(file)
    print("\nJSON written to \(jsonPath)")
}
try manager.close()
