// The async face of the API, for Swift services: every call that may block
// (a write waits for fdatasync, a persist writes a segment, a batch scans)
// runs on ``BlockingPool``'s threads, never on the cooperative pool an event
// loop shares. Single queries and fetches stay synchronous: they take
// microseconds and are safe on any thread. Each method here has the same
// name and result as its synchronous twin, which in an async context Swift
// picks this one for (with `await`).

extension Index {
    /// ``upsert(_:namespace:embeddingModel:threads:)``, off the cooperative pool.
    @discardableResult
    public func upsert(_ records: [Record], namespace: String = "", embeddingModel: String? = nil,
                       threads: Int = 1) async throws(LodestoneError) -> Int {
        try await BlockingPool.shared.run { () throws(LodestoneError) -> Int in
            try self.upsert(records, namespace: namespace, embeddingModel: embeddingModel, threads: threads)
        }
    }

    /// ``update(id:values:sparseValues:setMetadata:namespace:)``, off the cooperative pool.
    public func update(id: String, values: [Float]? = nil, sparseValues: SparseVector? = nil, setMetadata: Metadata? = nil,
                       namespace: String = "") async throws(LodestoneError) {
        try await BlockingPool.shared.run { () throws(LodestoneError) in
            try self.update(id: id, values: values, sparseValues: sparseValues, setMetadata: setMetadata,
                            namespace: namespace)
        }
    }

    /// ``update(filter:setMetadata:namespace:)``, off the cooperative pool.
    @discardableResult
    public func update(filter: Filter, setMetadata: Metadata, namespace: String = "") async throws(LodestoneError) -> Int {
        try await BlockingPool.shared.run { () throws(LodestoneError) -> Int in
            try self.update(filter: filter, setMetadata: setMetadata, namespace: namespace)
        }
    }

    /// ``delete(ids:namespace:)``, off the cooperative pool.
    @discardableResult
    public func delete(ids: [String], namespace: String = "") async throws(LodestoneError) -> Int {
        try await BlockingPool.shared.run { () throws(LodestoneError) -> Int in try self.delete(ids: ids, namespace: namespace) }
    }

    /// ``delete(filter:namespace:)``, off the cooperative pool.
    @discardableResult
    public func delete(filter: Filter, namespace: String = "") async throws(LodestoneError) -> Int {
        try await BlockingPool.shared.run { () throws(LodestoneError) -> Int in try self.delete(filter: filter, namespace: namespace) }
    }

    /// ``deleteAll(namespace:)``, off the cooperative pool.
    @discardableResult
    public func deleteAll(namespace: String = "") async throws(LodestoneError) -> Int {
        try await BlockingPool.shared.run { () throws(LodestoneError) -> Int in try self.deleteAll(namespace: namespace) }
    }

    /// ``persist(merge:)``, off the cooperative pool.
    public func persist(merge: Bool = false) async throws(LodestoneError) {
        try await BlockingPool.shared.run { () throws(LodestoneError) in try self.persist(merge: merge) }
    }

    /// ``snapshot(to:)``, off the cooperative pool.
    public func snapshot(to directory: String) async throws(LodestoneError) {
        try await BlockingPool.shared.run { () throws(LodestoneError) in try self.snapshot(to: directory) }
    }

    /// ``close(persist:)``, off the cooperative pool.
    public func close(persist: Bool = true) async throws(LodestoneError) {
        try await BlockingPool.shared.run { () throws(LodestoneError) in try self.close(persist: persist) }
    }

    /// ``warm(threads:)``, off the cooperative pool.
    public func warm(threads: Int = Parallelism.defaultThreadCount) async throws(LodestoneError) {
        try await BlockingPool.shared.run { () throws(LodestoneError) in try self.warm(threads: threads) }
    }

    /// ``export(to:progress:shouldStop:)``, off the cooperative pool. Cancelling the
    /// task stops it between records with ``LodestoneError/cancelled(operation:)``;
    /// no file is left behind.
    @discardableResult
    public func export(to path: String, progress: (@Sendable (TransferProgress) -> Void)? = nil)
        async throws(LodestoneError) -> Int
    {
        try await BlockingPool.shared.runCancellable { (flag) throws(LodestoneError) -> Int in
            try self.export(to: path, progress: progress, shouldStop: { flag.isCancelled })
        }
    }

    /// ``queryBatch(vectors:topK:namespace:filter:includeValues:includeMetadata:ef:threads:)``,
    /// off the cooperative pool, in blocks of ``asyncBatchBlock`` queries:
    /// cancelling the task stops it between blocks with
    /// ``LodestoneError/cancelled(operation:)``. The answers equal the
    /// synchronous call's.
    public func queryBatch(vectors: [[Float]], topK: Int, namespace: String = "", filter: Filter? = nil,
                           includeValues: Bool = false, includeMetadata: Bool = false, ef: Int? = nil,
                           threads: Int = Parallelism.defaultThreadCount) async throws(LodestoneError) -> [[Match]] {
        for v in vectors where v.count != rowDimension { throw .dimensionMismatch(expected: rowDimension, actual: v.count) }
        return try await queryBatch(rows: vectors.flatMap { $0 }, topK: topK, namespace: namespace, filter: filter,
                                    includeValues: includeValues, includeMetadata: includeMetadata, ef: ef,
                                    threads: threads)
    }

