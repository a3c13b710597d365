import CLodestoneKernels

extension HNSWIndex {
    // MARK: The quantized walk

    /// Builds the neighbour codes if this index has none yet (after opening
    /// a segment): once, under the writer's lock, on every core.
    func ensureNeighbourCodes(_ codes: NeighbourCodes) {
        guard !codes.isReady else { return }
        writer.withLock { _ in prepareNeighbourCodesLocked() }
    }

    /// Builds the neighbour codes, if the index has them and they are not
    /// built, with the writer's lock held: before any write to the graph,
    /// so blocks always mirror links once the graph has changed.
    func prepareNeighbourCodesLocked() {
        guard let codes = neighbourCodes, !codes.isReady else { return }
        codes.build(count: nodeCount.load(ordering: .acquiring), links: { UnsafePointer(self.links($0, layer: 0)) },
                    vector: { UnsafePointer(self.vector($0)) }, threads: Parallelism.defaultThreadCount)
    }

    /// Re-encodes `id`'s neighbour codes after a write to its links on
    /// `layer` (its node lock held).
    @inline(__always) func linksWritten(_ id: UInt32, layer: Int) {
        guard layer == 0, let codes = neighbourCodes, codes.isReady else { return }
        codes.refresh(id, links: links(id, layer: 0), vector: { UnsafePointer(self.vector($0)) })
    }

    /// The first linked node whose block's neighbours are not its layer-0
    /// links (as sets), or nil: what ``verify()`` checks of the blocks.
    func firstBlockNotMirroringLinks(_ codes: NeighbourCodes) -> UInt32? {
        writer.withLock { _ in
            for id in 0..<UInt32(nodeCount.load(ordering: .acquiring)) where state(id) != .unused {
                let slots = links(id, layer: 0)
                let ids = UnsafeRawPointer(codes.blocks.record(id)).assumingMemoryBound(to: UInt32.self)
                var linked = 0, held = 0
                for j in 0..<m0 {
                    let nb = lodestone_load_u32(slots + j)
                    if nb == HNSWIndex.noNode { break }
                    linked += 1
                    if !(0..<codes.slots).contains(where: { lodestone_load_u32(ids + $0) == nb }) { return id }
                }
                for j in 0..<codes.slots where lodestone_load_u32(ids + j) != HNSWIndex.noNode { held += 1 }
                if held != linked { return id }
            }
            return nil
        }
    }

