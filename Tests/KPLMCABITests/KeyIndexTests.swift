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
    func testEntriesAreFoundByTheirArgumentsAndOnlyWhileLinked() throws {
        guard KeyIndexReaders.isAvailable, kplmshim_writer_index() >= 0 else {
            throw XCTSkip("the key index is not used here (no heavy barrier, or no writer index)")
        }
        let m = try MetricsManager(level: .detailed)
        let keys = 5000   // enough for many probe sequences longer than one slot
        let index = CKeyIndex(maxEntries: keys)
        let shards = (0..<keys).map { strdup("shardId-\($0)")! }
        let name = strdup("UserRecordsPut")!, stream = strdup("orders")!
        defer { for p in shards + [name, stream] { free(p) } }
        func arguments(_ k: Int) -> CPutArguments { CPutArguments(name, stream, shards[k], nil)! }
        func isFound(_ k: Int) -> Bool {
            if case .missing = index.put(arguments(k), 1) { return false }
            return true
        }

        var metrics: [Metric] = []
        for k in 0..<keys {
            let metric = try m.metric("UserRecordsPut", stream: "orders", shardId: "shardId-\(k)")
            metrics.append(metric)
            XCTAssertFalse(isFound(k), "key \(k) found before it was inserted")
            index.insert(arguments(k), metric)
        }
        XCTAssertEqual(index.count, keys)
        for k in 0..<keys { XCTAssertTrue(isFound(k), "key \(k) not found") }
        // Inserted again: already linked (found by the insert's own lookup).
        for k in 0..<keys { index.insert(arguments(k), metrics[k]) }
        XCTAssertEqual(index.count, keys)

        // Unlinking every other key leaves tombstones in the others' probe
        // sequences: those are still found, the unlinked ones are not.
        index.remove(stride(from: 0, to: keys, by: 2).map { metrics[$0] })
        XCTAssertEqual(index.count, keys / 2)
        for k in 0..<keys { XCTAssertEqual(isFound(k), k % 2 == 1, "key \(k)") }
    }
}
