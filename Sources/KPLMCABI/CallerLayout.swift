import CKPLM
import KPLM

/// How a struct of kplm.h crosses the ABI when the caller and the library
/// may have been compiled against different versions of the header (SPEC §4,
/// "Struct growth" in kplm.h).
///
/// Every struct can grow at its end. The caller tells the library the size
/// it compiled (a `struct_size` field, or a size argument that the header's
/// macros fill with `sizeof`); 0 means the 1.0 layout. The library then:
/// - reads a struct the caller hands in only up to the caller's size: fields
///   the caller lacks keep their defaults, and a larger struct is accepted
///   only when every byte past the library's own layout is zero (a field
///   this library does not know was left at its default);
/// - writes a struct it hands out (or lays out for a callback) exactly at
///   the caller's size: its own fields cut to the caller's part, zeros for
///   fields the caller has and the library does not know.
///
/// Thread-safe: values only.
package struct CallerLayout<Struct> {
    /// Size of the 1.0 layout, which a declared size of 0 stands for.
    package let v1Size: Int
    /// Sizes of layouts published before 1.0 that are still read (only
    /// kplm_config had any).
    package let olderSizes: [Int]

    /// Bytes of the layout this library was compiled with.
    package var ownSize: Int { MemoryLayout<Struct>.size }

    /// The 1.0 layout ends with the field at `lastV1Field` (its size rounded
    /// up to the struct's alignment, as C pads it). Derived from the field
    /// rather than `MemoryLayout.size`, so that it stays the 1.0 size once
    /// later fields follow.
    package init<Field>(lastV1Field: KeyPath<Struct, Field>, olderSizes: [Int] = []) {
        let end = MemoryLayout<Struct>.offset(of: lastV1Field)! + MemoryLayout<Field>.size
        let alignment = MemoryLayout<Struct>.alignment
        v1Size = (end + alignment - 1) / alignment * alignment
        self.olderSizes = olderSizes
    }

    /// The caller's size: `declared`, or the 1.0 size for 0.
    @inline(__always)
    package func size(_ declared: Int) -> Int { declared == 0 ? v1Size : declared }

    /// Whether a struct the caller declared as `declared` bytes is one this
    /// library can take: a layout it knows (1.0 or later, up to its own, or
    /// an older one), or a larger one (at most ``maxSize``) whose bytes past
    /// the library's own layout are all zero. `p` is read only in that last
    /// case.
    package func accepts(_ p: UnsafeRawPointer, declared: Int) -> Bool {
        let size = size(declared)
        if size == ownSize || size == v1Size || olderSizes.contains(size) { return true }
        if size < ownSize {
            // A layout between 1.0 and this library's: it ends at a field
            // boundary only if it is a size some version had. Versions add
            // whole fields, so any size from v1Size up that is a multiple of
            // the alignment ends at one.
            return size > v1Size && size % MemoryLayout<Struct>.alignment == 0
        }
        // A newer layout: whole fields (a multiple of the alignment), within
        // a sane bound (a wrong size must not make the library read far past
        // the caller's struct), nothing set that this library does not know.
        guard size % MemoryLayout<Struct>.alignment == 0, size <= Self.maxSize else { return false }
        let bytes = UnsafeRawBufferPointer(start: p + ownSize, count: size - ownSize)
        return !bytes.contains { $0 != 0 }
    }

    /// The largest size accepted for any struct: 1 KiB (the largest 1.0
    /// struct is under 100 bytes).
    package static var maxSize: Int { 1024 }

    /// The caller's struct at `p` (`size` bytes, accepted by ``accepts``),
    /// with the fields it lacks taken from `defaults`.
    package func read(_ p: UnsafeRawPointer, size: Int, over defaults: Struct) -> Struct {
        var value = defaults
        withUnsafeMutableBytes(of: &value) { own in
            own.copyMemory(from: UnsafeRawBufferPointer(start: p, count: Swift.min(size, ownSize)))
        }
        return value
    }

    /// Writes `value` as the caller's `size` bytes at `p`: its first
    /// `min(size, ownSize)` bytes, then zeros.
    package func write(_ value: Struct, to p: UnsafeMutableRawPointer, size: Int) {
        withUnsafeBytes(of: value) { own in
            p.copyMemory(from: own.baseAddress!, byteCount: Swift.min(size, own.count))
        }
        if size > ownSize {
            (p + ownSize).initializeMemory(as: UInt8.self, repeating: 0, count: size - ownSize)
        }
    }

    /// Calls `body` with `count` structs laid out at the caller's `stride`
    /// in one temporary allocation (on the stack when small), element `i`
    /// being `element(i)`. Valid during `body` only.
    @inline(__always)
    package func withArray<R>(count: Int, stride: Int, _ element: (Int) -> Struct,
                              _ body: (UnsafePointer<Struct>) -> R) -> R {
        if stride == MemoryLayout<Struct>.stride {
            // The caller's layout is this library's: plain stores.
            return withUnsafeTemporaryAllocation(of: Struct.self, capacity: Swift.max(count, 1)) { buffer in
                let base = buffer.baseAddress!
                for i in 0..<count { (base + i).initialize(to: element(i)) }
                return body(UnsafePointer(base))
            }
        }
        return withUnsafeTemporaryAllocation(byteCount: Swift.max(count * stride, 1),
                                             alignment: MemoryLayout<Struct>.alignment) { raw in
            let base = raw.baseAddress!
            for i in 0..<count { write(element(i), to: base + i * stride, size: stride) }
            return body(UnsafeRawPointer(base).assumingMemoryBound(to: Struct.self))
        }
    }
}

