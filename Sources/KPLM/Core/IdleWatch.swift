/// When to look at a key again to see whether it went idle (SPEC §10), so
/// that a flush looks only at keys that may have, not at every key.
///
/// A flush notes each key it took data from with the second of that data's
/// newest observation: the key cannot be idle before that second has left
/// the window. ``due(atOrBefore:)`` returns the keys noted at or before a
/// second and not noted again since. Few distinct seconds are held at once
/// (about a window's worth), each with its keys. Used by flushes only
/// (under the manager's control lock).
struct IdleWatch {
    private var bySecond: [Int64: [MetricSeries]] = [:]

    /// Notes `series` (its newest observation at `second`, or checked then).
    /// Appends in place (the dictionary's modify accessor): O(1) amortised
    /// however the seconds of successive notes alternate. A series noted at
    /// `second` already is in that second's list: it is not listed again
    /// (a key changed at every flush would otherwise be listed once per
    /// flush of its window: at 100 ms flushes and a 60 s window, 600
    /// references a key).
    mutating func note(_ series: MetricSeries, at second: Int64) {
        // (Invariant: idleWatchSecond == s, s != .min, only while the series
        // is in bySecond[s]; due(atOrBefore:) resets it when it takes s.)
        guard series.idleWatchSecond != second else { return }
        series.idleWatchSecond = second
        bySecond[second, default: []].append(series)
    }

    /// The number of entries held, all seconds together (for tests).
    var entryCount: Int { bySecond.values.reduce(0) { $0 + $1.count } }

    /// Notes every series of `series` at `second`.
    mutating func note(_ series: some Sequence<MetricSeries>, at second: Int64) {
        for s in series { note(s, at: second) }
    }

    /// Takes the series last noted at or before `second`.
    mutating func due(atOrBefore second: Int64) -> [MetricSeries] {
        var due: [MetricSeries] = []
        for noted in bySecond.keys.filter({ $0 <= second }) {
            for s in bySecond.removeValue(forKey: noted)! where s.idleWatchSecond == noted {
                s.idleWatchSecond = .min   // once, even if noted twice at that second
                due.append(s)
            }
        }
        return due
    }
}
