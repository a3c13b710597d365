import CLodestoneKernels

/// The sign codes of one filter's matches, transposed into blocks of 32
/// (FastScan's layout, André et al., VLDB 2015): a quantized scan then
/// looks up a 4-bit slice of 32 codes with one shuffle instead of counting
/// bits one code at a time. Layout and estimator: `lodestone_kernels.h`;
/// the estimates equal ``SignCodes``' exactly.
///
/// Made from ``SignCodes`` for a filter a query has used before and kept
/// with its node set until the next write (``HNSWIndex``'s filter cache),
/// within ``HNSWIndex/packedFilterBytesPerVector``.
final class PackedSignCodes: @unchecked Sendable {
    // @unchecked: the blocks are written once, in init, and only read after.

    /// The largest dimension packed: the kernel's 16-bit sums hold at most
    /// 240 for each two code bytes (`lodestone_kernels.h`).
    static let maximumDimension = 4_352

    /// A filter's matches are packed cluster by cluster (each cluster's
    /// codes from a block boundary) when the index is partitioned and they
    /// average at least this many a cluster: fewer would leave most of each
    /// cluster's last block empty.
    static let minimumMatchesPerCluster = 64

    /// Whether `matches` packed codes of an index partitioned into
    /// `clusters` are packed cluster by cluster.
    static func clustered(matches: Int, clusters: Int?) -> Bool {
        guard let clusters else { return false }
        return matches >= minimumMatchesPerCluster * clusters
    }

    /// The bytes of the blocks `matches` packed codes fill, for `dimension`
    /// components (one block at least), over `clusters` clusters when
    /// packed by cluster: at most a block more for each.
    static func blockBytes(matches: Int, dimension: Int, clusters: Int? = nil) -> Int {
        let blocks = clustered(matches: matches, clusters: clusters)
            ? (matches + 31) / 32 + clusters! : max(1, (matches + 31) / 32)
        return blocks * lodestone_sign_block_bytes(dimension)
    }

    /// The bytes `matches` packed codes take (at most, when packed by
    /// cluster): their blocks and node ids, and the clusters' runs and
    /// counts.
    static func byteCount(matches: Int, dimension: Int, clusters: Int? = nil) -> Int {
        guard clustered(matches: matches, clusters: clusters), let clusters else {
            return blockBytes(matches: matches, dimension: dimension) + matches * MemoryLayout<UInt32>.stride
        }
        return blockBytes(matches: matches, dimension: dimension, clusters: clusters)
            + (matches + 32 * clusters) * MemoryLayout<UInt32>.stride
            + (clusters + 1) * MemoryLayout<Int>.stride + clusters * MemoryLayout<UInt32>.stride
    }

    /// The packed nodes, in block order; when packed by cluster, each
    /// cluster's last block is filled out with ``HNSWIndex/noNode``.
    let nodes: [UInt32]
    /// The number of matches packed.
    let matches: Int
    /// When packed by cluster: where cluster c's codes start in ``nodes``
    /// (`runs[c]`, a multiple of 32) and end (`runs[c + 1]`, filled out).
    let runs: [Int]?
    /// When packed by cluster: each cluster's matches.
    let clusterMatches: [UInt32]
    let words: Int
    private let blockStride: Int
    private let blocks: UnsafeMutableRawPointer
    /// Bytes held (blocks, node ids, and the clusters' runs and counts).
    let byteCount: Int

    /// Packs the codes of `nodes` (each must have a code in `codes`, of at
    /// most ``maximumDimension`` components), cluster by cluster when
    /// ``clustered(matches:clusters:)``.
    init(nodes: [UInt32], codes: SignCodes) {
        precondition(codes.dimension <= PackedSignCodes.maximumDimension, "packed sign codes: dimension too large")
        matches = nodes.count
        words = codes.words
        blockStride = lodestone_sign_block_bytes(codes.dimension)
        let ordered: [UInt32]
        if let partition = codes.partition,
           PackedSignCodes.clustered(matches: nodes.count, clusters: partition.count) {
            var counts = [UInt32](repeating: 0, count: partition.count)
            for node in nodes { counts[partition.cluster(node)] += 1 }
            var starts = [Int](repeating: 0, count: partition.count + 1)
            for c in 0..<partition.count {
                let slots: Int = (Int(counts[c]) + 31) / 32 * 32
                starts[c + 1] = starts[c] + slots
            }
            var filled = [UInt32](repeating: HNSWIndex.noNode, count: starts[partition.count])
            var next = starts
            for node in nodes {
                let c = partition.cluster(node)
                filled[next[c]] = node
                next[c] += 1
            }
            ordered = filled
            runs = starts
            clusterMatches = counts
        } else {
            ordered = nodes
            runs = nil
            clusterMatches = []
        }
        self.nodes = ordered
        let blockCount = max(1, (ordered.count + 31) / 32)
        blocks = .allocate(byteCount: blockCount * blockStride, alignment: 64)
        byteCount = blockCount * blockStride + ordered.count * MemoryLayout<UInt32>.stride
            + (runs?.count ?? 0) * MemoryLayout<Int>.stride + clusterMatches.count * MemoryLayout<UInt32>.stride
        // A filled-out slot packs the code of the node before it (of its
        // cluster): a valid code, whose estimate the scan skips.
        withUnsafeTemporaryAllocation(of: UnsafeRawPointer?.self, capacity: max(ordered.count, 1)) { records in
            var last = ordered.first ?? 0
            for (i, node) in ordered.enumerated() {
                if node != HNSWIndex.noNode { last = node }
                records[i] = UnsafeRawPointer(codes.records.record(node == HNSWIndex.noNode ? last : node))
            }
            lodestone_sign_pack(records.baseAddress!, ordered.count, codes.dimension, blocks)
        }
    }

    deinit { blocks.deallocate() }

    /// A query's lookup tables for packed estimates.
    struct Tables: ~Copyable {
        let bytes: UnsafeMutablePointer<UInt8>
        init(_ query: borrowing SignCodes.Query, words: Int) {
            let count = 16 * words * 32
            let raw = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 64)
            bytes = raw.bindMemory(to: UInt8.self, capacity: count)
            lodestone_sign_tables(query.planes, words, bytes)
        }
        deinit { bytes.deallocate() }
    }

    /// Rank-value estimates of the `count` packed nodes from `start` (a
    /// multiple of 32), in ``nodes``' order, into `out`; bit j of `below[b]`
    /// is set when estimate 32b + j is at most `bound`.
    func estimate(_ query: borrowing SignCodes.Query, tables: borrowing Tables, from start: Int, count: Int,
                  bound: Float, into out: UnsafeMutablePointer<Float>, below: UnsafeMutablePointer<UInt32>) {
        precondition(start % 32 == 0 && start + count <= nodes.count, "packed estimates start on a block")
        guard count > 0 else { return }
        let first = blocks + start / 32 * blockStride
        withUnsafePointer(to: query.parameters) { p in
            lodestone_sign_block_estimates(tables.bytes, words, p, first, count, bound, out, below)
        }
    }
}
