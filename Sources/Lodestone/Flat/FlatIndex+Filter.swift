extension FlatIndex {
    /// The exact `k` nearest vectors whose keys are in `allowedKeys` (all
    /// vectors when nil), best first, and what the search did.
    ///
    /// Few matches are looked up and compared one by one (gather kernel);
    /// many are found by the plain streaming scan, which then skips rows
    /// whose key is not allowed. Either way the result is exact and holds
    /// min(k, matches) vectors.
    public func search(_ query: [Float], k: Int, allowedKeys: Bitset?, matchCount: Int? = nil)
        throws(LodestoneError) -> (results: [Neighbor], statistics: SearchStatistics)
    {
        try checkSearchable(k: k)
        let q = try VectorPreparation.prepared(query, dimension: dimension, metric: metric, kernels: kernels).vector
        return q.withUnsafeBufferPointer { searchPrepared($0.baseAddress!, k: k, allowedKeys: allowedKeys, matchCount: matchCount) }
    }

    func searchPrepared(_ q: UnsafePointer<Float>, k: Int, allowedKeys: Bitset?, matchCount: Int?)
        -> (results: [Neighbor], statistics: SearchStatistics)
    {
        let n = count
        guard let allowed = allowedKeys else {
            let best = scan(query: q, k: min(k, n))
            return (best.map { Neighbor(key: $0.id, score: metric.score(rankValue: $0.distance)) },
                    SearchStatistics(plan: .flatScan, candidates: n, matches: n, ef: 0, nodesVisited: n, distancesComputed: n))
        }
        let matches = matchCount ?? allowed.count
        let (best, compared) = filteredScan(query: q, k: k, allowed: allowed, matches: matches)
        return (best.map { Neighbor(key: $0.id, score: metric.score(rankValue: $0.distance)) },
                SearchStatistics(plan: .flatScan, candidates: n, matches: matches, ef: 0, nodesVisited: compared,
                                 distancesComputed: compared))
    }

    /// The exact best `k` (by rank value, best first) among the rows whose
    /// keys are in `allowed` (`matches` of them), and how many rows were
    /// compared.
    func filteredScan(query q: UnsafePointer<Float>, k: Int, allowed: Bitset, matches: Int)
        -> (best: [Candidate], compared: Int)
    {
        let n = count
        let heapStorage = UnsafeMutablePointer<Candidate>.allocate(capacity: max(k, 1))
        defer { heapStorage.deallocate() }
        var heap = TopKHeap(storage: heapStorage, capacity: k)
        var compared = 0
        if matches * 8 < n {
            let group = 64
            let rows = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: group)
            let values = UnsafeMutablePointer<Float>.allocate(capacity: group)
            let ids = UnsafeMutablePointer<UInt64>.allocate(capacity: group)
            defer {
                rows.deallocate()
                values.deallocate()
                ids.deallocate()
            }
            var m = 0
            func flush() {
                kernels.rankValues(metric, q, rows: rows, count: m, dimension: dimension, into: values)
                for i in 0..<m { heap.consider(Candidate(distance: values[i], id: ids[i])) }
                compared += m
                m = 0
            }
            allowed.forEach { key in
                guard let slot = slots[UInt64(key)] else { return }
                rows[m] = UnsafePointer(store.row(slot))
                ids[m] = UInt64(key)
                m += 1
                if m == group { flush() }
            }
            if m > 0 { flush() }
        } else {
            let block = Self.scanBlock
            let values = UnsafeMutablePointer<Float>.allocate(capacity: block)
            defer { values.deallocate() }
            let stride = store.stride, d = dimension
            store.keys.withUnsafeBufferPointer { keys in
                var start = 0
                while start < n {
                    let m = min(block, n - start)
                    kernels.rankValues(metric, q, store.row(start), stride: stride, count: m, dimension: d, into: values)
                    for i in 0..<m where values[i] <= heap.threshold {
                        let key = keys[start + i]
                        if key < UInt64(allowed.capacity) && allowed.contains(Int(key)) {
                            heap.consider(Candidate(distance: values[i], id: key))
                        }
                    }
                    start += m
                }
            }
            compared = n
        }
        return (heap.drainSorted(), compared)
    }
}
