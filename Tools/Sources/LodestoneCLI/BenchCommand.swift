import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// `lodestone bench`: recall and speed of an index on vector files.
///
/// Prints one JSON object per configuration on its own line (`--json`), with
/// at least `index metric k n dim queries recall qps p50_us p99_us build_s
/// threads batch`. Without `--batch`, one thread issues one query at a time;
/// with it, all queries go in one call on `--threads` threads.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure recall and speed of an index on fvecs/ivecs/npy files.")

    @Option(help: "Base vectors (.fvecs or .npy float32).") var base: String?
    @Option(help: "Query vectors (.fvecs or .npy float32).") var queries: String?
    @Option(help: "Ground truth: each query's nearest base rows, best first (.ivecs or .npy int32).") var truth: String?
    @Option(help: "An ann-benchmarks HDF5 file, in place of --base, --queries, --truth and --metric (train, test, neighbors and its distance attribute).")
    var hdf5: String?
    @Option(help: "cosine, euclidean or dotproduct (default: cosine, or the --hdf5 file's distance).") var metric: String?
    @Option(help: "Neighbours per query.") var k: Int = 10
    @Option(help: "Index kind: flat or hnsw.") var index: String = "flat"
    @Option(help: "HNSW: links per node (layer 0 keeps 2m).") var m: Int = 16
    @Option(name: .customLong("ef-construction"), help: "HNSW: beam width while building.") var efConstruction: Int = 200
    @Option(help: "HNSW: comma-separated search beam widths, one JSON line each.") var ef: String = "64"
    @Option(help: "HNSW: the layer-0 walk, exact, quantized (neighbour codes) or compact (4-bit codes); see HNSWParameters.Traversal.")
    var traversal: String = "exact"
    @Flag(help: "Send all queries in one batch call.") var batch = false
    @Option(help: "Threads for batch search and for building an HNSW index.") var threads: Int = Parallelism.defaultThreadCount
    @Option(help: "Run the batch (or, one query at a time, the whole query set) this many times and report the fastest pass.")
    var repeats: Int = 3
    @Option(help: "Use only the first N queries.") var limitQueries: Int?
    @Option(help: "HNSW: build on the first nine tenths of the base, then insert the last tenth in batches of this many vectors (as a service's upserts arrive); reports insert_per_s, and recall on the whole index.")
    var insertBatch: Int?
    @Flag(help: "Print JSON lines.") var json = false
    @Option(help: """
        A filter file (a Pinecone filter, or an object whose "filter" field is one); repeat for several \
        filters in one run (one build, then each filter's sweep; "none" is the unfiltered sweep, with \
        --truth). A lone --filter file takes --truth as its ground truth; beside "none" or other filters, \
        each file names its own ("groundtruth": beside the file, else in --filter-truth-dir).
        """)
    var filter: [String] = []
    @Option(help: "Where to look for the ground truth a filter file names when it is not beside the file.")
    var filterTruthDir: String?
    @Option(help: "Metadata, JSON Lines in base-vector order (needed with --filter).") var metadata: String?
    @Option(help: "HNSW: also persist the index into this folder, reopen it in a fresh process and report persist_s, open_ms, open_rss_mb and the reopened index's recall and qps.")
    var persist: String?

    /// Base vectors, queries, ground truth and the metric the data names:
    /// from an ann-benchmarks HDF5 file, or from the three vector files.
    func loadData() throws -> (Matrix<Float>, Matrix<Float>, Matrix<Int32>, Metric?) {
        if let hdf5 {
            guard base == nil, queries == nil, truth == nil else {
                throw ValidationError("--hdf5 replaces --base, --queries and --truth: give one or the other")
            }
            let file = HDF5File(path: hdf5)
            return (try file.floats("train"), try file.floats("test"), try file.ints("neighbors"), try file.metric())
        }
        guard let base, let queries, let truth else {
            throw ValidationError("give --base, --queries and --truth (vector files), or --hdf5 (an ann-benchmarks file)")
        }
        return (try VectorFiles.readFloats(base), try VectorFiles.readFloats(queries), try VectorFiles.readInts(truth), .cosine)
    }

    func run() throws {
        BenchEnvironment.reexecWithoutOpenBLASOverrides()
        let (baseM, loadedQueries, truthM, fileMetric) = try loadData()
        var queryM = loadedQueries
        let queries = hdf5.map { $0 + " (test)" } ?? self.queries!
        let truth = hdf5.map { $0 + " (neighbors)" } ?? self.truth!
        guard let metric = self.metric.map({ Metric(name: $0) }) ?? fileMetric else {
            throw ValidationError("unknown metric '\(self.metric ?? "")': use cosine, euclidean or dotproduct")
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

        if let size = insertBatch {
            guard index == "hnsw" else { throw ValidationError("--insert-batch needs --index hnsw") }
            guard size >= 1 else { throw ValidationError("--insert-batch must be at least 1, got \(size)") }
        }
        let t0 = now()
        var insertPerSecond: Double? = nil
        let keys = (0..<UInt64(baseM.rows)).map { $0 }
        var flat: FlatIndex? = nil
        var hnsw: HNSWIndex? = nil
        if index == "flat" {
            var f = try FlatIndex(dimension: baseM.dimension, metric: metric)
            try f.add(contentsOf: baseM.values, keys: keys)
            flat = f
        } else {
            guard let walk = HNSWParameters.Traversal(rawValue: traversal) else {
                throw ValidationError("--traversal must be exact, quantized or compact, got \(traversal)")
            }
            let h = try HNSWIndex(dimension: baseM.dimension, metric: metric,
                                  parameters: HNSWParameters(m: m, efConstruction: efConstruction, traversal: walk))
            if let size = insertBatch {
                // Nine tenths in one bulk build, the rest `size` at a time.
                let bulk = baseM.rows - baseM.rows / 10, d = baseM.dimension
                try h.add(contentsOf: Array(baseM.values[0..<(bulk * d)]), keys: Array(keys[0..<bulk]), threads: threads)
                let i0 = now()
                for start in stride(from: bulk, to: baseM.rows, by: size) {
                    let end = min(baseM.rows, start + size)
                    try h.add(contentsOf: Array(baseM.values[(start * d)..<(end * d)]), keys: Array(keys[start..<end]),
                              threads: threads)
                }
                insertPerSecond = Double(baseM.rows - bulk) / (now() - i0)
            } else {
                try h.add(contentsOf: baseM.values, keys: keys, threads: threads)
            }
            hnsw = h
        }
        let buildSeconds = now() - t0
        let nq = queryM.rows
        let cases = try filterCases(truth: truthM, rows: baseM.rows, queries: queryM.rows)
        var persistSeconds = 0.0
        var segmentPath: String? = nil
        if let dir = persist {
            guard let hnsw else { throw ValidationError("--persist needs --index hnsw") }
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let path = (dir as NSString).appendingPathComponent("bench.lodestone")
            let p0 = now()
            try hnsw.persist(to: path)
            persistSeconds = now() - p0
            segmentPath = path
        }
        let rows = (0..<nq).map { queryM.row($0) }

        for (filterName, allowed, truthM) in cases {
        for efValue in (index == "hnsw" ? efs : [0]) {
            var line = JSONLine()
            if let filterName { line.set("filter", filterName) }
            line.set("index", index)
            line.set("metric", metric.rawValue)
            line.set("k", k)
            line.set("n", baseM.rows)
            line.set("dim", baseM.dimension)
            line.set("queries", queryM.rows)
            var plans: [String: Int] = [:]
            var distances = 0
            var expanded = 0
            func searchOne(_ q: [Float]) throws -> [Neighbor] {
                if let flat {
                    guard let allowed else { return try flat.search(q, k: k) }
                    let (results, statistics) = try flat.search(q, k: k, allowedKeys: allowed.keys, matchCount: allowed.count)
                    plans[statistics.plan.rawValue, default: 0] += 1
                    return results
                }
                if let allowed {
                    let (results, statistics) = try hnsw!.search(q, k: k, ef: efValue, allowedKeys: allowed.keys,
                                                                 matchCount: allowed.count)
                    plans[statistics.plan.rawValue, default: 0] += 1
                    distances += statistics.distancesComputed
                    expanded += statistics.nodesVisited
                    return results
                }
                let (results, statistics) = try hnsw!.search(q, k: k, ef: efValue, allowedKeys: nil)
                distances += statistics.distancesComputed
                expanded += statistics.nodesVisited
                return results
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
                    if let flat, let allowed {
                        r = try flat.search(batch: queryM.values, k: k, allowedKeys: allowed.keys, matchCount: allowed.count,
                                            threads: threads)
                        plans["flat-batch", default: 0] += nq
                    } else if let flat {
                        let out = try flat.searchWithStatistics(batch: queryM.values, k: k, threads: threads)
                        r = out.results
                        st = out.statistics
                    } else {
                        r = try hnsw!.search(batch: queryM.values, k: k, ef: efValue, allowedKeys: allowed?.keys,
                                             matchCount: allowed?.count, threads: threads)
                        if allowed != nil { plans["batch", default: 0] += nq }
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
                // The fastest of `repeats` passes over the queries (a shared
                // machine's hiccups only ever slow a pass down).
                for _ in 0..<max(1, repeats) {
                    var passResults: [[Neighbor]] = [], passLatencies: [Double] = []
                    passResults.reserveCapacity(nq)
                    passLatencies.reserveCapacity(nq)
                    let s0 = now()
                    for q in rows {
                        let a = now()
                        passResults.append(try searchOne(q))
                        passLatencies.append(now() - a)
                    }
                    let e = now() - s0
                    if e < elapsed {
                        elapsed = e
                        results = passResults
                        latencies = passLatencies
                    }
                }
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
            if let insertPerSecond { line.set("insert_per_s", insertPerSecond, digits: 0) }
            line.set("threads", threads)
            line.set("batch", batch)
            if let allowed {
                line.set("plan", plans.keys.sorted().joined(separator: "+"))
                line.set("filter_matches", allowed.count)
                line.set("selectivity", Double(allowed.count) / Double(baseM.rows), digits: 4)
            }
            if let hnsw {
                if !batch {
                    let searches = Double(min(10, nq) + max(1, repeats) * nq)
                    line.set("distances_per_query", Double(distances) / searches, digits: 1)
                    line.set("nodes_per_query", Double(expanded) / searches, digits: 1)
                }
                line.set("ef", efValue)
                line.set("m", m)
                line.set("ef_construction", efConstruction)
                line.set("traversal", traversal)
                line.set("memory_bytes", hnsw.memoryBytes)
                line.set("bytes_per_vector", Double(hnsw.memoryBytes) / Double(baseM.rows), digits: 1)
                line.set("resident_bytes_per_vector", hnsw.residentBytesPerVector)
            }
            if let segmentPath {
                let reopened = try OpenBenchCommand.measureInChild(segment: segmentPath, queries: queries, truth: truth,
                                                                   k: k, ef: efValue, limit: nq)
                line.set("persist_s", persistSeconds)
                line.set("file_bytes", reopened["file_bytes"]?.integerValue ?? 0)
                for key in ["open_ms", "open_rss_mb", "reopened_recall", "reopened_qps", "reopened_p50_us"] {
                    line.set(key, reopened[key]?.numberValue ?? .nan, digits: key == "reopened_recall" ? 4 : 3)
                }
            }
            line.set("kernels", DistanceKernels.active.isa.rawValue)
            if traversal == "quantized" { line.set("neighbour_code_kernels", DistanceKernels.neighbourCodeISA.rawValue) }
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
                      + mode + String(format: ", build %.2f s", buildSeconds) + (filterName.map { ", filter \($0)" } ?? ""))
            }
        }
        }
    }

    /// The sweeps to run: unfiltered, or each `--filter` with its matching
    /// keys and ground truth ("none" is the unfiltered sweep, with --truth).
    func filterCases(truth: Matrix<Int32>, rows: Int, queries: Int) throws
        -> [(name: String?, allowed: (keys: Bitset, count: Int)?, truth: Matrix<Int32>)]
    {
        if filter.isEmpty { return [(nil, nil, truth)] }
        let named = filter.filter { $0 != "none" }
        var metadataIndex: MetadataIndex? = nil
        if !named.isEmpty {
            guard let metadataPath = metadata else { throw ValidationError("--filter needs --metadata M.jsonl") }
            let index = MetadataIndex()
            let lines = try String(contentsOfFile: metadataPath, encoding: .utf8).split(separator: "\n")
            for (row, line) in lines.enumerated() { index.set(try Metadata.from(json: JSONValue.parse(String(line))), slot: row) }
            metadataIndex = index
        }
        return try filter.map { path in
            if path == "none" { return ("none", nil, truth) }
            let text = try String(contentsOfFile: path, encoding: .utf8)
            var json = try JSONValue.parse(text)
            var name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
            var filterTruth = truth
            if case let .object(fields) = json, let inner = fields["filter"] {
                json = inner
                if case let .string(n)? = fields["name"] { name = n }
                if filter.count > 1, case let .string(file)? = fields["groundtruth"] {
                    let beside = ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent(file)
                    let truthPath = FileManager.default.fileExists(atPath: beside) || filterTruthDir == nil
                        ? beside : (filterTruthDir! as NSString).appendingPathComponent(file)
                    filterTruth = try VectorFiles.readInts(truthPath)
                    guard filterTruth.rows >= queries, filterTruth.dimension >= k else {
                        throw CLIError("\(truthPath): too few rows or neighbours for these queries and k = \(k)")
                    }
                } else if filter.count > 1 {
                    throw CLIError("\(path): beside \"none\" or other --filter files, each must name its \"groundtruth\"")
                }
            }
            let matching = metadataIndex!.evaluate(try Filter(json: json))
            return (name, (matching, matching.count), filterTruth)
        }
    }
}
