// KPLMSinks: the network sinks of kplm (DogStatsD, CloudWatch EMF,
// Prometheus, OTLP/HTTP, CloudWatch PutMetricData) and their C exports.
// The core (module KPLM) needs no package and no C library beyond libc; the
// C libraries the CloudWatch sink uses (libcurl, OpenSSL libcrypto, zlib)
// are this module's alone. `import KPLMSinks` also brings in the core.
@_exported import KPLM
