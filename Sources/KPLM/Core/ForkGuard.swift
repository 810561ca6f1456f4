import Glibc
import Synchronization

/// Fork safety. After fork() the child has only the forking thread: the
/// uploader is gone and any lock another thread held is held forever. A
/// manager created before the fork therefore refuses every call in the child
/// (`invalidState`) before touching a lock, and releasing it only leaks it.
/// Managers created in the child work normally.
enum ForkGuard {
    /// Incremented in the child at each fork (never in the parent).
    static let generation = Atomic<UInt64>(0)

    /// Registers the fork handler once; returns the current generation, which
    /// a new manager records as its own.
    static func currentGeneration() -> UInt64 {
        _ = registered
        return generation.load(ordering: .relaxed)
    }

    private static let registered: Bool = {
        _ = generation.load(ordering: .relaxed)   // initialised before any fork
        pthread_atfork(nil, nil) {
            ForkGuard.generation.wrappingAdd(1, ordering: .relaxed)
        }
        return true
    }()

    /// Whether a manager of `bornIn` generation was inherited across a fork.
    @inline(__always)
    static func isInherited(_ bornIn: UInt64) -> Bool {
        generation.load(ordering: .relaxed) != bornIn
    }

    static let inheritedError = MetricsError(
        .invalidState, "this manager was created before fork(); in the child, create a new manager")
}
