import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// `lodestone demo`: build a flat index from the sample in Data/ and query it.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Build an exact index from the sample in Data/, run real queries and print their neighbours.")

    @Option(help: "Folder holding base.fvecs, base_meta.jsonl, query.fvecs, query_meta.jsonl, groundtruth.ivecs.")
    var data: String = "Data"
    @Option(help: "Queries to show.") var show: Int = 5
    @Option(help: "Neighbours per query.") var k: Int = 5

    func run() throws {
        let dir = URL(fileURLWithPath: data)
        let base = try VectorFiles.readFloats(dir.appendingPathComponent("base.fvecs").path)
        let queries = try VectorFiles.readFloats(dir.appendingPathComponent("query.fvecs").path)
        let truth = try VectorFiles.readInts(dir.appendingPathComponent("groundtruth.ivecs").path)
        let baseMeta = try readMetadata(dir.appendingPathComponent("base_meta.jsonl"))
        let queryMeta = try readMetadata(dir.appendingPathComponent("query_meta.jsonl"))
        guard baseMeta.count == base.rows, queryMeta.count == queries.rows else {
            throw CLIError("\(data): metadata lines (\(baseMeta.count), \(queryMeta.count)) do not match vectors (\(base.rows), \(queries.rows))")
        }

        print("Lodestone demo: \(base.rows) PyPI package summaries (all-MiniLM-L6-v2, \(base.dimension)-d, cosine)")
        print("kernels: \(DistanceKernels.active.isa.rawValue), OpenBLAS core: \(BLAS.coreName)\n")

        let t0 = now()
        var index = try FlatIndex(dimension: base.dimension, metric: .cosine)
        try index.add(contentsOf: base.values, keys: (0..<UInt64(base.rows)).map { $0 })
        print(String(format: "built a flat index of %d vectors in %.1f ms\n", index.count, (now() - t0) * 1000))

        for qi in 0..<min(show, queries.rows) {
            let q = queryMeta[qi]
            print("query \(q.id): \(q.text)")
            for hit in try index.search(queries.row(qi), k: k) {
                let m = baseMeta[Int(hit.key)]
                print(String(format: "  %.3f  %@: %@", hit.score, m.id, String(m.text.prefix(90))))
            }
            print("")
        }

        // Every query in one batch call: the GEMM path, re-scored exactly.
        let t1 = now()
        let batch = try index.search(batch: queries.values, k: 10)
        let batchMs = (now() - t1) * 1000
        var same = true, hits = 0
        for qi in 0..<queries.rows {
            let single = try index.search(queries.row(qi), k: 10)
            same = same && single == batch[qi]
            let truthRow = Set(truth.row(qi).prefix(10).map { UInt64($0) })
            hits += batch[qi].filter { truthRow.contains($0.key) }.count
        }
        print(String(format: "batch search of %d queries: %.1f ms; recall@10 against the exact ground truth: %.4f",
                     queries.rows, batchMs, Double(hits) / Double(queries.rows * 10)))
        print("batch results identical to one-at-a-time results: \(same ? "yes" : "NO")")
        if !same { throw ExitCode.failure }
    }

    struct Meta { let id: String; let text: String }

    func readMetadata(_ url: URL) throws -> [Meta] {
        let text = try String(contentsOf: url, encoding: .utf8)
        var out: [Meta] = []
        for (n, line) in text.split(separator: "\n").enumerated() {
            guard let obj = try? JSONValue.parse(bytes: Array(line.utf8)), let id = obj["id"]?.stringValue else {
                throw CLIError("\(url.path):\(n + 1): not a JSON object with a string \"id\"")
            }
            out.append(Meta(id: id, text: obj["text"]?.stringValue ?? ""))
        }
        return out
    }
}
