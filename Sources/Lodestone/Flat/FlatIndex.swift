/// An exact (brute-force) nearest-neighbour index.
///
/// `FlatIndex` stores vectors under integer keys and answers top-k queries by
/// comparing the query with every stored vector: results are exact, and are
/// the reference every approximate index is measured against.
///
/// - One query: ``search(_:k:)`` streams once over the rows with the SIMD
///   kernel and keeps a bounded heap; it allocates nothing per vector.
/// - Many queries: ``search(batch:k:threads:)-([Float],_,_)`` multiplies tiles of queries by
///   tiles of rows with OpenBLAS `sgemm`, keeps a few more candidates than `k`,
///   then re-scores those with the same SIMD kernel as the single-query path,
///   so both paths return the same keys, order and scores, whatever the batch.
///
/// Results are ordered best first; ties are broken by the smaller key.
///
/// `FlatIndex` is a value type with copy-on-write storage: copies are cheap
/// until one of them is mutated. Reads of one value from many threads are
/// safe; mutation needs exclusive access, as for any Swift value.
public struct FlatIndex: Sendable {
    /// The number of components of every vector.
    public let dimension: Int
    /// How vectors are compared.
    public let metric: Metric
    var store: VectorStore
    var slots: [UInt64: Int] = [:]
    let kernels: DistanceKernels

    /// Creates an empty index.
    /// - Parameters:
    ///   - dimension: components per vector, 1 or more.
    ///   - metric: how vectors are compared.
    ///   - kernels: the distance kernels to use (the CPU's best by default).
    public init(dimension: Int, metric: Metric, kernels: DistanceKernels = .active) throws(LodestoneError) {
        guard dimension > 0 else {
            throw .invalidArgument(name: "dimension", reason: "must be at least 1, got \(dimension)")
        }
        self.dimension = dimension
        self.metric = metric
        self.kernels = kernels
        self.store = VectorStore(dimension: dimension)
    }

    /// The number of stored vectors.
    public var count: Int { store.count }

    /// Whether the index holds no vectors.
    public var isEmpty: Bool { store.count == 0 }

    /// Bytes held for vectors (allocated, or mapped from a segment), their norms and keys.
    public var memoryBytes: Int { store.capacity * ((dimension + 1) * MemoryLayout<Float>.size + MemoryLayout<UInt64>.size) }

    /// The keys of all stored vectors, in storage order.
    public var keys: [UInt64] { store.keys }

    /// Whether a vector is stored under `key`.
    public func contains(key: UInt64) -> Bool { slots[key] != nil }

    /// The vector stored under `key` (unit length under cosine), or nil.
    public func vector(forKey key: UInt64) -> [Float]? {
        guard let slot = slots[key] else { return nil }
        return Array(UnsafeBufferPointer(start: store.row(slot), count: dimension))
    }

    /// The dot product of `query` with each stored vector under `keys` (0
    /// where a key is absent), with no copy of the vectors.
    func dots(_ query: [Float], keys: [UInt64]) -> [Float] {
        query.withUnsafeBufferPointer { q in
            keys.map { key in slots[key].map { kernels.dot(q.baseAddress!, store.row($0), dimension) } ?? 0 }
        }
    }

