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
    /// heuristic's own rule). Measured on 100k x 384 by the quantized walk's
    /// nodes expanded per query at recall 0.95 (one build each): 1.0 (mean
    /// degree 23.5) 70, 1.05 (27) 64, 1.1 58.5, 1.2 (31.9) 63, 1.5 66,
    /// nearest first without a rule 66; unfilled 72-81.
    static let fillSeparation: Float = 1.1

    /// Whether inserts fill the new nodes' layer-0 lists: with neighbour
    /// codes (a block holds `m0` slots and estimates them all at one cost,
    /// used or not) and a metric with distances (not dot product).
    var fillsLayerZero: Bool { neighbourCodes != nil && metric != .dotProduct }

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

    /// Fills the layer-0 lists of the nodes just linked, `ids`, up to `m0`
    /// from their spare candidates (`spare`, `m0` per node in the order of
    /// `ids`), the way SymphonyQG supplements its graph: the heuristic keeps
    /// few links (about 22 of 32 on 100k x 384), while a quantized block
    /// estimates all its slots at the same cost, so the empty ones are free
    /// to use. A candidate fills a slot unless a neighbour already kept, and
    /// nearer, is much nearer to it than the node is (``fillSeparation``):
    /// the fill still spreads in new directions. Fill links are one-way; a
    /// later reverse link into a full list re-chooses it with the heuristic,
    /// which drops them.
    ///
    /// Measured on 100k x 384 (each node's mean degree 22 → about 30): the
    /// quantized walk expands 23% fewer nodes at recall 0.95; inserting the
    /// last 10k in batches of 100 ran at 0.84x the unfilled rate (4,362 a
    /// second against 5,198), as reverse links now meet full lists.
    func fillLayerZero(_ ids: UnsafeBufferPointer<UInt32>, spare: UnsafePointer<SpareCandidate>, threads: Int) {
        let width = m0
        let euclidean = metric == .euclidean
        // Squared distance from a rank value (cosine vectors are unit length).
        @inline(__always) func squared(_ rank: Float) -> Float { euclidean ? rank : 2 + 2 * rank }
        parallelFor(count: ids.count, threads: threads, grain: 64) { run in
            var keptIDs = [UInt32](repeating: 0, count: width)
            var keptDistances = [Float](repeating: 0, count: width)
            for i in run {
                let id = ids[i]
                guard state(id) == .live else { continue }
                let slots = links(id, layer: 0)
                let v = UnsafePointer(vector(id))
                var count = 0
                while count < width {
                    let nb = lodestone_load_u32(slots + count)
                    if nb == HNSWIndex.noNode { break }
                    keptIDs[count] = nb
                    keptDistances[count] = rank(v, vector(nb))
                    count += 1
                }
                let linked = count
                guard count < width else { continue }
                let candidates = spare + i * width
                for s in 0..<width where count < width {
                    let c = candidates[s]
                    if c.id == HNSWIndex.noNode { break }
                    if state(c.id) != .live || keptIDs[0..<count].contains(c.id) { continue }
                    let cv = UnsafePointer(vector(c.id))
                    let dic = squared(c.distance)
                    var occluded = false
                    for j in 0..<count where keptDistances[j] <= c.distance {
                        if HNSWIndex.fillSeparation * squared(rank(cv, vector(keptIDs[j]))) < dic {
                            occluded = true
                            break
                        }
                    }
                    if occluded { continue }
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
