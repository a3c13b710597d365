#if ServiceIntegration
import Lodestone
import Logging
import Tracing

/// An index opened through a ``LodestoneService``: the calls a service makes
/// on an `Index`, each counted and timed in metrics, wrapped in a tracing
/// span (`lodestone.query`, `lodestone.upsert`, ...; a child of the task's
/// current span) and logged when it fails. Writes are refused with
/// `LodestoneError.indexClosed(name:)` once the service has begun to shut
/// down. Anything not wrapped here is on ``index``.
///
/// Single queries and fetches are synchronous: they take microseconds and
/// are safe on any thread, an event loop's included. Writes, batches and
/// persists are `async` and run on Lodestone's own threads (see the async
/// twins on `Index`), so a write waiting for `fdatasync` never holds a
/// thread of the cooperative pool.
public struct ServiceIndex: Sendable {
    /// The index itself, for calls not wrapped here (their metrics and spans
    /// are the caller's to add).
    public let index: Index
    let metrics: IndexMetrics
    let instruments: Instruments

    /// The index's name.
    public var name: String { index.name }

    /// Components per vector.
    public var dimension: Int { index.dimension }

    // MARK: Reads

    /// `Index.query(vector:topK:namespace:filter:includeValues:includeMetadata:ef:explain:embeddingModel:)`,
    /// measured: `lodestone_queries_total`, `lodestone_query_duration_seconds`
    /// and `lodestone_query_ef` (the beam width asked for, or the index's
    /// default; HNSW only).
    public func query(vector: [Float], topK: Int, namespace: String = "", filter: Filter? = nil,
                      includeValues: Bool = false, includeMetadata: Bool = false, ef: Int? = nil,
                      embeddingModel: String? = nil) throws(LodestoneError) -> QueryResponse {
        try measuredQuery(topK: topK, filtered: filter != nil, ef: ef) { () throws(LodestoneError) in
            try index.query(vector: vector, topK: topK, namespace: namespace, filter: filter,
                            includeValues: includeValues, includeMetadata: includeMetadata, ef: ef,
                            embeddingModel: embeddingModel)
        }
    }

    /// `Index.query(id:topK:namespace:filter:includeValues:includeMetadata:ef:explain:)`,
    /// measured as ``query(vector:topK:namespace:filter:includeValues:includeMetadata:ef:embeddingModel:)``.
    public func query(id: String, topK: Int, namespace: String = "", filter: Filter? = nil,
                      includeValues: Bool = false, includeMetadata: Bool = false, ef: Int? = nil)
        throws(LodestoneError) -> QueryResponse
    {
        try measuredQuery(topK: topK, filtered: filter != nil, ef: ef) { () throws(LodestoneError) in
            try index.query(id: id, topK: topK, namespace: namespace, filter: filter,
                            includeValues: includeValues, includeMetadata: includeMetadata, ef: ef)
        }
    }

    /// `Index.query(vector:sparseVector:topK:namespace:filter:fusion:includeValues:includeMetadata:ef:explain:embeddingModel:)`
    /// (sparse or hybrid), measured as ``query(vector:topK:namespace:filter:includeValues:includeMetadata:ef:embeddingModel:)``.
    public func query(vector: [Float]? = nil, sparseVector: SparseVector, topK: Int, namespace: String = "",
                      filter: Filter? = nil, fusion: HybridFusion = .sum, includeValues: Bool = false,
                      includeMetadata: Bool = false, ef: Int? = nil) throws(LodestoneError) -> QueryResponse {
        try measuredQuery(topK: topK, filtered: filter != nil, ef: ef) { () throws(LodestoneError) in
            try index.query(vector: vector, sparseVector: sparseVector, topK: topK, namespace: namespace,
                            filter: filter, fusion: fusion, includeValues: includeValues,
                            includeMetadata: includeMetadata, ef: ef)
        }
    }

