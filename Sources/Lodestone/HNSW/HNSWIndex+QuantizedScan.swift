import CLodestoneKernels

extension HNSWIndex {
    /// A clustered scan (a filter's matches packed cluster by cluster)
    /// keeping `r` finalists ranks the matches of the query's nearest
    /// clusters, nearest first, until it has ranked `r / 256` of them (all
    /// from 256 finalists on): the true nearest matches sit in the nearest
    /// clusters (measurements: docs/design/filter-planner.md).
    public static let clusteredScanFullRerank = 256

    /// How many of a filter's `matches` a clustered scan ranks for `rerank`
    /// finalists (at least `k`): whole clusters until at least this many.
    static func clusteredScanTarget(matches: Int, rerank: Int) -> Int {
        let share = min(1, Double(rerank) / Double(clusteredScanFullRerank))
        return min(matches, max(rerank, Int((Double(matches) * share).rounded(.up))))
    }

    /// The clusters a clustered scan for `q` ranks, nearest first, when
    /// `counts` of a filter's matches sit in each of `partition`'s clusters
    /// and it keeps `kept` finalists (``clusteredScanTarget(matches:rerank:)``),
    /// and how many matches they hold. The packed and unpacked scans both
    /// ask it, so they rank the same codes.
    func clustersToRank(_ q: UnsafePointer<Float>, partition: CodePartition, counts: [UInt32], kept: Int)
        -> (clusters: [UInt16], matches: Int)
    {
        let matches = counts.reduce(0) { $0 + Int($1) }
        let target = HNSWIndex.clusteredScanTarget(matches: matches, rerank: kept)
        let nearest = counts.withUnsafeBufferPointer { partition.nearest(q, counts: $0.baseAddress!, target: target) }
        return (nearest, nearest.reduce(0) { $0 + Int(counts[Int($1)]) })
    }

    /// The quantized scan over a filter's packed codes: estimates a block
    /// of 32 at a time (of the nearest clusters' matches only, when packed
    /// by cluster: ``clusteredScanTarget(matches:rerank:)``), the best
    /// `rerank` (at least `k`) compared exactly (those whose keys are still
    /// in `allowedKeys`). Returns the best `k` (exact scores), how many
    /// codes were ranked and how many vectors compared.
    func packedScan(_ q: UnsafePointer<Float>, k: Int, rerank: Int, packed: PackedSignCodes, allowedKeys: Bitset)
        -> (results: [Neighbor], ranked: Int, compared: Int)
    {
        let matches = packed.matches
        let kept = min(max(k, rerank), matches)
        guard kept > 0 else { return ([], 0, 0) }
        let query = signCodes.prepare(q, euclidean: metric == .euclidean)
        let tables = PackedSignCodes.Tables(query, words: signCodes.words)
        var ranked = 0
        let finalists: [UInt32] = withUnsafeTemporaryAllocation(of: Candidate.self, capacity: kept) { heapStorage in
            // A stretch of blocks at a time, so its estimates stay in the
            // first-level cache until ranked; the kernel marks those under
            // the heap's bound at the stretch's start, a superset of those
            // that enter. Stretches start small and double, so the bound
            // tightens before most codes are estimated.
            let longest = 1024
            return withUnsafeTemporaryAllocation(of: Float.self, capacity: longest) { values in
                withUnsafeTemporaryAllocation(of: UInt32.self, capacity: longest / 32) { below in
                    var best = TopKHeap(storage: heapStorage.baseAddress!, capacity: kept)
                    var stretch = min(longest, (kept + 31) / 32 * 32)
                    packed.nodes.withUnsafeBufferPointer { nodes in
                        // Slots `from..<end` (`from` on a block).
                        func scan(from: Int, to end: Int) {
                            var start = from
                            while start < end {
                                let m = min(stretch, end - start)
                                stretch = min(longest, 2 * stretch)
                                packed.estimate(query, tables: tables, from: start, count: m, bound: best.threshold,
                                                into: values.baseAddress!, below: below.baseAddress!)
                                for b in 0..<(m + 31) / 32 {
                                    var mask = below[b]
                                    while mask != 0 {
                                        let i = b * 32 + mask.trailingZeroBitCount
                                        mask &= mask - 1
                                        let node = nodes[start + i]
                                        if values[i] <= best.threshold && node != HNSWIndex.noNode {
                                            best.consider(Candidate(distance: values[i], id: UInt64(node)))
                                        }
                                    }
                                }
                                start += m
                            }
                        }
                        guard let runs = packed.runs, let partition = signCodes.partition else {
                            scan(from: 0, to: nodes.count)
                            ranked = matches
                            return
                        }
                        let nearest = clustersToRank(q, partition: partition, counts: packed.clusterMatches,
                                                     kept: kept)
                        for c in nearest.clusters { scan(from: runs[Int(c)], to: runs[Int(c) + 1]) }
                        ranked = nearest.matches
                    }
                    return best.drainSorted().map { UInt32($0.id) }
                }
            }
        }
        let compared = compareFinalists(q, finalists, k: k, ef: rerank, allowedKeys: allowedKeys)
        return (compared.results, ranked, compared.count)
    }

    /// The end of a quantized scan, packed or not: its `finalists` (by
    /// 1-bit estimate) ``narrowed(_:_:k:ef:)``, then compared exactly,
    /// keeping live nodes whose keys are in `allowedKeys`. Returns the best
    /// `k` and how many vectors were compared.
    func compareFinalists(_ q: UnsafePointer<Float>, _ finalists: [UInt32], k: Int, ef: Int, allowedKeys: Bitset)
        -> (results: [Neighbor], count: Int)
    {
        let compared = narrowed(q, finalists, k: k, ef: ef)
        return (compared.withUnsafeBufferPointer { bestExactly(q, among: $0, k: k, allowedKeys: allowedKeys) },
                compared.count)
    }

