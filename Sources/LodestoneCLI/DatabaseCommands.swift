import ArgumentParser
import Foundation
import Lodestone
import LodestoneToolSupport

// The database commands: create, list, describe, drop, upsert, query, fetch,
// delete, stats, export, import. Each takes --db (default $LODESTONE_DB or
// ./lodestone-data) and --json; errors go to stderr with an exit code that
// says what kind of failure it was (see `CLIExit`).

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
    @Option(help: "HNSW layer-0 walk: exact, or quantized (neighbours' 1-bit codes and the node's 8-bit code beside the links: faster, ~2.4 KB more per vector at m 16, 384-d).")
    var traversal: String = "exact"

    func run() throws {
        try CLIExit.run {
            guard let metric = Metric(name: metric) else { throw ValidationError("unknown metric \(metric)") }
            guard let kind = IndexKind(rawValue: kind) else { throw ValidationError("--kind is hnsw or flat") }
            guard let walk = HNSWParameters.Traversal(rawValue: traversal) else {
                throw ValidationError("--traversal is exact or quantized, got \(traversal)")
            }
            let db = try options.open()
            try db.createIndex(name: name, dimension: dimension, metric: metric, embeddingModel: model,
                               options: IndexOptions(kind: kind, hnsw: HNSWParameters(m: m, efConstruction: efConstruction,
                                                                                       efSearch: efSearch, traversal: walk)))
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
            line.set("ready", d.ready)
            line.set("fingerprint_vectors", d.fingerprint.count)
            line.set("fingerprint_mean_norm", d.fingerprint.meanNorm)
            if options.json { print(line.text); return }
            print("""
                \(d.name): \(d.kind.rawValue) index, \(d.dimension)-d, \(d.metric.rawValue), model \
                \(d.embeddingModel.isEmpty ? "(not recorded)" : d.embeddingModel)
                records: \(d.recordCount); on disk: \(d.diskBytes) bytes; ready: \(d.ready)
                fingerprint: \(d.fingerprint.count) vectors, mean norm \(String(format: "%.4f", d.fingerprint.meanNorm))
                """)
        }
    }
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

struct UpsertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upsert",
        abstract: "Upsert records from JSON Lines (Pinecone's shape, gzip or plain), or vectors from fvecs/npy.",
        discussion: """
            A .jsonl/.jsonl.gz file holds {"id", "values", "metadata", "namespace"} lines. With an .fvecs or .npy \
            file, --metadata gives one JSON object per vector (its --id-field becomes the id; the rest is \
            metadata); without it, ids are row numbers.
            """)
    @OptionGroup var options: DatabaseOptions
    @Argument var name: String
    @Argument(help: "Records (.jsonl, .jsonl.gz) or vectors (.fvecs, .npy).") var file: String
    @Option(help: "With vectors: metadata, JSON Lines in vector order.") var metadata: String?
    @Option(help: "With --metadata: the field holding each record's id.") var idField: String = "id"
    @Option(help: "Namespace (vectors files; JSON Lines carry their own).") var namespace: String = ""
    @Option(help: "Records per batch.") var batch: Int = 1_000
    @Flag(help: "JSON Lines: skip malformed lines instead of failing.") var skipBadLines = false
    @Flag(help: "Leave the writes in the log (the next open replays them) instead of persisting at the end.")
    var noPersist = false

    func run() throws {
        try CLIExit.run {
            let db = try options.open()
            var progress = Progress()
            let start = now()
            var count = 0
            if file.hasSuffix(".fvecs") || file.hasSuffix(".npy") {
                let index = try db.index(name)
                let vectors = try VectorFiles.readFloats(file)
                var ids = (0..<vectors.rows).map(String.init)
                var metas = [Metadata?](repeating: nil, count: vectors.rows)
                if let metadata {
                    let lines = try String(contentsOfFile: metadata, encoding: .utf8).split(separator: "\n")
                    guard lines.count == vectors.rows else {
                        throw CLIError("\(metadata) has \(lines.count) lines for \(vectors.rows) vectors")
                    }
                    for (i, line) in lines.enumerated() {
                        do {
                            var m = try Metadata.from(json: JSONValue.parse(String(line)))
                            if case let .string(id)? = m.removeValue(forKey: idField) { ids[i] = id }
                            metas[i] = m
                        } catch let error as LodestoneError {
                            throw LodestoneError.malformedLine(path: metadata, line: i + 1, reason: "\(error)")
                        }
                    }
                }
                var i = 0
                while i < vectors.rows {
                    let end = min(vectors.rows, i + batch)
                    let records = (i..<end).map { Record(id: ids[$0], values: vectors.row($0), metadata: metas[$0]) }
                    try index.upsert(records, namespace: namespace, threads: FlatIndex.defaultThreadCount)
                    i = end
                    progress.show("upserted \(i) / \(vectors.rows)")
                }
                count = vectors.rows
            } else {
                let report = try db.importRecords(from: file, into: name, skipBadLines: skipBadLines, batchSize: batch) { p in
                    progress.show("\(p.phase): \(p.lines) lines, \(p.records) records")
                }
                count = report.records
            }
            // A command-line process ends here: fold the log into a segment so
            // the next command maps it instead of replaying the inserts.
            if !noPersist { try db.index(name).persist() }
            progress.done()
            let seconds = now() - start
            options.report(String(format: "upserted %d records into \"%@\" in %.2f s", count, name, seconds)) {
                $0.set("upserted", count)
                $0.set("seconds", seconds, digits: 3)
            }
        }
    }
}

