import CKPLMShims
import Glibc
import XCTest
@testable import KPLM
@testable import KPLMCABI

/// The C ABI's index of puts by names (``CKeyIndex``): every linked entry is
/// found through its slot (whose tag must match the one a lookup computes),
/// whatever its neighbours in the probe sequence; an entry is linked once;
/// an unlinked entry is no longer found, and the others still are.
final class KeyIndexTests: XCTestCase {
    /// A started manager, or a skip where the key index is not used.
    private func startedManager() throws -> MetricsManager {
        guard KeyIndexReaders.isAvailable, kplmshim_writer_index() >= 0 else {
            throw XCTSkip("the key index is not used here (no heavy barrier, or no writer index)")
        }
        let m = try MetricsManager(level: .detailed)
        try m.start()
        return m
    }

    /// Puts 1 through `index` on the metric of `a`, if found there (its
    /// general path too, as the C ABI would take it).
    private func putIfFound(_ a: CPutArguments, in index: CKeyIndex) -> Bool {
        switch index.put(a, 1) {
        case .missing: return false
        case .recorded: return true
        case .general(let metric): XCTAssertNoThrow(try metric.put(finite: 1).check())
        }
        return true
    }

    func testEntriesAreFoundByTheirArgumentsAndOnlyWhileLinked() throws {
        let m = try startedManager()
        let keys = 5000   // enough for many probe sequences longer than one slot
        let index = CKeyIndex(maxEntries: keys)
        let shards = (0..<keys).map { strdup("shardId-\($0)")! }
        let name = strdup("UserRecordsPut")!, stream = strdup("orders")!
        defer { for p in shards + [name, stream] { free(p) } }
        func arguments(_ k: Int) -> CPutArguments { CPutArguments(name, stream, shards[k], nil)! }
        /// Puts 1 on key k through the index, if found there.
        func isFound(_ k: Int) -> Bool { putIfFound(arguments(k), in: index) }

        var metrics: [Metric] = []
        for k in 0..<keys {
            let metric = try m.metric("UserRecordsPut", stream: "orders", shardId: "shardId-\(k)")
            metrics.append(metric)
            XCTAssertFalse(isFound(k), "key \(k) found before it was inserted")
            index.insert(arguments(k), metric)
        }
        XCTAssertEqual(index.count, keys)
        // The index grew several times; each table it replaced was freed
        // when it was (no removal needed to reclaim them).
        XCTAssertEqual(index.tablesHeld, 1)
        for k in 0..<keys { XCTAssertTrue(isFound(k), "key \(k) not found") }
        // The puts through the entries (the second one through this thread's
        // cell of the entry's metric, when the common case runs) land on
        // their keys: two each.
        for k in 0..<keys { XCTAssertTrue(isFound(k), "key \(k) not found") }
        for k in 0..<keys {
            XCTAssertEqual(try m.statistics("UserRecordsPut", stream: "orders", shardId: "shardId-\(k)").count, 2,
                           "key \(k)")
        }
        // Inserted again: already linked (found by the insert's own lookup).
        for k in 0..<keys { index.insert(arguments(k), metrics[k]) }
        XCTAssertEqual(index.count, keys)

        // Unlinking every other key leaves tombstones in the others' probe
        // sequences: those are still found, the unlinked ones are not.
        index.remove(stride(from: 0, to: keys, by: 2).map { metrics[$0] })
        XCTAssertEqual(index.count, keys / 2)
        for k in 0..<keys { XCTAssertEqual(isFound(k), k % 2 == 1, "key \(k)") }
    }

    /// Several argument tuples for one metric (at SUMMARY, tuples that
    /// differ only in a dropped dimension): each is linked, and removing the
    /// metric unlinks all of them, and only them.
    func testAMetricWithSeveralEntriesLosesThemAllWhenRemoved() throws {
        let m = try startedManager()
        let index = CKeyIndex(maxEntries: 100)
        let shards = (0..<4).map { strdup("shardId-\($0)")! }
        let name = strdup("UserRecordsPut")!, stream = strdup("orders")!
        defer { for p in shards + [name, stream] { free(p) } }
        func arguments(_ k: Int) -> CPutArguments { CPutArguments(name, stream, shards[k], nil)! }
        func isFound(_ k: Int) -> Bool {
            if case .missing = index.put(arguments(k), 1) { return false }
            return true
        }
        let shared = try m.metric("UserRecordsPut", stream: "orders")
        let other = try m.metric("UserRecordsPut", stream: "orders", shardId: "shardId-3")
        for k in 0..<3 { index.insert(arguments(k), shared) }
        index.insert(arguments(3), other)
        XCTAssertEqual(index.count, 4)
        for k in 0..<4 { XCTAssertTrue(isFound(k), "tuple \(k)") }
        index.remove([shared])
        XCTAssertEqual(index.count, 1)
        for k in 0..<3 { XCTAssertFalse(isFound(k), "tuple \(k) of the removed metric") }
        XCTAssertTrue(isFound(3))

        // Linked again (a key re-created after its removal): one entry,
        // then several again, each removed with the metric once more.
        index.insert(arguments(0), shared)
        XCTAssertEqual(index.count, 2)
        XCTAssertTrue(isFound(0))
        XCTAssertFalse(isFound(1))
        index.insert(arguments(1), shared)
        XCTAssertEqual(index.count, 3)
        index.remove([shared, other])
        XCTAssertEqual(index.count, 0)
        for k in 0..<4 { XCTAssertFalse(isFound(k), "tuple \(k) after the second removal") }
    }

