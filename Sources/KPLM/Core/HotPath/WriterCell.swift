import CKPLMShims
import Glibc
import Synchronization

/// One thread's private accumulator for one metric: the hot path of a put.
///
/// ## Layout (raw memory, 128 bytes, 128-byte aligned: two threads' cells never
/// share a line, nor a pair of lines fetched together by the prefetcher)
///
///     0  sequence  Atomic<UInt>  odd while the owner is writing
///     8  active    Atomic<Int>   slot the owner writes (0 or 1); set by readers
///    16  slot 0    count (Atomic<Int>), second, sum, min, max (8 bytes each)
///    56  slot 1    same
///   104  tag       a dense cell's: its manager's gate word | the put flags
///                  (0: the put's common case is not through the cell)
///   112  buckets   per slot, a pointer to its ``CellBuckets`` (distribution
///                  metrics only; made by the owner; 0 = none yet)
///
/// The offsets are named below (``Offset``). A *slot* is one
/// second's accumulator of a cell; a thread's *writer index* selects its
/// cell in every metric.
///
/// ## Protocol
///
/// (The ordering argument for every pair on the hot path, cell sections
/// against the collector, the admission gate and the deferred sink close,
/// is in `HotPath/Protocol.swift`; what follows is the cell's part.)
///
/// A cell has exactly one writer at a time: the thread holding its writer
/// index (see `kplmshim_writer_index`). A put is a *section*:
///
///     sequence = s + 1        (relaxed store: no locked instruction)
///     compiler barrier
///     read the gate (closing?) and `active`
///     update slot[active]     (plain loads and stores)
///     sequence = s + 2        (release store)
///
/// A reader (flush, snapshots, close; one at a time per manager) never writes
/// a slot the writer may be using. To collect a cell it stores the other
/// index in `active`, then calls the heavy barrier (`membarrier`) once for
/// all the cells it flipped, then waits until each cell's sequence is even
/// or has moved on, then drains and resets the slot it flipped away from.
///
/// Why that is enough: the writer's "store sequence, then load active" and
/// the reader's "store active, then load sequence" form a Dekker pair. The
/// membarrier turns the writer's compiler barrier into a full fence for this
/// exchange (it makes every running thread execute one, and a thread not
/// running has passed a context switch, itself a full barrier), so at least
/// one side sees the other's store: either the writer reads the new `active`
/// and never touches the old slot again, or the reader sees the odd sequence
/// of a section that may have read the old `active`, and waits for it to end.
/// A section that starts after the barrier reads the new `active`. The
/// release store that ends a section, read with acquire by the reader, makes
/// the slot's contents visible; the release store of `active`, read with
/// acquire by the writer, orders the reader's reset of a slot before the
/// writer's next use of it (the recycle rule: a slot is written again only
/// after a reader has drained it and flipped back to it).
///
/// The same pair guards close: close sets the gate's closing bit, calls the
/// barrier, and waits for every cell's section in progress, so a put is
/// either refused or recorded before the final flush.
///
/// Seconds: a slot holds one second. When the owner's second changes (or an
/// injected clock goes back) the owner *spills* the slot into the metric's
/// shared series under its lock, inside its section, and starts the slot
/// afresh: once per second per (thread, metric). Statistics only ever merge
/// (count and sum add, min and max compare), so totals stay exact for any
/// doubles, and a late observation lands in its own second.
@usableFromInline
struct WriterCell {
    /// The cell's 128 bytes.
    @usableFromInline let base: UnsafeMutableRawPointer

    /// A cell at `base` (allocated by ``allocate()``).
    @inlinable @inline(__always)
    init(base: UnsafeMutableRawPointer) { self.base = base }

    static let byteCount = 128
    static let alignment = 128