    /// A scan's `finalists` (by 1-bit estimate) narrowed, on an index with
    /// compact codes, to the best ``compactRerankCount(k:ef:)`` by their
    /// 4-bit estimates, which rank much closer to exact: fewer float32
    /// vectors are read from the mapped segment, where a compact index
    /// keeps them (measurements: docs/design/filter-planner.md).
    func narrowed(_ q: UnsafePointer<Float>, _ finalists: [UInt32], k: Int, ef: Int) -> [UInt32] {
        let keep = HNSWIndex.compactRerankCount(k: k, ef: ef)
        guard let codes = compactCodes, codes.isReady, finalists.count > keep else { return finalists }
        let query = codes.prepare(q)
        let n = finalists.count
        return withUnsafeTemporaryAllocation(of: UnsafeRawPointer?.self, capacity: n) { rows in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { values in
                for (i, node) in finalists.enumerated() {
                    let record = UnsafeRawPointer(codes.records.record(node))
                    lodestone_prefetch_bytes_l2(record, codes.records.stride)
                    rows[i] = record
                }
                codes.estimate(query, records: rows.baseAddress!, count: n, into: values.baseAddress!)
                var ranked = (0..<n).map { Candidate(distance: values[$0], id: UInt64(finalists[$0])) }
                ranked.sort()
                return ranked.prefix(keep).map { UInt32($0.id) }
            }
        }
    }
}

extension HNSWIndex {
    /// Builds the sign codes if no plan has needed them yet (once, under
    /// the writer's lock, on every core).
    func ensureSignCodes() {
        guard !signCodes.isReady else { return }
        writer.withLock { _ in
            guard !signCodes.isReady else { return }
            signCodes.build(count: nodeCount.load(ordering: .acquiring), vector: { UnsafePointer(self.vector($0)) },
                            isLive: { self.state($0) == .live }, threads: Parallelism.defaultThreadCount,
                            metric: metric, kernels: kernels)
        }
    }

    /// The quantized scan: ranks every live node whose key is allowed by its
    /// sign code's estimate, keeps the best `rerank`, and compares those
    /// exactly. Returns the best `k` (exact scores), how many codes were
    /// ranked and how many vectors compared.
    func quantizedScan(_ q: UnsafePointer<Float>, k: Int, rerank: Int, allowedKeys: Bitset, cached: Bitset?)
        -> (results: [Neighbor], ranked: Int, compared: Int)
    {
        ensureSignCodes()
        // The filter's nodes: `cached` when it has a node set (live when it
        // was made; states are checked again among the finalists), else
        // the keys are looked up.
        let looked = cached == nil ? nodes(forKeys: allowedKeys, cached: nil) : []
        let matches = cached?.count ?? looked.count
        let kept = min(max(k, rerank), matches)
        guard kept > 0 else { return ([], 0, 0) }
        // The clusters a packed scan of the same matches ranks: the same
        // codes, so the same results.
        var probed: (partition: CodePartition, taken: [Bool])? = nil
        var ranked = matches
        if let partition = signCodes.partition,
           PackedSignCodes.clustered(matches: matches, clusters: partition.count) {
            var counts = [UInt32](repeating: 0, count: partition.count)
            if let cached {
                cached.forEach { counts[partition.cluster(UInt32($0))] += 1 }
            } else {
                for node in looked { counts[partition.cluster(node)] += 1 }
            }
            let nearest = clustersToRank(q, partition: partition, counts: counts, kept: kept)
            var taken = [Bool](repeating: false, count: partition.count)
            for c in nearest.clusters { taken[Int(c)] = true }
            probed = (partition, taken)
            ranked = nearest.matches
        }
        let group = 64
        let query = signCodes.prepare(q, euclidean: metric == .euclidean)
        let bestStorage = UnsafeMutablePointer<Candidate>.allocate(capacity: kept)
        let codes = UnsafeMutablePointer<UnsafeRawPointer?>.allocate(capacity: group)
        let grouped = UnsafeMutablePointer<UInt32>.allocate(capacity: group)
        let values = UnsafeMutablePointer<Float>.allocate(capacity: group)
        defer {
            bestStorage.deallocate()
            codes.deallocate()
            grouped.deallocate()
            values.deallocate()
        }
        // Rank every match by estimate, a group at a time.
        var best = TopKHeap(storage: bestStorage, capacity: kept)
        var pending = 0
        func flush() {
            signCodes.estimate(query, records: codes, count: pending, into: values)
            var threshold = best.threshold
            for i in 0..<pending where values[i] <= threshold {
                best.consider(Candidate(distance: values[i], id: UInt64(grouped[i])))
                threshold = best.threshold
            }
            pending = 0
        }
        func add(_ node: UInt32) {
            if let probed, !probed.taken[probed.partition.cluster(node)] { return }
            let record = UnsafeRawPointer(signCodes.records.record(node))
            lodestone_prefetch(record)  // a group ahead of the kernel: the line comes from L3 or memory meanwhile
            grouped[pending] = node
            codes[pending] = record
            pending += 1
            if pending == group { flush() }
        }
        if let cached { cached.forEach { add(UInt32($0)) } } else { for node in looked { add(node) } }
        if pending > 0 { flush() }
        // Compare the best exactly.
        let compared = compareFinalists(q, best.drainSorted().map { UInt32($0.id) }, k: k, ef: rerank,
                                        allowedKeys: allowedKeys)
        return (compared.results, ranked, compared.count)
    }
}
