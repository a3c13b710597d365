import CLodestoneKernels
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An approximate nearest-neighbour index: a hierarchical navigable small
/// world graph (Malkov & Yashunin) over Float32 vectors stored under
/// `UInt64` keys.
///
/// Layout, built for the cache (see `HNSW/FORMAT` notes in each file):
/// - vectors in one arena of 64-byte-aligned records addressed by node id;
/// - layer-0 links in a flat arena of fixed slots (`2·m` ids, unused slots
///   hold `UInt32.max`); upper-layer links only for the nodes that have them;
/// - searches reuse generation-stamped visited marks and candidate buffers
///   from a lock-free scratch pool, so a query allocates nothing in steady
///   state.
///
/// Concurrency: any number of threads may search while one thread adds
/// (writers are serialised by an internal lock; readers never take it).
/// Links are read and written with acquire/release atomics and per-node
/// spin locks guard link updates, so a search always sees valid node ids.
/// `add(contentsOf:keys:threads:)` inserts on several threads at once.
public final class HNSWIndex: @unchecked Sendable {
    // @unchecked: shared state is atomics, arenas whose records follow the
    // publication protocol described above, and the writer's lock.

    /// Components per vector.
    public let dimension: Int
    /// How vectors are compared.
    public let metric: Metric
    /// Graph parameters.
    public let parameters: HNSWParameters
    /// The name of the embedding model the vectors come from ("" if unset);
    /// recorded in persisted segments.
    public let embeddingModel: String
    /// The segment this index was opened from, whose mapping holds records
    /// used in place (nil for an index built in memory).
    var segment: MappedSegment?
    let kernels: DistanceKernels
    let m: Int
    let m0: Int
    let levelMultiplier: Double

    let vectors: NodeArena
    let links0: NodeArena
    let upperLinks: NodeArena
    let keyRecords: NodeArena
    let levelRecords: NodeArena
    let upperStart: NodeArena
    let states: NodeArena
    /// Sign codes of the vectors, for the `quantized-scan` plan (built on
    /// first need; see ``SignCodes``).
    let signCodes: SignCodes
    /// Every node's block of its neighbours' codes and its own 8-bit code,
    /// for the quantized traversal (nil with the exact one; see ``NeighbourCodes``).
    let neighbourCodes: NeighbourCodes?
    /// Every node's 4-bit code, for the compact traversal (nil with the
    /// others; see ``CompactCodes``).
    let compactCodes: CompactCodes?

    static let noNode = UInt32.max
    static let lockStripes = 1 << 12
    let nodeLocks: UnsafeMutablePointer<UInt8>

    /// (top level + 1) << 32 | entry node; 0 while the graph is empty.
    let entry = Atomic<UInt64>(0)
    /// Node ids below this may be reached by a search.
    let nodeCount = Atomic<Int>(0)
    let liveCount = Atomic<Int>(0)
    /// Nodes linked into the graph by this instance (tests check that opening
    /// a segment links none).
    let linkedNodes = Atomic<Int>(0)
    /// Deleted nodes, linked (tombstones) or not (free slots).
    let deadCount = Atomic<Int>(0)
    let scratchPool: ScratchPool

    struct WriterState {
        var keys = KeyTable()
        var upperBlocks = 0
        var insertions: UInt64 = 0
        /// Deleted nodes still linked into the graph (navigable, never returned).
        var tombstones: [UInt32] = []
        /// Unlinked nodes and the epoch after which no search can reach them.
        var free: [(node: UInt32, epoch: UInt64)] = []
        /// Runs of upper-layer link blocks given back by freed nodes, by length.
        var freeUpperRuns: [Int: [UInt32]] = [:]
        /// False after opening a segment until the key table is built from
        /// its keys section (on the first operation that needs it).
        var keysBuilt = true
        /// The nodes of the last few filters queries ran with, most recent
        /// first (see ``allowedNodes(for:)``).
        var filterNodes: [FilterNodes] = []
    }

