import Synchronization

extension MetricsManager {
    /// Records one observation of `value` (default 1) for the key formed from
    /// `name` and the dimensions the level keeps. Works before ``start()``.
    ///
    /// Throws `invalidArgument` (empty or over-long name or dimension, NUL,
    /// NaN or infinite value), `closed` once close has begun, `limitReached`
    /// for a new key beyond ``MetricsConfiguration/maxMetrics``.
    public func put(_ name: String, _ value: Double = 1, stream: String? = nil,
                    shardId: String? = nil, errorCode: String? = nil) throws(MetricsError) {
        if context.level == .none {
            guard !name.isEmpty else { throw MetricsError(.invalidArgument, "metric name is empty") }
            try Validation.checkValue(value)
            try unrecordedPutOutcome.check()
            return
        }
        try Validation.checkValue(value)
        try Validation.checkName(name)
        try Validation.checkDimension(stream, "stream")
        try Validation.checkDimension(shardId, "shard id")
        try Validation.checkDimension(errorCode, "error code")
        try putValidated(key: formKey(name, stream, shardId, errorCode), value)
    }

    /// Records one observation of `value` for the key formed from `name` and
    /// a set of (dimension name, value) pairs in any order (see
    /// ``MetricKey/init(name:dimensions:)``): `put(n, v, stream: s)` and
    /// `put(n, v, dimensions: [("stream", s)])` record on the same key. The
    /// level applies as to the other form (SUMMARY drops "shard" and
    /// "error_code"). Works before ``start()``.
    ///
    /// Throws as ``put(_:_:stream:shardId:errorCode:)`` does, and
    /// `invalidArgument` for a dimension the key refuses (more than 30, a
    /// name given twice, an empty, over-long or NUL-containing name).
    public func put(_ name: String, _ value: Double = 1,
                    dimensions: some Sequence<(String, String)>) throws(MetricsError) {
        try Validation.checkValue(value)
        if context.level == .none {
            guard !name.isEmpty else { throw MetricsError(.invalidArgument, "metric name is empty") }
            try unrecordedPutOutcome.check()
            return
        }
        try Validation.checkName(name)
        try putValidated(key: formKey(MetricKey(name: name, dimensions: dimensions)), value)
    }

    /// Records an observation whose inputs are already validated.
    func putValidated(key: MetricKey, _ value: Double) throws(MetricsError) {
        try metricForPut(key: key).record(value).check()
    }

    /// The metric a put on a validated key records on, created if new.
    /// Runs under a put frame (it may hold the registry lock: see
    /// ``CallbackGuard``); not on the hot path, which finds keys resolved.
    package func metricForPut(key: MetricKey) throws(MetricsError) -> Metric {
        try context.checkNotInherited()
        // Not to create keys after close began; the put itself checks again.
        if context.gate.isClosing { throw MetricsError(.closed, "the manager is closed") }
        try checkNewKey(key)
        return try CallbackGuard.run(for: ObjectIdentifier(self), kind: .put) { () throws(MetricsError) in
            try registry.metric(for: key)
        }
    }

    /// Lets the sink refuse a new key with free-form dimensions (see
    /// ``KeyCheckingSink``). Keys without them are never refused, and cost
    /// nothing here.
    @inline(__always)
    func checkNewKey(_ key: MetricKey) throws(MetricsError) {
        guard !key.otherDimensions.isEmpty, let checker = context.keyChecker.withLock({ $0 }),
              registry.existing(key) == nil else { return }
        try checker.check(newKey: key)
    }

    /// Resolves a key once, for repeated ``Metric/put(_:)`` calls. Same checks
    /// as ``put(_:_:stream:shardId:errorCode:)``. At level none the handle's
    /// puts do nothing.
    public func metric(_ name: String, stream: String? = nil, shardId: String? = nil,
                       errorCode: String? = nil) throws(MetricsError) -> Metric {
        if noopMetric != nil {
            guard !name.isEmpty else { throw MetricsError(.invalidArgument, "metric name is empty") }
            return try metricValidated(key: MetricKey(name: name))
        }
        try Validation.checkName(name)
        try Validation.checkDimension(stream, "stream")
        try Validation.checkDimension(shardId, "shard id")
        try Validation.checkDimension(errorCode, "error code")
        return try metricValidated(key: formKey(name, stream, shardId, errorCode))
    }

    /// Resolves the key formed from `name` and a set of (dimension name,
    /// value) pairs, for repeated ``Metric/put(_:)`` calls. Same checks as
    /// ``put(_:_:dimensions:)``. At level none the handle's puts do nothing.
    public func metric(_ name: String, dimensions: some Sequence<(String, String)>) throws(MetricsError) -> Metric {
        if noopMetric != nil {
            guard !name.isEmpty else { throw MetricsError(.invalidArgument, "metric name is empty") }
            return try metricValidated(key: MetricKey(name: name))
        }
        try Validation.checkName(name)
        return try metricValidated(key: formKey(MetricKey(name: name, dimensions: dimensions)))
    }

    /// Resolves a key whose inputs are already validated.
    package func metricValidated(key: MetricKey) throws(MetricsError) -> Metric {
        if let noopMetric {
            try context.unrecordedPutOutcome.check()
            return noopMetric
        }
        try context.checkNotInherited()
        try checkNewKey(key)
        // A put frame while admitted: a signal handler interrupting this
        // gets invalidState from close instead of waiting for it.
        return try CallbackGuard.run(for: ObjectIdentifier(self), kind: .put) { () throws(MetricsError) in
            guard context.gate.enter() != nil else { throw MetricsError(.closed, "the manager is closed") }
            defer { context.gate.leave() }
            return try registry.metric(for: key)
        }
    }

    /// The key a put forms at this manager's level: SUMMARY drops the shard
    /// and the error code.
    package func formKey(_ name: String, _ stream: String?, _ shardId: String?, _ errorCode: String?) -> MetricKey {
        context.level == .detailed
            ? MetricKey(name: name, stream: stream, shardId: shardId, errorCode: errorCode)
            : MetricKey(name: name, stream: stream)
    }

    /// `key` at this manager's level: SUMMARY drops the shard and the error
    /// code (the free-form dimensions stay).
    package func formKey(_ key: MetricKey) -> MetricKey {
        guard context.level != .detailed, key.shardId != nil || key.errorCode != nil else { return key }
        return MetricKey(name: key.name, stream: key.stream, shardId: nil, errorCode: nil,
                         otherDimensions: key.otherDimensions)
    }

    /// The outcome of a put at level none, where nothing is recorded (see
    /// ``PutContext/unrecordedPutOutcome``), for the C ABI's puts by names,
    /// which check their own arguments first.
    @inlinable @inline(__always) package var unrecordedPutOutcome: PutOutcome {
        context.unrecordedPutOutcome
    }
}
