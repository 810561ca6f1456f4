import CKPLMShims
import Glibc
import Synchronization

/// Read sections of the lock-free lookups in ``CKeyIndex``, so that an
/// entry, a superseded table or a metric the index let go of is freed only
/// once no lookup can still be reading it.
///
/// One word per writer index (the thread's, see `kplmshim_writer_index`),
/// each on its own cache line, odd while the thread is inside a lookup and
/// the put it makes on what it found. The protocol is the writer cells' (pair 1
/// of `HotPath/Protocol.swift`), with "unlink" in place of "flip":
///
///     reader:    word odd (relaxed), compiler barrier, load the table and
///                entries, put, word even (release)
///     reclaimer: unlink (tombstone, new table), heavy barrier, wait until
///                every odd word has moved on (acquire), then free
///
/// "Store word, load entry" against "store tombstone, load word" is a
/// Dekker pair; the heavy barrier makes the reader's compiler barrier a
/// full fence, so a reader either sees the unlink or is waited for.
/// Threads without a writer index do not use the index (their puts by
/// names take the locked path).
enum KeyIndexReaders {
    /// Words per thread: one cache line each.
    private static let stride = 8
    private static let capacity = Int(KPLMSHIM_MAX_WRITERS)

    /// The words: static memory of the shims (zero-initialised, and zeroed
    /// again in a forked child, where a parent thread's open section would
    /// otherwise stay odd for ever), looked up at the first manager's
    /// creation (see ``CManager/warmUp``).
    nonisolated(unsafe) static let words: UnsafeMutablePointer<Atomic<UInt>> =
        kplmshim_reader_words().assumingMemoryBound(to: Atomic<UInt>.self)

    /// Whether the heavy barrier works here: without it the index is not
    /// used (every put by names takes the locked path).
    static let isAvailable: Bool = kplmshim_heavy_barrier_available() != 0

    /// Opens a read section for writer `writer` (1-based, as
    /// `kplmshim_writer_raw` returns it). Returns the word to pass to
    /// ``leave(_:)``, or nil when a section of this thread is already open
    /// (a signal handler interrupted a put by names): the outer section
    /// covers this one.
    @inline(__always)
    static func enter(_ writer: Int) -> UnsafeMutablePointer<Atomic<UInt>>? {
        let word = words + (writer &- 1) &* stride
        let s = word.pointee.load(ordering: .relaxed)
        guard s & 1 == 0 else { return nil }
        word.pointee.store(s &+ 1, ordering: .relaxed)
        // Dekker half: the odd word must not move below the lookup's loads.
        kplmshim_compiler_barrier()
        return word
    }

    /// Closes a section opened by ``enter(_:)``.
    @inline(__always)
    static func leave(_ word: UnsafeMutablePointer<Atomic<UInt>>?) {
        guard let word else { return }
        kplmshim_compiler_barrier()
        word.pointee.store(word.pointee.load(ordering: .relaxed) &+ 1, ordering: .releasing)
    }

    /// After an unlink: waits until every read section that may have seen
    /// what was unlinked has ended. Returns false, without waiting, when a
    /// section of this thread is open (a signal handler that interrupted a
    /// put by names, now flushing): the caller keeps the memory for later.
    static func waitForReaders() -> Bool {
        let own = Int(kplmshim_writer_raw())
        if own > 0 && (words + (own - 1) * stride).pointee.load(ordering: .relaxed) & 1 != 0 { return false }
        var attempts = 0
        while kplmshim_heavy_barrier() != 0 && attempts < 1_000 {
            attempts += 1
            sched_yield()
        }
        for i in 0..<capacity {
            let word = words + i * stride
            let s = word.pointee.load(ordering: .acquiring)
            guard s & 1 != 0 else { continue }
            var spins = 0
            while word.pointee.load(ordering: .acquiring) == s {
                spins += 1
                if spins > 64 { sched_yield() }   // the reader was preempted in its section
            }
        }
        return true
    }
}
