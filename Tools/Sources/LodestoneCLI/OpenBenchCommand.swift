import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// `lodestone bench-open`: opens a persisted HNSW segment in this (fresh)
/// process and measures the open and the queries that follow. `bench
/// --persist` runs it as a child process and merges its JSON line.
struct OpenBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-open", abstract: "Open a persisted HNSW segment and measure open time, memory and queries.")

    @Option(help: "Segment file written by persist.") var segment: String
    @Option(help: "Query vectors.") var queries: String
    @Option(help: "Ground truth.") var truth: String
    @Option var k: Int = 10
    @Option var ef: Int = 64
    @Option var limitQueries: Int?
    @Flag(help: "Print each query's result keys (one JSON array per line) instead of figures.") var dump = false
    @Flag(help: "Also run all queries as one batch call and report batch_qps (best of 3).") var batch = false
    @Option(help: "Threads for --batch.") var threads: Int = Parallelism.defaultThreadCount
    @Option(help: "Run the queries this many times; passes after the first are reported as steady_qps, steady_p50_us and steady_p99_us (the best pass): pages the first pass mapped stay mapped, as in a long-running server.")
    var passes: Int = 1

    static func residentBytes() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return .nan }
        let fields = text.split(separator: " ")
        return (Double(fields[1]) ?? .nan) * Double(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// This process's memory in bytes (Linux; nil elsewhere): resident
    /// (`Rss`), proportional (`Pss`: page-cache pages of a mapped file
    /// shared among the processes mapping them), and the resident split into
    /// its own memory (`anon`) and mapped file pages (`file`: the page
    /// cache's, which the kernel reclaims under pressure).
    static func memory() -> (rss: Int, pss: Int, anon: Int, file: Int)? {
        func fields(_ path: String) -> [Substring: Int] {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
            var out: [Substring: Int] = [:]
            for line in text.split(separator: "\n") {
                let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                if parts.count >= 2, let kb = Int(parts[1]) { out[parts[0]] = kb * 1024 }
            }
            return out
        }
        let rollup = fields("/proc/self/smaps_rollup"), status = fields("/proc/self/status")
        guard let rss = rollup["Rss:"], let pss = rollup["Pss:"], let anon = status["RssAnon:"],
              let file = status["RssFile:"] else { return nil }
        return (rss, pss, anon, file)
    }

    func run() throws {
        var queryM = try VectorFiles.readFloats(queries)
        let truthM = try VectorFiles.readInts(truth)
        if let limit = limitQueries { queryM = queryM.prefix(limit) }
        let rows = (0..<queryM.rows).map { queryM.row($0) }
        let rss0 = Self.residentBytes()
        let t0 = now()
        let index = try HNSWIndex.open(path: segment)
        let openSeconds = now() - t0
        let rss1 = Self.residentBytes()
        if dump {
            for q in rows { print("[" + (try index.search(q, k: k, ef: ef)).map { String($0.key) }.joined(separator: ",") + "]") }
            print("{\"nodes_linked\": \(index.nodesLinked)}")
            return
        }
        for i in 0..<min(10, rows.count) { _ = try index.search(rows[i], k: k, ef: ef) }
        func pass() throws -> (results: [[Neighbor]], latencies: [Double], seconds: Double) {
            var results: [[Neighbor]] = []
            var latencies: [Double] = []
            let s0 = now()
            for q in rows {
                let a = now()
                results.append(try index.search(q, k: k, ef: ef))
                latencies.append(now() - a)
            }
            return (results, latencies.sorted(), now() - s0)
        }
        let (results, latencies, elapsed) = try pass()
        var steady: (qps: Double, p50: Double, p99: Double)? = nil
        for _ in 1..<max(passes, 1) {
            let again = try pass()
            let qps = Double(rows.count) / again.seconds
            if qps > steady?.qps ?? 0 { steady = (qps, percentile(again.latencies, 50), percentile(again.latencies, 99)) }
        }
        var hits = 0
        for i in 0..<rows.count {
            let truthRow = Set(truthM.values[(i * truthM.dimension)..<(i * truthM.dimension + k)].map { UInt64($0) })
            hits += results[i].filter { truthRow.contains($0.key) }.count
        }
        var line = JSONLine()
        line.set("open_ms", openSeconds * 1000, digits: 3)
        line.set("open_rss_mb", (rss1 - rss0) / 1e6, digits: 2)
        line.set("reopened_recall", Double(hits) / Double(rows.count * k))
        line.set("reopened_qps", Double(rows.count) / elapsed, digits: 1)
        line.set("reopened_p50_us", percentile(latencies, 50) * 1e6, digits: 1)
        line.set("reopened_p99_us", percentile(latencies, 99) * 1e6, digits: 1)
        if let steady {
            line.set("steady_qps", steady.qps, digits: 1)
            line.set("steady_p50_us", steady.p50 * 1e6, digits: 1)
            line.set("steady_p99_us", steady.p99 * 1e6, digits: 1)
        }
        let size = ((try? FileManager.default.attributesOfItem(atPath: segment))?[.size] as? NSNumber)?.intValue ?? 0
        line.set("file_bytes", size)
        // What serving these queries keeps resident (before the batch, which
        // holds its own buffers).
        if let memory = Self.memory() {
            line.set("serve_rss", memory.rss)
            line.set("serve_pss", memory.pss)
            line.set("serve_rss_anon", memory.anon)
            line.set("serve_rss_file", memory.file)
        }
        if batch {
            var best = Double.infinity
            for _ in 0..<3 {
                let b0 = now()
                _ = try index.search(batch: queryM.values, k: k, ef: ef, threads: threads)
                best = min(best, now() - b0)
            }
            line.set("batch_qps", Double(rows.count) / best, digits: 1)
            line.set("threads", threads)
        }
        print(line.text)
    }

    /// Runs `bench-open` in a child process and returns its JSON fields.
    static func measureInChild(segment: String, queries: String, truth: String, k: Int, ef: Int, limit: Int) throws
        -> JSONValue
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        process.arguments = ["bench-open", "--segment", segment, "--queries", queries, "--truth", truth,
                             "--k", String(k), "--ef", String(ef), "--limit-queries", String(limit)]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let object = try? JSONValue.parse(bytes: data), case .object = object else {
            throw CLIError("bench-open failed (exit \(process.terminationStatus))")
        }
        return object
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