    /// Byte offsets of the cell's fields, and of a slot's fields from the
    /// slot's start (see the layout above).
    @usableFromInline
    enum Offset {
        /// `sequence`: odd while the owner is writing.
        @inlinable static var sequence: Int { 0 }
        /// `active`: the slot the owner writes.
        @inlinable static var active: Int { 8 }
        /// Slot 0; slot i is at `slots + i * slotStride`.
        @inlinable static var slots: Int { 16 }
        /// Bytes per slot: five 8-byte fields.
        @inlinable static var slotStride: Int { 40 }
        /// `active`'s value in the cell of a removed (idle) metric: "slot 2"
        /// starts at byte 96, past slot 1, whose count word (96) and second
        /// word (104) stay zero for the cell's life. A put's common case
        /// therefore finds it empty and takes the general path, which checks
        /// for this value before writing (see ``put(_:second:gate:activity:series:windowSeconds:)``).
        @inlinable static var retiredSlotIndex: Int { 2 }
        /// In a slot: its observations (Atomic<Int>; 0 = empty), the second
        /// they fell in (Int64), their sum, minimum and maximum (Double).
        @inlinable static var slotCount: Int { 0 }
        @inlinable static var slotSecond: Int { 8 }
        @inlinable static var slotSum: Int { 16 }
        @inlinable static var slotMin: Int { 24 }
        @inlinable static var slotMax: Int { 32 }
        /// The tag of a dense cell (``tagBits(gate:flags:)``): what a put by
        /// handle needs besides the cell, so that it reads the cell and not
        /// its metric's header line (issue #13: one line less a put). Byte
        /// 104 is the second word of the retired "slot 2" (see
        /// ``retiredSlotIndex``), read only when that slot's count is not
        /// zero, which it never is. Written by the cell's owner once it has
        /// published the cell in its metric's table; zero in every other
        /// dense cell (the cells of a line read zero when the line is
        /// handed out: `kplmshim_dense_cell`).
        @inlinable static var tag: Int { 104 }
        /// Slot i's ``CellBuckets`` pointer is at `buckets + 8 * i` (bytes
        /// 112 and 120: the sum and min words of the retired "slot 2",
        /// which no put reads: its count word stays zero).
        @inlinable static var buckets: Int { 112 }
    }

    /// Allocates an empty cell (active slot 0, both slots empty), from the
    /// shims' pool of cells (128-byte blocks, 128-byte aligned, side by side).
    /// (For the placeholder of removed keys: a metric's cells are dense, see
    /// ``dense(of:writer:)``.)
    static func allocate() -> WriterCell {
        // (Out of memory traps, as any Swift allocation does.)
        guard let base = kplmshim_block_alloc(Int32(KPLMSHIM_POOL_CELLS)) else {
            fatalError("kplm: out of memory")
        }
        return initialize(base)
    }

    /// The cell of writer index `writer` for the metric whose header line is
    /// `header`, made empty (active slot 0, both slots empty). Its place
    /// follows from the line's (`kplmshim_dense_cell`: the cells of one
    /// writer index for the lines of a chunk sit in one region, in the
    /// lines' order), so that a put can start loading it before the line
    /// arrives (``MetricHeader/tryPutCommonCase(_:)``). Call only for a cell
    /// that is not in the metric's table: nobody else uses it. Released with
    /// ``releaseDense()``; never freed (its line is).
    static func dense(of header: MetricHeader, writer: Int) -> WriterCell {
        // (Out of memory traps, as any Swift allocation does.)
        guard let base = kplmshim_dense_cell(header.address, Int32(writer)) else {
            fatalError("kplm: out of memory")
        }
        return initialize(base)
    }

    /// Makes the 128 bytes at `base` an empty cell.
    private static func initialize(_ base: UnsafeMutableRawPointer) -> WriterCell {
        base.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        (base + Offset.sequence).bindMemory(to: Atomic<UInt>.self, capacity: 1).initialize(to: Atomic(0))
        (base + Offset.active).bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        for slot in 0..<2 {
            (base + Offset.slots + slot * Offset.slotStride + Offset.slotCount)
                .bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        }
        return WriterCell(base: base)
    }

