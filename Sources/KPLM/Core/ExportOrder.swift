import Glibc

/// The deterministic order of snapshots: bytewise on UTF-8, never locale- or
/// normalisation-dependent (Swift's `String <` would normalise).
enum ExportOrder {
    /// Bytewise three-way comparison of two strings' UTF-8 (memcmp over
    /// their contiguous storage: a key's strings are native Swift strings).
    static func compare(_ a: String, _ b: String) -> Int {
        var a = a, b = b
        return a.withUTF8 { x in
            b.withUTF8 { y in
                let common = Swift.min(x.count, y.count)
                if common > 0 {
                    let byBytes = memcmp(x.baseAddress!, y.baseAddress!, common)
                    if byBytes != 0 { return byBytes < 0 ? -1 : 1 }
                }
                return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
            }
        }
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
        precedes(a.key, b.key)
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
