import FuzzChecks
import FuzzSupport

// The check lives in Tests/FuzzChecks (shared with the test suite, which
// replays Fuzz/seeds/FuzzManifest/): see FuzzTarget.manifest.

// The classic entry point, exported (ld.gold fails to link a fuzzer without it).
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt { fuzzOne(.manifest, data, count) }

runFuzzer(.manifest) { data, count in fuzzOne(.manifest, data, count) }
