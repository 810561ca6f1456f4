import CKPLMShims
import Dispatch
import Foundation
import Glibc
import Synchronization
import XCTest
@testable import KPLM

/// The shims' block pools (header lines and writer cells, issue #13): what
/// they hand out is aligned, distinct and whole, and every key gives its
/// blocks back when its manager goes.
final class BlockPoolTests: XCTestCase {
    private let lines = Int32(KPLMSHIM_POOL_LINES)
    private let cells = Int32(KPLMSHIM_POOL_CELLS)

    func testBlocksAreAlignedDistinctAndReusedAfterFree() {
        for (pool, size) in [(lines, 64), (cells, 128)] {
            let before = kplmshim_blocks_live(pool)
            // More than a chunk's worth, so that several chunks are carved.
            let blocks = (0..<3000).map { _ in kplmshim_block_alloc(pool)! }
            XCTAssertEqual(kplmshim_blocks_live(pool), before + 3000)
            XCTAssertEqual(Set(blocks).count, blocks.count, "a block handed out twice")
            for (i, b) in blocks.enumerated() {
                XCTAssertEqual(Int(bitPattern: b) % size, 0, "block \(i) not aligned to \(size)")
                b.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: i), count: size)
            }
            // No two blocks overlap: each still holds its own bytes.
            for (i, b) in blocks.enumerated() {
                let bytes = UnsafeRawBufferPointer(start: b, count: size)
                XCTAssertTrue(bytes.allSatisfy { $0 == UInt8(truncatingIfNeeded: i) }, "block \(i) overwritten")
            }
            for b in blocks { kplmshim_block_free(pool, b) }
            XCTAssertEqual(kplmshim_blocks_live(pool), before)
            // Freed blocks are handed out again: no new chunk.
            let chunks = kplmshim_block_chunks(pool)
            let again = kplmshim_block_alloc(pool)!
            XCTAssertEqual(kplmshim_block_chunks(pool), chunks)
            kplmshim_block_free(pool, again)
        }
    }

    /// A chunk whose blocks are all free again is given back to the C
    /// allocator; one empty chunk per pool is kept in reserve.
    func testEmptiedChunksAreGivenBack() {
        for (pool, size) in [(lines, 64), (cells, 128)] {
            let chunksBefore = kplmshim_block_chunks(pool)
            let perChunk = 64 * 1024 / size - 1   // the first block is the chunk's header
            // Twenty chunks' worth: more than the free blocks other tests
            // left in partly used chunks, so new chunks are carved.
            let blocks = (0..<(20 * perChunk)).map { _ in kplmshim_block_alloc(pool)! }
            XCTAssertGreaterThan(kplmshim_block_chunks(pool), chunksBefore + 1)
            for b in blocks { kplmshim_block_free(pool, b) }
            XCTAssertLessThanOrEqual(kplmshim_block_chunks(pool), chunksBefore + 1, "pool \(pool)")
        }
    }

    func testAManagersKeysGiveTheirBlocksBack() throws {
        // The placeholder cell of removed keys: allocated once, never freed.
        _ = WriterCell.retiredPlaceholderBits
        let linesBefore = kplmshim_blocks_live(lines)
        let cellsBefore = kplmshim_blocks_live(cells)
        let keys = 1000, threads = 3
        do {
            var c = MetricsConfiguration()
            c.level = .detailed
            c.uploadInterval = .seconds(3600)
            let m = try MetricsManager(configuration: c, sink: NullSink())
            try m.start()
            let handles = try (0..<keys).map { try m.metric("UserRecordsPut", stream: "s", shardId: "shard-\($0)") }
            XCTAssertGreaterThanOrEqual(kplmshim_blocks_live(lines) - linesBefore, keys)
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                for h in handles { try! h.put(1) }
            }
            if CellCollector.isAvailable {
                // A cell per (thread, key) that put (concurrentPerform may
                // run the iterations on fewer threads than it was given).
                XCTAssertGreaterThanOrEqual(kplmshim_blocks_live(cells) - cellsBefore, keys)
            }
            try m.close()
        }
        XCTAssertEqual(kplmshim_blocks_live(lines), linesBefore, "header lines not given back")
        XCTAssertEqual(kplmshim_blocks_live(cells), cellsBefore, "cells not given back")
    }

    /// A fork while another thread allocates and frees blocks without
    /// pause (holding a pool's lock much of the time): the child can still
    /// allocate. A child stuck on a lock its parent's thread held is killed
    /// by its alarm, and the test fails.
    func testAForkedChildCanAllocateWhileAnotherThreadHeldThePool() throws {
        let stop = Atomic<Bool>(false)
        let churner = Thread { [lines, cells] in
            while !stop.load(ordering: .relaxed) {
                for pool in [lines, cells] {
                    let b = kplmshim_block_alloc(pool)
                    kplmshim_block_free(pool, b)
                }
            }
        }
        churner.start()
        defer { stop.store(true, ordering: .relaxed) }
        for round in 0..<200 {
            let pid = fork()
            XCTAssertGreaterThanOrEqual(pid, 0)
            if pid == 0 {
                alarm(10)
                let line = kplmshim_block_alloc(lines), cell = kplmshim_block_alloc(cells)
                _exit(line != nil && cell != nil ? 0 : 3)
            }
            var status: Int32 = 0
            XCTAssertEqual(waitpid(pid, &status, 0), pid)
            // WIFEXITED and WEXITSTATUS, spelled out (macros Swift cannot import).
            XCTAssertTrue(status & 0x7f == 0 && (status >> 8) & 0xff == 0,
                          "child of round \(round) ended with status \(status)")
            if status != 0 { break }
        }
    }
}
