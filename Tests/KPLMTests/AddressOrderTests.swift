import XCTest
import KPLMTestSupport
@testable import KPLM

/// Flushes and reads visit many keys in address order (``AddressOrder``):
/// the sort itself, and that a flush and a read of keys put in an order
/// unlike their memory's stay exact and in export order.
final class AddressOrderTests: XCTestCase {
    private final class Box {}

    private func radixSorted(_ values: [UInt]) -> [UInt] {
        var copy = values
        copy.withUnsafeMutableBufferPointer { AddressOrder.radixSort($0) }
        return copy
    }

    private func addresses(_ references: [Unmanaged<Box>]) -> [UInt] {
        references.map { UInt(bitPattern: $0.toOpaque()) }
    }

    func testRadixSortAgreesWithSortingOverEverySpan() {
        var generator = SystemRandomNumberGenerator()
        // Spans of one to six passes of 11 bits, equal low bits (aligned
        // addresses), a base far from zero, the whole range.
        for (count, bits, alignment) in [(0, 8, 1), (1, 8, 1), (2, 8, 1), (1_000, 8, 1), (5_000, 11, 16),
                                         (5_000, 12, 16), (5_000, 22, 16), (5_000, 33, 1), (5_000, 44, 8),
                                         (3_000, 64, 1)] as [(Int, Int, UInt)] {
            let base: UInt = bits == 64 ? 0 : 0x7f00_0000_0000
            let top: UInt = bits == 64 ? .max : (1 << UInt(bits)) - 1
            let values = (0..<count).map { _ in base &+ (UInt.random(in: 0...top, using: &generator) & ~(alignment - 1)) }
            XCTAssertEqual(radixSorted(values), values.sorted(), "\(count) values over \(bits) bits")
        }
        let repeated = (0..<4_000).map { UInt($0 * 7 % 37) * 64 }
        XCTAssertEqual(radixSorted(repeated), repeated.sorted())
        XCTAssertEqual(radixSorted([UInt](repeating: 42, count: 2_000)), [UInt](repeating: 42, count: 2_000))
    }

    func testReferencesAreSortedOnlyWhenManyAndOutOfOrder() {
        let objects = (0..<3 * AddressOrder.minimumCount).map { _ in Box() }
        withExtendedLifetime(objects) {
            var references = objects.map { Unmanaged.passUnretained($0) }.shuffled()
            let shuffled = addresses(references)
            XCTAssertTrue(AddressOrder.sort(&references))
            XCTAssertEqual(addresses(references), shuffled.sorted())

            // In order already, or all but one pair in 32: left as they are.
            XCTAssertFalse(AddressOrder.sort(&references))
            for i in stride(from: 0, to: references.count - 1, by: 32) { references.swapAt(i, i + 1) }
            let nearly = addresses(references)
            XCTAssertFalse(AddressOrder.sort(&references))
            XCTAssertEqual(addresses(references), nearly)

            // Fewer than the minimum: left in their order.
            var few = Array(references.prefix(AddressOrder.minimumCount - 1)).shuffled()
            let fewBefore = addresses(few)
            XCTAssertFalse(AddressOrder.sort(&few))
            XCTAssertEqual(addresses(few), fewBefore)
        }
    }

    /// Keys created in one order, put in another: the flush's changed keys
    /// and the read's keys (in export order, unlike creation order) are
    /// visited in address order, and what they export and read is exact.
    func testAFlushAndAReadOfKeysPutOutOfTheirMemorysOrderAreExact() throws {
        let clock = TestClock(100)
        let sink = InMemorySink()
        let m = try detailed(clock, sink: sink)
        try m.start()
        let keys = 3 * AddressOrder.minimumCount
        func shard(_ i: Int) -> String { "shard-\(i * 7919 % keys)" }
        let metrics = try (0..<keys).map { try m.metric("Spread", stream: "s", shardId: shard($0)) }
        try m.flush()   // (takes the keys listed in creation order: nothing to export)
        XCTAssertTrue(sink.snapshots.isEmpty)
        let order = Array(0..<keys).shuffled()
        var expected: [String: Int] = [:]
        for (n, i) in order.enumerated() {
            for _ in 0...(n % 3) { try metrics[i].put(1) }
            expected[shard(i)] = n % 3 + 1
        }
        let sortsBefore = AddressOrder.sortCount.load(ordering: .relaxed)
        try m.flush()
        XCTAssertGreaterThan(AddressOrder.sortCount.load(ordering: .relaxed), sortsBefore, "the flush did not sort")
        let exported = sink.snapshots
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: exported.map { ($0.dimensions[1].value, $0.count) }), expected)
        let exportOrder = exported.map { $0.dimensions[1].value }
        XCTAssertEqual(exportOrder, exportOrder.sorted { ExportOrder.compare($0, $1) < 0 })

        // Every other key again; the read collects every key's cells.
        for (n, i) in order.enumerated() where n % 2 == 0 {
            try metrics[i].put(2)
            expected[shard(i), default: 0] += 1
        }
        let sortsBeforeRead = AddressOrder.sortCount.load(ordering: .relaxed)
        let windows = m.windowStatisticsByKey()
        XCTAssertGreaterThan(AddressOrder.sortCount.load(ordering: .relaxed), sortsBeforeRead, "the read did not sort")
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: windows.map { ($0.key.shardId!, $0.value.count) }), expected)
        try m.close()
    }
}