    /// ``queryBatch(rows:topK:namespace:filter:includeValues:includeMetadata:ef:threads:)``,
    /// off the cooperative pool and cancellable between blocks, as
    /// ``queryBatch(vectors:topK:namespace:filter:includeValues:includeMetadata:ef:threads:)-9gnrr``.
    public func queryBatch(rows: [Float], topK: Int, namespace: String = "", filter: Filter? = nil,
                           includeValues: Bool = false, includeMetadata: Bool = false, ef: Int? = nil,
                           threads: Int = Parallelism.defaultThreadCount) async throws(LodestoneError) -> [[Match]] {
        let d = rowDimension
        return try await BlockingPool.shared.runCancellable { (flag) throws(LodestoneError) -> [[Match]] in
            guard rows.count % d == 0 else { throw .dimensionMismatch(expected: d, actual: rows.count % d) }
            let count = rows.count / d, block = Index.asyncBatchBlock
            var out: [[Match]] = []
            out.reserveCapacity(count)
            var first = 0
            repeat {
                if flag.isCancelled { throw .cancelled(operation: "queryBatch, after \(first) of \(count) queries") }
                let end = min(count, first + block)
                out += try self.queryBatch(rows: Array(rows[(first * d)..<(end * d)]), topK: topK, namespace: namespace,
                                           filter: filter, includeValues: includeValues,
                                           includeMetadata: includeMetadata, ef: ef, threads: threads)
                first = end
            } while first < count
            return out
        }
    }

    /// Queries per block of an async batch: cancellation is noticed
    /// between blocks, and each block is still large enough for BLAS.
    public static let asyncBatchBlock = 4_096
}

extension Database {
    /// Opens (creating if missing) the database at `path`, off the
    /// cooperative pool; see ``init(path:readOnly:)``.
    public static func open(path: String, readOnly: Bool = false) async throws(LodestoneError) -> Database {
        try await BlockingPool.shared.run { () throws(LodestoneError) -> Database in
            try Database(path: path, readOnly: readOnly)
        }
    }

    /// ``index(_:embeddingModel:durability:)`` (opening maps the segment
    /// and replays the log), off the cooperative pool.
    public func index(_ name: String, embeddingModel: String? = nil, durability: Durability = .synchronous)
        async throws(LodestoneError) -> Index
    {
        try await BlockingPool.shared.run { () throws(LodestoneError) -> Index in
            try self.index(name, embeddingModel: embeddingModel, durability: durability)
        }
    }

    /// ``createIndex(name:dimension:metric:embeddingModel:options:)``, off
    /// the cooperative pool.
    public func createIndex(name: String, dimension: Int, metric: Metric, embeddingModel: String = "",
                            options: IndexOptions = IndexOptions()) async throws(LodestoneError) -> Index {
        try await BlockingPool.shared.run { () throws(LodestoneError) -> Index in
            try self.createIndex(name: name, dimension: dimension, metric: metric, embeddingModel: embeddingModel,
                                 options: options)
        }
    }

    /// ``deleteIndex(_:)``, off the cooperative pool.
    public func deleteIndex(_ name: String) async throws(LodestoneError) {
        try await BlockingPool.shared.run { () throws(LodestoneError) in try self.deleteIndex(name) }
    }

    /// ``close(persist:)``, off the cooperative pool.
    public func close(persist: Bool = true) async throws(LodestoneError) {
        try await BlockingPool.shared.run { () throws(LodestoneError) in try self.close(persist: persist) }
    }

    /// ``importRecords(from:into:dimension:metric:embeddingModel:options:skipBadLines:batchSize:progress:shouldStop:)``,
    /// off the cooperative pool. Cancelling the task stops it before its
    /// next batch (every batch stored before stays stored) with
    /// ``LodestoneError/cancelled(operation:)``.
    public func importRecords(from path: String, into name: String, dimension: Int? = nil, metric: Metric = .cosine,
                              embeddingModel: String = "", options: IndexOptions = IndexOptions(),
                              skipBadLines: Bool = false, batchSize: Int = 1_000,
                              progress: (@Sendable (TransferProgress) -> Void)? = nil)
        async throws(LodestoneError) -> ImportReport
    {
        try await BlockingPool.shared.runCancellable { (flag) throws(LodestoneError) -> ImportReport in
            let report = try self.importRecords(from: path, into: name, dimension: dimension, metric: metric,
                                                embeddingModel: embeddingModel, options: options,
                                                skipBadLines: skipBadLines, batchSize: batchSize, progress: progress,
                                                shouldStop: { flag.isCancelled })
            if report.stopped {
                throw .cancelled(operation: "import of \(path) into \(name), after \(report.records) records were stored")
            }
            return report
        }
    }
}
