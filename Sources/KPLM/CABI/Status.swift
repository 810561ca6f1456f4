import CKPLM
import Glibc

extension kplm_status {
    /// The C status of a Swift error.
    init(_ error: MetricsError) {
        self.init(rawValue: UInt32(error.code.rawValue))
    }
}

/// Runs `body`, mapping a thrown ``MetricsError`` to its status.
@inline(__always)
package func statusOf(_ body: () throws(MetricsError) -> Void) -> kplm_status {
    do {
        try body()
        return KPLM_OK
    } catch {
        return kplm_status(error)
    }
}

/// Static C strings, made once and never freed (the ABI returns them as
/// static storage).
enum StaticCStrings {
    nonisolated(unsafe) static let statuses: [UnsafePointer<CChar>] = [String](arrayLiteral:
        "KPLM_OK: success",
        "KPLM_EINVAL: invalid argument",
        "KPLM_ESTATE: not allowed in the manager's current state",
        "KPLM_ECLOSED: the manager is closed",
        "KPLM_ELIMIT: too many distinct metrics (max_metrics reached)",
        "KPLM_ENOMEM: out of memory",
        "KPLM_ESINK: the sink reported a failure"
    ).map { UnsafePointer(strdup($0)!) }

    nonisolated(unsafe) static let unknownStatus = UnsafePointer(strdup("KPLM_E???: unknown status")!)

    /// "MAJOR.MINOR.PATCH", built from the header's macros.
    nonisolated(unsafe) static let version = UnsafePointer(strdup("\(KPLM_VERSION_MAJOR).\(KPLM_VERSION_MINOR).\(KPLM_VERSION_PATCH)")!)
}

@c @implementation
public func kplm_status_string(_ status: kplm_status) -> UnsafePointer<CChar>! {
    let index = Int(status.rawValue)
    return index < StaticCStrings.statuses.count ? StaticCStrings.statuses[index] : StaticCStrings.unknownStatus
}

@c @implementation
public func kplm_version() -> UnsafePointer<CChar>! {
    StaticCStrings.version
}
