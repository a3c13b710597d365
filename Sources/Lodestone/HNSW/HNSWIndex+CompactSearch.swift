import CLodestoneKernels

extension HNSWIndex {
    // MARK: The compact walk

    /// Builds the compact codes if this index has none yet (a segment
    /// written without them): once, under the writer's lock, on every core.
    func ensureCompactCodes(_ codes: CompactCodes) {
        guard !codes.isReady else { return }
        writer.withLock { _ in prepareCompactCodesLocked(rows: nil, count: 0) }
    }

    /// Makes the compact codes ready, if the index has them, with the
    /// writer's lock held, before nodes are written: an empty index takes
    /// the mean of the `count` rows about to be added as its center; an
    /// index with nodes encodes them all (center: the live vectors' mean,
    /// or the persisted one).
    func prepareCompactCodesLocked(rows: UnsafePointer<Float>?, count: Int) {
        guard let codes = compactCodes, !codes.isReady else { return }
        let n = nodeCount.load(ordering: .acquiring)
        if n == 0, let rows, count > 0, !codes.centerAdopted {
            codes.start(rows: rows, count: count)
            return
        }
        codes.build(count: n, vector: { UnsafePointer(self.vector($0)) }, isLive: { self.state($0) == .live },
                    keepCenter: codes.centerAdopted, threads: Parallelism.defaultThreadCount)
    }

    /// The first live node whose code differs from its vector's encoding,
    /// or nil: what ``verify()`` checks of the codes.
    func firstCodeNotMatchingVector(_ codes: CompactCodes) -> UInt32? {
        writer.withLock { _ in
            let stride = codes.records.stride
            let fresh = UnsafeMutableRawPointer.allocate(byteCount: stride, alignment: 16)
            defer { fresh.deallocate() }
            return codes.center.withUnsafeBufferPointer { c in
                for id in 0..<UInt32(nodeCount.load(ordering: .acquiring)) where state(id) == .live {
                    lodestone_cc_encode(vector(id), c.baseAddress!, dimension, fresh)
                    let stored = UnsafeRawPointer(codes.records.record(id))
                    for i in 0..<stride where fresh.load(fromByteOffset: i, as: UInt8.self)
                        != stored.load(fromByteOffset: i, as: UInt8.self) { return id }
                }
                return nil
            }
        }
    }

    /// Live nodes compared exactly at the end of a compact walk for `k`
    /// results with a beam of `ef`: with 4-bit estimates, comparing the
    /// best 20 exactly lost none of the true top 10 that 50 would find at
    /// small beams; the wide beams a crowded 10M index needs gain from
    /// twice that, so finalists grow with the beam past ef 160
    /// (measurements: docs/design/compact-codes.md).
    static func compactRerankCount(k: Int, ef: Int) -> Int { max(k + 10, 2 * k, ef / 8) }

    /// The layer-0 beam search of the compact traversal for `q` (`query`
    /// prepared from it), from `start` (estimate `entryDistance`): a beam of `ef` nodes ranked by their codes'
    /// estimates; expanding a node gathers, with `gatherer`, the codes of
    /// the nodes to estimate next (its neighbours not seen yet, or those a
    /// filter admits within two hops), which are marked as they enter (a
    /// code gives a node the same estimate from every parent). The best
    /// ``compactRerankCount(k:ef:)`` nodes `admission` passes, by estimate,
    /// are compared exactly at the end: returns the best `k`, best first,
    /// or nil once more than `budget` codes have been estimated (the caller
    /// then takes another plan).
    func compactWalk<A: NodeAdmission, G: CodeGatherer>(
        _ q: UnsafePointer<Float>, _ query: borrowing CompactCodes.Query, codes: CompactCodes, entry start: UInt32,
        entryDistance: Float, k: Int, ef: Int, scratch: SearchScratch, admission: A, gatherer: G, budget: Int = .max
    ) -> [Candidate]? {
        let finalists = HNSWIndex.compactRerankCount(k: k, ef: ef)
        scratch.reserveResults(finalists)
        let bound = nodeCount.load(ordering: .acquiring)
        let generation = scratch.beginSearch(nodes: bound, poolSize: ef)
        let marks = scratch.visited
        let pool = scratch.pool
        let ids = scratch.ids, estimates = scratch.values
        var results = TopKHeap(storage: scratch.results, capacity: finalists)
        marks[Int(start)] = generation
        pool[0] = PoolEntry(distance: entryDistance, id: start)
        var count = 1
        var cursor = 0
        var expanded = 0
        var estimated = 0
        scratch.rows.withMemoryRebound(to: UnsafeRawPointer?.self, capacity: scratch.neighbourCapacity) { records in
            while cursor < count && estimated <= budget {
                let current = pool[cursor].id
                let value = pool[cursor].distance
                pool[cursor].tagged |= PoolEntry.expandedBit
                // The next node to expand is probably the next in the beam:
                // its links into the second-level cache meanwhile.
                prefetchNextLinks(pool: pool, after: cursor, count: count, layer: 0)
                let n = gatherer.gather(self, of: current, codes: codes, scratch: scratch, rows: records,
                                        marks: marks, generation: generation, bound: bound)
                expanded += 1
                if value < results.threshold && admission.admits(current) {
                    results.consider(Candidate(distance: value, id: UInt64(current)))
                }
                var lowest = cursor + 1
                if n > 0 {
                    codes.estimate(query, records: records, count: n, into: estimates)
                    estimated += n
                }
                for i in 0..<n {
                    let e = estimates[i]
                    if count == ef && e >= pool[count - 1].distance { continue }
                    let at = PoolEntry.insert(PoolEntry(distance: e, id: ids[i]), into: pool, count: &count,
                                              capacity: ef)
                    if at < lowest { lowest = at }
                }
                cursor = lowest
                while cursor < count && pool[cursor].isExpanded { cursor += 1 }
            }
        }
        scratch.nodesExpanded += expanded
        scratch.distancesComputed += estimated
        guard estimated <= budget else { return nil }
        return rerank(q, results.drainSorted(), k: k, scratch: scratch)
    }

