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
    mutating func storeBatch(_ rows: [Float], keys: [UInt64], threads: Int) throws(LodestoneError) {
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

extension KeyedVectorIndex {
    /// Checks a batch for the public batch upserts
    /// as a whole: row count, keys named once, every row valid for `metric`.
    fileprivate func validateBatch(_ rows: [Float], keys: [UInt64], metric: Metric,
                                   kernels: DistanceKernels) throws(LodestoneError) {
        let d = dimension
        guard rows.count == keys.count * d else {
            throw .invalidArgument(name: "vectors", reason: "\(rows.count) floats for \(keys.count) keys of dimension \(d)")
        }
        var seen = Set<UInt64>(minimumCapacity: keys.count)
        for key in keys where !seen.insert(key).inserted { throw .duplicateKey(key) }
        _ = try VectorPreparation.prepareRows(rows, count: keys.count, dimension: d, metric: metric, kernels: kernels)
    }
}

extension HNSWIndex {
    /// Adds or replaces many vectors (row-major) by key: present keys get
    /// the new vector (links repaired), the rest are added as one batch on
    /// `threads` threads. The batch is validated as a whole first (row
    /// count, keys named once, finite values, not zero under cosine): on
    /// error nothing changes.
    public func upsert(contentsOf vectors: [Float], keys: [UInt64], threads: Int = 1) throws(LodestoneError) {
        guard threads >= 1 else { throw .invalidArgument(name: "threads", reason: "must be at least 1, got \(threads)") }
        try validateBatch(vectors, keys: keys, metric: metric, kernels: kernels)
        var index = self
        try index.storeBatch(vectors, keys: keys, threads: threads)
    }
}

extension FlatIndex {
    /// Adds or replaces many vectors (row-major) by key, validated as a
    /// whole first (row count, keys named once, finite values, not zero
    /// under cosine): on error nothing changes.
    public mutating func upsert(contentsOf vectors: [Float], keys: [UInt64]) throws(LodestoneError) {
        try validateBatch(vectors, keys: keys, metric: metric, kernels: kernels)
        try storeBatch(vectors, keys: keys, threads: 1)
    }
}