    /// `Index.query(text:vector:topK:namespace:filter:fusion:includeValues:includeMetadata:ef:explain:embeddingModel:)`
    /// (BM25 over the index's text field, alone or hybrid), measured as
    /// ``query(vector:topK:namespace:filter:includeValues:includeMetadata:ef:embeddingModel:)``.
    public func query(text: String, vector: [Float]? = nil, topK: Int, namespace: String = "",
                      filter: Filter? = nil, fusion: HybridFusion = .sum, includeValues: Bool = false,
                      includeMetadata: Bool = false, ef: Int? = nil) throws(LodestoneError) -> QueryResponse {
        try measuredQuery(topK: topK, filtered: filter != nil, ef: ef) { () throws(LodestoneError) in
            try index.query(text: text, vector: vector, topK: topK, namespace: namespace, filter: filter,
                            fusion: fusion, includeValues: includeValues, includeMetadata: includeMetadata, ef: ef)
        }
    }

    /// `Index.fetch(ids:namespace:)`, measured (`operation="fetch"`).
    public func fetch(ids: [String], namespace: String = "") throws(LodestoneError) -> [String: Record] {
        try measured(.fetch) { () throws(LodestoneError) in try index.fetch(ids: ids, namespace: namespace) }
    }

    /// The async `Index.queryBatch(vectors:topK:namespace:filter:includeValues:includeMetadata:ef:threads:)`,
    /// measured (`operation="query_batch"`; each query also counts in
    /// `lodestone_batch_queries_total`). Cancelling the task stops it
    /// between blocks with `LodestoneError.cancelled(operation:)`.
    public func queryBatch(vectors: [[Float]], topK: Int, namespace: String = "", filter: Filter? = nil,
                           includeValues: Bool = false, includeMetadata: Bool = false, ef: Int? = nil,
                           threads: Int = Parallelism.defaultThreadCount) async throws(LodestoneError) -> [[Match]] {
        let results = try await measured(.queryBatch) { () async throws(LodestoneError) in
            try await index.queryBatch(vectors: vectors, topK: topK, namespace: namespace, filter: filter,
                                       includeValues: includeValues, includeMetadata: includeMetadata, ef: ef,
                                       threads: threads)
        }
        metrics.batchQueries.increment(by: vectors.count)
        return results
    }

    // MARK: Writes

    /// The async `Index.upsert(_:namespace:embeddingModel:threads:)`,
    /// measured (`operation="upsert"`, `lodestone_upserted_records_total`).
    @discardableResult
    public func upsert(_ records: [Record], namespace: String = "", embeddingModel: String? = nil,
                       threads: Int = 1) async throws(LodestoneError) -> Int {
        let n = try await write(.upsert) { () async throws(LodestoneError) in
            try await index.upsert(records, namespace: namespace, embeddingModel: embeddingModel, threads: threads)
        }
        metrics.upsertedRecords.increment(by: n)
        return n
    }

    /// The async `Index.update(id:values:setMetadata:namespace:)`, measured (`operation="update"`).
    public func update(id: String, values: [Float]? = nil, setMetadata: Metadata? = nil,
                       namespace: String = "") async throws(LodestoneError) {
        try await write(.update) { () async throws(LodestoneError) in
            try await index.update(id: id, values: values, setMetadata: setMetadata, namespace: namespace)
        }
    }

    /// The async `Index.delete(ids:namespace:)`, measured
    /// (`operation="delete"`, `lodestone_deleted_records_total`).
    @discardableResult
    public func delete(ids: [String], namespace: String = "") async throws(LodestoneError) -> Int {
        let n = try await write(.delete) { () async throws(LodestoneError) in
            try await index.delete(ids: ids, namespace: namespace)
        }
        metrics.deletedRecords.increment(by: n)
        return n
    }

    /// The async `Index.delete(filter:namespace:)`, measured
    /// (`operation="delete"`, `lodestone_deleted_records_total`).
    @discardableResult
    public func delete(filter: Filter, namespace: String = "") async throws(LodestoneError) -> Int {
        let n = try await write(.delete) { () async throws(LodestoneError) in
            try await index.delete(filter: filter, namespace: namespace)
        }
        metrics.deletedRecords.increment(by: n)
        return n
    }

