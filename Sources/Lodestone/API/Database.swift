import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An embedded database: a directory of named indexes, one subdirectory
/// each.
///
/// ```swift
/// let db = try Database(path: "vectors.lodestone")
/// let index = try db.createIndex(name: "docs", dimension: 384, metric: .cosine,
///                                embeddingModel: "all-MiniLM-L6-v2")
/// try index.upsert([Record(id: "a", values: v, metadata: ["year": .number(2024)])])
/// let hits = try index.query(vector: q, topK: 10, filter: try Filter(json: #"{"year": {"$gte": 2020}}"#))
/// ```
///
/// A `Database` keeps one open ``Index`` per name and hands the same
/// instance to every caller; it is safe to share between threads. Two
/// `Database` values on the same path in one process share their indexes
/// too. One process at a time may open an index (a `LOCK` file guards it):
/// another process gets ``LodestoneError/directoryLocked(path:inThisProcess:)``.
/// Any number of processes may instead open a database read-only
/// (`readOnly: true`): they share each index's mapped segment pages (one
/// copy in memory however many processes serve it) while no process has
/// it open for writing.
public final class Database: Sendable {
    /// The directory.
    public let path: String
    /// Whether indexes open read-only (searches, fetches, listing, stats;
    /// every write throws ``LodestoneError/readOnly(name:)``).
    public let isReadOnly: Bool
    private let open = Locked<[String: Index]>([:])

    /// Opens the database at `path`: for writing (creating the directory if
    /// missing), or `readOnly` (the directory must exist; nothing in it is
    /// changed, and other read-only processes may open it at the same time).
    public init(path: String, readOnly: Bool = false) throws(LodestoneError) {
        self.path = path
        self.isReadOnly = readOnly
        if readOnly {
            guard SystemCalls.exists(path) else { throw .io(path: path, operation: "open", errno: errno) }
        } else {
            try DurableStore.makeDirectory(path)
        }
    }

    private func checkWritable(_ name: String) throws(LodestoneError) {
        if isReadOnly { throw .readOnly(name: name) }
    }

    /// Whether `name` is a valid index name: 1-45 characters, lowercase
    /// letters, digits and hyphens, starting and ending with a letter or
    /// digit (Pinecone's rule).
    public static func isValidName(_ name: String) -> Bool {
        let chars = Array(name.utf8)
        guard (1...45).contains(chars.count) else { return false }
        func alnum(_ c: UInt8) -> Bool { (c >= 97 && c <= 122) || (c >= 48 && c <= 57) }
        return chars.allSatisfy { alnum($0) || $0 == 45 } && alnum(chars.first!) && alnum(chars.last!)
    }

    private func checkName(_ name: String) throws(LodestoneError) {
        guard Self.isValidName(name) else {
            throw .invalidArgument(name: "index name", reason: "\"\(name)\": use 1-45 lowercase letters, digits and "
                                   + "hyphens, starting and ending with a letter or digit")
        }
    }

    private func directory(_ name: String) -> String { path + "/" + name }

    private func exists(_ name: String) -> Bool { SystemCalls.exists(directory(name) + "/" + Manifest.fileName) }

    /// Creates an empty index.
    /// - Throws: ``LodestoneError/indexAlreadyExists(name:)``, or
    ///   ``LodestoneError/invalidArgument(name:reason:)`` for a bad name,
    ///   dimension or option.
    @discardableResult
    public func createIndex(name: String, dimension: Int, metric: Metric, embeddingModel: String = "",
                            options: IndexOptions = IndexOptions()) throws(LodestoneError) -> Index {
        try checkName(name)
        try checkWritable(name)
        if options.kind == .sparse {
            guard dimension == 0, metric == .dotProduct else {
                throw .invalidArgument(name: options.kind == .sparse && dimension != 0 ? "dimension" : "metric",
                                       reason: "a sparse index has dimension 0 and the dot-product metric "
                                       + "(createSparseIndex(name:) sets both)")
            }
        } else {
            guard (1...65_536).contains(dimension) else {
                throw .invalidArgument(name: "dimension", reason: "must be in 1...65536, got \(dimension)")
            }
        }
        if let field = options.textField, field.isEmpty || field.utf8.count > Index.maximumTextFieldBytes {
            throw .invalidArgument(name: "textField", reason: "a metadata key of 1 to \(Index.maximumTextFieldBytes) "
                                   + "bytes, got \(field.utf8.count)")
        }
        return try open.withLock { (open: inout [String: Index]) throws(LodestoneError) -> Index in
            guard open[name] == nil, !exists(name) else { throw .indexAlreadyExists(name: name) }
            // A sparse index's records keep a one-component placeholder vector.
            let settings = Index.Settings(kind: options.kind, dimension: max(dimension, 1), metric: metric,
                                          model: embeddingModel, parameters: options.hnsw, textField: options.textField)
            let index = try OpenIndexes.index(in: directory(name)) { () throws(LodestoneError) -> Index in
                try Index.create(name: name, directory: directory(name), settings: settings,
                                 durability: options.durability)
            }
            open[name] = index
            return index
        }
    }

    /// Creates an empty sparse index (Pinecone's `vector_type: sparse`):
    /// records carry ``Record/sparseValues`` and empty `values`, queries a
    /// `sparseVector`, scores are dot products. `options.durability`
    /// applies; its kind and graph parameters are not used.
    @discardableResult
    public func createSparseIndex(name: String, embeddingModel: String = "", options: IndexOptions = IndexOptions())
        throws(LodestoneError) -> Index
    {
        var sparse = options
        sparse.kind = .sparse
        return try createIndex(name: name, dimension: 0, metric: .dotProduct, embeddingModel: embeddingModel,
                               options: sparse)
    }

