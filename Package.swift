// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "kplm",
    products: [
        // libkplm.so: the C ABI of include/kplm.h. Build it with
        // `swift build -c release --product kplm -Xswiftc -static-stdlib`.
        .library(name: "kplm", type: .dynamic, targets: ["KPLM", "KPLMCABI", "KPLMSinks"]),
        // The Swift API, for Swift packages that depend on kplm; each product
        // is named after the module it is imported as. The core alone
        // (`import KPLM`): no network sink, no C library beyond libc.
        .library(name: "KPLM", targets: ["KPLM"]),
        // The core and the network sinks (`import KPLMSinks` brings in both).
        .library(name: "KPLMSinks", targets: ["KPLM", "KPLMSinks"]),
        // A manager as a swift-service-lifecycle Service (`import
        // KPLMServiceLifecycle`); the only product that brings in a package.
        .library(name: "KPLMServiceLifecycle", targets: ["KPLMServiceLifecycle"]),
        // kplm as an apple/swift-metrics backend (`import KPLMMetrics`):
        // KPLMMetricsFactory.
        .library(name: "KPLMMetrics", targets: ["KPLMMetrics"]),
        // The earlier names of KPLMSinks and KPLM, kept for existing dependants.
        .library(name: "KPLMSwift", targets: ["KPLM", "KPLMSinks"]),
        .library(name: "KPLMCore", targets: ["KPLM"]),
        .executable(name: "kplm-demo", targets: ["kplm-demo"]),
        .executable(name: "kplm-swift-example", targets: ["kplm-swift-example"]),
        .executable(name: "kplm-service-example", targets: ["kplm-service-example"]),
    ],
    dependencies: [
        // The core modules (KPLM, KPLMCABI, KPLMSinks) depend on no package.
        // For KPLMServiceLifecycle only.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.0.0"),
        // For KPLMMetrics only.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.0.0"),
        // For the benchmark of KPLMMetrics only (kplm-metrics-bench): the peer it is measured against.
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
    ],
    targets: [
        // The public C header, shared with CMake (include/module.modulemap).
        .target(name: "CKPLM", path: "include", publicHeadersPath: "."),
        // Thread naming, the callback frame and writer index (thread-locals),
        // the second ticker, the heavy barrier and the fork generation;
        // hidden from the export list.
        .target(name: "CKPLMShims", path: "Sources/CKPLMShims"),
        // The core, the Swift API (no Foundation, no package, no C library
        // beyond libc, no C type: it does not see kplm.h).
        .target(name: "KPLM", dependencies: ["CKPLMShims"], path: "Sources/KPLM"),
        // The C ABI of the core: the exports of kplm.h except the network
        // sinks', and the C side data they keep (per manager, per key).
        .target(name: "KPLMCABI", dependencies: ["KPLM", "CKPLM", "CKPLMShims"], path: "Sources/KPLMCABI"),
        // The CloudWatch and OTLP sinks' private C helpers: SHA-256/HMAC
        // (OpenSSL libcrypto), gzip (zlib) and HTTP(S) (libcurl), loaded at
        // run time with dlopen when a sink needs them (libkplm.so links none
        // of them, and no -dev package is needed to build); hidden from the
        // export list.
        .target(name: "CKPLMCloudWatch", path: "Sources/CKPLMCloudWatch"),
        // The network sinks (DogStatsD, EMF, Prometheus, OTLP, CloudWatch)
        // and their C exports; re-exports KPLM. Layers: KPLM ← KPLMCABI ←
        // KPLMSinks (nothing points back).
        .target(name: "KPLMSinks", dependencies: ["KPLM", "KPLMCABI", "CKPLM", "CKPLMShims", "CKPLMCloudWatch"],
                path: "Sources/KPLMSinks"),
        // KPLMService: a manager run as a ServiceLifecycle Service (start,
        // wait for graceful shutdown, close with the final flush).
        .target(name: "KPLMServiceLifecycle",
                dependencies: ["KPLM", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                path: "Sources/KPLMServiceLifecycle"),
        // kplm behind swift-metrics' MetricsFactory.
        .target(name: "KPLMMetrics", dependencies: ["KPLM", "CKPLMShims", .product(name: "CoreMetrics", package: "swift-metrics")],
                path: "Sources/KPLMMetrics"),
        .executableTarget(name: "kplm-demo", dependencies: ["KPLM"], path: "Sources/kplm-demo"),
        // swift-metrics handlers through KPLMMetrics next to swift-prometheus
        // (scripts/bench.sh; swift run -c release kplm-metrics-bench).
        .executableTarget(name: "kplm-metrics-bench",
                          dependencies: ["KPLM", "KPLMMetrics", .product(name: "CoreMetrics", package: "swift-metrics"),
                                         .product(name: "Prometheus", package: "swift-prometheus")],
                          path: "benchmarks/swift-metrics"),
        .executableTarget(name: "kplm-swift-example", dependencies: ["KPLM"], path: "examples/swift"),
        // A service recording through swift-metrics only, under ServiceLifecycle,
        // exporting to Prometheus (scripts/check_service_example.py scrapes it).
        .executableTarget(name: "kplm-service-example",
                          dependencies: ["KPLM", "KPLMSinks", "KPLMMetrics", "KPLMServiceLifecycle",
                                         .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                                         .product(name: "Metrics", package: "swift-metrics")],
                          path: "examples/swift-service"),
        // One XCTest target per module, and the helpers they share.
        .target(name: "KPLMTestSupport", dependencies: ["KPLM"], path: "Tests/KPLMTestSupport"),
        .testTarget(name: "KPLMTests", dependencies: ["KPLM", "KPLMTestSupport"], path: "Tests/KPLMTests"),
        .testTarget(name: "KPLMCABITests", dependencies: ["KPLM", "KPLMCABI", "CKPLM"], path: "Tests/KPLMCABITests"),
        .testTarget(name: "KPLMSinksTests", dependencies: ["KPLMSinks", "KPLMCABI", "KPLMTestSupport"],
                    path: "Tests/KPLMSinksTests"),
        .testTarget(name: "KPLMMetricsTests",
                    dependencies: ["KPLMMetrics", "KPLM", "KPLMTestSupport",
                                   .product(name: "CoreMetrics", package: "swift-metrics")],
                    path: "Tests/KPLMMetricsTests"),
        .testTarget(name: "KPLMServiceLifecycleTests",
                    dependencies: ["KPLMServiceLifecycle", "KPLM", "KPLMTestSupport",
                                   .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
                    path: "Tests/KPLMServiceLifecycleTests"),
    ]
)
