#if ServiceIntegration
import Lodestone
import Metrics
import Synchronization

/// The metrics of one index, made once when the service opens it (a
/// metric's handle is looked up in the factory at creation, never per call).
/// Every name, its kind and its dimensions are listed in the LodestoneService
/// documentation (`Metrics.md`); all carry the dimension `index`.
final class IndexMetrics: Sendable {
    /// The calls the service measures; the raw value names them in the
    /// `operation` dimension and in span names (`lodestone.<operation>`).
    enum Operation: String, Sendable, CaseIterable {
        case query, queryBatch = "query_batch", fetch, upsert, update, delete, deleteAll = "delete_all", persist

        /// `lodestone.` and the raw value, as literals: no string is built per call.
        var spanName: String {
            switch self {
            case .query: "lodestone.query"
            case .queryBatch: "lodestone.query_batch"
            case .fetch: "lodestone.fetch"
            case .upsert: "lodestone.upsert"
            case .update: "lodestone.update"
            case .delete: "lodestone.delete"
            case .deleteAll: "lodestone.delete_all"
            case .persist: "lodestone.persist"
            }
        }
    }

    let factory: any MetricsFactory
    let index: String
    let queries: Counter
    let queryDuration: Timer
    let queryEf: Recorder
    let batchQueries: Counter
    private let operations: [Operation: (count: Counter, duration: Timer)]
    let upsertedRecords: Counter
    let deletedRecords: Counter
    private let errors = Mutex<[String: Counter]>([:])

    // Read from Index.activity on each collection, as deltas since the last.
    private let logSyncs: Counter
    private let logSyncSeconds: FloatingPointCounter
    private let segmentPersists: Counter
    private let deltaPersists: Counter
    private let persistSeconds: FloatingPointCounter
    private let compactions: Counter
    private let records: Gauge
    private let logBytes: Gauge
    private let vectorBytes: Gauge
    private let last = Mutex(IndexActivity())

    init(index: String, factory: any MetricsFactory) {
        self.factory = factory
        self.index = index
        let d = [("index", index)]
        queries = Counter(label: "lodestone_queries_total", dimensions: d, factory: factory)
        queryDuration = Timer(label: "lodestone_query_duration_seconds", dimensions: d, factory: factory)
        queryEf = Recorder(label: "lodestone_query_ef", dimensions: d, aggregate: true, factory: factory)
        batchQueries = Counter(label: "lodestone_batch_queries_total", dimensions: d, factory: factory)
        var operations: [Operation: (Counter, Timer)] = [:]
        // Single queries have metrics of their own (above).
        for op in Operation.allCases where op != .query {
            let od = d + [("operation", op.rawValue)]
            operations[op] = (Counter(label: "lodestone_operations_total", dimensions: od, factory: factory),
                          Timer(label: "lodestone_operation_duration_seconds", dimensions: od, factory: factory))
        }
        self.operations = operations
        upsertedRecords = Counter(label: "lodestone_upserted_records_total", dimensions: d, factory: factory)
        deletedRecords = Counter(label: "lodestone_deleted_records_total", dimensions: d, factory: factory)
        logSyncs = Counter(label: "lodestone_log_syncs_total", dimensions: d, factory: factory)
        logSyncSeconds = FloatingPointCounter(label: "lodestone_log_sync_seconds_total", dimensions: d, factory: factory)
        segmentPersists = Counter(label: "lodestone_persists_total", dimensions: d + [("kind", "segment")], factory: factory)
        deltaPersists = Counter(label: "lodestone_persists_total", dimensions: d + [("kind", "delta")], factory: factory)
        persistSeconds = FloatingPointCounter(label: "lodestone_persist_seconds_total", dimensions: d, factory: factory)
        compactions = Counter(label: "lodestone_compactions_total", dimensions: d, factory: factory)
        records = Gauge(label: "lodestone_records", dimensions: d, factory: factory)
        logBytes = Gauge(label: "lodestone_log_bytes", dimensions: d, factory: factory)
        vectorBytes = Gauge(label: "lodestone_vector_bytes", dimensions: d, factory: factory)
    }

    /// Records a completed call other than a single query.
    func completed(_ operation: Operation, nanoseconds: Int64) {
        guard let w = operations[operation] else { return }
        w.count.increment()
        w.duration.recordNanoseconds(nanoseconds)
    }

    /// Counts a failed call by operation and error kind (both few: the
    /// dimension stays small).
    func failed(_ operation: Operation, _ error: LodestoneError) {
        let key = operation.rawValue + "/" + error.metricName
        let counter = errors.withLock { counters in
            if let c = counters[key] { return c }
            let c = Counter(label: "lodestone_errors_total",
                            dimensions: [("index", index), ("operation", operation.rawValue), ("error", error.metricName)],
                            factory: factory)
            counters[key] = c
            return c
        }
        counter.increment()
    }

    /// Brings the counters read from `activity` up to date and sets the gauges.
    func collect(_ activity: IndexActivity) {
        let before = last.withLock { last in
            let before = last
            last = activity
            return before
        }
        // The index counts from its open; a smaller value means it was reopened.
        func delta(_ now: Int, _ then: Int) -> Int { now >= then ? now - then : now }
        func delta(_ now: Double, _ then: Double) -> Double { now >= then ? now - then : now }
        logSyncs.increment(by: delta(activity.logSyncs, before.logSyncs))
        logSyncSeconds.increment(by: delta(activity.logSyncSeconds, before.logSyncSeconds))
        deltaPersists.increment(by: delta(activity.deltaPersists, before.deltaPersists))
        segmentPersists.increment(by: delta(activity.persists - activity.deltaPersists,
                                            before.persists - before.deltaPersists))
        persistSeconds.increment(by: delta(activity.persistSeconds, before.persistSeconds))
        compactions.increment(by: delta(activity.compactions, before.compactions))
        records.record(activity.recordCount)
        logBytes.record(activity.logBytes)
        vectorBytes.record(activity.vectorBytes)
    }
}

extension LodestoneError {
    /// The error's kind in snake case, for the `error` dimension.
    var metricName: String {
        switch self {
        case .dimensionMismatch: "dimension_mismatch"
        case .nonFiniteComponent: "non_finite_component"
        case .zeroVector: "zero_vector"
        case .invalidArgument: "invalid_argument"
        case .emptyIndex: "empty_index"
        case .keyNotFound: "key_not_found"
        case .duplicateKey: "duplicate_key"
        case .malformedFile: "malformed_file"
        case .corruptSegment: "corrupt_segment"
        case .unsupportedFormatVersion: "unsupported_format_version"
        case .invalidFilter: "invalid_filter"
        case .invalidMetadata: "invalid_metadata"
        case .io: "io"
        case .indexNotFound: "index_not_found"
        case .indexAlreadyExists: "index_already_exists"
        case .indexClosed: "index_closed"
        case .directoryLocked: "directory_locked"
        case .embeddingModelMismatch: "embedding_model_mismatch"
        case .invalidID: "invalid_id"
        case .recordNotFound: "record_not_found"
        case .malformedLine: "malformed_line"
        case .readOnly: "read_only"
        case .cancelled: "cancelled"
        }
    }
}
#endif