struct QueryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query", abstract: "Query by vector, by id, or with every vector of a file.")
    @OptionGroup var options: DatabaseOptions
    @Argument var name: String
    @Option(help: "A query vector: comma-separated numbers, or a JSON array.") var vector: String?
    @Option(help: "Use the stored vector of this record id.") var id: String?
    @Option(help: "A file of query vectors: one per line (comma-separated or JSON array), or .fvecs/.npy.")
    var textFile: String?
    @Option(name: .customLong("top-k"), help: "Results per query.") var topK: Int = 10
    @Option(help: "A filter: inline JSON or @file.json.") var filter: String?
    @Option var namespace: String = ""
    @Option(help: "HNSW beam width.") var ef: Int?
    @Flag var includeValues = false
    @Flag var includeMetadata = false
    @Flag(help: "Report the plan chosen, matches, nodes visited and distances computed.") var explain = false

    func run() throws {
        try CLIExit.run {
            let index = try options.open().index(name)
            let f = try parseFilter(filter)
            var responses: [QueryResponse] = []
            if let id {
                responses.append(try index.query(id: id, topK: topK, namespace: namespace, filter: f,
                                                 includeValues: includeValues, includeMetadata: includeMetadata, ef: ef,
                                                 explain: explain))
            } else {
                var vectors: [[Float]] = []
                if let vector { vectors.append(try parseVector(vector)) }
                if let textFile {
                    if textFile.hasSuffix(".fvecs") || textFile.hasSuffix(".npy") {
                        let m = try VectorFiles.readFloats(textFile)
                        vectors += (0..<m.rows).map { m.row($0) }
                    } else {
                        for line in try String(contentsOfFile: textFile, encoding: .utf8).split(separator: "\n")
                        where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                            vectors.append(try parseVector(String(line)))
                        }
                    }
                }
                guard !vectors.isEmpty else { throw ValidationError("give --vector, --id or --text-file") }
                if vectors.count > 1 && !explain {
                    // Many queries: one batch on every core (BLAS on a flat index), as `knn` runs them.
                    let batch = try index.queryBatch(vectors: vectors, topK: topK, namespace: namespace, filter: f,
                                                     includeValues: includeValues, includeMetadata: includeMetadata, ef: ef)
                    responses = batch.map { QueryResponse(matches: $0, namespace: namespace, explanation: nil) }
                } else {
                    for v in vectors {
                        responses.append(try index.query(vector: v, topK: topK, namespace: namespace, filter: f,
                                                         includeValues: includeValues, includeMetadata: includeMetadata,
                                                         ef: ef, explain: explain))
                    }
                }
            }
            for (qi, r) in responses.enumerated() {
                if options.json {
                    for (rank, m) in r.matches.enumerated() {
                        var line = JSONLine()
                        line.set("query", qi)
                        line.set("rank", rank + 1)
                        line.set("id", m.id)
                        line.set("score", Double(m.score), digits: 6)
                        var text = line.text
                        if includeMetadata { text.removeLast(); text += ", \"metadata\": \(metadataJSON(m.metadata))}" }
                        if let v = m.values { text.removeLast(); text += ", \"values\": [\(v.map { "\($0)" }.joined(separator: ","))]}" }
                        print(text)
                    }
                    if let e = r.explanation { print(explainLine(e, query: qi).text) }
                } else {
                    if responses.count > 1 { print("query \(qi):") }
                    for (rank, m) in r.matches.enumerated() {
                        var text = String(format: "%3d  %.6f  %@", rank + 1, m.score, m.id)
                        if includeMetadata { text += "  " + metadataJSON(m.metadata) }
                        print(text)
                    }
                    if let e = r.explanation {
                        print("plan: \(e.plan.rawValue); matches \(e.matches) of \(e.candidates) "
                              + String(format: "(selectivity %.4f)", e.selectivity)
                              + "; ef \(e.ef); nodes visited \(e.nodesVisited); distances computed \(e.distancesComputed)"
                              + (e.estimatedScanCost > 0 || e.estimatedGraphCost > 0
                                 ? String(format: "; estimated cost: exact scan %.0f, quantized scan %.0f, graph walk %.0f",
                                          e.estimatedScanCost, e.estimatedQuantizedCost, e.estimatedGraphCost) : ""))
                    }
                }
            }
        }
    }

    func explainLine(_ e: SearchStatistics, query: Int) -> JSONLine {
        var line = JSONLine()
        line.set("query", query)
        line.set("plan", e.plan.rawValue)
        line.set("estimated_matches", e.matches)
        line.set("actual_matches", e.matches)
        line.set("candidates", e.candidates)
        line.set("selectivity", e.selectivity, digits: 6)
        line.set("ef", e.ef)
        line.set("nodes_visited", e.nodesVisited)
        line.set("distances_computed", e.distancesComputed)
        line.set("estimated_scan_cost", e.estimatedScanCost, digits: 1)
        line.set("estimated_graph_cost", e.estimatedGraphCost, digits: 1)
        line.set("estimated_quantized_cost", e.estimatedQuantizedCost, digits: 1)
        return line
    }

    func parseVector(_ text: String) throws -> [Float] {
        let trimmed = text.trimmingCharacters(in: CharacterSet(charactersIn: "[] \t"))
        let parts = trimmed.split(whereSeparator: { $0 == "," || $0 == " " })
        var out: [Float] = []
        for p in parts {
            guard let v = Float(p) else { throw ValidationError("\"\(p)\" is not a number") }
            out.append(v)
        }
        return out
    }
}

