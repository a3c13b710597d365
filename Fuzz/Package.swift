// swift-tools-version: 6.2
//
// libFuzzer targets for Lodestone, in their own package so that `swift build`
// and `swift test` at the root stay plain (a fuzzer build links libFuzzer's
// driver, which a normal build lacks). Build and run with Scripts/fuzz.sh.
import PackageDescription

let targets = ["FuzzSegmentOpen", "FuzzLogReplay", "FuzzManifest", "FuzzImportLine", "FuzzImportGzip",
               "FuzzFilter", "FuzzOperations"]

let package = Package(
    name: "LodestoneFuzz",
    dependencies: [.package(name: "Lodestone", path: "..")],
    targets: [
        // The checks themselves: a symlink to ../Tests/FuzzChecks, which the
        // root package's tests use to replay the committed corpus (Fuzz/seeds).
        .target(name: "FuzzChecks", dependencies: [.product(name: "Lodestone", package: "Lodestone")]),
        .target(name: "FuzzSupport", dependencies: ["FuzzChecks"]),
    ] + targets.map { name in
        .executableTarget(name: name, dependencies: ["FuzzSupport", "FuzzChecks"])
    }
)
