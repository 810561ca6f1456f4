import Glibc

/// The deterministic order of snapshots: bytewise on UTF-8, never locale- or
/// normalisation-dependent (Swift's `String <` would normalise).
enum ExportOrder {
    /// Bytewise three-way comparison of two strings' UTF-8 (memcmp over
    /// their contiguous storage: a key's strings are native Swift strings).
    static func compare(_ a: String, _ b: String) -> Int {
        var a = a, b = b
        return a.withUTF8 { x in b.withUTF8 { y in compare(x, y) } }
    }

    /// Bytewise three-way comparison of two byte strings: by the bytes they
    /// share, then the shorter first (a key's strings, see ``KeyRecord``).
    static func compare(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>) -> Int {
        let common = Swift.min(x.count, y.count)
        if common > 0 {
            let byBytes = memcmp(x.baseAddress!, y.baseAddress!, common)
            if byBytes != 0 { return byBytes < 0 ? -1 : 1 }
        }
        return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
    }

    /// Whether (nameA, dimsA) sorts strictly before (nameB, dimsB).
    static func precedes(_ nameA: String, _ dimsA: [MetricDimension],
                         _ nameB: String, _ dimsB: [MetricDimension]) -> Bool {
        precedes(nameA, dimsA.lazy.map { (name: $0.name, value: $0.value) },
                 nameB, dimsB.lazy.map { (name: $0.name, value: $0.value) })
    }

    /// Whether key `a` sorts strictly before key `b` (as the name and
    /// dimensions form above; no array is built).
    static func precedes(_ a: MetricKey, _ b: MetricKey) -> Bool {
        precedes(a.name, a.dimensionPairs, b.name, b.dimensionPairs)
    }

    /// The comparison itself: by name, then pair by pair (name bytes, then
    /// value bytes); a prefix sorts first.
    private static func precedes(_ nameA: String, _ pairsA: some Sequence<(name: String, value: String)>,
                                 _ nameB: String, _ pairsB: some Sequence<(name: String, value: String)>) -> Bool {
        let byName = compare(nameA, nameB)
        if byName != 0 { return byName < 0 }
        var x = pairsA.makeIterator(), y = pairsB.makeIterator()
        while true {
            guard let p = x.next() else { return y.next() != nil }
            guard let q = y.next() else { return false }
            let byDimName = compare(p.name, q.name)
            if byDimName != 0 { return byDimName < 0 }
            let byValue = compare(p.value, q.value)
            if byValue != 0 { return byValue < 0 }
        }
    }

    /// Whether series `a` sorts strictly before series `b`.
    static func precedes(_ a: MetricSeries, _ b: MetricSeries) -> Bool {
        KeyRecord.precedes(a.record, b.record)
    }

    /// `series` in export order (as sorting them by `precedes`,
    /// but each key is read once): every key is encoded as bytes whose
    /// memcmp order is export order, and the indices are sorted by those.
    ///
    /// Issue #13: the first flush after 100,000 new keys sorted them by
    /// comparing keys, each comparison reading two keys' records.
    ///
    /// The encoding: the name, then each dimension's name and value; each
    /// string as its UTF-8 bytes, then a 0 (a key's strings hold no NUL:
    /// see ``KeyRecord``). No string's encoding is a proper prefix of
    /// another's, and the byte order of encodings is that of
    /// ``compare(_:_:)`` (the terminator sorts below every byte), so the
    /// first string that differs decides, and a key whose dimensions are a
    /// prefix of another's sorts first, as in `precedes`.
    static func sorted(_ series: [MetricSeries]) -> [MetricSeries] {
        guard series.count > 1 else { return series }
        var bytes: [UInt8] = []
        var ends: [Int] = []   // the end of key i's encoding (it starts where key i - 1's ends)
        ends.reserveCapacity(series.count)
        for s in series {
            s.record.forEachString { encode($0, into: &bytes) }
            ends.append(bytes.count)
        }
        var order = Array(0..<series.count)
        bytes.withUnsafeBufferPointer { buffer in
            let base = buffer.baseAddress!
            order.sort { i, j in
                let startI = i == 0 ? 0 : ends[i - 1], startJ = j == 0 ? 0 : ends[j - 1]
                let countI = ends[i] - startI, countJ = ends[j] - startJ
                let byBytes = memcmp(base + startI, base + startJ, Swift.min(countI, countJ))
                return byBytes != 0 ? byBytes < 0 : countI < countJ
            }
        }
        return order.map { series[$0] }
    }

    /// Appends the encoding of a string's UTF-8 bytes (see ``sorted(_:)``).
    private static func encode(_ utf8: UnsafeBufferPointer<UInt8>, into bytes: inout [UInt8]) {
        bytes.append(contentsOf: utf8)
        bytes.append(0)
    }

    /// Merges two lists already in export order.
    static func merge(_ a: [MetricSeries], _ b: [MetricSeries]) -> [MetricSeries] {
        merge(a, b, by: { $0 })
    }

    /// Merges two lists already in export order of their elements' series.
    static func merge<Element>(_ a: [Element], _ b: [Element], by series: (Element) -> MetricSeries) -> [Element] {
        if a.isEmpty { return b }
        if b.isEmpty { return a }
        var merged: [Element] = []
        merged.reserveCapacity(a.count + b.count)
        var i = 0, j = 0
        while i < a.count && j < b.count {
            if precedes(series(b[j]), series(a[i])) {
                merged.append(b[j])
                j += 1
            } else {
                merged.append(a[i])
                i += 1
            }
        }
        merged.append(contentsOf: a[i...])
        merged.append(contentsOf: b[j...])
        return merged
    }
}
