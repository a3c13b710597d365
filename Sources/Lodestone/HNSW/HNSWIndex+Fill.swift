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

    /// Squared distance from a rank value (cosine vectors are unit length).
    @inline(__always) func squaredDistance(_ rank: Float) -> Float { metric == .euclidean ? rank : 2 + 2 * rank }

    /// Whether a spare candidate `c` at rank value `distance` from a node
    /// may fill a slot of its list, whose kept neighbours are `kept` (at
    /// `keptDistances`): not when a kept neighbour nearer to the node is
    /// ``fillSeparation`` times nearer to `c` (squared) than the node is.
    @inline(__always) func fillAdmits(_ c: UInt32, distance: Float, kept: UnsafeBufferPointer<UInt32>,
                                      keptDistances: UnsafeBufferPointer<Float>) -> Bool {
        let dic = squaredDistance(distance)
        if let codes = linkingCodes {
            for j in 0..<kept.count where keptDistances[j] <= distance {
                if HNSWIndex.fillSeparation * squaredDistance(codes.estimate(between: c, kept[j])) < dic { return false }
            }
            return true
        }
        let cv = UnsafePointer(vector(c))
        for j in 0..<kept.count where keptDistances[j] <= distance {
            if HNSWIndex.fillSeparation * squaredDistance(rank(cv, vector(kept[j]))) < dic { return false }
        }
        return true
    }

    /// After the heuristic re-chose a full layer-0 list (`chosen`, from
    /// `candidates`: its old links and the new one, sorted nearest first),
    /// fills it again up to `capacity` from the candidates it dropped, by
    /// the rule of ``fillLayerZero(_:spare:threads:)``. Without it, every
    /// reverse link into a filled list dropped the fill, so an index grown
    /// in small batches lost most of it. It slows inserts, large batches
    /// most, because lists kept full make every later reverse link run the
    /// heuristic. A bulk insert does not refill its own nodes, which it
    /// fills once linked (measurements: docs/design/quantized-walk.md).
    func refill(_ chosen: inout [UInt32], from candidates: [Candidate], capacity: Int) {
        var distances = chosen.map { id in candidates.first { $0.id == UInt64(id) }!.distance }
        for c in candidates where chosen.count < capacity {
            let id = UInt32(c.id)
            if chosen.contains(id) || state(id) != .live { continue }
            let admitted = chosen.withUnsafeBufferPointer { kept in
                distances.withUnsafeBufferPointer { fillAdmits(id, distance: c.distance, kept: kept, keptDistances: $0) }
            }
            if admitted {
                chosen.append(id)
                distances.append(c.distance)
            }
        }
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
            var keptIDs = [UInt32](repeating: 0, count: width)
            var keptDistances = [Float](repeating: 0, count: width)
            for i in run {
                let id = ids[i]
                guard state(id) == .live else { continue }
                let slots = links(id, layer: 0)
                var count = 0
                while count < width {
                    let nb = lodestone_load_u32(slots + count)
                    if nb == HNSWIndex.noNode { break }
                    keptIDs[count] = nb
                    count += 1
                }
                keptIDs.withUnsafeBufferPointer { kept in
                    keptDistances.withUnsafeMutableBufferPointer {
                        nodeRanks(from: id, to: UnsafeBufferPointer(rebasing: kept[0..<count]), into: $0.baseAddress!)
                    }
                }
                let linked = count
                guard count < width else { continue }
                let candidates = spare + i * width
                for s in 0..<width where count < width {
                    let c = candidates[s]
                    if c.id == HNSWIndex.noNode { break }
                    if state(c.id) != .live || keptIDs[0..<count].contains(c.id) { continue }
                    let admitted = keptIDs.withUnsafeBufferPointer { kept in
                        keptDistances.withUnsafeBufferPointer {
                            fillAdmits(c.id, distance: c.distance, kept: UnsafeBufferPointer(rebasing: kept[0..<count]),
                                       keptDistances: UnsafeBufferPointer(rebasing: $0[0..<count]))
                        }
                    }
                    if !admitted { continue }
                    keptIDs[count] = c.id
                    keptDistances[count] = c.distance
                    count += 1
                }
                guard count > linked else { continue }
                lock(id)
                markLinksDirty(id, layer: 0)
                for j in linked..<count { lodestone_store_u32(slots + j, keptIDs[j]) }
                linksWritten(id, layer: 0)
                unlock(id)
            }
        }
    }
}
