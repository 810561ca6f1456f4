// swift-tools-version:6.1
// A Swift package outside kplm's tree (scripts/test_swift_consumer.sh copies
// it to a scratch folder and points KPLM_PATH at the checkout) that records
// through the swift-metrics API only, with kplm bootstrapped as the backend.
import PackageDescription
import Foundation

let kplmPath = ProcessInfo.processInfo.environment["KPLM_PATH"] ?? "../.."

let package = Package(
    name: "swift-consumer",
    dependencies: [
        .package(path: kplmPath),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.0.0"),
    ],
    targets: [
        .executableTarget(name: "consumer", dependencies: [
            .product(name: "KPLM", package: "kplm"),
            .product(name: "KPLMMetrics", package: "kplm"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
    ],
    // A plain script-like main.swift, as a user would write it.
    swiftLanguageModes: [.v5]
)
