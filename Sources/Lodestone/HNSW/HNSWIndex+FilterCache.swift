import CLodestoneKernels

/// A filter's allowed keys translated to node ids, for the key table
/// version it was made from: a walk then tests a bit per node instead of
/// loading each node's key.
struct FilterNodes {
    var keys: Bitset
    var version: UInt64
    /// Nil until the same filter is seen a second time (a one-off filter
    /// is not worth the translation).
    var nodes: Bitset?
    /// The matches' sign codes packed for the quantized scan, once a scan
    /// of the cached node set needs them (``HNSWIndex/packedCodes(for:cached:)``).
    var packed: PackedSignCodes? = nil
}

extension HNSWIndex {
    /// Filters whose node sets are kept: a service alternating among a few
    /// filters must not translate one on every query.
    static let filterNodesCapacity = 8

    /// The live nodes whose keys are in `keys`, when this filter ran before
    /// on the same keys (nil the first time: the caller tests keys then).
    func allowedNodes(for keys: Bitset) -> Bitset? { cachedFilter(for: keys)?.nodes }

    /// ``allowedNodes(for:)`` with the key table's version the node set was
    /// made for and the filter's packed codes when made: one acquisition of
    /// the writer's lock per filtered query.
    func cachedFilter(for keys: Bitset) -> CachedFilter? {
        writer.withLock { w -> CachedFilter? in
            ensureKeys(&w)
            let version = w.keys.version
            guard let i = w.filterNodes.firstIndex(where: { $0.version == version && $0.keys == keys }) else {
                w.filterNodes.removeAll { $0.version != version }
                w.filterNodes.insert(FilterNodes(keys: keys, version: version, nodes: nil), at: 0)
                if w.filterNodes.count > HNSWIndex.filterNodesCapacity { w.filterNodes.removeLast() }
                return nil
            }
            var cached = w.filterNodes.remove(at: i)
            if cached.nodes == nil {
                var nodes = Bitset(capacity: nodeCount.load(ordering: .acquiring))
                keys.forEach { key in
                    if let node = w.keys.node(forKey: UInt64(key), keyOf: self.key), state(node) == .live {
                        nodes.insert(Int(node))
                    }
                }
                cached.nodes = nodes
            }
            w.filterNodes.insert(cached, at: 0)
            return cached.nodes.map { CachedFilter(nodes: $0, version: version, packed: cached.packed) }
        }
    }
}

/// What ``HNSWIndex/cachedFilter(for:)`` finds of a filter seen before.
struct CachedFilter {
    /// The live nodes of the filter's keys when the node set was made.
    let nodes: Bitset
    /// The key table's version the node set was made for.
    let version: UInt64
    /// The matches' packed codes, once a scan made them.
    let packed: PackedSignCodes?
}

extension HNSWIndex {
    /// The bytes per live vector the filter cache may hold in packed sign
    /// codes (a filter's matches' codes in blocks of 32), over all its
    /// filters: past it, the least recently used filters lose theirs (and
    /// scan unpacked).
    public static let packedFilterBytesPerVector = 64

    /// Whether a filter's `matches` can be packed: the dimension within the
    /// kernel's 16-bit sums, and their bytes within
    /// ``packedFilterBytesPerVector`` on their own.
    func packable(matches: Int) -> Bool {
        dimension <= PackedSignCodes.maximumDimension
            && PackedSignCodes.byteCount(matches: matches, dimension: dimension, clusters: expectedClusters)
                <= max(count, 1) * HNSWIndex.packedFilterBytesPerVector
    }

    /// The clusters of the sign codes' partition: once built, its own; before,
    /// those a build now would make (so a filter's first query is planned as
    /// its later ones); nil for an index too small to partition.
    var expectedClusters: Int? {
        if signCodes.isReady { return signCodes.partition?.count }
        return CodePartition.clusterCount(nodes: nodeCount.load(ordering: .acquiring), live: count)
    }

    /// The packed sign codes of the filter on `keys`, `cached` as
    /// ``cachedFilter(for:)`` found it: its codes when it had them, else
    /// packed now (unless another query has meanwhile) and kept with the
    /// node set until the next write; nil when they cannot be packed
    /// (``packable(matches:)``).
    func packedCodes(for keys: Bitset, cached: CachedFilter) -> PackedSignCodes? {
        if let packed = cached.packed { return packed }
        let (nodes, version) = (cached.nodes, cached.version)
        func entry(_ w: borrowing WriterState) -> Int? {
            w.filterNodes.firstIndex(where: { $0.version == version && $0.keys == keys })
        }
        if let packed = writer.withLock({ w in entry(w).flatMap { w.filterNodes[$0].packed } }) { return packed }
        let matches = nodes.count
        guard packable(matches: matches) else { return nil }
        ensureSignCodes()
        var list: [UInt32] = []
        list.reserveCapacity(matches)
        // The node set was live when it was made; finalists are checked again.
        nodes.forEach { list.append(UInt32($0)) }
        let packed = PackedSignCodes(nodes: list, codes: signCodes)
        let budget = max(count, 1) * HNSWIndex.packedFilterBytesPerVector
        writer.withLock { w in
            // Kept only with the node set it was made from: after a write,
            // that entry is gone and this query uses them once.
            guard let i = entry(w) else { return }
            var held = w.filterNodes.reduce(0) { $0 + ($1.packed?.byteCount ?? 0) }
            held -= w.filterNodes[i].packed?.byteCount ?? 0  // another reader's, replaced
            var j = w.filterNodes.count - 1
            while held + packed.byteCount > budget && j >= 0 {
                if j != i, let old = w.filterNodes[j].packed {
                    held -= old.byteCount
                    w.filterNodes[j].packed = nil
                }
                j -= 1
            }
            if held + packed.byteCount <= budget { w.filterNodes[i].packed = packed }
        }
        return packed
    }
}
