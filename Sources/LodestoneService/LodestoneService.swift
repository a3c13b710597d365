#if ServiceIntegration
import Lodestone
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import Tracing

/// A swift-service-lifecycle `Service` that owns a Lodestone `Database` for
/// a Swift server: it hands out instrumented index handles
/// (``ServiceIndex``), exports what the indexes do as swift-metrics metrics
/// (listed in <doc:Metrics>), and on graceful shutdown refuses new writes,
/// persists every open index and closes the database, so the next start
/// maps segments instead of replaying logs.
///
/// Put it in a `ServiceGroup` *before* the HTTP server: a group shuts its
/// services down in reverse order, so the server stops taking requests and
/// finishes those in flight before this service closes the indexes.
///
/// ```swift
/// let lodestone = try LodestoneService(configuration: .init(path: "data"), logger: logger)
/// let products = try await lodestone.index("products")
/// // ... handlers call products.query(...) and try await products.upsert(...)
/// let group = ServiceGroup(services: [lodestone, app], gracefulShutdownSignals: [.sigterm, .sigint],
///                          logger: logger)
/// try await group.run()
/// ```
public final class LodestoneService: Service, Sendable {
    /// How the service opens and watches its database.
    public struct Configuration: Sendable {
        /// The database's directory (created if missing).
        public var path: String
        /// Open the database and its indexes read-only (another process writes).
        public var readOnly: Bool
        /// How writes reach the disk, for every index the service opens.
        public var durability: Durability
        /// Persist each open index at shutdown (its log folded into its
        /// files). Without it nothing acknowledged is lost either: the next
        /// open replays the log, which takes longer.
        public var persistOnShutdown: Bool
        /// How often ``run()`` reads each index's activity (log syncs,
        /// persists, sizes) into the metrics. Query and write metrics are
        /// recorded as they happen.
        public var metricsInterval: Duration
        /// Where metrics go; nil: the factory bootstrapped in `MetricsSystem`.
        public var metricsFactory: (any MetricsFactory)?
        /// Where spans go; nil: the tracer bootstrapped in `InstrumentationSystem`.
        public var tracer: (any Tracer)?

        /// Creates a configuration (defaults: read-write, synchronous
        /// durability, persist on shutdown, activity read every 5 seconds,
        /// the bootstrapped metrics factory and tracer).
        public init(path: String, readOnly: Bool = false, durability: Durability = .synchronous,
                    persistOnShutdown: Bool = true, metricsInterval: Duration = .seconds(5),
                    metricsFactory: (any MetricsFactory)? = nil, tracer: (any Tracer)? = nil) {
            self.path = path
            self.readOnly = readOnly
            self.durability = durability
            self.persistOnShutdown = persistOnShutdown
            self.metricsInterval = metricsInterval
            self.metricsFactory = metricsFactory
            self.tracer = tracer
        }
    }

    /// The database, for calls the service does not wrap (listing,
    /// describing, deleting indexes, imports).
    public let database: Database
    /// The configuration the service was made with.
    public let configuration: Configuration
    /// The logger the service and its index handles log to.
    public var logger: Logger { instruments.logger }

    let instruments: Instruments
    private let factory: any MetricsFactory
    private let handles = Mutex<[String: ServiceIndex]>([:])
    private let shutDown = Atomic<Bool>(false)

    /// Opens (or creates) the database at `configuration.path`; indexes
    /// open on first use (``index(_:embeddingModel:)``).
    /// - Throws: `LodestoneError.io` when the directory cannot be created
    ///   or read.
    public init(configuration: Configuration, logger: Logger = Logger(label: "lodestone")) throws(LodestoneError) {
        self.database = try Database(path: configuration.path, readOnly: configuration.readOnly)
        self.configuration = configuration
        self.instruments = Instruments(logger: logger, tracer: configuration.tracer)
        self.factory = configuration.metricsFactory ?? MetricsSystem.factory
    }

    /// The handle of index `name`, opening it (off the cooperative pool)
    /// on first use; later calls return the same handle.
    /// - Throws: `LodestoneError.indexNotFound` when there is no such index,
    ///   `LodestoneError.embeddingModelMismatch` when `embeddingModel` is
    ///   given and differs from the index's, `LodestoneError.indexClosed`
    ///   once the service has shut down.
    public func index(_ name: String, embeddingModel: String? = nil) async throws(LodestoneError) -> ServiceIndex {
        if let handle = handles.withLock({ $0[name] }), handle.index.isOpen {
            if let embeddingModel, embeddingModel != handle.index.embeddingModel {
                throw .embeddingModelMismatch(expected: handle.index.embeddingModel, actual: embeddingModel)
            }
            return handle
        }
        guard !shutDown.load(ordering: .acquiring) else { throw .indexClosed(name: name) }
        let index = try await database.index(name, embeddingModel: embeddingModel, durability: configuration.durability)
        return adopt(index)
    }

