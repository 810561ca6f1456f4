import CKPLMShims
import Synchronization

/// A metric's first cache line: its ``CellTable`` and, beside it, every
/// other field the common case of a put needs. A C handle, and a key index
/// entry, point at it; its address gives the metric's dense cells'.
///
/// Issue #13: with 100,000 keys put in random order, a put pays one memory
/// access per line it touches. A put through a C handle used to read the
/// handle object (its flags, gate and generation: one or two lines), then
/// the cell table (a separate allocation), then the cell. It then read this
/// line and its cell, side by side; a put by handle now reads its cell
/// only (the cell's tag repeats the gate and flags, see
/// ``tryPutCommonCase(_:)``), and this line when it starts a slot.
///
/// ## Layout (64 bytes, 64-byte aligned: always one line)
///
///      0  the cell table: its overflow word, then the cells of writer
///         indices 0-3 (``CellTable``, 40 bytes)
///     40  gate        address of the manager's gate word (``PutGate``)
///     48  generation  the manager's fork generation (``ForkGuard``)
///     56  metric      the ``Metric`` (unretained) | flags in the low bits
///                     (``plainCells``, ``distributionCells``)
///
/// The series (the metric's own object: ``MetricSeries`` is ``Metric``'s
/// subclass) allocates the line (its cell table) and frees it; ``Metric``'s
/// initialiser writes words 40-63 once, before anything can see it (a
/// metric is published through the registry's lock, a key index entry's
/// release store, or a handle returned to the caller). They are read-only
/// afterwards: relaxed loads. The line lives as long as the metric: a
/// header reached from a live metric (or C handle) is valid.
@usableFromInline
package struct MetricHeader {
    /// The line (bound to eight `Atomic<UInt>` words).
    @usableFromInline package let words: UnsafeMutablePointer<Atomic<UInt>>

    @inlinable @inline(__always)
    init(words: UnsafeMutablePointer<Atomic<UInt>>) { self.words = words }

    /// The header at `address` (a C handle).
    @inlinable @inline(__always)
    package init(address: UnsafeRawPointer) {
        words = UnsafeMutablePointer(mutating: address.assumingMemoryBound(to: Atomic<UInt>.self))
    }

    /// The line's address (what a C handle is).
    package var address: UnsafeMutableRawPointer { UnsafeMutableRawPointer(words) }

    static let byteCount = 64
    static let alignment = 64
    /// Word indices of the fields after the cell table.
    @usableFromInline static var gateWordIndex: Int { 5 }
    @usableFromInline static var generationWordIndex: Int { 6 }
    @usableFromInline static var metricWordIndex: Int { 7 }

    /// Flag: the put's common case is a plain metric's (writer cells and the
    /// system clock: the second comes from the ticker).
    @usableFromInline static var plainCells: UInt { 1 }
    /// Flag: the common case is a distribution metric's (writer cells and
    /// the system clock). Neither flag: every put takes the general path.
    @usableFromInline static var distributionCells: UInt { 2 }
    @usableFromInline package static var flagMask: UInt { 3 }

    /// A new line (from the shims' pool of lines: lines of all keys side by
    /// side): an empty cell table, the other fields zero (no flag: a put
    /// through it takes the general path until ``publish``).
    static func allocate() -> MetricHeader {
        // (Out of memory traps, as any Swift allocation does.)
        guard let raw = kplmshim_block_alloc(Int32(KPLMSHIM_POOL_LINES)) else {
            fatalError("kplm: out of memory")
        }
        let words = raw.bindMemory(to: Atomic<UInt>.self, capacity: byteCount / 8)
        for i in 0..<(byteCount / 8) { (words + i).initialize(to: Atomic(0)) }
        return MetricHeader(words: words)
    }

    /// Frees the line (the cell table's overflow table and cells are freed
    /// by the caller first: see ``CellTable/deallocateOverflow()``).
    func deallocate() {
        words.deinitialize(count: Self.byteCount / 8)
        kplmshim_block_free(Int32(KPLMSHIM_POOL_LINES), words)
    }

    /// Writes the fields after the cell table (once, before the metric is
    /// published). Objects are at least 16-byte aligned: the flags fit in
    /// the metric's low bits.
    func publish(gate: UnsafeMutablePointer<Atomic<UInt64>>, generation: UInt64,
                 metric: Unmanaged<Metric>, flags: UInt) {
        let bits = UInt(bitPattern: metric.toOpaque())
        precondition(bits & Self.flagMask == 0 && flags & ~Self.flagMask == 0)
        words[Self.gateWordIndex].store(UInt(bitPattern: gate), ordering: .relaxed)
        words[Self.generationWordIndex].store(UInt(generation), ordering: .relaxed)
        words[Self.metricWordIndex].store(bits | flags, ordering: .relaxed)
    }

    /// The cell table (the line's first 40 bytes).
    @inlinable @inline(__always)
    var cells: CellTable { CellTable(words: words) }

    /// The manager's gate word.
    @inlinable @inline(__always)
    var gateWord: UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutablePointer(bitPattern: words[Self.gateWordIndex].load(ordering: .relaxed))!
    }

    /// The manager's fork generation.
    @inlinable @inline(__always)
    var generation: UInt64 { UInt64(words[Self.generationWordIndex].load(ordering: .relaxed)) }

    /// The flags of the put's common case (``plainCells``,
    /// ``distributionCells``, or none).
    package var flags: UInt { words[Self.metricWordIndex].load(ordering: .relaxed) & Self.flagMask }

    /// The metric this line belongs to (unretained: valid while the caller
    /// holds the metric, or a C handle to it, alive).
    @inlinable @inline(__always)
    package var metric: Unmanaged<Metric> {
        Unmanaged.fromOpaque(UnsafeRawPointer(bitPattern: words[Self.metricWordIndex].load(ordering: .relaxed)
                                                  & ~Self.flagMask)!)
    }

    /// The common case of a put, reading the thread's cell (and this line
    /// only when the put starts a slot): records `value` (finite) and
    /// returns true, or changes nothing and returns false, for
    /// ``Metric/putGeneral(_:)``.
    ///
    /// Straight-line code with no call, no lock and no locked instruction:
    /// the second from the process-wide ticker, this thread's writer index
    /// from TLS, its dense cell from this line's address, the manager's
    /// gate and the put flags from the cell's tag (``WriterCell/Offset/tag``,
    /// set when the thread made the cell), one section on the cell (which,
    /// for the first put since a read emptied the slot, starts it and logs
    /// the key: ``StartedSlotLogs``). Anything else (level none, an
    /// injected clock, no ticker, no writer index or cell yet, a fork,
    /// closing, an eventful sink, a new second for this cell, no room in
    /// the thread's log, a removed key) is left to the general path.
    @inlinable @inline(__always)
    package func tryPutCommonCase(_ value: Double) -> Bool {
        let writerPlus1 = Int(kplmshim_writer_raw())   // this thread's writer index + 1, or <= 0
        guard _fastPath(writerPlus1 > 0) else { return false }
        return tryPutThroughCell(value, writerPlus1: writerPlus1)
    }

    /// ``tryPutCommonCase(_:)`` once the calling thread's writer index is
    /// known (`writerPlus1`: its raw TLS value, > 0): for the C ABI's key
    /// index, which finds this line from its entry.
    @inlinable @inline(__always)
    package func tryPutThroughCell(_ value: Double, writerPlus1: Int) -> Bool {
        // The cell's address follows from this line's (dense cells: a word
        // of the line's chunk, which its other keys share, in the cache),
        // and the cell's tag holds what the put would read here (the gate,
        // the flags): the put reads the cell, not this line (at many keys,
        // one miss instead of two side by side). A cell not made yet, or a
        // metric whose puts take the general path, has no region or no tag.
        guard let base = kplmshim_dense_cell_of(words, Int32(writerPlus1)) else { return false }
        let cell = WriterCell(base: base)
        let tag = cell.tag
        guard _fastPath(tag & Self.flagMask != 0) else { return false }
        let gate = UnsafeMutablePointer<Atomic<UInt64>>(bitPattern: tag & ~Self.flagMask)!
        let second = kplmshim_cached_second()
        guard _fastPath(second != Int64.min && !ForkGuard.isInherited(PutGate.generation(gate: gate)))
        else { return false }
        // (A removed metric's cells hold the retired slot index: their put
        // reports "not done", see WriterCell.Offset.retiredSlotIndex.)
        if _fastPath(tag & Self.plainCells != 0) {
            return cell.tryPut(value, second: Int64(second), gate: gate, writer: writerPlus1 &- 1, header: words)
        }
        // A distribution metric's common case: one section on this thread's
        // cell counting the value's bucket and its statistics.
        return cell.tryPutDistribution(value, second: Int64(second), gate: gate)
    }
}