    /// Set once a mapped chunk fails verification; searches then throw.
    let corrupted = Atomic<Bool>(false)
    /// Queries left that ask the kernel for all their finalists' vectors
    /// before reading the first (a system call each), so that reads from
    /// disk overlap: re-armed to ``readAheadSpan`` by every re-rank that
    /// waited for the disk, counted down by those that did not.
    let readAheadQueries = Atomic<Int>(0)
    static let readAheadSpan = 1_000
    private let corruptionError = Locked<LodestoneError?>(nil)

    func recordCorruption(_ error: LodestoneError) {
        corruptionError.withLock { if $0 == nil { $0 = error } }
        corrupted.store(true, ordering: .releasing)
    }

    /// The first verification failure seen, if any.
    func corruption() -> LodestoneError? {
        corrupted.load(ordering: .acquiring) ? corruptionError.withLock { $0 } : nil
    }

    /// Builds the key table from the key records of live nodes, after an open.
    func ensureKeys(_ w: inout WriterState) {
        guard !w.keysBuilt else { return }
        w.keysBuilt = true
        for id in 0..<UInt32(nodeCount.load(ordering: .acquiring)) where state(id) == .live {
            let k = key(id)
            if w.keys.node(forKey: k, keyOf: self.key) != nil {
                recordCorruption(.corruptSegment(path: segment?.path ?? "", section: "keys", reason: "key \(k) is stored twice"))
                continue
            }
            w.keys.insert(key: k, node: id, keyOf: self.key)
        }
    }
    let writer = Locked(WriterState())

    /// Node states.
    enum State: UInt8 { case unused = 0, live = 1, deleted = 2 }

    /// Creates an empty index.
    public init(dimension: Int, metric: Metric, parameters: HNSWParameters = HNSWParameters(),
                embeddingModel: String = "", kernels: DistanceKernels = .active) throws(LodestoneError) {
        guard dimension > 0 else {
            throw .invalidArgument(name: "dimension", reason: "must be at least 1, got \(dimension)")
        }
        try parameters.validate()
        self.dimension = dimension
        self.metric = metric
        self.parameters = parameters
        self.embeddingModel = embeddingModel
        self.kernels = kernels
        m = parameters.m
        m0 = 2 * parameters.m
        levelMultiplier = 1 / log(Double(parameters.m))
        vectors = NodeArena(stride: ((dimension + 15) & ~15) * MemoryLayout<Float>.size)
        links0 = NodeArena(stride: m0 * 4, fill: 0xFF)
        upperLinks = NodeArena(stride: m * 4, fill: 0xFF)
        keyRecords = NodeArena(stride: 8)
        levelRecords = NodeArena(stride: 1)
        upperStart = NodeArena(stride: 4)
        states = NodeArena(stride: 1)
        signCodes = SignCodes(dimension: dimension)
        if parameters.traversal == .quantized {
            neighbourCodes = NeighbourCodes(dimension: dimension, slots: 2 * parameters.m, metric: metric)
            neighbourCodes!.ready.store(true, ordering: .releasing)  // no nodes yet: every block exists
        } else {
            neighbourCodes = nil
        }
        // Ready once the first rows fix the center (see prepareCompactCodesLocked).
        compactCodes = parameters.traversal == .compact ? CompactCodes(dimension: dimension, metric: metric) : nil
        nodeLocks = .allocate(capacity: HNSWIndex.lockStripes)
        nodeLocks.initialize(repeating: 0, count: HNSWIndex.lockStripes)
        scratchPool = ScratchPool(maxNeighbours: max(m0, m))
    }

    deinit { nodeLocks.deallocate() }

    // MARK: Record access

    @inline(__always) func vector(_ id: UInt32) -> UnsafeMutablePointer<Float> {
        vectors.record(id).assumingMemoryBound(to: Float.self)
    }

    @inline(__always) func key(_ id: UInt32) -> UInt64 {
        keyRecords.record(id).load(as: UInt64.self)
    }

