import CLodestoneKernels

extension HNSWIndex {
    // MARK: Linking on compact codes (compact traversal)

    /// The compact codes when new nodes are linked by them (codes and their
    /// pair factors ready), else nil (other traversals link on float32).
    @inline(__always) var linkingCodes: CompactCodes? {
        guard let codes = compactCodes, codes.pairsReady.load(ordering: .acquiring),
              !codes.linksOnFloat.load(ordering: .relaxed) else { return nil }
        return codes
    }

    /// Makes the compact codes' pair factors ready before nodes are linked
    /// or repaired (the writer's lock held, codes ready): room for those of
    /// an index opened from its segment, computed as they are used.
    func preparePairFactorsLocked() {
        guard let codes = compactCodes, codes.isReady else { return }
        codes.preparePairs(count: nodeCount.load(ordering: .acquiring))
    }

    /// Rank values from node `a` to each of `nodes`, into `out`: codes
    /// against codes when nodes are linked by them, else on float32.
    func nodeRanks(from a: UInt32, to nodes: UnsafeBufferPointer<UInt32>, into out: UnsafeMutablePointer<Float>) {
        guard !nodes.isEmpty else { return }
        if let codes = linkingCodes {
            codes.estimate(from: a, nodes: nodes, into: out)
            return
        }
        let v = UnsafePointer(vector(a))
        for (j, b) in nodes.enumerated() { out[j] = rank(v, vector(b)) }
    }

