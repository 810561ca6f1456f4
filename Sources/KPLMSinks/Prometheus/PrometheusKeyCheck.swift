import KPLM

/// The Prometheus sink refuses a key with free-form dimensions whose
/// dimension names would become a label name that another dimension name
/// already stands for: in the same key ("a-b" next to "a_b"), or in any key
/// checked before ("a-b" on one key, "a_b" on another). Series stay apart
/// without it (see ``PrometheusFormat``), but under renamed labels; the
/// refusal tells the producer at once, with both names. Names compare byte
/// for byte, as keys do.
extension PrometheusSink: KeyCheckingSink {
    /// Throws `invalidArgument` naming both dimension names and the label.
    /// Thread-safe (the owners are kept under a lock).
    public func check(newKey key: MetricKey) throws(MetricsError) {
        let dimensions = key.dimensions
        var labels: [(label: String, raw: String)] = []
        labels.reserveCapacity(dimensions.count)
        for d in dimensions {
            let label = PrometheusFormat.dimensionLabelName(d.name)
            if let other = labels.first(where: { $0.label == label && !ByteIdentity.equal($0.raw, d.name) }) {
                throw Self.clash(other.raw, d.name, label)
            }
            labels.append((label, d.name))
        }
        try labelOwners.withLock { (owners) throws(MetricsError) in
            for (label, raw) in labels {
                if let owner = owners[label], !ByteIdentity.equal(owner, raw) { throw Self.clash(owner, raw, label) }
            }
            for (label, raw) in labels where owners[label] == nil { owners[label] = raw }
        }
    }

    private static func clash(_ first: String, _ second: String, _ label: String) -> MetricsError {
        MetricsError(.invalidArgument, "dimension names \"\(first)\" and \"\(second)\" both become the Prometheus "
                     + "label \(label): rename one of them")
    }
}
