import FuzzSupport
import Lodestone

// A MANIFEST's bytes: opening must give a typed error or a working index.
seedCorpus([goldenFile("flat", "MANIFEST"), goldenFile("graph", "MANIFEST")])
let testOne: FuzzCallback = { data, count in
    let input = bytes(data, count)
    for name in ["flat", "graph"] {
        let dir = goldenCopy(name, replacing: "MANIFEST", with: input)
        if let index = try? Database(path: dir).index(name) {
            _ = try? index.query(vector: [Float](repeating: 0.5, count: 8), topK: 5)
        }
    }
    return 0
}

// The classic entry point, exported too (ld.gold fails to link a fuzzer
// without it).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt { testOne(data, count) }

runFuzzer(testOne)
