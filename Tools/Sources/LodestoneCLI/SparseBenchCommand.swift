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
            (Benchmarks/sparse/make_bm25.py writes them). Record ids are row numbers.
            """)

    @Option(help: "Sparse vectors to index (.spvecs).") var base: String
    @Option(help: "Sparse queries (.spvecs).") var queries: String
    @Option(help: "Results per query.") var k: Int = 10
    @Option(help: "Query threads (one batch call).") var threads: Int = 1
    @Option(help: "Time passes over the queries until this many seconds have passed; report the fastest.")
    var minSeconds: Double = 0.5
    @Option(help: "Write each query's result row numbers here (.ivecs, -1 pads).") var idsOut: String?
    @Flag(help: "Print one JSON line.") var json = false

    func run() throws {
        let documents = try SparseVectorFile.read(base)
        let queryVectors = try SparseVectorFile.read(queries)
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
        if let idsOut {
            var rows = [Int32]()
            for r in results {
                let ids = r.map { Int32($0.id)! }
                rows += ids + [Int32](repeating: -1, count: k - ids.count)
            }
            try VectorFiles.writeIvecs(Matrix(rows: results.count, dimension: k, values: rows), to: idsOut)
        }
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
