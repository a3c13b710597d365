import CLodestoneKernels

/// A layer-0 candidate the neighbour choice passed over while linking a
/// node: kept, nearest first, to fill the node's list afterwards.
struct SpareCandidate {
    var id: UInt32
    var distance: Float
}

extension HNSWIndex {
    // MARK: Filling layer-0 lists (quantized traversal)

    /// How much nearer to the node than to a kept neighbour a spare
    /// candidate must be to fill a slot, in squared distance (1 is the
    /// heuristic's own rule); of the values tried, 1.1 left the quantized
    /// walk the fewest nodes to expand (measurements:
    /// docs/design/quantized-walk.md).
    static let fillSeparation: Float = 1.1

    /// Whether inserts fill the new nodes' layer-0 lists: with neighbour
    /// codes (a block holds `m0` slots and estimates them all at one cost,
    /// used or not) or compact codes (the fill expands fewer nodes there
    /// too), and a metric with distances (not dot product).
    var fillsLayerZero: Bool { (neighbourCodes != nil || compactCodes != nil) && metric != .dotProduct }

    /// Records up to `m0` of `candidates` (sorted nearest first) that are
    /// not in `chosen`, into `spare` (ending with `noNode` if fewer).
    func recordSpare(_ candidates: [Candidate], chosen: [UInt32], into spare: UnsafeMutablePointer<SpareCandidate>) {
        var n = 0
        for c in candidates where n < m0 && !chosen.contains(UInt32(c.id)) {
            spare[n] = SpareCandidate(id: UInt32(c.id), distance: c.distance)
            n += 1
        }
        if n < m0 { spare[n] = SpareCandidate(id: HNSWIndex.noNode, distance: .infinity) }
    }

    /// The fill's rule: a candidate is dominated by a kept neighbour
    /// ``fillSeparation`` times nearer to it, in squared distance, than the
    /// node is (rank values are squared distances for euclidean, and map to
    /// them as 2 + 2 rank for unit-length cosine vectors).
    var fillRule: CompactCodes.SelectionRule {
        CompactCodes.SelectionRule(separation: HNSWIndex.fillSeparation, alpha: metric == .euclidean ? 0 : 2,
                                   beta: metric == .euclidean ? 1 : 2)
    }

