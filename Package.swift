// swift-tools-version: 6.2
//
// Lodestone: an embedded approximate-nearest-neighbour vector index engine.
//
// This manifest is the library alone: a package that depends on Lodestone
// resolves no other package and builds only its code plus three system
// libraries (OpenBLAS, LZ4, zlib). The one exception is opt-in: the
// `ServiceIntegration` trait (off by default) adds the LodestoneService
// product, which brings swift-service-lifecycle, swift-metrics, swift-log
// and swift-distributed-tracing; SwiftPM resolves them only when a package
// enables the trait. The server,
// the `lodestone` command and the reliability drivers are their own package
// in Tools/ (it depends on this one by path); benchmarks and fuzzers too
// (Benchmarks/, Fuzz/).
import PackageDescription

let package = Package(
    name: "Lodestone",
    products: [
        .library(name: "Lodestone", targets: ["Lodestone"]),
        // The C ABI (lodestone.h) for Python and other languages; a library
        // user who depends on `Lodestone` never builds it.
        .library(name: "LodestoneC", type: .dynamic, targets: ["LodestoneCAPI"]),
        // A swift-service-lifecycle Service with metrics, logs and traces;
        // empty unless the ServiceIntegration trait is enabled.
        .library(name: "LodestoneService", targets: ["LodestoneService"]),
    ],
    traits: [
        .trait(name: "ServiceIntegration",
               description: "The LodestoneService product: a swift-service-lifecycle Service with swift-metrics, "
                   + "swift-log and swift-distributed-tracing instrumentation."),
        .default(enabledTraits: []),
    ],
    dependencies: [
        // Resolved only when the ServiceIntegration trait is enabled (every
        // use below is conditioned on it).
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
    ],
    targets: [
        // System libraries, found through pkg-config.
        .systemLibrary(
            name: "CLodestoneBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(
            name: "CLodestoneLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        .systemLibrary(
            name: "CLodestoneZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // Distance kernels in C: each ISA variant carries its own
        // __attribute__((target(...))), so no compiler flags are needed and
        // the package stays consumable as a dependency.
        .target(name: "CLodestoneKernels"),
        .target(
            name: "Lodestone",
            dependencies: ["CLodestoneKernels", "CLodestoneBLAS", "CLodestoneLZ4", "CLodestoneZlib"],
            exclude: ["Storage/FORMAT.md"]  // the on-disk format's spec, kept beside the code
        ),
        .target(
            name: "LodestoneCAPI",
            dependencies: ["Lodestone"],
            exclude: ["lodestone.h"]  // the hand-written C header, checked against the exports in CI
        ),
        .target(
            name: "LodestoneService",
            dependencies: [
                "Lodestone",
                serviceIntegration("ServiceLifecycle", "swift-service-lifecycle"),
                serviceIntegration("Metrics", "swift-metrics"),
                serviceIntegration("Logging", "swift-log"),
                serviceIntegration("Tracing", "swift-distributed-tracing"),
            ]
        ),
        // The fuzz targets' checks (Fuzz/ links them into libFuzzer
        // executables; the tests replay the committed corpus through them).
        .target(
            name: "LodestoneFuzzChecks",
            dependencies: ["Lodestone"],
            path: "Tests/FuzzChecks"
        ),
        // The tests' Float64 reference in C: quick in a debug build.
        .target(name: "CLodestoneTestReference", path: "Tests/CTestReference"),
        .testTarget(
            name: "LodestoneTests",
            dependencies: ["Lodestone", "CLodestoneKernels", "LodestoneFuzzChecks", "CLodestoneTestReference"]
        ),
        // Run with `swift test --traits ServiceIntegration` (Scripts/test does).
        .testTarget(
            name: "LodestoneServiceTests",
            dependencies: [
                "Lodestone", "LodestoneService", "CLodestoneTestReference",
                serviceIntegration("ServiceLifecycle", "swift-service-lifecycle"),
                serviceIntegration("Metrics", "swift-metrics"),
                serviceIntegration("MetricsTestKit", "swift-metrics"),
                serviceIntegration("Logging", "swift-log"),
                serviceIntegration("InMemoryLogging", "swift-log"),
                serviceIntegration("Tracing", "swift-distributed-tracing"),
                serviceIntegration("InMemoryTracing", "swift-distributed-tracing"),
            ]
        ),
    ]
)

/// A product of `package`, used only when the ServiceIntegration trait is on.
func serviceIntegration(_ product: String, _ package: String) -> Target.Dependency {
    .product(name: product, package: package, condition: .when(traits: ["ServiceIntegration"]))
}
