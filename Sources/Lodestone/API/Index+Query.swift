extension Index {
    /// The allowed slots for a filter within a namespace (nil set: no
    /// restriction needed), and how many; nil when nothing can match.
    /// Called under the read lock; cached per (filter, namespace) until the
    /// table changes.
    func allowedSlots(filter: Filter?, namespace: String, alwaysRestrict: Bool = false) -> (Bitset?, Int)? {
        let inNamespace = table.count(namespace: namespace)
        guard inNamespace > 0 else { return nil }
        let everything = inNamespace == table.count
        if filter == nil && everything && !alwaysRestrict { return (nil, inNamespace) }
        let version = table.version
        return cache.withLock { cache -> (Bitset?, Int)? in
            if let hit = cache.lookup(filter: filter, namespace: namespace, version: version) { return (hit.0, hit.1) }
            var set: Bitset
            if let filter {
                set = table.metadata.evaluate(filter)
                if !everything { set = set.intersection(table.slotSet(namespace: namespace)) }
            } else {
                set = table.slotSet(namespace: namespace)
            }
            let count = set.count
            cache.store(filter: filter, namespace: namespace, version: version, set: set, count: count)
            return (set, count)
        }
    }

    /// The `topK` records of `namespace` nearest to `vector` whose metadata
    /// passes `filter`, best first: min(topK, matching records) of them.
    ///
    /// - Parameters:
    ///   - vector: the query (the index's dimension).
    ///   - topK: results wanted, 1 or more.
    ///   - namespace: where to search (default `""`).
    ///   - filter: a metadata filter; nil matches every record.
    ///   - includeValues: return each match's stored vector.
    ///   - includeMetadata: return each match's metadata.
    ///   - ef: the HNSW beam width (default: the index's `efSearch`).
    ///   - explain: report the plan and the work done in
    ///     ``QueryResponse/explanation``.
    ///   - embeddingModel: checked against the index's when given.
    public func query(vector: [Float], topK: Int, namespace: String = "", filter: Filter? = nil,
                      includeValues: Bool = false, includeMetadata: Bool = false, ef: Int? = nil,
                      explain: Bool = false, embeddingModel: String? = nil) throws(LodestoneError) -> QueryResponse {
        try checkOpen()
        try checkModel(embeddingModel)
        guard topK >= 1 else { throw .invalidArgument(name: "topK", reason: "must be at least 1, got \(topK)") }
        try checkDense()
        guard vector.count == rowDimension else { throw .dimensionMismatch(expected: rowDimension, actual: vector.count) }
        return try lock.reading { () throws(LodestoneError) -> QueryResponse in
            guard let (allowed, matches) = allowedSlots(filter: filter, namespace: namespace), matches > 0 else {
                _ = try VectorPreparation.prepared(vector, dimension: rowDimension, metric: metric, kernels: engine.kernels)
                let none = SearchStatistics(plan: kind == .hnsw ? .exactScan : .flatScan, candidates: engine.count,
                                            matches: 0, ef: 0, nodesVisited: 0, distancesComputed: 0)
                return QueryResponse(matches: [], namespace: namespace, explanation: explain ? none : nil)
            }
            let (neighbors, statistics) = try engine.search(vector, k: topK, ef: ef, allowed: allowed, matches: matches)
            let matched = resolve(neighbors, includeValues: includeValues, includeMetadata: includeMetadata)
            try engine.checkIntegrity()
            return QueryResponse(matches: matched, namespace: namespace, explanation: explain ? statistics : nil)
        }
    }

    /// Like ``query(vector:topK:namespace:filter:includeValues:includeMetadata:ef:explain:embeddingModel:)``
    /// with the stored vector of record `id` as the query (the record
    /// itself is among the results).
    public func query(id: String, topK: Int, namespace: String = "", filter: Filter? = nil, includeValues: Bool = false,
                      includeMetadata: Bool = false, ef: Int? = nil, explain: Bool = false) throws(LodestoneError)
        -> QueryResponse
    {
        try checkOpen()
        if kind == .sparse {
            // A sparse index's record is queried by its sparse vector.
            guard let s = lock.reading({ table.slot(id: id, namespace: namespace).flatMap { table.sparse.vector(slot: $0) } })
            else { throw .recordNotFound(id: id, namespace: namespace) }
            return try query(sparseVector: s, topK: topK, namespace: namespace, filter: filter, includeValues: includeValues,
                             includeMetadata: includeMetadata, explain: explain)
        }
        let v: [Float]? = try lock.reading { () throws(LodestoneError) -> [Float]? in
            let v = table.slot(id: id, namespace: namespace).flatMap { values(ofSlot: $0) }
            try engine.checkIntegrity()
            return v
        }
        guard let v else { throw .recordNotFound(id: id, namespace: namespace) }
        return try query(vector: v, topK: topK, namespace: namespace, filter: filter, includeValues: includeValues,
                         includeMetadata: includeMetadata, ef: ef, explain: explain)
    }

    /// Many queries at once, for offline jobs. On a flat index they go
    /// through BLAS, filtered or not (a filter, or a namespace among
    /// several, restricts the product to the matching rows: see
    /// ``FlatIndex/search(batch:k:allowedKeys:matchCount:threads:)``); on
    /// HNSW they run as parallel graph searches, and with a filter each runs
    /// the planner on one of `threads` threads, except that a filter narrow
    /// enough for the planner's exact scan gathers the matching vectors once
    /// and multiplies the whole batch by them (BLAS). Each query's answer equals
    /// ``query(vector:topK:namespace:filter:includeValues:includeMetadata:ef:explain:embeddingModel:)``'s.
    public func queryBatch(vectors: [[Float]], topK: Int, namespace: String = "", filter: Filter? = nil,
                           includeValues: Bool = false, includeMetadata: Bool = false, ef: Int? = nil,
                           threads: Int = Parallelism.defaultThreadCount) throws(LodestoneError) -> [[Match]] {
        try checkDense()
        for v in vectors where v.count != rowDimension { throw .dimensionMismatch(expected: rowDimension, actual: v.count) }
        return try queryBatch(rows: vectors.flatMap { $0 }, topK: topK, namespace: namespace, filter: filter,
                              includeValues: includeValues, includeMetadata: includeMetadata, ef: ef, threads: threads)
    }

    /// ``queryBatch(vectors:topK:namespace:filter:includeValues:includeMetadata:ef:threads:)-9gnrr``
    /// with the queries as one row-major array (`rows.count` a multiple of
    /// the dimension), as batch jobs read them: no array per query. Ids and
    /// metadata are looked up on `threads` threads too.
    public func queryBatch(rows: [Float], topK: Int, namespace: String = "", filter: Filter? = nil,
                           includeValues: Bool = false, includeMetadata: Bool = false, ef: Int? = nil,
                           threads: Int = Parallelism.defaultThreadCount) throws(LodestoneError) -> [[Match]] {
        try checkOpen()
        guard topK >= 1 else { throw .invalidArgument(name: "topK", reason: "must be at least 1, got \(topK)") }
        try checkDense()
        guard rows.count % rowDimension == 0 else {
            throw .dimensionMismatch(expected: rowDimension, actual: rows.count % rowDimension)
        }
        let count = rows.count / rowDimension
        guard count > 0 else { return [] }
        return try lock.reading { () throws(LodestoneError) -> [[Match]] in
            guard let (allowed, matches) = allowedSlots(filter: filter, namespace: namespace), matches > 0 else {
                return [[Match]](repeating: [], count: count)
            }
            let results: [[Neighbor]]
            if let allowed {
                results = try engine.search(batch: rows, k: topK, ef: ef, allowed: allowed, matches: matches, threads: threads)
            } else {
                results = try engine.search(batch: rows, k: topK, ef: ef, threads: threads)
            }
            // Resolving ids (and metadata) is a read of the table, safe from
            // several threads under the read lock; each worker fills the
            // queries it claims.
            var out = [[Match]](repeating: [], count: count)
            out.withUnsafeMutableBufferPointer { buffer in
                let target = UncheckedSendable(buffer)
                parallelFor(count: count, threads: min(threads, max(1, count / 256)), grain: 256) { run in
                    for q in run {
                        target.value[q] = self.resolve(results[q], includeValues: includeValues,
                                                       includeMetadata: includeMetadata)
                    }
                }
            }
            return out
        }
    }

    /// Reads and verifies the whole index now, on `threads` threads, so that
    /// the queries that follow do not pay for first access (an opened HNSW
    /// index verifies and maps each 4,096-record chunk the first time a
    /// search touches it). For batch jobs over the whole index; a flat index
    /// was verified when it opened. A compact index's float32 vectors stay
    /// on disk: a search reads only its finalists' and verifies each as it
    /// reads it.
    public func warm(threads: Int = Parallelism.defaultThreadCount) throws(LodestoneError) {
        try checkOpen()
        try lock.reading { () throws(LodestoneError) in
            engine.hnsw?.warm(threads: threads)
            try engine.checkIntegrity()
        }
    }

    /// Dense queries need a dense index.
    func checkDense() throws(LodestoneError) {
        if kind == .sparse {
            throw .invalidArgument(name: "vector", reason: "a sparse index is queried with a sparseVector only")
        }
    }

    /// A record's vector as it was given: a cosine index's unit vector times
    /// the length it had (when recorded). Called under the read lock.
    func values(ofSlot slot: UInt32) -> [Float]? {
        guard var v = engine.vector(forKey: UInt64(slot)) else { return nil }
        if kind == .sparse { return [] }  // the placeholder is not the record's
        let norm = table.norm(ofSlot: Int(slot))
        if metric == .cosine && norm > 0 { for i in v.indices { v[i] *= norm } }
        return v
    }

    func resolve(_ neighbors: [Neighbor], includeValues: Bool, includeMetadata: Bool) -> [Match] {
        neighbors.compactMap { n in
            let slot = Int(n.key)
            guard let id = table.id(ofSlot: slot) else { return nil }
            var metadata: Metadata? = nil
            if includeMetadata, let m = table.metadata.metadata(slot: slot), !m.isEmpty { metadata = m }
            return Match(id: id, score: n.score, values: includeValues ? values(ofSlot: UInt32(n.key)) : nil,
                         metadata: metadata, sparseValues: includeValues ? table.sparse.vector(slot: UInt32(n.key)) : nil)
        }
    }
}

/// Recently evaluated filters' matching slots, valid while the record
/// table's version is unchanged.
struct FilterCache {
    private var entries: [(filter: Filter?, namespace: String, version: UInt64, set: Bitset, count: Int)] = []
    private static let capacity = 16

    func lookup(filter: Filter?, namespace: String, version: UInt64) -> (Bitset, Int)? {
        for e in entries where e.version == version && e.namespace == namespace && e.filter == filter {
            return (e.set, e.count)
        }
        return nil
    }

    mutating func store(filter: Filter?, namespace: String, version: UInt64, set: Bitset, count: Int) {
        entries.removeAll { $0.version != version }
        if entries.count == Self.capacity { entries.removeFirst() }
        entries.append((filter, namespace, version, set, count))
    }
}