    /// The async `Index.deleteAll(namespace:)`, measured
    /// (`operation="delete_all"`, `lodestone_deleted_records_total`).
    @discardableResult
    public func deleteAll(namespace: String = "") async throws(LodestoneError) -> Int {
        let n = try await write(.deleteAll) { () async throws(LodestoneError) in
            try await index.deleteAll(namespace: namespace)
        }
        metrics.deletedRecords.increment(by: n)
        return n
    }

    /// The async `Index.persist(merge:)`, measured (`operation="persist"`).
    public func persist(merge: Bool = false) async throws(LodestoneError) {
        try await write(.persist) { () async throws(LodestoneError) in try await index.persist(merge: merge) }
    }

    // MARK: Measuring

    /// A single query: its span, then `lodestone_queries_total`,
    /// `lodestone_query_duration_seconds` and `lodestone_query_ef` (HNSW).
    private func measuredQuery(topK: Int, filtered: Bool, ef: Int?,
                               _ body: () throws(LodestoneError) -> QueryResponse) throws(LodestoneError) -> QueryResponse {
        let span = instruments.startSpan(.query, index: name)
        defer { span?.end() }
        span?.attributes["lodestone.top_k"] = topK
        span?.attributes["lodestone.filtered"] = filtered
        let start = ContinuousClock.now
        do {
            let response = try body()
            metrics.queries.increment()
            metrics.queryDuration.recordNanoseconds(Instruments.nanoseconds(since: start))
            if index.kind == .hnsw { metrics.queryEf.record(ef ?? index.parameters.efSearch) }
            return response
        } catch {
            throw failed(.query, error, span: span)
        }
    }

    private func failed(_ operation: IndexMetrics.Operation, _ error: LodestoneError, span: (any Span)?)
        -> LodestoneError
    {
        metrics.failed(operation, error)
        span?.recordError(error)
        span?.setStatus(SpanStatus(code: .error))
        // A client's mistake is routine (debug); a failure of the store is not.
        let level: Logger.Level = error.isStorageFailure ? .error : .debug
        instruments.logger.log(level: level, "lodestone \(operation.rawValue) failed",
                               metadata: ["index": "\(name)", "error": "\(error)"])
        return error
    }

    private func measured<T>(_ operation: IndexMetrics.Operation, _ body: () throws(LodestoneError) -> T)
        throws(LodestoneError) -> T
    {
        let span = instruments.startSpan(operation, index: name)
        defer { span?.end() }
        let start = ContinuousClock.now
        do {
            let result = try body()
            metrics.completed(operation, nanoseconds: Instruments.nanoseconds(since: start))
            return result
        } catch {
            throw failed(operation, error, span: span)
        }
    }

    private func measured<T: Sendable>(_ operation: IndexMetrics.Operation,
                                       _ body: () async throws(LodestoneError) -> T) async throws(LodestoneError) -> T {
        let span = instruments.startSpan(operation, index: name)
        defer { span?.end() }
        let start = ContinuousClock.now
        do {
            let result = try await body()
            metrics.completed(operation, nanoseconds: Instruments.nanoseconds(since: start))
            return result
        } catch {
            throw failed(operation, error, span: span)
        }
    }

    /// A write: refused once shutdown has begun, then measured.
    private func write<T: Sendable>(_ operation: IndexMetrics.Operation,
                                    _ body: () async throws(LodestoneError) -> T) async throws(LodestoneError) -> T {
        guard instruments.acceptsWrites else {
            metrics.failed(operation, .indexClosed(name: name))
            throw .indexClosed(name: name)
        }
        return try await measured(operation, body)
    }
}

extension LodestoneError {
    /// Whether the error reports a failure of the store (disk, damaged
    /// files) rather than a caller's mistake.
    var isStorageFailure: Bool {
        switch self {
        case .io, .corruptSegment, .malformedFile, .unsupportedFormatVersion: true
        default: false
        }
    }
}
#endif
