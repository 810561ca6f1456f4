extension MetricsManager {
    /// Rolling-window statistics of every metric with a live bucket, sorted
    /// in export order. Empty at level none. Works in every state.
    public func snapshots() -> [MetricSnapshot] {
        let view = view.withLock { $0 }
        let namespace = configuration.namespace
        var result: [MetricSnapshot] = []
        guard view.showsKeysAsRecorded else {
            // KPL output: windows merged into the lines of the tree.
            var leaves: [(MetricKey, (MetricStatistics, Double, Double, Double))] = []
            forEachLiveWindow { series, statistics, start, end, timestamp in
                leaves.append((series.key, (statistics, start, end, timestamp)))
                return true
            }
            for (line, (statistics, start, end, timestamp)) in view.lines(leaves, merge: { a, b in
                a.0.merge(b.0)
                a.1 = Swift.min(a.1, b.1)
                if b.2 > a.2 { a.2 = b.2; a.3 = b.3 }
            }) {
                result.append(MetricSnapshot(name: line.name, count: statistics.count, sum: statistics.sum,
                                             min: statistics.min, max: statistics.max, dimensions: line.dimensions,
                                             windowStart: start, windowEnd: end, timestampUnix: timestamp,
                                             namespace: namespace))
            }
            return result
        }
        result.reserveCapacity(registry.count)   // (not grown, and copied, key by key)
        forEachLiveWindow { series, statistics, start, end, timestamp in
            let key = series.key   // (made from the series' record)
            result.append(MetricSnapshot(name: key.name, count: statistics.count, sum: statistics.sum,
                                         min: statistics.min, max: statistics.max, dimensions: key.dimensions,
                                         windowStart: start, windowEnd: end, timestampUnix: timestamp,
                                         namespace: namespace))
            return true
        }
        return result
    }

    /// Whether reads show every key as recorded (no rollups, extra
    /// dimensions or level filter): a reader may then show each series'
    /// key as it is (the C reads borrow each key's C strings).
    package var showsKeysAsRecorded: Bool { view.withLock { $0.showsKeysAsRecorded } }

    // MARK: Queries

    /// Statistics of one key (formed as a put with these arguments would
    /// form it) over the last `lastSeconds` seconds (1...window, the current
    /// second included), or since the manager was created when nil. An
    /// unknown key has count 0.
    ///
    /// Throws `invalidArgument` for a bad name or dimension or an
    /// out-of-range `lastSeconds`.
    public func statistics(_ name: String, stream: String? = nil, shardId: String? = nil, errorCode: String? = nil,
                           lastSeconds: Int? = nil) throws(MetricsError) -> MetricStatistics {
        try Validation.checkName(name)
        try Validation.checkDimension(stream, "stream")
        try Validation.checkDimension(shardId, "shard id")
        try Validation.checkDimension(errorCode, "error code")
        return try statistics(key: formKey(name, stream, shardId, errorCode), lastSeconds: lastSeconds)
    }

    /// Statistics of the key formed from `name` and a set of (dimension
    /// name, value) pairs (as ``put(_:_:dimensions:)`` forms it), as
    /// ``statistics(_:stream:shardId:errorCode:lastSeconds:)``.
    public func statistics(_ name: String, dimensions: some Sequence<(String, String)>,
                           lastSeconds: Int? = nil) throws(MetricsError) -> MetricStatistics {
        try Validation.checkName(name)
        return try statistics(key: formKey(MetricKey(name: name, dimensions: dimensions)), lastSeconds: lastSeconds)
    }

    /// ``statistics(_:stream:shardId:errorCode:lastSeconds:)`` for a validated key.
    package func statistics(key: MetricKey, lastSeconds: Int?) throws(MetricsError) -> MetricStatistics {
        try checkQuery(lastSeconds)
        guard context.level != .none, let metric = registry.existing(key) else { return .empty }
        return read([metric.series], lastSeconds: lastSeconds)
    }

    /// Statistics of every key with this metric name, merged (the KPL's
    /// per-name view), over the last `lastSeconds` seconds or since creation.
    public func statistics(name: String, lastSeconds: Int? = nil) throws(MetricsError) -> MetricStatistics {
        try Validation.checkName(name)
        try checkQuery(lastSeconds)
        guard context.level != .none else { return .empty }
        return read(registry.allSeries.filter { $0.record.nameEquals(name) }, lastSeconds: lastSeconds)
    }

    // MARK: Distributions (SPEC §6)

    /// The value at quantile `q` (0...1) of the observations of one key of
    /// a distribution metric (see ``setDistribution(_:relativeAccuracy:)``)
    /// over the last `lastSeconds` seconds (1...window), or since the key was
    /// created when nil: within `a·|x|` of the exact sample quantile `x`, the
    /// element of rank ⌊q·(n−1)⌋ of the sorted observations. NaN when there
    /// is no observation (and at level none).
    ///
    /// Throws `invalidArgument` for a bad name or dimension, `q` outside
    /// [0, 1], an out-of-range `lastSeconds`, or a name that is not a
    /// distribution metric.
    public func quantile(_ q: Double, of name: String, dimensions: [(String, String)] = [],
                         lastSeconds: Int? = nil) throws(MetricsError) -> Double {
        guard q >= 0 && q <= 1 else { throw MetricsError(.invalidArgument, "q must be in [0, 1], got \(q)") }
        return try distribution(name, dimensions: dimensions, lastSeconds: lastSeconds)?.quantile(q) ?? .nan
    }

    /// The distribution of one key of a distribution metric, as
    /// ``quantile(_:of:dimensions:lastSeconds:)`` reads it (for several
    /// quantiles from one reading, or its buckets); nil at level none.
    /// Throws as that function.
    public func distribution(_ name: String, dimensions: [(String, String)] = [],
                             lastSeconds: Int? = nil) throws(MetricsError) -> DistributionSketch? {
        try Validation.checkName(name)
        return try distribution(key: formKey(MetricKey(name: name, dimensions: dimensions)), lastSeconds: lastSeconds)
    }

    /// ``distribution(_:dimensions:lastSeconds:)`` for a validated key.
    package func distribution(key: MetricKey, lastSeconds: Int?) throws(MetricsError) -> DistributionSketch? {
        try checkQuery(lastSeconds)
        guard context.level != .none else { return nil }
        guard let accuracy = distributionAccuracy(key.name) else {
            throw MetricsError(.invalidArgument, "\(key.name) is not a distribution metric (see setDistribution)")
        }
        guard let metric = registry.existing(key) else { return DistributionSketch(validAccuracy: accuracy) }
        context.collector.collect([metric.series], windowSeconds: context.windowSeconds)   // what cells hold
        let nowSecond = ManagerClock.second(of: context.clock.now())
        return metric.series.distribution(at: nowSecond, windowSeconds: context.windowSeconds,
                                          lastSeconds: lastSeconds.map { Int64($0) })
            ?? DistributionSketch(validAccuracy: accuracy)
    }

    private func checkQuery(_ lastSeconds: Int?) throws(MetricsError) {
        try context.checkNotInherited()
        if let lastSeconds, !(1...configuration.windowSeconds).contains(lastSeconds) {
            throw MetricsError(.invalidArgument,
                               "seconds must be 1...\(configuration.windowSeconds) (the window), got \(lastSeconds)")
        }
    }

    private func read(_ series: [MetricSeries], lastSeconds: Int?) -> MetricStatistics {
        guard !series.isEmpty else { return .empty }
        context.collector.collect(series, windowSeconds: context.windowSeconds)
        var merged = MetricStatistics.empty
        if let lastSeconds {
            let nowSecond = ManagerClock.second(of: context.clock.now())
            for s in series {
                if let reading = s.window(at: nowSecond, windowSeconds: context.windowSeconds,
                                          lastSeconds: Int64(lastSeconds)) {
                    merged.merge(reading.statistics)
                }
            }
        } else {
            for s in series { merged.merge(s.total) }
        }
        return merged
    }

    /// (count, sum, min, max) over the rolling window of every metric with
    /// a live bucket, by key (``snapshots()`` gives the same windows as
    /// ``MetricSnapshot`` lines, with dimensions and bounds).
    public func windowStatisticsByKey() -> [MetricKey: MetricStatistics] {
        var result: [MetricKey: MetricStatistics] = [:]
        forEachLiveWindow { series, statistics, _, _, _ in
            result[series.key] = statistics
            return true
        }
        return result
    }

    /// The former name of ``windowStatisticsByKey()``.
    @available(*, deprecated, renamed: "windowStatisticsByKey()")
    public func snapshot() -> [MetricKey: MetricStatistics] { windowStatisticsByKey() }

    /// Calls `body` with the rolling window of every metric with a live
    /// bucket, in export order, until it returns false: the series, its
    /// statistics, the window's start and end (manager seconds) and the
    /// end's Unix time; then `then`, while every series `body` was handed
    /// is still alive (no need to retain them). No lock is held while
    /// `body` or `then` runs.
    package func forEachLiveWindow(_ body: (MetricSeries, MetricStatistics, Double, Double, Double) -> Bool,
                                   then: () -> Void = {}) {
        guard context.level != .none, !context.isInherited else { return then() }
        let now = context.clock.now()
        let wall = ManagerClock.wallNow()
        let nowSecond = ManagerClock.second(of: now)
        let all = registry.seriesInExportOrder
        defer { withExtendedLifetime(all) { then() } }
        context.collector.collect(all, windowSeconds: context.windowSeconds)
        all.withUnsafeBufferPointer { all in
            for i in all.indices {
                SeriesPrefetch.ahead(all, i, reading: .stateAndRecord)
                // Borrowed from `all` (a copy would retain and release the
                // series: two locked instructions a key).
                let goOn = all.unretained(at: i)._withUnsafeGuaranteedRef { series -> Bool in
                    guard let reading = series.window(at: nowSecond, windowSeconds: context.windowSeconds) else {
                        return true
                    }
                    let end = Double(reading.newestSecond + 1)
                    return body(series, reading.statistics, Double(reading.oldestSecond), end, wall - (now - end))
                }
                if !goOn { return }
            }
        }
    }

    /// Number of distinct keys recorded (the refused-puts counter excluded).
    public var metricCount: Int { registry.count }
}
