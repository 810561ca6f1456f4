import CKPLMShims
import Synchronization

/// Per-writer logs of the series whose cell slot a put's common case
/// started, so that a put after a flush (or after a read flipped its cell)
/// reads only the header line and its cell (issue #13).
///
/// A put that starts a slot (its first observation since a reader emptied
/// it) must list its series as changed (``ChangedSeries``): that listing
/// reads and writes the series object (its mark, its reference count) and
/// takes the list's lock, a cache miss of its own once the keys outgrow
/// the caches (500-600 ns a put after a flush at 100,000 keys). Instead the
/// common case appends the series' address to a log of its own writer
/// index, inside its cell section: plain stores to memory only this thread
/// writes, then a release store of the block's count. A reader takes the
/// logs over (``consume(into:)``) before it reads the changed list, and
/// lists each logged series with the writer's bit, as the put would have.
///
/// ## Layout
///
/// The table: one word per writer index (``WriterIndices/capacity``), in
/// the lines after the manager's gate word (``PutGate``): a put reaches it
/// through the header line's gate pointer, no other load. A word holds the
/// address of its writer's log, 0 (none yet) or ``disabledBit`` (the common
/// case starts no slot: before start, or with a flush hook, see ``enable()``).
///
/// A log (64 bytes, one line): its writer's current block (word 0, written
/// by the writer only); the reader's block and index in it (words 1 and 2,
/// the reader's only). A block (``blockBytes``): the next block (word 0,
/// set by the writer once this one is full), the count of entries
/// published (word 1, release store by the writer), the entries (the
/// series' addresses, unretained).
///
/// ## Why nothing is missed, and nothing is read after it is freed
///
/// - A common-case put that starts a slot appends its series inside the
///   cell's section, after writing the slot. A reader that consumes the
///   entry (acquire load of the count) sets the writer's bit in the series'
///   mark and lists it: from then on the argument of ``ChangedSeries``
///   holds as if the put had marked it. An entry the reader does not see
///   yet stays for the next one, and its slot's data stays in the cell
///   until a flush listing the series flips it (a reader that flips it
///   earlier, a snapshot, moves the data to the series' pending, which the
///   entry's listing then exports).
/// - A put in its common case on a slot it did not start writes a slot
///   started since the last flip of that cell, whose start logged or
///   listed the series; so every series with data in a cell is listed or
///   logged, as ``ChangedSeries`` requires.
/// - Entries are unretained. Every reader consumes the logs under the
///   collector's turn before it flips a cell. An idle removal (a flush,
///   under the same turn) consumes them again once it has waited for the
///   sections of the removed keys' cells: an entry is appended only by a
///   section that saw the cell not retired, which began before that wait's
///   barrier and ended before the wait did. So every entry for a removed
///   key is consumed by then, and its key is on the changed list, which
///   retains it (a removed key on the list is taken by the next flush,
///   with whatever it holds, as when a put listed it).
/// - Between two consumptions a (writer, key) starts at most one slot: a
///   slot is started only after a reader flipped the cell, and every reader
///   consumes first. A log holds at most one entry per key a writer put on
///   since the last read.
///
/// Thread-safety: ``append(_:toLog:after:)`` (inside
/// ``WriterCell/tryPut(_:second:gate:writer:header:)``) and
/// ``prepare(writer:)`` on the log's writer thread only; ``consume(into:)``
/// by readers taking turns (the collector's turn); ``enable()`` at start.
@usableFromInline
final class StartedSlotLogs: @unchecked Sendable {
    /// The table (in the gate's memory: see ``PutGate``).
    private let table: UnsafeMutablePointer<Atomic<UInt>>
    /// Keeps the table's memory alive.
    private let gate: PutGate

    init(gate: PutGate) {
        self.gate = gate
        table = gate.startedSlotLogTable
    }

