/// How much a ``MetricsManager`` records.
///
/// The raw values are those of `kplm_level` in `kplm.h`.
public enum MetricsLevel: Int, Sendable, CaseIterable {
    /// Nothing is recorded: `put` returns at once without allocating, `start`
    /// spawns no thread and opens no sink, flush and snapshots are empty.
    case none = 0
    /// `shardId` and `errorCode` are dropped before the key is formed, so the
    /// registry only holds (name, stream) keys.
    case summary = 1
    /// Every dimension is kept.
    case detailed = 2
}
