import CKPLM
import KPLM
import Synchronization

/// Built-in sinks handed to C callers as a `kplm_sink`: the callbacks are
/// trampolines into a Swift ``MetricsSink`` held by a box (the user_data).
/// `kplm_set_sink` recognises them, takes the Swift sink out of the box and
/// frees the box, so the manager owns the sink; `kplm_sink_release` frees a
/// box that was never handed over.
final class BuiltinSinkBox: @unchecked Sendable {
    let sink: any MetricsSink
    init(_ sink: any MetricsSink) { self.sink = sink }
}

/// The config struct of a built-in sink (kplm_prometheus_config…): its
/// layouts and defaults, and the sink a caller's config makes.
package protocol BuiltinSinkConfig: CConfigStruct {
    /// The sink this config describes, its strings checked (bounded,
    /// UTF-8): `.invalidArgument` for a bad field, or the sink's own error.
    func makeSink() throws(MetricsError) -> any MetricsSink
}

/// Making and unwrapping built-in `kplm_sink`s (see ``BuiltinSinkBox``).
package enum BuiltinSinks {
    /// The body of a built-in sink's C constructor: clears `*out`, checks
    /// that `config` is set and reads it at the size its struct_size
    /// declares (``CallerLayout``: struct_size alone first; an unknown size,
    /// or fields this library does not know set in a newer caller's struct,
    /// are refused), then hands the sink the config makes to `out`.
    /// KPLM_EINVAL for a NULL argument or a refused size; `makeSink()`'s
    /// error as a status. Only the 1.0 part of `*out` is written (built-in
    /// sinks use no field added to kplm_sink later).
    package static func construct<Config: BuiltinSinkConfig>(
        _ config: UnsafePointer<Config>?, _ out: UnsafeMutablePointer<kplm_sink>?
    ) -> kplm_status {
        guard let out else { return KPLM_EINVAL }
        clear(out)
        guard let config, let c = Config.callerLayout.readConfig(config, over: Config.defaults) else {
            return KPLM_EINVAL
        }
        return statusOf { () throws(MetricsError) in
            Self.make(try c.makeSink(), out)
        }
    }

    /// Zeroes the 1.0 part of a caller's kplm_sink.
    static func clear(_ out: UnsafeMutablePointer<kplm_sink>) {
        CallerLayouts.sink.write(kplm_sink(), to: out, size: CallerLayouts.sink.v1Size)
    }

    /// Fills `out` with trampolines owning `sink`.
    static func make(_ sink: any MetricsSink, _ out: UnsafeMutablePointer<kplm_sink>) {
        var c = kplm_sink()
        c.user_data = Unmanaged.passRetained(BuiltinSinkBox(sink)).toOpaque()
        c.open = builtinOpen
        c.export_snapshots = builtinExport
        c.close = builtinClose
        CallerLayouts.sink.write(c, to: out, size: CallerLayouts.sink.v1Size)
    }

    /// The Swift sink of a built-in `kplm_sink`, taking ownership (the box
    /// is released), or nil for a caller-made sink.
    static func take(_ c: kplm_sink) -> (any MetricsSink)? {
        guard isBuiltin(c), let data = c.user_data else { return nil }
        return Unmanaged<BuiltinSinkBox>.fromOpaque(data).takeRetainedValue().sink
    }

    static func isBuiltin(_ c: kplm_sink) -> Bool {
        guard let export = c.export_snapshots else { return false }
        return unsafeBitCast(export, to: UnsafeRawPointer.self) == unsafeBitCast(builtinExport, to: UnsafeRawPointer.self)
    }

    private static func box(_ data: UnsafeMutableRawPointer?) -> BuiltinSinkBox {
        Unmanaged<BuiltinSinkBox>.fromOpaque(data!).takeUnretainedValue()
    }

    // Used only if a caller invokes the callbacks itself (kplm_set_sink
    // never does: it unwraps the box).
    private static let builtinOpen: @convention(c) (UnsafeMutableRawPointer?) -> Int32 = { data in
        (try? box(data).sink.open()) != nil ? 0 : 1
    }
    private static let builtinExport: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<kplm_snapshot>?, Int) -> Int32 = {
        data, snapshots, count in
        guard let snapshots else { return count == 0 ? 0 : 1 }
        let copies = (0..<count).map { CLayout.snapshot(from: snapshots[$0]) }
        return (try? box(data).sink.export(copies)) != nil ? 0 : 1
    }
    private static let builtinClose: @convention(c) (UnsafeMutableRawPointer?) -> Void = { data in
        box(data).sink.close()
    }
}

extension CLayout {
    /// A Swift copy of a C snapshot (also read by the sinks' `kplm_cloudwatch_requests`).
    package static func snapshot(from c: kplm_snapshot) -> MetricSnapshot {
        var dims: [MetricDimension] = []
        if let d = c.dimensions {
            for j in 0..<c.dimension_count {
                dims.append(MetricDimension(d[j].name.map { String(cString: $0) } ?? "",
                                            d[j].value.map { String(cString: $0) } ?? ""))
            }
        }
        var distribution: DistributionSketch? = nil
        if let buckets = c.buckets, c.bucket_count > 0 {
            distribution = DistributionSketch.rebuilt(
                relativeAccuracy: c.relative_accuracy,
                buckets: UnsafeBufferPointer(start: buckets, count: c.bucket_count).lazy.map { ($0.value, $0.count) },
                min: c.min, max: c.max)
        }
        return MetricSnapshot(name: c.name.map { String(cString: $0) } ?? "", count: Int(clamping: c.count),
                              sum: c.sum, min: c.min, max: c.max, dimensions: dims, windowStart: c.window_start,
                              windowEnd: c.window_end, timestampUnix: c.timestamp_unix, distribution: distribution)
    }
}

@c @implementation
public func kplm_sink_release(_ sink: UnsafeMutablePointer<kplm_sink>?) {
    guard let sink else { return }
    // Built-in sinks live in the 1.0 part of the struct: read and clear only that.
    let c = CallerLayouts.sink.read(sink, size: CallerLayouts.sink.v1Size, over: kplm_sink())
    if BuiltinSinks.isBuiltin(c) { _ = BuiltinSinks.take(c) }
    BuiltinSinks.clear(sink)
}
