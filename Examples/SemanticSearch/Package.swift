// swift-tools-version: 6.2
//
// An example service: semantic search over the PyPI sample, a Hummingbird 2
// app that embeds Lodestone as a library (through LodestoneService, so it
// gets metrics, spans and a graceful shutdown) and exports Prometheus
// metrics. Build from the repository root:
//   swift build -c release --package-path Examples/SemanticSearch
// A project of your own names Lodestone by URL instead of by path:
//   .package(url: "https://github.com/<owner>/lodestone", from: "0.1.0", traits: ["ServiceIntegration"])
import PackageDescription

let package = Package(
    name: "SemanticSearch",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Lodestone", path: "../..", traits: ["ServiceIntegration"]),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "SemanticSearch",
            dependencies: [
                .product(name: "Lodestone", package: "Lodestone"),
                .product(name: "LodestoneService", package: "Lodestone"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
