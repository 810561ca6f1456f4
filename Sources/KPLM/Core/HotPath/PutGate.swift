import Synchronization
import Glibc

/// Admission of puts, so that close can refuse new puts and then wait for the
/// ones already admitted: nothing accepted can miss the final flush.
///
/// One atomic word: bit 0 = closing, bit 1 = started with an eventful sink
/// (puts call its record), bits 2… = number of puts in progress on the
/// shared path (puts on writer cells are waited for by their sections).
/// The orderings are argued in `HotPath/Protocol.swift`.
@usableFromInline
final class PutGate: @unchecked Sendable {
    /// The word, in memory of its own so that a put can read it through a
    /// plain pointer (no reference counting on the gate object). Its line
    /// is followed by the table of ``StartedSlotLogs`` (one word per writer
    /// index), which a put's common case reaches from this address.
    @usableFromInline let wordPointer: UnsafeMutablePointer<Atomic<UInt64>>
    @inlinable @inline(__always) var word: UnsafeMutablePointer<Atomic<UInt64>> { wordPointer }

    /// Words from the gate word to the started-slot log table (one line).
    @usableFromInline static var logTableOffsetWords: Int { 8 }
    /// Words from the gate word to the manager's fork generation (in the
    /// gate's line: a put through a writer cell's tag reads it there, see
    /// ``generation(gate:)``).
    @usableFromInline static var generationOffsetWords: Int { 1 }
    private static var byteCount: Int { (logTableOffsetWords + WriterIndices.capacity) * 8 }
    /// The gate word's alignment: its address's low bits are free for
    /// flags (a writer cell's tag, ``WriterCell/Offset/tag``).
    static var alignment: Int { 64 }

    /// A gate for a manager created in fork generation `generation`
    /// (see ``ForkGuard``).
    init(generation: UInt64) {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: Self.byteCount, alignment: Self.alignment)
        wordPointer = raw.bindMemory(to: Atomic<UInt64>.self, capacity: 1)
        wordPointer.initialize(to: Atomic(0))
        (raw + Self.generationOffsetWords * 8).storeBytes(of: generation, as: UInt64.self)
        let table = (raw + Self.logTableOffsetWords * 8).bindMemory(to: Atomic<UInt>.self,
                                                                   capacity: WriterIndices.capacity)
        // Disabled until start (StartedSlotLogs.enable()).
        for w in 0..<WriterIndices.capacity { (table + w).initialize(to: Atomic(StartedSlotLogs.disabledBit)) }
    }

    deinit {
        wordPointer.deinitialize(count: 1)
        startedSlotLogTable.deinitialize(count: WriterIndices.capacity)
        UnsafeMutableRawPointer(wordPointer).deallocate()
    }

    /// The fork generation of the manager whose gate word is `gate`
    /// (written once, before the gate is shared: a plain load).
    @inlinable @inline(__always)
    static func generation(gate: UnsafeMutablePointer<Atomic<UInt64>>) -> UInt64 {
        UnsafeRawPointer(gate).load(fromByteOffset: generationOffsetWords * 8, as: UInt64.self)
    }

    /// The table of ``StartedSlotLogs``, one word per writer index.
    var startedSlotLogTable: UnsafeMutablePointer<Atomic<UInt>> { Self.startedSlotLogTable(gate: wordPointer) }

    /// The same, from the gate word's address (a put's common case).
    @inlinable @inline(__always)
    static func startedSlotLogTable(gate: UnsafeMutablePointer<Atomic<UInt64>>) -> UnsafeMutablePointer<Atomic<UInt>> {
        UnsafeMutableRawPointer(gate + logTableOffsetWords).assumingMemoryBound(to: Atomic<UInt>.self)
    }

    /// Set when close has begun: later puts are refused.
    @inlinable static var closingBit: UInt64 { 1 }
    /// Set at start when the sink is eventful: puts call its `record`.
    @inlinable static var startedWithEventfulSinkBit: UInt64 { 2 }
    /// One put in progress on the shared path (the count's unit).
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
        let old = word.pointee.wrappingAdd(Self.oneInFlight, ordering: .acquiringAndReleasing).oldValue
        if old & Self.closingBit != 0 {
            leave()
            return nil
        }
        return old & Self.startedWithEventfulSinkBit != 0
    }

    /// Ends a put admitted by ``enter()``.
    @inline(__always)
    func leave() {
        word.pointee.wrappingSubtract(Self.oneInFlight, ordering: .releasing)
    }

    /// The gate word, for a put on a writer cell (which does not count
    /// itself in: close waits for its section instead). Acquiring, so that a
    /// put that sees the started bit also sees the sink installed before.
    @inlinable @inline(__always)
    static func load(_ word: UnsafeMutablePointer<Atomic<UInt64>>) -> UInt64 {
        word.pointee.load(ordering: .acquiring)
    }

    /// Whether a word read by ``load()`` says close has begun.
    @inlinable @inline(__always)
    static func isClosing(_ word: UInt64) -> Bool { word & closingBit != 0 }

    /// Whether a word read by ``load()`` says the manager was started with
    /// an eventful sink (the put must call its `record`).
    @inline(__always)
    static func isStartedWithEventfulSink(_ word: UInt64) -> Bool { word & startedWithEventfulSinkBit != 0 }

    /// Whether close has begun.
    @inlinable var isClosing: Bool { word.pointee.load(ordering: .acquiring) & Self.closingBit != 0 }

    /// Lets later puts call the eventful sink (set at start only when the
    /// sink is eventful, so other puts never branch to the notify path).
    func markStartedWithEventfulSink() {
        word.pointee.bitwiseOr(Self.startedWithEventfulSinkBit, ordering: .releasing)
    }

    /// Refuses every later put.
    func beginClosing() { word.pointee.bitwiseOr(Self.closingBit, ordering: .acquiringAndReleasing) }

    /// Waits until no admitted put is still running, or until `deadline`
    /// (monotonic seconds); returns whether none is. An admitted put only
    /// records its observation (the eventful sink is called after leaving
    /// the gate), so the wait is normally short and yielding is enough; the
    /// deadline bounds it when a putting thread is stopped. The caller must
    /// first make sure no put of its own thread is in flight (a signal
    /// handler that interrupted one: see ``CallbackGuard``), since that
    /// one could never end while it waits.
    func waitForPutsInProgress(until deadline: Double) -> Bool {
        var spins = 0
        while word.pointee.load(ordering: .acquiring) >> 2 != 0 {
            spins += 1
            if spins & 63 == 0 && ManagerClock.monotonicNow() >= deadline { return false }
            sched_yield()
        }
        return true
    }
}
