import ArgumentParser
import Foundation
import Lodestone

/// `lodestone bench`: recall and speed of an index on vector files.
///
/// Prints one JSON object per configuration on its own line (`--json`), with
/// at least `index metric k n dim queries recall qps p50_us p99_us build_s
/// threads batch`. Without `--batch`, one thread issues one query at a time;
/// with it, all queries go in one call on `--threads` threads.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure recall and speed of an index on fvecs/ivecs/npy files.")

    @Option(help: "Base vectors (.fvecs or .npy float32).") var base: String
    @Option(help: "Query vectors (.fvecs or .npy float32).") var queries: String
    @Option(help: "Ground truth: each query's nearest base rows, best first (.ivecs or .npy int32).") var truth: String
    @Option(help: "cosine, euclidean or dotproduct.") var metric: String = "cosine"
    @Option(help: "Neighbours per query.") var k: Int = 10
    @Option(help: "Index kind: flat or hnsw.") var index: String = "flat"
    @Option(help: "HNSW: links per node (layer 0 keeps 2m).") var m: Int = 16
    @Option(name: .customLong("ef-construction"), help: "HNSW: beam width while building.") var efConstruction: Int = 200
    @Option(help: "HNSW: comma-separated search beam widths, one JSON line each.") var ef: String = "64"
    @Flag(help: "Send all queries in one batch call.") var batch = false
    @Option(help: "Threads for batch search and for building an HNSW index.") var threads: Int = FlatIndex.defaultThreadCount
    @Option(help: "Batch mode: run the batch this many times and report the fastest.") var repeats: Int = 3
    @Option(help: "Use only the first N queries.") var limitQueries: Int?
    @Flag(help: "Print JSON lines.") var json = false

    func run() throws {
        BenchEnvironment.reexecWithoutOpenBLASOverrides()
        guard let metric = Metric(name: metric) else {
            throw ValidationError("unknown metric '\(self.metric)': use cosine, euclidean or dotproduct")
        }
        guard index == "flat" || index == "hnsw" else {
            throw ValidationError("unknown index '\(index)': use flat or hnsw")
        }
        let efs = try ef.split(separator: ",").map { part -> Int in
            guard let v = Int(part.trimmingCharacters(in: .whitespaces)), v >= 1 else {
                throw ValidationError("--ef takes comma-separated positive integers, got '\(ef)'")
            }
            return v
        }
        guard k >= 1 else { throw ValidationError("--k must be at least 1") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }

        let baseM = try VectorFiles.readFloats(base)
        var queryM = try VectorFiles.readFloats(queries)
        let truthM = try VectorFiles.readInts(truth)
        if let limit = limitQueries { queryM = queryM.prefix(limit) }
        guard queryM.dimension == baseM.dimension else {
            throw CLIError("\(queries): queries have \(queryM.dimension) components, base vectors \(baseM.dimension)")
        }
        guard truthM.rows >= queryM.rows else {
            throw CLIError("\(truth): \(truthM.rows) ground-truth rows for \(queryM.rows) queries")
        }
        guard truthM.dimension >= k else {
            throw CLIError("\(truth): ground truth holds \(truthM.dimension) neighbours per query, fewer than k = \(k)")
        }

        let t0 = now()
        let keys = (0..<UInt64(baseM.rows)).map { $0 }
        var flat: FlatIndex? = nil
        var hnsw: HNSWIndex? = nil
        if index == "flat" {
            var f = try FlatIndex(dimension: baseM.dimension, metric: metric)
            try f.add(contentsOf: baseM.values, keys: keys)
            flat = f
        } else {
            let h = try HNSWIndex(dimension: baseM.dimension, metric: metric,
                                  parameters: HNSWParameters(m: m, efConstruction: efConstruction))
            try h.add(contentsOf: baseM.values, keys: keys, threads: threads)
            hnsw = h
        }
        let buildSeconds = now() - t0
        let nq = queryM.rows
        let rows = (0..<nq).map { queryM.row($0) }

        for efValue in (index == "hnsw" ? efs : [0]) {
            var line = JSONLine()
            line.set("index", index)
            line.set("metric", metric.rawValue)
            line.set("k", k)
            line.set("n", baseM.rows)
            line.set("dim", baseM.dimension)
            line.set("queries", queryM.rows)
            func searchOne(_ q: [Float]) throws -> [Neighbor] {
                if let flat { return try flat.search(q, k: k) }
                return try hnsw!.search(q, k: k, ef: efValue)
            }
            var results: [[Neighbor]] = []
            var latencies: [Double] = []
            var elapsed = Double.infinity
            var stats: BatchSearchStatistics? = nil
            if batch {
                for _ in 0..<max(1, repeats) {
                    let s0 = now()
                    var r: [[Neighbor]]
                    var st: BatchSearchStatistics? = nil
                    if let flat {
                        let out = try flat.searchWithStatistics(batch: queryM.values, k: k, threads: threads)
                        r = out.results
                        st = out.statistics
                    } else {
                        r = try hnsw!.search(batch: queryM.values, k: k, ef: efValue, threads: threads)
                    }
                    let e = now() - s0
                    if e < elapsed {
                        elapsed = e
                        results = r
                        stats = st
                    }
                }
            } else {
                for i in 0..<min(10, nq) { _ = try searchOne(rows[i]) }  // warm-up
                results.reserveCapacity(nq)
                latencies.reserveCapacity(nq)
                let s0 = now()
                for q in rows {
                    let a = now()
                    results.append(try searchOne(q))
                    latencies.append(now() - a)
                }
                elapsed = now() - s0
            }

            var hits = 0
            for i in 0..<nq {
                let truthRow = Set(truthM.values[(i * truthM.dimension)..<(i * truthM.dimension + k)].map { Int($0) })
                hits += results[i].prefix(k).filter { truthRow.contains(Int($0.key)) }.count
            }
            let recall = Double(hits) / Double(nq * k)
            latencies.sort()
            line.set("recall", recall)
            line.set("qps", Double(nq) / elapsed, digits: 1)
            line.set("p50_us", batch ? .nan : percentile(latencies, 50) * 1e6, digits: 1)
            line.set("p99_us", batch ? .nan : percentile(latencies, 99) * 1e6, digits: 1)
            line.set("build_s", buildSeconds)
            line.set("threads", threads)
            line.set("batch", batch)
            if let hnsw {
                line.set("ef", efValue)
                line.set("m", m)
                line.set("ef_construction", efConstruction)
                line.set("memory_bytes", hnsw.memoryBytes)
                line.set("bytes_per_vector", Double(hnsw.memoryBytes) / Double(baseM.rows), digits: 1)
            }
            line.set("kernels", DistanceKernels.active.isa.rawValue)
            line.set("blas_core", BLAS.coreName)
            if flat != nil {
                let bytes = Double(baseM.rows) * Double(baseM.dimension) * 4 * Double(nq)
                line.set("scan_gbps", bytes / elapsed / 1e9, digits: 2)
            }
            if let stats {
                let sgemm = BLAS.measureSGEMM(size: 2048, repetitions: 3)
                line.set("gemm_gflops_per_thread", stats.gemmGFLOPSPerThread, digits: 1)
                line.set("sgemm_gflops_1t", sgemm, digits: 1)
                line.set("gemm_vs_sgemm", stats.gemmGFLOPSPerThread / sgemm, digits: 3)
                line.set("gemm_s", stats.gemmSeconds)
                line.set("select_s", stats.selectionSeconds)
                line.set("rescore_s", stats.rescoreSeconds)
                line.set("exact_fallbacks", stats.exactFallbacks)
                line.set("used_gemm", stats.usedGEMM)
            }
            if json {
                print(line.text)
            } else {
                let mode = batch ? " (batch, \(threads) threads)"
                    : String(format: ", p50 %.0f µs, p99 %.0f µs", percentile(latencies, 50) * 1e6, percentile(latencies, 99) * 1e6)
                print("\(index)\(hnsw != nil ? " ef=\(efValue)" : "") \(metric.rawValue) k=\(k) n=\(baseM.rows) queries=\(nq): "
                      + String(format: "recall@%d %.4f, %.1f queries/s", k, recall, Double(nq) / elapsed)
                      + mode + String(format: ", build %.2f s", buildSeconds))
            }
        }
    }
}

/// Benchmark-only process set-up.
enum BenchEnvironment {
    /// Some machines set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for old
    /// OpenBLAS builds; a stale core type makes sgemm several times slower.
    /// OpenBLAS reads them when it loads, so a benchmark that finds them set
    /// re-executes itself without them (tests and library users are untouched).
    static func reexecWithoutOpenBLASOverrides() {
        let names = ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"]
        guard names.contains(where: { getenv($0) != nil }) else { return }
        for name in names { unsetenv(name) }
        let args = CommandLine.arguments
        var cArgs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
        cArgs.append(nil)
        execv("/proc/self/exe", &cArgs)
        // exec failed: carry on with the overrides gone from our environment
        // (OpenBLAS already read them; the printed blas_core shows the effect).
    }
}
