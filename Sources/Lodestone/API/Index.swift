import Synchronization

/// A named, durable collection of records (id, vector, metadata) in
/// namespaces, searched by vector or id with Pinecone's filters.
///
/// Get one from a ``Database``. Every write is validated as a whole (nothing
/// is stored on error), logged and synced (per its ``Durability``), then
/// visible to queries; ``persist(merge:)-8bgq6`` folds the log into a new segment, and
/// reopening maps it without recomputing anything.
///
/// Thread safety: any number of threads may query while one writes; reads
/// share a reader-writer lock that writers hold only to apply a batch (in
/// pieces of at most ``applyBatchSize`` records, so large imports do not
/// stall queries for long).
public final class Index: @unchecked Sendable {
    // @unchecked: `table` and `engine` are guarded by `lock` (reads shared,
    // applies exclusive); log order by the DurableStore's writer lock;
    // `cache` by its lock.

    /// The index's name in its database.
    public let name: String
    /// Components per dense vector (0 for a sparse index).
    public var dimension: Int { kind == .sparse ? 0 : rowDimension }
    /// Components per row of the vector engine: the dimension, or 1 for a
    /// sparse index's placeholder vectors (``IndexKind/sparse``).
    let rowDimension: Int
    /// How vectors are compared.
    public let metric: Metric
    /// The embedding model the index's vectors come from ("" if not given).
    public let embeddingModel: String
    /// HNSW or flat.
    public let kind: IndexKind
    /// The graph parameters the index was created with (a flat index keeps
    /// the defaults it ignores).
    public let parameters: HNSWParameters
    /// The metadata field whose text the index keeps BM25 vectors of
    /// (``IndexOptions/textField``), or nil.
    public let textField: String?
    /// Whether this instance was opened read-only (``Database/init(path:readOnly:)``):
    /// it searches and fetches, and every write throws ``LodestoneError/readOnly(name:)``.
    public var isReadOnly: Bool { store.readOnly }

    let store: DurableStore
    let engine: VectorEngine
    let table: RecordTable
    var fingerprint: VectorFingerprint
    let lock = ReadWriteLock()
    let cache = Locked(FilterCache())
    /// The text statistics as of the last text write (nil: not yet counted
    /// since the open, or unknown after a failed write).
    let textStatistics = Locked<TextStatistics?>(nil)
    /// One namespace's ids in byte order, for ``listIDs(namespace:prefix:filter:limit:paginationToken:)``
    /// pages, valid while the record table's version is unchanged.
    let sortedIDs = Locked<(namespace: String, version: UInt64, order: SortedIDs)?>(nil)
    private let lifecycle = Atomic<Lifecycle>(.open)
    /// Whether the last segment written renumbered the graph's nodes (read
    /// when that segment becomes current, under the store's writer lock).
    let lastSegmentRenumbered = Atomic<Bool>(false)
    /// ``autoPersistLogBytes`` for this index (tests lower it).
    let autoPersistBytes = Atomic<Int>(Index.autoPersistLogBytes)

    /// Records applied under one hold of the write lock.
    public static let applyBatchSize = 1_024

    /// Where an instance is in its life; every call checks it first.
    enum Lifecycle: UInt8, AtomicRepresentable {
        case open
        /// Deleted from its database (``Database/deleteIndex(_:)``).
        case dropped
        /// ``close(persist:)`` was called.
        case closed
    }

    private init(name: String, settings: Settings, store: DurableStore, engine: VectorEngine, table: RecordTable,
                 fingerprint: VectorFingerprint) {
        self.name = name
        self.rowDimension = settings.dimension
        self.metric = settings.metric
        self.embeddingModel = settings.model
        self.kind = settings.kind
        self.parameters = settings.parameters
        self.textField = settings.textField
        self.store = store
        self.engine = engine
        self.table = table
        self.fingerprint = fingerprint
    }

    /// Creates an empty index in `directory`.
    static func create(name: String, directory: String, settings: Settings, durability: Durability)
        throws(LodestoneError) -> Index
    {
        try settings.parameters.validate()
        guard settings.model.utf8.count <= SegmentFormat.maxModelName else {
            throw .invalidArgument(name: "embeddingModel", reason: "at most \(SegmentFormat.maxModelName) bytes")
        }
        let engine = try VectorEngine.create(kind: settings.kind, dimension: settings.dimension, metric: settings.metric,
                                             parameters: settings.parameters, embeddingModel: settings.model)
        let store = try DurableStore.create(directory: directory, settings: settings.encoded(), durability: durability)
        engine.hnsw?.spillVectors(inDirectory: directory)
        return Index(name: name, settings: settings, store: store, engine: engine, table: RecordTable(),
                     fingerprint: VectorFingerprint(dimension: settings.dimension))
    }

