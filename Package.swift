// swift-tools-version: 6.2
//
// Lodestone: an embedded approximate-nearest-neighbour vector index engine.
//
// The library target has no Swift package dependencies: consumers who add
// Lodestone build only its own code plus three system libraries (OpenBLAS, LZ4, zlib).
// Benchmarks live in their own package under Benchmarks/ so that library users
// never build benchmark dependencies.
import PackageDescription

// LODESTONE_LIBRARY_ONLY=1: the library, its C targets and the tests that
// need nothing more (no server, CLI or package dependencies). The sanitizer
// runs of Scripts/reliability.sh build this way: instrumenting SwiftNIO and
// Hummingbird cost minutes per run and tested none of our code.
let libraryOnly = Context.environment["LODESTONE_LIBRARY_ONLY"] == "1"

let package = Package(
    name: "Lodestone",
    products: [
        .library(name: "Lodestone", targets: ["Lodestone"]),
        .executable(name: "lodestone", targets: ["LodestoneCLI"]),
        .executable(name: "lodestone-stress", targets: ["LodestoneStress"]),
        // The C ABI (lodestone.h) for Python and other languages; a library
        // user who depends on `Lodestone` never builds it.
        .library(name: "LodestoneC", type: .dynamic, targets: ["LodestoneCAPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // The HTTP server of `lodestone serve` only; the library never links it.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
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
        // HDF5, for the lodestone command only (reading ann-benchmarks'
        // data files); the library never links it.
        .systemLibrary(
            name: "CLodestoneHDF5",
            pkgConfig: "hdf5",
            providers: [.apt(["libhdf5-dev"])]
        ),
        .target(name: "CLodestoneHDF5Reader", dependencies: ["CLodestoneHDF5"]),
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
        // The Pinecone-compatible HTTP server (`lodestone serve`), on
        // Hummingbird; a library user who depends on `Lodestone` never builds it.
        .target(
            name: "LodestoneServer",
            dependencies: [
                "Lodestone",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["PROTOCOL.md", "openapi.yaml"]  // what is served, written down beside the code
        ),
        // What the two executables share (error type, JSON lines, timing).
        .target(name: "LodestoneToolSupport", dependencies: ["Lodestone"]),
        .executableTarget(
            name: "LodestoneCLI",
            dependencies: [
                "Lodestone",
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
                "Lodestone",
                "LodestoneToolSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The fuzz targets' checks (Fuzz/ links them into libFuzzer
        // executables; the tests replay the committed corpus through them).
        .target(
            name: "LodestoneFuzzChecks",
            dependencies: ["Lodestone"],
            path: "Tests/FuzzChecks"
        ),
        .testTarget(
            name: "LodestoneTests",
            dependencies: ["Lodestone", "CLodestoneKernels", "LodestoneFuzzChecks", "LodestoneServer"]
        ),
    ]
)

if libraryOnly {
    let tools: Set<String> = ["LodestoneServer", "LodestoneToolSupport", "LodestoneCLI", "LodestoneStress",
                              "CLodestoneHDF5", "CLodestoneHDF5Reader"]
    package.dependencies = []
    package.products = package.products.filter { $0.name == "Lodestone" }
    package.targets = package.targets.filter { !tools.contains($0.name) }
    for target in package.targets where target.type == .test {
        target.dependencies = target.dependencies.filter {
            if case let .targetItem(name, _) = $0 { return !tools.contains(name) }
            if case let .byNameItem(name, _) = $0 { return !tools.contains(name) }
            return true
        }
        target.exclude.append("ServerWireTests.swift")  // the only tests that import the server
    }
}