    deinit {
        forEachLog { _, log in
            var block = Self.readBlock(log)
            while let b = block {
                block = UnsafeMutableRawPointer(bitPattern: Self.next(b).pointee.load(ordering: .acquiring))
                Self.freeBlock(b)
            }
            log.deallocate()
        }
    }

    /// Calls `body` with each writer index that has a log, and its log.
    private func forEachLog(_ body: (Int, UnsafeMutableRawPointer) -> Void) {
        for w in 0..<WriterIndices.capacity {
            let bits = table[w].load(ordering: .acquiring) & ~Self.disabledBit
            if bits != 0 { body(w, UnsafeMutableRawPointer(bitPattern: bits)!) }
        }
    }

    /// A table word with this bit set: no log is made for its writer, and
    /// the common case starts no slot (it takes the general path, which
    /// lists the series itself).
    @usableFromInline static var disabledBit: UInt { 1 }

    /// Bytes of a block: 4 KiB, 510 entries.
    static let blockBytes = 4096
    /// Entries a block holds.
    @usableFromInline static var blockCapacity: Int { 510 }
    /// Byte offsets in a block: the next block, the count of entries
    /// published, the entries.
    @usableFromInline static var nextOffset: Int { 0 }
    @usableFromInline static var countOffset: Int { 8 }
    @usableFromInline static var entriesOffset: Int { 16 }
    /// Byte offsets in a log: the writer's block, the reader's block and
    /// its index in it.
    @usableFromInline static var writeBlockOffset: Int { 0 }
    static var readBlockOffset: Int { 8 }
    static var readIndexOffset: Int { 16 }

    // MARK: Writer (the common case, inlined into the C ABI's puts)

    /// Appends `metricBits` (the series' address) to the log at `logBits`
    /// (a table word, not 0, not disabled) if its block has room, calling
    /// `start` first; returns whether it did. Writer thread only, inside
    /// its cell's section.
    @inlinable @inline(__always)
    static func append(_ metricBits: UInt, toLog logBits: UInt, after start: () -> Void) -> Bool {
        let block = writeBlock(UnsafeMutableRawPointer(bitPattern: logBits)!)
        let counter = count(block)
        let i = counter.pointee.load(ordering: .relaxed)   // only this thread stores it
        guard i < blockCapacity else { return false }
        start()
        block.storeBytes(of: metricBits, toByteOffset: entriesOffset &+ i &* 8, as: UInt.self)
        // Publishes the entry (and the slot written before it) to a reader.
        counter.pointee.store(i &+ 1, ordering: .releasing)
        return true
    }

    /// The general path of writer index `writer`, after it started a slot
    /// (the common case could not: no log yet, or its block full): makes
    /// the log, or links a new block after a full one, so that the next
    /// slot starts in the common case. Writer thread only.
    func prepare(writer: Int) {
        let word = table[writer].load(ordering: .relaxed)
        if word & Self.disabledBit != 0 { return }
        if word == 0 {
            let log = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
            let block = Self.newBlock()
            log.storeBytes(of: UInt(bitPattern: block), toByteOffset: Self.writeBlockOffset, as: UInt.self)
            log.storeBytes(of: UInt(bitPattern: block), toByteOffset: Self.readBlockOffset, as: UInt.self)
            log.storeBytes(of: 0, toByteOffset: Self.readIndexOffset, as: Int.self)
            // Release: a reader (acquire) sees the log's words. Only this
            // thread stores here once the logs are enabled (a word that is
            // still disabledBit returned above).
            table[writer].store(UInt(bitPattern: log), ordering: .releasing)
            return
        }
        let log = UnsafeMutableRawPointer(bitPattern: word)!
        let block = Self.writeBlock(log)
        guard Self.count(block).pointee.load(ordering: .relaxed) == Self.blockCapacity else { return }
        let next = Self.newBlock()
        // Release: the reader that follows the link sees the new block's
        // words; this thread never writes the full block again.
        Self.next(block).pointee.store(UInt(bitPattern: next), ordering: .releasing)
        log.storeBytes(of: UInt(bitPattern: next), toByteOffset: Self.writeBlockOffset, as: UInt.self)
    }