    /// An entry is its key record's index line when that line holds its
    /// arguments (the key's own, in at most 64 bytes: 12 of head, 8 of
    /// lengths, the strings and their NULs); otherwise one of at most 64
    /// bytes is a block of the entry pool, a longer one a heap block. All
    /// are found, and the blocks are given back when their metric is
    /// removed. Arguments whose bytes run together the same but split
    /// differently do not match (the lengths are compared first).
    func testEntriesAreIndexLinesPoolLinesOrHeapBlocks() throws {
        let m = try startedManager()
        let pool = Int32(KPLMSHIM_POOL_INDEX_ENTRIES)
        let before = kplmshim_blocks_live(pool)
        // "UserRecordsPut" (14) + "orders" (6) + a shard id, each with its
        // NUL, after 20 bytes: entries of 63, 64 and 65 bytes.
        let shardIds = ["shardId-000000000001", "shardId-0000000000002", "shardId-00000000000003"]
        let name = strdup("UserRecordsPut")!, stream = strdup("orders")!
        let shards = shardIds.map { strdup($0)! }
        defer { for p in shards + [name, stream] { free(p) } }
        func arguments(_ k: Int) -> CPutArguments { CPutArguments(name, stream, shards[k], nil)! }
        let metrics = try shardIds.map { try m.metric("UserRecordsPut", stream: "orders", shardId: $0) }
        XCTAssertEqual(metrics.map { $0.series.record.indexLine != nil }, [true, true, false])

        // Linked to their own keys: the first two in their records' lines.
        let index = CKeyIndex(maxEntries: 100)
        for k in 0..<3 { index.insert(arguments(k), metrics[k]) }
        XCTAssertEqual(kplmshim_blocks_live(pool) - before, 0, "no pool line for an entry in its record")
        XCTAssertEqual(metrics[0].series.keyIndexWord,
                       UInt64(UInt(bitPattern: metrics[0].series.record.indexLine!)))
        for k in 0..<3 { XCTAssertTrue(putIfFound(arguments(k), in: index), "entry \(shardIds[k])") }
        for k in 0..<3 {
            XCTAssertEqual(try m.statistics("UserRecordsPut", stream: "orders", shardId: shardIds[k]).count, 1)
        }

        // Linked to another key (as when the level drops the shard): pool
        // lines for the 63- and 64-byte entries, a heap block for the other.
        let trimmed = try m.metric("UserRecordsPut", stream: "orders")
        let other = CKeyIndex(maxEntries: 100)
        for k in 0..<3 { other.insert(arguments(k), trimmed) }
        XCTAssertEqual(kplmshim_blocks_live(pool) - before, 2, "the 63- and 64-byte entries are pool lines")
        for k in 0..<3 { XCTAssertTrue(putIfFound(arguments(k), in: other), "entry \(shardIds[k]), trimmed") }
        XCTAssertEqual(try m.statistics("UserRecordsPut", stream: "orders").count, 3)

        // ("Ab", "c") and ("A", "bc"): the same bytes, not the same
        // arguments (their hashes differ too; the body alone tells them apart).
        let ab = strdup("Ab")!, c = strdup("c")!, a = strdup("A")!, bc = strdup("bc")!
        defer { for p in [ab, c, a, bc] { free(p) } }
        let stored = CPutArguments(ab, c, nil, nil)!
        let body = UnsafeMutableRawPointer.allocate(byteCount: stored.bodyBytes, alignment: 4)
        defer { body.deallocate() }
        stored.write(body: body)
        XCTAssertTrue(stored.matches(body: body))
        XCTAssertFalse(CPutArguments(a, bc, nil, nil)!.matches(body: body))

        index.remove(metrics)
        other.remove([trimmed])
        XCTAssertEqual(index.count + other.count, 0)
        for k in 0..<3 {
            XCTAssertFalse(putIfFound(arguments(k), in: index), "entry \(shardIds[k]) after its removal")
            XCTAssertFalse(putIfFound(arguments(k), in: other), "entry \(shardIds[k]), trimmed, after its removal")
        }
        XCTAssertEqual(kplmshim_blocks_live(pool), before, "the pool lines are given back")
        XCTAssertEqual(metrics[0].series.keyIndexWord, 0)
    }
}
