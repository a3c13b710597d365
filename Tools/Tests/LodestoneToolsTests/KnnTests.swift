import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

/// `lodestone knn`, end to end through the command (the debug build).
@Suite("lodestone knn: batch jobs to files, resumable")
struct KnnTests {
    static func run(_ arguments: [String]) throws -> CLITests.Run { try CLITests.run(["knn"] + arguments) }

    static func ok(_ arguments: [String]) throws -> String {
        let r = try run(arguments)
        #expect(r.status == 0, "\(arguments): \(r.errors)")
        return r.output
    }

    /// The data files: base, queries, exact top-100 of each query.
    static var files: (base: String, queries: String, truth: String) {
        (Fixtures.dataFile(small: "small_base.fvecs", sample: "base.fvecs"),
         Fixtures.dataFile(small: "small_query.fvecs", sample: "query.fvecs"),
         Fixtures.dataFile(small: "small_groundtruth.ivecs", sample: "groundtruth.ivecs"))
    }

    /// An `.npy` file of int64 or float32 rows (as `knn` writes them).
    static func readNpy<T>(_ path: String, as: T.Type) throws -> (rows: Int, cols: Int, values: [T]) {
        let bytes = try VectorFiles.readFile(path)
        let header = String(decoding: bytes[10..<128], as: UTF8.self)
        let shape = header.split(separator: "(")[1].split(separator: ")")[0].split(separator: ",")
            .map { Int($0.trimmingCharacters(in: .whitespaces))! }
        let values = bytes[128...].withUnsafeBytes { Array($0.bindMemory(to: T.self)) }
        return (shape[0], shape[1], values)
    }

