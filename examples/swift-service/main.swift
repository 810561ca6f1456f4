// kplm-service-example: a Swift service that records through swift-metrics
// only, runs under swift-service-lifecycle, and exports to Prometheus.
//
//   swift run kplm-service-example [--port 9464] [--requests 1000]
//
// A "worker" service handles --requests simulated requests (a Counter per
// route and status, a Timer per route, a Meter for the queue depth), then
// waits for shutdown; kplm serves the exposition on --port and, on SIGTERM
// or SIGINT, flushes the last observations as the group shuts down.
// scripts/check_service_example.py runs it, scrapes it and checks the series.
import Glibc
import KPLM
import KPLMMetrics
import KPLMServiceLifecycle
import KPLMSinks
import Metrics
import ServiceLifecycle

/// Simulated request handling, recorded through swift-metrics only.
struct Worker: Service {
    let requests: Int

    func run() async throws {
        let depth = Meter(label: "queue_depth")
        for i in 0..<requests {
            let route = i % 3 == 0 ? "/get" : "/put"
            let status = i % 10 == 0 ? "500" : "200"
            Counter(label: "http_requests", dimensions: [("route", route), ("status", status)]).increment()
            Metrics.Timer(label: "http_request_duration", dimensions: [("route", route)])
                .recordNanoseconds(Int64(1 + i % 5) * 1_000_000)
            depth.set(Int64(i % 7))
        }
        say("kplm-service-example: recorded \(requests) requests")
        try? await gracefulShutdown()
    }
}

/// Writes a line to standard output at once (unbuffered: a test waits for it).
func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

var port: UInt16 = 9464
var requests = 1000
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch (argument, arguments.popFirst().flatMap { Int($0) }) {
    case ("--port", let value?) where (1...65535).contains(value): port = UInt16(value)
    case ("--requests", let value?) where value >= 0: requests = value
    default:
        say("usage: kplm-service-example [--port N] [--requests N]")
        exit(2)
    }
}

let sink = try PrometheusSink(configuration: PrometheusConfiguration(port: port))
var configuration = MetricsConfiguration()
configuration.level = .detailed
configuration.uploadInterval = .milliseconds(200)
let manager = try MetricsManager(configuration: configuration, sink: sink)
MetricsSystem.bootstrap(KPLMMetricsFactory(manager: manager))

// Shut down in reverse order: the worker first, then kplm's final flush.
let group = ServiceGroup(services: [KPLMService(manager: manager), Worker(requests: requests)],
                         gracefulShutdownSignals: [.sigterm, .sigint])
try await group.run()
say("kplm-service-example: closed")