    /// `nodes` as candidates for `a`'s links, nearest first, ranked by
    /// ``nodeRanks(from:to:into:)``.
    func sortedCandidates(from a: UInt32, to nodes: UnsafeBufferPointer<UInt32>) -> [Candidate] {
        var candidates: [Candidate] = []
        candidates.reserveCapacity(nodes.count)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(nodes.count, 1)) { ranks in
            nodeRanks(from: a, to: nodes, into: ranks.baseAddress!)
            for (j, id) in nodes.enumerated() { candidates.append(Candidate(distance: ranks[j], id: UInt64(id))) }
        }
        candidates.sort()
        return candidates
    }

    /// Greedy descent on the compact codes from the entry point down to
    /// `target` (what ``descendFromTop(_:toLayer:scratch:)`` does on
    /// float32), for a compact search and for linking a new node.
    func descendCoded(_ query: borrowing CompactCodes.Query, codes: CompactCodes, toLayer target: Int,
                      scratch: SearchScratch) -> (node: UInt32, distance: Float, top: Int)? {
        let e = entry.load(ordering: .acquiring)
        guard e != 0 else { return nil }
        var current = UInt32(truncatingIfNeeded: e)
        let top = Int(e >> 32) - 1
        var layer = top
        let values = scratch.values
        return scratch.rows.withMemoryRebound(to: UnsafeRawPointer?.self, capacity: scratch.neighbourCapacity) { rows in
            rows[0] = UnsafeRawPointer(codes.records.record(current))
            codes.estimate(query, records: rows, count: 1, into: values)
            var currentDistance = values[0]
            while layer > target {
                var improved = true
                while improved {
                    improved = false
                    let n = gatherCodes(of: current, layer: layer, codes: codes, scratch: scratch, rows: rows,
                                        visited: nil)
                    scratch.nodesExpanded += 1
                    scratch.distancesComputed += n
                    if n == 0 { break }
                    codes.estimate(query, records: rows, count: n, into: values)
                    for j in 0..<n where values[j] < currentDistance {
                        currentDistance = values[j]
                        current = scratch.ids[j]
                        improved = true
                    }
                }
                layer -= 1
            }
            return (current, currentDistance, top)
        }
    }

    /// Copies the neighbours of `id` on `layer` and their code records into
    /// the scratch buffers, skipping ids not yet visible and, with
    /// `visited`, ids already visited (marking the rest); every record's
    /// lines are requested before the first is scored.
    @inline(__always)
    func gatherCodes(of id: UInt32, layer: Int, codes: CompactCodes, scratch: SearchScratch,
                     rows: UnsafeMutablePointer<UnsafeRawPointer?>,
                     visited: (marks: UnsafeMutablePointer<UInt16>, generation: UInt16, bound: Int)?) -> Int {
        let slots = links(id, layer: layer)
        let capacity = linkCapacity(layer: layer)
        let recordBytes = codes.records.stride
        if let v = visited {
            // The marks first, all at once: checked one by one, each miss
            // waited behind the mispredicted branch of the check before.
            for j in 0..<capacity {
                let nb = lodestone_load_u32(slots + j)
                if nb == HNSWIndex.noNode { break }
                if Int(nb) < v.bound { lodestone_prefetch(v.marks + Int(nb)) }
            }
        }
        var n = 0
        for j in 0..<capacity {
            let nb = lodestone_load_u32(slots + j)
            if nb == HNSWIndex.noNode { break }
            if let v = visited {
                if Int(nb) >= v.bound || v.marks[Int(nb)] == v.generation { continue }
                v.marks[Int(nb)] = v.generation
            }
            let record = UnsafeRawPointer(codes.records.record(nb))
            lodestone_prefetch_bytes_l2(record, recordBytes)
            scratch.ids[n] = nb
            rows[n] = record
            n += 1
        }
        return n
    }

    /// Requests into the second-level cache the links on `layer` of the
    /// next node a beam will expand, the first not expanded after `cursor`.
    @inline(__always) func prefetchNextLinks(pool: UnsafeMutablePointer<PoolEntry>, after cursor: Int, count: Int,
                                             layer: Int) {
        var next = cursor + 1
        while next < count && pool[next].isExpanded { next += 1 }
        if next < count { lodestone_prefetch_bytes_l2(links(pool[next].id, layer: layer), linkCapacity(layer: layer) * 4) }
    }

    /// The beam search of one layer on the compact codes (what
    /// ``searchLayer(_:entry:entryDistance:ef:layer:scratch:)`` does on
    /// float32): leaves the up to `ef` nearest nodes found in
    /// `scratch.pool`, sorted by estimate, and returns how many.
    func searchLayerCoded(_ query: borrowing CompactCodes.Query, codes: CompactCodes, entry start: UInt32,
                          entryDistance: Float, ef: Int, layer: Int, scratch: SearchScratch) -> Int {
        let bound = nodeCount.load(ordering: .acquiring)
        let generation = scratch.beginSearch(nodes: bound, poolSize: ef)
        let marks = scratch.visited
        let pool = scratch.pool
        let values = scratch.values
        marks[Int(start)] = generation
        pool[0] = PoolEntry(distance: entryDistance, id: start)
        var count = 1
        var cursor = 0
        scratch.rows.withMemoryRebound(to: UnsafeRawPointer?.self, capacity: scratch.neighbourCapacity) { rows in
            while cursor < count {
                let current = pool[cursor].id
                pool[cursor].tagged |= PoolEntry.expandedBit
                prefetchNextLinks(pool: pool, after: cursor, count: count, layer: layer)
                let n = gatherCodes(of: current, layer: layer, codes: codes, scratch: scratch, rows: rows,
                                    visited: (marks, generation, bound))
                scratch.nodesExpanded += 1
                scratch.distancesComputed += n
                var lowest = cursor + 1
                if n > 0 {
                    codes.estimate(query, records: rows, count: n, into: values)
                    for j in 0..<n {
                        let d = values[j]
                        if count == ef && d >= pool[count - 1].distance { continue }
                        let nb = scratch.ids[j]
                        let lo = PoolEntry.insert(PoolEntry(distance: d, id: nb), into: pool, count: &count, capacity: ef)
                        if lo < lowest { lowest = lo }
                    }
                }
                cursor = lowest
                while cursor < count && pool[cursor].isExpanded { cursor += 1 }
            }
        }
        return count
    }
}
