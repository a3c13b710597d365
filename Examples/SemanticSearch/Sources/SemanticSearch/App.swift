import Foundation
import Hummingbird
import Lodestone
import LodestoneService
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle

/// Semantic search over the PyPI sample: loads the embeddings into a
/// Lodestone index on first start (later starts map the persisted index in
/// milliseconds), serves search, writes and Prometheus metrics, and on
/// SIGTERM/SIGINT finishes its requests, persists and exits 0.
@main
struct SemanticSearchApp {
    static func main() async throws {
        let options = try Options(CommandLine.arguments.dropFirst())
        if !options.swiftExecutor {
            // Async code runs on NIO's event loops (Hummingbird's, by
            // default the same singleton group), so a request does not hop
            // between them and Swift's global pool: measured 15-25% more
            // requests/s and a lower tail (docs/service.md). Lodestone's
            // writes still wait on its own threads, never on these.
            NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        }
        let logger = {
            var logger = Logger(label: "semantic-search")
            logger.logLevel = options.logLevel
            return logger
        }()

        // Prometheus for every metric, Lodestone's included (bootstrap once, first).
        let registry = PrometheusCollectorRegistry()
        var metricsFactory = PrometheusMetricsFactory(registry: registry)
        metricsFactory.durationHistogramBuckets["lodestone_query_duration_seconds"] =
            [50, 100, 200, 400, 800, 1_600, 3_200, 6_400].map { Duration.microseconds($0) }
        metricsFactory.valueHistogramBuckets["lodestone_query_ef"] = [16, 32, 64, 100, 128, 200, 256, 512]
        MetricsSystem.bootstrap(metricsFactory)

        let lodestone = try LodestoneService(
            configuration: .init(path: options.databasePath, durability: .groupCommit),
            logger: logger)
        let packages = try await openOrLoad(lodestone, options: options, logger: logger)

        let router = Router()
        SearchAPI(index: packages, service: lodestone, registry: registry).register(on: router)
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "semantic-search"),
            onServerRunning: { channel in
                logger.info("listening", metadata: ["port": "\(channel.localAddress?.port ?? 0)"])
            },
            logger: logger)

        // The service first: a group stops its services in reverse order, so
        // the server drains its requests before Lodestone persists and closes.
        let group = ServiceGroup(configuration: .init(
            services: [lodestone, app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// The `packages` index: opened if persisted, else created and filled
    /// from the data directory (vectors, then metadata with the summary text).
    static func openOrLoad(_ lodestone: LodestoneService, options: Options, logger: Logger) async throws -> ServiceIndex {
        let start = ContinuousClock.now
        if lodestone.database.listIndexes().contains("packages") {
            let index = try await lodestone.index("packages", embeddingModel: "all-MiniLM-L6-v2")
            let records = try index.index.count()
            logger.info("opened the persisted index", metadata: [
                "records": "\(records)", "seconds": "\(ContinuousClock.now - start)",
            ])
            return index
        }
        let vectors = try VectorFiles.readFloats(options.dataFile("base.fvecs"))
        let lines = try String(contentsOfFile: options.dataFile("base_meta.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        let count = min(vectors.rows, lines.count, options.limit ?? .max)
        // The quantized walk: the fastest layout at this recall (docs/benchmarks.md).
        let options = IndexOptions(kind: .hnsw, hnsw: HNSWParameters(traversal: options.traversal))
        let index = try await lodestone.createIndex(name: "packages", dimension: vectors.dimension, metric: .cosine,
                                                    embeddingModel: "all-MiniLM-L6-v2", options: options)
        var batch: [Record] = []
        for row in 0..<count {
            var metadata = try Metadata.from(json: JSONValue.parse(String(lines[row])))
            guard case let .string(id)? = metadata.removeValue(forKey: "id") else {
                throw ExampleError("line \(row + 1) of base_meta.jsonl has no string \"id\"")
            }
            batch.append(Record(id: id, values: vectors.row(row), metadata: metadata))
            if batch.count == 2_000 || row == count - 1 {
                try await index.upsert(batch, threads: ProcessInfo.processInfo.activeProcessorCount)
                batch.removeAll(keepingCapacity: true)
            }
        }
        try await index.persist()
        logger.info("built the index", metadata: ["records": "\(count)", "seconds": "\(ContinuousClock.now - start)"])
        return index
    }
}

/// Command-line options: `--data DIR` (a directory holding base.fvecs and
/// base_meta.jsonl: ../shared/data/pypi-minilm or the repository's Data/),
/// `--db DIR` (where the index lives), `--small` (the data's small_* files),
/// `--limit N`, `--exact` (build with the exact walk, not the quantized
/// one), `--swift-executor` (keep Swift's global executor instead of NIO's
/// event loops), `--host`, `--port` (0: any free port), `--log-level`.
struct Options {
    var dataDirectory = "Data"
    var databasePath = "semantic-search.db"
    var small = false
    var limit: Int?
    var host = "127.0.0.1"
    var port = 8080
    var logLevel = Logger.Level.info
    var traversal = HNSWParameters.Traversal.quantized
    var swiftExecutor = false

    init(_ arguments: ArraySlice<String>) throws {
        var it = arguments.makeIterator()
        func value(_ flag: String) throws -> String {
            guard let v = it.next() else { throw ExampleError("\(flag) needs a value") }
            return v
        }
        while let flag = it.next() {
            switch flag {
            case "--data": dataDirectory = try value(flag)
            case "--db": databasePath = try value(flag)
            case "--small": small = true
            case "--exact": traversal = .exact
            case "--swift-executor": swiftExecutor = true
            case "--limit": limit = Int(try value(flag))
            case "--host": host = try value(flag)
            case "--port":
                guard let p = Int(try value(flag)) else { throw ExampleError("--port needs a number") }
                port = p
            case "--log-level":
                guard let level = Logger.Level(rawValue: try value(flag)) else {
                    throw ExampleError("--log-level: trace, debug, info, notice, warning, error or critical")
                }
                logLevel = level
            default: throw ExampleError("unknown option \(flag)")
            }
        }
    }

    func dataFile(_ name: String) -> String {
        dataDirectory + "/" + (small ? "small_" + name : name)
    }
}

struct ExampleError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
