import KPLM

/// Why a snapshot produced no metric in an EMF event.
public enum EMFDropReason: Error, Sendable, Hashable, CaseIterable {
    /// The snapshot's count is 0 (or negative): nothing was observed.
    case emptyCount
    /// The metric name is empty, is "_aws", or it or one of its derived
    /// names (`<Name>.Count`, `<Name>.Min`, `<Name>.Max`) is longer than 255
    /// characters.
    case invalidName
    /// The namespace (the snapshot's, when the sink has none) is one
    /// CloudWatch refuses: over 255 characters, or starting with ":" or "AWS/".
    case invalidNamespace
    /// A dimension CloudWatch rejects (the rules of
    /// ``CloudWatchDropReason/invalidDimension``), a dimension named "_aws",
    /// or a dimension named like one of the snapshot's own metrics.
    case invalidDimension
    /// More than 30 dimensions remain after blank values are dropped.
    case tooManyDimensions
    /// Sum, min or max is NaN, infinite, or beyond ±2^360.
    case valueOutOfRange
    /// The timestamp is NaN, infinite, negative or beyond 2^53 ms.
    case invalidTimestamp
    /// Even alone, the snapshot's event would exceed the byte limit.
    case eventTooLarge
}

/// The EMF events of some snapshots: one JSON object per element, without
/// a line terminator.
public struct EMFEvents: Sendable, Equatable {
    /// The events, in order of first appearance of their group.
    public var lines: [String]
    /// How many snapshots produced no metric, by reason; reasons that did
    /// not occur are absent.
    public var dropped: [EMFDropReason: Int]
}

/// Turns kplm snapshots into CloudWatch Embedded Metric Format events.
/// Pure: no I/O, no clock reads.
///
/// EMF has no statistic set, so a snapshot named `<Name>` becomes four
/// metrics of one event:
/// - `<Name>`: the sum, with the metric's unit (``KPLMetrics/unit(of:)``);
/// - `<Name>.Count`: the count (a JSON integer), unit "Count";
/// - `<Name>.Min`: the minimum, with the metric's unit;
/// - `<Name>.Max`: the maximum, with the metric's unit.
///
/// Snapshots with the same namespace, the same dimension set (names and
/// values, in any order) and the same timestamp in milliseconds share an
/// event: `{"_aws":{"Timestamp":<ms>,"CloudWatchMetrics":[{"Namespace":…,
/// "Dimensions":[[<names>]],"Metrics":[{"Name":…,"Unit":…},…]}]},
/// "<dimension>":"<value>",…,"<metric>":<value>,…}`. The timestamp is the
/// snapshot's `timestampUnix` × 1000, rounded to an integer. A snapshot
/// without dimensions has the empty dimension set (`"Dimensions":[[]]`).
/// If two snapshots of an event give a metric the same name (and unit),
/// its value is an array of their values, in input order.
///
/// No silent merges (SPEC §10): two keys (name, dimensions) of one
/// namespace never give values to one (namespace, dimension set, metric
/// name), in any export or flush. The rule depends on the key alone, never
/// on the other keys of the export: a key keeps its name unless
/// - its name ends with ".Count", ".Min", ".Max" (the derived metrics'
///   suffixes) or "_<8 hex digits>" (the renamed form): it becomes
///   `<Name>_<8 hex digits>`, the FNV-1a hash of its name
///   ("Foo.Min_3c9a01f2", so "Foo.Min_3c9a01f2.Count" and so on);
/// - a dimension is named "StreamName", "ShardId" or "ErrorCode" (the names
///   "stream", "shard", "error_code" become) or has a blank value (left
///   out): it becomes `<Name>_<8 hex digits>`, the hash of its name,
///   dimension names and blank values.
/// The namespace is not renamed: an export (one manager's) has one, and
/// the sink's namespace replaces it.
///
/// Limits: at most ``maxMetricsPerDirective`` metrics per event and
/// ``maxValuesPerMetric`` values per metric (a snapshot that would go
/// beyond, or would give an existing metric another unit, starts a new
/// event of the same group); at most `maxEventBytes` bytes per event (an
/// event over it is split; a snapshot over it alone is dropped). Snapshots
/// CloudWatch would refuse are dropped and counted (see ``EMFDropReason``):
/// the dimension rules are those of ``CloudWatchRequestBuilder`` — names
/// "stream", "shard", "error_code" become "StreamName", "ShardId",
/// "ErrorCode"; blank values are left out; at most ``maxDimensionsPerSet``
/// dimensions — and values below 2^-260 in magnitude are written as 0.
/// Numbers are written in their shortest round-trip form; strings escape
/// `"`, `\` and U+0000–U+001F.
public enum EMFFormat {
    /// Most metrics in one metric directive (and so one event).
    public static let maxMetricsPerDirective = 100
    /// Most values of one metric in one event.
    public static let maxValuesPerMetric = 100
    /// Most dimensions in one dimension set.
    public static let maxDimensionsPerSet = CloudWatchRequestBuilder.maxDimensions
    /// The namespace used when neither the sink nor the snapshot has one.
    public static let defaultNamespace = "KinesisProducerLibrary"
    /// Most bytes of one event for CloudWatch Logs: 256 KiB less the 26
    /// bytes it counts per event.
    public static let maxEventBytes = 262_118
    /// Most bytes of one event sent as a UDP datagram.
    public static let maxDatagramBytes = 65_507