    /// The compact traversal's search for the best `k` nodes `admission`
    /// passes: ``descendCoded(_:codes:toLayer:scratch:)``, then
    /// ``compactWalk(_:_:codes:entry:entryDistance:k:ef:scratch:admission:gatherer:budget:)``
    /// (with ``AllCodes``, or ``AdmittedCodes`` for a filtered walk); empty
    /// for an empty index, nil past `budget` estimates.
    func compactSearch<A: NodeAdmission, G: CodeGatherer>(
        _ q: UnsafePointer<Float>, codes: CompactCodes, k: Int, ef: Int, scratch: SearchScratch, admission: A,
        gatherer: G, budget: Int = .max
    ) -> [Candidate]? {
        // An empty index answers before its codes are made: the first rows
        // added fix their center.
        guard entry.load(ordering: .acquiring) != 0 else { return [] }
        ensureCompactCodes(codes)
        let query = codes.prepare(q)
        // The upper layers on the codes too: a compact search reads no
        // float32 vector but its finalists'.
        guard let descent = descendCoded(query, codes: codes, toLayer: 0, scratch: scratch) else { return [] }
        let (start, startValue) = (descent.node, descent.distance)
        return compactWalk(q, query, codes: codes, entry: start, entryDistance: startValue, k: k, ef: ef,
                           scratch: scratch, admission: admission, gatherer: gatherer, budget: budget)
    }

    /// A search on the compact traversal (``compactSearch(_:codes:k:ef:scratch:admission:gatherer:budget:)``
    /// over live nodes).
    func searchCompact(_ q: UnsafePointer<Float>, codes: CompactCodes, k: Int, ef: Int,
                       scratch: SearchScratch) -> [Neighbor] {
        let found = compactSearch(q, codes: codes, k: k, ef: ef, scratch: scratch,
                                  admission: LiveNodes(index: self), gatherer: AllCodes()) ?? []
        if found.count < k && found.count < count {
            // Removed nodes crowded the beam: search on until k live nodes.
            return searchFiltered(q, k: k, ef: ef, scratch: scratch, admission: LiveNodes(index: self))
        }
        return found.map { neighbor($0) }
    }
}

/// Chooses, after a compact walk expands a node, whose codes it estimates.
protocol CodeGatherer {
    /// Copies the nodes to estimate into `scratch.ids` and their code
    /// records into `rows`, marking them visited; returns how many.
    func gather(_ index: HNSWIndex, of id: UInt32, codes: CompactCodes, scratch: SearchScratch,
                rows: UnsafeMutablePointer<UnsafeRawPointer?>, marks: UnsafeMutablePointer<UInt16>,
                generation: UInt16, bound: Int) -> Int
}

/// Every unvisited neighbour (the plain compact walk).
struct AllCodes: CodeGatherer {
    @inline(__always)
    func gather(_ index: HNSWIndex, of id: UInt32, codes: CompactCodes, scratch: SearchScratch,
                rows: UnsafeMutablePointer<UnsafeRawPointer?>, marks: UnsafeMutablePointer<UInt16>,
                generation: UInt16, bound: Int) -> Int {
        index.gatherCodes(of: id, layer: 0, codes: codes, scratch: scratch, rows: rows,
                          visited: (marks, generation, bound))
    }
}

/// The neighbours, and neighbours' neighbours, a filter admits (the
/// filtered compact walk; see
/// ``HNSWIndex/gatherAdmitted(of:scratch:rows:source:marks:generation:bound:admission:)``).
struct AdmittedCodes<A: NodeAdmission>: CodeGatherer {
    let admission: A
    @inline(__always)
    func gather(_ index: HNSWIndex, of id: UInt32, codes: CompactCodes, scratch: SearchScratch,
                rows: UnsafeMutablePointer<UnsafeRawPointer?>, marks: UnsafeMutablePointer<UInt16>,
                generation: UInt16, bound: Int) -> Int {
        index.gatherAdmitted(of: id, scratch: scratch, rows: rows, source: CodeRecords(codes: codes),
                             marks: marks, generation: generation, bound: bound, admission: admission)
    }
}

/// A node's compact code record, asked into the second-level cache as it
/// is named (the kernel reads it after the whole gather).
struct CodeRecords: NodeRows {
    let codes: CompactCodes
    @inline(__always) func row(_ id: UInt32) -> UnsafeRawPointer {
        let record = UnsafeRawPointer(codes.records.record(id))
        lodestone_prefetch_bytes_l2(record, codes.records.stride)
        return record
    }
}