    /// Frees what a dense cell points to (its slots' distribution counts),
    /// when its metric goes: the cell's memory goes with its header line,
    /// whose pool zeroes it (pointers and tag) as the line is given back.
    func releaseDense() {
        for index in 0..<2 { if let b = buckets(index) { CellBuckets.deallocate(b) } }
    }

    /// A dense cell's tag: the address of its manager's gate word (aligned
    /// to ``PutGate/alignment``) with the put flags of its metric's header
    /// line (``MetricHeader/plainCells``, ``MetricHeader/distributionCells``)
    /// in the low bits; 0 when the flags are none.
    static func tagBits(gate: UnsafeMutablePointer<Atomic<UInt64>>, flags: UInt) -> UInt {
        let address = UInt(bitPattern: gate)
        precondition(address & MetricHeader.flagMask == 0)
        return flags == 0 ? 0 : address | flags
    }

    /// Sets the tag (the owner, when it has created the cell).
    func setTag(_ bits: UInt) { base.storeBytes(of: bits, toByteOffset: Offset.tag, as: UInt.self) }

    /// The tag (the owner only: ``MetricHeader/tryPutCommonCase(_:)``).
    @inlinable @inline(__always)
    var tag: UInt { base.load(fromByteOffset: Offset.tag, as: UInt.self) }

    /// Slot `index`'s distribution counts, if made (0 or 1 only).
    @inlinable @inline(__always)
    func buckets(_ index: Int) -> UnsafeMutablePointer<CellBuckets>? {
        UnsafeMutablePointer(bitPattern: base.load(fromByteOffset: Offset.buckets &+ index &* 8, as: UInt.self))
    }

    /// Slot `index`'s distribution counts, made by the owner inside its
    /// section on first use. A reader reads the pointer after acquiring
    /// the section's end, like the slot's other fields.
    private func makeBuckets(_ index: Int, _ mapping: BucketMapping) -> UnsafeMutablePointer<CellBuckets> {
        let made = CellBuckets.allocate(mapping)
        base.storeBytes(of: UInt(bitPattern: made), toByteOffset: Offset.buckets + index * 8, as: UInt.self)
        return made
    }

    // MARK: Fields

