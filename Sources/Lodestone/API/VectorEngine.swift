/// Which vector index an ``Index`` keeps its vectors in.
public enum IndexKind: String, Sendable, Codable, CaseIterable {
    /// An HNSW graph: approximate, fast at any size.
    case hnsw
    /// A flat index: exact; batches of queries go through BLAS.
    case flat
    /// Sparse vectors only (Pinecone's `vector_type: sparse`): records carry
    /// ``Record/sparseValues`` and no dense values, and queries are sparse.
    /// Its records keep a one-component placeholder vector in a flat
    /// engine, so the record table, log, segments and recovery are the
    /// dense indexes' own.
    case sparse
}

/// The vector index behind an ``Index``: one interface over ``HNSWIndex``
/// and ``FlatIndex``, keyed by the record table's slots.
///
/// Not thread-safe on its own: its owner holds a read lock around reads and
/// a write lock around writes (the HNSW graph would allow concurrent
/// readers during writes; the flat index, a value, would not).
final class VectorEngine: @unchecked Sendable {
    // @unchecked: guarded by the owning Index's ReadWriteLock.
    let hnsw: HNSWIndex?
    var flat: FlatIndex?
    /// Whether the graph's node numbering is its current segment's on disk,
    /// so a delta can describe the changes since (see ``changedBytes()``):
    /// true once opened from a segment or after writing one without
    /// renumbering; a flat engine writes no deltas.
    private(set) var deltaReady = false

    init(hnsw: HNSWIndex) {
        self.hnsw = hnsw
        self.flat = nil
    }

    init(flat: FlatIndex) {
        self.hnsw = nil
        self.flat = flat
    }

    /// A new empty engine.
    static func create(kind: IndexKind, dimension: Int, metric: Metric, parameters: HNSWParameters,
                       embeddingModel: String) throws(LodestoneError) -> VectorEngine {
        switch kind {
        case .hnsw:
            return VectorEngine(hnsw: try HNSWIndex(dimension: dimension, metric: metric, parameters: parameters,
                                                    embeddingModel: embeddingModel))
        case .flat, .sparse:
            return VectorEngine(flat: try FlatIndex(dimension: dimension, metric: metric))
        }
    }

    /// Opens a persisted engine; returns it and its mapped segment (which
    /// holds the owner's sections too).
    static func open(kind: IndexKind, path: String, delta: MappedSegment? = nil) throws(LodestoneError) -> (VectorEngine, MappedSegment) {
        switch kind {
        case .hnsw:
            let index = try HNSWIndex.open(path: path, delta: delta)
            let engine = VectorEngine(hnsw: index)
            engine.deltaReady = true
            return (engine, index.segment!)
        case .flat, .sparse:
            if let delta {
                throw .corruptSegment(path: delta.path, section: "header", reason: "a flat index has no deltas")
            }
            let segment = try MappedSegment(path: path, lazy: false)
            return (VectorEngine(flat: try FlatIndex.open(segment: segment)), segment)
        }
    }

    var count: Int { hnsw?.count ?? flat!.count }
    var metric: Metric { hnsw?.metric ?? flat!.metric }
    var kernels: DistanceKernels { hnsw?.kernels ?? flat!.kernels }
    var memoryBytes: Int { hnsw?.memoryBytes ?? flat!.memoryBytes }
    /// Bytes per vector searches read (a flat index scans its vectors, norms and keys).
    var residentBytesPerVector: Int {
        hnsw?.residentBytesPerVector ?? (flat!.dimension + 1) * MemoryLayout<Float>.size + MemoryLayout<UInt64>.size
    }

    /// Stores `rows` (row-major, validated) under `keys`, replacing vectors
    /// already stored under a key.
    func upsert(_ rows: [Float], keys: [UInt64], threads: Int) throws(LodestoneError) {
        if var graph = hnsw {
            try graph.storeBatch(rows, keys: keys, threads: threads)
        } else {
            try flat!.storeBatch(rows, keys: keys, threads: threads)
        }
    }

    /// Removes the vector under `key`, if any.
    func remove(key: UInt64) {
        if let hnsw { _ = hnsw.remove(key: key) } else { _ = flat!.remove(key: key) }
    }

    /// The stored vector of `key` (unit length under cosine).
    func vector(forKey key: UInt64) -> [Float]? {
        if let hnsw { return hnsw.vector(forKey: key) }
        return flat!.vector(forKey: key)
    }

    /// The dot product of a prepared query with the stored vectors under
    /// `keys` (unit vectors under cosine: the cosine similarity).
    func dots(_ query: [Float], keys: [UInt64]) -> [Float] {
        if let hnsw { return hnsw.dots(query, keys: keys) }
        return flat!.dots(query, keys: keys)
    }

