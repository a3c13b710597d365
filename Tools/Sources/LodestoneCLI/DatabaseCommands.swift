import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

// The database commands (create, list, describe, drop, stats, persist) and
// what every database command shares; the record commands are in
// RecordCommands.swift, export and import in TransferCommands.swift. Each
// takes --db (default $LODESTONE_DB or ./lodestone-data) and --json; errors
// go to stderr with an exit code that says what kind of failure it was
// (see `CLIExit`).

/// Options every database command shares.
struct DatabaseOptions: ParsableArguments {
    @Option(help: "The database directory (default: $LODESTONE_DB, else ./lodestone-data).")
    var db: String = ProcessInfo.processInfo.environment["LODESTONE_DB"] ?? "lodestone-data"
    @Flag(help: "Print JSON (one object per line) instead of text.") var json = false
    @Flag(help: "Open the database read-only (other read-only processes may share it; writes fail).")
    var readOnly = false

    func open() throws -> Database { try Database(path: db, readOnly: readOnly) }

    /// Prints one result: the JSON object `fields` fills with `--json`,
    /// else `text`.
    func report(_ text: @autoclosure () -> String, _ fields: (inout JSONLine) -> Void) {
        if json {
            var line = JSONLine()
            fields(&line)
            print(line.text)
        } else {
            print(text())
        }
    }
}

/// Exit codes: 0 success, 1 other failure, 2 usage, 3 not found (index or
/// record), 4 invalid input (vectors, ids, metadata, filters, files),
/// 5 damaged files or I/O failure, 6 the index is open in another process.
enum CLIExit {
    static func code(for error: LodestoneError) -> Int32 {
        switch error {
        case .indexNotFound, .recordNotFound, .emptyIndex, .keyNotFound: return 3
        case .corruptSegment, .unsupportedFormatVersion, .io: return 5
        case .directoryLocked, .readOnly: return 6
        default: return 4
        }
    }

    /// Runs `body`, turning a Lodestone error into a message on stderr and
    /// its exit code.
    static func run(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as LodestoneError {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(code(for: error))
        }
    }
}

/// A progress line on stderr when it is a terminal; silent when piped.
struct Progress {
    let enabled = isatty(2) == 1
    var last = 0.0

    mutating func show(_ text: String) {
        guard enabled else { return }
        let t = now()
        guard t - last > 0.1 else { return }
        last = t
        FileHandle.standardError.write(Data("\r\u{1B}[K\(text)".utf8))
    }

    func done() {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

/// Parses a filter given inline (`{"year": 2020}`) or as `@file.json` (a
/// filter, or an object whose "filter" field is one, as the data's
/// `filter_*.json` files are).
func parseFilter(_ argument: String?) throws -> Filter? {
    guard let argument else { return nil }
    let text = argument.hasPrefix("@") ? try String(contentsOfFile: String(argument.dropFirst()), encoding: .utf8) : argument
    var json = try JSONValue.parse(text)
    if case let .object(fields) = json, let inner = fields["filter"], case .object = inner, fields.count > 1 { json = inner }
    return try Filter(json: json)
}

struct CreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create an index.")
    @OptionGroup var options: DatabaseOptions
    @Argument(help: "Index name (lowercase letters, digits, hyphens).") var name: String
    @Option(help: "Vector dimension.") var dimension: Int
    @Option(help: "cosine, euclidean or dotproduct.") var metric: String = "cosine"
    @Option(help: "The embedding model the vectors come from (checked on later use).") var model: String = ""
    @Option(help: "hnsw (approximate) or flat (exact).") var kind: String = "hnsw"
    @Option(help: "HNSW links per node.") var m: Int = 16
    @Option(help: "HNSW build beam width.") var efConstruction: Int = 200
    @Option(help: "HNSW default search beam width.") var efSearch: Int = 64
    @Option(help: "HNSW layer-0 walk: exact; quantized (neighbours' 1-bit codes and the node's 8-bit code beside the links: fastest, ~2.4 KB more per vector at m 16, 384-d); or compact (one 4-bit code per vector, ~208 bytes at 384-d: the least memory, vectors read only to re-rank).")
    var traversal: String = "exact"
    @Option(help: "A metadata field of text to search with BM25 (query --text).") var textField: String?

    func run() throws {
        try CLIExit.run {
            guard let metric = Metric(name: metric) else { throw ValidationError("unknown metric \(metric)") }
            guard let kind = IndexKind(rawValue: kind) else { throw ValidationError("--kind is hnsw or flat") }
            guard let walk = HNSWParameters.Traversal(rawValue: traversal) else {
                throw ValidationError("--traversal is exact, quantized or compact, got \(traversal)")
            }
            let db = try options.open()
            try db.createIndex(name: name, dimension: dimension, metric: metric, embeddingModel: model,
                               options: IndexOptions(kind: kind, hnsw: HNSWParameters(m: m, efConstruction: efConstruction,
                                                                                       efSearch: efSearch, traversal: walk),
                                                      textField: textField))
            options.report("created \(kind.rawValue) index \"\(name)\" (\(dimension)-d, \(metric.rawValue)) in \(options.db)") {
                $0.set("created", name)
            }
        }
    }
}

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the indexes.")
    @OptionGroup var options: DatabaseOptions

