import CKPLMShims

/// Detects re-entrant calls: each thread keeps a chain of the managers whose
/// callbacks it is running (one frame on the stack per callback), so that
/// flush, close and free called from inside a callback of the same manager
/// are refused instead of deadlocking or freeing the caller's manager.
enum CallbackGuard {
    private struct Frame {
        var owner: UInt
        var previous: UnsafeMutableRawPointer?
    }

    /// Runs `body` (a user callback of `owner`) with a frame pushed.
    @inline(__always)
    static func run<R, E: Error>(for owner: ObjectIdentifier, _ body: () throws(E) -> R) throws(E) -> R {
        var frame = Frame(owner: UInt(bitPattern: owner),
                          previous: kplmshim_callback_frame_get())
        return try withUnsafeMutablePointer(to: &frame) { (p) throws(E) -> R in
            kplmshim_callback_frame_set(UnsafeMutableRawPointer(p))
            defer { kplmshim_callback_frame_set(p.pointee.previous) }
            return try body()
        }
    }

    /// Whether this thread is inside a callback of `owner`.
    static func isInsideCallback(of owner: ObjectIdentifier) -> Bool {
        let id = UInt(bitPattern: owner)
        var cursor = kplmshim_callback_frame_get()
        while let frame = cursor?.assumingMemoryBound(to: Frame.self) {
            if frame.pointee.owner == id { return true }
            cursor = frame.pointee.previous
        }
        return false
    }
}
