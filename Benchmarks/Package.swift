// swift-tools-version: 6.1
//
// Lodestone's micro-benchmarks (ordo-one/package-benchmark), in their own
// package so that library users never build benchmark dependencies
// (the swift-nio layout). Run from this folder:
//
//     swift package --disable-sandbox benchmark
//
// Side-by-side comparisons with peer engines live in peers.py and
// compare_flat.sh beside this file.
import PackageDescription

let package = Package(
    name: "LodestoneBenchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        // `name:` keeps the dependency resolvable whatever the clone folder is called.
        .package(name: "Lodestone", path: "../"),
        .package(url: "https://github.com/ordo-one/package-benchmark.git", from: "1.38.1",
                 traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "Kernels",
            dependencies: [
                .product(name: "Lodestone", package: "Lodestone"),
                .product(name: "Benchmark", package: "package-benchmark"),
            ],
            path: "Benchmarks/Kernels",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "FlatSearch",
            dependencies: [
                .product(name: "Lodestone", package: "Lodestone"),
                .product(name: "Benchmark", package: "package-benchmark"),
            ],
            path: "Benchmarks/FlatSearch",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
    ]
)
