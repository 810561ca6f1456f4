import CKPLM
import KPLM
import KPLMCABI

// kplm_cloudwatch_requests: CloudWatchRequestBuilder for C callers.

@c @implementation
public func kplm_cloudwatch_requests(
    _ s: UnsafePointer<kplm_snapshot>?, _ n: Int, _ cwNamespace: UnsafePointer<CChar>?, _ wallNow: Double,
    _ emit: (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int, Int) -> Int32)?,
    _ userData: UnsafeMutableRawPointer?, _ dropped: UnsafeMutablePointer<Int>?
) -> kplm_status {
    // Binaries built before 1.0: an array of 1.0 snapshots.
    kplm_cloudwatch_requests_sized(s, n, cwNamespace, wallNow, emit, userData, dropped, 0)
}

@c @implementation
public func kplm_cloudwatch_requests_sized(
    _ s: UnsafePointer<kplm_snapshot>?, _ n: Int, _ cwNamespace: UnsafePointer<CChar>?, _ wallNow: Double,
    _ emit: (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, Int, Int) -> Int32)?,
    _ userData: UnsafeMutableRawPointer?, _ dropped: UnsafeMutablePointer<Int>?, _ snapshotSize: Int
) -> kplm_status {
    dropped?.pointee = 0
    // The caller's array stride; fields past this library's layout (a newer
    // caller's) are not read.
    let layout = CallerLayouts.snapshot
    let stride = layout.size(snapshotSize)
    guard let emit, let cwNamespace, n == 0 || s != nil, stride >= layout.v1Size else { return KPLM_EINVAL }
    guard let namespace = try? CArguments.string(cwNamespace, limit: 4 * CloudWatchRequestBuilder.maxNamespaceLength,
                                                 label: "namespace") else { return KPLM_EINVAL }
    var snapshots: [MetricSnapshot] = []
    snapshots.reserveCapacity(n)
    for i in 0..<n {
        let c = layout.read(layout.element(i, of: s!, stride: stride), size: stride, over: kplm_snapshot())
        guard c.name != nil, c.dimension_count == 0 || c.dimensions != nil else { return KPLM_EINVAL }
        for j in 0..<c.dimension_count where c.dimensions[j].name == nil || c.dimensions[j].value == nil {
            return KPLM_EINVAL
        }
        var snapshot = CLayout.snapshot(from: c)
        snapshot.namespace = namespace
        snapshots.append(snapshot)
    }
    let batches: CloudWatchBatches
    do {
        batches = try CloudWatchRequestBuilder.batches(snapshots, namespace: namespace, wallNow: wallNow)
    } catch {
        return KPLM_EINVAL
    }
    dropped?.pointee = batches.dropped.values.reduce(0, +)
    for request in batches.requests {
        var body = request.body
        let rc = body.withUTF8 { bytes in
            // withUTF8 gives no NUL terminator: copy with one.
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: bytes.count + 1) { buffer in
                let base = buffer.baseAddress!
                UnsafeMutableRawPointer(base).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                base[bytes.count] = 0
                return emit(userData, base, bytes.count, request.datums.count)
            }
        }
        if rc != 0 { return KPLM_ESINK }
    }
    return KPLM_OK
}
