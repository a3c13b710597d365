import CLodestoneKernels

extension HNSWIndex {
    // The planner's costs are in units of one distance of an unfiltered
    // walk (a vector fetched from a random place, scored, offered to the
    // pool); the measured costs are in docs/design/filter-planner.md.

    /// What scoring one match costs in the exact scan, less for a filter
    /// seen before, whose nodes are at hand (measurements:
    /// docs/design/filter-planner.md).
    public static let scanCostPerMatch = 0.5

    /// What one distance of the filtered walk costs: it also reads the
    /// neighbour lists of records that do not pass and tests the filter
    /// (measurements: docs/design/filter-planner.md).
    public static let filteredWalkCostPerDistance = 1.6

    /// The planner's estimate of the distances a walk with beam `ef`
    /// computes. A fixed model, so a query gets the same plan every
    /// time: a filtered walk computes about as many distances as an
    /// unfiltered search with the same beam, `walkDistancesPerEfAndLink` x
    /// `ef` x `2m` (fitted on pypi-minilm; measurements:
    /// docs/design/filter-planner.md).
    func estimatedWalkCost(ef: Int) -> Double {
        HNSWIndex.walkDistancesPerEfAndLink * Double(ef) * Double(m0)
    }

    /// See `estimatedWalkCost(ef:)`.
    static let walkDistancesPerEfAndLink = 0.6

    /// A filter passing a share `s` of the records is searched by the plain
    /// walk, keeping the best scored records that pass, when `s` times its
    /// beam (`ef / sqrt(s)`, the walk it is costed at) is at least
    /// this many times `k`: the beam then holds enough matches.
    public static let postFilterCoverage = 2.0

    /// What ranking one match by its sign code costs in the quantized
    /// scan: over the filter's packed codes, 32 per table lookup. A
    /// filter's first query ranks its codes one at a time, several times
    /// slower, but is planned the same, so the same query always gets the
    /// same plan and results (measurements: docs/design/filter-planner.md).
    public static let quantizedCostPerMatch = 0.02

    /// The same for a filter whose codes are not packed (the index's
    /// dimension or the filter's matches too large to pack; see
    /// ``packedFilterBytesPerVector``): one code at a time (measurements:
    /// docs/design/filter-planner.md).
    public static let unpackedQuantizedCostPerMatch = 0.1

    /// What one distance of the walk costs on the compact traversal's
    /// codes, against the exact walk's (measurements:
    /// docs/design/filter-planner.md).
    public static let codedWalkCostPerDistance = 0.6

    /// The same on the quantized traversal's neighbour codes: costed a
    /// fifth dearer than the compact walk, since its post-filtered walk lost
    /// to the clustered scan at 47-48% even on queries the filter does not
    /// go against, and a walk, unlike a scan, misses matches where the
    /// records near a query mostly fail the filter (measurements:
    /// docs/design/filter-planner.md).
    public static let quantizedWalkCostPerDistance = 0.72

    /// What one distance of the filtered walk on the compact codes costs:
    /// it also reads the link lists of records that do not pass
    /// (measurements: docs/design/filter-planner.md).
    public static let compactFilteredWalkCostPerDistance = 1.2

    /// What each of the quantized scan's finalists costs: kept among the
    /// best estimates, then compared exactly, a vector fetched from a random
    /// place (measurements: docs/design/filter-planner.md).
    public static let rerankCostPerVector = 4.0

    /// What ranking one cluster's centroid costs a clustered scan (see
    /// ``clusteredScanFullRerank``): its inner product over contiguous
    /// rows, and its place in the clusters' order (measurements:
    /// docs/design/filter-planner.md).
    public static let clusterRankCost = 0.3

    /// The quantized scan compares this many times `ef` of its best
    /// estimates exactly (at least `k`): the plan's recall knob, as `ef` is
    /// the walk's. With `2 ef` finalists its recall is at least the
    /// unfiltered walk's at the same `ef`, a clustered scan's too (which
    /// ranks `ef / 128` of the matches, ``clusteredScanFullRerank``), for
    /// the same queries/s at a given recall as `ef` finalists at twice the
    /// `ef` (measurements: docs/design/filter-planner.md).
    public static let rerankPerEf = 2

    /// The estimated costs of the three plans for a filter with `matches`
    /// matching records and beam `ef`, and the cheapest.
    struct FilterPlanCosts {
        var scan: Double
        var quantized: Double
        var graph: Double
        var rerank: Int
        /// So many records pass (``postFilterCoverage``) that the walk is the
        /// plain one, keeping the best scored records that pass.
        var plainWalk: Bool
        /// The plain walk's beam: `ef / sqrt(share)`, so that the records
        /// that pass fill as much of it as all records fill an unfiltered
        /// beam of `ef` and the recall at `ef` is the unfiltered one's.
        var plainWalkEf: Int

