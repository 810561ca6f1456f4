import CKPLM

/// Lays Swift snapshots and events out as the C structs of kplm.h in one
/// temporary allocation (on the stack when small), valid during `body` only.
enum CLayout {
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

    /// Calls `body` with `snapshots` as a C array.
    static func withSnapshots<R>(_ snapshots: [MetricSnapshot],
                                 _ body: (UnsafePointer<kplm_snapshot>, Int) -> R) -> R {
        let dimensionCount = snapshots.reduce(0) { $0 + $1.dimensions.count }
        let snapshotBytes = snapshots.count * MemoryLayout<kplm_snapshot>.stride
        let dimensionBytes = dimensionCount * MemoryLayout<kplm_dimension>.stride
        let total = snapshotBytes + dimensionBytes + stringBytes(snapshots)
        return withUnsafeTemporaryAllocation(byteCount: total, alignment: MemoryLayout<kplm_snapshot>.alignment) { raw in
            let base = raw.baseAddress!
            let structs = base.bindMemory(to: kplm_snapshot.self, capacity: snapshots.count)
            var dims = (base + snapshotBytes).bindMemory(to: kplm_dimension.self, capacity: dimensionCount)
            var cursor = (base + snapshotBytes + dimensionBytes).bindMemory(to: CChar.self, capacity: total - snapshotBytes - dimensionBytes)
            for (i, s) in snapshots.enumerated() {
                let name = copy(s.name, &cursor)
                copy(s.dimensions, into: dims, &cursor)
                (structs + i).initialize(to: kplm_snapshot(
                    name: name, count: UInt64(s.count), sum: s.sum, min: s.min, max: s.max,
                    dimensions: s.dimensions.isEmpty ? nil : UnsafePointer(dims),
                    dimension_count: s.dimensions.count,
                    window_start: s.windowStart, window_end: s.windowEnd, timestamp_unix: s.timestampUnix))
                dims += s.dimensions.count
            }
            return body(UnsafePointer(structs), snapshots.count)
        }
    }

    /// Calls `body` with `event` as a C struct.
    static func withEvent<R>(_ event: MetricEvent, _ body: (UnsafePointer<kplm_event>) -> R) -> R {
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
            var e = kplm_event(name: name, value: event.value, timestamp: event.timestamp,
                               dimensions: event.dimensions.isEmpty ? nil : UnsafePointer(dims),
                               dimension_count: event.dimensions.count)
            return body(&e)
        }
    }
}
