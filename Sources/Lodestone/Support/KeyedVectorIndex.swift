/// An index that stores vectors under keys, replaces one in place and adds
/// a batch at once: what a batch upsert needs. ``HNSWIndex`` and
/// ``FlatIndex`` conform.
protocol KeyedVectorIndex {
    var dimension: Int { get }
    func contains(key: UInt64) -> Bool
    mutating func replace(_ vector: [Float], key: UInt64) throws(LodestoneError)
    /// Adds vectors under keys not present yet (on `threads` threads where the index can use them).
    mutating func addBatch(_ vectors: [Float], keys: [UInt64], threads: Int) throws(LodestoneError)
}

extension KeyedVectorIndex {
    /// Stores `rows` (row-major, validated) under `keys`: keys already
    /// present have their vector replaced in place, the others are added as
    /// one batch.
    mutating func upsert(contentsOf rows: [Float], keys: [UInt64], threads: Int) throws(LodestoneError) {
        let d = dimension
        var newRows: [Float] = [], newKeys: [UInt64] = []
        for (i, key) in keys.enumerated() {
            let v = Array(rows[(i * d)..<((i + 1) * d)])
            if contains(key: key) {
                try replace(v, key: key)
            } else {
                newKeys.append(key)
                newRows += v
            }
        }
        if !newKeys.isEmpty { try addBatch(newRows, keys: newKeys, threads: threads) }
    }
}

extension HNSWIndex: KeyedVectorIndex {
    func addBatch(_ vectors: [Float], keys: [UInt64], threads: Int) throws(LodestoneError) {
        try add(contentsOf: vectors, keys: keys, threads: threads)
    }
}

extension FlatIndex: KeyedVectorIndex {
    mutating func addBatch(_ vectors: [Float], keys: [UInt64], threads: Int) throws(LodestoneError) {
        try add(contentsOf: vectors, keys: keys)
    }
}
