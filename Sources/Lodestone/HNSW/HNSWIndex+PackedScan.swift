import CLodestoneKernels

extension HNSWIndex {
    /// The quantized scan over a filter's packed codes: every match's
    /// estimate a block of 32 at a time, the best `rerank` (at least `k`)
    /// compared exactly (those whose keys are still in `allowedKeys`).
    /// Returns the best `k` (exact scores), how many codes were ranked and
    /// how many vectors compared.
    func packedScan(_ q: UnsafePointer<Float>, k: Int, rerank: Int, packed: PackedSignCodes, allowedKeys: Bitset)
        -> (results: [Neighbor], ranked: Int, compared: Int)
    {
        let matches = packed.nodes.count
        let kept = min(max(k, rerank), matches)
        guard kept > 0 else { return ([], 0, 0) }
        let query = signCodes.prepare(q, euclidean: metric == .euclidean)
        let tables = PackedSignCodes.Tables(query, words: signCodes.words)
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
                    var start = 0
                    var stretch = min(longest, (kept + 31) / 32 * 32)
                    packed.nodes.withUnsafeBufferPointer { nodes in
                        while start < matches {
                            let m = min(stretch, matches - start)
                            stretch = min(longest, 2 * stretch)
                            packed.estimate(query, tables: tables, from: start, count: m, bound: best.threshold,
                                            into: values.baseAddress!, below: below.baseAddress!)
                            for b in 0..<(m + 31) / 32 {
                                var mask = below[b]
                                while mask != 0 {
                                    let i = b * 32 + mask.trailingZeroBitCount
                                    mask &= mask - 1
                                    if values[i] <= best.threshold {
                                        best.consider(Candidate(distance: values[i], id: UInt64(nodes[start + i])))
                                    }
                                }
                            }
                            start += m
                        }
                    }
                    return best.drainSorted().map { UInt32($0.id) }
                }
            }
        }
        let compared = compareFinalists(q, finalists, k: k, ef: rerank, allowedKeys: allowedKeys)
        return (compared.results, matches, compared.count)
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
