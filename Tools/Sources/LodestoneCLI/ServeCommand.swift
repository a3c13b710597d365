import ArgumentParser
import Dispatch
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport
import LodestoneServer
import Logging

/// `lodestone serve`: the Pinecone-compatible HTTP server.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a database over Pinecone's REST API (Pinecone's SDKs and LlamaIndex work unchanged).",
        discussion: """
            Point a client at it with Pinecone(api_key="local", host="http://127.0.0.1:5080"); \
            pc.Index(name) then finds each index's data plane (http://HOST:PORT/_data/NAME). \
            SIGINT or SIGTERM closes every index (persisting it) and exits.
            """)

    @Option(help: "The database directory (default: $LODESTONE_DB, else ./lodestone-data).")
    var db: String = ProcessInfo.processInfo.environment["LODESTONE_DB"] ?? "lodestone-data"
    @Option(help: "The address to listen on.") var host = "127.0.0.1"
    @Option(help: "The port (0 picks a free one, printed at start).") var port = 5080
    @Option(help: "Require this key in the Api-Key header.") var apiKey: String?
    @Option(help: "The host:port that index descriptions name (default: the Host header of each request).")
    var publicHost: String?
    @Option(help: "The largest request body accepted, in bytes (larger: 413).") var maxBodyBytes = 64 << 20
    @Option(help: "synchronous, group-commit (default) or none: when an acknowledged write is on disk.")
    var durability = "group-commit"
    @Option(help: "trace, debug, info (one line per request), notice, warning, error or critical.")
    var logLevel = "info"

    func run() throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        let durabilities: [String: Durability] = ["synchronous": .synchronous, "group-commit": .groupCommit, "none": .none]
        guard let durability = durabilities[durability] else {
            throw ValidationError("--durability must be synchronous, group-commit or none")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let server = PineconeServer(configuration: ServerConfiguration(
            database: db, host: host, port: port, apiKey: apiKey, publicHost: publicHost, maxBodyBytes: maxBodyBytes,
            durability: durability, logLevel: level))
        let done = DispatchSemaphore(value: 0)
        let failure = LockedBox<Error?>(nil)
        let dbPath = db, host = host
        Task {
            do {
                try await server.run { port in
                    // One line on stdout, for scripts that start the server.
                    let line = "lodestone serve: listening on http://\(host):\(port) (database \(dbPath))\n"
                    FileHandle.standardOutput.write(Data(line.utf8))
                }
            } catch {
                failure.set(error)
            }
            done.signal()
        }
        done.wait()
        if let error = failure.get() {
            if let e = error as? LodestoneError { throw CLIError("\(e)") }
            throw CLIError("the server stopped: \(error)")
        }
    }
}

/// A value shared between the server's task and the command's thread.
final class LockedBox<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ value: T) { self.value = value }
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
}