    /// The EMF events of `snapshots` (see ``EMFFormat``). `namespace`
    /// overrides each snapshot's own; `unitOf` gives the unit of a metric
    /// name.
    public static func events(_ snapshots: [MetricSnapshot], namespace: String? = nil,
                              maxEventBytes: Int = maxEventBytes,
                              unitOf: (String) -> MetricUnit = KPLMetrics.unit(of:)) -> EMFEvents {
        var dropped: [EMFDropReason: Int] = [:]
        var groups: [GroupKey: Int] = [:]
        var members: [[Entry]] = []
        var heads: [GroupKey] = []

        var prepared: [(GroupKey, Entry)?] = []
        prepared.reserveCapacity(snapshots.count)
        for s in snapshots {
            var named = s
            named.name = emittedName(s)
            switch entry(named, namespace: namespace, unit: unitOf(s.name)) {
            case .failure(let reason):
                dropped[reason, default: 0] += 1
                prepared.append(nil)
            case .success(let result):
                prepared.append(result)
            }
        }

        for case let (key, e)? in prepared {
            if let index = groups[key] {
                members[index].append(e)
            } else {
                groups[key] = members.count
                members.append([e])
                heads.append(key)
            }
        }

        var lines: [String] = []
        for (key, entries) in zip(heads, members) {
            for chunk in pack(entries[...]) {
                emit(chunk, key, maxEventBytes, into: &lines, dropped: &dropped)
            }
        }
        return EMFEvents(lines: lines, dropped: dropped)
    }

    // MARK: - Preparation

    /// A metric name compared byte for byte, as JSON members are.
    struct Name: Hashable {
        let text: String
        static func == (a: Name, b: Name) -> Bool { ByteIdentity.equal(a.text, b.text) }
        func hash(into hasher: inout Hasher) { ByteIdentity.hash(text, into: &hasher) }
    }

    /// What puts snapshots in one event.
    struct GroupKey: Hashable {
        let namespace: Name
        let timestampMs: Int64
        /// Sorted by name bytes, so that order does not matter.
        let sortedDimensions: [MetricDimension]
    }

    /// One metric value: a count is written as an integer.
    enum Value {
        case integer(Int)
        case real(Double)
    }

    /// A checked snapshot: its dimensions (CloudWatch names, input order)
    /// and its four metrics.
    struct Entry {
        let namespace: String
        let timestampMs: Int64
        let dimensions: [MetricDimension]
        let metrics: [(name: String, unit: MetricUnit, value: Value)]
    }

    static let derivedSuffixes = (count: ".Count", min: ".Min", max: ".Max")