    /// Creates index `name` (off the cooperative pool) and returns its handle.
    /// `options.durability` is replaced by the service's.
    /// - Throws: `LodestoneError.indexAlreadyExists`, `LodestoneError.invalidArgument`
    ///   (a bad name, dimension or parameter), `LodestoneError.readOnly`.
    public func createIndex(name: String, dimension: Int, metric: Metric, embeddingModel: String = "",
                            options: IndexOptions = IndexOptions()) async throws(LodestoneError) -> ServiceIndex {
        guard !shutDown.load(ordering: .acquiring) else { throw .indexClosed(name: name) }
        var options = options
        options.durability = configuration.durability
        let index = try await database.createIndex(name: name, dimension: dimension, metric: metric,
                                                   embeddingModel: embeddingModel, options: options)
        instruments.logger.info("lodestone index created", metadata: [
            "index": "\(name)", "dimension": "\(dimension)", "metric": "\(metric)", "kind": "\(options.kind)",
        ])
        return adopt(index)
    }

    private func adopt(_ index: Index) -> ServiceIndex {
        handles.withLock { handles in
            if let handle = handles[index.name], handle.index === index { return handle }
            let handle = ServiceIndex(index: index, metrics: IndexMetrics(index: index.name, factory: factory),
                                      instruments: instruments)
            handles[index.name] = handle
            return handle
        }
    }

    /// Reads every open index's activity into the metrics (``run()`` does
    /// this every `metricsInterval`; call it before a scrape for figures of
    /// this instant).
    public func collectMetrics() { collect(closedToo: false) }

    /// Reads the activity of the open indexes (and, `closedToo`, of those
    /// closed since: their last persists) into the metrics.
    private func collect(closedToo: Bool) {
        for handle in handles.withLock({ Array($0.values) }) where closedToo || handle.index.isOpen {
            handle.metrics.collect(handle.index.activity)
        }
    }

    /// Runs until graceful shutdown (or cancellation), reading the indexes'
    /// activity into the metrics every `metricsInterval`; then shuts down
    /// (``shutdown()``).
    public func run() async throws {
        instruments.logger.info("lodestone service started", metadata: [
            "path": "\(configuration.path)", "read_only": "\(configuration.readOnly)",
            "durability": "\(configuration.durability)",
        ])
        let interval = configuration.metricsInterval
        do {
            try await cancelWhenGracefulShutdown { [self] in
                while true {
                    collectMetrics()
                    try await Task.sleep(for: interval)
                }
            }
        } catch is CancellationError {
            // Graceful shutdown (or the group cancelled us): close below either way.
        }
        try await shutdown()
    }

    /// Refuses writes from now on (they throw `LodestoneError.indexClosed`),
    /// lets writes already running finish, persists every open index
    /// (unless `persistOnShutdown` is false) and closes the database.
    /// Queries on handles also fail once their index is closed. Runs once;
    /// later calls return at once.
    /// - Throws: the first error a persist or close met (the other indexes
    ///   are closed regardless; nothing acknowledged is lost: it is in the log).
    public func shutdown() async throws(LodestoneError) {
        guard !shutDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        instruments.closeWrites()
        let open = handles.withLock { $0.values.filter { $0.index.isOpen }.map(\.name) }.sorted()
        let persist = configuration.persistOnShutdown && !configuration.readOnly
        instruments.logger.info("lodestone service shutting down: writes refused", metadata: [
            "indexes": "\(open)", "persist": "\(persist)",
        ])
        let start = ContinuousClock.now
        do {
            try await database.close(persist: persist)
        } catch {
            collect(closedToo: true)
            instruments.logger.error("lodestone service could not close cleanly", metadata: ["error": "\(error)"])
            throw error
        }
        collect(closedToo: true)  // the counters are cumulative: this includes the closing persists
        instruments.logger.info("lodestone service stopped", metadata: [
            "seconds": "\(Double(Instruments.nanoseconds(since: start)) / 1e9)",
        ])
    }
}
#endif