    /// Reserves room for `capacity` vectors in total.
    public mutating func reserveCapacity(_ capacity: Int) {
        makeUnique()
        store.reserve(capacity)
    }

    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&store) { store = store.copy() }
    }

    // MARK: Adding, replacing, removing

    /// Adds one vector under a new key.
    /// - Throws: ``LodestoneError/duplicateKey(_:)`` if `key` is present;
    ///   the validation errors of ``add(contentsOf:keys:)``.
    public mutating func add(_ vector: [Float], key: UInt64) throws(LodestoneError) {
        try add(contentsOf: vector, keys: [key])
    }

    /// Adds vectors under new keys. `vectors` holds the vectors one after
    /// another (`keys.count * dimension` floats).
    ///
    /// The batch is validated as a whole before anything is stored: on any
    /// error the index is left exactly as it was.
    /// - Throws: ``LodestoneError/dimensionMismatch(expected:actual:)``,
    ///   ``LodestoneError/nonFiniteComponent(index:value:)``,
    ///   ``LodestoneError/zeroVector`` (cosine), or
    ///   ``LodestoneError/duplicateKey(_:)`` for a key already present or named
    ///   twice in the batch.
    public mutating func add(contentsOf vectors: [Float], keys: [UInt64]) throws(LodestoneError) {
        let n = keys.count
        guard vectors.count == n * dimension else {
            throw .dimensionMismatch(expected: dimension, actual: n == 0 ? vectors.count : vectors.count / max(n, 1))
        }
        var seen = Set<UInt64>(minimumCapacity: n)
        for key in keys where slots[key] != nil || !seen.insert(key).inserted {
            throw .duplicateKey(key)
        }
        let prepared = try prepareRows(vectors, count: n)
        makeUnique()
        store.reserve(store.count + n)
        prepared.rows.withUnsafeBufferPointer { rows in
            for i in 0..<n {
                slots[keys[i]] = store.count
                store.append(rows.baseAddress! + i * dimension, key: keys[i], squaredNorm: prepared.norms[i])
            }
        }
    }

    /// Adds vectors given as separate arrays (see ``add(contentsOf:keys:)``).
    public mutating func add(_ vectors: [[Float]], keys: [UInt64]) throws(LodestoneError) {
        guard vectors.count == keys.count else {
            throw .invalidArgument(name: "keys", reason: "\(keys.count) keys for \(vectors.count) vectors")
        }
        for v in vectors where v.count != dimension {
            throw .dimensionMismatch(expected: dimension, actual: v.count)
        }
        try add(contentsOf: vectors.flatMap { $0 }, keys: keys)
    }

    /// Replaces the vector stored under `key`.
    /// - Throws: ``LodestoneError/keyNotFound(_:)``, or a validation error
    ///   (the stored vector is then unchanged).
    public mutating func replace(_ vector: [Float], key: UInt64) throws(LodestoneError) {
        guard let slot = slots[key] else { throw .keyNotFound(key) }
        let prepared = try VectorPreparation.prepared(vector, dimension: dimension, metric: metric, kernels: kernels)
        makeUnique()
        prepared.vector.withUnsafeBufferPointer { store.overwrite(slot, with: $0.baseAddress!, squaredNorm: prepared.squaredNorm) }
    }

    /// Adds the vector under `key`, or replaces the one already there.
    public mutating func upsert(_ vector: [Float], key: UInt64) throws(LodestoneError) {
        if slots[key] != nil { try replace(vector, key: key) } else { try add(vector, key: key) }
    }

    /// Removes the vector stored under `key`.
    /// - Returns: whether a vector was stored under `key`.
    @discardableResult
    public mutating func remove(key: UInt64) -> Bool {
        guard let slot = slots.removeValue(forKey: key) else { return false }
        makeUnique()
        if let moved = store.removeBySwappingLast(slot) { slots[moved] = slot }
        return true
    }

    /// Removes every vector.
    public mutating func removeAll() {
        makeUnique()
        store.removeAll()
        slots.removeAll()
    }

    /// Validates and prepares `count` rows; nothing is stored.
    func prepareRows(_ vectors: [Float], count n: Int) throws(LodestoneError) -> (rows: [Float], norms: [Float]) {
        try VectorPreparation.prepareRows(vectors, count: n, dimension: dimension, metric: metric, kernels: kernels)
    }

    // MARK: Searching one query

    /// The `k` stored vectors most similar to `query`, best first.
    ///
    /// When `k` exceeds ``count``, all ``count`` vectors are returned.
    /// - Throws: ``LodestoneError/invalidArgument(name:reason:)`` for `k < 1`,
    ///   ``LodestoneError/emptyIndex``, or a validation error for the query
    ///   (wrong dimension, non-finite component, zero vector under cosine).
    public func search(_ query: [Float], k: Int) throws(LodestoneError) -> [Neighbor] {
        try checkSearchable(k: k)
        let q = try VectorPreparation.prepared(query, dimension: dimension, metric: metric, kernels: kernels).vector
        let best = q.withUnsafeBufferPointer { scan(query: $0.baseAddress!, k: min(k, count)) }
        return best.map { Neighbor(key: $0.id, score: metric.score(rankValue: $0.distance)) }
    }

    func checkSearchable(k: Int) throws(LodestoneError) {
        guard k >= 1 else { throw .invalidArgument(name: "k", reason: "must be at least 1, got \(k)") }
        guard count > 0 else { throw .emptyIndex }
    }

    /// Rows scored per kernel call in a scan: large enough to amortise the
    /// call, small enough that the rank values stay in L1.
    static let scanBlock = 512

    /// The exact top `k` (1...count) for a prepared query: one pass over the
    /// rows, one kernel call per block, a bounded heap keyed by (rank, key).
    func scan(query: UnsafePointer<Float>, k: Int) -> [Candidate] {
        let block = Self.scanBlock
        let heapStorage = UnsafeMutablePointer<Candidate>.allocate(capacity: k)
        let values = UnsafeMutablePointer<Float>.allocate(capacity: block)
        defer {
            heapStorage.deallocate()
            values.deallocate()
        }
        var heap = TopKHeap(storage: heapStorage, capacity: k)
        let n = store.count, stride = store.stride, d = dimension
        store.keys.withUnsafeBufferPointer { keys in
            var start = 0
            while start < n {
                let m = min(block, n - start)
                kernels.rankValues(metric, query, store.row(start), stride: stride, count: m, dimension: d,
                                   into: values)
                var threshold = heap.threshold
                for i in 0..<m where values[i] <= threshold {
                    heap.consider(Candidate(distance: values[i], id: keys[start + i]))
                    threshold = heap.threshold
                }
                start += m
            }
        }
        return heap.drainSorted()
    }
}
