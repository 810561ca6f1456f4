import CKPLM
import Glibc

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
