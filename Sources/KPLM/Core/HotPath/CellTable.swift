import Synchronization

/// A series' ``WriterCell``s by writer index, as address bits (0: none
/// yet): the first ``inlineCount`` entries in the table itself, the others
/// in an overflow table allocated when a thread with a higher writer index
/// first puts on the series (issue #13: most keys are put by a few threads,
/// so a key costs 40 bytes here instead of a pointer per possible writer).
/// The table is the first 40 bytes of its metric's ``MetricHeader`` line.
///
/// Layout: one word holding the overflow table's address (0: none yet;
/// ``retiredOverflowBits``: the series was removed as idle before any such
/// thread put), then the `inlineCount` entries: writer index i at word
/// i + 1, so the hot path indexes the table with the thread's raw TLS value
/// (index + 1) as it is. The overflow table holds the entries of writer
/// indices `inlineCount..<WriterIndices.capacity`.
///
/// Entries are written once each, by compare-exchange (a thread's first
/// put publishes its cell; a removal publishes the retired placeholder in
/// an empty entry: see `MetricSeries.markRetired()`); the overflow word
/// likewise. Readers load with acquire. Thread-safe.
@usableFromInline
struct CellTable {
    /// The overflow word, then `inlineCount` entries.
    @usableFromInline let words: UnsafeMutablePointer<Atomic<UInt>>

    /// The table at `words` (a ``MetricHeader`` line's first five words).
    @inlinable @inline(__always)
    init(words: UnsafeMutablePointer<Atomic<UInt>>) { self.words = words }

    /// Entries held in the table itself.
    @inlinable static var inlineCount: Int { 4 }
    /// Entries held in the overflow table.
    static var overflowCount: Int { WriterIndices.capacity - inlineCount }

    /// Frees the overflow table, if any (not the cells; the table's own
    /// words are part of its ``MetricHeader`` line, freed with it).
    func deallocateOverflow() {
        let overflow = words[0].load(ordering: .acquiring)
        if overflow != 0 && overflow != Self.retiredOverflowBits {
            let table = Self.overflowTable(overflow)
            table.deinitialize(count: Self.overflowCount)
            table.deallocate()
        }
    }

    /// The entry of writer index `writer` (acquire), 0 if none.
    @inlinable @inline(__always)
    func load(_ writer: Int) -> UInt { load(writerPlus1: writer &+ 1) }

    /// The entry of writer index `writerPlus1 - 1` (> 0: the thread's raw
    /// TLS value), 0 if none. The hot path: an index below ``inlineCount``
    /// reads one word; another reads the overflow word, then its entry there.
    @inlinable @inline(__always)
    func load(writerPlus1: Int) -> UInt {
        if _fastPath(writerPlus1 <= Self.inlineCount) { return words[writerPlus1].load(ordering: .acquiring) }
        let overflow = words[0].load(ordering: .acquiring)
        guard overflow != 0 else { return 0 }
        return UnsafeMutablePointer<Atomic<UInt>>(bitPattern: overflow)![writerPlus1 &- 1 &- Self.inlineCount]
            .load(ordering: .acquiring)
    }

    /// The entry of writer index `writer`, allocating the overflow table if
    /// it is needed and missing (the first one published wins).
    func entry(_ writer: Int) -> UnsafeMutablePointer<Atomic<UInt>> {
        if writer < Self.inlineCount { return words + 1 + writer }
        return Self.overflowTable(overflowBitsCreatingTable()) + (writer - Self.inlineCount)
    }

    // MARK: Removal of an idle series (see MetricSeries.markRetired)

    /// Marks every empty entry with the retired placeholder cell, and
    /// returns the cells found in the others. Without an overflow table the
    /// overflow word gets ``retiredOverflowBits`` (a shared table of
    /// placeholders), so no thread can add a cell there either.
    func retireEmptyEntries() -> [WriterCell] {
        var found: [WriterCell] = []
        for i in 1...Self.inlineCount { Self.retire(words + i, into: &found) }
        let (exchanged, overflow) = words[0].compareExchange(
            expected: 0, desired: Self.retiredOverflowBits, ordering: .acquiringAndReleasing)
        if !exchanged && overflow != Self.retiredOverflowBits {
            let table = Self.overflowTable(overflow)
            for i in 0..<Self.overflowCount { Self.retire(table + i, into: &found) }
        }
        return found
    }

    /// Undoes ``retireEmptyEntries()`` for placeholders: those entries (and
    /// a shared overflow word) are empty again. Returns the cells found.
    func clearRetiredEntries() -> [WriterCell] {
        var found: [WriterCell] = []
        for i in 1...Self.inlineCount { Self.clear(words + i, into: &found) }
        let overflow = words[0].load(ordering: .acquiring)
        if overflow == Self.retiredOverflowBits {
            words[0].store(0, ordering: .releasing)
        } else if overflow != 0 {
            let table = Self.overflowTable(overflow)
            for i in 0..<Self.overflowCount { Self.clear(table + i, into: &found) }
        }
        return found
    }

    /// The overflow word of a removed series that had no overflow table:
    /// the address of a table whose every entry is the retired placeholder.
    /// Shared, never freed (allocated with the placeholder at the first
    /// manager's creation, see `MetricsManager.warmUpRuntime`).
    static let retiredOverflowBits = UInt(bitPattern: allocateOverflowTable(filledWith: WriterCell.retiredPlaceholderBits))

    // MARK: Helpers

    private func overflowBitsCreatingTable() -> UInt {
        let existing = words[0].load(ordering: .acquiring)
        if existing != 0 { return existing }
        let table = Self.allocateOverflowTable(filledWith: 0)
        let (exchanged, winner) = words[0].compareExchange(
            expected: 0, desired: UInt(bitPattern: table), ordering: .acquiringAndReleasing)
        if exchanged { return UInt(bitPattern: table) }
        table.deinitialize(count: Self.overflowCount)
        table.deallocate()
        return winner
    }

    private static func allocateOverflowTable(filledWith bits: UInt) -> UnsafeMutablePointer<Atomic<UInt>> {
        let table = UnsafeMutablePointer<Atomic<UInt>>.allocate(capacity: overflowCount)
        for i in 0..<overflowCount { (table + i).initialize(to: Atomic(bits)) }
        return table
    }

    private static func overflowTable(_ bits: UInt) -> UnsafeMutablePointer<Atomic<UInt>> {
        UnsafeMutablePointer<Atomic<UInt>>(bitPattern: bits)!
    }

    private static func retire(_ entry: UnsafeMutablePointer<Atomic<UInt>>, into found: inout [WriterCell]) {
        let (exchanged, existing) = entry.pointee.compareExchange(
            expected: 0, desired: WriterCell.retiredPlaceholderBits, ordering: .acquiringAndReleasing)
        if exchanged || existing == WriterCell.retiredPlaceholderBits { return }
        found.append(WriterCell(base: UnsafeMutableRawPointer(bitPattern: existing)!))
    }

    private static func clear(_ entry: UnsafeMutablePointer<Atomic<UInt>>, into found: inout [WriterCell]) {
        let bits = entry.pointee.load(ordering: .acquiring)
        if bits == WriterCell.retiredPlaceholderBits {
            entry.pointee.store(0, ordering: .releasing)
        } else if bits != 0 {
            found.append(WriterCell(base: UnsafeMutableRawPointer(bitPattern: bits)!))
        }
    }
}
