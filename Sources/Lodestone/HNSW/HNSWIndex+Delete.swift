import CLodestoneKernels
import Synchronization

extension HNSWIndex {
    // MARK: Removing and replacing

    /// Removes the vector stored under `key`.
    ///
    /// The node is hidden from searches at once, and its neighbours that
    /// linked to it get new links chosen with the same heuristic as an insert
    /// (among their other links and the removed node's). Its slot is reused
    /// by later inserts once the graph holds no link to it and no search
    /// that could still reach it is running.
    /// - Returns: whether a vector was stored under `key`.
    @discardableResult
    public func remove(key: UInt64) -> Bool {
        writer.withLock { w in removeLocked(&w, key: key) }
    }

    /// Replaces the vector stored under `key`: the old node is removed (its
    /// neighbours repaired) and the new vector inserted and linked.
    /// - Throws: ``LodestoneError/keyNotFound(_:)``, or a validation error
    ///   (the index is then unchanged).
    public func replace(_ vector: [Float], key: UInt64) throws(LodestoneError) {
        let prepared = try VectorPreparation.prepared(vector, dimension: dimension, metric: metric, kernels: kernels)
        try writer.withLock { (w: inout WriterState) throws(LodestoneError) in
            guard removeLocked(&w, key: key) else { throw .keyNotFound(key) }
            prepared.vector.withUnsafeBufferPointer { insertLocked(&w, rows: $0.baseAddress!, keys: [key], threads: 1) }
        }
    }

    /// Adds the vector under `key`, or replaces the one already there.
    public func upsert(_ vector: [Float], key: UInt64) throws(LodestoneError) {
        let prepared = try VectorPreparation.prepared(vector, dimension: dimension, metric: metric, kernels: kernels)
        writer.withLock { w in
            removeLocked(&w, key: key)
            prepared.vector.withUnsafeBufferPointer { insertLocked(&w, rows: $0.baseAddress!, keys: [key], threads: 1) }
        }
    }

    /// Unlinks every removed node from the graph now (normally done in
    /// batches as removals accumulate) so that their slots can be reused.
    public func compact() {
        writer.withLock { w in
            prepareNeighbourCodesLocked()
            purgeLocked(&w)
        }
    }

    /// Nodes this instance has linked into the graph (inserts and replaces);
    /// an index just opened from a segment has linked none.
    public var nodesLinked: Int { linkedNodes.load(ordering: .relaxed) }

    /// Removed nodes that still take a slot (linked or awaiting reuse).
    public var removedSlots: Int { deadCount.load(ordering: .acquiring) }

    @discardableResult
    func removeLocked(_ w: inout WriterState, key: UInt64) -> Bool {
        ensureKeys(&w)
        guard let id = w.keys.remove(key: key, keyOf: self.key) else { return false }
        prepareNeighbourCodesLocked()
        preparePairFactorsLocked()
        setState(id, .deleted)
        deadCount.add(1, ordering: .releasing)
        liveCount.subtract(1, ordering: .releasing)
        let dead: (UInt32) -> Bool = { $0 == id }
        for layer in 0...level(id) {
            let slots = links(id, layer: layer)
            for j in 0..<linkCapacity(layer: layer) {
                let nb = lodestone_load_u32(slots + j)
                if nb == HNSWIndex.noNode { break }
                if state(nb) == .live { repairLinks(of: nb, layer: layer, dead: dead) }
            }
        }
        w.tombstones.append(id)
        if w.tombstones.count >= max(64, liveCount.load(ordering: .relaxed) / 100) { purgeLocked(&w) }
        return true
    }

