import KPLM

/// The exposition rules of ``PrometheusSink``.
///
/// - Sanitizing (``metricName(_:)``, ``labelName(_:)``): ASCII letters,
///   digits, "_" and ":" (metric names only); any other Unicode scalar
///   becomes "_"; "_" is put in front of a leading digit; a leading run of
///   underscores is cut to one ("__" is reserved).
/// - Family names (``familyName(_:unit:)``), from `<prefix><name>`:
///   sanitized, then snake_case: "_" goes between a lower-case letter or a
///   digit and an upper-case letter, and before the last capital of an
///   acronym followed by a lower-case letter (not by a lone plural "s");
///   all letters lower-cased; ":" becomes "_" (colons are for recording
///   rules); runs of "_" become one and trailing ones go; a name left
///   with nothing but "_" is "unnamed" ("UserRecordsPut" → "user_records_put",
///   "HTTPRequests" → "http_requests", "APIKeyID" → "api_key_id",
///   "ShardIDs" → "shard_ids").
///   Then the unit: a KPL metric in milliseconds gets "_seconds" and its
///   values are divided by 1000 (Prometheus wants base units; promtool
///   lints both "_ms" and "_milliseconds"), one in bytes gets "_bytes"
///   (``KPLMetrics/unit(of:)``). Last, a name ending in "_min" or "_max"
///   (the gauge suffixes: another key's gauge could have that name),
///   "_total" or "_bucket" (counter and histogram suffixes) gets "_value".
///   "kplm_BufferingTime" → "kplm_buffering_time_seconds".
/// - Each family is one summary, samples `<family>_count` and
///   `<family>_sum` (totals since the sink started), and two gauges
///   `<family>_min` and `<family>_max` (of the last export that had the
///   key). A distribution metric's summary (SPEC §6) also has quantile
///   samples `<family>{…,quantile="0.5"}` for ``quantiles`` (0.5, 0.9,
///   0.99, 0.999), over the last export that had the key, within the
///   metric's accuracy; other summaries have none.
/// - No silent merges (SPEC §10): a family claims the names `<family>`,
///   `_count`, `_sum`, `_created`, `_min` and `_max` (``exposedNames(_:)``)
///   for its raw name. A raw name whose family would claim a name another
///   raw name holds ("FooCount" next to "Foo", "a-b" next to "a_b",
///   "BufferingTimeSeconds" next to KPL's "BufferingTime") gets
///   "_<8 hex digits>" after the snake_case name, before the unit: the FNV-1a
///   hash of the raw name (``StableHash``), rehashed with a salt while it
///   still clashes ("kplm_foo_count_1f0e8a3c"). Names are claimed in order of
///   first export, within one export by raw name bytes, and kept until the
///   sink is opened again: the same at every scrape. Likewise a key whose
///   label text another key of its family holds (dimension names that
///   sanitize alike) gets one more label, `kplm_key` ("_" appended while a
///   dimension has that name), whose value is the hash of its dimensions.
///   Other names are left as above.
/// - Label names: sanitized, not snake-cased; "quantile" (reserved in a
///   summary) becomes "quantile_", and a name already used by the key gets
///   "_" appended until it is new.
/// - Label values: `\` → `\\`, `"` → `\"`, newline → `\n` (both formats).
/// - HELP text: `\` → `\\`, newline → `\n`, and in OpenMetrics also
///   `"` → `\"`; other control characters become a space.
/// - Numbers: integers below 1e15 in plain digits, other values with the
///   shortest digits that read back as the same Double (an exponent where
///   Swift would use one, "1e-07"); "+Inf", "-Inf", "NaN"; -0 is "0".
///
/// Names the sink builds from KPL metric names pass `promtool check
/// metrics` without complaint. A user's name can still draw a lint only
/// with words of its own: an abbreviated or non-base unit ("LatencyMs",
/// "WaitMinutes", even a lone "b", "s", "m", "h" or "d" as in "a:b" or
/// "PlanD" → "plan_d"), or a type name ("QueueGauge"); so can a camelCase
/// dimension name given to ``PrometheusSink/export(_:)`` directly. The
/// sink leaves those words be.
public enum PrometheusFormat {
    /// A sanitized metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`, not "__…").
    public static func metricName(_ raw: String) -> String { sanitize(raw, colon: true) }