    /// The neighbour choice for a list: `ids` at rank values `ranks` from
    /// the list's node, the first `keptCount` kept already. Walks the
    /// others in order and keeps each that no kept entry, at most as far
    /// from the node, dominates by `rule`, up to `limit`; kept entries move
    /// up behind the first ones. Returns the new count. On the codes in one
    /// kernel call when nodes are linked by them (a call per pair cost more
    /// than the pair's estimate), else on float32.
    func choose(_ ids: UnsafeMutableBufferPointer<UInt32>, ranks: UnsafeMutableBufferPointer<Float>,
                keptCount: Int, limit: Int, rule: CompactCodes.SelectionRule) -> Int {
        guard keptCount < limit, ids.count > keptCount else { return keptCount }
        if let codes = linkingCodes {
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: ids.count) { skip in
                withUnsafeTemporaryAllocation(of: UInt32.self, capacity: limit) { kept in
                    for j in 0..<ids.count { skip[j] = j < keptCount ? 1 : 0 }
                    for j in 0..<keptCount { kept[j] = UInt32(j) }
                    let count = codes.select(UnsafeBufferPointer(ids), ranks: ranks.baseAddress!,
                                             skip: skip.baseAddress!, kept: kept.baseAddress!, keptCount: keptCount,
                                             limit: limit, rule: rule)
                    // Kept indices rise from keptCount: moving them up is safe in place.
                    for k in keptCount..<count {
                        ids[k] = ids[Int(kept[k])]
                        ranks[k] = ranks[Int(kept[k])]
                    }
                    return count
                }
            }
        }
        var count = keptCount
        for i in keptCount..<ids.count where count < limit {
            let own = rule.alpha + rule.beta * ranks[i]
            let v = UnsafePointer(vector(ids[i]))
            var admitted = true
            for j in 0..<count where ranks[j] <= ranks[i] {
                if rule.separation * (rule.alpha + rule.beta * rank(v, vector(ids[j]))) < own {
                    admitted = false
                    break
                }
            }
            if admitted {
                ids[count] = ids[i]
                ranks[count] = ranks[i]
                count += 1
            }
        }
        return count
    }

    /// After the heuristic re-chose a full layer-0 list (`chosen`, from
    /// `candidates`: its old links and the new one, sorted nearest first),
    /// fills it again up to `capacity` from the live candidates it dropped
    /// (``choose(_:ranks:keptCount:limit:rule:)`` by ``fillRule``). Without it, every
    /// reverse link into a filled list dropped the fill, so an index grown
    /// in small batches lost most of it. It slows inserts, large batches
    /// most, because lists kept full make every later reverse link run the
    /// heuristic. A bulk insert does not refill its own nodes, which it
    /// fills once linked (measurements: docs/design/quantized-walk.md).
    func refill(_ chosen: inout [UInt32], from candidates: [Candidate], capacity: Int) {
        let kept = chosen.count
        var ids = chosen
        var ranks = chosen.map { id in candidates.first { $0.id == UInt64(id) }!.distance }
        for c in candidates where !chosen.contains(UInt32(c.id)) && state(UInt32(c.id)) == .live {
            ids.append(UInt32(c.id))
            ranks.append(c.distance)
        }
        let count = ids.withUnsafeMutableBufferPointer { i in
            ranks.withUnsafeMutableBufferPointer { choose(i, ranks: $0, keptCount: kept, limit: capacity, rule: fillRule) }
        }
        chosen = Array(ids[0..<count])
    }

    /// Fills the layer-0 lists of the nodes just linked, `ids`, up to `m0`
    /// from their spare candidates (`spare`, `m0` per node in the order of
    /// `ids`), the way SymphonyQG supplements its graph: the heuristic keeps
    /// fewer links than a list holds, while a quantized block
    /// estimates all its slots at the same cost, so the empty ones are free
    /// to use. A candidate fills a slot unless a neighbour already kept, and
    /// nearer, is much nearer to it than the node is (``fillSeparation``):
    /// the fill still spreads in new directions. Fill links are one-way; a
    /// later reverse link into a full list re-chooses it with the heuristic
    /// and fills it again (``refill(_:from:capacity:)``).
    ///
    /// The fill cuts the nodes the quantized walk expands, and slows later
    /// inserts, whose reverse links now meet full lists (measurements:
    /// docs/design/quantized-walk.md).
    func fillLayerZero(_ ids: UnsafeBufferPointer<UInt32>, spare: UnsafePointer<SpareCandidate>, threads: Int) {
        let width = m0
        parallelFor(count: ids.count, threads: threads, grain: 64) { run in
            // The list's links, then its live spare candidates.
            var entries = [UInt32](repeating: 0, count: 2 * width)
            var ranks = [Float](repeating: 0, count: 2 * width)
            for i in run {
                let id = ids[i]
                guard state(id) == .live else { continue }
                let slots = links(id, layer: 0)
                var linked = 0
                while linked < width {
                    let nb = lodestone_load_u32(slots + linked)
                    if nb == HNSWIndex.noNode { break }
                    entries[linked] = nb
                    linked += 1
                }
                guard linked < width else { continue }
                var n = linked
                let candidates = spare + i * width
                for s in 0..<width {
                    let c = candidates[s]
                    if c.id == HNSWIndex.noNode { break }
                    if state(c.id) != .live || entries[0..<linked].contains(c.id) { continue }
                    entries[n] = c.id
                    ranks[n] = c.distance
                    n += 1
                }
                guard n > linked else { continue }
                let count = entries.withUnsafeMutableBufferPointer { e in
                    ranks.withUnsafeMutableBufferPointer { r in
                        nodeRanks(from: id, to: UnsafeBufferPointer(rebasing: e[0..<linked]), into: r.baseAddress!)
                        return choose(UnsafeMutableBufferPointer(rebasing: e[0..<n]),
                                      ranks: UnsafeMutableBufferPointer(rebasing: r[0..<n]), keptCount: linked,
                                      limit: width, rule: fillRule)
                    }
                }
                guard count > linked else { continue }
                lock(id)
                markLinksDirty(id, layer: 0)
                for j in linked..<count { lodestone_store_u32(slots + j, entries[j]) }
                linksWritten(id, layer: 0)
                unlock(id)
            }
        }
    }
}