    // (Inlinable, like ``tryPut(_:second:gate:writer:header:)``: the C
    // ABI's puts inline the hot path from another module.)
    @inlinable @inline(__always) var sequence: UnsafeMutablePointer<Atomic<UInt>> {
        (base + Offset.sequence).assumingMemoryBound(to: Atomic<UInt>.self)
    }
    @inlinable @inline(__always) var active: UnsafeMutablePointer<Atomic<Int>> {
        (base + Offset.active).assumingMemoryBound(to: Atomic<Int>.self)
    }
    @inlinable @inline(__always) func slot(_ index: Int) -> UnsafeMutableRawPointer {
        base + Offset.slots + index &* Offset.slotStride
    }
    @inlinable @inline(__always) static func count(_ slot: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<Int>> {
        (slot + Offset.slotCount).assumingMemoryBound(to: Atomic<Int>.self)
    }

    // MARK: Writer (the owning thread only)

    /// Bit of the word ``put(_:second:gate:activity:series:windowSeconds:)``
    /// returns when the cell's metric was removed as idle (nothing was
    /// recorded: the caller re-creates the key and puts again). Never set
    /// in a gate word (its in-flight count would need 2^61 puts).
    static let retiredBit: UInt64 = 1 << 63
    /// Bit of the same word when the put started a slot (its first
    /// observation since the slot was drained): the caller lists the metric
    /// as changed (see ``ChangedSeries``).
    static let startedSlotBit: UInt64 = 1 << 62
    /// Bit of the same word when a distribution metric's cell does not take
    /// the value (see ``CellBuckets``): nothing was recorded, the caller
    /// records it on the shared path.
    static let sharedPathBit: UInt64 = 1 << 61

    /// Records `value` in `second` unless the gate says closing or the
    /// metric was removed. Returns the gate word read inside the section
    /// (the caller refuses the put if its closing bit is set, and notifies
    /// an eventful sink if started), with ``retiredBit`` added if the
    /// metric was removed.
    ///
    /// For a distribution metric (`distribution` its mapping) the value's
    /// bucket is counted in the slot's ``CellBuckets`` too, or, if the cell
    /// does not take it, nothing is recorded and ``sharedPathBit`` is set.
    @inline(__always)
    func put(_ value: Double, second: Int64, gate: UnsafeMutablePointer<Atomic<UInt64>>,
             activity: UnsafeMutablePointer<Atomic<Int>>, series: Unmanaged<MetricSeries>,
             windowSeconds: Int64, distribution: BucketMapping? = nil) -> UInt64 {
        let seq = sequence.pointee.load(ordering: .relaxed)
        sequence.pointee.store(seq &+ 1, ordering: .relaxed)
        // Dekker half: the odd sequence must not move below the loads of the
        // gate and of `active` (the reader's membarrier supplies the fence).
        kplmshim_compiler_barrier()
        var word = PutGate.load(gate)
        let index = active.pointee.load(ordering: .acquiring)
        if index == Offset.retiredSlotIndex {
            // Removed as idle: record nothing (the caller puts again on the
            // re-created key). Same Dekker pair as closing (Protocol.swift, 6).
            word |= Self.retiredBit
        } else if let distribution, !PutGate.isClosing(word) {
            word = putDistribution(value, second: second, word: word, index: index, mapping: distribution,
                                   activity: activity, series: series, windowSeconds: windowSeconds)
        } else if !PutGate.isClosing(word) {
            // An eventful sink's record for this put is reserved while the
            // put is still inside its section, so close counts it.
            if PutGate.isStartedWithEventfulSink(word) { PutContext.reserveRecord(activity) }
            let s = slot(index)
            let count = Self.count(s)
            let n = count.pointee.load(ordering: .relaxed)
            if n != 0 && s.load(fromByteOffset: Offset.slotSecond, as: Int64.self) == second {
                // Common case: same second as the last put of this thread.
                Self.add(value, to: s, count: count, holding: n)
            } else {
                if n != 0 { Self.spill(s, n, nil, into: series, windowSeconds: windowSeconds) } else { word |= Self.startedSlotBit }
                Self.start(s, count: count, value: value, second: second)
            }
        }
        // Ends the section: publishes the slot to a reader that acquires it.
        sequence.pointee.store(seq &+ 2, ordering: .releasing)
        return word
    }

    /// ``put(_:second:gate:activity:series:windowSeconds:distribution:)`` of
    /// a distribution metric, inside the section, not closing, not retired:
    /// a new second spills the slot (statistics and buckets) first; then
    /// the value's bucket, then its statistics, or neither.
    @inline(__always)
    private func putDistribution(_ value: Double, second: Int64, word: UInt64, index: Int,
                                 mapping: BucketMapping, activity: UnsafeMutablePointer<Atomic<Int>>,
                                 series: Unmanaged<MetricSeries>, windowSeconds: Int64) -> UInt64 {
        var word = word
        let s = slot(index)
        let count = Self.count(s)
        var n = count.pointee.load(ordering: .relaxed)
        let b = buckets(index) ?? makeBuckets(index, mapping)
        var spilled = false
        if n != 0 && s.load(fromByteOffset: Offset.slotSecond, as: Int64.self) != second {
            Self.spill(s, n, b, into: series, windowSeconds: windowSeconds)
            count.pointee.store(0, ordering: .relaxed)
            n = 0
            spilled = true
        }
        guard CellBuckets.add(value, mapping, to: b) else {
            return word | Self.sharedPathBit
        }
        if PutGate.isStartedWithEventfulSink(word) { PutContext.reserveRecord(activity) }   // as in put(...)
        if n != 0 {
            Self.add(value, to: s, count: count, holding: n)
        } else {
            if !spilled { word |= Self.startedSlotBit }
            Self.start(s, count: count, value: value, second: second)
        }
        return word
    }

    /// The common case of a distribution metric's put, as a leaf (see
    /// ``tryPut(_:second:gate:writer:header:)``): same second, not closing,
    /// no eventful sink, and the value's bucket in the range the slot's
    /// counts hold (a slot is started by the general path).
    /// Records the value (bucket and statistics) and returns true, or
    /// changes nothing and returns false.
    @inlinable @inline(__always)
    func tryPutDistribution(_ value: Double, second: Int64, gate: UnsafeMutablePointer<Atomic<UInt64>>) -> Bool {
        let seq = sequence.pointee.load(ordering: .relaxed)
        sequence.pointee.store(seq &+ 1, ordering: .relaxed)
        kplmshim_compiler_barrier()   // Dekker half, as in put(...)
        let word = PutGate.load(gate)
        let index = active.pointee.load(ordering: .acquiring)
        let s = slot(index)
        let count = Self.count(s)
        let n = count.pointee.load(ordering: .relaxed)
        // (n == 0 for the retired index: its buckets word is never read.)
        var done = word & (PutGate.closingBit | PutGate.startedWithEventfulSinkBit) == 0
            && n != 0 && s.load(fromByteOffset: Offset.slotSecond, as: Int64.self) == second
        if done, let b = buckets(index), let counter = CellBuckets.counter(for: value, in: b) {
            Self.add(value, to: s, count: count, holding: n)
            counter.pointee &+= 1
        } else {
            done = false
        }
        sequence.pointee.store(seq &+ 2, ordering: .releasing)
        return done
    }

    /// The common case only, as a leaf: same second as this thread's last
    /// put on the cell, or an empty slot (the first put since a reader
    /// flipped the cell) that this thread's log takes; not closing, no
    /// eventful sink. Records `value` and returns true; otherwise changes
    /// nothing (the section is opened and closed empty) and returns false,
    /// for the caller to take the general path
    /// (``put(_:second:gate:activity:series:windowSeconds:)``). Having no
    /// call inside keeps the whole put free of register saves.
    ///
    /// `writer` is the caller's writer index (its cell is this one) and
    /// `header` the metric's header line: a put that starts the slot logs
    /// the metric (the address in the header's last word) in the writer's
    /// ``StartedSlotLogs`` log, found beside the gate word, instead of
    /// listing it on the changed list (which reads the metric object).
    @inlinable @inline(__always)
    func tryPut(_ value: Double, second: Int64, gate: UnsafeMutablePointer<Atomic<UInt64>>,
                writer: Int, header: UnsafeMutablePointer<Atomic<UInt>>) -> Bool {
        let seq = sequence.pointee.load(ordering: .relaxed)
        sequence.pointee.store(seq &+ 1, ordering: .relaxed)
        kplmshim_compiler_barrier()   // Dekker half, as in put(...)
        let word = PutGate.load(gate)
        let index = active.pointee.load(ordering: .acquiring)
        let s = slot(index)
        let count = Self.count(s)
        let n = count.pointee.load(ordering: .relaxed)
        let open = word & (PutGate.closingBit | PutGate.startedWithEventfulSinkBit) == 0
        var done = false
        if open && n != 0 && s.load(fromByteOffset: Offset.slotSecond, as: Int64.self) == second {
            Self.add(value, to: s, count: count, holding: n)
            done = true
        } else if open && n == 0 && index != Offset.retiredSlotIndex {
            // The first put since a reader emptied the slot (after a
            // flush, once per (thread, key)): starts it, and logs the
            // metric for the next reader, if this thread's log has room.
            // (A removed metric's cells hold the retired index: not here.)
            let log = PutGate.startedSlotLogTable(gate: gate)[writer].load(ordering: .relaxed)
            if log != 0 && log & StartedSlotLogs.disabledBit == 0 {
                let metric = header[MetricHeader.metricWordIndex].load(ordering: .relaxed) & ~MetricHeader.flagMask
                done = StartedSlotLogs.append(metric, toLog: log) {
                    Self.start(s, count: count, value: value, second: second)
                }
            }
        }
        sequence.pointee.store(seq &+ 2, ordering: .releasing)
        return done
    }

    /// Starts an empty slot with `value` in `second` (owner only, inside
    /// its section).
    @inlinable @inline(__always)
    static func start(_ s: UnsafeMutableRawPointer, count: UnsafeMutablePointer<Atomic<Int>>, value: Double,
                      second: Int64) {
        s.storeBytes(of: second, toByteOffset: Offset.slotSecond, as: Int64.self)
        s.storeBytes(of: value, toByteOffset: Offset.slotSum, as: Double.self)
        s.storeBytes(of: value, toByteOffset: Offset.slotMin, as: Double.self)
        s.storeBytes(of: value, toByteOffset: Offset.slotMax, as: Double.self)
        count.pointee.store(1, ordering: .relaxed)
    }

    /// Adds `value` to a slot that already holds `n` observations of the
    /// current second (owner only, inside its section).
    @inlinable @inline(__always)
    static func add(_ value: Double, to s: UnsafeMutableRawPointer, count: UnsafeMutablePointer<Atomic<Int>>,
                            holding n: Int) {
        // As MetricStatistics.add: a new extreme only if strictly beyond
        // (so -0 after +0 keeps +0 as the max, whichever path recorded it).
        s.storeBytes(of: s.load(fromByteOffset: Offset.slotSum, as: Double.self) + value,
                     toByteOffset: Offset.slotSum, as: Double.self)
        if value < s.load(fromByteOffset: Offset.slotMin, as: Double.self) {
            s.storeBytes(of: value, toByteOffset: Offset.slotMin, as: Double.self)
        }
        if value > s.load(fromByteOffset: Offset.slotMax, as: Double.self) {
            s.storeBytes(of: value, toByteOffset: Offset.slotMax, as: Double.self)
        }
        count.pointee.store(n &+ 1, ordering: .relaxed)
    }

    /// Moves a slot's statistics (and, for a distribution metric, its
    /// bucket counts, then emptied) into the shared series (a new second,
    /// or a drained slot), in one critical section of the series.
    /// Out of line: once per second per (thread, metric).
    @inline(never)
    private static func spill(_ s: UnsafeMutableRawPointer, _ n: Int, _ buckets: UnsafeMutablePointer<CellBuckets>?,
                              into series: Unmanaged<MetricSeries>, windowSeconds: Int64) {
        let statistics = MetricStatistics(count: n, sum: s.load(fromByteOffset: Offset.slotSum, as: Double.self),
                                          min: s.load(fromByteOffset: Offset.slotMin, as: Double.self),
                                          max: s.load(fromByteOffset: Offset.slotMax, as: Double.self))
        let second = s.load(fromByteOffset: Offset.slotSecond, as: Int64.self)
        series._withUnsafeGuaranteedRef {
            $0.record(statistics, second: second, windowSeconds: windowSeconds, buckets: buckets)
        }
        if let buckets { CellBuckets.reset(buckets) }
    }

    // MARK: Reader (under the manager's collect lock)

    /// Step 1: if the active slot holds data, points the writer at the other
    /// (empty) slot and returns the index of the slot to drain after the
    /// barrier. The count is read racily on purpose: a put that lands after
    /// this read is collected next time.
    func flipIfUsed() -> Int? {
        let current = active.pointee.load(ordering: .relaxed)   // only readers store it
        guard current != Offset.retiredSlotIndex,
              Self.count(slot(current)).pointee.load(ordering: .relaxed) != 0 else { return nil }
        active.pointee.store(1 &- current, ordering: .releasing)
        return current
    }

    /// Step 2 (after the heavy barrier): waits for a section that may still
    /// use the old slot.
    func waitForSection() {
        let seq = sequence.pointee.load(ordering: .acquiring)
        guard seq & 1 != 0 else { return }
        var spins = 0
        while sequence.pointee.load(ordering: .acquiring) == seq {
            spins += 1
            if spins > 64 { sched_yield() }   // the writer was preempted mid-section
        }
    }

    /// Like ``waitForSection()``, but gives up at `deadline` (monotonic
    /// seconds; for close, whose wait is bounded). Returns whether no
    /// section that started before the call is still open.
    func waitForSection(until deadline: Double) -> Bool {
        let seq = sequence.pointee.load(ordering: .acquiring)
        guard seq & 1 != 0 else { return true }
        var spins = 0
        while sequence.pointee.load(ordering: .acquiring) == seq {
            spins += 1
            if spins > 64 {
                if spins & 63 == 0 && ManagerClock.monotonicNow() >= deadline { return false }
                sched_yield()
            }
        }
        return true
    }

    /// Whether a section is open on this cell. Called by the cell's owner
    /// thread (only the owner opens sections), it is true only when that
    /// thread is a signal handler that interrupted its own put.
    var isSectionOpen: Bool { sequence.pointee.load(ordering: .relaxed) & 1 != 0 }

    /// Whether both slots are empty (a racy read, for the idle check).
    var isEmpty: Bool {
        Self.count(slot(0)).pointee.load(ordering: .relaxed) == 0
            && Self.count(slot(1)).pointee.load(ordering: .relaxed) == 0
    }

    // MARK: Removal of an idle metric (under the collector's turn lock)

    /// Points the owner at the retired slot index: its later sections
    /// record nothing (see ``Offset/retiredSlotIndex``). The caller then
    /// runs the heavy barrier, waits for the section in progress
    /// (``waitForSection()``) and drains both slots (``drainBoth(into:windowSeconds:)``).
    func markRetired() { active.pointee.store(Offset.retiredSlotIndex, ordering: .releasing) }

    /// After ``markRetired()``, the barrier and the wait: moves what
    /// sections that began before the mark recorded into the series.
    func drainBoth(into series: MetricSeries, windowSeconds: Int64) {
        drain(0, into: series, windowSeconds: windowSeconds)
        drain(1, into: series, windowSeconds: windowSeconds)
    }

    /// Lets the owner record again, in slot 0 (the metric is re-created;
    /// both slots were drained). Release: orders those drains before the
    /// owner's next write, as a flip does.
    func unmarkRetired() { active.pointee.store(0, ordering: .releasing) }

    /// The cell that an empty entry of a removed metric's cell table holds
    /// (as its address bits), so that a thread's first put on that metric
    /// cannot publish a fresh cell: its `active` is the retired index, so
    /// every put on it records nothing and reports the removal. Shared by
    /// every removed metric and never freed; its sequence word is written
    /// by every such put (racily: nobody waits for its sections). Allocated
    /// at the first manager's creation (see `MetricsManager.warmUpRuntime`).
    static let retiredPlaceholderBits: UInt = {
        let cell = allocate()
        cell.markRetired()
        return UInt(bitPattern: cell.base)
    }()

    /// Step 3: moves the drained slot into the series and empties it.
    func drain(_ index: Int, into series: MetricSeries, windowSeconds: Int64) {
        let s = slot(index)
        let n = Self.count(s).pointee.load(ordering: .relaxed)
        guard n != 0 else { return }
        // (A plain metric's cell has no buckets: its second line is not read.)
        Self.spill(s, n, series.isDistribution ? buckets(index) : nil,
                   into: Unmanaged.passUnretained(series), windowSeconds: windowSeconds)
        Self.count(s).pointee.store(0, ordering: .relaxed)
    }
}

/// The process-wide pool of writer indices (see `kplmshim_writer_index`).
enum WriterIndices {
    /// How many threads hold an index now. A thread gives its index back
    /// when it exits; the next thread given it continues its cells.
    static var inUse: Int { Int(kplmshim_writers_in_use()) }
    /// How many threads can hold one at once; more take the shared path
    /// (and the size of every series' cell table).
    static let capacity = Int(KPLMSHIM_MAX_WRITERS)
}
