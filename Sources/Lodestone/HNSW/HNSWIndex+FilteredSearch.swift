/// How a search ran.
public enum SearchPlan: String, Sendable, Codable {
    /// No filter: the HNSW graph was searched.
    case graph = "hnsw"
    /// Many records match: the graph was searched with the filter applied
    /// during the traversal, the beam widened as the filter gets more
    /// selective.
    case filteredGraph = "filtered-hnsw"
    /// Few records match: every matching vector was compared (exact).
    case exactScan = "exact-scan"
    /// A flat index compared the query with every (matching) vector (exact).
    case flatScan = "flat-scan"
}

/// What a search did: the plan the planner chose and the work it took
/// (`explain` in the public API).
public struct SearchStatistics: Sendable, Hashable, Codable {
    /// The strategy that ran.
    public var plan: SearchPlan
    /// Live records the search ranged over.
    public var candidates: Int
    /// Records passing the filter (equal to `candidates` without one). The
    /// metadata index counts them exactly, so the planner's estimate is the
    /// actual number.
    public var matches: Int
    /// `matches / candidates`.
    public var selectivity: Double { candidates > 0 ? Double(matches) / Double(candidates) : 0 }
    /// The beam width used (0 for scans).
    public var ef: Int
    /// Nodes whose neighbour lists were read (graph plans), or vectors
    /// compared (scans).
    public var nodesVisited: Int
    /// Distances computed.
    public var distancesComputed: Int

    /// Statistics of a plan.
    public init(plan: SearchPlan, candidates: Int, matches: Int, ef: Int, nodesVisited: Int, distancesComputed: Int) {
        self.plan = plan
        self.candidates = candidates
        self.matches = matches
        self.ef = ef
        self.nodesVisited = nodesVisited
        self.distancesComputed = distancesComputed
    }
}

extension HNSWIndex {
    /// Below this fraction of matching records a filtered search scans the
    /// matches exactly instead of walking the graph.
    public static let exactScanSelectivity = 0.05

    /// The `k` nearest live vectors whose keys are in `allowedKeys` (a set
    /// over key values; keys beyond its capacity are not allowed), best
    /// first, and what the search did. Without `allowedKeys`, a plain graph
    /// search (with statistics).
    ///
    /// `matchCount` is the number of allowed keys (the caller's metadata
    /// index knows it; counted here when nil). The planner scans the matches
    /// exactly when they are fewer than ``exactScanSelectivity`` of the
    /// index, so a filtered query returns min(k, matches) results however
    /// selective it is; otherwise it searches the graph with the filter
    /// inside the traversal and a beam of `ef / selectivity`, at most 16·`ef`.
    public func search(_ query: [Float], k: Int, ef: Int? = nil, allowedKeys: Bitset?, matchCount: Int? = nil)
        throws(LodestoneError) -> (results: [Neighbor], statistics: SearchStatistics)
    {
        let (q, efs) = try prepareSearch(query, k: k, ef: ef)
        let out = q.withUnsafeBufferPointer { qp in
            searchPlanned(qp.baseAddress!, k: k, ef: efs, allowedKeys: allowedKeys, matchCount: matchCount)
        }
        if let failure = corruption() { throw failure }
        return out
    }

