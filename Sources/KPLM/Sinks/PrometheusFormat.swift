/// The exposition rules of ``PrometheusSink``.
///
/// - Metric names: ASCII letters, digits, "_" and ":"; any other Unicode
///   scalar becomes "_"; "_" is put in front of a leading digit; a leading
///   run of underscores is cut to one ("__" is reserved). Label names: the
///   same without ":".
/// - Label values: `\` → `\\`, `"` → `\"`, newline → `\n` (both formats).
/// - HELP text: `\` → `\\`, newline → `\n`, and in OpenMetrics also
///   `"` → `\"`; other control characters become a space.
/// - Numbers: integers below 1e15 in plain digits, other values with the
///   shortest digits that read back as the same Double (an exponent where
///   Swift would use one, "1e-07"); "+Inf", "-Inf", "NaN"; -0 is "0".
public enum PrometheusFormat {
    /// A sanitized metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`, not "__…").
    public static func metricName(_ raw: String) -> String { sanitize(raw, colon: true) }

    /// A sanitized label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not "__…").
    public static func labelName(_ raw: String) -> String { sanitize(raw, colon: false) }

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

    /// One key's accumulated statistics.
    struct Series: Equatable {
        var count: Int
        var sum: Double
        var min: Double
        var max: Double
    }

    /// The series of one sanitized base name, by label text
    /// (`a="x",b="y"`, "" for none), and the raw name of its HELP lines.
    struct Family: Equatable {
        var rawName: String
        var series: [String: Series] = [:]
    }

    /// The four statistics: suffix, whether a counter, HELP text around the raw name.
    private static let statistics: [(suffix: String, counter: Bool, help: (String, String))] = [
        ("_count", true, ("Number of observations of ", " since the sink started.")),
        ("_sum", true, ("Sum of the observations of ", " since the sink started.")),
        ("_min", false, ("Smallest observation of ", " in the last export that had the key.")),
        ("_max", false, ("Largest observation of ", " in the last export that had the key.")),
    ]

    /// The base name and label text of a snapshot's key.
    static func seriesKey(_ snapshot: MetricSnapshot, prefix: String) -> (base: String, labels: String) {
        var labels = ""
        var used: [String] = []
        for d in snapshot.dimensions {
            var name = labelName(d.name)
            // Two dimensions sanitized alike would repeat a label: keep both.
            while used.contains(name) { name += "_" }
            used.append(name)
            if !labels.isEmpty { labels += "," }
            labels += name + "=\"" + labelValue(d.value) + "\""
        }
        return (metricName(prefix + snapshot.name), labels)
    }

    /// The exposition of `families`: text format 0.0.4, or OpenMetrics 1.0
    /// (counter samples `<family>_total`, ending with "# EOF"). Families by
    /// base name bytes, then count, sum, min, max; series by label bytes.
    static func render(_ families: [String: Family], openMetrics: Bool) -> [UInt8] {
        var out = ""
        let bases = families.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        for base in bases {
            let family = families[base]!
            let series = family.series.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            let help = escape(family.rawName, quote: openMetrics, controls: true)
            for stat in statistics {
                let name = base + stat.suffix
                out += "# HELP " + name + " " + stat.help.0 + help + stat.help.1 + "\n"
                out += "# TYPE " + name + (stat.counter ? " counter\n" : " gauge\n")
                let sample = openMetrics && stat.counter ? name + "_total" : name
                for (labels, s) in series {
                    let value: String
                    switch stat.suffix {
                    case "_count": value = String(s.count)
                    case "_sum": value = number(s.sum)
                    case "_min": value = number(s.min)
                    default: value = number(s.max)
                    }
                    out += sample + (labels.isEmpty ? " " : "{" + labels + "} ") + value + "\n"
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
