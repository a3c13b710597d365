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

    /// The bytes of the blocks `matches` packed codes fill, for `dimension`
    /// components (one block at least).
    static func blockBytes(matches: Int, dimension: Int) -> Int {
        max(1, (matches + 31) / 32) * lodestone_sign_block_bytes(dimension)
    }

    /// The bytes `matches` packed codes take: their blocks and node ids.
    static func byteCount(matches: Int, dimension: Int) -> Int {
        blockBytes(matches: matches, dimension: dimension) + matches * MemoryLayout<UInt32>.stride
    }

    /// The packed nodes, in block order.
    let nodes: [UInt32]
    let words: Int
    private let blockStride: Int
    private let blocks: UnsafeMutableRawPointer
    /// Bytes held (blocks and node ids).
    let byteCount: Int

    /// Packs the codes of `nodes` (each must have a code in `codes`, of at
    /// most ``maximumDimension`` components).
    init(nodes: [UInt32], codes: SignCodes) {
        precondition(codes.dimension <= PackedSignCodes.maximumDimension, "packed sign codes: dimension too large")
        self.nodes = nodes
        words = codes.words
        blockStride = lodestone_sign_block_bytes(codes.dimension)
        blocks = .allocate(byteCount: PackedSignCodes.blockBytes(matches: nodes.count, dimension: codes.dimension),
                           alignment: 64)
        byteCount = PackedSignCodes.byteCount(matches: nodes.count, dimension: codes.dimension)
        withUnsafeTemporaryAllocation(of: UnsafeRawPointer?.self, capacity: max(nodes.count, 1)) { records in
            for (i, node) in nodes.enumerated() { records[i] = UnsafeRawPointer(codes.records.record(node)) }
            lodestone_sign_pack(records.baseAddress!, nodes.count, codes.dimension, blocks)
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
