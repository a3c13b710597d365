import FuzzSupport
import Foundation
import Lodestone

// A sequence of operations (upsert, delete, update, query, persist) on a flat index, checked after each against a dictionary model:
// the same records, and queries return the model's exact nearest scores.
seedCorpus([[0, 1, 2, 3, 4, 5, 0, 9, 9, 9, 9, 2, 1, 4, 0, 3, 3], Array(repeating: 0, count: 40) + [5, 1, 2]])
let testOne: FuzzCallback = { data, count in
    let input = bytes(data, count)
    let dir = scratch + "/ops-db"
    try? FileManager.default.removeItem(atPath: dir)
    guard let db = try? Database(path: dir),
          let index = try? db.createIndex(name: "ops", dimension: 4, metric: .euclidean,
                                          options: IndexOptions(kind: .flat, durability: .none)) else { return 0 }
    var model: [String: (values: [Float], metadata: Metadata)] = [:]
    var at = 0
    func next() -> Int {
        defer { at += 1 }
        return at < input.count ? Int(input[at]) : 0
    }
    var persists = 0
    while at < input.count {
        let op = next() % 6
        let id = "r\(next() % 12)"
        switch op {
        case 0, 1:
            let v = (0..<4).map { _ in Float(next() % 16) - 8 }
            let m: Metadata = ["n": .number(Double(next() % 4))]
            do {
                try index.upsert([Record(id: id, values: v, metadata: m)])
                model[id] = (v, m)
            } catch { violated("upsert of a valid record failed: \(error)") }
        case 2:
            _ = try? index.delete(ids: [id])
            model[id] = nil
        case 3:
            let m: Metadata = ["n": .number(Double(next() % 4))]
            if (try? index.update(id: id, setMetadata: m)) != nil { model[id]?.metadata = m }
        case 4:
            let q = (0..<4).map { _ in Float(next() % 16) - 8 }
            let got = (try? index.query(vector: q, topK: 3).matches.map(\.score)) ?? []
            var distances: [Float] = []
            for r in model.values {
                var d: Float = 0
                for j in 0..<4 { d += (q[j] - r.values[j]) * (q[j] - r.values[j]) }
                distances.append(d)
            }
            let want = distances.sorted().prefix(3)
            if got != Array(want) { violated("query \(q): \(got), model \(Array(want))") }
        default:
            // Fold the log into a segment: later reads go through the mapped table.
            guard persists < 3 else { continue }
            persists += 1
            do { try index.persist() } catch { violated("persist failed: \(error)") }
        }
        let fetched = (try? index.fetch(ids: Array(model.keys))) ?? [:]
        if fetched.count != model.count { violated("\(fetched.count) records fetched, model holds \(model.count)") }
        for (k, r) in model where fetched[k]?.values != r.values || fetched[k]?.metadata != r.metadata {
            violated("record \(k) differs from the model")
        }
    }
    return 0
}

// The classic entry point, exported too (ld.gold fails to link a fuzzer
// without it).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt { testOne(data, count) }

runFuzzer(testOne)
