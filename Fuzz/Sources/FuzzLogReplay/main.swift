import FuzzSupport
import Lodestone

// A write-ahead log's bytes under a valid index: replay must apply whole
// records, drop a torn tail or report damage, never crash.
seedCorpus([goldenFile("flat", "wal-"), goldenFile("graph", "wal-")])
let testOne: FuzzCallback = { data, count in
    let input = bytes(data, count)
    for name in ["flat", "graph"] {
        let dir = goldenCopy(name, replacing: "wal-", with: input)
        if let index = try? Database(path: dir).index(name) {
            _ = try? index.query(vector: [Float](repeating: 0.5, count: 8), topK: 5, includeMetadata: true)
            _ = try? index.listIDs(limit: 100)
        }
    }
    return 0
}

// The classic entry point, exported too (ld.gold fails to link a fuzzer
// without it).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt { testOne(data, count) }

runFuzzer(testOne)