struct FetchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fetch", abstract: "Fetch records by id or by filter.")
    @OptionGroup var options: DatabaseOptions
    @Argument var name: String
    @Argument(help: "Record ids.") var ids: [String] = []
    @Option var namespace: String = ""
    @Option(help: "Fetch records passing this filter instead (inline JSON or @file).") var filter: String?
    @Option(help: "With --filter: at most this many.") var limit: Int = 100
    @Flag var includeValues = false

    func run() throws {
        try CLIExit.run {
            let index = try options.open().index(name)
            let records: [String: Record]
            if let f = try parseFilter(filter) {
                records = try index.fetch(filter: f, namespace: namespace, limit: limit)
            } else {
                records = try index.fetch(ids: ids, namespace: namespace)
            }
            for id in (filter == nil ? ids : records.keys.sorted()) {
                guard let r = records[id] else {
                    if !options.json { print("\(id): not found") }
                    continue
                }
                if options.json {
                    var line = JSONLine()
                    line.set("id", id)
                    var text = line.text
                    text.removeLast()
                    text += ", \"metadata\": \(metadataJSON(r.metadata))"
                    if includeValues { text += ", \"values\": [\(r.values.map { "\($0)" }.joined(separator: ","))]" }
                    print(text + "}")
                } else {
                    print("\(id): \(metadataJSON(r.metadata))" + (includeValues ? " values[\(r.values.count)]" : ""))
                }
            }
            if filter == nil && records.count < Set(ids).count { throw ExitCode(3) }
        }
    }
}

