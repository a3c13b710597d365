import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A named, durable collection of records (id, vector, metadata) in
/// namespaces, searched by vector or id with Pinecone's filters.
///
/// Get one from a ``Database``. Every write is validated as a whole (nothing
/// is stored on error), logged and synced (per its ``Durability``), then
/// visible to queries; ``persist()`` folds the log into a new segment, and
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
    /// Components per vector.
    public let dimension: Int
    /// How vectors are compared.
    public let metric: Metric
    /// The embedding model the index's vectors come from ("" if not given).
    public let embeddingModel: String
    /// HNSW or flat.
    public let kind: IndexKind
    /// The graph parameters the index was created with (a flat index keeps
    /// the defaults it ignores).
    public let parameters: HNSWParameters
    /// Whether this instance was opened read-only (``Database/init(path:readOnly:)``):
    /// it searches and fetches, and every write throws ``LodestoneError/readOnly(name:)``.
    public var isReadOnly: Bool { store.readOnly }

    let store: DurableStore
    let engine: VectorEngine
    private let table: RecordTable
    private var fingerprint: VectorFingerprint
    private let lock = ReadWriteLock()
    private let cache = Locked(FilterCache())
    /// One namespace's ids in byte order, for ``listIDs(namespace:prefix:filter:limit:paginationToken:)``
    /// pages, valid while the record table's version is unchanged.
    private let sortedIDs = Locked<(namespace: String, version: UInt64, order: SortedIDs)?>(nil)
    /// 0 open, 1 deleted, 2 closed.
    private let lifecycle = Atomic<UInt8>(0)

    /// Records applied under one hold of the write lock.
    public static let applyBatchSize = 1_024

    private static let upsertOp: UInt8 = 1
    private static let deleteOp: UInt8 = 2
    private static let metadataOp: UInt8 = 3

    // MARK: Settings (stored in the manifest)

    struct Settings: Equatable {
        var kind: IndexKind
        var dimension: Int
        var metric: Metric
        var model: String
        var parameters: HNSWParameters

        /// The manifest's bytes: "LODEIDX1", the kind (UInt64: 0 HNSW, 1
        /// flat), then ``VectorSettings``.
        func encoded() -> [UInt8] {
            var w = ByteWriter()
            w.raw(Array("LODEIDX1".utf8))
            w.u64(kind == .hnsw ? 0 : 1)
            VectorSettings(dimension: dimension, metric: metric, parameters: parameters, model: model).encode(into: &w)
            return w.bytes
        }

        static func decode(_ bytes: [UInt8], path: String) throws(LodestoneError) -> Settings {
            func corrupt(_ reason: String) -> LodestoneError { .corruptSegment(path: path, section: "manifest", reason: reason) }
            var r = ByteReader(bytes) { corrupt("index settings truncated") }
            guard try r.raw(8) == Array("LODEIDX1".utf8) else { throw corrupt("not the settings of a Lodestone Index") }
            let kindCode = try r.u64()
            guard kindCode <= 1 else { throw corrupt("unknown kind \(kindCode)") }
            let s = try VectorSettings.decode(from: &r, corrupt: corrupt)
            return Settings(kind: kindCode == 0 ? .hnsw : .flat, dimension: s.dimension, metric: s.metric, model: s.model,
                            parameters: s.parameters)
        }
    }

    private init(name: String, settings: Settings, store: DurableStore, engine: VectorEngine, table: RecordTable,
                 fingerprint: VectorFingerprint) {
        self.name = name
        self.dimension = settings.dimension
        self.metric = settings.metric
        self.embeddingModel = settings.model
        self.kind = settings.kind
        self.parameters = settings.parameters
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
                return Loaded(settings, engine, table, fingerprint)
            },
            replay: { (loaded: Loaded, record: [UInt8]) throws(LodestoneError) in
                try Index.apply(record, engine: loaded.engine, table: loaded.table, fingerprint: &loaded.fingerprint,
                                dimension: loaded.settings.dimension, lock: nil, threads: FlatIndex.defaultThreadCount)
            })
        return Index(name: name, settings: loaded.settings, store: store, engine: loaded.engine, table: loaded.table,
                     fingerprint: loaded.fingerprint)
    }

    /// Marks the index deleted: later calls throw ``LodestoneError/indexNotFound(name:)``.
    func markDropped() { lifecycle.store(1, ordering: .sequentiallyConsistent) }

    /// Whether ``close(persist:)`` was called on this instance.
    var isClosed: Bool { lifecycle.load(ordering: .sequentiallyConsistent) == 2 }

    /// Whether this instance is neither closed (``close(persist:)``) nor
    /// deleted (``Database/deleteIndex(_:)``).
    public var isOpen: Bool { lifecycle.load(ordering: .sequentiallyConsistent) == 0 }

    private func checkOpen() throws(LodestoneError) {
        switch lifecycle.load(ordering: .sequentiallyConsistent) {
        case 1: throw .indexNotFound(name: name)
        case 2: throw .indexClosed(name: name)
        default: break
        }
    }

    /// Closes this index. First, unless `persist` is false, folds what its
    /// log holds into a new segment (``persist()``), so the next open maps
    /// that segment and replays nothing; then waits for writes and queries
    /// in progress and releases the directory's lock. Later calls on this
    /// instance throw ``LodestoneError/indexClosed(name:)``;
    /// ``Database/index(_:embeddingModel:durability:)`` opens it again.
    /// Without `close`, nothing is lost either: every acknowledged write is
    /// in the log, and opening replays it.
    public func close(persist: Bool = true) throws(LodestoneError) {
        try checkOpen()
        if persist && !isReadOnly && store.logBytes > 0 { try self.persist() }
        try store.write { (_: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) in
            lifecycle.store(2, ordering: .sequentiallyConsistent)
        }
        lock.writing {}  // queries that got in before the switch finish first
        store.releaseLock()
    }

    private func checkWritable() throws(LodestoneError) {
        if isReadOnly { throw .readOnly(name: name) }
    }

    private func checkModel(_ model: String?) throws(LodestoneError) {
        if let model, model != embeddingModel { throw .embeddingModelMismatch(expected: embeddingModel, actual: model) }
    }

    // MARK: Writing

    /// Adds records, or replaces those whose id is already in `namespace`.
    ///
    /// The batch is validated as a whole first: dimension, finite values
    /// (and not all zero under cosine), ids (1-512 bytes, none twice),
    /// metadata (values Pinecone accepts, at most 40 KB); on any error
    /// nothing is stored. Pass `embeddingModel` to have it checked against
    /// the index's.
    /// - Returns: the number of records upserted.
    @discardableResult
    public func upsert(_ records: [Record], namespace: String = "", embeddingModel: String? = nil,
                       threads: Int = 1) throws(LodestoneError) -> Int {
        try checkOpen()
        try checkWritable()
        try checkModel(embeddingModel)
        guard !records.isEmpty else { return 0 }
        try Self.validateNamespace(namespace)
        var seen = Set<String>()
        var flat: [Float] = []
        flat.reserveCapacity(records.count * dimension)
        for record in records {
            try Self.validateID(record.id)
            guard seen.insert(record.id).inserted else {
                throw .invalidID(id: record.id, reason: "appears twice in one batch")
            }
            guard record.values.count == dimension else {
                throw .dimensionMismatch(expected: dimension, actual: record.values.count)
            }
            if let m = record.metadata {
                do throws(LodestoneError) {
                    try MetadataCodec.validate(m)
                } catch let .invalidMetadata(field, reason) {
                    throw .invalidMetadata(field: field, reason: "record \"\(record.id)\": \(reason)")
                }
            }
            flat += record.values
        }
        _ = try FlatIndex.prepareRows(flat, count: records.count, dimension: dimension, metric: metric,
                                      kernels: engine.kernels)
        let n = try logged { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> Int in
            try upsertLocked(records, rows: flat, namespace: namespace, log: log, threads: threads)
        }
        try persistIfLogIsLarge()
        return n
    }

    /// The log size past which a write folds it into a new segment
    /// (``persist()``), so that reopening maps a segment instead of replaying
    /// (re-inserting) a long log: 256 MiB, or the segment's size if larger.
    public static let autoPersistLogBytes = 256 << 20

    private func persistIfLogIsLarge() throws(LodestoneError) {
        let logBytes = store.logBytes
        guard logBytes > Index.autoPersistLogBytes else { return }
        var segmentBytes = 0
        if let path = store.segmentPath {
            var st = stat()
            if stat(path, &st) == 0 { segmentBytes = Int(st.st_size) }
        }
        if logBytes > segmentBytes { try persist() }
    }

    /// Logs and applies validated records; the caller holds the writer lock
    /// (so the slots chosen here match the log order).
    private func upsertLocked(_ records: [Record], rows: [Float], namespace: String,
                              log: ([UInt8]) throws(LodestoneError) -> Void, threads: Int) throws(LodestoneError) -> Int {
        let slots: [UInt32] = lock.reading {
            var fresh = table.slotsForNewRecords(records.count).makeIterator()
            return records.map { table.slot(id: $0.id, namespace: namespace) ?? fresh.next()! }
        }
        var w = ByteWriter()
        w.raw([Index.upsertOp])
        Self.string(namespace, into: &w)
        w.u32(UInt32(records.count))
        w.u32(UInt32(dimension))
        for (record, slot) in zip(records, slots) {
            w.u32(slot)
            Self.string(record.id, into: &w)
            for v in record.values { w.u32(v.bitPattern) }
            MetadataCodec.encode(record.metadata ?? [:], into: &w)
        }
        try log(w.bytes)
        try Index.applyUpsert(namespace: namespace, ids: records.map(\.id), slots: slots, rows: rows,
                              metadata: records.map { $0.metadata ?? [:] }, engine: engine, table: table,
                              fingerprint: &fingerprint, dimension: dimension, lock: lock, threads: threads)
        return records.count
    }

    /// Changes a record: replaces its vector when `values` is given, and
    /// sets the fields of `setMetadata` (others are kept), as Pinecone's
    /// update does.
    /// - Throws: ``LodestoneError/recordNotFound(id:namespace:)`` if absent.
    public func update(id: String, values: [Float]? = nil, setMetadata: Metadata? = nil, namespace: String = "")
        throws(LodestoneError)
    {
        try checkOpen()
        try checkWritable()
        if let values, values.count != dimension { throw .dimensionMismatch(expected: dimension, actual: values.count) }
        if let values {
            _ = try FlatIndex.prepareRows(values, count: 1, dimension: dimension, metric: metric, kernels: engine.kernels)
        }
        try logged { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) in
            let current: (values: [Float], metadata: Metadata)? = lock.reading {
                guard let slot = table.slot(id: id, namespace: namespace), let v = self.values(ofSlot: slot) else {
                    return nil
                }
                return (v, table.metadata.metadata(slot: Int(slot)) ?? [:])
            }
            guard let current else { throw .recordNotFound(id: id, namespace: namespace) }
            var merged = current.metadata
            for (k, v) in setMetadata ?? [:] { merged[k] = v }
            try MetadataCodec.validate(merged)
            guard let values else {
                // Metadata only: the vector (and the graph) stay as they are.
                let slot = lock.reading { table.slot(id: id, namespace: namespace)! }
                try setMetadataLocked([(slot, merged)], log: log)
                return
            }
            _ = try upsertLocked([Record(id: id, values: values, metadata: merged)], rows: values, namespace: namespace,
                                 log: log, threads: 1)
        }
    }

    /// Sets the fields of `setMetadata` (others are kept) on every record of
    /// `namespace` whose metadata passes `filter`, as one write: every
    /// merged record is validated first (nothing changes if one fails),
    /// then one log record holds them all. Vectors are untouched.
    /// - Returns: how many records matched.
    @discardableResult
    public func update(filter: Filter, setMetadata: Metadata, namespace: String = "") throws(LodestoneError) -> Int {
        try checkOpen()
        try checkWritable()
        return try logged { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> Int in
            let changes: [(UInt32, Metadata)] = try lock.reading { () throws(LodestoneError) -> [(UInt32, Metadata)] in
                guard let (set, _) = allowedSlots(filter: filter, namespace: namespace, alwaysRestrict: true) else {
                    return []
                }
                var out: [(UInt32, Metadata)] = []
                var failure: LodestoneError? = nil
                set!.forEach { slot in
                    guard failure == nil else { return }
                    var merged = table.metadata.metadata(slot: slot) ?? [:]
                    for (k, v) in setMetadata { merged[k] = v }
                    do throws(LodestoneError) {
                        try MetadataCodec.validate(merged)
                        out.append((UInt32(slot), merged))
                    } catch {
                        failure = error
                    }
                }
                if let failure { throw failure }
                return out
            }
            try setMetadataLocked(changes, log: log)
            return changes.count
        }
    }

    /// Logs and applies new metadata for slots in use; the caller holds the
    /// writer lock.
    private func setMetadataLocked(_ changes: [(UInt32, Metadata)], log: ([UInt8]) throws(LodestoneError) -> Void)
        throws(LodestoneError)
    {
        guard !changes.isEmpty else { return }
        var w = ByteWriter()
        w.raw([Index.metadataOp])
        w.u32(UInt32(changes.count))
        for (slot, metadata) in changes {
            w.u32(slot)
            MetadataCodec.encode(metadata, into: &w)
        }
        try log(w.bytes)
        Index.applyMetadata(changes, table: table, lock: lock)
    }

    /// Deletes the records with these ids from `namespace`; ids not present
    /// are ignored. Returns how many were deleted.
    @discardableResult
    public func delete(ids: [String], namespace: String = "") throws(LodestoneError) -> Int {
        try checkOpen()
        try checkWritable()
        return try logged { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> Int in
            let slots: [UInt32] = lock.reading { Array(Set(ids.compactMap { table.slot(id: $0, namespace: namespace) })) }
            return try deleteSlots(slots, log: log)
        }
    }

    /// Deletes every record of `namespace`. Returns how many were deleted.
    @discardableResult
    public func deleteAll(namespace: String = "") throws(LodestoneError) -> Int {
        try checkOpen()
        try checkWritable()
        return try logged { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> Int in
            try deleteSlots(lock.reading { table.slots(namespace: namespace) }, log: log)
        }
    }

    /// Deletes the records of `namespace` whose metadata passes `filter`.
    /// Returns how many were deleted.
    @discardableResult
    public func delete(filter: Filter, namespace: String = "") throws(LodestoneError) -> Int {
        try checkOpen()
        try checkWritable()
        return try logged { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> Int in
            let slots: [UInt32] = lock.reading {
                guard let (set, _) = allowedSlots(filter: filter, namespace: namespace, alwaysRestrict: true) else { return [] }
                var out: [UInt32] = []
                set!.forEach { out.append(UInt32($0)) }
                return out
            }
            return try deleteSlots(slots, log: log)
        }
    }

    private func deleteSlots(_ slots: [UInt32], log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> Int {
        guard !slots.isEmpty else { return 0 }
        var w = ByteWriter()
        w.raw([Index.deleteOp])
        w.u32(UInt32(slots.count))
        for s in slots { w.u32(s) }
        try log(w.bytes)
        try Index.applyDelete(slots, engine: engine, table: table, lock: lock)
        return slots.count
    }

    /// Runs `body` under the store's writer lock with the log at hand. If a
    /// failed sync left the log unusable, it first recovers by persisting
    /// (a new segment from memory, a new log).
    private func logged<T>(_ body: (_ log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> T)
        throws(LodestoneError) -> T
    {
        if store.needsRecovery { try persist() }
        return try withoutActuallyEscaping(body) { (body) throws(LodestoneError) -> T in
            try store.write { (log: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) -> T in
                // Checked again under the writer lock: a close or delete that
                // got there first wins, and nothing is logged after it.
                try checkOpen()
                return try body(log)
            }
        }
    }

    /// Folds the log into the index's files, so that reopening maps them
    /// instead of replaying the log. Queries continue meanwhile.
    ///
    /// On an HNSW index whose changes since its segment take at most
    /// ``deltaFraction`` of the segment's size, this writes only those
    /// changes, as a delta file beside the segment (it replaces the previous
    /// delta: each holds every change since the segment), so persisting a
    /// small change costs in proportion to the change. Otherwise, and always
    /// with `merge` (or on a flat index), it writes one new segment of
    /// everything, which drops the delta.
    public func persist(merge: Bool = false) throws(LodestoneError) {
        try checkOpen()
        try checkWritable()
        try store.persist(write: { (segment, delta) throws(LodestoneError) in
            try write(segmentPath: segment, delta: merge ? nil : delta)
        }, committed: segmentCommitted)
    }

    /// A persist writes a delta instead of a whole segment while the changes
    /// take at most this fraction of the segment's bytes.
    public static let deltaFraction = 0.25

    /// Writes a consistent snapshot of the index, as of this call, into
    /// `directory` (created if missing; it must not hold an index):
    /// ``Database/restoreIndex(name:from:durability:)`` opens it as a new
    /// index without re-inserting anything. What the log holds is first
    /// folded into a new segment (``persist()``); the segment, which is
    /// immutable, is then hard-linked, so a snapshot of an index persisted
    /// since its last write costs no copy. Queries continue meanwhile.
    public func snapshot(to directory: String) throws(LodestoneError) {
        try checkOpen()
        // Read-only, it can snapshot only what its segment already holds.
        if isReadOnly && store.logBytes > 0 { throw .readOnly(name: name) }
        try store.snapshot(into: directory, write: { (segment, delta) throws(LodestoneError) in
            try write(segmentPath: segment, delta: delta)
        }, committed: segmentCommitted)
    }

    /// Whether the last segment written renumbered the graph's nodes (read
    /// when that segment becomes current, under the store's writer lock).
    private let lastSegmentRenumbered = Atomic<Bool>(false)

    /// Writes a delta at `delta` when one may (see ``persist(merge:)``),
    /// else a segment of everything at `segmentPath`; the store's writer
    /// lock is held, so nothing changes the table or engine meanwhile.
    private func write(segmentPath: String, delta: DurableStore.DeltaTarget?) throws(LodestoneError) -> DurableStore.Written {
        try checkOpen()
        if let delta, let changed = engine.changedBytes() {
            var st = stat()
            if stat(delta.segment, &st) == 0 && Double(changed) <= Index.deltaFraction * Double(st.st_size) {
                try engine.persistDelta(to: delta.path, extraSections: [table.changesSection(fingerprint: fingerprint)])
                return .delta
            }
        }
        let renumbered = try engine.persist(to: segmentPath, embeddingModel: embeddingModel,
                                            extraSections: table.sections(fingerprint: fingerprint))
        lastSegmentRenumbered.store(renumbered, ordering: .relaxed)
        return .segment
    }

    /// Runs once a persist's files are current (writer lock held).
    private func segmentCommitted(_ written: DurableStore.Written) {
        guard written == .segment else { return }
        engine.segmentCommitted(renumbered: lastSegmentRenumbered.load(ordering: .relaxed))
        table.segmentWritten()
    }

    // MARK: Applying (live and at replay)

    private static func apply(_ record: [UInt8], engine: VectorEngine, table: RecordTable,
                              fingerprint: inout VectorFingerprint, dimension d: Int, lock: ReadWriteLock?, threads: Int)
        throws(LodestoneError)
    {
        var r = ByteReader(record) { .invalidArgument(name: "log record", reason: "truncated") }
        let op = try r.raw(1)[0]
        switch op {
        case upsertOp:
            let namespace = try r.lengthPrefixedString()
            let count = Int(try r.u32()), dim = Int(try r.u32())
            guard dim == d else { throw .dimensionMismatch(expected: d, actual: dim) }
            guard count <= record.count else { throw .invalidArgument(name: "log record", reason: "\(count) records") }
            var ids: [String] = [], slots: [UInt32] = [], rows: [Float] = [], metadata: [Metadata] = []
            rows.reserveCapacity(count * d)
            for _ in 0..<count {
                slots.append(try r.u32())
                ids.append(try r.lengthPrefixedString())
                for _ in 0..<d { rows.append(Float(bitPattern: try r.u32())) }
                metadata.append(try MetadataCodec.decode(&r))
            }
            _ = try FlatIndex.prepareRows(rows, count: count, dimension: d, metric: engine.metric, kernels: engine.kernels)
            try applyUpsert(namespace: namespace, ids: ids, slots: slots, rows: rows, metadata: metadata, engine: engine,
                            table: table, fingerprint: &fingerprint, dimension: d, lock: lock, threads: threads)
        case deleteOp:
            let count = Int(try r.u32())
            var slots: [UInt32] = []
            for _ in 0..<count { slots.append(try r.u32()) }
            try applyDelete(slots, engine: engine, table: table, lock: lock)
        case metadataOp:
            let count = Int(try r.u32())
            guard count <= record.count else { throw .invalidArgument(name: "log record", reason: "\(count) records") }
            var changes: [(UInt32, Metadata)] = []
            for _ in 0..<count {
                let slot = try r.u32()
                changes.append((slot, try MetadataCodec.decode(&r)))
            }
            for (slot, _) in changes where !table.isInUse(slot) {
                throw .invalidArgument(name: "log record", reason: "metadata for slot \(slot), which holds no record")
            }
            applyMetadata(changes, table: table, lock: lock)
        default:
            throw .invalidArgument(name: "log record", reason: "unknown operation \(op)")
        }
    }

    private static func applyUpsert(namespace: String, ids: [String], slots: [UInt32], rows: [Float], metadata: [Metadata],
                                    engine: VectorEngine, table: RecordTable, fingerprint: inout VectorFingerprint,
                                    dimension d: Int, lock: ReadWriteLock?, threads: Int) throws(LodestoneError) {
        fingerprint.add(rows, dimension: d)
        // A cosine index stores unit vectors: keep each one's length, so the
        // values come back as they were given.
        let norms: [Float] = engine.metric != .cosine ? [] : (0..<ids.count).map { i in
            var sum = 0.0
            for v in rows[(i * d)..<((i + 1) * d)] { sum += Double(v) * Double(v) }
            return Float(sum.squareRoot())
        }
        var start = 0
        while start < ids.count {
            let end = min(ids.count, start + applyBatchSize)
            let piece = Array(rows[(start * d)..<(end * d)])
            let keys = slots[start..<end].map { UInt64($0) }
            func body() throws(LodestoneError) {
                // A slot held by another id (a replay over a reused slot) is
                // cleared first; the engine replaces its vector.
                try engine.upsert(piece, keys: keys, threads: threads)
                for i in start..<end {
                    table.set(slot: slots[i], id: ids[i], namespace: namespace, metadata: metadata[i],
                              norm: norms.isEmpty ? 0 : norms[i])
                }
            }
            if let lock { try lock.writing { () throws(LodestoneError) in try body() } } else { try body() }
            start = end
        }
    }

    private static func applyMetadata(_ changes: [(UInt32, Metadata)], table: RecordTable, lock: ReadWriteLock?) {
        let body = { for (slot, metadata) in changes { table.setMetadata(metadata, slot: slot) } }
        if let lock { lock.writing(body) } else { body() }
    }

    private static func applyDelete(_ slots: [UInt32], engine: VectorEngine, table: RecordTable, lock: ReadWriteLock?)
        throws(LodestoneError)
    {
        var start = 0
        while start < slots.count {
            let end = min(slots.count, start + applyBatchSize)
            let body = {
                for s in slots[start..<end] where table.isInUse(s) {
                    engine.remove(key: UInt64(s))
                    table.clear(slot: s)
                }
            }
            if let lock { lock.writing(body) } else { body() }
            start = end
        }
    }

    // MARK: Reading

    /// The allowed slots for a filter within a namespace (nil set: no
    /// restriction needed), and how many; nil when nothing can match.
    /// Called under the read lock; cached per (filter, namespace) until the
    /// table changes.
    private func allowedSlots(filter: Filter?, namespace: String, alwaysRestrict: Bool = false) -> (Bitset?, Int)? {
        let inNamespace = table.count(namespace: namespace)
        guard inNamespace > 0 else { return nil }
        let everything = inNamespace == table.count
        if filter == nil && everything && !alwaysRestrict { return (nil, inNamespace) }
        let version = table.version
        return cache.withLock { cache -> (Bitset?, Int)? in
            if let hit = cache.lookup(filter: filter, namespace: namespace, version: version) { return (hit.0, hit.1) }
            var set: Bitset
            if let filter {
                set = table.metadata.evaluate(filter)
                if !everything { set = set.intersection(table.slotSet(namespace: namespace)) }
            } else {
                set = table.slotSet(namespace: namespace)
            }
            let count = set.count
            cache.store(filter: filter, namespace: namespace, version: version, set: set, count: count)
            return (set, count)
        }
    }

    /// The `topK` records of `namespace` nearest to `vector` whose metadata
    /// passes `filter`, best first: min(topK, matching records) of them.
    ///
    /// - Parameters:
    ///   - vector: the query (the index's dimension).
    ///   - topK: results wanted, 1 or more.
    ///   - namespace: where to search (default `""`).
    ///   - filter: a metadata filter; nil matches every record.
    ///   - includeValues: return each match's stored vector.
    ///   - includeMetadata: return each match's metadata.
    ///   - ef: the HNSW beam width (default: the index's `efSearch`).
    ///   - explain: report the plan and the work done in
    ///     ``QueryResponse/explanation``.
    ///   - embeddingModel: checked against the index's when given.
    public func query(vector: [Float], topK: Int, namespace: String = "", filter: Filter? = nil,
                      includeValues: Bool = false, includeMetadata: Bool = false, ef: Int? = nil,
                      explain: Bool = false, embeddingModel: String? = nil) throws(LodestoneError) -> QueryResponse {
        try checkOpen()
        try checkModel(embeddingModel)
        guard topK >= 1 else { throw .invalidArgument(name: "topK", reason: "must be at least 1, got \(topK)") }
        guard vector.count == dimension else { throw .dimensionMismatch(expected: dimension, actual: vector.count) }
        return try lock.reading { () throws(LodestoneError) -> QueryResponse in
            guard let (allowed, matches) = allowedSlots(filter: filter, namespace: namespace), matches > 0 else {
                _ = try VectorPreparation.prepared(vector, dimension: dimension, metric: metric, kernels: engine.kernels)
                let none = SearchStatistics(plan: kind == .hnsw ? .exactScan : .flatScan, candidates: engine.count,
                                            matches: 0, ef: 0, nodesVisited: 0, distancesComputed: 0)
                return QueryResponse(matches: [], namespace: namespace, explanation: explain ? none : nil)
            }
            let (neighbors, statistics) = try engine.search(vector, k: topK, ef: ef, allowed: allowed, matches: matches)
            let matched = resolve(neighbors, includeValues: includeValues, includeMetadata: includeMetadata)
            try engine.checkIntegrity()
            return QueryResponse(matches: matched, namespace: namespace, explanation: explain ? statistics : nil)
        }
    }

    /// Like ``query(vector:topK:namespace:filter:includeValues:includeMetadata:ef:explain:embeddingModel:)``
    /// with the stored vector of record `id` as the query (the record
    /// itself is among the results).
    public func query(id: String, topK: Int, namespace: String = "", filter: Filter? = nil, includeValues: Bool = false,
                      includeMetadata: Bool = false, ef: Int? = nil, explain: Bool = false) throws(LodestoneError)
        -> QueryResponse
    {
        try checkOpen()
        let v: [Float]? = try lock.reading { () throws(LodestoneError) -> [Float]? in
            let v = table.slot(id: id, namespace: namespace).flatMap { values(ofSlot: $0) }
            try engine.checkIntegrity()
            return v
        }
        guard let v else { throw .recordNotFound(id: id, namespace: namespace) }
        return try query(vector: v, topK: topK, namespace: namespace, filter: filter, includeValues: includeValues,
                         includeMetadata: includeMetadata, ef: ef, explain: explain)
    }

    /// Many queries at once, for offline jobs. On a flat index they go
    /// through BLAS, filtered or not (a filter, or a namespace among
    /// several, restricts the product to the matching rows: see
    /// ``FlatIndex/search(batch:k:allowedKeys:matchCount:threads:)``); on
    /// HNSW they run as parallel graph searches, and with a filter each runs
    /// the planner on one of `threads` threads, except that a filter narrow
    /// enough for the planner's exact scan gathers the matching vectors once
    /// and multiplies the whole batch by them (BLAS). Each query's answer equals
    /// ``query(vector:topK:namespace:filter:includeValues:includeMetadata:ef:explain:embeddingModel:)``'s.
    public func queryBatch(vectors: [[Float]], topK: Int, namespace: String = "", filter: Filter? = nil,
                           includeValues: Bool = false, includeMetadata: Bool = false, ef: Int? = nil,
                           threads: Int = FlatIndex.defaultThreadCount) throws(LodestoneError) -> [[Match]] {
        for v in vectors where v.count != dimension { throw .dimensionMismatch(expected: dimension, actual: v.count) }
        return try queryBatch(rows: vectors.flatMap { $0 }, topK: topK, namespace: namespace, filter: filter,
                              includeValues: includeValues, includeMetadata: includeMetadata, ef: ef, threads: threads)
    }

    /// ``queryBatch(vectors:topK:namespace:filter:includeValues:includeMetadata:ef:threads:)``
    /// with the queries as one row-major array (`rows.count` a multiple of
    /// the dimension), as batch jobs read them: no array per query. Ids and
    /// metadata are looked up on `threads` threads too.
    public func queryBatch(rows: [Float], topK: Int, namespace: String = "", filter: Filter? = nil,
                           includeValues: Bool = false, includeMetadata: Bool = false, ef: Int? = nil,
                           threads: Int = FlatIndex.defaultThreadCount) throws(LodestoneError) -> [[Match]] {
        try checkOpen()
        guard topK >= 1 else { throw .invalidArgument(name: "topK", reason: "must be at least 1, got \(topK)") }
        guard rows.count % dimension == 0 else {
            throw .dimensionMismatch(expected: dimension, actual: rows.count % dimension)
        }
        let count = rows.count / dimension
        guard count > 0 else { return [] }
        return try lock.reading { () throws(LodestoneError) -> [[Match]] in
            guard let (allowed, matches) = allowedSlots(filter: filter, namespace: namespace), matches > 0 else {
                return [[Match]](repeating: [], count: count)
            }
            let results: [[Neighbor]]
            if let allowed {
                results = try engine.search(batch: rows, k: topK, ef: ef, allowed: allowed, matches: matches, threads: threads)
            } else {
                results = try engine.search(batch: rows, k: topK, ef: ef, threads: threads)
            }
            // Resolving ids (and metadata) is a read of the table, safe from
            // several threads under the read lock; each worker fills the
            // queries it claims.
            var out = [[Match]](repeating: [], count: count)
            out.withUnsafeMutableBufferPointer { buffer in
                let target = UncheckedSendable(buffer)
                parallelFor(count: count, threads: min(threads, max(1, count / 256)), grain: 256) { run in
                    for q in run {
                        target.value[q] = self.resolve(results[q], includeValues: includeValues,
                                                       includeMetadata: includeMetadata)
                    }
                }
            }
            return out
        }
    }

    /// Reads and verifies the whole index now, on `threads` threads, so that
    /// the queries that follow do not pay for first access (an opened HNSW
    /// index verifies and maps each 4,096-record chunk the first time a
    /// search touches it). For batch jobs over the whole index; a flat index
    /// was verified when it opened.
    public func warm(threads: Int = FlatIndex.defaultThreadCount) throws(LodestoneError) {
        try checkOpen()
        try lock.reading { () throws(LodestoneError) in
            engine.hnsw?.warm(threads: threads)
            try engine.checkIntegrity()
        }
    }

    /// A record's vector as it was given: a cosine index's unit vector times
    /// the length it had (when recorded). Called under the read lock.
    private func values(ofSlot slot: UInt32) -> [Float]? {
        guard var v = engine.vector(forKey: UInt64(slot)) else { return nil }
        let norm = table.norm(ofSlot: Int(slot))
        if metric == .cosine && norm > 0 { for i in v.indices { v[i] *= norm } }
        return v
    }

    private func resolve(_ neighbors: [Neighbor], includeValues: Bool, includeMetadata: Bool) -> [Match] {
        neighbors.compactMap { n in
            let slot = Int(n.key)
            guard let id = table.id(ofSlot: slot) else { return nil }
            var metadata: Metadata? = nil
            if includeMetadata, let m = table.metadata.metadata(slot: slot), !m.isEmpty { metadata = m }
            return Match(id: id, score: n.score, values: includeValues ? values(ofSlot: UInt32(n.key)) : nil,
                         metadata: metadata)
        }
    }

    /// The records with these ids in `namespace`, by id (absent ids are
    /// left out).
    public func fetch(ids: [String], namespace: String = "") throws(LodestoneError) -> [String: Record] {
        try checkOpen()
        return try lock.reading { () throws(LodestoneError) -> [String: Record] in
            var out: [String: Record] = [:]
            for id in ids {
                guard let slot = table.slot(id: id, namespace: namespace),
                      let v = values(ofSlot: slot) else { continue }
                let m = table.metadata.metadata(slot: Int(slot))
                out[id] = Record(id: id, values: v, metadata: (m?.isEmpty ?? true) ? nil : m)
            }
            // A damaged chunk met on the way gave fill bytes: never return them.
            try engine.checkIntegrity()
            return out
        }
    }

    /// The records of `namespace` whose metadata passes `filter`, up to
    /// `limit`, by id.
    public func fetch(filter: Filter, namespace: String = "", limit: Int = 100) throws(LodestoneError) -> [String: Record] {
        try checkOpen()
        let ids: [String] = lock.reading {
            guard let (set, _) = allowedSlots(filter: filter, namespace: namespace, alwaysRestrict: true) else { return [] }
            var out: [String] = []
            set!.forEach { if out.count < limit, let id = table.id(ofSlot: $0) { out.append(id) } }
            return out
        }
        return try fetch(ids: ids, namespace: namespace)
    }

    /// Ids of `namespace` in ascending byte order, starting with `prefix`
    /// and (when given) passing `filter`, `limit` at a time; pass the
    /// returned token for the next page.
    public func listIDs(namespace: String = "", prefix: String = "", filter: Filter? = nil, limit: Int = 100,
                        paginationToken: String? = nil) throws(LodestoneError) -> IDPage
    {
        try checkOpen()
        guard limit >= 1 else { throw .invalidArgument(name: "limit", reason: "must be at least 1, got \(limit)") }
        // The namespace's ids in byte order (sorted once per table version),
        // and the filter's matching slots.
        let (order, allowed): (SortedIDs, Bitset?) = lock.reading {
            let version = table.version
            let order = sortedIDs.withLock { cached -> SortedIDs in
                if let cached, cached.namespace == namespace, cached.version == version { return cached.order }
                let slots = table.slots(namespace: namespace)
                var pairs = slots.map { (Array(table.id(ofSlot: Int($0))!.utf8), $0) }
                pairs.sort { $0.0.lexicographicallyPrecedes($1.0) }
                let order = SortedIDs(ids: pairs.map(\.0), slots: pairs.map(\.1))
                cached = (namespace, version, order)
                return order
            }
            guard let filter else { return (order, nil) }
            let set = allowedSlots(filter: filter, namespace: namespace, alwaysRestrict: true)?.0 ?? Bitset(capacity: 0)
            return (order, set)
        }
        // Binary search to the first id after the token and not before the
        // prefix; the prefix's ids are contiguous from there.
        let prefixBytes = Array(prefix.utf8)
        let tokenBytes = paginationToken.map { Array($0.utf8) }
        var low = 0, high = order.ids.count
        while low < high {
            let mid = (low + high) / 2
            let id = order.ids[mid]
            let beforeStart = id.lexicographicallyPrecedes(prefixBytes)
                || (tokenBytes.map { !$0.lexicographicallyPrecedes(id) } ?? false)
            if beforeStart { low = mid + 1 } else { high = mid }
        }
        var page: [String] = []
        var more = false
        var i = low
        while i < order.ids.count, order.ids[i].starts(with: prefixBytes) {
            if allowed?.contains(Int(order.slots[i])) ?? true {
                if page.count == limit { more = true; break }
                page.append(String(decoding: order.ids[i], as: UTF8.self))
            }
            i += 1
        }
        return IDPage(ids: page, nextToken: more ? page.last : nil)
    }

    /// How many records of `namespace` pass `filter` (all of them when nil),
    /// counted from the metadata index without reading a record.
    public func count(namespace: String = "", filter: Filter? = nil) throws(LodestoneError) -> Int {
        try checkOpen()
        return lock.reading { allowedSlots(filter: filter, namespace: namespace)?.1 ?? 0 }
    }

    /// Record counts per namespace, the dimension and the total.
    public func describeStats() throws(LodestoneError) -> IndexStats {
        try checkOpen()
        return lock.reading {
            IndexStats(namespaces: table.namespaceCountsByName, dimension: dimension, totalRecordCount: table.count, metric: metric)
        }
    }

    /// The stored vectors' fingerprint.
    public var vectorFingerprint: VectorFingerprint { lock.reading { fingerprint } }

    /// How `vectors` compare with the stored ones: whether they look like
    /// another embedding model's (see ``FingerprintComparison``).
    public func compareWithStored(_ vectors: [[Float]]) throws(LodestoneError) -> FingerprintComparison {
        for v in vectors where v.count != dimension { throw .dimensionMismatch(expected: dimension, actual: v.count) }
        return lock.reading { fingerprint.compare(vectors.flatMap { $0 }, dimension: dimension) }
    }

    /// Records over all namespaces.
    public var count: Int { lock.reading { table.count } }

    /// Verifies every checksum and link of the index's segment (a flat
    /// index's were all verified when it opened).
    /// - Throws: ``LodestoneError/corruptSegment(path:section:reason:)``.
    public func verify() throws(LodestoneError) {
        try checkOpen()
        try lock.reading { () throws(LodestoneError) in try engine.hnsw?.verify() }
    }

    /// Every record of every namespace, namespace by namespace (for export).
    func forEachRecord(_ body: (String, Record) throws(LodestoneError) -> Void) throws(LodestoneError) {
        let namespaces = lock.reading { table.namespaceNames }
        for ns in namespaces {
            let ids = lock.reading { table.ids(namespace: ns) }.sorted()
            var start = 0
            while start < ids.count {
                let chunk = Array(ids[start..<min(ids.count, start + 256)])
                let records = try fetch(ids: chunk, namespace: ns)
                for id in chunk { if let r = records[id] { try body(ns, r) } }
                start += chunk.count
            }
        }
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

    private static func string(_ s: String, into w: inout ByteWriter) {
        let b = Array(s.utf8)
        w.u32(UInt32(b.count))
        w.raw(b)
    }
}

/// A namespace's ids in byte order, with their slots.
struct SortedIDs {
    var ids: [[UInt8]]
    var slots: [UInt32]
}

/// Recently evaluated filters' matching slots, valid while the record
/// table's version is unchanged.
struct FilterCache {
    private var entries: [(filter: Filter?, namespace: String, version: UInt64, set: Bitset, count: Int)] = []
    private static let capacity = 16

    func lookup(filter: Filter?, namespace: String, version: UInt64) -> (Bitset, Int)? {
        for e in entries where e.version == version && e.namespace == namespace && e.filter == filter {
            return (e.set, e.count)
        }
        return nil
    }

    mutating func store(filter: Filter?, namespace: String, version: UInt64, set: Bitset, count: Int) {
        entries.removeAll { $0.version != version }
        if entries.count == Self.capacity { entries.removeFirst() }
        entries.append((filter, namespace, version, set, count))
    }
}
