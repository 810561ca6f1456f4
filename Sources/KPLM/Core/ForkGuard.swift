import CKPLMShims

/// Fork safety. After fork() the child has only the forking thread: the
/// uploader is gone and any lock another thread held is held forever. A
/// manager created before the fork therefore refuses every call in the child
/// (`invalidState`) before touching a lock, and releasing it only leaks it.
/// Managers created in the child work normally.
@usableFromInline
enum ForkGuard {
    /// Registers the fork handler once; returns the current generation, which
    /// a new manager records as its own. (The counter is the shims':
    /// `kplmshim_fork_generation`, incremented in the child at each fork.)
    static func currentGeneration() -> UInt64 {
        kplmshim_fork_generation_watch()
        return UInt64(kplmshim_fork_generation_now())
    }

    /// Whether a manager of `bornIn` generation was inherited across a fork.
    @inlinable @inline(__always)
    static func isInherited(_ bornIn: UInt64) -> Bool {
        UInt64(kplmshim_fork_generation_now()) != bornIn
    }

    static let inheritedError = MetricsError(
        .invalidState, "this manager was created before fork(); in the child, create a new manager")
}
