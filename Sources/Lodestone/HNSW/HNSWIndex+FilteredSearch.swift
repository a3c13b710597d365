/// How a filtered search ran.
public enum SearchPlan: String, Sendable {
    /// Few records match: every matching vector was compared (exact).
    case exactScan = "exact-scan"
    /// Many match: the graph was searched with the filter applied during the
    /// traversal, the beam widened as the filter gets more selective.
    case filteredGraph = "filtered-hnsw"
}

extension HNSWIndex {
    /// Below this fraction of matching records a filtered search scans the
    /// matches exactly instead of walking the graph.
    public static let exactScanSelectivity = 0.05

    /// The `k` nearest live vectors whose keys are in `allowedKeys` (a set
    /// over key values; keys beyond its capacity are not allowed), best
    /// first, and the plan that found them.
    ///
    /// `matchCount` is the number of allowed keys (the caller's metadata
    /// index knows it). The planner scans the matches exactly when they are
    /// fewer than ``exactScanSelectivity`` of the index, so a filtered query
    /// returns min(k, matches) results however selective it is; otherwise it
    /// searches the graph with the filter inside the traversal and a beam of
    /// `ef / selectivity`, at most 16·`ef`.
    public func search(_ query: [Float], k: Int, ef: Int? = nil, allowedKeys: Bitset, matchCount: Int)
        throws(LodestoneError) -> (results: [Neighbor], plan: SearchPlan)
    {
        let (q, efs) = try prepareSearch(query, k: k, ef: ef)
        let live = max(count, 1)
        let selectivity = Double(matchCount) / Double(live)
        if selectivity < HNSWIndex.exactScanSelectivity {
            let results = q.withUnsafeBufferPointer { exactScan($0.baseAddress!, k: k, allowedKeys: allowedKeys) }
            if let failure = corruption() { throw failure }
            return (results, .exactScan)
        }
        let widened = min(efs * 16, Int((Double(efs) / max(selectivity, 0.01)).rounded(.up)))
        let results = q.withUnsafeBufferPointer { qp in
            scratchPool.withScratch { scratch in
                searchFiltered(qp.baseAddress!, k: k, ef: max(widened, k), scratch: scratch,
                               admission: LiveKeysIn(index: self, keys: allowedKeys))
            }
        }
        if let failure = corruption() { throw failure }
        return (results, .filteredGraph)
    }

    /// Compares the query with every live node whose key is allowed.
    func exactScan(_ q: UnsafePointer<Float>, k: Int, allowedKeys: Bitset) -> [Neighbor] {
        let heapStorage = UnsafeMutablePointer<Candidate>.allocate(capacity: k)
        defer { heapStorage.deallocate() }
        var heap = TopKHeap(storage: heapStorage, capacity: k)
        let n = UInt32(nodeCount.load(ordering: .acquiring))
        for id in 0..<n where state(id) == .live {
            let key = key(id)
            guard key < UInt64(allowedKeys.capacity), allowedKeys.contains(Int(key)) else { continue }
            heap.consider(Candidate(distance: rank(q, vector(id)), id: key))
        }
        return heap.drainSorted().map { Neighbor(key: $0.id, score: metric.score(rankValue: $0.distance)) }
    }
}

/// Admits live nodes whose key is in a set.
struct LiveKeysIn: NodeAdmission {
    let index: HNSWIndex
    let keys: Bitset
    @inline(__always) func admits(_ id: UInt32) -> Bool {
        guard index.state(id) == .live else { return false }
        let key = index.key(id)
        return key < UInt64(keys.capacity) && keys.contains(Int(key))
    }
}
