import Synchronization
import Glibc

/// Admission of puts, so that close can refuse new puts and then wait for the
/// ones already admitted: nothing accepted can miss the final flush.
///
/// One atomic word: bit 0 = closing, bit 1 = started (the eventful sink may
/// be called), bits 2… = number of puts in progress.
final class PutGate: Sendable {
    private let word = Atomic<UInt64>(0)

    private static let closingBit: UInt64 = 1
    private static let startedBit: UInt64 = 2
    private static let oneInFlight: UInt64 = 4

    /// Admits a put. Returns nil if close has begun (the put must be
    /// refused), else whether the manager was started at admission.
    ///
    /// Ordering: the increment is acquiring-and-releasing so that, once close
    /// has set the closing bit and seen the count drop to zero, every
    /// admitted put's writes happen-before the final flush; and a put that
    /// sees the started bit also sees the sink installed before start.
    @inline(__always)
    func enter() -> Bool? {
        let old = word.wrappingAdd(Self.oneInFlight, ordering: .acquiringAndReleasing).oldValue
        if old & Self.closingBit != 0 {
            leave()
            return nil
        }
        return old & Self.startedBit != 0
    }

    /// Ends a put admitted by ``enter()``.
    @inline(__always)
    func leave() {
        word.wrappingSubtract(Self.oneInFlight, ordering: .releasing)
    }

    /// Whether close has begun.
    var isClosing: Bool { word.load(ordering: .acquiring) & Self.closingBit != 0 }

    /// Lets later puts call the eventful sink.
    func markStarted() { word.bitwiseOr(Self.startedBit, ordering: .releasing) }

    /// Refuses every later put.
    func beginClosing() { word.bitwiseOr(Self.closingBit, ordering: .acquiringAndReleasing) }

    /// Waits until no admitted put is still running. An admitted put only
    /// records its observation (the eventful sink is called after leaving
    /// the gate), so the wait is short and yielding is enough.
    func waitForPutsInProgress() {
        while word.load(ordering: .acquiring) >> 2 != 0 { sched_yield() }
    }
}
