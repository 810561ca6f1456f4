import CKPLM
import Glibc
import KPLM

/// What a `kplm_manager *` points to: the Swift manager, and the data the C
/// ABI keeps beside it (the core knows nothing of C). Created by kplm_new,
/// released by kplm_free. Thread-safe: every field is set once, at creation.
final class CManager: @unchecked Sendable {
    /// The manager the C functions adapt.
    let manager: MetricsManager
    /// Whether the manager records nothing (level none): puts then only
    /// check what costs nothing (``MetricsManager/unrecordedPutOutcome``).
    let recordsNothing: Bool
    /// Puts by names: argument bytes → metric, without Strings.
    let keys: CKeyIndex
    /// The namespace as a C string, for kplm_namespace.
    let namespace: UnsafeMutablePointer<CChar>
    /// Every metric handed out by kplm_metric_get: a C handle is valid until
    /// kplm_free, so its metric outlives a removal of its key (SPEC §10).
    private let pinned = Locked<[ObjectIdentifier: Metric]>([:])

    init(_ manager: MetricsManager) {
        self.manager = manager
        let configuration = manager.configuration
        recordsNothing = configuration.level == .none
        // At SUMMARY several argument tuples map to one metric: room for a few each.
        keys = CKeyIndex(maxEntries: configuration.maxMetrics > 1 << 28 ? 1 << 30 : configuration.maxMetrics * 4)
        namespace = strdup(configuration.namespace)
        // A flush that removes idle keys unlinks them from the index first.
        manager.setKeyRemovalObserver { [keys] removed in keys.remove(removed) }
    }

    /// Keeps `metric` alive until kplm_free (a C handle to it exists).
    func pin(_ metric: Metric) {
        pinned.withLock { $0[ObjectIdentifier(metric)] = metric }
    }

    deinit { free(namespace) }

    /// The dynamic casts the manager's setSink makes on the C sinks, made
    /// before the first kplm_new (see ``MetricsManager/warmUpCasts(of:)``:
    /// a fork() during a first cast would leave the child's casts waiting).
    static let warmUp: Int = MetricsManager.warmUpCasts(of: [CallbackSink(kplm_sink()),
                                                             EventfulCallbackSink(kplm_sink())])
        + (KeyIndexReaders.isAvailable ? 1 : 0) + Int(bitPattern: KeyIndexReaders.words) & 1
}

/// The C data of the manager behind a `kplm_manager *`.
@inline(__always)
func cManager(_ handle: OpaquePointer?) -> CManager? {
    guard let handle else { return nil }
    return Unmanaged<CManager>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
}

/// The manager behind a `kplm_manager *`.
@inline(__always)
func manager(_ handle: OpaquePointer?) -> MetricsManager? {
    cManager(handle)?.manager
}

extension MetricSeries {
    /// The key as C strings: a view of the series' ``KeyRecord``, valid as
    /// long as the series.
    @inline(__always)
    var cKey: CKeyLayout { CKeyLayout(record: record) }
}