    /// The layer-0 beam search of the quantized traversal, from `start`
    /// (rank value `startDistance`): the beam holds up to `ef` nodes, those
    /// not expanded yet by estimate; expanding one reads only its block: its
    /// rank value from the node's 8-bit code, which replaces its estimate
    /// (and makes it a result candidate, if live), and estimates of all its
    /// neighbours at once. A search (`k` > 0) may hold a node more than
    /// once (see `markOnExpansion`). When no node is left to expand,
    /// `scratch.pool` holds `count` nodes; for the build (`k` 0) they are
    /// distinct, all expanded, sorted by those rank values (close to exact
    /// ones: what the build's neighbour choice takes);
    /// `results` are the best `k` live nodes expanded (none for `k` 0), best
    /// first, with exact rank values: the best ``rerankCount(k:)`` by code
    /// compared exactly. Only nodes `admission` passes become results (a
    /// post-filtered walk passes a filter's; every walk passes live nodes
    /// only); all of them guide the walk.
    func quantizedWalk<A: NodeAdmission>(_ q: UnsafePointer<Float>, codes: NeighbourCodes, entry start: UInt32,
                                         entryDistance: Float, k: Int, ef: Int, scratch: SearchScratch,
                                         admission: A) -> (count: Int, results: [Candidate]) {
        scratch.reserveCodeBuffers(table: codes.tableBytes, estimates: codes.estimates)
        let finalists = k > 0 ? HNSWIndex.rerankCount(k: k) : 1
        scratch.reserveResults(finalists)
        let table = scratch.table, estimates = scratch.estimates, masks = scratch.estimateMasks
        let batches = codes.estimates / 32
        var query = codes.prepare(q, table: table)
        let bound = nodeCount.load(ordering: .acquiring)
        let generation = scratch.beginSearch(nodes: bound, poolSize: ef)
        let marks = scratch.visited
        let pool = scratch.pool
        var results = TopKHeap(storage: scratch.results, capacity: finalists)
        let qq = codes.euclidean ? kernels.rankValue(.dotProduct, q, q, dimension).magnitude : 0
        let d = dimension, slots = codes.slots
        let blockBytes = codes.blocks.stride
        // A search (k > 0) marks a node visited when it is expanded, so a
        // node may wait in the beam more than once (estimated from several
        // parents) and its copies after the first are skipped, as
        // SymphonyQG's walk does; the build (k 0) marks nodes on entering,
        // since its pool becomes a list of distinct candidates. Marking on
        // expansion expands fewer nodes for the same recall (measurements:
        // docs/design/quantized-walk.md).
        let markOnExpansion = k > 0
        if !markOnExpansion { marks[Int(start)] = generation }
        pool[0] = PoolEntry(distance: entryDistance, id: start)
        var count = 1
        var cursor = 0
        var expanded = 0
        while cursor < count {
            let current = pool[cursor].id
            pool[cursor].tagged |= PoolEntry.expandedBit
            if markOnExpansion {
                if marks[Int(current)] == generation {
                    // A copy of a node expanded already.
                    while cursor < count && pool[cursor].isExpanded { cursor += 1 }
                    continue
                }
                marks[Int(current)] = generation
            }
            // This node's whole block into the first-level cache, and the
            // two nodes expanded next unless this one's neighbours beat them
            // into the second level: a block is 37 lines, and asking for two
            // into the first level stalled on the core's outstanding misses
            // (measurements: docs/design/quantized-walk.md).
            var guess = cursor + 1
            while guess < count && pool[guess].isExpanded { guess += 1 }
            let block = UnsafeRawPointer(codes.blocks.record(current))
            lodestone_prefetch_bytes(block, blockBytes)
            if guess < count {
                lodestone_prefetch_bytes_l2(codes.blocks.record(pool[guess].id), blockBytes)
                var after = guess + 1
                while after < count && pool[after].isExpanded { after += 1 }
                if after < count { lodestone_prefetch_bytes_l2(codes.blocks.record(pool[after].id), blockBytes) }
            }
            let exact = cursor == 0 && expanded == 0 ? entryDistance : codes.nodeRank(block, q, qq: qq)
            expanded += 1
            if k > 0 && exact < results.threshold && admission.admits(current) {
                results.consider(Candidate(distance: exact, id: UInt64(current)))
            }
            // The expanded node's place in the beam moves from its estimate
            // to its 8-bit code's rank value, so the beam's bound is all but
            // exact once its nodes are expanded (measurements:
            // docs/design/quantized-walk.md).
            if cursor + 1 < count { (pool + cursor).update(from: pool + cursor + 1, count: count - cursor - 1) }
            count -= 1
            var moved = PoolEntry(distance: exact, id: current)
            moved.tagged |= PoolEntry.expandedBit
            let p = PoolEntry.insert(moved, into: pool, count: &count, capacity: ef)
            // The first unexpanded node: the one after `cursor`, now at `cursor` unless the move put it before.
            var lowest = p <= cursor ? cursor + 1 : cursor
            // Only neighbours estimated below the beam's bound can enter it:
            // the kernel marks them, so the loop below skips the rest
            // without touching their ids or visited marks.
            let bound0 = count == ef ? pool[count - 1].distance : Float.infinity
            withUnsafePointer(to: &query) { qp in
                lodestone_qg_estimate(block, d, slots, table, qp, exact, bound0, estimates, masks)
            }
            let ids = block.assumingMemoryBound(to: UInt32.self)
            for b in 0..<batches {
                var mask = masks[b]
                while mask != 0 {
                    let j = b * 32 + mask.trailingZeroBitCount
                    mask &= mask - 1
                    let nb = lodestone_load_u32(ids + j)
                    if nb == HNSWIndex.noNode || Int(nb) >= bound || marks[Int(nb)] == generation { continue }
                    let e = estimates[j]
                    if count == ef && e >= pool[count - 1].distance { continue }
                    if !markOnExpansion { marks[Int(nb)] = generation }
                    let lo = PoolEntry.insert(PoolEntry(distance: e, id: nb), into: pool, count: &count, capacity: ef)
                    if lo < lowest { lowest = lo }
                }
            }
            cursor = lowest
            while cursor < count && pool[cursor].isExpanded { cursor += 1 }
        }
        scratch.nodesExpanded += expanded
        scratch.distancesComputed += expanded
        guard k > 0 else { return (count, []) }
        return (count, rerank(q, results.drainSorted(), k: k, scratch: scratch))
    }

