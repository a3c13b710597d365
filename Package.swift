// swift-tools-version: 6.2
//
// Lodestone: an embedded approximate-nearest-neighbour vector index engine.
//
// This manifest is the library alone and declares no package dependencies:
// a package that depends on Lodestone resolves nothing else and builds only
// its code plus three system libraries (OpenBLAS, LZ4, zlib). The server,
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
        // The fuzz targets' checks (Fuzz/ links them into libFuzzer
        // executables; the tests replay the committed corpus through them).
        .target(
            name: "LodestoneFuzzChecks",
            dependencies: ["Lodestone"],
            path: "Tests/FuzzChecks"
        ),
        .testTarget(
            name: "LodestoneTests",
            dependencies: ["Lodestone", "CLodestoneKernels", "LodestoneFuzzChecks"]
        ),
    ]
)

