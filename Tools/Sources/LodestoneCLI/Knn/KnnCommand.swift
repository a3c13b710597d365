import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// `lodestone knn`: an offline batch job. Every query's k nearest
/// neighbours, in blocks (bounded memory), on every core, to files the next
/// stage of a pipeline reads; resumable after an interruption.
struct KnnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "knn",
        abstract: "Batch k-NN: every query's nearest neighbours, streamed to Parquet, JSON Lines, .npy or .ivecs/.fvecs.",
        discussion: """
            Queries: --queries FILE (.fvecs, .npy, .hdf5 with --dataset, or JSON Lines of arrays or of \
            {"id", "values"} objects), or --self (every vector of the target is a query; its own entry is left \
            out). Target: --index NAME (a database index, HNSW or flat; --namespace, --filter, --ef) or --base \
            FILE (exact search of a vector file, through BLAS; ids are row numbers). Output: --out PATH; the \
            format is --format, else PATH's extension (.parquet, .jsonl, .npy for PATH.ids.npy and \
            PATH.scores.npy, .ivecs for PATH.ivecs and PATH.fvecs). A checkpoint beside the output \
            (PATH.knn-checkpoint.json) records each completed block: run the same command again after an \
            interruption and it continues from there (--restart starts over).
            """)

    @Option(help: "The database directory, for --index (default: $LODESTONE_DB, else ./lodestone-data).")
    var db: String = ProcessInfo.processInfo.environment["LODESTONE_DB"] ?? "lodestone-data"
    @Option(help: "Search this database index.") var index: String?
    @Option(help: "Search this vector file exactly (.fvecs or .npy).") var base: String?
    @Option(help: "With --base: cosine, euclidean or dotproduct.") var metric: String = "cosine"
    @Option(help: "The query file.") var queries: String?
    @Option(help: "The HDF5 dataset holding the queries.") var dataset: String = "test"
    @Flag(name: .customLong("self"), help: "Query with every vector of the target (a k-NN graph), excluding each itself.")
    var selfJoin = false
    @Option(help: "Neighbours per query.") var k: Int = 10
    @Option(help: "Namespace of --index.") var namespace: String = ""
    @Option(help: "A filter (inline JSON or @file.json), for --index.") var filter: String?
    @Option(help: "HNSW beam width.") var ef: Int?
    @Option(help: "The output path.") var out: String
    @Option(help: "parquet, jsonl, npy or vecs (default: from --out's extension).") var format: String?
    @Option(help: "Queries per block (memory holds one block's queries and results).") var block: Int = 10_000
    @Option(help: "Threads (default: every core).") var threads: Int = Parallelism.defaultThreadCount
    @Flag(help: "Ignore a checkpoint and start over.") var restart = false
    @Flag(help: "Progress as JSON lines on stdout (one per block) instead of a progress bar.") var json = false

    func validate() throws {
        guard (index == nil) != (base == nil) else { throw ValidationError("give exactly one of --index or --base") }
        guard (queries == nil) != !selfJoin else { throw ValidationError("give exactly one of --queries or --self") }
        guard k >= 1 else { throw ValidationError("--k must be at least 1") }
        guard block >= 1, threads >= 1 else { throw ValidationError("--block and --threads must be at least 1") }
        if base != nil && (filter != nil || !namespace.isEmpty) {
            throw ValidationError("--filter and --namespace apply to --index")
        }
    }

    func run() throws {
        try CLIExit.run {
            do {
                try runJob()
            } catch let error as LodestoneError {
                throw error
            } catch let error as CLIError {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                throw ExitCode(4)
            }
        }
    }

    /// The output format and the path prefix its files are named from.
    private func output() throws -> (KnnFormat, String) {
        let chosen: KnnFormat
        if let format {
            guard let f = KnnFormat(rawValue: format) else {
                throw CLIError("--format must be one of \(KnnFormat.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            chosen = f
        } else {
            guard let f = KnnFormat(path: out) else {
                throw CLIError("--out \(out): name a .parquet, .jsonl, .npy or .ivecs file, or give --format")
            }
            chosen = f
        }
        let ext = (out as NSString).pathExtension
        let prefix = ["npy", "ivecs", "fvecs"].contains(ext) ? (out as NSString).deletingPathExtension : out
        return (chosen, prefix)
    }

    private func runJob() throws {
        let started = now()
        let (format, prefix) = try output()
        // The target, and (for --self) its vectors as the queries.
        let target: KnnTarget
        var source: QuerySource
        if let index {
            // Read-only: any number of jobs (and other readers) may share the index.
            let opened = try Database(path: db, readOnly: true).index(index)
            try opened.warm(threads: threads)  // the job touches all of it: verify it on every core first
            target = IndexTarget(index: opened, namespace: namespace, filter: try parseFilter(filter), ef: ef)
            source = selfJoin ? try IndexRecordsSource(index: opened, namespace: namespace) : try querySource()
        } else {
            guard let m = Metric(name: metric) else { throw CLIError("unknown metric \"\(metric)\"") }
            target = try BaseFileTarget(path: base!, metric: m, threads: threads)
            source = selfJoin ? VectorFileSource(reader: try VectorFileReader(path: base!)) : try querySource()
        }
        guard source.dimension == target.dimension else {
            throw LodestoneError.dimensionMismatch(expected: target.dimension, actual: source.dimension)
        }
        let queryIDs = selfJoin && index != nil || source is JSONLinesSource

        // Resume from a checkpoint of the same job, or start over.
        let checkpointPath = prefix + ".knn-checkpoint.json"
        let job = jobDescription(format: format)
        var checkpoint = KnnCheckpoint(job: job, queriesDone: 0, output: nil)
        if !restart, let saved = KnnCheckpoint.load(checkpointPath) {
            guard saved.job == job else {
                throw CLIError("\(checkpointPath) belongs to another job (\(saved.job)); run with --restart to start over")
            }
            checkpoint = saved
        }
        let resume = checkpoint.output
        let output: KnnOutput
        switch format {
        case .parquet: output = try ParquetOutput(path: prefix.hasSuffix(".parquet") ? prefix : prefix + ".parquet",
                                                  rowIDs: target.hasRowIDs, queryIDs: queryIDs, resume: resume)
        case .jsonl: output = try JSONLinesOutput(path: prefix.hasSuffix(".jsonl") ? prefix : prefix + ".jsonl",
                                                  resume: resume)
        case .npy: output = try MatrixOutput(prefix: prefix, layout: .npy, resume: resume)
        case .vecs: output = try MatrixOutput(prefix: prefix, layout: .vecs, resume: resume)
        }
        if checkpoint.queriesDone > 0 {
            report(.object(["event": .string("resume"), "queries_done": .number(Double(checkpoint.queriesDone))]), text: "resuming after \(checkpoint.queriesDone) queries")
        }

        // Block by block: read and search here, while the writer thread
        // writes, syncs and checkpoints the block before (one in flight).
        let progress = KnnProgress(total: source.count, json: json, startedAt: checkpoint.queriesDone)
        var done = checkpoint.queriesDone
        let want = selfJoin ? k + 1 : k
        let writer = BlockWriter()
        let searchStarted = now()
        var searchSeconds = 0.0
        while true {
            let (rows, ids) = try source.read(start: done, n: block)
            let n = rows.count / source.dimension
            if n == 0 { break }
            let t0 = now()
            var results = try target.search(rows, count: n, k: want, threads: threads)
            searchSeconds += now() - t0
            if selfJoin { results = Self.excludingSelf(results, queryIDs: ids, first: done, k: k) }
            let first = done, blockIDs = queryIDs ? ids : nil
            var saved = checkpoint
            try writer.submit { [k] in
                try output.write(first: first, queryIDs: blockIDs, results: results, k: k)
                saved.queriesDone = first + n
                saved.output = output.state
                try saved.save(checkpointPath)
            }
            done += n
            progress.update(done: done)
            if n < block && source.count != nil { break }
        }
        try writer.wait()
        try output.finish(total: done, k: k)
        try? FileManager.default.removeItem(atPath: checkpointPath)
        progress.done()
        let seconds = now() - started
        report(.object(["event": .string("done"), "queries": .number(Double(done)), "k": .number(Double(k)),
                        "seconds": .number(seconds), "queries_per_second": .number(Double(done) / max(seconds, 1e-9)),
                        "files": .array(output.files.map { .string($0) }), "open_seconds": .number(searchStarted - started),
                        "search_seconds": .number(searchSeconds)]),
               text: "\(done) queries, k=\(k), in \(String(format: "%.1f", seconds)) s "
                   + "(\(String(format: "%.0f", Double(done) / max(seconds, 1e-9))) queries/s): "
                   + output.files.joined(separator: ", "))
    }

    private func querySource() throws -> QuerySource {
        let path = queries!
        if path.hasSuffix(".fvecs") || path.hasSuffix(".npy") { return VectorFileSource(reader: try VectorFileReader(path: path)) }
        if path.hasSuffix(".hdf5") || path.hasSuffix(".h5") { return try HDF5Source(path: path, dataset: dataset) }
        return try JSONLinesSource(path: path)
    }

    /// Each query's own entry dropped (by id for an index, by row for a
    /// base file), keeping k; if it was not among the k + 1, the last goes.
    static func excludingSelf(_ r: KnnResults, queryIDs: [String]?, first: Int, k: Int) -> KnnResults {
        var out = r
        for q in 0..<r.count {
            var drop: Int? = nil
            if let rows = r.rowIDs { drop = rows[q].firstIndex(of: Int64(first + q)) }
            if let strings = r.stringIDs, let ids = queryIDs { drop = strings[q].firstIndex(of: ids[q]) }
            let cut = drop ?? (r.scores[q].count > k ? k : nil)
            guard let cut else { continue }
            out.scores[q].remove(at: cut)
            out.rowIDs?[q].remove(at: cut)
            out.stringIDs?[q].remove(at: cut)
        }
        return out
    }

    /// What identifies this job: a resumed run must be the same job.
    private func jobDescription(format: KnnFormat) -> String {
        func fileStamp(_ path: String?) -> String {
            guard let path, let a = try? FileManager.default.attributesOfItem(atPath: path) else { return "-" }
            let size = (a[.size] as? NSNumber)?.int64Value ?? -1
            let mtime = (a[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            return "\(path)@\(size):\(Int(mtime))"
        }
        // An index is identified by its files as well (any write changes
        // them), and a filter given as @file by that file's stamp.
        let indexFiles = index.map { name in
            ((try? FileManager.default.contentsOfDirectory(atPath: db + "/" + name)) ?? []).sorted()
                .filter { $0 != "LOCK" }.map { fileStamp(db + "/" + name + "/" + $0) }.joined(separator: ",")
        }
        let filterText = filter.map { $0.hasPrefix("@") ? fileStamp(String($0.dropFirst())) : $0 } ?? "-"
        let what = index.map { "index \(db)/\($0) [\(indexFiles!)] ns=\(namespace) filter=\(filterText) ef=\(ef.map(String.init) ?? "-")" }
            ?? "base \(fileStamp(base)) \(metric)"
        let queries = selfJoin ? "self" : "\(fileStamp(self.queries)) dataset=\(dataset)"
        return "\(what); queries \(queries); k=\(k); block=\(block); format=\(format.rawValue)"
    }

    private func report(_ fields: JSONValue, text: String) {
        if json {
            print(fields.jsonText)
        } else {
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
    }
}

/// The job's progress, saved after every block (atomically).
struct KnnCheckpoint: Equatable {
    var job: String
    var queriesDone: Int
    var output: OutputState?

    static func load(_ path: String) -> KnnCheckpoint? {
        guard let data = FileManager.default.contents(atPath: path), let json = try? JSONValue.parse(bytes: data),
              let job = json["job"]?.stringValue, let done = json["queriesDone"]?.integerValue else { return nil }
        var checkpoint = KnnCheckpoint(job: job, queriesDone: done, output: nil)
        if let output = json["output"], output != .null {
            guard let state = OutputState(json: output) else { return nil }
            checkpoint.output = state
        }
        return checkpoint
    }

    var json: JSONValue {
        .object(["job": .string(job), "queriesDone": .number(Double(queriesDone)), "output": output?.json ?? .null])
    }

    /// Replaces the file crash-safely (``StorageIO/replaceFile(_:with:)``:
    /// a temporary file beside it, synced, renamed over it, the directory
    /// synced).
    func save(_ path: String) throws {
        try StorageIO.replaceFile(path, with: Array(json.jsonText.utf8))
    }
}

/// A progress bar with rate and ETA on a terminal; JSON lines with
/// `--json`; nothing otherwise.
struct KnnProgress {
    let total: Int?
    let json: Bool
    let terminal = isatty(2) == 1
    let startedAt: Int
    let clock = now()

    init(total: Int?, json: Bool, startedAt: Int) {
        self.total = total
        self.json = json
        self.startedAt = startedAt
    }

    func update(done: Int) {
        let elapsed = max(now() - clock, 1e-9)
        let rate = Double(done - startedAt) / elapsed
        let eta = total.map { Double($0 - done) / max(rate, 1e-9) }
        if json {
            var line = JSONLine()
            line.set("event", "progress")
            line.set("queries_done", done)
            if let total { line.set("queries_total", total) }
            line.set("queries_per_second", rate, digits: 1)
            if let eta { line.set("eta_seconds", eta, digits: 1) }
            print(line.text)
        } else if terminal {
            var text = "\(done)"
            if let total, total > 0 {
                let width = 30, filled = min(width, width * done / total)
                text = "[" + String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled) + "] "
                    + "\(done)/\(total) (\(100 * done / total)%)"
            }
            text += String(format: "  %.0f queries/s", rate)
            if let eta { text += String(format: "  ETA %d:%02d", Int(eta) / 60, Int(eta) % 60) }
            FileHandle.standardError.write(Data("\r\u{1B}[K\(text)".utf8))
        }
    }

    func done() {
        if terminal && !json { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

/// The thread that writes the job's blocks: the next block searches while
/// this one is written, synced and checkpointed. One block in flight; a
/// failure is thrown by the next `submit` or `wait`.
final class BlockWriter: @unchecked Sendable {
    // `failure` is written by the queue's task and read after `group.wait()`.
    private let queue = DispatchQueue(label: "lodestone.knn.writer")
    private let group = DispatchGroup()
    private var failure: Error?

    /// Waits for the block before, then hands `work` to the thread.
    func submit(_ work: @escaping () throws -> Void) throws {
        try wait()
        nonisolated(unsafe) let task = work  // runs on the writer thread alone, while the caller waits for it
        group.enter()
        queue.async {
            defer { self.group.leave() }
            do { try task() } catch { self.failure = error }
        }
    }

    /// Waits until every block handed over is written.
    func wait() throws {
        group.wait()
        if let failure {
            self.failure = nil
            throw failure
        }
    }
}
