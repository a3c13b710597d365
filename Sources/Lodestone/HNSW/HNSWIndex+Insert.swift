import CLodestoneKernels
import Synchronization

extension HNSWIndex {
    // MARK: Adding

    /// Adds one vector under a new key.
    /// - Throws: ``LodestoneError/duplicateKey(_:)`` or a validation error;
    ///   the index is then unchanged.
    public func add(_ vector: [Float], key: UInt64) throws(LodestoneError) {
        try add(contentsOf: vector, keys: [key], threads: 1)
    }

    /// Adds vectors (one after another in `vectors`) under new keys, linking
    /// them into the graph on `threads` threads.
    ///
    /// The batch is validated as a whole first: on any error nothing is
    /// added. With `threads == 1` and the same seed, the same sequence of
    /// calls builds the same graph.
    public func add(contentsOf vectors: [Float], keys newKeys: [UInt64], threads: Int = 1) throws(LodestoneError) {
        guard threads >= 1 else { throw .invalidArgument(name: "threads", reason: "must be at least 1, got \(threads)") }
        let n = newKeys.count
        guard vectors.count == n * dimension else {
            throw .dimensionMismatch(expected: dimension, actual: n == 0 ? vectors.count : vectors.count / max(n, 1))
        }
        guard n > 0 else { return }
        let prepared = try VectorPreparation.prepareRows(vectors, count: n, dimension: dimension, metric: metric, kernels: kernels)
        var seen = Set<UInt64>(minimumCapacity: n)
        try writer.withLock { (w: inout WriterState) throws(LodestoneError) in
            ensureKeys(&w)
            if let failure = corruption() { throw failure }
            for key in newKeys where !seen.insert(key).inserted || w.keys.node(forKey: key, keyOf: self.key) != nil {
                throw .duplicateKey(key)
            }
            prepared.rows.withUnsafeBufferPointer { rows in
                insertLocked(&w, rows: rows.baseAddress!, keys: newKeys, threads: threads)
            }
        }
    }

    /// Inserts prepared rows under new keys (validated by the caller), with
    /// the writer lock held: takes free slots whose grace period has passed,
    /// then fresh ones; writes the records; links the nodes on `threads`
    /// threads.
    func insertLocked(_ w: inout WriterState, rows: UnsafePointer<Float>, keys newKeys: [UInt64], threads: Int) {
        let n = newKeys.count
        prepareNeighbourCodesLocked()
        prepareCompactCodesLocked(rows: rows, count: n)
        preparePairFactorsLocked()
        // Every remaining node is removed: unlink them all, so the graph
        // restarts from the new nodes instead of hanging off tombstones.
        if liveCount.load(ordering: .relaxed) == 0 && !w.tombstones.isEmpty { purgeLocked(&w) }
        var ids: [UInt32] = []
        ids.reserveCapacity(n)
        if !w.free.isEmpty {
            let oldest = scratchPool.oldestActiveEpoch()
            var kept: [(node: UInt32, epoch: UInt64)] = []
            for f in w.free {
                if ids.count < n && f.epoch <= oldest { ids.append(f.node) } else { kept.append(f) }
            }
            w.free = kept
            deadCount.subtract(ids.count, ordering: .releasing)
        }
        let reused = ids.count
        let first = nodeCount.load(ordering: .relaxed)
        let fresh = n - reused
        reserveNodes(first + fresh)
        for i in 0..<fresh { ids.append(UInt32(first + i)) }
        for i in 0..<n {
            let lvl = drawLevel(ordinal: w.insertions)
            w.insertions += 1
            let upper = i < reused ? reuseNode(ids[i], level: lvl, &w) : allocateUpper(level: lvl, &w)
            initializeNode(ids[i], vector: rows + i * dimension, key: newKeys[i], level: lvl, upperStart: upper)
            w.keys.insert(key: newKeys[i], node: ids[i], keyOf: self.key)
        }
        if fresh > 0 { nodeCount.store(first + fresh, ordering: .releasing) }
        ids.withUnsafeBufferPointer { idp in
            // Spare candidates (to fill layer-0 lists) take 8 bytes per slot
            // (256 MB for a million nodes at m0 32): nodes are linked, and
            // filled, a million at a time.
            let chunk = min(n, 1 << 20)
            let spare = fillsLayerZero ? UnsafeMutablePointer<SpareCandidate>.allocate(capacity: chunk * m0) : nil
            defer { spare?.deallocate() }
            for start in stride(from: 0, to: n, by: chunk) {
                let part = UnsafeBufferPointer(rebasing: idp[start..<min(n, start + chunk)])
                // The chunk's own lists are filled once it is linked; the
                // lists of nodes filled before are refilled as links reach them.
                let pending = spare.map { _ in
                    Bitset(capacity: nodeCount.load(ordering: .relaxed), slots: part.lazy.map { Int($0) })
                }
                parallelFor(count: part.count, threads: threads) { run in
                    for i in run { link(part[i], spare: spare.map { $0 + i * m0 }, pendingFill: pending) }
                }
                if let spare { fillLayerZero(part, spare: spare, threads: threads) }
            }
        }
        liveCount.add(n, ordering: .releasing)
        vectors.dropSpilledPages()
    }

