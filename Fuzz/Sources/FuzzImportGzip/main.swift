import FuzzSupport
import Foundation
import Lodestone

// A gzip file: damaged or hostile streams (bombs included) give typed errors.
let seedExport: [UInt8] = {
    let path = scratch + "/seed.jsonl.gz"
    _ = try? Database(path: golden).index("flat").export(to: path)
    return (try? Array(Data(contentsOf: URL(fileURLWithPath: path)))) ?? []
}()
seedCorpus([seedExport])
let file = scratch + "/import.jsonl.gz"
let testOne: FuzzCallback = { data, count in
    write(bytes(data, count), to: file)
    let dir = scratch + "/gzip-db"
    try? FileManager.default.removeItem(atPath: dir)
    if let db = try? Database(path: dir) {
        _ = try? db.importRecords(from: file, into: "imp", options: IndexOptions(kind: .flat, durability: .none))
    }
    return 0
}

// The classic entry point, exported too (ld.gold fails to link a fuzzer
// without it).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt { testOne(data, count) }

runFuzzer(testOne)