        /// The exact scan, when it costs no more than the others.
        var exact: Bool { scan <= quantized && scan <= graph }
        /// The quantized scan, when it is cheaper than the exact scan and no
        /// dearer than the walk.
        var quantizedScan: Bool { !exact && quantized <= graph }
        /// The cheaper scan's cost: the budget of a walk that may not pay off.
        var cheaperScan: Double { min(scan, quantized) }
    }

    /// The planner's estimates for a filter with `matches` matching records,
    /// `k` results and beam `ef`.
    ///
    /// The plans are compared at equal recall: the scans' recall is at least
    /// the unfiltered walk's at `ef`, but a walk under a filter passing a
    /// share `s` reaches that recall only with a beam about `ef / sqrt(s)`
    /// wide (measurements: docs/design/filter-planner.md), so the walk
    /// is costed at that beam; the filtered walk (which
    /// ``postFilterCoverage`` does not send to the plain walk) at
    /// ``filteredWalkCostPerDistance`` a distance.
    func planCosts(matches: Int, k: Int, ef: Int) -> FilterPlanCosts {
        // A clustered scan ranks only its nearest clusters' matches, after
        // ranking the clusters.
        let clusters = expectedClusters
        let clustered = PackedSignCodes.clustered(matches: matches, clusters: clusters)
        let rerank = max(k, HNSWIndex.rerankPerEf * ef)
        let scan = Double(matches) * HNSWIndex.scanCostPerMatch
        // Ranking by estimate only pays when there is more to rank than to
        // compare exactly.
        let perMatch = packable(matches: matches)
            ? HNSWIndex.quantizedCostPerMatch : HNSWIndex.unpackedQuantizedCostPerMatch
        let ranked = clustered ? HNSWIndex.clusteredScanTarget(matches: matches, rerank: min(rerank, matches)) : matches
        let ordering = clustered ? Double(clusters!) * HNSWIndex.clusterRankCost : 0
        let quantized = matches > rerank
            ? Double(ranked) * perMatch + ordering + Double(rerank) * HNSWIndex.rerankCostPerVector
            : .infinity
        let share = min(1, Double(max(matches, 1)) / Double(max(count, 1)))
        let widened = min(max(count, ef), Int((Double(ef) / share.squareRoot()).rounded(.up)))
        let plain = share * Double(widened) >= HNSWIndex.postFilterCoverage * Double(k)
        let perDistance = plain ? walkCostPerDistance : filteredWalkCostPerDistance
        return FilterPlanCosts(scan: scan, quantized: quantized,
                               graph: estimatedWalkCost(ef: ef) * perDistance / share.squareRoot(), rerank: rerank,
                               plainWalk: plain, plainWalkEf: widened)
    }

    /// What one distance of this index's plain walk costs: less on the
    /// codes of the quantized and compact traversals.
    var walkCostPerDistance: Double {
        compactCodes != nil ? HNSWIndex.codedWalkCostPerDistance
            : neighbourCodes != nil ? HNSWIndex.quantizedWalkCostPerDistance : 1
    }

    /// What one distance of this index's filtered walk costs: on the compact
    /// codes when it has them, else on float32.
    var filteredWalkCostPerDistance: Double {
        compactCodes != nil ? HNSWIndex.compactFilteredWalkCostPerDistance : HNSWIndex.filteredWalkCostPerDistance
    }