    static func entry(_ s: MetricSnapshot, namespace override: String?,
                      unit: MetricUnit) -> Result<(GroupKey, Entry), EMFDropReason> {
        guard s.count > 0 else { return .failure(.emptyCount) }

        let countName = s.name + derivedSuffixes.count
        let minName = s.name + derivedSuffixes.min
        let maxName = s.name + derivedSuffixes.max
        guard !s.name.isEmpty, !ByteIdentity.equal(s.name, "_aws"),
              [countName, minName, maxName].allSatisfy({
                  $0.unicodeScalars.count <= CloudWatchRequestBuilder.maxMetricNameLength
              }) else { return .failure(.invalidName) }
        let names = [s.name, countName, minName, maxName]

        let namespace = override ?? (s.namespace.isEmpty ? defaultNamespace : s.namespace)
        do {
            try CloudWatchRequestBuilder.checkNamespace(namespace)
        } catch {
            return .failure(.invalidNamespace)
        }

        var dimensions: [MetricDimension] = []
        dimensions.reserveCapacity(s.dimensions.count)
        for d in s.dimensions where !CloudWatchRequestBuilder.isBlank(d.value) {
            dimensions.append(MetricDimension(CloudWatchRequestBuilder.cloudWatchName(d.name), d.value))
        }
        guard dimensions.count <= maxDimensionsPerSet else { return .failure(.tooManyDimensions) }
        for (i, d) in dimensions.enumerated() {
            guard CloudWatchRequestBuilder.isValidDimensionName(d.name), CloudWatchRequestBuilder.isValidDimensionValue(d.value),
                  !ByteIdentity.equal(d.name, "_aws"),
                  !names.contains(where: { ByteIdentity.equal($0, d.name) }) else {
                return .failure(.invalidDimension)
            }
            for earlier in dimensions[..<i] where ByteIdentity.equal(earlier.name, d.name) {
                return .failure(.invalidDimension)
            }
        }

        guard let sum = CloudWatchRequestBuilder.sendable(s.sum), let minimum = CloudWatchRequestBuilder.sendable(s.min),
              let maximum = CloudWatchRequestBuilder.sendable(s.max) else { return .failure(.valueOutOfRange) }

        let ms = (s.timestampUnix * 1000).rounded()
        // Written so that NaN fails.
        guard ms >= 0, ms <= 0x1p53 else { return .failure(.invalidTimestamp) }
        let timestampMs = Int64(ms)

        let sorted = dimensions.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        let key = GroupKey(namespace: Name(text: namespace), timestampMs: timestampMs, sortedDimensions: sorted)
        let e = Entry(namespace: namespace, timestampMs: timestampMs, dimensions: dimensions, metrics: [
            (s.name, unit, .real(sum)),
            (countName, .count, .integer(s.count)),
            (minName, unit, .real(minimum)),
            (maxName, unit, .real(maximum)),
        ])
        return .success((key, e))
    }

    /// Dimension names that the CloudWatch renaming produces ("stream"
    /// becomes "StreamName"...): a key giving one of them as is could meet
    /// a key renamed to it.
    static let reservedDimensionNames = ["StreamName", "ShardId", "ErrorCode"]

