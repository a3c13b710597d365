import FuzzChecks
import FuzzSupport

// The check lives in Tests/FuzzChecks (shared with the test suite, which
// replays Fuzz/seeds/FuzzOperations/): see FuzzTarget.operations.

// The classic entry point, exported (ld.gold fails to link a fuzzer without it).
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt { fuzzOne(.operations, data, count) }

runFuzzer(.operations) { data, count in fuzzOne(.operations, data, count) }
