import CKPLMShims

/// Detects re-entrant calls: each thread keeps a chain of the managers whose
/// callbacks (or puts) it is running (one frame on the stack per callback),
/// so that flush, close and free called from inside a callback of the same
/// manager, or from a signal handler that interrupted a put on it, are
/// refused instead of waiting for their own thread, deadlocking or freeing
/// the caller's manager; and so that puts made inside `record` do not call
/// `record` again.
///
/// The chain is one thread-local pointer (reading it is a call into the
/// shims), so frames are pushed only off the hot path: around user
/// callbacks, and around the slow paths of a put (the shared path, a new
/// second or a new cell, an eventful sink, key creation). The common put
/// (``WriterCell/tryPut(_:second:gate:writer:header:)``) pushes none: a
/// signal handler that interrupted it sees its open cell section instead
/// (see ``CellCollector/isOwnSectionOpen(_:)``).
package enum CallbackGuard {
    /// What a frame stands for.
    package enum Kind: UInt {
        /// A sink callback other than `record` (open, export, close, a visit).
        case callback = 0
        /// An eventful sink's `record`.
        case record = 1
        /// A put (or a key lookup) on a slow path, which may hold the gate's
        /// in-flight count or a series or registry lock.
        case put = 2
    }

    private struct Frame {
        var owner: UInt
        var kind: Kind
        var previous: UnsafeMutableRawPointer?
    }

    /// Runs `body` (a user callback of `owner`, or a slow put path) with a
    /// frame pushed. The push and pop are calls into the shims, so they are
    /// ordered with `body` for a signal handler running on this thread.
    @inline(__always)
    package static func run<R, E: Error>(for owner: ObjectIdentifier, kind: Kind = .callback,
                                 _ body: () throws(E) -> R) throws(E) -> R {
        var frame = Frame(owner: UInt(bitPattern: owner), kind: kind,
                          previous: kplmshim_callback_frame_get())
        return try withUnsafeMutablePointer(to: &frame) { (p) throws(E) -> R in
            kplmshim_callback_frame_set(UnsafeMutableRawPointer(p))
            defer { kplmshim_callback_frame_set(p.pointee.previous) }
            return try body()
        }
    }

    /// Whether this thread is inside a callback or a slow put of `owner`
    /// (any kind of frame).
    package static func isInsideCallback(of owner: ObjectIdentifier) -> Bool {
        isInside(of: owner) { _ in true }
    }

    /// Whether this thread is inside a `record` callback of `owner`.
    static func isInsideRecord(of owner: ObjectIdentifier) -> Bool {
        isInside(of: owner) { $0 == .record }
    }

    /// Whether this thread's innermost frame of `owner` is a slow put: a
    /// signal handler interrupted it (or code that put runs without a
    /// callback frame of its own). A `record` callback that a put runs has
    /// its own frame above the put's, and is not inside a put by this test:
    /// the put left its locks before calling it.
    package static func isInsidePut(of owner: ObjectIdentifier) -> Bool {
        let id = UInt(bitPattern: owner)
        var cursor = kplmshim_callback_frame_get()
        while let frame = cursor?.assumingMemoryBound(to: Frame.self) {
            if frame.pointee.owner == id { return frame.pointee.kind == .put }
            cursor = frame.pointee.previous
        }
        return false
    }

    private static func isInside(of owner: ObjectIdentifier, _ matches: (Kind) -> Bool) -> Bool {
        let id = UInt(bitPattern: owner)
        var cursor = kplmshim_callback_frame_get()
        while let frame = cursor?.assumingMemoryBound(to: Frame.self) {
            if frame.pointee.owner == id && matches(frame.pointee.kind) { return true }
            cursor = frame.pointee.previous
        }
        return false
    }
}