    /// The index named `name` (opened on first use).
    /// - Parameters:
    ///   - name: the index's name.
    ///   - embeddingModel: when given, must be the model the index was built
    ///     with (else ``LodestoneError/embeddingModelMismatch(expected:actual:)``).
    ///   - durability: for writes through this instance, when this call opens it.
    /// - Throws: ``LodestoneError/indexNotFound(name:)``.
    public func index(_ name: String, embeddingModel: String? = nil, durability: Durability = .synchronous)
        throws(LodestoneError) -> Index
    {
        try checkName(name)
        let index = try open.withLock { (open: inout [String: Index]) throws(LodestoneError) -> Index in
            if let index = open[name], index.isOpen { return index }
            guard exists(name) else { throw .indexNotFound(name: name) }
            // Another Database in this process may have it open: share it
            // (a writer's instance serves a reader; a reader's cannot write).
            let index = try OpenIndexes.index(in: directory(name)) { () throws(LodestoneError) -> Index in
                let index = try Index.open(name: name, directory: directory(name), durability: durability,
                                           readOnly: isReadOnly)
                // Refused for another model: not left open (holding the lock).
                if let embeddingModel, embeddingModel != index.embeddingModel {
                    try? index.close(persist: false)
                    throw .embeddingModelMismatch(expected: index.embeddingModel, actual: embeddingModel)
                }
                return index
            }
            // One instance per directory in a process: a read-only database
            // cannot hand out the writer's (writes would go through it), nor
            // a writable one the readers'.
            if index.isReadOnly != isReadOnly {
                throw .directoryLocked(path: directory(name), inThisProcess: true)
            }
            open[name] = index
            return index
        }
        if let embeddingModel, embeddingModel != index.embeddingModel {
            throw .embeddingModelMismatch(expected: index.embeddingModel, actual: embeddingModel)
        }
        return index
    }

    /// Creates index `name` from a snapshot that ``Index/snapshot(to:)-1mwn9``
    /// wrote, without re-inserting anything: the snapshot's segment is
    /// hard-linked (or copied) and opened. The snapshot stays as it was.
    /// - Throws: ``LodestoneError/indexAlreadyExists(name:)``, or
    ///   ``LodestoneError/invalidArgument(name:reason:)`` when `directory`
    ///   is not a snapshot.
    @discardableResult
    public func restoreIndex(name: String, from directory: String, durability: Durability = .synchronous)
        throws(LodestoneError) -> Index
    {
        try checkName(name)
        try checkWritable(name)
        return try open.withLock { (open: inout [String: Index]) throws(LodestoneError) -> Index in
            guard open[name] == nil, !exists(name) else { throw .indexAlreadyExists(name: name) }
            try DurableStore.restore(from: directory, into: self.directory(name))
            let index: Index
            do throws(LodestoneError) {
                index = try OpenIndexes.index(in: self.directory(name)) { () throws(LodestoneError) -> Index in
                    try Index.open(name: name, directory: self.directory(name), durability: durability)
                }
            } catch {
                // Not left behind half made: no MANIFEST, no index of that name.
                try? DurableStore.remove(directory: self.directory(name))
                throw error
            }
            open[name] = index
            return index
        }
    }

    /// The names of the indexes, sorted.
    public func listIndexes() -> [String] {
        DurableStore.directoryEntries(path).filter { Self.isValidName($0) && exists($0) }.sorted()
    }

    /// An index's dimension, metric, model, kind, record count, size on disk
    /// and fingerprint.
    public func describeIndex(_ name: String) throws(LodestoneError) -> IndexDescription {
        let index = try index(name)
        var bytes = 0
        for file in DurableStore.directoryEntries(directory(name)) {
            bytes += StorageIO.fileSize(directory(name) + "/" + file) ?? 0
        }
        return IndexDescription(name: name, dimension: index.dimension, metric: index.metric,
                                embeddingModel: index.embeddingModel, kind: index.kind, recordCount: index.count,
                                diskBytes: bytes, residentBytesPerVector: index.residentBytesPerVector, ready: true,
                                fingerprint: index.vectorFingerprint, textField: index.textField)
    }

    /// Closes every index this database has opened
    /// (``Index/close(persist:)-4g3lv``: by default each first persists what its
    /// log holds, so the next open replays nothing). The database stays
    /// usable: ``index(_:embeddingModel:durability:)-arf2`` opens an index again.
    /// - Throws: the first error met; an index that failed to close stays
    ///   open, and the others are closed regardless.
    public func close(persist: Bool = true) throws(LodestoneError) {
        let indexes = open.withLock { Array($0) }
        var firstError: LodestoneError? = nil
        for (name, index) in indexes where !index.isClosed {
            do throws(LodestoneError) {
                try index.close(persist: persist)
                open.withLock { if $0[name] === index { $0[name] = nil } }
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
    }

    /// Deletes an index and its files. Queries already running on it
    /// finish; later calls on it throw ``LodestoneError/indexNotFound(name:)``.
    public func deleteIndex(_ name: String) throws(LodestoneError) {
        try checkName(name)
        try checkWritable(name)
        try open.withLock { (open: inout [String: Index]) throws(LodestoneError) in
            guard open[name] != nil || exists(name) else { throw .indexNotFound(name: name) }
            if let index = open.removeValue(forKey: name) {
                // Wait for its writer, so no write lands in a deleted directory.
                try index.store.write { (_: ([UInt8]) throws(LodestoneError) -> Void) throws(LodestoneError) in
                    index.markDropped()
                }
                index.store.releaseLock()
            }
            // Under the directory's lock: an index another process has open
            // is refused (directoryLocked), not deleted under it.
            try DurableStore.remove(directory: directory(name))
        }
    }
}
