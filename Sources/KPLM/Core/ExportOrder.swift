/// The deterministic order of snapshots: bytewise on UTF-8, never locale- or
/// normalisation-dependent (Swift's `String <` would normalise).
enum ExportOrder {
    /// Bytewise three-way comparison of two strings' UTF-8.
    static func compare(_ a: String, _ b: String) -> Int {
        var ia = a.utf8.makeIterator()
        var ib = b.utf8.makeIterator()
        while true {
            switch (ia.next(), ib.next()) {
            case (nil, nil): return 0
            case (nil, _): return -1
            case (_, nil): return 1
            case let (x?, y?):
                if x != y { return x < y ? -1 : 1 }
            }
        }
    }

    /// Whether (nameA, dimsA) sorts strictly before (nameB, dimsB).
    static func precedes(_ nameA: String, _ dimsA: [MetricDimension],
                         _ nameB: String, _ dimsB: [MetricDimension]) -> Bool {
        let byName = compare(nameA, nameB)
        if byName != 0 { return byName < 0 }
        for (x, y) in zip(dimsA, dimsB) {
            let byDimName = compare(x.name, y.name)
            if byDimName != 0 { return byDimName < 0 }
            let byValue = compare(x.value, y.value)
            if byValue != 0 { return byValue < 0 }
        }
        return dimsA.count < dimsB.count
    }
}
