import CLodestoneKernels
import Synchronization

/// Per node, its layer-0 neighbours' 1-bit codes, taken against the node
/// itself and laid out for one 4-bit lookup pass per 32 neighbours, and the
/// node's own 8-bit code: the quantized graph walk
/// (``HNSWParameters/Traversal/quantized``) estimates every neighbour of the
/// node it expands from these, takes the node's rank value from its 8-bit
/// code, and so reads one block per expansion and float32 vectors only to
/// re-rank its finalists (SymphonyQG's scheme, Gou et al. 2024, on HNSW's
/// own dynamic graph). The block layout is in `lodestone_kernels.h`.
///
/// A block mirrors its node's layer-0 link list: every write to a list is
/// followed by ``refresh(_:links:vector:)`` under the same node lock, which
/// re-encodes only the slots whose neighbour changed. Readers use blocks
/// without a lock; a slot being re-encoded may give one poor estimate (ids
/// are stored atomically, so a walk never reads a bad id).
final class NeighbourCodes: @unchecked Sendable {
    // @unchecked: blocks follow the arena's publication protocol and the
    // graph's node locks, as links do.

    let dimension: Int
    /// Link slots per node (layer 0's capacity).
    let slots: Int
    /// Estimates per block (slots rounded up to whole batches of 32).
    let estimates: Int
    /// Bytes of a query's lookup table.
    let tableBytes: Int
    let euclidean: Bool
    let blocks: NodeArena
    /// Set (release) once every node below the node count has its block.
    let ready = Atomic<Bool>(false)
    /// Whether the segment deltas are written against holds every block
    /// (so a delta can carry the blocks changed since); the writer's lock.
    var inBase = false
    /// Whether the last whole-segment persist wrote the blocks (becomes
    /// ``inBase`` when the owner makes that segment the base); the writer's lock.
    var inLastPersist = false

    init(dimension: Int, slots: Int, metric: Metric) {
        self.dimension = dimension
        self.slots = slots
        estimates = lodestone_qg_batches(slots) * 32
        tableBytes = lodestone_qg_groups(dimension) * 16
        euclidean = metric == .euclidean
        blocks = NodeArena(stride: lodestone_qg_block_bytes(dimension, slots), fill: 0)
    }

    /// Whether every node has its block (acquire: the blocks are then visible).
    var isReady: Bool { ready.load(ordering: .acquiring) }

    /// Bytes allocated for blocks.
    var allocatedBytes: Int { blocks.allocatedBytes }

    /// Empties node `id`'s block and writes its own code from its vector
    /// `vector` (a new node, before it is linked).
    func reset(_ id: UInt32, vector: UnsafePointer<Float>) {
        blocks.reserve(Int(id) + 1)
        blocks.markDirty(id)
        lodestone_qg_clear_block(blocks.record(id), dimension, slots)
        lodestone_qg_encode_node(blocks.record(id), dimension, slots, vector)
    }

    /// The rank value for query `q` of the node whose block is `block`, from
    /// the node's 8-bit code (`qq` = |q|², read with the euclidean metric).
    @inline(__always) func nodeRank(_ block: UnsafeRawPointer, _ q: UnsafePointer<Float>, qq: Float) -> Float {
        lodestone_qg_node_rank(block, dimension, slots, q, qq, euclidean ? 1 : 0)
    }

    /// Brings node `id`'s block in line with its link list `links` (`slots`
    /// ids, unused ones `UInt32.max`): a block holds the same neighbours as
    /// the list, in any order, so only neighbours that joined are encoded
    /// (into slots whose neighbour left). The caller holds the node's lock
    /// (or the writer's lock with no concurrent linking).
    func refresh(_ id: UInt32, links: UnsafePointer<UInt32>, vector: (UInt32) -> UnsafePointer<Float>) {
        let block = blocks.record(id)
        let ids = block.assumingMemoryBound(to: UInt32.self)
        let n = slots
        blocks.markDirty(id)
        // Empty the slots whose neighbour left the list.
        for j in 0..<n {
            let held = lodestone_load_u32(ids + j)
            if held == HNSWIndex.noNode { continue }
            var kept = false
            for i in 0..<n {
                let nb = lodestone_load_u32(links + i)
                if nb == HNSWIndex.noNode { break }
                if nb == held { kept = true; break }
            }
            if !kept { lodestone_qg_clear(block, dimension, n, j) }
        }
        // Encode the neighbours the block lacks into empty slots.
        var free = 0
        let center = vector(id)
        for i in 0..<n {
            let nb = lodestone_load_u32(links + i)
            if nb == HNSWIndex.noNode { break }
            var present = false
            for j in 0..<n where lodestone_load_u32(ids + j) == nb { present = true; break }
            if present { continue }
            while free < n && lodestone_load_u32(ids + free) != HNSWIndex.noNode { free += 1 }
            guard free < n else { return }  // unreachable: a list holds at most `slots` ids
            lodestone_qg_encode(block, dimension, n, free, nb, vector(nb), center, euclidean ? 1 : 0)
        }
    }

    /// Writes the blocks of nodes `0..<count` from their link lists (the
    /// writer's lock held, blocks not ready), on `threads` threads.
    func build(count: Int, links: (UInt32) -> UnsafePointer<UInt32>, vector: (UInt32) -> UnsafePointer<Float>,
               threads: Int) {
        blocks.reserve(count)
        let block = 1_024
        parallelFor(count: count, threads: min(threads, max(1, count / block)), grain: block) { run in
            for id in run {
                blocks.markDirty(UInt32(id))
                lodestone_qg_clear_block(blocks.record(UInt32(id)), dimension, slots)
                lodestone_qg_encode_node(blocks.record(UInt32(id)), dimension, slots, vector(UInt32(id)))
                refresh(UInt32(id), links: links(UInt32(id)), vector: vector)
            }
        }
        ready.store(true, ordering: .releasing)
    }

    /// Builds `q`'s lookup table into `table` (``tableBytes`` bytes).
    func prepare(_ q: UnsafePointer<Float>, table: UnsafeMutablePointer<UInt8>) -> lodestone_qg_query {
        var query = lodestone_qg_query()
        lodestone_qg_prepare(q, dimension, table, &query)
        return query
    }
}
