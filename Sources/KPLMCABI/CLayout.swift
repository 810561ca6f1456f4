import CKPLM
import KPLM

/// Lays Swift snapshots and events out as the C structs of kplm.h in one
/// temporary allocation (on the stack when small), valid during `body` only.
package enum CLayout {
    /// Bytes needed for the NUL-terminated copies of `strings`.
    private static func stringBytes(_ snapshots: [MetricSnapshot]) -> Int {
        var total = 0
        for s in snapshots {
            total += s.name.utf8.count + 1
            for d in s.dimensions { total += d.name.utf8.count + d.value.utf8.count + 2 }
        }
        return total
    }

    /// Copies `s` with a NUL into `cursor`, returning the copy and advancing.
    static func copy(_ s: String, _ cursor: inout UnsafeMutablePointer<CChar>) -> UnsafePointer<CChar> {
        let start = cursor
        let copied: Void? = s.utf8.withContiguousStorageIfAvailable { bytes in
            if let base = bytes.baseAddress {
                UnsafeMutableRawPointer(cursor).copyMemory(from: base, byteCount: bytes.count)
            }
            cursor += bytes.count
        }
        if copied == nil {
            for byte in s.utf8 {
                cursor.pointee = CChar(bitPattern: byte)
                cursor += 1
            }
        }
        cursor.pointee = 0
        cursor += 1
        return UnsafePointer(start)
    }

    /// Copies `dims` as C structs into `out` (trivial structs: plain stores),
    /// their strings at `cursor`.
    static func copy(_ dims: [MetricDimension], into out: UnsafeMutablePointer<kplm_dimension>,
                             _ cursor: inout UnsafeMutablePointer<CChar>) {
        for (i, d) in dims.enumerated() {
            out[i] = kplm_dimension(name: copy(d.name, &cursor), value: copy(d.value, &cursor))
        }
    }

    /// Calls `body` with `snapshots` as a C array of the caller's `stride`
    /// (see ``CallerLayout``).
    static func withSnapshots<R>(_ snapshots: [MetricSnapshot], stride: Int,
                                 _ body: (UnsafePointer<kplm_snapshot>, Int) -> R) -> R {
        // The dimensions and strings first, in one allocation; then the
        // array, each struct pointing into them.
        let dimensionCount = snapshots.reduce(0) { $0 + $1.dimensions.count }
        let dimensionBytes = dimensionCount * MemoryLayout<kplm_dimension>.stride
        let total = dimensionBytes + stringBytes(snapshots)
        return withUnsafeTemporaryAllocation(byteCount: Swift.max(total, 1),
                                             alignment: MemoryLayout<kplm_dimension>.alignment) { raw in
            let base = raw.baseAddress!
            var dims = base.bindMemory(to: kplm_dimension.self, capacity: dimensionCount)
            var cursor = (base + dimensionBytes).bindMemory(to: CChar.self, capacity: total - dimensionBytes)
            var structs: [kplm_snapshot] = []
            structs.reserveCapacity(snapshots.count)
            for s in snapshots {
                let name = copy(s.name, &cursor)
                copy(s.dimensions, into: dims, &cursor)
                let c = kplm_snapshot(name: name, statistics: s.statistics,
                                      dimensions: s.dimensions.isEmpty ? nil : UnsafePointer(dims),
                                      dimensionCount: s.dimensions.count, windowStart: s.windowStart,
                                      windowEnd: s.windowEnd, timestampUnix: s.timestampUnix)
                structs.append(c)
                dims += s.dimensions.count
            }
            return withBuckets(count: snapshots.count, { snapshots[$0].distribution }) { buckets in
                CallerLayouts.snapshot.withArray(count: structs.count, stride: stride, { i in
                    var c = structs[i]
                    buckets(i, &c)
                    return c
                }) { body($0, structs.count) }
            }
        }
    }

    /// Calls `body` with a function that sets the distribution fields of C
    /// snapshot `i` of `count` (buckets, their count, the accuracy; left
    /// zero without a distribution), the buckets laid out in one array valid
    /// during `body`. Nothing is allocated when no snapshot has one.
    static func withBuckets<R>(count: Int, _ distribution: (Int) -> DistributionSketch?,
                               _ body: ((Int, inout kplm_snapshot) -> Void) -> R) -> R {
        // One call of `distribution` per snapshot (a series' reads it under
        // its lock); the arrays start at the first snapshot that has one.
        var accuracies: [Double] = []
        var all: [kplm_bucket] = []
        var spans: [(start: Int, count: Int)] = []
        for i in 0..<count {
            guard let d = distribution(i) else {
                if !spans.isEmpty { spans.append((all.count, 0)) }
                continue
            }
            if spans.isEmpty {
                spans.reserveCapacity(count)
                spans.append(contentsOf: repeatElement((start: 0, count: 0), count: i))
                accuracies = [Double](repeating: 0, count: count)
            }
            let start = all.count
            d.forEachBucket { value, n in
                var bucket = kplm_bucket()   // field by field: a later header may add fields
                bucket.value = value
                bucket.count = n
                all.append(bucket)
            }
            accuracies[i] = d.relativeAccuracy
            spans.append((start, all.count - start))
        }
        guard !spans.isEmpty else { return body { _, _ in } }
        return all.withUnsafeBufferPointer { buffer in
            body { i, c in
                guard spans[i].count > 0 else { return }
                c.buckets = buffer.baseAddress! + spans[i].start
                c.bucket_count = spans[i].count
                c.relative_accuracy = accuracies[i]
            }
        }
    }

    /// Calls `body` with `event` as a C struct of the caller's `size` (see
    /// ``CallerLayout``).
    static func withEvent<R>(_ event: MetricEvent, size: Int, _ body: (UnsafePointer<kplm_event>) -> R) -> R {
        var total = event.name.utf8.count + 1
        for d in event.dimensions { total += d.name.utf8.count + d.value.utf8.count + 2 }
        let dimensionBytes = event.dimensions.count * MemoryLayout<kplm_dimension>.stride
        return withUnsafeTemporaryAllocation(byteCount: dimensionBytes + total,
                                             alignment: MemoryLayout<kplm_dimension>.alignment) { raw in
            let base = raw.baseAddress!
            let dims = base.bindMemory(to: kplm_dimension.self, capacity: event.dimensions.count)
            var cursor = (base + dimensionBytes).bindMemory(to: CChar.self, capacity: total)
            let name = copy(event.name, &cursor)
            copy(event.dimensions, into: dims, &cursor)
            var e = kplm_event()
            e.name = name
            e.value = event.value
            e.timestamp = event.timestamp
            e.dimensions = event.dimensions.isEmpty ? nil : UnsafePointer(dims)
            e.dimension_count = event.dimensions.count
            return CallerLayouts.event.withArray(count: 1, stride: size, { _ in e }, body)
        }
    }
}

extension kplm_snapshot {
    /// The one place a C snapshot is built. Field by field (not the
    /// memberwise init): fields a later header adds stay zero.
    @inline(__always)
    init(name: UnsafePointer<CChar>?, statistics: MetricStatistics, dimensions: UnsafePointer<kplm_dimension>?,
         dimensionCount: Int, windowStart: Double, windowEnd: Double, timestampUnix: Double) {
        self.init()
        self.name = name
        count = UInt64(statistics.count)
        sum = statistics.sum
        min = statistics.min
        max = statistics.max
        self.dimensions = dimensions
        dimension_count = dimensionCount
        window_start = windowStart
        window_end = windowEnd
        timestamp_unix = timestampUnix
    }
}