    static func jsonLines(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    @Test("a base file searched exactly: every format holds the exact top-k, block after block")
    func baseFileFormats() throws {
        let dir = Fixtures.temporaryDirectory("knn")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (base, queries, truthPath) = Self.files
        let truth = try VectorFiles.readInts(truthPath)
        let k = 10, n = truth.rows
        for out in ["r.npy", "r.ivecs", "r.jsonl"] {
            _ = try Self.ok(["--base", base, "--queries", queries, "--k", "\(k)", "--out", dir + "/" + out, "--block", "37"])
        }
        let npy = try Self.readNpy(dir + "/r.ids.npy", as: Int64.self)
        let npyScores = try Self.readNpy(dir + "/r.scores.npy", as: Float.self)
        #expect(npy.rows == n && npy.cols == k && npyScores.rows == n)
        let ivecs = try VectorFiles.readInts(dir + "/r.ivecs"), fvecs = try VectorFiles.readFloats(dir + "/r.fvecs")
        let lines = try Self.jsonLines(dir + "/r.jsonl")
        #expect(lines.count == n)
        var exact = 0
        for q in 0..<n {
            let want = (0..<k).map { Int64(truth.row(q)[$0]) }
            exact += Array(npy.values[(q * k)..<((q + 1) * k)]) == want ? 1 : 0
            #expect(ivecs.row(q).map(Int64.init) == Array(npy.values[(q * k)..<((q + 1) * k)]))
            #expect(fvecs.row(q) == Array(npyScores.values[(q * k)..<((q + 1) * k)]))
            #expect((lines[q]["ids"] as! [Int]).map(Int64.init) == ivecs.row(q).map(Int64.init))
            #expect(lines[q]["query"] as? Int == q)
        }
        // The ground truth is float64-exact; float32 ties may swap a pair.
        #expect(Double(exact) / Double(n) >= 0.98, "\(exact) of \(n) queries match the exact top-\(k) in order")
    }

    @Test("--self on a database index: each record's neighbours, itself excluded, equal to exact search")
    func selfJoinOnIndex() throws {
        let dir = Fixtures.temporaryDirectory("knn-self")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = Array(Fixtures.realRecords.prefix(1_500))
        let db = try Database(path: dir + "/db")
        let index = try db.createIndex(name: "docs", dimension: 384, metric: .cosine,
                                       options: IndexOptions(kind: .flat))
        try index.upsert(records)
        try db.close()
        let out = dir + "/graph.jsonl"
        _ = try Self.ok(["--db", dir + "/db", "--index", "docs", "--self", "--k", "5", "--out", out, "--block", "400"])
        let lines = try Self.jsonLines(out)
        #expect(lines.count == records.count)
        let byID = Dictionary(uniqueKeysWithValues: records.enumerated().map { ($1.id, $0) })
        let base = records.flatMap(\.values)
        for line in lines.prefix(40) {
            let id = line["query_id"] as! String
            let ids = line["ids"] as! [String]
            #expect(ids.count == 5 && !ids.contains(id))
            let exact = Fixtures.bruteForce(base: base, dimension: 384, query: records[byID[id]!].values, metric: .cosine, k: 6)
                .map { records[$0.0].id }.filter { $0 != id }.prefix(5)
            #expect(ids == Array(exact), "\(id)")
        }
    }

    @Test("an interrupted job (SIGKILL) continues from its last completed block and writes what an uninterrupted one does")
    func resumeAfterKill() throws {
        let dir = Fixtures.temporaryDirectory("knn-resume")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (base, _, _) = Self.files
        let args = ["--base", base, "--self", "--k", "8", "--block", "250"]
        _ = try Self.ok(args + ["--out", dir + "/whole.parquet"])
        _ = try Self.ok(args + ["--out", dir + "/whole.jsonl"])
        for format in ["parquet", "jsonl"] {
            let out = dir + "/cut." + format, checkpoint = out + ".knn-checkpoint.json"
            var interrupted = false
            for _ in 0..<20 where !interrupted {
                try? FileManager.default.removeItem(atPath: checkpoint)
                let p = Process()
                p.executableURL = URL(fileURLWithPath: Tools.lodestone)
                p.arguments = ["knn"] + args + ["--out", out, "--restart"]
                p.standardError = FileHandle.nullDevice
                try p.run()
                while p.isRunning && !FileManager.default.fileExists(atPath: checkpoint) { usleep(200) }
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                interrupted = p.terminationReason == .uncaughtSignal && FileManager.default.fileExists(atPath: checkpoint)
            }
            #expect(interrupted, "never caught the job between two blocks")
            let r = try Self.run(args + ["--out", out])
            #expect(r.status == 0 && r.errors.contains("resuming after"), "\(r.errors)")
            #expect(!FileManager.default.fileExists(atPath: checkpoint))
            #expect(FileManager.default.contents(atPath: out) == FileManager.default.contents(atPath: dir + "/whole." + format),
                    "\(format): the resumed output differs from an uninterrupted run's")
        }
        // A checkpoint of another job is refused, not misapplied.
        let out = dir + "/other.jsonl"
        try #"{"job": "something else", "queriesDone": 5}"#.write(toFile: out + ".knn-checkpoint.json", atomically: true,
                                                                   encoding: .utf8)
        let r = try Self.run(args + ["--out", out])
        #expect(r.status == 4 && r.errors.contains("another job") && r.errors.contains("--restart"), "\(r.errors)")
        _ = try Self.ok(args + ["--out", out, "--restart"])
    }

    @Test("bad jobs are refused with a message and an exit code, before any output")
    func badJobs() throws {
        let dir = Fixtures.temporaryDirectory("knn-bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (base, queries, _) = Self.files
        _ = try Database(path: dir + "/db")  // an empty database
        let short = dir + "/short.jsonl"
        try "[1, 2, 3]\n".write(toFile: short, atomically: true, encoding: .utf8)
        let cases: [([String], Int32, String)] = [
            (["--base", base, "--queries", queries, "--out", dir + "/x.txt"], 4, "--format"),
            (["--base", base, "--queries", short, "--out", dir + "/x.jsonl"], 4, "dimension"),
            (["--base", base, "--index", "i", "--queries", queries, "--out", dir + "/x.jsonl"], 64, "exactly one"),
            (["--base", base, "--out", dir + "/x.jsonl"], 64, "--queries or --self"),
            (["--base", base, "--queries", queries, "--k", "0", "--out", dir + "/x.jsonl"], 64, "--k"),
            (["--base", dir + "/missing.fvecs", "--queries", queries, "--out", dir + "/x.jsonl"], 5, "missing.fvecs"),
            (["--db", dir + "/db", "--index", "nope", "--self", "--out", dir + "/x.jsonl"], 3, "nope"),
            (["--db", dir + "/no-db", "--index", "nope", "--self", "--out", dir + "/x.jsonl"], 5, "no-db"),
        ]
        for (args, status, words) in cases {
            let r = try Self.run(args)
            #expect(r.status == status && r.errors.contains(words), "\(args): \(r.status) \(r.errors)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/x.jsonl"))
    }
}
