/// The unit of a metric, as CloudWatch names it.
///
/// The raw values are those of `kplm_unit` in `kplm.h`.
public enum MetricUnit: Int, Sendable, CaseIterable {
    /// No unit (metrics kplm does not know).
    case none = 0
    /// A number of things.
    case count = 1
    /// A number of bytes.
    case bytes = 2
    /// A duration in milliseconds.
    case milliseconds = 3

    /// The CloudWatch spelling: "None", "Count", "Bytes", "Milliseconds".
    public var name: String {
        switch self {
        case .none: "None"
        case .count: "Count"
        case .bytes: "Bytes"
        case .milliseconds: "Milliseconds"
        }
    }
}

/// The metrics the Kinesis Producer Library reports, with the unit and the
/// KPL metrics level of each: the names are the KPL's, byte for byte.
///
/// A KPL level says how verbose a setting must be for the metric to be
/// uploaded: ``MetricsLevel/summary`` metrics go out at SUMMARY and
/// DETAILED, ``MetricsLevel/detailed`` ones only at DETAILED.
public enum KPLMetrics {
    /// User records received by `put` (Count, Detailed).
    public static let userRecordsReceived = "UserRecordsReceived"
    /// User records waiting to be sent (Count, Detailed).
    public static let userRecordsPending = "UserRecordsPending"
    /// User records put successfully (Count, Summary).
    public static let userRecordsPut = "UserRecordsPut"
    /// Bytes of user records put successfully (Bytes, Detailed).
    public static let userRecordsDataPut = "UserRecordsDataPut"
    /// Kinesis records put successfully (Count, Summary).
    public static let kinesisRecordsPut = "KinesisRecordsPut"
    /// Bytes of Kinesis records put successfully (Bytes, Detailed).
    public static let kinesisRecordsDataPut = "KinesisRecordsDataPut"
    /// Errors by error code (Count, Summary).
    public static let errorsByCode = "ErrorsByCode"
    /// Every error, whatever its code (Count, Summary).
    public static let allErrors = "AllErrors"
    /// Retries per user record (Count, Detailed).
    public static let retriesPerRecord = "RetriesPerRecord"
    /// User records that expired before being put (Count, Summary).
    public static let userRecordExpired = "UserRecordExpired"
    /// Time between a user record's arrival and its send (Milliseconds, Summary).
    public static let bufferingTime = "BufferingTime"
    /// Time PutRecords requests take (Milliseconds, Detailed).
    public static let requestTime = "RequestTime"
    /// User records aggregated into one Kinesis record (Count, Detailed).
    public static let userRecordsPerKinesisRecord = "UserRecordsPerKinesisRecord"
    /// Kinesis records per PutRecords request (Count, Detailed).
    public static let kinesisRecordsPerPutRecordsRequest = "KinesisRecordsPerPutRecordsRequest"
    /// User records per PutRecords request (Count, Detailed).
    public static let userRecordsPerPutRecordsRequest = "UserRecordsPerPutRecordsRequest"

    /// Every KPL metric with its unit and KPL level, in the KPL's order.
    public static let all: [(name: String, unit: MetricUnit, level: MetricsLevel)] = [
        (userRecordsReceived, .count, .detailed),
        (userRecordsPending, .count, .detailed),
        (userRecordsPut, .count, .summary),
        (userRecordsDataPut, .bytes, .detailed),
        (kinesisRecordsPut, .count, .summary),
        (kinesisRecordsDataPut, .bytes, .detailed),
        (errorsByCode, .count, .summary),
        (allErrors, .count, .summary),
        (retriesPerRecord, .count, .detailed),
        (userRecordExpired, .count, .summary),
        (bufferingTime, .milliseconds, .summary),
        (requestTime, .milliseconds, .detailed),
        (userRecordsPerKinesisRecord, .count, .detailed),
        (kinesisRecordsPerPutRecordsRequest, .count, .detailed),
        (userRecordsPerPutRecordsRequest, .count, .detailed),
    ]

    /// The unit of a metric name; ``MetricUnit/none`` for names the KPL does
    /// not define. Names compare byte for byte.
    public static func unit(of name: String) -> MetricUnit {
        entry(name)?.unit ?? .none
    }

    /// The KPL level of a metric name; ``MetricsLevel/detailed`` for names
    /// the KPL does not define.
    public static func level(of name: String) -> MetricsLevel {
        entry(name)?.level ?? .detailed
    }

    private static func entry(_ name: String) -> (name: String, unit: MetricUnit, level: MetricsLevel)? {
        all.first { ByteIdentity.equal($0.name, name) }
    }
}
