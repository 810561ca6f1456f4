import CKPLM

/// The sink a C caller describes with a `kplm_sink` (copied at set time).
class CallbackSink: MetricsSink, @unchecked Sendable {
    /// The C caller's callbacks and user data; `user_data` is the caller's
    /// to keep valid until close.
    let callbacks: kplm_sink

    /// The export callback's non-zero result, as a thrown error.
    struct ExportFailed: Error, CustomStringConvertible {
        let code: Int32
        var description: String { "export_snapshots returned \(code)" }
    }

    struct OpenFailed: Error, CustomStringConvertible {
        let code: Int32
        var description: String { "open returned \(code)" }
    }

    init(_ callbacks: kplm_sink) {
        self.callbacks = callbacks
    }

    func open() throws {
        guard let open = callbacks.open else { return }
        let rc = open(callbacks.user_data)
        if rc != 0 { throw OpenFailed(code: rc) }
    }

    func export(_ snapshots: [MetricSnapshot]) throws {
        let rc = CLayout.withSnapshots(snapshots) { pointer, count in
            callbacks.export_snapshots(callbacks.user_data, pointer, count)
        }
        if rc != 0 { throw ExportFailed(code: rc) }
    }

    func close() {
        callbacks.close?(callbacks.user_data)
    }
}

extension CallbackSink: SeriesExporting {
    /// A flush's batch as one C array, strings borrowed from each series'
    /// ``CKeyLayout`` (valid during the callback).
    func export(_ batch: [(series: MetricSeries, pending: PendingExport)], now: Double, wall: Double) throws {
        let rc = withUnsafeTemporaryAllocation(of: kplm_snapshot.self, capacity: batch.count) { buffer in
            let base = buffer.baseAddress!
            for (i, item) in batch.enumerated() {
                let end = Double(item.pending.lastSecond + 1)
                (base + i).initialize(to: item.series.cKey.snapshot(
                    item.pending.statistics, windowStart: Double(item.pending.firstSecond), windowEnd: end,
                    timestampUnix: wall - (now - end)))
            }
            return callbacks.export_snapshots(callbacks.user_data, base, batch.count)
        }
        if rc != 0 { throw ExportFailed(code: rc) }
    }
}

/// A C sink with a `record` callback.
final class EventfulCallbackSink: CallbackSink, EventfulMetricsSink, @unchecked Sendable {
    func record(_ event: MetricEvent) {
        guard let record = callbacks.record else { return }
        CLayout.withEvent(event) { record(callbacks.user_data, $0) }
    }
}
