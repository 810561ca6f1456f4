// kplm-demo: simulated Kinesis producer threads put KPL metrics for a few
// seconds; every flush prints as a table.
//
//   swift run -c release kplm-demo [--seconds N] [--threads N]
//                                   [--interval-ms N] [--level summary|detailed]
import Glibc
import KPLM
import Synchronization

struct Options {
    var seconds = 3.0
    var threads = 4
    var intervalMs = 1000.0
    var level = MetricsLevel.detailed

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var i = 1
        func value() -> String {
            i += 1
            guard i < arguments.count else { fail("\(arguments[i - 1]) needs a value") }
            return arguments[i]
        }
        while i < arguments.count {
            switch arguments[i] {
            case "--seconds": options.seconds = number(value(), "--seconds")
            case "--threads": options.threads = Int(number(value(), "--threads"))
            case "--interval-ms": options.intervalMs = number(value(), "--interval-ms")
            case "--level":
                switch value() {
                case "summary": options.level = .summary
                case "detailed": options.level = .detailed
                default: fail("--level is summary or detailed")
                }
            case "-h", "--help":
                print("usage: kplm-demo [--seconds N] [--threads N] [--interval-ms N] [--level summary|detailed]")
                exit(0)
            default: fail("unknown argument \(arguments[i])")
            }
            i += 1
        }
        guard options.seconds > 0, options.threads > 0, options.threads <= 64 else {
            fail("--seconds must be > 0 and --threads 1...64")
        }
        return options
    }
}

func number(_ text: String, _ flag: String) -> Double {
    guard let n = Double(text), n.isFinite, n > 0 else { fail("\(flag) takes a positive number, got \(text)") }
    return n
}

func fail(_ message: String) -> Never {
    var stderr = "kplm-demo: \(message)\n"
    stderr.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(2)
}

/// One simulated producer: user records of random sizes, buffered then sent
/// in PutRecords requests, with the odd throttling error.
func produce(_ manager: MetricsManager, thread: Int, until deadline: Double, putCount: borrowing Mutex<Int>) throws {
    var random = SystemRandomNumberGenerator()
    let stream = thread % 2 == 0 ? "orders" : "clickstream"
    let shards = (0..<2).map { "shardId-00000000000\($0)" }
    // Handles resolved once: the hot path of a real producer.
    let received = try manager.metric("UserRecordsReceived", stream: stream)
    var puts = 0
    while ManagerClockReading.now() < deadline {
        for _ in 0..<50 {
            let shard = shards[Int.random(in: 0..<shards.count, using: &random)]
            let bytes = Double(Int.random(in: 100...1_100, using: &random))
            try received.put()
            try manager.put("UserRecordsPut", stream: stream, shardId: shard)
            try manager.put("UserRecordsDataPut", bytes, stream: stream, shardId: shard)
            try manager.put("BufferingTime", Double(Int.random(in: 5...120, using: &random)), stream: stream, shardId: shard)
            puts += 4
            if Int.random(in: 0..<200, using: &random) == 0 {
                try manager.put("ErrorsByCode", stream: stream, shardId: shard,
                                errorCode: "ProvisionedThroughputExceededException")
                try manager.put("AllErrors", stream: stream, shardId: shard)
                puts += 2
            }
        }
        try manager.put("RequestTime", Double(Int.random(in: 20...250, using: &random)), stream: stream)
        try manager.put("KinesisRecordsPut", 50, stream: stream)
        puts += 2
        usleep(2_000)
    }
    putCount.withLock { $0 += puts }
}

enum ManagerClockReading {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// Runs the producers, then closes the manager (final flush).
func runDemo(_ options: Options) throws {
    let sink = TableSink()
    var configuration = MetricsConfiguration()
    configuration.level = options.level
    configuration.uploadInterval = .milliseconds(options.intervalMs)
    configuration.distributions = MetricsConfiguration.kplDistributions   // p50/p99 of the latencies
    let manager = try MetricsManager(configuration: configuration, sink: sink)
    try manager.start()
    let deadline = ManagerClockReading.now() + options.seconds
    let putCount = Mutex(0)
    let failures = Mutex<[String]>([])
    var threads: [pthread_t] = []
    for t in 0..<options.threads {
        let work = Unmanaged.passRetained(Box { @Sendable in
            do { try produce(manager, thread: t, until: deadline, putCount: putCount) } catch {
                failures.withLock { $0.append("thread \(t): \(error)") }
            }
        }).toOpaque()
        var thread = pthread_t()
        guard pthread_create(&thread, nil, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, work) == 0 else { fail("could not start a thread") }
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
    try manager.close()   // final flush
    for failure in failures.withLock({ $0 }) { print("error: \(failure)") }
    let put = putCount.withLock { $0 }
    print("\n\(put) observations put, \(sink.exportedCount) exported.")
    guard failures.withLock({ $0.isEmpty }), put == sink.exportedCount else { fail("observations were lost or doubled") }
}

let options = Options.parse(CommandLine.arguments)
print("kplm-demo: \(options.threads) producer threads for \(options.seconds) s, " +
      "flush every \(Int(options.intervalMs)) ms, level \(options.level)")
do { try runDemo(options) } catch { fail("\(error)") }

/// A closure handed to a pthread.
final class Box: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}
