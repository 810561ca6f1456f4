import Foundation
import XCTest
import KPLMTestSupport
import Synchronization
@testable import KPLM

final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func add(_ n: Int) { value.wrappingAdd(n, ordering: .relaxed) }
    var current: Int { value.load(ordering: .relaxed) }
}

/// Per-key totals, merged exactly (all test values are multiples of 0.25).
struct Totals: Equatable, CustomStringConvertible {
    var byKey: [String: MetricStatistics] = [:]

    mutating func add(_ key: String, _ statistics: MetricStatistics) {
        byKey[key, default: .empty].merge(statistics)
    }

    mutating func add(_ key: String, value: Double) {
        add(key, MetricStatistics(count: 1, sum: value, min: value, max: value))
    }

    mutating func merge(_ other: Totals) {
        for (k, s) in other.byKey { add(k, s) }
    }

    static func exported(_ snapshots: [MetricSnapshot]) -> Totals {
        var t = Totals()
        for s in snapshots { t.add(label(s.name, s.dimensions), s.statistics) }
        return t
    }

    static func label(_ name: String, _ dimensions: [MetricDimension]) -> String {
        ([name] + dimensions.map { "\($0.name)=\($0.value)" }).joined(separator: "|")
    }

    var description: String {
        byKey.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "\n")
    }
}

/// Runs `body(i)` for i in 0..<count on fresh threads and waits for all.
func runThreads(_ count: Int, timeout: TimeInterval = 20, _ body: @escaping @Sendable (Int) -> Void) -> Bool {
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        let thread = Thread {
            body(i)
            group.leave()
        }
        thread.start()
    }
    return group.wait(timeout: .now() + timeout) == .success
}

/// An eventful sink whose record is slow and notices being called after close.
final class SlowRecordSink: EventfulMetricsSink, @unchecked Sendable {
    private let closed = Flag()
    let records = Counter()
    let lateRecords = Counter()
    let closes = Counter()
    private let exported = Locked<[MetricSnapshot]>([])

    func record(_ event: MetricEvent) {
        if closed.isSet { lateRecords.add(1) }
        // Varied lengths, so that at close some records have far longer
        // left to run than others.
        Thread.sleep(forTimeInterval: Double.random(in: 0.00005...0.002))
        if closed.isSet { lateRecords.add(1) }
        records.add(1)
    }

    func export(_ snapshots: [MetricSnapshot]) throws {
        if closed.isSet { lateRecords.add(1000) }
        exported.withLock { $0.append(contentsOf: snapshots) }
    }

    func close() {
        closes.add(1)
        closed.set()
    }

    var snapshots: [MetricSnapshot] { exported.withLock { $0 } }
}

