import Synchronization

/// An HNSW index kept in a directory and durable across crashes.
///
/// The directory holds a `MANIFEST` naming the current segment (the last
/// persisted index, opened by `mmap`) and the write-ahead log of every
/// upsert and removal since. A write is validated, appended to the log
/// (`fdatasync`ed with the default ``Durability/synchronous``), then applied
/// to the in-memory index that searches see at once; when the call returns
/// it survives a crash. ``persist()`` writes a new segment, switches the
/// manifest to it atomically and starts an empty log. Opening replays the
/// log over the segment; a record torn by a crash is dropped, never
/// half-applied.
///
/// Writers are serialised; searches go straight to ``index`` and never wait
/// for them.
public final class DurableIndex: Sendable {
    /// The directory.
    public var directory: String { store.directory }
    /// The index searches run on (it includes every acknowledged write).
    public let index: HNSWIndex
    /// Log records replayed when this instance opened.
    public var replayedRecords: Int { store.replayedRecords }
    /// Bytes of a torn last log record dropped when this instance opened.
    public var droppedTailBytes: Int { store.droppedTailBytes }

    private let store: DurableStore

    private init(store: DurableStore, index: HNSWIndex) {
        self.store = store
        self.index = index
    }

    // MARK: Creating and opening

    /// Creates an empty durable index in `directory` (made if missing; it
    /// must not already hold an index).
    public static func create(directory: String, dimension: Int, metric: Metric,
                              parameters: HNSWParameters = HNSWParameters(), embeddingModel: String = "",
                              durability: Durability = .synchronous) throws(LodestoneError) -> DurableIndex {
        let index = try HNSWIndex(dimension: dimension, metric: metric, parameters: parameters, embeddingModel: embeddingModel)
        let store = try DurableStore.create(directory: directory, settings: encodeSettings(index), durability: durability)
        index.spillVectors(inDirectory: directory)
        return DurableIndex(store: store, index: index)
    }

    /// Opens the durable index in `directory`: maps its segment, replays its
    /// log, drops a torn last record, and removes files a crash left behind.
    public static func open(directory: String, durability: Durability = .synchronous) throws(LodestoneError) -> DurableIndex {
        let (store, index) = try DurableStore.open(
            directory: directory, durability: durability,
            load: { (manifest: Manifest) throws(LodestoneError) -> HNSWIndex in
                let settings = try decodeSettings(manifest.settings, path: directory + "/" + Manifest.fileName)
                if manifest.segment.isEmpty {
                    let index = try HNSWIndex(dimension: settings.dimension, metric: settings.metric,
                                              parameters: settings.parameters, embeddingModel: settings.model)
                    index.spillVectors(inDirectory: directory)
                    return index
                }
                let delta = manifest.delta.isEmpty ? nil : try MappedSegment(path: directory + "/" + manifest.delta)
                let index = try HNSWIndex.open(path: directory + "/" + manifest.segment, delta: delta)
                guard index.dimension == settings.dimension && index.metric == settings.metric else {
                    throw .corruptSegment(path: directory + "/" + manifest.segment, section: "parameters",
                                          reason: "does not match the manifest's dimension and metric")
                }
                index.spillVectors(inDirectory: directory)  // before the log is replayed
                return index
            },
            replay: { (index: HNSWIndex, record: [UInt8]) throws(LodestoneError) in try apply(record, to: index) })
        return DurableIndex(store: store, index: index)
    }

    // MARK: Writing

    /// Adds or replaces vectors (row-major) under `keys`. Validated first as
    /// a whole (nothing is logged or applied on error), then logged, then
    /// applied.
    public func upsert(_ vectors: [Float], keys: [UInt64], threads: Int = 1) throws(LodestoneError) {
        let d = index.dimension
        guard vectors.count == keys.count * d else {
            throw .dimensionMismatch(expected: d, actual: keys.isEmpty ? vectors.count : vectors.count / keys.count)
        }
        var seen = Set<UInt64>()
        for key in keys where !seen.insert(key).inserted { throw .duplicateKey(key) }
        _ = try VectorPreparation.prepareRows(vectors, count: keys.count, dimension: d, metric: index.metric, kernels: index.kernels)
        try recoverIfNeeded()
        try store.append(LogRecord.keyedUpsert(keys: keys, rows: vectors).encoded(dimension: index.dimension)) { () throws(LodestoneError) in
            try DurableIndex.applyUpsert(vectors, keys: keys, to: index, threads: threads)
        }
    }

    /// Removes the vectors stored under `keys`; returns how many were there.
    @discardableResult
    public func remove(keys: [UInt64]) throws(LodestoneError) -> Int {
        try recoverIfNeeded()
        return try store.append(LogRecord.keyedRemove(keys: keys).encoded(dimension: index.dimension)) { () throws(LodestoneError) -> Int in
            keys.reduce(0) { $0 + (index.remove(key: $1) ? 1 : 0) }
        }
    }

    /// If a failed sync left the log unusable, recovers by persisting (a new
    /// segment from memory, a new log) before the next write.
    private func recoverIfNeeded() throws(LodestoneError) {
        if store.needsRecovery { try persist() }
    }

    /// Writes the index as a new segment (compacted: removed rows dropped,
    /// links remapped), points the manifest at it and at a new empty log,
    /// then deletes the old segment and log. A crash at any point leaves
    /// either the old state or the new one. Searches running meanwhile keep
    /// using the index they started on.
    public func persist() throws(LodestoneError) {
        try store.persist { (path: String) throws(LodestoneError) in try index.persist(to: path, compact: true) }
    }

    /// The current manifest generation (1 for a new index, +1 per persist).
    public var generation: UInt64 { store.generation }

    // MARK: Log records

    private static func apply(_ bytes: [UInt8], to index: HNSWIndex) throws(LodestoneError) {
        switch try LogRecord.decode(bytes, layout: .keyed, dimension: index.dimension) {
        case let .keyedUpsert(keys, rows): try applyUpsert(rows, keys: keys, to: index, threads: 1)
        case let .keyedRemove(keys): for key in keys { index.remove(key: key) }
        case .upsert, .delete, .setMetadata, .setMetadataAndSparse: preconditionFailure("decode(layout: .keyed) returns keyed records only")
        }
    }

    private static func applyUpsert(_ vectors: [Float], keys: [UInt64], to index: HNSWIndex, threads: Int)
        throws(LodestoneError)
    {
        var graph = index
        try graph.storeBatch(vectors, keys: keys, threads: threads)
    }

    // MARK: Settings

    private static func encodeSettings(_ index: HNSWIndex) -> [UInt8] {
        var w = ByteWriter()
        VectorSettings(dimension: index.dimension, metric: index.metric, parameters: index.parameters,
                       model: index.embeddingModel).encode(into: &w)
        return w.bytes
    }

    private static func decodeSettings(_ bytes: [UInt8], path: String) throws(LodestoneError) -> VectorSettings {
        func corrupt(_ reason: String) -> LodestoneError { .corruptSegment(path: path, section: "manifest", reason: reason) }
        var r = ByteReader(bytes) { corrupt("settings truncated") }
        return try VectorSettings.decode(from: &r, corrupt: corrupt)
    }
}
