import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

// The record commands: upsert, query, fetch, delete.

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
    @Option(help: ArgumentHelp(
        "Vectors files (JSON Lines are always logged): how batches commit: persist (no log; persisted as the log "
        + "would grow and at the end, so a killed load keeps its last persist) or log (each batch logged first).",
        valueName: "persist|log"))
    var commit: String?
    @Option(help: .hidden) var autoPersistBytes: Int?

    func run() throws {
        try CLIExit.run {
            let db = try options.open()
            var progress = Progress()
            let start = now()
            var count = 0
            var committed = false
            if file.hasSuffix(".fvecs") || file.hasSuffix(".npy") {
                // Read a batch of rows at a time: memory stays the index's
                // plus one batch, whatever the file's size.
                let index = try db.index(name)
                let total = try VectorFileReader(path: file).count
                // A bulk load writes its vectors to segments only, unless
                // the writes are to stay in the log.
                guard let how = LoadCommit(rawValue: commit ?? (noPersist ? "log" : "persist")) else {
                    throw ValidationError("--commit is persist or log, got \(commit ?? "")")
                }
                if noPersist && how == .persist { throw ValidationError("--no-persist goes with --commit log") }
                if let autoPersistBytes { index.setAutoPersistBytes(autoPersistBytes) }
                let report = try index.upsertVectors(
                    fromFile: file, metadata: metadata, idField: idField, namespace: namespace, batchSize: batch,
                    threads: Parallelism.defaultThreadCount, commit: how) { p in
                        let elapsed = now() - start
                        let rate = elapsed > 0 ? Double(p.records) / elapsed : 0
                        progress.show(String(format: "upserted %d / %d (%.0f a second)", p.records, total, rate))
                    }
                count = report.records
                committed = how == .persist  // the load persisted on its way out
            } else {
                let report = try db.importRecords(from: file, into: name, skipBadLines: skipBadLines, batchSize: batch) { p in
                    progress.show("\(p.phase): \(p.lines) lines, \(p.records) records")
                }
                count = report.records
            }
            // A command-line process ends here: fold the log into a segment so
            // the next command maps it instead of replaying the inserts.
            if !noPersist && !committed { try db.index(name).persist() }
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
        commandName: "query", abstract: "Query by vector, by id, by text (BM25), or with every vector of a file.")
    @OptionGroup var options: DatabaseOptions
    @Argument var name: String
    @Option(help: "A query vector: comma-separated numbers, or a JSON array.") var vector: String?
    @Option(help: "Use the stored vector of this record id.") var id: String?
    @Option(help: "Search the index's text field (create --text-field) with BM25; with --vector, a hybrid query.")
    var text: String?
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
            if let text {
                guard id == nil, textFile == nil else { throw ValidationError("--text goes alone or with --vector") }
                responses.append(try index.query(text: text, vector: try vector.map(parseVector), topK: topK,
                                                 namespace: namespace, filter: f, includeValues: includeValues,
                                                 includeMetadata: includeMetadata, ef: ef, explain: explain))
            } else if let id {
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