    // MARK: Reader (under the collector's turn)

    /// Takes every entry logged since the last call and lists its series as
    /// changed by the log's writer (``ChangedSeries/mark(all:)``). Frees
    /// the blocks it finished. Call with the collector's turn held (or from
    /// the only reader left, close).
    func consume(into changed: ChangedSeries) {
        forEachLog { w, log in
            while true {
                let block = Self.readBlock(log)!
                var index = log.load(fromByteOffset: Self.readIndexOffset, as: Int.self)
                let published = Self.count(block).pointee.load(ordering: .acquiring)
                if index < published {
                    changed.mark(all: UnsafeRawPointer(block + (Self.entriesOffset &+ index &* 8)),
                                 count: published &- index, writer: w)
                    index = published
                    log.storeBytes(of: index, toByteOffset: Self.readIndexOffset, as: Int.self)
                }
                guard index == Self.blockCapacity else { break }
                let next = Self.next(block).pointee.load(ordering: .acquiring)
                guard next != 0 else { break }   // the writer links one when it needs it
                log.storeBytes(of: next, toByteOffset: Self.readBlockOffset, as: UInt.self)
                log.storeBytes(of: 0, toByteOffset: Self.readIndexOffset, as: Int.self)
                Self.freeBlock(block)
            }
        }
    }

    /// Lets the common case start slots (at start, unless a flush hook is
    /// set). Until then every table word is ``disabledBit``: slots are
    /// started by the general path, in a put frame that a signal handler's
    /// flush sees (with a hook, such a flush must find an interrupted put
    /// before it calls the hook, and looks for it on the listed keys only).
    func enable() {
        for w in 0..<WriterIndices.capacity {
            _ = table[w].compareExchange(expected: Self.disabledBit, desired: 0, ordering: .acquiringAndReleasing)
        }
    }

    /// Entries not consumed yet (for tests; call when no put runs).
    var unconsumedCount: Int {
        var total = 0
        forEachLog { _, log in
            var block = Self.readBlock(log)
            var index = log.load(fromByteOffset: Self.readIndexOffset, as: Int.self)
            while let b = block {
                total += Self.count(b).pointee.load(ordering: .acquiring) - index
                index = 0
                block = UnsafeMutableRawPointer(bitPattern: Self.next(b).pointee.load(ordering: .acquiring))
            }
        }
        return total
    }

    /// Whether the common case may start slots (for tests).
    var isEnabled: Bool {
        (0..<WriterIndices.capacity).allSatisfy { table[$0].load(ordering: .relaxed) & Self.disabledBit == 0 }
    }

    // MARK: Blocks

    private static func newBlock() -> UnsafeMutableRawPointer {
        let block = UnsafeMutableRawPointer.allocate(byteCount: blockBytes, alignment: 64)
        (block + nextOffset).bindMemory(to: Atomic<UInt>.self, capacity: 1).initialize(to: Atomic(0))
        (block + countOffset).bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        return block
    }

    private static func freeBlock(_ block: UnsafeMutableRawPointer) { block.deallocate() }

    private static func next(_ block: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<UInt>> {
        (block + nextOffset).assumingMemoryBound(to: Atomic<UInt>.self)
    }

    @inlinable @inline(__always)
    static func count(_ block: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Atomic<Int>> {
        (block + countOffset).assumingMemoryBound(to: Atomic<Int>.self)
    }

    /// The writer's current block (its thread only).
    @inlinable @inline(__always)
    static func writeBlock(_ log: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: log.load(fromByteOffset: writeBlockOffset, as: UInt.self))!
    }

    private static func readBlock(_ log: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
        UnsafeMutableRawPointer(bitPattern: log.load(fromByteOffset: readBlockOffset, as: UInt.self))
    }
}