    func run() throws {
        try CLIExit.run {
            for name in try options.open().listIndexes() {
                options.report(name) { $0.set("name", name) }
            }
        }
    }
}

struct DescribeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "describe", abstract: "Describe an index.")
    @OptionGroup var options: DatabaseOptions
    @Argument var name: String

    func run() throws {
        try CLIExit.run {
            let d = try options.open().describeIndex(name)
            var line = JSONLine()
            line.set("name", d.name)
            line.set("kind", d.kind.rawValue)
            line.set("dimension", d.dimension)
            line.set("metric", d.metric.rawValue)
            line.set("embedding_model", d.embeddingModel)
            line.set("records", d.recordCount)
            line.set("disk_bytes", d.diskBytes)
            if let resident = d.residentBytesPerVector { line.set("resident_bytes_per_vector", resident) }
            line.set("ready", d.ready)
            line.set("fingerprint_vectors", d.fingerprint.count)
            line.set("fingerprint_mean_norm", d.fingerprint.meanNorm)
            if let field = d.textField { line.set("text_field", field) }
            if options.json { print(line.text); return }
            print("""
                \(d.name): \(d.kind.rawValue) index, \(d.dimension)-d, \(d.metric.rawValue), model \
                \(d.embeddingModel.isEmpty ? "(not recorded)" : d.embeddingModel)
                records: \(d.recordCount); on disk: \(d.diskBytes) bytes\(perVector(d)); ready: \(d.ready)
                fingerprint: \(d.fingerprint.count) vectors, mean norm \(String(format: "%.4f", d.fingerprint.meanNorm))
                """ + (d.textField.map { "\ntext field (BM25): \($0)" } ?? ""))
        }
    }
}

/// "(F a vector on disk, R read by searches)" for `describe`.
private func perVector(_ d: IndexDescription) -> String {
    guard d.recordCount > 0, let resident = d.residentBytesPerVector else { return "" }
    return " (\(d.diskBytes / d.recordCount) a vector; searches read \(resident) a vector)"
}

struct DropCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "drop", abstract: "Delete an index and its files.")
    @OptionGroup var options: DatabaseOptions
    @Argument var name: String

    func run() throws {
        try CLIExit.run {
            try options.open().deleteIndex(name)
            options.report("dropped \"\(name)\"") { $0.set("dropped", name) }
        }
    }
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Record counts per namespace.")
    @OptionGroup var options: DatabaseOptions
    @Argument var name: String

    func run() throws {
        try CLIExit.run {
            let s = try options.open().index(name).describeStats()
            if options.json {
                var line = JSONLine()
                line.set("dimension", s.dimension)
                line.set("total_record_count", s.totalRecordCount)
                print(line.text)
                for (ns, count) in s.namespaces.sorted(by: { $0.key < $1.key }) {
                    var l = JSONLine()
                    l.set("namespace", ns)
                    l.set("record_count", count)
                    print(l.text)
                }
                return
            }
            print("\(name): \(s.totalRecordCount) records, \(s.dimension)-d, \(s.metric.rawValue)")
            for (ns, count) in s.namespaces.sorted(by: { $0.key < $1.key }) {
                print("  namespace \(ns.isEmpty ? "\"\" (default)" : "\"\(ns)\""): \(count)")
            }
        }
    }
}

struct PersistCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "persist",
        abstract: "Fold an index's log into its files (faster reopening): a delta of the changes when they are small, else a new segment.")
    @OptionGroup var options: DatabaseOptions
    @Argument var name: String
    @Flag(help: "Write one new segment of everything, merging the delta in.") var merge = false

    func run() throws {
        try CLIExit.run {
            let t0 = now()
            try options.open().index(name).persist(merge: merge)
            print(String(format: "persisted \"%@\" in %.2f s", name, now() - t0))
        }
    }
}

