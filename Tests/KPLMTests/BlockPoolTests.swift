import CKPLMShims
import Dispatch
import Foundation
import Glibc
import Synchronization
import XCTest
@testable import KPLM

/// The shims' block pools (header lines and writer cells, issue #13) and
/// the dense writer cells beside the lines: what they hand out is aligned,
/// distinct and whole, and every key gives its blocks back when its manager
/// goes.
final class BlockPoolTests: XCTestCase {
    private let lines = Int32(KPLMSHIM_POOL_LINES)
    private let cells = Int32(KPLMSHIM_POOL_CELLS)
    /// Blocks a chunk hands out: all but its first (its header), and for a
    /// chunk of lines the next eight too (its dense cells' region words).
    private func blocksPerChunk(_ pool: Int32, size: Int) -> Int { 64 * 1024 / size - (pool == lines ? 9 : 1) }

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
            let perChunk = blocksPerChunk(pool, size: size)
            // Twenty chunks' worth: more than the free blocks other tests
            // left in partly used chunks, so new chunks are carved.
            let blocks = (0..<(20 * perChunk)).map { _ in kplmshim_block_alloc(pool)! }
            XCTAssertGreaterThan(kplmshim_block_chunks(pool), chunksBefore + 1)
            for b in blocks { kplmshim_block_free(pool, b) }
            XCTAssertLessThanOrEqual(kplmshim_block_chunks(pool), chunksBefore + 1, "pool \(pool)")
        }
    }

    /// The record pool's blocks (a key record's index line) are lines,
    /// 1,023 a chunk (its first line is the chunk's header), none
    /// overlapping another; given back, emptied chunks go too.
    func testRecordBlocksAreDistinctLinesOfTheirChunk() {
        let records = Int32(KPLMSHIM_POOL_KEY_RECORDS)
        let chunk = 64 * 1024
        let perChunk = chunk / 64 - 1
        let before = kplmshim_blocks_live(records)
        let chunksBefore = kplmshim_block_chunks(records)
        // Ten chunks' worth (more than other tests left free), so that
        // fresh chunks are carved and filled.
        let blocks = (0..<(10 * perChunk)).map { _ in kplmshim_block_alloc(records)! }
        XCTAssertEqual(kplmshim_blocks_live(records), before + blocks.count)
        let chunks = kplmshim_block_chunks(records)
        XCTAssertGreaterThanOrEqual(chunks * perChunk, kplmshim_blocks_live(records), "1,023 blocks a chunk at most")
        XCTAssertLessThanOrEqual(chunks, chunksBefore + 10, "1,023 blocks a chunk at least")
        var lines = Set<Int>()
        for (i, b) in blocks.enumerated() {
            let address = Int(bitPattern: b)
            let offset = address % chunk
            XCTAssertEqual(offset % 64, 0, "block \(i) is a line")
            XCTAssertGreaterThanOrEqual(offset, 64, "block \(i) past the chunk's header")
            XCTAssertTrue(lines.insert(address).inserted, "block \(i) handed out twice")
            b.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: i), count: 64)
        }
        for (i, b) in blocks.enumerated() {
            XCTAssertTrue(UnsafeRawBufferPointer(start: b, count: 64).allSatisfy { $0 == UInt8(truncatingIfNeeded: i) },
                          "block \(i) overwritten")
        }
        for b in blocks { kplmshim_block_free(records, b) }
        XCTAssertEqual(kplmshim_blocks_live(records), before)
        XCTAssertLessThanOrEqual(kplmshim_block_chunks(records), chunksBefore + 1, "emptied chunks given back")
    }

    /// Dense cells (one region per chunk of lines and writer index): each
    /// (line, writer) has its own 128 bytes, aligned, zero until first used,
    /// overlapping no other cell nor any line; the regions of a chunk are
    /// unmapped when its last line is freed.
    func testDenseCellsAreDistinctAlignedAndGoWithTheirChunk() {
        let writers: [Int32] = [0, 1, Int32(KPLMSHIM_MAX_WRITERS) - 1]
        let regionsBefore = kplmshim_dense_regions_mapped()
        let perChunk = blocksPerChunk(lines, size: 64)
        let blocks = (0..<(4 * perChunk)).map { _ in kplmshim_block_alloc(lines)! }
        // The chunks whose every line is one of these (fresh ones: at least three).
        let byChunk = Dictionary(grouping: blocks) { UInt(bitPattern: $0) & ~0xFFFF }
        let whole = byChunk.filter { $0.value.count == perChunk }
        XCTAssertGreaterThanOrEqual(whole.count, 3)
        var seen = Set<UInt>()
        for (i, line) in blocks.enumerated() {
            for w in writers {
                guard let cell = kplmshim_dense_cell(line, w) else { return XCTFail("no dense cell") }
                XCTAssertEqual(Int(bitPattern: cell) % 128, 0, "cell of line \(i), writer \(w) not aligned")
                XCTAssertTrue(seen.insert(UInt(bitPattern: cell)).inserted, "a cell handed out twice")
                XCTAssertEqual(kplmshim_dense_cell(line, w), cell, "the same line and writer, another cell")
                let bytes = UnsafeMutableRawBufferPointer(start: cell, count: 128)
                if whole[UInt(bitPattern: line) & ~0xFFFF] != nil {
                    XCTAssertTrue(bytes.allSatisfy { $0 == 0 }, "a fresh region's cell is not zero")
                }
                bytes.copyBytes(from: repeatElement(UInt8(truncatingIfNeeded: i &+ Int(w)), count: 128))
            }
            line.initializeMemory(as: UInt8.self, repeating: 0xEE, count: 64)
        }
        XCTAssertNil(kplmshim_dense_cell(blocks[0], Int32(KPLMSHIM_MAX_WRITERS)))
        XCTAssertGreaterThanOrEqual(kplmshim_dense_regions_mapped() - regionsBefore, whole.count * writers.count)
        // Nothing overlaps: each cell still holds its own bytes, each line its own.
        for (i, line) in blocks.enumerated() {
            for w in writers {
                let bytes = UnsafeRawBufferPointer(start: kplmshim_dense_cell(line, w), count: 128)
                XCTAssertTrue(bytes.allSatisfy { $0 == UInt8(truncatingIfNeeded: i &+ Int(w)) }, "cell \(i) overwritten")
            }
            XCTAssertTrue(UnsafeRawBufferPointer(start: line, count: 64).allSatisfy { $0 == 0xEE }, "line \(i) overwritten")
        }
        let regionsWhileHeld = kplmshim_dense_regions_mapped()
        for b in blocks { kplmshim_block_free(lines, b) }
        XCTAssertLessThanOrEqual(kplmshim_dense_regions_mapped(), regionsWhileHeld - whole.count * writers.count,
                                 "the regions of emptied chunks are still mapped")
        XCTAssertGreaterThanOrEqual(kplmshim_dense_regions_mapped(), regionsBefore)
    }

    /// Two lines of one chunk whose cells are on different pages of their
    /// regions (32 cells a page), and every other line allocated to find
    /// them (all three for the caller to free).
    private func twoLinesOfOneChunk() throws
        -> (first: UnsafeMutableRawPointer, second: UnsafeMutableRawPointer, others: [UnsafeMutableRawPointer]) {
        let mask = ~UInt(KPLMSHIM_LINE_CHUNK_BYTES - 1)
        func page(_ line: UnsafeMutableRawPointer) -> UInt { (UInt(bitPattern: line) & ~mask) / 64 / 32 }
        var held: [UnsafeMutableRawPointer] = []
        var found: (first: Int, second: UnsafeMutableRawPointer)?
        while found == nil && held.count < 5000 {
            let line = try XCTUnwrap(kplmshim_block_alloc(lines))
            found = held.firstIndex {
                UInt(bitPattern: $0) & mask == UInt(bitPattern: line) & mask && page($0) != page(line)
            }.map { ($0, line) }
            if found == nil { held.append(line) }
        }
        let (i, second) = try XCTUnwrap(found, "no two lines of one chunk on different cell pages in 5,000")
        let first = held.remove(at: i)
        return (first, second, held)
    }

    func testAFreedLinesDenseCellsReadZero() throws {
        // The second line keeps the chunk (and its regions) while the first
        // is freed.
        let (first, second, others) = try twoLinesOfOneChunk()
        let writers: [Int32] = [0, 5, 63]
        for w in writers {
            let cell = try XCTUnwrap(kplmshim_dense_cell(first, w))
            cell.initializeMemory(as: UInt8.self, repeating: 0xAB, count: Int(KPLMSHIM_DENSE_CELL_BYTES))
        }
        kplmshim_block_free(lines, first)
        for w in writers {
            let cell = try XCTUnwrap(kplmshim_dense_cell_of(first, w + 1))
            let bytes = UnsafeRawBufferPointer(start: cell, count: Int(KPLMSHIM_DENSE_CELL_BYTES))
            XCTAssertTrue(bytes.allSatisfy { $0 == 0 }, "writer \(w)'s cell of a freed line is not zero")
        }
        kplmshim_block_free(lines, second)
        for b in others { kplmshim_block_free(lines, b) }
    }

    /// Resident bytes (smaps "Rss", which does not count the shared zero
    /// page) of the mapping that holds `address`.
    private func residentBytes(ofMappingHolding address: UnsafeRawPointer) throws -> Int {
        // (Read to its end: /proc files report no size.)
        let file = try XCTUnwrap(FileHandle(forReadingAtPath: "/proc/self/smaps"))
        defer { try? file.close() }
        let smaps = String(decoding: try XCTUnwrap(file.readToEnd()), as: UTF8.self)
        let target = UInt(bitPattern: address)
        var inside = false
        for line in smaps.split(separator: "\n") {
            if let dash = line.firstIndex(of: "-"), let space = line.firstIndex(of: " "), dash < space,
               let low = UInt(line[..<dash], radix: 16),
               let high = UInt(line[line.index(after: dash)..<space], radix: 16) {
                inside = low <= target && target < high
            } else if inside && line.hasPrefix("Rss:") {
                return Int(line.split(separator: " ")[1])! * 1024
            }
        }
        throw XCTSkip("no mapping holds the address in /proc/self/smaps")
    }

    func testFreeingALineLeavesItsUntouchedCellsUntouched() throws {
        // Two lines of one chunk whose cells of a writer index no test uses
        // are on different pages (32 cells a page): the first's cell is made
        // (its page resident), the second's never touched.
        let writer: Int32 = 62
        let (made, untouched, others) = try twoLinesOfOneChunk()
        defer { for b in others + [made] { kplmshim_block_free(lines, b) } }
        let cell = try XCTUnwrap(kplmshim_dense_cell(made, writer))
        cell.storeBytes(of: 1, as: UInt64.self)
        let other = try XCTUnwrap(kplmshim_dense_cell_of(untouched, writer + 1))
        let before = try residentBytes(ofMappingHolding: other)
        kplmshim_block_free(lines, untouched)
        XCTAssertEqual(try residentBytes(ofMappingHolding: other), before,
                       "freeing a line made its never-used cell's page resident")
        XCTAssertEqual(other.load(as: UInt64.self), 0)
    }

    /// The pool's live count of `pool` once it has not changed for 100 ms
    /// (at most 5 s): the metrics of earlier tests may still be freed on
    /// other threads (a manager released by an async task, an uploader
    /// ending), which counted below as this test's.
    private func settledLiveCount(_ pool: Int32) -> Int {
        var last = kplmshim_blocks_live(pool)
        let deadline = Date().addingTimeInterval(5)
        var stableSince = Date()
        while Date() < deadline && Date().timeIntervalSince(stableSince) < 0.1 {
            Thread.sleep(forTimeInterval: 0.01)
            let now = kplmshim_blocks_live(pool)
            if now != last { last = now; stableSince = Date() }
        }
        return last
    }

    func testAManagersKeysGiveTheirBlocksBack() throws {
        // The placeholder cell of removed keys: allocated once, never freed.
        _ = WriterCell.retiredPlaceholderBits
        let linesBefore = settledLiveCount(lines)
        let cellsBefore = settledLiveCount(cells)
        let chunksBefore = kplmshim_block_chunks(lines)
        let regionsBefore = kplmshim_dense_regions_mapped()
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
                // A cell per (thread, key) that put, the dense cell of its
                // writer index for the key's line (concurrentPerform may run
                // the iterations on fewer threads than it was given). The
                // pool of cells keeps only the placeholder.
                for h in handles {
                    let used = (0..<WriterIndices.capacity).filter { h.cellTable.load($0) != 0 }
                    XCTAssertFalse(used.isEmpty)
                    for w in used {
                        XCTAssertEqual(h.cellTable.load(w), UInt(bitPattern: kplmshim_dense_cell(h.header.address, Int32(w))))
                    }
                }
                XCTAssertEqual(kplmshim_blocks_live(cells), cellsBefore)
            }
            try m.close()
        }
        XCTAssertEqual(kplmshim_blocks_live(lines), linesBefore, "header lines not given back")
        // Chunks that held other lines before keep the regions this test's
        // threads made in them; the others' are unmapped.
        XCTAssertLessThanOrEqual(kplmshim_dense_regions_mapped(), regionsBefore + threads * chunksBefore,
                                 "dense cells not given back")
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