    /// A search's result for the node in `candidate`: its key and score.
    @inline(__always) func neighbor(_ candidate: Candidate) -> Neighbor {
        Neighbor(key: key(UInt32(candidate.id)), score: metric.score(rankValue: candidate.distance))
    }

    @inline(__always) func level(_ id: UInt32) -> Int {
        Int(lodestone_load_u8(levelRecords.record(id).assumingMemoryBound(to: UInt8.self)))
    }

    @inline(__always) func state(_ id: UInt32) -> State {
        State(rawValue: lodestone_load_u8(states.record(id).assumingMemoryBound(to: UInt8.self))) ?? .unused
    }

    @inline(__always) func setState(_ id: UInt32, _ s: State) {
        states.markDirty(id)
        lodestone_store_u8(states.record(id).assumingMemoryBound(to: UInt8.self), s.rawValue)
    }

    /// The link slots of `id` on `layer` (which must be ≤ its level).
    @inline(__always) func links(_ id: UInt32, layer: Int) -> UnsafeMutablePointer<UInt32> {
        if layer == 0 { return links0.record(id).assumingMemoryBound(to: UInt32.self) }
        let first = upperStart.record(id).load(as: UInt32.self)
        return upperLinks.record(first + UInt32(layer - 1)).assumingMemoryBound(to: UInt32.self)
    }

    /// Notes that `id`'s links on `layer` are about to change (see
    /// ``NodeArena/markDirty(_:)``): every write to a link list calls it.
    @inline(__always) func markLinksDirty(_ id: UInt32, layer: Int) {
        if layer == 0 { links0.markDirty(id); return }
        upperLinks.markDirty(upperStart.record(id).load(as: UInt32.self) + UInt32(layer - 1))
    }

    @inline(__always) func linkCapacity(layer: Int) -> Int { layer == 0 ? m0 : m }

    @inline(__always) func lock(_ id: UInt32) {
        lodestone_spin_lock(nodeLocks + Int(id & UInt32(HNSWIndex.lockStripes - 1)))
    }

    @inline(__always) func unlock(_ id: UInt32) {
        lodestone_spin_unlock(nodeLocks + Int(id & UInt32(HNSWIndex.lockStripes - 1)))
    }

    @inline(__always) func rank(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) -> Float {
        kernels.rankValue(metric, a, b, dimension)
    }

    // MARK: Public facts

    /// The number of live vectors.
    public var count: Int { liveCount.load(ordering: .acquiring) }

    /// Whether the index holds no live vectors.
    public var isEmpty: Bool { count == 0 }

    /// Bytes allocated for vectors, links, keys and bookkeeping (vectors a
    /// compact index keeps in its scratch file not included).
    public var memoryBytes: Int {
        let arenas = [vectors, links0, upperLinks, keyRecords, levelRecords, upperStart, states]
        return arenas.reduce(0) { $0 + $1.allocatedBytes } + writer.withLock { $0.keys.allocatedBytes }
            + (neighbourCodes?.allocatedBytes ?? 0) + (compactCodes?.allocatedBytes ?? 0)
            + HNSWIndex.lockStripes
    }

    /// Bytes per node that searches read: what should stay in memory for
    /// them to run at full speed. Links, keys, states, levels, the upper
    /// layers (their average share), the walk's codes, and the float32
    /// vector, except with the compact traversal, which reads a vector only
    /// to re-rank it (and keeps a 4-byte checksum per vector instead).
    public var residentBytesPerVector: Int {
        let n = max(nodeCount.load(ordering: .acquiring), 1)
        let blocks = writer.withLock { $0.upperBlocks }
        var bytes = links0.stride + keyRecords.stride + states.stride + levelRecords.stride + upperStart.stride
            + (blocks * upperLinks.stride + n - 1) / n
        if let codes = compactCodes { bytes += codes.records.stride + 4 } else { bytes += vectors.stride }
        if let codes = neighbourCodes { bytes += codes.blocks.stride }
        return bytes
    }