final class ConcurrencyTests: XCTestCase {
    func testConcurrentPutsFlushesAndClockExportEverythingExactlyOnce() throws {
        let clock = TestClock(1000)
        let sink = InMemorySink()
        let m = try MetricsManager(level: .detailed, sink: sink, uploadIntervalMs: 5, windowSeconds: 3,
                                   clock: clock.reading)
        try m.start()

        let putters = 4
        let putsPerThread = 10_000
        let keys: [(name: String, stream: String?, shard: String?)] = [
            ("UserRecordsPut", nil, nil), ("UserRecordsPut", "s1", nil),
            ("BufferingTime", "s1", "shard-0"), ("BufferingTime", "s2", "shard-1"),
        ]
        let done = Flag()
        let expected = Locked(Totals())
        let failures = Collected<String>()
        let flushes = Counter()

        // Background: one thread flushing in a loop, one moving the clock
        // across seconds (the uploader flushes every 5 ms as well).
        let helpersDone = DispatchGroup()
        helpersDone.enter()
        Thread {
            while !done.isSet {
                do { try m.flush(); flushes.add(1) } catch { failures.append("flush: \(error)") }
            }
            helpersDone.leave()
        }.start()
        helpersDone.enter()
        Thread {
            while !done.isSet {
                clock.advance(0.25)
                Thread.sleep(forTimeInterval: 0.0005)
            }
            helpersDone.leave()
        }.start()

        let finished = runThreads(putters) { t in
            var local = Totals()
            let handles = keys.map { try? m.metric($0.name, stream: $0.stream, shardId: $0.shard) }
            for i in 0..<putsPerThread {
                let k = (i + t) % keys.count
                // Multiples of 0.25 in [-5, 9.75]: every partial sum is exact.
                let value = Double((i * 7 + t * 13) % 60) * 0.25 - 5
                do {
                    if i % 2 == 0 {
                        try m.put(keys[k].name, value, stream: keys[k].stream, shardId: keys[k].shard)
                    } else if let handle = handles[k] {
                        try handle.put(value)
                    } else {
                        failures.append("no handle for key \(k)")
                        continue
                    }
                    local.add(Totals.label(keys[k].name, MetricKey(name: keys[k].name, stream: keys[k].stream,
                                                                   shardId: keys[k].shard).dimensions),
                              value: value)
                } catch {
                    failures.append("put: \(error)")
                }
            }
            expected.withLock { $0.merge(local) }
        }
        done.set()
        XCTAssertTrue(finished, "putter threads did not finish")
        XCTAssertEqual(helpersDone.wait(timeout: .now() + 10), .success)
        try m.close()

        XCTAssertEqual(failures.all, [])
        XCTAssertGreaterThan(flushes.current, 0)
        let want = expected.withLock { $0 }
        XCTAssertEqual(want.byKey.values.map(\.count).reduce(0, +), putters * putsPerThread)
        let got = Totals.exported(sink.snapshots)
        XCTAssertEqual(got, want, "exported:\n\(got)\nput:\n\(want)")
        // At most one snapshot per key per batch.
        for batch in sink.batches {
            let labels = batch.map { Totals.label($0.name, $0.dimensions) }
            XCTAssertEqual(Set(labels).count, labels.count)
            XCTAssertTrue(batch.allSatisfy { $0.windowStart < $0.windowEnd })
        }
    }

    func testCloseRacingWithPuts() throws {
        let clock = TestClock(500)
        let sink = InMemorySink()
        let m = try MetricsManager(level: .detailed, sink: sink, uploadIntervalMs: 2, clock: clock.reading)
        try m.start()

        let putters = 3
        let accepted = Counter()
        let expected = Locked(Totals())
        let failures = Collected<String>()
        let closer = DispatchGroup()
        closer.enter()
        Thread {
            // Close once the putters are well under way.
            _ = waitUntil(timeout: 10) { accepted.current >= 3000 }
            do { try m.close() } catch { failures.append("close: \(error)") }
            closer.leave()
        }.start()

        let finished = runThreads(putters) { t in
            var local = Totals()
            let handle = try? m.metric("Racing", stream: "handle-\(t)")
            var refused = 0
            var i = 0
            // Keep putting until close has refused a good number of puts.
            while refused < 100 && i < 5_000_000 {
                i += 1
                let value = Double(i % 8) * 0.25
                let code = errorCode {
                    if i % 2 == 0 {
                        try m.put("Racing", value, stream: "name-\(t % 2)")
                    } else if let handle {
                        try handle.put(value)
                    }
                }
                switch code {
                case nil:
                    if refused > 0 { failures.append("put accepted after a put was refused") }
                    local.add(i % 2 == 0 ? "Racing|stream=name-\(t % 2)" : "Racing|stream=handle-\(t)", value: value)
                    accepted.add(1)
                case .closed?:
                    refused += 1
                case let other?:
                    failures.append("put: \(other)")
                }
            }
            if refused == 0 { failures.append("thread \(t) never saw .closed") }
            expected.withLock { $0.merge(local) }
        }
        XCTAssertTrue(finished, "putter threads did not finish")
        XCTAssertEqual(closer.wait(timeout: .now() + 10), .success)
        XCTAssertTrue(m.isClosed)

        XCTAssertEqual(failures.all, [])
        let want = expected.withLock { $0 }
        XCTAssertEqual(want.byKey.values.map(\.count).reduce(0, +), accepted.current)
        XCTAssertGreaterThanOrEqual(accepted.current, 3000)
        XCTAssertEqual(Totals.exported(sink.snapshots), want)
        // Nothing is exported after close.
        let batches = sink.batches.count
        assertThrows(.closed) { try m.flush() }
        XCTAssertEqual(sink.batches.count, batches)
    }

