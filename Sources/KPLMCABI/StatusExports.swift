import CKPLM
import KPLM
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

@c @implementation
public func kplm_status_string(_ status: kplm_status) -> UnsafePointer<CChar>! {
    let index = Int(status.rawValue)
    return index < StaticCStrings.statuses.count ? StaticCStrings.statuses[index] : StaticCStrings.unknownStatus
}

@c @implementation
public func kplm_version() -> UnsafePointer<CChar>! {
    StaticCStrings.version
}