    // MARK: Vectors on disk

    /// With the compact traversal, keeps the float32 vectors of the nodes
    /// added from now on in an unnamed scratch file in `directory` rather
    /// than in memory, and releases their pages after each batch: such an
    /// index ranks on codes and reads a vector only to re-rank a finalist,
    /// to link its own new node, or to persist. So a large build holds its
    /// codes and links, not its vectors. Returns whether it does (no for
    /// other traversals, or when no scratch file can be made there).
    @discardableResult
    func spillVectors(inDirectory directory: String) -> Bool {
        guard parameters.traversal == .compact, let file = SpillFile.create(inDirectory: directory) else { return false }
        writer.withLock { _ in vectors.spillNewChunks(to: file) }
        return true
    }

    /// Once a segment this index wrote with its numbering is current: the
    /// vectors kept in the scratch file are mapped from that segment instead
    /// (``NodeArena/remapWholeChunks(fromSegment:offset:records:)``), so the
    /// scratch file's disk holds only vectors that no segment does yet, and
    /// an earlier segment's file is let go. Best effort: what cannot be
    /// mapped stays in the scratch file. Returns the chunks remapped.
    @discardableResult
    func mapSpilledVectors(fromSegment path: String) -> Int {
        guard vectors.spillsNewChunks,
              let entry = try? MappedSegment.sectionEntries(path: path).first(where: { $0.kind == SectionKind.vectors }),
              entry.codec == .raw, entry.stride == vectors.stride else { return 0 }
        let fd = SystemCalls.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { _ = SystemCalls.close(fd) }
        return writer.withLock { _ in vectors.remapWholeChunks(fromSegment: fd, offset: entry.offset, records: entry.count) }
    }

    /// Whether new vectors go to a scratch file (``spillVectors(inDirectory:)``).
    var spillsVectors: Bool { vectors.spillsNewChunks }

    /// Whether a live vector is stored under `key`.
    public func contains(key: UInt64) -> Bool { node(forKey: key) != nil }

    /// The stored vector of `key` (unit length under cosine), or nil.
    public func vector(forKey key: UInt64) -> [Float]? {
        // Copied under the writer lock: once the lock is released the node
        // could be removed and its slot reused.
        writer.withLock { w in
            ensureKeys(&w)
            return w.keys.node(forKey: key) { self.key($0) }.map { Array(UnsafeBufferPointer(start: vector($0), count: dimension)) }
        }
    }

    /// The dot product of `query` with each stored vector under `keys` (0
    /// where a key is absent), under one hold of the writer lock, with no
    /// copy of the vectors.
    func dots(_ query: [Float], keys: [UInt64]) -> [Float] {
        writer.withLock { w in
            ensureKeys(&w)
            // Every vector is requested before the first is read (each is a
            // run of likely cache misses).
            let nodes = keys.map { key in w.keys.node(forKey: key) { self.key($0) } }
            for case let node? in nodes { lodestone_prefetch_bytes_l2(vector(node), dimension * 4) }
            return query.withUnsafeBufferPointer { q in
                nodes.map { node in node.map { kernels.dot(q.baseAddress!, vector($0), dimension) } ?? 0 }
            }
        }
    }

    func node(forKey key: UInt64) -> UInt32? {
        writer.withLock { w in
            ensureKeys(&w)
            return w.keys.node(forKey: key) { self.key($0) }
        }
    }

    /// The level of a new node: ⌊−ln(U)·mL⌋ with U drawn from the seed and
    /// the insertion ordinal, so levels do not depend on thread timing.
    func drawLevel(ordinal: UInt64) -> Int {
        let z = SplitMix64.mix(parameters.seed &+ ordinal &* SplitMix64.gamma)
        let u = (Double(z >> 11) + 1) / Double(1 << 53)  // (0, 1]
        return min(Int(-log(u) * levelMultiplier), 30)
    }
}