    /// The planner for a prepared query (see ``search(_:k:ef:allowedKeys:matchCount:)``).
    func searchPlanned(_ q: UnsafePointer<Float>, k: Int, ef efs: Int, allowedKeys: Bitset?, matchCount: Int?)
        -> (results: [Neighbor], statistics: SearchStatistics)
    {
        let live = count
        guard let allowedKeys else {
            return scratchPool.withScratch { scratch in
                scratch.nodesExpanded = 0
                scratch.distancesComputed = 0
                let results = searchPrepared(q, k: k, ef: efs, scratch: scratch)
                return (results, SearchStatistics(plan: .graph, candidates: live, matches: live, ef: efs,
                                                  nodesVisited: scratch.nodesExpanded,
                                                  distancesComputed: scratch.distancesComputed))
            }
        }
        let matches = matchCount ?? allowedKeys.count
        let selectivity = Double(matches) / Double(max(live, 1))
        if selectivity < HNSWIndex.exactScanSelectivity {
            let (results, compared) = exactScan(q, k: k, allowedKeys: allowedKeys)
            return (results, SearchStatistics(plan: .exactScan, candidates: live, matches: matches, ef: 0,
                                              nodesVisited: compared, distancesComputed: compared))
        }
        let widened = max(k, min(efs * 16, Int((Double(efs) / max(selectivity, 0.01)).rounded(.up))))
        return scratchPool.withScratch { scratch in
            scratch.nodesExpanded = 0
            scratch.distancesComputed = 0
            let results = searchFiltered(q, k: k, ef: widened, scratch: scratch,
                                         admission: LiveKeysIn(index: self, keys: allowedKeys))
            return (results, SearchStatistics(plan: .filteredGraph, candidates: live, matches: matches, ef: widened,
                                              nodesVisited: scratch.nodesExpanded,
                                              distancesComputed: scratch.distancesComputed))
        }
    }

    /// The live nodes of the keys in `keys` (one writer-lock acquisition for
    /// all of them).
    func nodes(forKeys keys: Bitset) -> [UInt32] {
        writer.withLock { w in
            ensureKeys(&w)
            var out: [UInt32] = []
            keys.forEach { key in
                if let node = w.keys.node(forKey: UInt64(key), keyOf: self.key), state(node) == .live { out.append(node) }
            }
            return out
        }
    }

    /// The exact scan for a batch of prepared queries: the matching vectors
    /// are gathered once into a flat index, which multiplies the whole batch
    /// by them (BLAS) and re-scores exactly.
    func exactBatch(_ prepared: [Float], k: Int, allowedKeys: Bitset, threads: Int) throws(LodestoneError) -> [[Neighbor]] {
        let nodes = nodes(forKeys: allowedKeys)
        guard !nodes.isEmpty else { return [[Neighbor]](repeating: [], count: prepared.count / dimension) }
        var rows: [Float] = []
        rows.reserveCapacity(nodes.count * dimension)
        for node in nodes { rows.append(contentsOf: UnsafeBufferPointer(start: vector(node), count: dimension)) }
        if let failure = corruption() { throw failure }
        var matching = try FlatIndex(dimension: dimension, metric: metric, kernels: kernels)
        try matching.add(contentsOf: rows, keys: nodes.map(key))
        return try matching.search(batch: prepared, k: k, threads: threads)
    }

    /// Compares the query with every live node whose key is allowed: looks
    /// the matches up, then scores them in groups with the gather kernel.
    /// Returns the best `k` and how many vectors were compared.
    func exactScan(_ q: UnsafePointer<Float>, k: Int, allowedKeys: Bitset) -> ([Neighbor], Int) {
        let nodes = nodes(forKeys: allowedKeys)
        let group = 64
        let heapStorage = UnsafeMutablePointer<Candidate>.allocate(capacity: k)
        let rows = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: group)
        let values = UnsafeMutablePointer<Float>.allocate(capacity: group)
        defer {
            heapStorage.deallocate()
            rows.deallocate()
            values.deallocate()
        }
        var heap = TopKHeap(storage: heapStorage, capacity: k)
        nodes.withUnsafeBufferPointer { ids in
            var start = 0
            while start < ids.count {
                let m = min(group, ids.count - start)
                for i in 0..<m { rows[i] = UnsafePointer(vector(ids[start + i])) }
                kernels.rankValues(metric, q, rows: rows, count: m, dimension: dimension, into: values)
                var threshold = heap.threshold
                for i in 0..<m where values[i] <= threshold {
                    heap.consider(Candidate(distance: values[i], id: key(ids[start + i])))
                    threshold = heap.threshold
                }
                start += m
            }
        }
        let best = heap.drainSorted().map { Neighbor(key: $0.id, score: metric.score(rankValue: $0.distance)) }
        return (best, nodes.count)
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