    /// The best `k` of a walk's `finalists` by exact rank value (their
    /// vectors requested at once, into L2: they are independent).
    /// A compact index's vectors are read record by record from its
    /// segment, perhaps from disk: see ``readAheadQueries``.
    func rerank(_ q: UnsafePointer<Float>, _ finalists: [Candidate], k: Int, scratch: SearchScratch) -> [Candidate] {
        let fromDisk = vectors.verifiesRecords
        let ahead = fromDisk && readAheadQueries.load(ordering: .relaxed) > 0
        if ahead { for c in finalists { vectors.adviseWillNeed(UInt32(c.id)) } }
        let start = fromDisk ? SystemCalls.monotonicNanoseconds() : 0
        for c in finalists { lodestone_prefetch_bytes_l2(vector(UInt32(c.id)), vectors.stride) }
        var exact = finalists.map { Candidate(distance: rank(q, vector(UInt32($0.id))), id: $0.id) }
        if fromDisk {
            // Longer than reading them from memory could take: they came
            // from the disk.
            if SystemCalls.monotonicNanoseconds() - start > 50_000 + 1_000 * finalists.count {
                readAheadQueries.store(HNSWIndex.readAheadSpan, ordering: .relaxed)
            } else if ahead {
                readAheadQueries.subtract(1, ordering: .relaxed)
            }
        }
        exact.sort()
        scratch.distancesComputed += exact.count
        return Array(exact.prefix(k))
    }

    /// Live nodes compared exactly at the end of a quantized walk for `k`
    /// results: the nodes' 8-bit codes rank close to exact values, so the
    /// true k-th best is among the best few more (measurements:
    /// docs/design/quantized-walk.md).
    static func rerankCount(k: Int) -> Int { k + max(8, k / 2) }

    /// A search on the quantized traversal: greedy descent on the upper
    /// layers (exact), then ``quantizedWalk(_:codes:entry:entryDistance:k:ef:scratch:)``.
    func searchQuantized(_ q: UnsafePointer<Float>, codes: NeighbourCodes, k: Int, ef: Int,
                         scratch: SearchScratch) -> [Neighbor] {
        ensureNeighbourCodes(codes)
        guard let (start, startDistance) = descend(q, toLayer: 0, scratch: scratch) else { return [] }
        let found = quantizedWalk(q, codes: codes, entry: start, entryDistance: startDistance, k: k, ef: ef,
                                  scratch: scratch, admission: LiveNodes(index: self)).results
        if found.count < k && found.count < count {
            // Removed nodes crowded the beam: search on until k live nodes.
            return searchFiltered(q, k: k, ef: ef, scratch: scratch, admission: LiveNodes(index: self))
        }
        return found.map { neighbor($0) }
    }
}

