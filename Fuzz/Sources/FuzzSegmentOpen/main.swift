import FuzzSupport
import Lodestone

// A segment file's bytes: opening, verifying and searching must give typed
// errors or answers, never crash, hang or run away with memory.
seedCorpus([goldenFile("flat", "segment-"), goldenFile("graph", "segment-")])
let path = scratch + "/segment"
let testOne: FuzzCallback = { data, count in
    write(bytes(data, count), to: path)
    let q = [Float](repeating: 0.5, count: 8)
    if let index = try? HNSWIndex.open(path: path) {
        _ = try? index.verify()
        _ = try? index.search(q, k: 5)
    }
    if let index = try? FlatIndex.open(path: path) { _ = try? index.search(q, k: 5) }
    return 0
}

// The classic entry point, exported too (ld.gold fails to link a fuzzer
// without it).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt { testOne(data, count) }

runFuzzer(testOne)