extension CallerLayout {
    /// Element `i` of an array of the caller's `stride` starting at `base`.
    @inline(__always)
    package func element(_ i: Int, of base: UnsafePointer<Struct>, stride: Int) -> UnsafePointer<Struct> {
        (UnsafeRawPointer(base) + i * stride).assumingMemoryBound(to: Struct.self)
    }
}

/// Config structs (kplm_config and the sink configs) start with
/// `uint32_t struct_size`, the caller's layout.
extension CallerLayout {
    /// Writes `defaults` as the caller's config struct of `declared` bytes
    /// (0 = the 1.0 layout), its struct_size set to that size. NULL, and a
    /// size too small to hold struct_size, are ignored.
    package func initialize(_ config: UnsafeMutablePointer<Struct>?, size declared: Int, defaults: Struct) {
        guard let config else { return }
        let size = size(declared)
        guard size >= MemoryLayout<UInt32>.size else { return }
        var value = defaults
        withUnsafeMutableBytes(of: &value) { $0.storeBytes(of: UInt32(truncatingIfNeeded: size), as: UInt32.self) }
        write(value, to: UnsafeMutableRawPointer(config), size: size)
    }

    /// The caller's config struct at `config`, read at the size its
    /// struct_size declares (struct_size alone is read first), fields it
    /// lacks from `defaults`; nil when ``accepts(_:declared:)`` refuses it.
    package func readConfig(_ config: UnsafePointer<Struct>, over defaults: Struct) -> Struct? {
        let declared = Int(UnsafeRawPointer(config).load(as: UInt32.self))
        guard accepts(config, declared: declared) else { return nil }
        return read(config, size: size(declared), over: defaults)
    }
}

/// A config struct of kplm.h (kplm_config, a sink's config): it starts with
/// `uint32_t struct_size`, and has a 1.0 layout and defaults.
package protocol CConfigStruct {
    /// The struct's layouts (see ``CallerLayout``).
    static var callerLayout: CallerLayout<Self> { get }
    /// The defaults, in this library's layout (struct_size aside).
    static var defaults: Self { get }
}

extension CConfigStruct {
    /// The body of a config init: the defaults written as the caller's
    /// `size` bytes (0 = the 1.0 layout). NULL is ignored.
    package static func initialize(_ config: UnsafeMutablePointer<Self>?, size: Int) {
        callerLayout.initialize(config, size: size, defaults: defaults)
    }
}

/// The layouts of the structs of kplm.h that the core's C ABI reads or writes.
package enum CallerLayouts {
    /// kplm_config: 1.0 ends with metric_namespace. Before 1.0 it ended
    /// after max_metrics (0.1, the 48 bytes of SPEC §2), then after
    /// export_timeout_ms.
    static let config = CallerLayout(
        lastV1Field: \kplm_config.metric_namespace,
        olderSizes: [MemoryLayout<kplm_config>.offset(of: \kplm_config.export_timeout_ms)!,
                     MemoryLayout<kplm_config>.offset(of: \kplm_config.granularity)!])
    /// kplm_sink: 1.0 ends with close.
    static let sink = CallerLayout(lastV1Field: \kplm_sink.close)
    /// kplm_snapshot: 1.0 ends with timestamp_unix.
    package static let snapshot = CallerLayout(lastV1Field: \kplm_snapshot.timestamp_unix)
    /// kplm_event: 1.0 ends with dimension_count.
    static let event = CallerLayout(lastV1Field: \kplm_event.dimension_count)
    /// kplm_statistics: 1.0 ends with max.
    static let statistics = CallerLayout(lastV1Field: \kplm_statistics.max)
}