    func testConcurrentEventfulRecordSeesEveryPut() throws {
        let clock = TestClock(10)
        let sink = EventSink()
        let m = try MetricsManager(level: .summary, sink: sink, clock: clock.reading)
        try m.start()
        let finished = runThreads(4) { t in
            for i in 0..<1000 {
                try? m.put("E", Double(i % 4) * 0.5, stream: "s\(t % 2)", shardId: "dropped")
            }
        }
        XCTAssertTrue(finished)
        try m.close()
        let events = sink.events
        XCTAssertEqual(events.count, 4000)
        XCTAssertTrue(events.allSatisfy { $0.name == "E" && $0.timestamp == 10 && $0.dimensions.count == 1 })
        XCTAssertEqual(events.filter { $0.dimensions == dims(("stream", "s0")) }.count, 2000)
        XCTAssertEqual(events.reduce(0) { $0 + $1.value }, 3000)
        let exported = Totals.exported(sink.batches.flatMap { $0 })
        XCTAssertEqual(exported.byKey["E|stream=s0"], MetricStatistics(count: 2000, sum: 1500, min: 0, max: 1.5))
        XCTAssertEqual(exported.byKey["E|stream=s1"], MetricStatistics(count: 2000, sum: 1500, min: 0, max: 1.5))
    }

    func testCloseWaitsForRecordCallsInProgress() throws {
        // record runs inside the put; close must let every admitted put (and
        // its record) finish before the final export and the sink's close.
        // A few rounds, since which puts are in flight at close varies.
        for round in 0..<5 {
            try closeWithSlowRecords(round: round)
        }
    }

    private func closeWithSlowRecords(round: Int) throws {
        let clock = TestClock(7)
        let sink = SlowRecordSink()
        let m = try MetricsManager(level: .detailed, sink: sink, clock: clock.reading)
        try m.start()
        let accepted = Counter()
        let failures = Collected<String>()
        let closer = DispatchGroup()
        closer.enter()
        Thread {
            _ = waitUntil(timeout: 10) { accepted.current >= 40 }
            do { try m.close() } catch { failures.append("close: \(error)") }
            closer.leave()
        }.start()
        // Threads 0 and 1 put through a handle, 2 and 3 by name.
        let finished = runThreads(4) { t in
            let handle = try? m.metric("Slow", stream: "h")
            var i = 0
            while i < 1_000_000 {
                i += 1
                let code = errorCode {
                    if t >= 2 { try m.put("Slow", 0.75) } else { try handle?.put(0.75) }
                }
                if code == .closed { break }
                if let code { failures.append("put: \(code)") } else { accepted.add(1) }
            }
        }
        XCTAssertTrue(finished)
        XCTAssertEqual(closer.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(failures.all, [], "round \(round)")
        XCTAssertEqual(sink.lateRecords.current, 0, "record or export ran after the sink was closed (round \(round))")
        XCTAssertEqual(sink.closes.current, 1)
        XCTAssertEqual(sink.records.current, accepted.current)
        let exported = Totals.exported(sink.snapshots)
        let total = exported.byKey.values.reduce(MetricStatistics.empty) { var t = $0; t.merge($1); return t }
        XCTAssertEqual(total.count, accepted.current, "round \(round)")
        XCTAssertEqual(total.sum, 0.75 * Double(accepted.current))
    }
}
