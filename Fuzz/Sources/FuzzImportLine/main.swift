import FuzzSupport
import Foundation
import Lodestone

// A JSON Lines file (plain): import must store every line or none (unless
// skipping), and what it stores must read back.
seedCorpus([
    Array(#"{"id": "a", "values": [1, 2, 3], "metadata": {"k": "v", "n": 2, "b": true, "l": ["x"]}, "namespace": "n"}"#.utf8),
    Array("{\"id\": \"b\", \"values\": [0.5, -1e-3, 3e2]}\n{\"id\": \"c\", \"values\": [1, 1, 1]}".utf8),
])
let file = scratch + "/import.jsonl"
let testOne: FuzzCallback = { data, count in
    write(bytes(data, count), to: file)
    let dir = scratch + "/import-db"
    try? FileManager.default.removeItem(atPath: dir)
    guard let db = try? Database(path: dir) else { return 0 }
    if let report = try? db.importRecords(from: file, into: "imp", options: IndexOptions(kind: .flat, durability: .none)) {
        guard let index = try? db.index("imp") else { violated("imported index cannot be opened") }
        if report.records > 0 && (try? index.describeStats().totalRecordCount) == 0 { violated("records vanished") }
    }
    return 0
}

// The classic entry point, exported too (ld.gold fails to link a fuzzer
// without it).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt { testOne(data, count) }

runFuzzer(testOne)
