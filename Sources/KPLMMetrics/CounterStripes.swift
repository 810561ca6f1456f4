import CKPLMShims
import KPLM
import Synchronization

/// The running total of one integer `Counter`, striped by thread: what an
/// increment costs is one plain add to a word no other thread writes (no
/// locked instruction, no shared cache line), and each flush takes the
/// increase since the last one (``takeIncrease()``).
///
/// Stripes: one per kplm writer index (the per-thread index the core's
/// writer cells use; a thread that exits gives it back and the next thread
/// dealt it continues the same running total), each a 64-byte line
/// allocated on that index's first increment; plus one shared stripe,
/// allocated likewise and updated with an atomic add, for threads without
/// an index (more than `KPLMSHIM_MAX_WRITERS` at once). A table of 65
/// pointers (520 bytes) per counter, and 64 bytes per (thread, counter)
/// that incremented.
///
/// Why the totals are exact: a stripe has one writer at a time, which
/// stores its new running total (relaxed; a load and a store, not a
/// read-modify-write); the reader (one at a time: the factory's flush
/// hook, or destroy) loads it and keeps what it took per stripe, so each
/// flush exports the difference, modulo 2^64, and their sum telescopes to
/// the running total. An increment that happens before the reader's load
/// (in particular before close, whose hook reads last) is in its value.
final class CounterStripes: @unchecked Sendable {
    private static let ownStripes = Int(KPLMSHIM_MAX_WRITERS)
    /// Stripe pointers by writer index (0: none yet), the shared one last.
    private let table: UnsafeMutablePointer<Atomic<UInt>>
    /// What the reader took from each stripe so far.
    private let taken = Locked([Int64](repeating: 0, count: CounterStripes.ownStripes + 1))

    init() {
        table = .allocate(capacity: Self.ownStripes + 1)
        for i in 0...Self.ownStripes { (table + i).initialize(to: Atomic(0)) }
    }

    deinit {
        for i in 0...Self.ownStripes {
            if let base = UnsafeMutableRawPointer(bitPattern: table[i].load(ordering: .acquiring)) { base.deallocate() }
        }
        table.deinitialize(count: Self.ownStripes + 1)
        table.deallocate()
    }

    /// Adds `amount` to the calling thread's stripe. Thread-safe.
    @inline(__always)
    func add(_ amount: Int64) {
        let raw = Int(kplmshim_writer_raw())
        guard _fastPath(raw > 0) else { return addWithoutOwnIndex(amount) }
        // Hot path: this thread is the stripe's only writer.
        let bits = table[raw &- 1].load(ordering: .acquiring)
        let word = bits != 0 ? Self.word(bits) : stripe(raw &- 1)
        word.pointee.store(word.pointee.load(ordering: .relaxed) &+ amount, ordering: .relaxed)
    }

    /// The increase of the running total since the last call (the first
    /// call: since creation). For one reader at a time (thread-safe: calls
    /// are serialised).
    func takeIncrease() -> Int64 {
        taken.withLock { taken in
            var increase: Int64 = 0
            for i in 0...Self.ownStripes {
                let bits = table[i].load(ordering: .acquiring)
                guard bits != 0 else { continue }
                let total = Self.word(bits).pointee.load(ordering: .relaxed)
                increase &+= total &- taken[i]
                taken[i] = total
            }
            return increase
        }
    }

    /// A thread with no writer index yet gets one; a thread that cannot
    /// (the table is full) adds to the shared stripe, atomically.
    @inline(never)
    private func addWithoutOwnIndex(_ amount: Int64) {
        let index = Int(kplmshim_writer_index())
        if index >= 0 { return add(amount) }
        stripe(Self.ownStripes).pointee.wrappingAdd(amount, ordering: .relaxed)
    }

    /// The running-total word of stripe `index`, allocated (zeroed) on
    /// first use; the first allocation published wins.
    @inline(never)
    private func stripe(_ index: Int) -> UnsafeMutablePointer<Atomic<Int64>> {
        let existing = table[index].load(ordering: .acquiring)
        if existing != 0 { return Self.word(existing) }
        let line = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
        line.initializeMemory(as: UInt8.self, repeating: 0, count: 64)
        line.bindMemory(to: Atomic<Int64>.self, capacity: 1).initialize(to: Atomic(0))
        let (exchanged, winner) = table[index].compareExchange(expected: 0, desired: UInt(bitPattern: line),
                                                               ordering: .acquiringAndReleasing)
        if exchanged { return Self.word(UInt(bitPattern: line)) }
        line.deallocate()
        return Self.word(winner)
    }

    @inline(__always)
    private static func word(_ bits: UInt) -> UnsafeMutablePointer<Atomic<Int64>> {
        UnsafeMutableRawPointer(bitPattern: bits)!.assumingMemoryBound(to: Atomic<Int64>.self)
    }
}
