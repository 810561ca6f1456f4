/// The error every throwing kplm call reports.
///
/// `code` maps one to one onto `kplm_status` in `kplm.h`; `message` says what
/// was wrong in words meant for a person.
public struct MetricsError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is. Raw values are those of `kplm_status`.
    public enum Code: Int, Sendable {
        /// An argument was invalid (empty or over-long string, bad UTF-8, NaN…).
        case invalidArgument = 1
        /// The call is not allowed in the manager's current state.
        case invalidState = 2
        /// The manager is closed, or closing.
        case closed = 3
        /// A new key would exceed the manager's cap on distinct metrics.
        case limitReached = 4
        /// Memory could not be allocated.
        case outOfMemory = 5
        /// The sink failed to open or to export.
        case sinkFailed = 6
    }

    /// The kind of failure.
    public let code: Code
    /// A human-readable explanation.
    public let message: String

    /// Creates an error of `code` explained by `message`.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
