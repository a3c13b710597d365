import Synchronization

extension FlatIndex {
    /// The exact top `k` among the vectors whose keys are in `allowedKeys`
    /// (all when nil) for each of many queries (row-major), on `threads`
    /// threads: what ``search(_:k:allowedKeys:matchCount:)`` returns for each
    /// query, same keys, order and scores.
    ///
    /// A batch goes through BLAS as the unfiltered batch does: when the
    /// allowed vectors are at most half the index they are first gathered
    /// into a contiguous block (one copy per batch) and the queries are
    /// multiplied by that block alone; otherwise the queries are multiplied
    /// by every row and rows outside the filter are passed over when
    /// candidates are picked. Small batches, or few matches, run the filtered
    /// single-query scan per query. `matchCount` is `allowedKeys.count`, if
    /// the caller knows it.
    public func search(batch queries: [Float], k: Int, allowedKeys: Bitset?, matchCount: Int? = nil,
                       threads: Int = Parallelism.defaultThreadCount) throws(LodestoneError) -> [[Neighbor]]
    {
        guard let allowed = allowedKeys else { return try search(batch: queries, k: k, threads: threads) }
        let nq = try checkBatch(queries, k: k, threads: threads)
        let matches = matchCount ?? allowed.count
        guard matches > 0, nq > 0 else { return [[Neighbor]](repeating: [], count: nq) }
        let kk = min(k, matches)
        if nq >= Self.gemmMinimumQueries && matches >= Self.gemmMinimumRows {
            if matches * 2 <= count {
                return try restricted(to: allowed, capacity: matches).search(batch: queries, k: kk, threads: threads)
            }
            var slotMask = Bitset(capacity: count)
            allowed.forEach { key in if let slot = slots[UInt64(key)] { slotMask.insert(slot) } }
            let prepared = try prepareRows(queries, count: nq)
            var statistics = BatchSearchStatistics()
            let candidates = prepared.rows.withUnsafeBufferPointer { q in
                gemmSearch(queries: q.baseAddress!, norms: prepared.norms, count: nq, k: kk, threads: threads,
                           allowed: (allowed, slotMask, matches), statistics: &statistics)
            }
            let metric = metric
            return candidates.map { list in list.map { Neighbor(key: $0.id, score: metric.score(rankValue: $0.distance)) } }
        }
        let prepared = try prepareRows(queries, count: nq)
        let out = Locked([[Neighbor]](repeating: [], count: nq))
        let d = dimension
        prepared.rows.withUnsafeBufferPointer { q in
            let base = q.baseAddress!
            parallelFor(count: nq, threads: threads) { run in
                for i in run {
                    let r = searchPrepared(base + i * d, k: kk, allowedKeys: allowed, matchCount: matches).results
                    out.withLock { $0[i] = r }
                }
            }
        }
        return out.withLock { $0 }
    }

    /// A flat index of only the vectors whose keys are in `allowed` (copied,
    /// with their stored norms, so scores are unchanged).
    func restricted(to allowed: Bitset, capacity: Int) -> FlatIndex {
        var subset = self
        subset.store = VectorStore(dimension: dimension, capacity: capacity)
        subset.slots = [:]
        subset.slots.reserveCapacity(capacity)
        allowed.forEach { key in
            guard let slot = slots[UInt64(key)] else { return }
            subset.slots[UInt64(key)] = subset.store.count
            subset.store.append(store.row(slot), key: UInt64(key), squaredNorm: store.squaredNorms[slot])
        }
        return subset
    }
}