    /// Opens the index in `directory`: maps its segment, loads its records
    /// and replays its log.
    static func open(name: String, directory: String, durability: Durability, readOnly: Bool = false)
        throws(LodestoneError) -> Index
    {
        final class Loaded {
            let settings: Settings, engine: VectorEngine, table: RecordTable
            var fingerprint: VectorFingerprint
            init(_ s: Settings, _ e: VectorEngine, _ t: RecordTable, _ f: VectorFingerprint) {
                settings = s; engine = e; table = t; fingerprint = f
            }
        }
        let (store, loaded) = try DurableStore.open(
            directory: directory, durability: durability, readOnly: readOnly,
            load: { (manifest: Manifest) throws(LodestoneError) -> Loaded in
                let settings = try Settings.decode(manifest.settings, path: directory + "/" + Manifest.fileName)
                guard !manifest.segment.isEmpty else {
                    let engine = try VectorEngine.create(kind: settings.kind, dimension: settings.dimension,
                                                         metric: settings.metric, parameters: settings.parameters,
                                                         embeddingModel: settings.model)
                    if !readOnly { engine.hnsw?.spillVectors(inDirectory: directory) }
                    return Loaded(settings, engine, RecordTable(), VectorFingerprint(dimension: settings.dimension))
                }
                let path = directory + "/" + manifest.segment
                // The delta, if any, is mapped (and checked) once for both the engine and the records.
                let delta = manifest.delta.isEmpty ? nil : try MappedSegment(path: directory + "/" + manifest.delta)
                let (engine, segment) = try VectorEngine.open(kind: settings.kind, path: path, delta: delta)
                let base = try RecordBase(segment: segment, dimension: settings.dimension)
                let table = RecordTable(base: base)
                var fingerprint = base.fingerprint
                if let delta {
                    fingerprint = try table.applyChanges(try delta.bytes(SectionKind.recordsChanges),
                                                         dimension: settings.dimension, path: delta.path)
                }
                guard table.count == engine.count else {
                    throw .corruptSegment(path: path, section: "records.header",
                                          reason: "\(table.count) records but \(engine.count) vectors")
                }
                // Before the log is replayed, so its vectors spill too.
                if !readOnly { engine.hnsw?.spillVectors(inDirectory: directory) }
                return Loaded(settings, engine, table, fingerprint)
            },
            replay: { (loaded: Loaded, record: [UInt8]) throws(LodestoneError) in
                let decoded = try LogRecord.decode(record, layout: .records, dimension: loaded.settings.dimension)
                try Index.apply(decoded, engine: loaded.engine, table: loaded.table, fingerprint: &loaded.fingerprint,
                                dimension: loaded.settings.dimension, lock: nil, threads: Parallelism.defaultThreadCount)
            })
        return Index(name: name, settings: loaded.settings, store: store, engine: loaded.engine, table: loaded.table,
                     fingerprint: loaded.fingerprint)
    }

    /// Marks the index deleted: later calls throw ``LodestoneError/indexNotFound(name:)``.
    func markDropped() { lifecycle.store(.dropped, ordering: .sequentiallyConsistent) }

    /// Whether ``close(persist:)`` was called on this instance.
    var isClosed: Bool { lifecycle.load(ordering: .sequentiallyConsistent) == .closed }

    /// Whether this instance is neither closed (``close(persist:)-4g3lv``) nor
    /// deleted (``Database/deleteIndex(_:)-7l1xq``).
    public var isOpen: Bool { lifecycle.load(ordering: .sequentiallyConsistent) == .open }

    func checkOpen() throws(LodestoneError) {
        switch lifecycle.load(ordering: .sequentiallyConsistent) {
        case .dropped: throw .indexNotFound(name: name)
        case .closed: throw .indexClosed(name: name)
        case .open: break
        }
    }

    /// Closes this index. First, unless `persist` is false, folds what its
    /// log holds, and what a load applied without logging
    /// (``LoadCommit/persist``), into a new segment (``persist(merge:)-8bgq6``),
    /// so the next open maps that segment and replays nothing; then waits
    /// for writes and queries in progress and releases the directory's lock.
    /// Later calls on this instance throw ``LodestoneError/indexClosed(name:)``;
    /// ``Database/index(_:embeddingModel:durability:)-arf2`` opens it again.
    /// Without `close`, nothing logged is lost either: every acknowledged
    /// write is in the log, and opening replays it. Unlogged batches not yet
    /// persisted are lost without a persist, as in a crash.
    public func close(persist: Bool = true) throws(LodestoneError) {
        try checkOpen()
        while true {
            if persist && !isReadOnly && (store.pendingBytes > 0 || store.needsRecovery) { try self.persist() }
            // With `persist`, a load's batch applied since the check above
            // sends it round again rather than being dropped.
            let closed: Void? = try store.write(unlessUnlogged: persist && !isReadOnly) {
                (_: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) in
                lifecycle.store(.closed, ordering: .sequentiallyConsistent)
            }
            if closed != nil { break }
        }
        lock.writing {}  // queries that got in before the switch finish first
        store.releaseLock()
    }

    func checkWritable() throws(LodestoneError) {
        if isReadOnly { throw .readOnly(name: name) }
    }

    func checkModel(_ model: String?) throws(LodestoneError) {
        if let model, model != embeddingModel { throw .embeddingModelMismatch(expected: embeddingModel, actual: model) }
    }

    // MARK: Validation

    static func validateID(_ id: String) throws(LodestoneError) {
        guard !id.isEmpty else { throw .invalidID(id: id, reason: "ids must not be empty") }
        let n = id.utf8.count
        guard n <= RecordTable.maximumIDBytes else {
            throw .invalidID(id: id, reason: "\(n) bytes; ids are at most \(RecordTable.maximumIDBytes) bytes of UTF-8")
        }
    }

    static func validateNamespace(_ ns: String) throws(LodestoneError) {
        guard ns.utf8.count <= RecordTable.maximumIDBytes else {
            throw .invalidArgument(name: "namespace", reason: "at most \(RecordTable.maximumIDBytes) bytes")
        }
    }
}