struct DeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete records by id, by filter, or all of a namespace.")
    @OptionGroup var options: DatabaseOptions
    @Argument var name: String
    @Argument(help: "Record ids.") var ids: [String] = []
    @Option var namespace: String = ""
    @Option(help: "Delete the records passing this filter (inline JSON or @file).") var filter: String?
    @Flag(help: "Delete every record of the namespace.") var all = false

    func run() throws {
        try CLIExit.run {
            let index = try options.open().index(name)
            let deleted: Int
            if all {
                deleted = try index.deleteAll(namespace: namespace)
            } else if let f = try parseFilter(filter) {
                deleted = try index.delete(filter: f, namespace: namespace)
            } else {
                guard !ids.isEmpty else { throw ValidationError("give ids, --filter or --all") }
                deleted = try index.delete(ids: ids, namespace: namespace)
            }
            options.report("deleted \(deleted) records") { $0.set("deleted", deleted) }
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

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Export every record as gzip'd JSON Lines (Pinecone's record shape).")
    @OptionGroup var options: DatabaseOptions
    @Argument var name: String
    @Argument(help: "Output file (.jsonl.gz).") var file: String

    func run() throws {
        try CLIExit.run {
            var progress = Progress()
            let t0 = now()
            let n = try options.open().index(name).export(to: file) { p in progress.show("exported \(p.records) records") }
            progress.done()
            options.report(String(format: "exported %d records to %@ in %.2f s", n, file, now() - t0)) {
                $0.set("exported", n)
                $0.set("file", file)
            }
        }
    }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import gzip'd (or plain) JSON Lines records into an index, creating it if missing.",
        discussion: "Pinecone migration: export there to JSON Lines of {id, values, metadata, namespace}, then import here.")
    @OptionGroup var options: DatabaseOptions
    @Argument(help: "The file (.jsonl.gz or .jsonl).") var file: String
    @Argument(help: "The index (created when missing).") var name: String
    @Option(help: "When creating: cosine, euclidean or dotproduct.") var metric: String = "cosine"
    @Option(help: "When creating: the embedding model (checked against an existing index's).") var model: String = ""
    @Option(help: "When creating: hnsw or flat.") var kind: String = "hnsw"
    @Flag(help: "Skip malformed lines instead of failing before anything is written.") var skipBadLines = false
    @Flag(help: "Leave the writes in the log instead of persisting at the end.") var noPersist = false

    func run() throws {
        try CLIExit.run {
            guard let metric = Metric(name: metric) else { throw ValidationError("unknown metric \(metric)") }
            guard let kind = IndexKind(rawValue: kind) else { throw ValidationError("--kind is hnsw or flat") }
            var progress = Progress()
            let t0 = now()
            let db = try options.open()
            let report = try db.importRecords(
                from: file, into: name, metric: metric, embeddingModel: model, options: IndexOptions(kind: kind),
                skipBadLines: skipBadLines) { p in progress.show("\(p.phase): \(p.lines) lines, \(p.records) records") }
            if !noPersist { try db.index(name).persist() }
            progress.done()
            if options.json {
                var line = JSONLine()
                line.set("imported", report.records)
                line.set("skipped_lines", report.skippedLines)
                line.set("created_index", report.createdIndex)
                print(line.text)
            } else {
                print(String(format: "imported %d records into \"%@\"%@ in %.2f s", report.records, name,
                             report.createdIndex ? " (created)" : "", now() - t0))
                if report.skippedLines > 0 {
                    print("skipped \(report.skippedLines) malformed lines; first: \(report.skippedErrors.first ?? "")")
                }
            }
        }
    }
}
