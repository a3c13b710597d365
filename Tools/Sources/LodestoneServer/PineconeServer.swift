import Dispatch
import HTTPTypes
import Hummingbird
@_spi(LodestoneTools) import Lodestone
import Logging
import NIOCore

/// How `lodestone serve` runs.
public struct ServerConfiguration: Sendable {
    /// The database directory (one subdirectory per index).
    public var database: String
    /// The address to listen on (loopback by default).
    public var host: String
    /// The port: the control plane, and every index's data plane under
    /// `/_data/<index>/`.
    public var port: Int
    /// When set, requests must carry it in `Api-Key` (else 401).
    public var apiKey: String?
    /// The host:port put in index descriptions' `host`; by default the
    /// `Host` header the client sent.
    public var publicHost: String?
    /// The largest request body accepted; larger ones get 413.
    public var maxBodyBytes: Int
    /// How writes reach the disk. Group commit (the default) acknowledges an
    /// upsert only once it is synced, sharing each sync among concurrent
    /// writers.
    public var durability: Durability
    /// Per-request log lines are written at `info`: set `warning` to
    /// silence them.
    public var logLevel: Logger.Level

    public init(database: String, host: String = "127.0.0.1", port: Int = 5080, apiKey: String? = nil,
                publicHost: String? = nil, maxBodyBytes: Int = 64 << 20, durability: Durability = .groupCommit,
                logLevel: Logger.Level = .info) {
        self.database = database
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.publicHost = publicHost
        self.maxBodyBytes = maxBodyBytes
        self.durability = durability
        self.logLevel = logLevel
    }
}

/// A Pinecone-compatible HTTP server over a Lodestone database: Pinecone's
/// SDKs (and LlamaIndex's `PineconeVectorStore`) work against it unchanged.
/// PROTOCOL.md beside this file lists what is served.
public struct PineconeServer: Sendable {
    public let configuration: ServerConfiguration

    public init(configuration: ServerConfiguration) {
        self.configuration = configuration
    }

    /// Serves until SIGINT or SIGTERM, then closes every index (each
    /// persisting what its log holds) and returns.
    /// - Parameter onReady: called with the bound port once listening.
    public func run(onReady: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        var logger = Logger(label: "lodestone.serve")
        logger.logLevel = configuration.logLevel
        let service = try PineconeService(configuration: configuration, logger: logger)
        let app = Application(
            responder: PineconeResponder(service: service),
            server: .http1(configuration: .init(idleTimeout: .seconds(60))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port),
                                 serverName: "lodestone"),
            onServerRunning: { channel in onReady(channel.localAddress?.port ?? 0) },
            logger: logger)
        do {
            try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        } catch {
            try? service.shutDown()
            throw error
        }
        try service.shutDown()
        logger.info("closed every index; stopped")
    }
}

/// The request handler Hummingbird calls: reads the body (within the
/// limit), routes, logs one line, and answers JSON.
struct PineconeResponder: HTTPResponder {
    typealias Context = BasicRequestContext
    let service: PineconeService

    func respond(to request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        let reply = await service.reply(to: request)
        let elapsed = ContinuousClock.now - started
        service.logger.info("\(request.method) \(request.uri.path) \(reply.status.code) \(elapsed.milliseconds) ms")
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: reply.status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: reply.body)))
    }
}

extension Duration {
    /// Milliseconds, to three decimals.
    var milliseconds: String {
        let (s, atto) = components
        let ms = Double(s) * 1e3 + Double(atto) * 1e-15
        return String(Double(Int(ms * 1000)) / 1000)
    }
}

/// The server's state: the database, the catalog of Pinecone-only
/// settings, backups and imports. Queries run on the task that received
/// them; writes (which wait for a sync) run on a separate pool of threads,
/// so they never hold up the threads that answer queries.
final class PineconeService: Sendable {
    static let dataPrefix = "_data"
    static let apiKeyHeader = HTTPField.Name("Api-Key")!

    let configuration: ServerConfiguration
    let database: Database
    let catalog: IndexCatalog
    let backups: BackupStore
    let imports: ImportJobs
    let logger: Logger
    private let writers = DispatchQueue(label: "lodestone.serve.writes", attributes: .concurrent)

    init(configuration: ServerConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        database = try Database(path: configuration.database)
        catalog = try IndexCatalog(database: configuration.database)
        backups = try BackupStore(database: configuration.database)
        imports = ImportJobs()
        // Open every index now: a damaged one is reported at start, and the
        // first request does not pay for the open.
        for name in database.listIndexes() {
            do {
                _ = try database.index(name, durability: configuration.durability)
            } catch {
                logger.error("index \"\(name)\" could not be opened: \(error)")
            }
        }
    }

    /// Runs a write on the writers' threads.
    func writing<T: Sendable>(_ body: @escaping @Sendable () throws(APIError) -> T) async throws(APIError) -> T {
        let result: Result<T, APIError> = await withCheckedContinuation { continuation in
            writers.async {
                do throws(APIError) {
                    continuation.resume(returning: .success(try body()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Stops imports and closes every index, persisting each.
    func shutDown() throws {
        imports.cancelAll()
        try database.close(persist: true)
    }

    /// Reads the body and answers: every failure becomes an error reply,
    /// never a dropped connection.
    func reply(to request: Request) async -> Reply {
        do {
            if let key = configuration.apiKey, request.headers[Self.apiKeyHeader] != key {
                throw APIError(status: .unauthorized, code: "UNAUTHENTICATED",
                               message: "missing or wrong Api-Key header (the server was started with --api-key)")
            }
            let limit = configuration.maxBodyBytes
            if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
                throw Self.tooLarge(limit)
            }
            var body: [UInt8] = []
            do {
                var buffer = try await request.body.collect(upTo: limit)
                body = buffer.readBytes(length: buffer.readableBytes) ?? []
            } catch is NIOTooManyBytesError {
                throw Self.tooLarge(limit)
            } catch {
                throw APIError.badRequest("the request body could not be read: \(error)")
            }
            let host = request.head.authority ?? "\(configuration.host):\(configuration.port)"
            let r = try ServerRequest(method: request.method, path: request.uri.string, body: body, host: host)
            return try await route(r)
        } catch let error as APIError {
            return Reply(error: error)
        } catch {
            return Reply(error: APIError(status: .internalServerError, code: "UNKNOWN", message: "\(error)"))
        }
    }

    static func tooLarge(_ limit: Int) -> APIError {
        APIError(status: .contentTooLarge, code: "OUT_OF_RANGE",
                 message: "the request body is larger than the server's limit of \(limit) bytes (--max-body-bytes): "
                     + "send fewer records per request")
    }

    func route(_ r: ServerRequest) async throws(APIError) -> Reply {
        let s = r.segments
        if s.first == Self.dataPrefix {
            guard s.count >= 2 else { throw .notFound("/\(Self.dataPrefix) needs an index name: /\(Self.dataPrefix)/<index>/...") }
            return try await dataPlane(s[1], Array(s[2...]), r)
        }
        return try await controlPlane(r)
    }
}