    /// Upper-layer link blocks for a new node of `level` (a freed run of that
    /// length if there is one); returns the first block, 0 for level 0.
    func allocateUpper(level lvl: Int, _ w: inout WriterState) -> UInt32 {
        guard lvl > 0 else { return 0 }
        if let run = w.freeUpperRuns[lvl]?.popLast() { return run }
        upperLinks.reserve(w.upperBlocks + lvl)
        defer { w.upperBlocks += lvl }
        return UInt32(w.upperBlocks)
    }

    /// Prepares a freed node's slot for a new node of `level`: gives back
    /// its old upper blocks and takes blocks for the new level.
    func reuseNode(_ id: UInt32, level lvl: Int, _ w: inout WriterState) -> UInt32 {
        let old = level(id)
        if old > 0 {
            let start = upperStart.record(id).load(as: UInt32.self)
            if old == lvl { return start }
            w.freeUpperRuns[old, default: []].append(start)
        }
        return allocateUpper(level: lvl, &w)
    }

    /// Makes room for node ids below `n` in every per-node arena.
    func reserveNodes(_ n: Int) {
        for arena in [vectors, links0, keyRecords, levelRecords, upperStart, states] { arena.reserve(n) }
    }

    /// Writes a node's records (not yet linked, so no search can reach it).
    func initializeNode(_ id: UInt32, vector v: UnsafePointer<Float>, key k: UInt64, level lvl: Int,
                        upperStart first: UInt32) {
        vectors.markDirty(id)
        keyRecords.markDirty(id)
        links0.markDirty(id)
        upperStart.markDirty(id)
        levelRecords.markDirty(id)
        for l in 0..<lvl { upperLinks.markDirty(first + UInt32(l)) }
        vector(id).update(from: v, count: dimension)
        if signCodes.isReady { signCodes.encode(id, vector: v) }
        if let codes = neighbourCodes, codes.isReady { codes.reset(id, vector: v) }
        if let codes = compactCodes, codes.isReady { codes.encode(id, vector: v) }
        keyRecords.record(id).storeBytes(of: k, as: UInt64.self)
        let slots = links0.record(id).assumingMemoryBound(to: UInt32.self)
        for j in 0..<m0 { lodestone_store_u32(slots + j, HNSWIndex.noNode) }
        upperStart.record(id).storeBytes(of: first, as: UInt32.self)
        for l in 0..<lvl {
            let block = upperLinks.record(first + UInt32(l)).assumingMemoryBound(to: UInt32.self)
            for j in 0..<m { lodestone_store_u32(block + j, HNSWIndex.noNode) }
        }
        lodestone_store_u8(levelRecords.record(id).assumingMemoryBound(to: UInt8.self), UInt8(lvl))
        setState(id, .live)
    }