    /// If `node` links to dead nodes on `layer`, re-chooses its links among
    /// its live links and the dead nodes' live links, with the heuristic.
    func repairLinks(of node: UInt32, layer: Int, dead: (UInt32) -> Bool) {
        let capacity = linkCapacity(layer: layer)
        lock(node)
        defer { unlock(node) }
        let slots = links(node, layer: layer)
        var current: [UInt32] = []
        var removed: [UInt32] = []
        for j in 0..<capacity {
            let nb = lodestone_load_u32(slots + j)
            if nb == HNSWIndex.noNode { break }
            if dead(nb) { removed.append(nb) } else { current.append(nb) }
        }
        guard !removed.isEmpty else { return }
        var pool = Set(current)
        for r in removed where level(r) >= layer {
            let rs = links(r, layer: layer)
            for j in 0..<capacity {
                let nb = lodestone_load_u32(rs + j)
                if nb == HNSWIndex.noNode { break }
                if nb != node && !dead(nb) && state(nb) == .live { pool.insert(nb) }
            }
        }
        // Ranked as an insert ranks them (on the codes in a compact index,
        // whose float32 vectors stay on disk).
        let candidates = Array(pool).withUnsafeBufferPointer { sortedCandidates(from: node, to: $0) }
        var chosen = selectNeighbours(candidates, max: capacity)
        // A repaired node keeps at least 3/4 of its slots filled with its
        // nearest candidates: pruning alone can leave it with few links, and
        // removals already took paths away from its neighbourhood; 3/4 gave
        // the best recall of the floors tried (measurements:
        // docs/design/quantized-walk.md).
        let floor = capacity * 3 / 4
        if chosen.count < floor {
            var taken = Set(chosen)
            for c in candidates where chosen.count < floor && taken.insert(UInt32(c.id)).inserted {
                chosen.append(UInt32(c.id))
            }
        }
        markLinksDirty(node, layer: layer)
        for j in 0..<capacity {
            lodestone_store_u32(slots + j, j < chosen.count ? chosen[j] : HNSWIndex.noNode)
        }
        linksWritten(node, layer: layer)
    }

    /// Unlinks all tombstones: every live node that links to one is repaired;
    /// the entry point moves off them; then they become free slots, reusable
    /// once the searches running now have finished.
    func purgeLocked(_ w: inout WriterState) {
        guard !w.tombstones.isEmpty else { return }
        preparePairFactorsLocked()
        let total = nodeCount.load(ordering: .relaxed)
        var isDead = [Bool](repeating: false, count: total)
        for t in w.tombstones { isDead[Int(t)] = true }
        let dead: (UInt32) -> Bool = { isDead[Int($0)] }
        for u in 0..<UInt32(total) where state(u) == .live {
            for layer in 0...level(u) {
                let slots = links(u, layer: layer)
                for j in 0..<linkCapacity(layer: layer) {
                    let nb = lodestone_load_u32(slots + j)
                    if nb == HNSWIndex.noNode { break }
                    if isDead[Int(nb)] {
                        repairLinks(of: u, layer: layer, dead: dead)
                        break
                    }
                }
            }
        }
        let e = entry.load(ordering: .acquiring)
        if e != 0 && isDead[Int(UInt32(truncatingIfNeeded: e))] { chooseEntryPoint(avoiding: dead) }
        for t in w.tombstones { setState(t, .unused) }
        let epoch = scratchPool.advanceEpoch()
        w.free.append(contentsOf: w.tombstones.map { (node: $0, epoch: epoch) })
        w.tombstones.removeAll()
    }

    /// Makes the live node with the highest level the entry point (or empties
    /// the graph when no live node is left).
    func chooseEntryPoint(avoiding dead: (UInt32) -> Bool) {
        var best: UInt32? = nil
        var bestLevel = -1
        for u in 0..<UInt32(nodeCount.load(ordering: .relaxed)) where state(u) == .live && !dead(u) {
            let l = level(u)
            if l > bestLevel {
                bestLevel = l
                best = u
            }
        }
        if let best {
            entry.store(UInt64(bestLevel + 1) << 32 | UInt64(best), ordering: .releasing)
        } else {
            entry.store(0, ordering: .releasing)
        }
    }
}