    /// Throws the damage a lazily verified segment chunk showed when it was
    /// first read (a read that met it got fill bytes, not data).
    func checkIntegrity() throws(LodestoneError) {
        if let failure = hnsw?.corruption() { throw failure }
    }

    /// The `k` best keys among `allowed` (all when nil), with statistics.
    func search(_ query: [Float], k: Int, ef: Int?, allowed: Bitset?, matches: Int?)
        throws(LodestoneError) -> (results: [Neighbor], statistics: SearchStatistics)
    {
        if let hnsw { return try hnsw.search(query, k: k, ef: ef, allowedKeys: allowed, matchCount: matches) }
        return try flat!.search(query, k: k, allowedKeys: allowed, matchCount: matches)
    }

    /// Unfiltered searches of many queries (row-major): BLAS for a flat
    /// index, parallel graph searches for HNSW.
    func search(batch queries: [Float], k: Int, ef: Int?, threads: Int) throws(LodestoneError) -> [[Neighbor]] {
        if let hnsw { return try hnsw.search(batch: queries, k: k, ef: ef, threads: threads) }
        return try flat!.search(batch: queries, k: k, threads: threads)
    }

    /// Filtered searches of many queries (row-major) as one batch: on a
    /// flat index, BLAS over the matching rows; on a graph, the planner per
    /// query, except that a filter narrow enough for its exact scan runs it
    /// once for the batch (BLAS over the gathered matches).
    func search(batch queries: [Float], k: Int, ef: Int?, allowed: Bitset, matches: Int, threads: Int)
        throws(LodestoneError) -> [[Neighbor]]
    {
        if let hnsw {
            return try hnsw.search(batch: queries, k: k, ef: ef, allowedKeys: allowed, matchCount: matches, threads: threads)
        }
        return try flat!.search(batch: queries, k: k, allowedKeys: allowed, matchCount: matches, threads: threads)
    }

    /// Writes the engine and the owner's `extraSections` to a segment.
    /// A graph is compacted (removed nodes dropped, the rest renumbered in
    /// the file) once removed nodes are a fifth of its nodes (and at least
    /// ``compactionMinimum``); below that the
    /// file keeps the numbering (removed nodes listed for reuse), so deltas
    /// can follow it. Returns whether the file renumbered the nodes; pass
    /// that to ``segmentCommitted(renumbered:)`` once the segment is current.
    func persist(to path: String, embeddingModel: String, extraSections: [PendingSection]) throws(LodestoneError) -> Bool {
        if let hnsw {
            let compact = Self.compactionDue(hnsw)
            try hnsw.persist(to: path, compact: compact, extraSections: extraSections)
            writtenSegment = path
            return compact
        }
        try flat!.persist(to: path, embeddingModel: embeddingModel, extraSections: extraSections)
        return false
    }

    /// The segment written by ``persist(to:embeddingModel:extraSections:)``
    /// is now the current one (the caller holds the writer lock): later
    /// deltas describe changes against it, unless it renumbered the nodes.
    func segmentCommitted(renumbered: Bool) {
        guard let hnsw else { return }
        if !renumbered {
            hnsw.clearChanges()
            if let writtenSegment { hnsw.mapSpilledVectors(fromSegment: writtenSegment) }
        }
        writtenSegment = nil
        deltaReady = !renumbered
    }

    /// The segment the last ``persist(to:embeddingModel:extraSections:)``
    /// wrote (writer lock held), until it is committed.
    private var writtenSegment: String? = nil

    /// Removed nodes below which a graph is never compacted (renumbering a
    /// small graph saves nothing worth a rewrite).
    static let compactionMinimum = 1_024

    /// Whether a persist should compact the graph: removed nodes are a
    /// fifth of its nodes, and at least ``compactionMinimum``.
    private static func compactionDue(_ hnsw: HNSWIndex) -> Bool {
        let removed = hnsw.removedSlots
        return removed >= compactionMinimum && removed * 5 >= hnsw.nodeCount.load(ordering: .acquiring)
    }

    /// Bytes a delta of the changes since the current segment would take,
    /// or nil when this engine cannot write one now (a flat engine, a
    /// numbering that is not the segment's, or a compaction due).
    func changedBytes() -> Int? {
        guard deltaReady, let hnsw, !Self.compactionDue(hnsw) else { return nil }
        return hnsw.changedBytes()
    }

    /// Writes the changes since the current segment, and the owner's
    /// `extraSections`, as a delta file (after ``changedBytes()`` said it can).
    func persistDelta(to path: String, extraSections: [PendingSection]) throws(LodestoneError) {
        try hnsw!.persistDelta(to: path, extraSections: extraSections)
    }
}
