// KPLMSinks: the network sinks of kplm and their C exports, one folder per
// sink (DogStatsD, EMF, Prometheus, OTLP, CloudWatch) over a shared
// Transport/ (sockets and deadlines, the http(s) endpoint parser, retry
// backoff); CABI/ holds the layouts of the sinks' config structs.
// Layers: KPLM (the core, no C) ← KPLMCABI (the core's C ABI) ← KPLMSinks;
// nothing points back. The C libraries the CloudWatch and OTLP sinks use
// (libcurl, OpenSSL libcrypto, zlib) are this module's alone, loaded at run
// time. `import KPLMSinks` also brings in the core.
@_exported import KPLM