    /// A sanitized label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not "__…").
    public static func labelName(_ raw: String) -> String { sanitize(raw, colon: false) }

    /// The family name of a raw `<prefix><name>` whose metric has `unit`
    /// (`[a-z0-9_]+`, at most one leading "_", not "_" alone; see the rules
    /// above): "kplm_UserRecordsPut" → "kplm_user_records_put",
    /// ("kplm_RequestTime", milliseconds) → "kplm_request_time_seconds",
    /// ("kplm_KinesisRecordsDataPut", bytes) → "kplm_kinesis_records_data_put_bytes".
    /// With a `disambiguator` (hex digits), "_<disambiguator>" goes after
    /// the snake_case name, before the unit.
    public static func familyName(_ raw: String, unit: MetricUnit = .none, disambiguator: String? = nil) -> String {
        var name = snakeCase(metricName(raw))
        if name == "_" { name = "unnamed" }
        if let disambiguator { name += "_" + disambiguator }
        switch unit {
        case .milliseconds where !name.hasSuffix("_seconds"): name += "_seconds"
        case .bytes where !name.hasSuffix("_bytes"): name += "_bytes"
        default: break
        }
        if ["_min", "_max", "_total", "_bucket"].contains(where: name.hasSuffix) { name += "_value" }
        return name
    }

    /// The metric names a family claims in either format: its own, its
    /// summary's samples (`_count`, `_sum`, and `_created`, which
    /// OpenMetrics reserves) and its gauges (`_min`, `_max`).
    static func exposedNames(_ family: String) -> [String] {
        [family] + ["_count", "_sum", "_created", "_min", "_max"].map { family + $0 }
    }

    /// The family names given to raw names so far (see the rules above).
    struct Naming: Equatable {
        /// Raw `<prefix><name>` → its family name.
        var families: [String: String] = [:]
        /// Claimed metric name → the raw name holding it.
        var owners: [String: String] = [:]

        /// The family name of `raw`: the one it was given, else
        /// ``familyName(_:unit:disambiguator:)``, hashed while any of its
        /// ``exposedNames(_:)`` is held by another raw name.
        mutating func family(of raw: String, unit: MetricUnit) -> String {
            if let known = families[raw] { return known }
            var name = PrometheusFormat.familyName(raw, unit: unit)
            var salt = 0
            while PrometheusFormat.exposedNames(name).contains(where: { owners[$0] != nil }) {
                name = PrometheusFormat.familyName(raw, unit: unit, disambiguator: StableHash.hex8(raw, salt: salt))
                salt += 1
            }
            for claimed in PrometheusFormat.exposedNames(name) { owners[claimed] = raw }
            families[raw] = name
            return name
        }
    }

    /// What values of a metric with `unit` are divided by: 1000 for
    /// milliseconds (exposed in seconds), else 1.
    static func divisor(_ unit: MetricUnit) -> Double { unit == .milliseconds ? 1000 : 1 }

