// A Swift producer using kplm's Swift API: an in-memory sink, a resolved
// handle for the hot path, an explicit flush, and the rolling window.
import KPLM

let sink = InMemorySink()
let manager = try MetricsManager(level: .detailed, sink: sink, uploadInterval: .seconds(60))
try manager.start()

// By name: the key is looked up on every put.
for size in [512.0, 2_048, 1_024] {
    try manager.put("UserRecordsPut", stream: "orders", shardId: "shardId-000000000001")
    try manager.put("UserRecordsDataPut", size, stream: "orders", shardId: "shardId-000000000001")
}
try manager.put("ErrorsByCode", stream: "orders", shardId: "shardId-000000000001",
                errorCode: "ProvisionedThroughputExceededException")

// Through a handle: resolved once, cheapest per put.
let buffering = try manager.metric("BufferingTime", stream: "orders")
for ms in [12.0, 48, 30] { try buffering.put(ms) }

// Errors are typed: a NaN is refused with a status, not recorded.
do {
    try manager.put("RequestTime", .nan)
} catch {
    print("refused as expected: \(error)")
}

print("rolling window:")
for s in manager.snapshots() {
    let dims = s.dimensions.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
    print("  \(s.name) [\(dims)] count=\(s.count) sum=\(s.sum) min=\(s.min) max=\(s.max)")
}

try manager.flush()
try manager.close()
print("exported \(sink.snapshots.count) snapshots in \(sink.batches.count) batch(es)")
