// The hot path of a put, and the one argument for its orderings.
//
// Files of this folder:
//   MetricPut.swift      the put part of `Metric`: fast path, slow paths.
//   WriterCell.swift     one thread's accumulator per metric (its layout,
//                        with named offsets, and the recycle rule of slots).
//   CellBuckets.swift    a distribution metric's bucket counts per slot:
//                        written, drained and recycled with their slot, so
//                        every pair below covers them as it covers the slot.
//   CellCollector.swift  the reader side: flush, snapshots and close drain
//                        the cells into the shared series.
//   PutGate.swift        admission: one word, closing bit, started-with-an-
//                        eventful-sink bit, count of shared-path puts.
//   StartedSlotLog.swift per writer index, the keys whose slots a put's
//                        common case started, for the next reader to list.
//   PutContext.swift     what every put needs from its manager, and the
//                        deferred close of the sink.
//
// Words: a *writer index* (0..<64, per thread, `kplmshim_writer_index`)
// selects a thread's *cell* in every metric; a cell has two *slots*, each
// one second's (count, second, sum, min, max). A put is a *section* on its
// cell: sequence odd while it writes. The *gate word* admits puts. A put
// that will call an eventful sink's `record` *reserves* it.
//
// The actors: putting threads (any number), one reader at a time per
// manager (flush, snapshots, queries, close; they take the collector's
// turn lock), close (once, then the final flush on the uploader thread),
// and `record` callbacks (on putting threads, after their put).
//
// Every ordering pair, and why it holds:
//
// 1. Cell section ↔ collector (no put is lost or torn by a read).
//    Writer: store sequence odd (relaxed), compiler barrier, load `active`,
//    write the slot, store sequence even (release). Reader: store the other
//    index in `active` (release), one heavy barrier (membarrier: a full
//    fence on every running thread), then wait until each flipped cell's
//    sequence is even or has moved on (acquire), then drain the old slot.
//    "Store sequence, load active" against "store active, load sequence" is
//    a Dekker pair; the membarrier makes the writer's compiler barrier act
//    as a full fence, so one side sees the other: the writer uses the new
//    slot, or the reader waits for its section. The even store (release)
//    read with acquire publishes the slot's contents; the release store of
//    `active` read with acquire orders the reader's reset of a slot before
//    the writer's next use of it (details: WriterCell.swift).
//
// 2. Admission gate ↔ close (nothing accepted misses the final flush).
//    Shared-path puts count themselves in (acquire-release add on the gate
//    word) and out (release); close sets the closing bit (acquire-release)
//    and waits for the count to reach zero, so every admitted put's writes
//    happen before the final flush, and a put admitted later sees the bit
//    and is refused. Cell puts do not count themselves in: they read the
//    gate word inside their section, after the odd sequence store. Close
//    sets the closing bit, then runs the heavy barrier and waits for every
//    open section (pair 1 again, with the gate word in place of `active`):
//    a section either saw the bit and refused, or close waits for it.
//
// 3. Start ↔ puts (an eventful sink is seen installed).
//    The sink is stored before start sets the started-with-eventful-sink bit
//    (release); a put reads the gate word with acquire (in its section or at
//    admission), so a put that sees the bit sees the sink. Other puts never
//    branch to the notify path.
//
// 4. Deferred sink close ↔ `record` (the sink is closed exactly once, after
//    every accepted put's `record`).
//    `record` runs after the put left its section (or the gate), outside
//    every lock, so close cannot wait for it. A put that will call it
//    reserves it while still admitted (a sequentially consistent add to
//    `sinkActivity`, inside its section or between gate enter and leave):
//    pair 2 makes every reservation visible before the final flush. The
//    final flush marks the close due (`sinkCloseState` 0 → 1, sequentially
//    consistent) and closes the sink if no record is reserved; a record
//    that ends releases its reservation (sequentially consistent subtract)
//    and closes the sink if it was the last and the close is due. Both
//    sides store then load (Dekker), so at least one sees the other, and
//    the exchange 1 → 2 lets only one of them close.
//
// 5. Fork (a manager created before fork() is refused in the child).
//    The fork handler increments the generation in the child only, where
//    just the forking thread runs; a put compares its manager's generation
//    with a relaxed load before touching any lock or cell.
//
// 6. Removal of an idle key ↔ puts (nothing recorded on a removed key is
//    lost; SPEC §10).
//    A flush, holding the readers' turn, sets the series' removed flag
//    (under its lock), stores the retired
//    index 2 in `active` of each of its cells and the shared placeholder
//    cell in each empty entry of its cell table (compare-exchange with a
//    thread's first put, so exactly one wins), runs the heavy barrier, waits
//    for the sections in progress and drains both slots of every cell.
//    Pair 1's argument applies with "retired index" for "other slot": a
//    section either reads index 2 (records nothing and reports the removal)
//    or is waited for, and what it wrote is drained into the series. Then
//    the key is checked again: a key such a put made busy keeps its place
//    (flag cleared, cells pointed back at slot 0, as for a re-creation);
//    an idle one leaves the registry. Shared-path puts check the flag
//    under the series lock. A put that finds its key removed
//    re-creates it (`Registry.revive`, in the turn then the registry lock):
//    the same series, its flag cleared and its cells pointed back at slot 0
//    (release; the writer's acquire of `active` orders the drains before its
//    next write) before any reader can list it; then it puts again.
//
// 7. C key index ↔ its reclamation (no lookup reads freed memory).
//    A put by names looks its arguments up and puts inside a read section
//    of its writer index (KPLMCABI `KeyIndexReaders`: word odd, compiler
//    barrier, ..., word even with release). Removal unlinks the key's
//    entries (tombstones), runs the heavy barrier and waits for every odd
//    word to move on before it frees the entries, superseded tables and the
//    metrics they pointed to: the same Dekker pair as pair 1.
//    A put through an entry, or by handle, finds its cell without the
//    header line's table: the dense cell of its writer index for the line,
//    used in the common case only if the cell's tag is set. The owner sets
//    the tag (relaxed; only the owner, or a later owner of its writer index,
//    reads it) after its compare-exchange published that very cell in the
//    table, never for the removed-key placeholder, and the pool zeroes a
//    line's cells as it frees the line (after the series); a table entry
//    holding a cell never changes while its series lives, which outlives
//    the entry (the registry, then the index's limbo, hold its metric). So
//    a tagged cell is the table's cell, with the same `active` (the retired
//    index included), and pairs 1 and 6 hold unchanged. The tag's gate, and
//    the fork generation beside the gate word, are the manager's, as in the
//    line.
//
// 8. Changed marks ↔ flush (a flush reads only the cells put on since the
//    last one, nothing missed; details: ChangedSeries.swift).
//    A put that starts an empty slot, after its section, sets its writer's
//    bit in the series' `changedWriters` (sequentially consistent or) and
//    lists the series if the mask was zero. A flush clears the mask
//    (sequentially consistent exchange) just before it flips the cells of
//    the bits it read. Both sides write then read the mask word: the put's
//    bit is read by this flush, which then flips the cell (pair 1 covers
//    the section), or the put reads the cleared mask and lists the series
//    for the next flush. Only a put that starts a slot can leave data a
//    flush has not flipped: a flip leaves the writer an emptied slot.
//
// 9. Started-slot logs ↔ readers (a put's common case starts a slot
//    without reading the key's object; details: StartedSlotLog.swift).
//    A common-case put that finds its slot empty writes the slot, then the
//    key's address into its writer's log block, then the block's count
//    (release), all inside its section. Every reader, under the
//    collector's turn and before it flips any cell, reads each log's count
//    (acquire) and, for each entry up to it, does what pair 8's put does
//    after its section: sets the writer's bit (sequentially consistent or)
//    and lists the key if the mask was zero. So pair 8 holds with the
//    reader doing the put's marking: an entry this reader reads is marked
//    before its flips; an entry it misses stays for the next reader, and
//    its slot, not flipped by a flush that did not see its bit, keeps its
//    data until one that does. Entries are unretained: an entry is only
//    written by a section that found the cell not retired, so an idle
//    removal, once it has waited for the sections of the removed keys'
//    cells (pair 6), reads the logs again: every entry for those keys is
//    listed, and the list retains it. No entry outlives its key.