    /// Whether `name` ends with "_" and 8 lower-case hex digits, the form
    /// of a renamed name.
    static func endsWithHash(_ name: String) -> Bool {
        let tail = Array(name.utf8.suffix(9))
        guard tail.count == 9, tail[0] == UInt8(ascii: "_") else { return false }
        return tail.dropFirst().allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// The metric name of a snapshot (SPEC §10), from the key alone: its
    /// own name, unless the name ends with ".Count", ".Min", ".Max" or
    /// "_<8 hex digits>" (the hash of its name is appended), or a dimension
    /// is named "StreamName", "ShardId" or "ErrorCode" or has a blank value
    /// (the hash of its name, dimension names and blank values is appended).
    static func emittedName(_ s: MetricSnapshot) -> String {
        var reshaped = false
        var signature: [MetricDimension] = []
        for d in s.dimensions {
            let blank = CloudWatchRequestBuilder.isBlank(d.value)
            if blank || reservedDimensionNames.contains(where: { ByteIdentity.equal($0, d.name) }) { reshaped = true }
            signature.append(MetricDimension(d.name, blank ? "-" + d.value : ""))
        }
        if reshaped { return s.name + "_" + StableHash.hex8(StableHash.identity(s.name, signature)) }
        let suffixes = [derivedSuffixes.count, derivedSuffixes.min, derivedSuffixes.max]
        if endsWithHash(s.name) || suffixes.contains(where: { s.name.utf8.suffix($0.utf8.count).elementsEqual($0.utf8) }) {
            return s.name + "_" + StableHash.hex8(s.name)
        }
        return s.name
    }

    // MARK: - Packing

    /// The metrics of one event: definitions in first-seen order, values.
    struct Table {
        var order: [Name] = []
        var units: [Name: MetricUnit] = [:]
        var values: [Name: [Value]] = [:]

        /// Whether `e` can join without breaking a limit or a unit.
        func accepts(_ e: Entry) -> Bool {
            var added = 0
            for m in e.metrics {
                let name = Name(text: m.name)
                if let unit = units[name] {
                    guard unit == m.unit, values[name]!.count < EMFFormat.maxValuesPerMetric else { return false }
                } else {
                    added += 1
                }
            }
            return order.count + added <= EMFFormat.maxMetricsPerDirective
        }

        mutating func add(_ e: Entry) {
            for m in e.metrics {
                let name = Name(text: m.name)
                if units[name] == nil {
                    order.append(name)
                    units[name] = m.unit
                }
                values[name, default: []].append(m.value)
            }
        }
    }

    /// Greedy: a snapshot joins the current event if it fits, else starts
    /// the next one. An entry always fits an empty table.
    static func pack(_ entries: ArraySlice<Entry>) -> [[Entry]] {
        var chunks: [[Entry]] = []
        var current: [Entry] = []
        var table = Table()
        for e in entries {
            if !table.accepts(e) {
                chunks.append(current)
                current = []
                table = Table()
            }
            table.add(e)
            current.append(e)
        }
        if !current.isEmpty { chunks.append(current) }
        return chunks
    }

    /// Appends the event of `chunk`, halving it while it is too large.
    static func emit(_ chunk: [Entry], _ key: GroupKey, _ maxBytes: Int, into lines: inout [String],
                     dropped: inout [EMFDropReason: Int]) {
        let text = line(chunk)
        if text.utf8.count <= maxBytes {
            lines.append(text)
        } else if chunk.count == 1 {
            dropped[.eventTooLarge, default: 0] += 1
        } else {
            let half = chunk.count / 2
            // Subsets of a chunk that fit its limits still fit them.
            emit(Array(chunk[..<half]), key, maxBytes, into: &lines, dropped: &dropped)
            emit(Array(chunk[half...]), key, maxBytes, into: &lines, dropped: &dropped)
        }
    }

    // MARK: - JSON

    /// The event of entries that share a group and fit one table.
    static func line(_ chunk: [Entry]) -> String {
        var table = Table()
        for e in chunk { table.add(e) }
        let head = chunk[0]

        var out = "{\"_aws\":{\"Timestamp\":"
        out += String(head.timestampMs)
        out += ",\"CloudWatchMetrics\":[{\"Namespace\":"
        CloudWatchRequestBuilder.appendJSONString(head.namespace, to: &out)
        out += ",\"Dimensions\":[["
        for (i, d) in head.dimensions.enumerated() {
            if i > 0 { out += "," }
            CloudWatchRequestBuilder.appendJSONString(d.name, to: &out)
        }
        out += "]],\"Metrics\":["
        for (i, name) in table.order.enumerated() {
            out += i == 0 ? "{\"Name\":" : ",{\"Name\":"
            CloudWatchRequestBuilder.appendJSONString(name.text, to: &out)
            out += ",\"Unit\":"
            CloudWatchRequestBuilder.appendJSONString(table.units[name]!.name, to: &out)
            out += "}"
        }
        out += "]}]}"
        for d in head.dimensions {
            out += ","
            CloudWatchRequestBuilder.appendJSONString(d.name, to: &out)
            out += ":"
            CloudWatchRequestBuilder.appendJSONString(d.value, to: &out)
        }
        for name in table.order {
            out += ","
            CloudWatchRequestBuilder.appendJSONString(name.text, to: &out)
            out += ":"
            let values = table.values[name]!
            if values.count == 1 {
                append(values[0], to: &out)
            } else {
                CloudWatchRequestBuilder.appendJSONArray(values, to: &out) { append($0, to: &$1) }
            }
        }
        out += "}"
        return out
    }

    static func append(_ v: Value, to out: inout String) {
        switch v {
        case .integer(let n): out += String(n)
        case .real(let x): CloudWatchRequestBuilder.appendJSONNumber(x, to: &out)
        }
    }
}
