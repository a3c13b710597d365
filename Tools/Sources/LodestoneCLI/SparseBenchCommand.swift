import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// `lodestone bench-sparse`: a sparse index built from `.spvecs` files and
/// timed on their queries, as Benchmarks/sparse/compare_sparse.py runs it
/// beside Seismic and scipy.
struct SparseBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-sparse",
        abstract: "Build a sparse index from .spvecs files and time its queries (one batch call).",
        discussion: """
            A .spvecs file holds rows of little-endian int32 nnz, nnz int32 term ids, nnz float32 values \
            (Benchmarks/sparse/make_bm25.py writes them). Record ids are row numbers. With --dense-base and \
            --dense-queries (.fvecs, the same rows), it builds an HNSW index of both instead and times dense \
            queries against hybrid ones (dense plus sparse, the sum of both scores), one query at a time.
            """)

    @Option(help: "Sparse vectors to index (.spvecs).") var base: String
    @Option(help: "Sparse queries (.spvecs).") var queries: String
    @Option(help: "Results per query.") var k: Int = 10
    @Option(help: "Query threads (one batch call).") var threads: Int = 1
    @Option(help: "Time passes over the queries until this many seconds have passed; report the fastest.")
    var minSeconds: Double = 0.5
    @Option(help: "Write each query's result row numbers here (.ivecs, -1 pads).") var idsOut: String?
    @Option(help: "Dense vectors of the same rows (.fvecs): time hybrid queries against dense ones.") var denseBase: String?
    @Option(help: "Dense queries (.fvecs), the same rows as --queries.") var denseQueries: String?
    @Option(help: "The dense queries' exact neighbours (.ivecs), for their recall@k.") var denseTruth: String?
    @Option(help: "Metric of the dense vectors: cosine or dotproduct.") var metric: String = "cosine"
    @Option(help: "HNSW beam width (and each side's candidates in a hybrid query).") var ef: Int = 64
    @Flag(help: "Hybrid: persist the index and time it as opened again (read from its segment), as a service would.")
    var reopen = false
    @Flag(help: "Print one JSON line.") var json = false

    func run() throws {
        let documents = try SparseVectorFile.read(base)
        let queryVectors = try SparseVectorFile.read(queries)
        if let denseBase, let denseQueries {
            return try hybrid(documents, queryVectors, denseBase: denseBase, denseQueries: denseQueries)
        }
        let directory = NSTemporaryDirectory() + "lodestone-bench-sparse-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let db = try Database(path: directory)
        let index = try db.createSparseIndex(name: "bench", options: IndexOptions(durability: .none))
        let buildStart = now()
        var start = 0
        while start < documents.count {
            let end = min(documents.count, start + 10_000)
            try index.upsert((start..<end).compactMap { i in
                documents[i].isEmpty ? nil : Record(id: String(i), values: [], sparseValues: documents[i])
            })
            start = end
        }
        let buildSeconds = now() - buildStart
        _ = try index.queryBatch(sparseVectors: Array(queryVectors.prefix(50)), topK: k, threads: threads)  // warm-up
        var fastest = Double.infinity, passes = 0
        var results: [[Match]] = []
        let timing = now()
        repeat {
            let s0 = now()
            results = try index.queryBatch(sparseVectors: queryVectors, topK: k, threads: threads)
            fastest = min(fastest, now() - s0)
            passes += 1
        } while now() - timing < minSeconds
        if let idsOut { try writeIDs(results, to: idsOut) }
        let qps = Double(queryVectors.count) / fastest
        if json {
            var line = JSONLine()
            line.set("engine", "lodestone")
            line.set("documents", documents.count)
            line.set("queries", queryVectors.count)
            line.set("k", k)
            line.set("threads", threads)
            line.set("build_s", buildSeconds, digits: 3)
            line.set("seconds", fastest, digits: 5)
            line.set("passes", passes)
            line.set("qps", qps, digits: 1)
            print(line.text)
        } else {
            print(String(format: "%d documents indexed in %.2f s; %d queries, k %d: %.0f queries/s on %d thread(s) "
                         + "(fastest of %d passes)", documents.count, buildSeconds, queryVectors.count, k, qps, threads,
                         passes))
        }
    }
}

extension SparseBenchCommand {
    /// Each query's result row numbers (.ivecs, -1 pads).
    func writeIDs(_ results: [[Match]], to path: String) throws {
        var rows = [Int32]()
        for r in results {
            let ids = r.map { Int32($0.id)! }
            rows += ids + [Int32](repeating: -1, count: k - ids.count)
        }
        try VectorFiles.writeIvecs(Matrix(rows: results.count, dimension: k, values: rows), to: path)
    }