    /// The snake_case form of a sanitized metric name (see the rules above).
    static func snakeCase(_ sanitized: String) -> String {
        let chars = Array(sanitized.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(chars.count + 8)
        func isUpper(_ c: UInt8) -> Bool { c >= 0x41 && c <= 0x5A }
        func isLower(_ c: UInt8) -> Bool { c >= 0x61 && c <= 0x7A }
        func isDigitByte(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
        for (i, c) in chars.enumerated() {
            if isUpper(c), i > 0 {
                let previous = chars[i - 1]
                let nextIsLower = i + 1 < chars.count && isLower(chars[i + 1])
                // A plural "s" stays with its acronym: "IDs", "APIsPerCall".
                let plural = nextIsLower && chars[i + 1] == 0x73 && (i + 2 == chars.count || !isLower(chars[i + 2]))
                if isLower(previous) || isDigitByte(previous) || (isUpper(previous) && nextIsLower && !plural) {
                    out.append(0x5F)
                }
            }
            let byte = isUpper(c) ? c + 0x20 : (c == 0x3A ? 0x5F : c)
            // Runs of "_" become one.
            if byte == 0x5F && out.last == 0x5F { continue }
            out.append(byte)
        }
        while out.count > 1 && out.last == 0x5F { out.removeLast() }
        return out.isEmpty ? "_" : String(decoding: out, as: UTF8.self)
    }

    /// A label value with `\`, `"` and newline escaped (without the quotes).
    public static func labelValue(_ raw: String) -> String {
        escape(raw, quote: true, controls: false)
    }

    /// `value` as a Prometheus sample value (see the rules above).
    public static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Inf" : "+Inf" }
        if value == 0 { return "0" }
        if value.magnitude < 1e15 && value == value.rounded(.towardZero) { return String(Int64(value)) }
        // Swift's description has the shortest round-trip digits: "5.5",
        // "1e-07", "1.2345e+16", "1234567890123456.0". Drop a ".0" mantissa tail.
        let text = value.description
        let parts = text.split(separator: "e", maxSplits: 1, omittingEmptySubsequences: false)
        var mantissa = Substring(parts[0])
        if mantissa.hasSuffix(".0") { mantissa = mantissa.dropLast(2) }
        return parts.count == 2 ? mantissa + "e" + parts[1] : String(mantissa)
    }

    // MARK: - Exposition

    /// One key's accumulated statistics, in the family's unit (seconds for
    /// a metric in milliseconds).
    struct Series: Equatable {
        var count: Int
        var sum: Double
        var min: Double
        var max: Double
        /// For a distribution metric (SPEC §6): the distribution of the last
        /// export that had the key, in the metric's own unit (the summary's
        /// ``quantiles`` are read from it, divided like the statistics).
        var distribution: DistributionSketch? = nil
        /// Its unit divisor (see ``divisor(_:)``).
        var divisor: Double = 1
    }

    /// The quantiles a distribution metric's summary exposes.
    public static let quantiles: [Double] = [0.5, 0.9, 0.99, 0.999]

    /// The series of one family name, by label text (`a="x",b="y"`, "" for
    /// none), with the raw name and unit of its HELP lines (of the first key).
    struct Family: Equatable {
        var rawName: String
        var unit: MetricUnit = .none
        var series: [String: Series] = [:]
        /// Label text → the dimensions (``StableHash/identity(_:_:namespace:)``)
        /// of the key holding it.
        var owners: [String: String] = [:]

        /// Adds a key's `new` statistics (merged with what it had, taking
        /// the new extremes) under its label text, or, when another key
        /// holds that text, under the text with a `kplm_key` label (see the
        /// rules above). `used` are the label names of `labels`.
        mutating func add(_ new: Series, labels: String, used: [String], owner: String) {
            var text = labels
            var salt = 0
            while let holder = owners[text], holder != owner {
                var name = "kplm_key"
                while used.contains(name) { name += "_" }
                text = (labels.isEmpty ? "" : labels + ",") + name + "=\"" + StableHash.hex8(owner, salt: salt) + "\""
                salt += 1
            }
            owners[text] = owner
            if series[text] == nil {
                series[text] = new
            } else {
                series[text]!.merge(new, replacingExtremes: true)
            }
        }
    }

    /// The family name and label text of a snapshot's key.
    static func seriesKey(_ snapshot: MetricSnapshot, prefix: String) -> (base: String, labels: String) {
        (familyName(prefix + snapshot.name, unit: snapshot.unit), labels(snapshot.dimensions).text)
    }

    /// The label name of a dimension: ``labelName(_:)``, and "quantile"
    /// (which would mark a summary's quantile sample) as "quantile_".
    static func dimensionLabelName(_ raw: String) -> String {
        let name = labelName(raw)
        return name == "quantile" ? "quantile_" : name
    }

    /// The label text of a key's dimensions and the label names it uses.
    static func labels(_ dimensions: [MetricDimension]) -> (text: String, used: [String]) {
        var labels = ""
        var used: [String] = []
        for d in dimensions {
            var name = dimensionLabelName(d.name)
            // Two dimensions sanitized alike would repeat a label: keep both.
            while used.contains(name) { name += "_" }
            used.append(name)
            if !labels.isEmpty { labels += "," }
            labels += name + "=\"" + labelValue(d.value) + "\""
        }
        return (labels, used)
    }

    /// A snapshot's statistics in the unit of its family.
    static func series(of snapshot: MetricSnapshot) -> Series {
        let d = divisor(snapshot.unit)
        return Series(count: snapshot.count, sum: snapshot.sum / d, min: snapshot.min / d, max: snapshot.max / d,
                      distribution: snapshot.distribution, divisor: d)
    }

    /// The exposition of `families`: text format 0.0.4, or OpenMetrics 1.0
    /// (ending with "# EOF"); the same lines otherwise. Per family, by name
    /// bytes: the summary `<family>` (`_count` then `_sum` of each series),
    /// then the gauges `<family>_min` and `<family>_max`; series by label
    /// bytes.
    static func render(_ families: [String: Family], openMetrics: Bool) -> [UInt8] {
        var out = ""
        let bases = families.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        for base in bases {
            let family = families[base]!
            let series = family.series.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            let raw = escape(family.rawName, quote: openMetrics, controls: true)
            let unit: String
            switch family.unit {
            case .milliseconds: unit = " In seconds (reported in milliseconds)."
            case .bytes: unit = " In bytes."
            default: unit = ""
            }
            out += "# HELP " + base + " Count and sum of the observations of " + raw + " since the sink started."
                + unit + "\n"
            out += "# TYPE " + base + " summary\n"
            for (labels, s) in series {
                if let d = s.distribution, !d.isEmpty {
                    let prefix = labels.isEmpty ? "{" : "{" + labels + ","
                    for q in quantiles {
                        out += base + prefix + "quantile=\"" + number(q) + "\"} " + number(d.quantile(q) / s.divisor)
                            + "\n"
                    }
                }
                let l = labels.isEmpty ? " " : "{" + labels + "} "
                out += base + "_count" + l + String(s.count) + "\n"
                out += base + "_sum" + l + number(s.sum) + "\n"
            }
            for (suffix, help) in [("_min", "Smallest"), ("_max", "Largest")] {
                let name = base + suffix
                out += "# HELP " + name + " " + help + " observation of " + raw
                    + " in the last export that had the key." + unit + "\n"
                out += "# TYPE " + name + " gauge\n"
                for (labels, s) in series {
                    out += name + (labels.isEmpty ? " " : "{" + labels + "} ")
                        + number(suffix == "_min" ? s.min : s.max) + "\n"
                }
            }
        }
        if openMetrics { out += "# EOF\n" }
        return Array(out.utf8)
    }

    // MARK: - Helpers

    private static func sanitize(_ raw: String, colon: Bool) -> String {
        var out = String.UnicodeScalarView()
        for scalar in raw.unicodeScalars {
            let v = scalar.value
            let keep = isLetter(v) || isDigit(v) || v == 0x5F || (colon && v == 0x3A)
            out.append(keep ? scalar : "_")
        }
        guard let first = out.first else { return "_" }
        if isDigit(first.value) { return "_" + String(out) }
        var text = Substring(String(out))
        if text.hasPrefix("__") {
            while text.first == "_" { text.removeFirst() }
            return "_" + text
        }
        return String(text)
    }

    /// `raw` with `\` and newline escaped, `"` too when `quote`; with
    /// `controls`, other control characters become a space.
    private static func escape(_ raw: String, quote: Bool, controls: Bool) -> String {
        var out = String.UnicodeScalarView()
        for scalar in raw.unicodeScalars {
            switch scalar {
            case "\\": out.append(contentsOf: #"\\"#.unicodeScalars)
            case "\n": out.append(contentsOf: #"\n"#.unicodeScalars)
            case "\"" where quote: out.append(contentsOf: #"\""#.unicodeScalars)
            default:
                let v = scalar.value
                out.append(controls && (v < 0x20 || v == 0x7F) ? " " : scalar)
            }
        }
        return String(out)
    }

    private static func isLetter(_ v: UInt32) -> Bool { (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A) }
    private static func isDigit(_ v: UInt32) -> Bool { v >= 0x30 && v <= 0x39 }
}
