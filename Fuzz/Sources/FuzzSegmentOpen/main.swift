import FuzzChecks
import FuzzSupport

// The check lives in Tests/FuzzChecks (shared with the test suite, which
// replays Fuzz/seeds/FuzzSegmentOpen/): see FuzzTarget.segmentOpen.

// The classic entry point, exported (ld.gold fails to link a fuzzer without it).
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt { fuzzOne(.segmentOpen, data, count) }

runFuzzer(.segmentOpen) { data, count in fuzzOne(.segmentOpen, data, count) }
