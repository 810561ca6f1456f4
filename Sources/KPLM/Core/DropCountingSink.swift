/// A sink that may accept observations it then cannot deliver for a reason
/// of its own (a DogStatsD line longer than a datagram, an EMF document over
/// CloudWatch's limits…), and counts them.
///
/// After every export that returned normally the manager takes the count
/// and adds it to the self-metric `KplmSinkDropped`
/// (`KPLM_METRIC_SINK_DROPPED`; one observation of 1 per item), which is
/// exported like `KplmMetricsRefused` (close's final flush exports it at
/// once). After an export that threw, the count is taken and discarded:
/// that data is kept and offered again, and its drops are counted then.
public protocol DropCountingSink: MetricsSink {
    /// Returns how many items were dropped since the last call, and starts
    /// counting from zero again. Called by the manager right after each
    /// export, never concurrently with open, export or close.
    func takeDroppedCount() -> Int
}
