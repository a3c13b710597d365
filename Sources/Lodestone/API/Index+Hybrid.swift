extension Index {
    /// The `topK` records of `namespace` best matching a sparse vector, or
    /// a dense and a sparse vector together (hybrid search), among those
    /// whose metadata passes `filter`, best first.
    ///
    /// - Sparse only (`vector` nil): records ranked by the dot product of
    ///   their ``Record/sparseValues`` with `sparseVector`; only records
    ///   sharing a term with it are results. Exact.
    /// - Hybrid: with ``HybridFusion/sum`` (Pinecone's sparse-dense score)
    ///   a record scores its dense score plus its sparse dot product; with
    ///   ``HybridFusion/reciprocalRank(k:)`` the two rankings are fused.
    ///   The candidates are the best `ef` (at least `topK`) of each side,
    ///   each then scored exactly on both; on a flat index with `sum` the
    ///   candidates cover every record that can be in the top k (exact). On
    ///   an HNSW index with `sum`, the sparse side looks only for records
    ///   that can pass the dense side's k-th best, and reads only the terms
    ///   such a record must hold, so it is approximate like the walk.
    ///
    /// - Parameters:
    ///   - vector: the dense query (the index's dimension), or nil.
    ///   - sparseVector: the sparse query (indices unique, values finite).
    ///   - topK: results wanted, 1 or more.
    ///   - namespace: where to search (default `""`).
    ///   - filter: a metadata filter; nil matches every record.
    ///   - fusion: how the two scores combine (hybrid only); `sum` needs a
    ///     cosine or dot-product index.
    ///   - includeValues: return each match's stored vector and sparse vector.
    ///   - includeMetadata: return each match's metadata.
    ///   - ef: the HNSW beam width and each side's candidate count
    ///     (default: the index's `efSearch`).
    ///   - explain: report the plan and the work done.
    ///   - embeddingModel: checked against the index's when given.
    public func query(vector: [Float]? = nil, sparseVector: SparseVector, topK: Int, namespace: String = "",
                      filter: Filter? = nil, fusion: HybridFusion = .sum, includeValues: Bool = false,
                      includeMetadata: Bool = false, ef: Int? = nil, explain: Bool = false,
                      embeddingModel: String? = nil) throws(LodestoneError) -> QueryResponse {
        try checkOpen()
        try checkModel(embeddingModel)
        guard topK >= 1 else { throw .invalidArgument(name: "topK", reason: "must be at least 1, got \(topK)") }
        let sparse = try sparseVector.validated(field: "sparseVector")
        var dense: [Float]? = nil
        if let vector {
            try checkDense()
            guard vector.count == rowDimension else { throw .dimensionMismatch(expected: rowDimension, actual: vector.count) }
            dense = try VectorPreparation.prepared(vector, dimension: rowDimension, metric: metric, kernels: engine.kernels).vector
            if case .sum = fusion, metric == .euclidean {
                throw .invalidArgument(name: "fusion", reason: "a sum of scores needs a cosine or dot-product index "
                                       + "(euclidean distances fall as similarity rises); use reciprocal-rank fusion")
            }
        }
        if case let .reciprocalRank(k) = fusion, k < 0 {
            throw .invalidArgument(name: "fusion", reason: "reciprocal-rank k must be 0 or more, got \(k)")
        }
        if let ef, ef < 1 { throw .invalidArgument(name: "ef", reason: "must be at least 1, got \(ef)") }
        return try lock.reading { () throws(LodestoneError) -> QueryResponse in
            let plan: SearchPlan = dense == nil ? .sparse : .hybrid
            guard let (allowed, matches) = allowedSlots(filter: filter, namespace: namespace), matches > 0 else {
                let none = SearchStatistics(plan: plan, candidates: engine.count, matches: 0, ef: 0, nodesVisited: 0,
                                            distancesComputed: 0)
                return QueryResponse(matches: [], namespace: namespace, explanation: explain ? none : nil)
            }
            let neighbors: [Neighbor]
            var statistics = SearchStatistics(plan: plan, candidates: engine.count, matches: matches, ef: 0,
                                              nodesVisited: 0, distancesComputed: 0)
            if let dense {
                let depth = max(topK, ef ?? parameters.efSearch)
                (neighbors, statistics) = try hybrid(dense: dense, original: vector!, sparse: sparse, topK: topK,
                                                     depth: depth, fusion: fusion, allowed: allowed, matches: matches)
            } else {
                neighbors = table.sparse.search(sparse, k: topK, allowed: allowed, slots: table.capacity)
            }
            let matched = resolve(neighbors, includeValues: includeValues, includeMetadata: includeMetadata)
            try engine.checkIntegrity()
            return QueryResponse(matches: matched, namespace: namespace, explanation: explain ? statistics : nil)
        }
    }

    /// Many sparse queries at once, on `threads` threads, for batch jobs
    /// and benchmarks: each answer equals
    /// ``query(vector:sparseVector:topK:namespace:filter:fusion:includeValues:includeMetadata:ef:explain:embeddingModel:)``'s
    /// with the sparse vector alone.
    public func queryBatch(sparseVectors: [SparseVector], topK: Int, namespace: String = "", filter: Filter? = nil,
                           includeValues: Bool = false, includeMetadata: Bool = false,
                           threads: Int = Parallelism.defaultThreadCount) throws(LodestoneError) -> [[Match]] {
        try checkOpen()
        guard topK >= 1 else { throw .invalidArgument(name: "topK", reason: "must be at least 1, got \(topK)") }
        var queries: [SparseVector] = []
        queries.reserveCapacity(sparseVectors.count)
        for (i, q) in sparseVectors.enumerated() { queries.append(try q.validated(field: "sparseVectors[\(i)]")) }
        return lock.reading { () -> [[Match]] in
            guard let (allowed, matches) = allowedSlots(filter: filter, namespace: namespace), matches > 0 else {
                return [[Match]](repeating: [], count: queries.count)
            }
            var out = [[Match]](repeating: [], count: queries.count)
            out.withUnsafeMutableBufferPointer { buffer in
                let target = UncheckedSendable(buffer)
                parallelFor(count: queries.count, threads: min(threads, max(1, queries.count / 16)), grain: 16) { run in
                    for q in run {
                        let found = self.table.sparse.search(queries[q], k: topK, allowed: allowed, slots: self.table.capacity)
                        target.value[q] = self.resolve(found, includeValues: includeValues, includeMetadata: includeMetadata)
                    }
                }
            }
            return out
        }
    }

    /// The hybrid ranking (under the read lock): each side's best `depth`
    /// candidates, each scored on both sides, fused.
    private func hybrid(dense: [Float], original: [Float], sparse: SparseVector, topK: Int, depth: Int,
                        fusion: HybridFusion, allowed: Bitset?, matches: Int) throws(LodestoneError)
        -> ([Neighbor], SearchStatistics)
    {
        let exact = kind == .flat
        var sparseSide: [Neighbor]
        let denseSide: [Neighbor], statistics: SearchStatistics
        /// The dense candidates' sums of both scores, once known.
        var denseSums: [Neighbor]? = nil
        lazy var terms = QueryTermTable(sparse)  // only `sum` reads it
        func sums(of candidates: [Neighbor]) -> [Neighbor] {
            zip(candidates, table.sparse.dots(slots: candidates.map { UInt32($0.key) }, terms)).map {
                Neighbor(key: $0.key, score: $0.score + $1)
            }
        }
        if exact {
            sparseSide = table.sparse.search(sparse, k: max(depth, matches), allowed: allowed, slots: table.capacity)
            var denseDepth = depth
            if case .sum = fusion {
                // Every record that can make the top k: all that share a term,
                // and the dense top k plus one per negative sparse score (each
                // can fall below a record that shares none).
                denseDepth = topK + sparseSide.reduce(0) { $0 + ($1.score < 0 ? 1 : 0) }
            }
            (denseSide, statistics) = try engine.search(original, k: min(denseDepth, matches), ef: max(depth, denseDepth),
                                                        allowed: allowed, matches: matches)
        } else {
            (denseSide, statistics) = try engine.search(original, k: min(depth, matches), ef: depth, allowed: allowed,
                                                        matches: matches)
            var floor = -Float.infinity
            if case .sum = fusion, denseSide.count >= topK, let last = denseSide.last {
                // A record the dense side did not propose has a dense score
                // of about its last candidate's at most (as far as the walk
                // is right), so it needs a sparse score of the k-th best
                // hybrid score so far minus that to make the top k.
                let known = sums(of: denseSide)
                denseSums = known
                floor = Self.best(known, k: topK)[topK - 1].score - last.score
            }
            sparseSide = table.sparse.search(sparse, terms: terms, floor: floor, limit: depth, allowed: allowed,
                                             slots: table.capacity)
        }
        var fused: [Neighbor]
        switch fusion {
        case .sum:
            // The sparse side's scores are exact: a record it alone proposed
            // needs only its dense score.
            fused = denseSums ?? sums(of: denseSide)
            let proposed = denseSide.map(\.key).sorted()
            let missing = sparseSide.filter { !proposed.containsSorted($0.key) }
            for (n, d) in zip(missing, engine.dots(dense, keys: missing.map(\.key))) {
                fused.append(Neighbor(key: n.key, score: d + n.score))
            }
        case let .reciprocalRank(k):
            var scores: [UInt64: Float] = [:]
            for (rank, n) in denseSide.enumerated() { scores[n.key, default: 0] += 1 / Float(k + rank + 1) }
            for (rank, n) in sparseSide.enumerated() { scores[n.key, default: 0] += 1 / Float(k + rank + 1) }
            fused = scores.map { Neighbor(key: $0.key, score: $0.value) }
        }
        let ranked = Self.best(fused, k: topK)
        var out = statistics
        out.plan = .hybrid
        out.ef = depth
        out.distancesComputed += sparseSide.count
        return (ranked, out)
    }

    /// The `k` best of `candidates`, best first (ties by key).
    private static func best(_ candidates: [Neighbor], k: Int) -> [Neighbor] {
        withUnsafeTemporaryAllocation(of: Candidate.self, capacity: k) { storage in
            var heap = TopKHeap(storage: storage.baseAddress!, capacity: k)
            for c in candidates { heap.consider(Candidate(distance: -c.score, id: c.key)) }
            return heap.drainSorted().map { Neighbor(key: $0.id, score: -$0.distance) }
        }
    }
}

private extension Array where Element == UInt64 {
    /// Whether the array (ascending) holds `key`.
    func containsSorted(_ key: UInt64) -> Bool {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if self[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo < count && self[lo] == key
    }
}