    /// Dense against hybrid queries on one HNSW index of both, one query at
    /// a time on this thread, alternating passes; the fastest pass of each.
    func hybrid(_ documents: [SparseVector], _ sparseQueries: [SparseVector], denseBase: String,
                denseQueries: String) throws {
        let base = try VectorFiles.readFloats(denseBase), queries = try VectorFiles.readFloats(denseQueries)
        guard base.rows == documents.count, queries.rows == sparseQueries.count else {
            throw ValidationError("the dense files hold \(base.rows) and \(queries.rows) rows, the sparse ones "
                                  + "\(documents.count) and \(sparseQueries.count)")
        }
        guard let metric = Metric(name: metric) else { throw ValidationError("unknown metric \(metric)") }
        let directory = NSTemporaryDirectory() + "lodestone-bench-hybrid-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let db = try Database(path: directory)
        var index = try db.createIndex(name: "bench", dimension: base.dimension, metric: metric,
                                       options: IndexOptions(durability: .none))
        let buildStart = now()
        var start = 0
        while start < base.rows {
            let end = min(base.rows, start + 10_000)
            try index.upsert((start..<end).map { i in
                Record(id: String(i), values: base.row(i), sparseValues: documents[i].isEmpty ? nil : documents[i])
            }, threads: ProcessInfo.processInfo.activeProcessorCount)
            start = end
        }
        let buildSeconds = now() - buildStart
        if reopen {
            try index.close()
            index = try db.index("bench")
        }
        let rows = (0..<queries.rows).map { queries.row($0) }
        func denseQueriesPass() throws -> [[Match]] {
            try rows.map { try index.query(vector: $0, topK: k, ef: ef).matches }
        }
        func hybridPass() throws -> [[Match]] {
            try zip(rows, sparseQueries).map { try index.query(vector: $0, sparseVector: $1, topK: k, ef: ef).matches }
        }
        _ = try denseQueriesPass()
        _ = try hybridPass()
        var denseBest = Double.infinity, hybridBest = Double.infinity, passes = 0
        var denseResults: [[Match]] = [], hybridResults: [[Match]] = []
        let timing = now()
        repeat {
            var s0 = now()
            denseResults = try denseQueriesPass()
            denseBest = min(denseBest, now() - s0)
            s0 = now()
            hybridResults = try hybridPass()
            hybridBest = min(hybridBest, now() - s0)
            passes += 1
        } while now() - timing < 2 * minSeconds
        var recall: Double? = nil
        if let denseTruth {
            let truth = try VectorFiles.readInts(denseTruth)
            var found = 0
            for (q, matches) in denseResults.enumerated() {
                let exact = Set(truth.row(q).prefix(k))
                found += matches.filter { exact.contains(Int32($0.id)!) }.count
            }
            recall = Double(found) / Double(k * denseResults.count)
        }
        if let idsOut { try writeIDs(hybridResults, to: idsOut) }
        let denseQPS = Double(rows.count) / denseBest, hybridQPS = Double(rows.count) / hybridBest
        if json {
            var line = JSONLine()
            line.set("engine", "lodestone")
            line.set("mode", "hybrid")
            line.set("documents", documents.count)
            line.set("queries", rows.count)
            line.set("k", k)
            line.set("ef", ef)
            line.set("reopened", reopen)
            line.set("build_s", buildSeconds, digits: 3)
            line.set("dense_qps", denseQPS, digits: 1)
            line.set("hybrid_qps", hybridQPS, digits: 1)
            line.set("ratio", hybridQPS / denseQPS, digits: 3)
            if let recall { line.set("dense_recall", recall, digits: 4) }
            line.set("passes", passes)
            print(line.text)
        } else {
            print(String(format: "%d records (dense and sparse) indexed in %.1f s; ef %d, k %d, one query at a time: "
                         + "dense %.0f queries/s%@, hybrid %.0f queries/s (%.2fx)", documents.count, buildSeconds, ef, k,
                         denseQPS, recall.map { String(format: " at recall@%d %.4f", k, $0) } ?? "", hybridQPS,
                         hybridQPS / denseQPS))
        }
    }
}

/// The `.spvecs` format of Benchmarks/sparse: per row, little-endian int32
/// nnz, then nnz int32 term ids, then nnz float32 values.
enum SparseVectorFile {
    static func read(_ path: String) throws -> [SparseVector] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LodestoneError.malformedFile(path: path, reason: "cannot be read")
        }
        let words: [UInt32] = data.withUnsafeBytes { raw in
            Array(raw.bindMemory(to: UInt32.self)).map { UInt32(littleEndian: $0) }
        }
        guard data.count % 4 == 0 else { throw LodestoneError.malformedFile(path: path, reason: "not whole int32 words") }
        var out: [SparseVector] = []
        var at = 0
        while at < words.count {
            let n = Int(words[at])
            guard n <= SparseVector.maximumNonzeros, at + 1 + 2 * n <= words.count else {
                throw LodestoneError.malformedFile(path: path, reason: "row \(out.count): \(n) components do not fit")
            }
            let v = SparseVector(indices: Array(words[(at + 1)..<(at + 1 + n)]),
                                 values: words[(at + 1 + n)..<(at + 1 + 2 * n)].map { Float(bitPattern: $0) })
            out.append(try v.validated(field: "\(path) row \(out.count)"))
            at += 1 + 2 * n
        }
        return out
    }
}