    /// The `k` nearest live vectors whose keys are in `allowedKeys` (a set
    /// over key values; keys beyond its capacity are not allowed), best
    /// first, and what the search did. Without `allowedKeys`, a plain graph
    /// search (with statistics).
    ///
    /// `matchCount` is the number of allowed keys (the caller's metadata
    /// index knows it; counted here when nil). The planner compares the two
    /// plans' estimated costs: scanning the matches exactly (their number
    /// times ``scanCostPerMatch``) or walking the graph with beam `ef`,
    /// scoring only nodes that pass the filter (reached directly or through
    /// a neighbour that does not pass; `estimatedWalkCost(ef:)`), and runs
    /// the cheaper. A walk that ends with fewer than min(k, matches) results
    /// (the matches sit where the graph does not lead) falls back to the
    /// exact scan, so a filtered query always returns min(k, matches).
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
        // The filter's nodes, asked for once per query (a filter's second
        // query is what makes its node set; see allowedNodes(for:)), and
        // with them the quantized scan's packed codes.
        let translated = cachedFilter(for: allowedKeys)
        let cached = translated?.nodes
        let plan = planCosts(matches: matches, k: k, ef: efs)
        func statistics(_ kind: SearchPlan, ef: Int, visited: Int, distances: Int) -> SearchStatistics {
            SearchStatistics(plan: kind, candidates: live, matches: matches, ef: ef, nodesVisited: visited,
                             distancesComputed: distances, estimatedScanCost: plan.scan, estimatedGraphCost: plan.graph,
                             estimatedQuantizedCost: plan.quantized.isFinite ? plan.quantized : 0)
        }
        // The cheaper scan (after a walk that gave up, what it spent too).
        func scan(visited: Int = 0, distances: Int = 0) -> (results: [Neighbor], statistics: SearchStatistics) {
            if plan.scan <= plan.quantized {
                let (results, compared) = exactScan(q, k: k, allowedKeys: allowedKeys, cached: cached)
                return (results, statistics(.exactScan, ef: 0, visited: visited + compared,
                                            distances: distances + compared))
            }
            if let translated, let packed = packedCodes(for: allowedKeys, cached: translated) {
                let ranked = packedScan(q, k: k, rerank: plan.rerank, packed: packed, allowedKeys: allowedKeys)
                return (ranked.results, statistics(.quantizedScan, ef: 0, visited: visited + ranked.ranked,
                                                   distances: distances + ranked.compared))
            }
            let ranked = quantizedScan(q, k: k, rerank: plan.rerank, allowedKeys: allowedKeys, cached: cached)
            return (ranked.results, statistics(.quantizedScan, ef: 0, visited: visited + ranked.ranked,
                                               distances: distances + ranked.compared))
        }
        if plan.exact || plan.quantizedScan { return scan() }
        // The walk may not pay off (the matches can sit where the graph does
        // not lead, as with filters that follow the text's meaning): it
        // stops once it has computed as many distances as the cheaper scan
        // would cost, and that scan runs instead.
        let admission = FilterAdmission(index: self, keys: allowedKeys, nodes: cached)
        if plan.plainWalk {
            // So many records pass that the unfiltered walk's beam holds
            // enough of them: walk as unfiltered, keep the best that pass.
            // The beam is widened by the share thrown away, as costed above.
            let broad = postFilteredWalk(q, k: k, ef: plan.plainWalkEf, admission: admission)
            if broad.results.count >= min(k, matches) {
                return (broad.results, statistics(.postFilteredGraph, ef: plan.plainWalkEf, visited: broad.visited,
                                                  distances: broad.distances))
            }
        }
        let budget = Int((plan.cheaperScan / filteredWalkCostPerDistance).rounded(.up))
        let walked = walk(q, k: k, ef: efs, budget: budget, admission: admission)
        guard let walked, walked.results.count >= min(k, matches) else {
            return scan(visited: walked?.visited ?? 0, distances: walked?.distances ?? budget)
        }
        return (walked.results, statistics(.filteredGraph, ef: efs, visited: walked.visited, distances: walked.distances))
    }

    /// The plain walk with beam `ef` (the quantized walk on an index that
    /// has neighbour codes), keeping the best `k` nodes `admission` passes.
    func postFilteredWalk<A: NodeAdmission>(_ q: UnsafePointer<Float>, k: Int, ef: Int, admission: A)
        -> (results: [Neighbor], visited: Int, distances: Int)
    {
        scratchPool.withScratch { scratch in
            scratch.nodesExpanded = 0
            scratch.distancesComputed = 0
            if let codes = compactCodes {
                let found = compactSearch(q, codes: codes, k: k, ef: ef, scratch: scratch, admission: admission,
                                          gatherer: AllCodes()) ?? []
                return (found.map { neighbor($0) }, scratch.nodesExpanded, scratch.distancesComputed)
            }
            guard let (start, startDistance) = descend(q, toLayer: 0, scratch: scratch) else {
                return ([], scratch.nodesExpanded, scratch.distancesComputed)
            }
            if let codes = neighbourCodes {
                // The quantized walk, as unfiltered queries take it, keeping
                // the admitted finalists.
                ensureNeighbourCodes(codes)
                let found = quantizedWalk(q, codes: codes, entry: start, entryDistance: startDistance, k: k, ef: ef,
                                          scratch: scratch, admission: admission).results
                let best = found.map { neighbor($0) }
                return (best, scratch.nodesExpanded, scratch.distancesComputed)
            }
            scratch.reserveResults(k)
            var collector = AdmittedCollector(admission: admission,
                                              heap: TopKHeap(storage: scratch.results, capacity: k))
            _ = beamSearch(q, entry: start, entryDistance: startDistance, ef: ef, layer: 0, scratch: scratch,
                           gatherer: AllNeighbours(), collector: &collector, budget: .max)
            let best = collector.heap.drainSorted().map { neighbor($0) }
            return (best, scratch.nodesExpanded, scratch.distancesComputed)
        }
    }

    /// The filtered walk: a beam of `ef` over nodes `admission` passes
    /// (``gatherAdmitted(of:scratch:rows:source:marks:generation:bound:admission:)``;
    /// on the compact codes when the index has them);
    /// nil once it has computed more than `budget` distances.
    func walk<A: NodeAdmission>(_ q: UnsafePointer<Float>, k: Int, ef: Int, budget: Int, admission: A)
        -> (results: [Neighbor], visited: Int, distances: Int)?
    {
        scratchPool.withScratch { scratch in
            scratch.nodesExpanded = 0
            scratch.distancesComputed = 0
            if let codes = compactCodes {
                // On the codes, as the compact traversal's unfiltered walk.
                guard let found = compactSearch(q, codes: codes, k: k, ef: ef, scratch: scratch, admission: admission,
                                                gatherer: AdmittedCodes(admission: admission), budget: budget)
                else { return nil }
                return (found.map { neighbor($0) }, scratch.nodesExpanded, scratch.distancesComputed)
            }
            guard let (start, startDistance) = descend(q, toLayer: 0, scratch: scratch) else {
                return ([], scratch.nodesExpanded, scratch.distancesComputed)
            }
            var none = NoCollector()
            let found = beamSearch(q, entry: start, entryDistance: startDistance, ef: ef, layer: 0, scratch: scratch,
                                   gatherer: AdmittedNeighbours(admission: admission), collector: &none, budget: budget)
            guard found >= 0 else { return nil }
            var out: [Neighbor] = []
            out.reserveCapacity(k)
            for i in 0..<found where out.count < k {
                let e = scratch.pool[i]
                // The entry point and nodes crossed in a region the filter
                // excludes guide the walk; they are never returned.
                if admission.admits(e.id) {
                    out.append(Neighbor(key: key(e.id), score: metric.score(rankValue: e.distance)))
                }
            }
            return (out, scratch.nodesExpanded, scratch.distancesComputed)
        }
    }

    /// The live nodes of the keys in `keys` (one writer-lock acquisition for
    /// all of them).
    func nodes(forKeys keys: Bitset) -> [UInt32] {
        nodes(forKeys: keys, cached: allowedNodes(for: keys))
    }

    /// The live nodes of the keys in `keys`: from `cached`, the filter's
    /// node set when it has one (``allowedNodes(for:)``), else looked up.
    func nodes(forKeys keys: Bitset, cached: Bitset?) -> [UInt32] {
        if let cached {
            var out: [UInt32] = []
            out.reserveCapacity(keys.count)
            cached.forEach { node in if state(UInt32(node)) == .live { out.append(UInt32(node)) } }
            return out
        }
        return writer.withLock { w in
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
    func exactScan(_ q: UnsafePointer<Float>, k: Int, allowedKeys: Bitset, cached: Bitset?) -> ([Neighbor], Int) {
        let nodes = nodes(forKeys: allowedKeys, cached: cached)
        let best = nodes.withUnsafeBufferPointer { bestExactly(q, among: $0, k: k, allowedKeys: allowedKeys) }
        return (best, nodes.count)
    }

    /// The best `k` of the nodes `ids` that are live (and whose keys are in
    /// `allowedKeys`, when given: a cached node set may predate a write
    /// that reused a slot), by exact distance: scored in groups with the
    /// gather kernel.
    func bestExactly(_ q: UnsafePointer<Float>, among ids: UnsafeBufferPointer<UInt32>, k: Int,
                     allowedKeys: Bitset? = nil) -> [Neighbor] {
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
        var start = 0
        while start < ids.count {
            let m = min(group, ids.count - start)
            for i in 0..<m { rows[i] = UnsafePointer(vector(ids[start + i])) }
            kernels.rankValues(metric, q, rows: rows, count: m, dimension: dimension, into: values)
            var threshold = heap.threshold
            for i in 0..<m where values[i] <= threshold && state(ids[start + i]) == .live {
                let found = key(ids[start + i])
                if let allowedKeys, found >= UInt64(allowedKeys.capacity) || !allowedKeys.contains(Int(found)) { continue }
                heap.consider(Candidate(distance: values[i], id: found))
                threshold = heap.threshold
            }
            start += m
        }
        return heap.drainSorted().map { Neighbor(key: $0.id, score: metric.score(rankValue: $0.distance)) }
    }
}

/// Admits live nodes whose key is in a filter's set: through the filter's
/// node set when one is cached (``HNSWIndex/allowedNodes(for:)``), else by
/// loading each node's key.
struct FilterAdmission: NodeAdmission {
    let index: HNSWIndex
    let keys: Bitset
    let nodes: Bitset?
    @inline(__always) func admits(_ id: UInt32) -> Bool {
        if let nodes { return nodes.contains(Int(id)) && index.state(id) == .live }
        guard index.state(id) == .live else { return false }
        let key = index.key(id)
        return key < UInt64(keys.capacity) && keys.contains(Int(key))
    }
}
