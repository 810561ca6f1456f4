import KPLM
import Synchronization

/// A sink that prints every flush as an aligned table on standard output.
final class TableSink: MetricsSink {
    private let flushes = Mutex(0)
    private let exported = Mutex(0)

    /// Observations exported so far (sum of every snapshot's count).
    var exportedCount: Int { exported.withLock { $0 } }

    func export(_ snapshots: [MetricSnapshot]) throws {
        let number = flushes.withLock { n in n += 1; return n }
        exported.withLock { $0 += snapshots.reduce(0) { $0 + $1.count } }
        let header = ["metric", "stream", "shard", "error_code", "count", "sum", "min", "max", "p50", "p99", "seconds"]
        var rows: [[String]] = []
        for s in snapshots {
            func dimension(_ name: String) -> String { s.dimensions.first { $0.name == name }?.value ?? "-" }
            rows.append([s.name, dimension("stream"), dimension("shard"), dimension("error_code"),
                         String(s.count), format(s.sum), format(s.min), format(s.max),
                         // The latency metrics are distributions (kplDistributions): their quantiles.
                         s.distribution.map { format($0.quantile(0.5)) } ?? "-",
                         s.distribution.map { format($0.quantile(0.99)) } ?? "-",
                         "\(Int(s.windowStart))..<\(Int(s.windowEnd))"])
        }
        var widths = header.map { $0.count }
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                // Text columns left-aligned, numbers right-aligned.
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                return (1...3).contains(i) || i == 0 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }
        var out = "\nflush #\(number): \(snapshots.count) metrics\n"
        out += line(header) + "\n"
        out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n"
        for row in rows { out += line(row) + "\n" }
        print(out, terminator: "")
    }

    /// Numbers with at most two decimals, without Foundation.
    private func format(_ value: Double) -> String {
        let scaled = (value * 100).rounded()
        guard abs(scaled) < 1e15 else { return String(value) }
        let whole = Int64(scaled) / 100
        let cents = abs(Int64(scaled) % 100)
        let sign = value < 0 && whole == 0 ? "-" : ""
        return cents == 0 ? "\(sign)\(whole)" : "\(sign)\(whole).\(cents < 10 ? "0" : "")\(cents)"
    }
}
