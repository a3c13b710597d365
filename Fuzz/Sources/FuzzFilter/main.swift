import FuzzSupport
import Lodestone

// A filter's JSON: parsing gives a Filter or a typed error; a Filter's
// evaluation through the metadata index equals the record-by-record one.
seedCorpus([
    Array(#"{"g": {"$gte": 2}, "t": {"$in": ["x1", "x2"]}}"#.utf8),
    Array(#"{"$or": [{"b": true}, {"l": {"$nin": ["a"]}}, {"g": {"$exists": false}}]}"#.utf8),
])
let records: [Metadata] = (0..<30).map { i in
    var m: Metadata = ["g": .number(Double(i % 7)), "t": .string("x\(i % 4)")]
    if i % 3 == 0 { m["b"] = .bool(i % 2 == 0) }
    if i % 5 == 0 { m["l"] = .strings(["a", "b\(i % 3)"]) }
    return m
}
let metadataIndex: MetadataIndex = {
    let index = MetadataIndex()
    for (slot, m) in records.enumerated() { index.set(m, slot: slot) }
    return index
}()
let testOne: FuzzCallback = { data, count in
    let text = String(decoding: bytes(data, count), as: UTF8.self)
    guard let filter = try? Filter(json: text) else { return 0 }
    let fromIndex = metadataIndex.evaluate(filter)
    for (slot, m) in records.enumerated() where fromIndex.contains(slot) != filter.matches(m) {
        violated("\(text): slot \(slot) index \(fromIndex.contains(slot)) evaluator \(filter.matches(m))")
    }
    return 0
}

// The classic entry point, exported too (ld.gold fails to link a fuzzer
// without it).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt { testOne(data, count) }

runFuzzer(testOne)
