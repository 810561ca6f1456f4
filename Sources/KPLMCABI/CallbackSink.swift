import CKPLM
import KPLM

/// The sink a C caller describes with a `kplm_sink` (copied at set time).
class CallbackSink: MetricsSink, @unchecked Sendable {
    /// The C caller's callbacks and user data; `user_data` is the caller's
    /// to keep valid until close.
    let callbacks: kplm_sink
    /// The sizes of kplm_snapshot and kplm_event the callbacks were compiled
    /// with: what they are handed is laid out at those sizes.
    let strides: Strides

    /// Sizes of the structs handed to the callbacks, in bytes (see
    /// ``CallerLayout``).
    struct Strides {
        var snapshot = CallerLayouts.snapshot.v1Size
        var event = CallerLayouts.event.v1Size
    }

    /// The export callback's non-zero result, as a thrown error.
    struct ExportFailed: Error, CustomStringConvertible {
        let code: Int32
        var description: String { "export_snapshots returned \(code)" }
    }

    struct OpenFailed: Error, CustomStringConvertible {
        let code: Int32
        var description: String { "open returned \(code)" }
    }

    init(_ callbacks: kplm_sink, _ strides: Strides = Strides()) {
        self.callbacks = callbacks
        self.strides = strides
    }

    func open() throws {
        guard let open = callbacks.open else { return }
        let rc = open(callbacks.user_data)
        if rc != 0 { throw OpenFailed(code: rc) }
    }

    func export(_ snapshots: [MetricSnapshot]) throws {
        let rc = CLayout.withSnapshots(snapshots, stride: strides.snapshot) { pointer, count in
            callbacks.export_snapshots(callbacks.user_data, pointer, count)
        }
        if rc != 0 { throw ExportFailed(code: rc) }
    }

    func close() {
        callbacks.close?(callbacks.user_data)
    }
}

extension CallbackSink: PendingBatchExporting {
    /// A flush's batch as one C array, strings borrowed from each series'
    /// ``CKeyLayout`` (valid during the callback), with the buckets of the
    /// distribution metrics' pending data.
    func export(_ batch: [PendingBatchEntry], now: Double, wall: Double, withDistributions: Bool) throws {
        let rc = batch.withUnsafeBufferPointer { items in
            // Most managers have no distribution metric: no bucket pass at all.
            guard withDistributions else { return export(items, now: now, wall: wall) { _, _ in } }
            return CLayout.withBuckets(count: items.count, { i in
                items[i].series._withUnsafeGuaranteedRef { $0.takenDistribution }
            }) { buckets in
                export(items, now: now, wall: wall, buckets)
            }
        }
        if rc != 0 { throw ExportFailed(code: rc) }
    }

    /// Lays `items` out as C snapshots, `buckets` setting each one's
    /// distribution fields, and calls the export callback. The dimension
    /// pairs of keys that keep none (``CKeyLayout``) are written to one
    /// temporary array beside the snapshots', freed with it.
    @inline(__always)
    private func export(_ items: UnsafeBufferPointer<PendingBatchEntry>, now: Double,
                        wall: Double, _ buckets: (Int, inout kplm_snapshot) -> Void) -> Int32 {
        let scratchBytes = CKeyLayout.pairsScratchBytes
        return withUnsafeTemporaryAllocation(byteCount: Swift.max(items.count * scratchBytes, 1),
                                             alignment: MemoryLayout<kplm_dimension>.alignment) { pairs in
            CallerLayouts.snapshot.withArray(count: items.count, stride: strides.snapshot, { i in
                SeriesPrefetch.ahead(items, i)
                let pending = items[i].pending
                let end = Double(pending.lastSecond + 1)
                var c = CKeyLayout(record: items[i].record).snapshot(
                    pending.statistics, windowStart: Double(pending.firstSecond), windowEnd: end,
                    timestampUnix: wall - (now - end), pairsScratch: pairs.baseAddress! + i * scratchBytes)
                buckets(i, &c)
                return c
            }, { callbacks.export_snapshots(callbacks.user_data, $0, items.count) })
        }
    }
}

/// A C sink with a `record` callback.
final class EventfulCallbackSink: CallbackSink, EventfulMetricsSink, @unchecked Sendable {
    func record(_ event: MetricEvent) {
        guard let record = callbacks.record else { return }
        CLayout.withEvent(event, size: strides.event) { record(callbacks.user_data, $0) }
    }
}