    /// Links node `id` (initialised, unreachable) into the graph: descend to
    /// its level, then on each layer from there down search `efConstruction`
    /// candidates, choose neighbours with the heuristic, and link both ways.
    /// With `spare`, records there the layer-0 candidates passed over
    /// (``recordSpare(_:chosen:into:)``), `m0` slots.
    func link(_ id: UInt32, spare: UnsafeMutablePointer<SpareCandidate>?, pendingFill: Bitset?) {
        linkedNodes.add(1, ordering: .relaxed)
        // No spare candidates until layer 0 records them: a node that
        // becomes the entry point returns before that, and its fill must not
        // read the buffer's old bytes (it linked node 0 to itself).
        spare?.pointee = SpareCandidate(id: HNSWIndex.noNode, distance: .infinity)
        let q = UnsafePointer(vector(id))
        let nodeLevel = level(id)
        while true {
            let e = entry.load(ordering: .acquiring)
            if e == 0 {
                let mine = UInt64(nodeLevel + 1) << 32 | UInt64(id)
                if entry.compareExchange(expected: 0, desired: mine, ordering: .acquiringAndReleasing).exchanged { return }
                continue
            }
            break
        }
        scratchPool.withScratch { scratch in
            // Layers are taken from the entry point the descent started at:
            // `current` has every layer up to that top, even if another
            // thread raises the entry point meanwhile.
            // A compact index links on its codes' estimates.
            let coded = linkingCodes
            let query = coded.map { CompactCodes.SharedQuery($0.prepare(q)) }
            let descent = if let coded, let query {
                descendCoded(query.query, codes: coded, toLayer: nodeLevel, scratch: scratch)
            } else {
                descendFromTop(q, toLayer: nodeLevel, scratch: scratch)
            }
            guard let start = descent else { return }
            var current = start.node, currentDistance = start.distance
            var layer = min(nodeLevel, start.top)
            var chosenByLayer: [(Int, [UInt32])] = []
            while layer >= 0 {
                // With neighbour codes, layer 0 is searched by the quantized
                // walk, which leaves the same sorted pool, of the nodes'
                // 8-bit-code rank values (close to exact): its graph answers
                // more queries/s than one built by the exact walk, for more
                // build time (measurements: docs/design/quantized-walk.md).
                let found: Int
                if let coded, let query {
                    found = searchLayerCoded(query.query, codes: coded, entry: current, entryDistance: currentDistance,
                                             ef: parameters.efConstruction, layer: layer, scratch: scratch)
                } else if layer == 0, let codes = neighbourCodes, codes.isReady {
                    found = quantizedWalk(q, codes: codes, entry: current, entryDistance: currentDistance, k: 0,
                                          ef: parameters.efConstruction, scratch: scratch,
                                          admission: LiveNodes(index: self)).count
                } else {
                    found = searchLayer(q, entry: current, entryDistance: currentDistance,
                                        ef: parameters.efConstruction, layer: layer, scratch: scratch)
                }
                var candidates: [Candidate] = []
                candidates.reserveCapacity(found)
                for i in 0..<found where scratch.pool[i].id != id {
                    // Removed nodes may guide the search but get no new links.
                    let c = scratch.pool[i]
                    if state(c.id) == .live { candidates.append(Candidate(distance: c.distance, id: UInt64(c.id))) }
                }
                // The next layer starts from the nearest node found (never
                // the node itself, which another thread may have linked to).
                if let next = (0..<found).first(where: { scratch.pool[$0].id != id }) {
                    current = scratch.pool[next].id
                    currentDistance = scratch.pool[next].distance
                }
                let chosen = selectNeighbours(candidates, max: m)
                if layer == 0, let spare { recordSpare(candidates, chosen: chosen, into: spare) }
                lock(id)
                markLinksDirty(id, layer: layer)
                let own = links(id, layer: layer)
                for (j, nb) in chosen.enumerated() { lodestone_store_u32(own + j, nb) }
                linksWritten(id, layer: layer)
                unlock(id)
                chosenByLayer.append((layer, chosen))
                layer -= 1
            }
            // Only now, with its links on every layer in place, does the node
            // become reachable: a search that reaches it on an upper layer
            // must find layer-0 links to continue from.
            for (layer, chosen) in chosenByLayer {
                for nb in chosen {
                    let refill = layer == 0 && pendingFill.map { !$0.contains(Int(nb)) } ?? false
                    addLink(from: nb, to: id, layer: layer, refilling: refill)
                }
            }
        }
        // A node above the current top becomes the entry point.
        while true {
            let e = entry.load(ordering: .acquiring)
            guard nodeLevel > Int(e >> 32) - 1 else { break }
            let mine = UInt64(nodeLevel + 1) << 32 | UInt64(id)
            if entry.compareExchange(expected: e, desired: mine, ordering: .acquiringAndReleasing).exchanged { break }
        }
    }

    /// Malkov & Yashunin's heuristic: walk the candidates nearest first and
    /// keep one only if it is closer to the base than to every neighbour
    /// already kept (so links spread in different directions). With
    /// `refilling`, then fills the list up to `limit` from the live
    /// candidates it dropped (``refill(_:from:capacity:)``).
    /// `candidates` must be sorted nearest first (rank values to the base).
    func selectNeighbours(_ candidates: [Candidate], max limit: Int, refilling: Bool = false) -> [UInt32] {
        if candidates.count <= limit { return candidates.map { UInt32($0.id) } }
        var kept = withUnsafeTemporaryAllocation(of: UInt32.self, capacity: candidates.count) { ids in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: candidates.count) { ranks in
                for (j, c) in candidates.enumerated() {
                    ids[j] = UInt32(c.id)
                    ranks[j] = c.distance
                }
                let count = choose(ids, ranks: ranks, keptCount: 0, limit: limit, rule: .heuristic)
                return Array(ids[0..<count])
            }
        }
        if refilling && kept.count < limit { refill(&kept, from: candidates, capacity: limit) }
        return kept
    }

    /// Adds `id` to the links of `node` on `layer`; when they are full,
    /// re-chooses them among the old links and `id` with the heuristic,
    /// then, when `refilling` (a layer-0 list filled by an earlier insert),
    /// fills them again from the links it dropped
    /// (``refill(_:from:capacity:)``).
    func addLink(from node: UInt32, to id: UInt32, layer: Int, refilling: Bool) {
        let capacity = linkCapacity(layer: layer)
        lock(node)
        defer { unlock(node) }
        let slots = links(node, layer: layer)
        var count = 0
        while count < capacity {
            let nb = lodestone_load_u32(slots + count)
            if nb == HNSWIndex.noNode { break }
            if nb == id { return }
            count += 1
        }
        markLinksDirty(node, layer: layer)
        defer { linksWritten(node, layer: layer) }
        if count < capacity {
            lodestone_store_u32(slots + count, id)
            return
        }
        let candidates = withUnsafeTemporaryAllocation(of: UInt32.self, capacity: capacity + 1) { ids in
            ids[0] = id
            for j in 0..<capacity { ids[j + 1] = lodestone_load_u32(slots + j) }
            return sortedCandidates(from: node, to: UnsafeBufferPointer(ids))
        }
        let chosen = selectNeighbours(candidates, max: capacity, refilling: refilling)
        for j in 0..<capacity {
            lodestone_store_u32(slots + j, j < chosen.count ? chosen[j] : HNSWIndex.noNode)
        }
    }
}
