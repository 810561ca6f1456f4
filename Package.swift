// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "kplm",
    products: [
        // libkplm.so: the C ABI of include/kplm.h. Build it with
        // `swift build -c release --product kplm -Xswiftc -static-stdlib`.
        .library(name: "kplm", type: .dynamic, targets: ["KPLM", "KPLMSinks"]),
        // The Swift API, for Swift packages that depend on kplm: the core and
        // the network sinks (`import KPLMSinks` brings in both).
        .library(name: "KPLMSwift", targets: ["KPLM", "KPLMSinks"]),
        // The core alone (`import KPLM`): no network sink, no C library
        // beyond libc.
        .library(name: "KPLMCore", targets: ["KPLM"]),
        .executable(name: "kplm-demo", targets: ["kplm-demo"]),
        .executable(name: "kplm-swift-example", targets: ["kplm-swift-example"]),
    ],
    targets: [
        // The public C header, shared with CMake (include/module.modulemap).
        .target(name: "CKPLM", path: "include", publicHeadersPath: "."),
        // Thread naming and a thread-local slot; hidden from the export list.
        .target(name: "CKPLMShims", path: "Sources/CKPLMShims"),
        // The core (no Foundation, no package, no C library beyond libc) and
        // the C exports of kplm.h except the network sinks'.
        .target(name: "KPLM", dependencies: ["CKPLM", "CKPLMShims"], path: "Sources/KPLM"),
        // The CloudWatch and OTLP sinks' private C helpers: SHA-256/HMAC
        // (OpenSSL libcrypto), gzip (zlib) and HTTP(S) (libcurl), loaded at
        // run time with dlopen when a sink needs them (libkplm.so links none
        // of them, and no -dev package is needed to build); hidden from the
        // export list.
        .target(name: "CKPLMCloudWatch", path: "Sources/CKPLMCloudWatch"),
        // The network sinks (DogStatsD, EMF, Prometheus, OTLP, CloudWatch)
        // and their C exports; re-exports KPLM.
        .target(name: "KPLMSinks", dependencies: ["KPLM", "CKPLM", "CKPLMShims", "CKPLMCloudWatch"],
                path: "Sources/KPLMSinks"),
        .executableTarget(name: "kplm-demo", dependencies: ["KPLM"], path: "Sources/kplm-demo"),
        .executableTarget(name: "kplm-swift-example", dependencies: ["KPLM"], path: "examples/swift"),
        .testTarget(name: "KPLMTests", dependencies: ["KPLM", "KPLMSinks"], path: "Tests/KPLMTests"),
    ]
)
