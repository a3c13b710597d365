// swift-tools-version: 6.2
//
// What sits on top of the Lodestone library, in its own package so that a
// package depending on Lodestone resolves none of these dependencies: the
// `lodestone` command (with `lodestone serve`, the Pinecone-compatible
// server), the reliability drivers (`lodestone-stress`) and their tests.
// Build from the repository root with `swift build --package-path Tools`
// (the Scripts/ do); the library comes from `..` by path.
import PackageDescription

let package = Package(
    name: "LodestoneTools",
    products: [
        .executable(name: "lodestone", targets: ["LodestoneCLI"]),
        .executable(name: "lodestone-stress", targets: ["LodestoneStress"]),
    ],
    dependencies: [
        // `name:` keeps the dependency resolvable whatever the clone folder is called.
        // The trait changes nothing in the modules used here; with it, the
        // library builds as Examples/SemanticSearch builds it, so CI builds
        // the example in this package's build folder and reuses all but
        // the example's own modules (docs/ci.md).
        .package(name: "Lodestone", path: "..", traits: ["ServiceIntegration"]),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // The HTTP server of `lodestone serve`.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // Reading ann-benchmarks' HDF5 data files, for the lodestone command
        // only: libhdf5 is loaded on first use (dlopen), so the binary runs
        // where HDF5 is not installed.
        .target(name: "CLodestoneHDF5Reader", linkerSettings: [.linkedLibrary("dl")]),
        // The Pinecone-compatible HTTP server (`lodestone serve`), on Hummingbird.
        .target(
            name: "LodestoneServer",
            dependencies: [
                .product(name: "Lodestone", package: "Lodestone"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["PROTOCOL.md", "openapi.yaml"]  // what is served, written down beside the code
        ),
        // What the two executables share (error type, JSON lines, timing).
        .target(name: "LodestoneToolSupport", dependencies: [.product(name: "Lodestone", package: "Lodestone")]),
        .executableTarget(
            name: "LodestoneCLI",
            dependencies: [
                .product(name: "Lodestone", package: "Lodestone"),
                "LodestoneServer",
                "LodestoneToolSupport",
                "CLodestoneHDF5Reader",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The reliability drivers (kill points, failed operations, hostile
        // files, power cuts, soak, the crash workload): test tools, kept out
        // of the shipped `lodestone` binary. Scripts/reliability.sh runs them.
        .executableTarget(
            name: "LodestoneStress",
            dependencies: [
                .product(name: "Lodestone", package: "Lodestone"),
                "LodestoneToolSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The server's wire, the command end to end, knn jobs, and crashes
        // of the stress drivers' workload (Fixtures.swift is the root
        // tests' own, linked in).
        // The root tests' Float64 reference (Tests/CTestReference, linked
        // in under another name: target names are unique across packages).
        .target(name: "CLodestoneToolsTestReference", path: "Tests/CTestReference"),
        .testTarget(
            name: "LodestoneToolsTests",
            dependencies: [.product(name: "Lodestone", package: "Lodestone"), "LodestoneServer",
                           "CLodestoneToolsTestReference"]
        ),
    ]
)
