import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

@Suite("The lodestone command line, end to end")
struct CLITests {
    struct Run {
        let status: Int32
        let output: String
        let errors: String
    }

    static func lodestone(_ arguments: [String], db: String) throws -> Run { try run(arguments + ["--db", db]) }

    /// Runs the lodestone command (the build under test) to completion.
    /// `environment` sets (or, with nil, unsets) variables for it.
    static func run(_ arguments: [String], environment changes: [String: String?] = [:]) throws -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Tools.lodestone)
        p.arguments = arguments
        if !changes.isEmpty {
            var environment = ProcessInfo.processInfo.environment
            for (name, value) in changes { environment[name] = value }
            p.environment = environment
        }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Run(status: p.terminationStatus, output: String(decoding: o, as: UTF8.self),
                   errors: String(decoding: e, as: UTF8.self))
    }

    /// The data the README's tour uses: the pypi-minilm small slice, else Data/.
    static var files: (vectors: String, metadata: String, queries: String) {
        (Fixtures.dataFile(small: "small_base.fvecs", sample: "base.fvecs"),
         Fixtures.dataFile(small: "small_base_meta.jsonl", sample: "base_meta.jsonl"),
         Fixtures.dataFile(small: "small_query.fvecs", sample: "query.fvecs"))
    }

    @Test("LODESTONE_KERNELS forces the distance and neighbour-code kernels alike, in any case; an unknown or unsupported name falls back to the automatic choice")
    func forcedKernels() throws {
        func kernels(_ value: String?) throws -> (distance: String, codes: String) {
            let run = try Self.run(["info"], environment: ["LODESTONE_KERNELS": value])
            #expect(run.status == 0)
            func field(after prefix: String) -> String {
                let line = run.output.split(separator: "\n").first { $0.hasPrefix(prefix) } ?? ""
                return line.dropFirst(prefix.count).split(separator: " ").first.map(String.init) ?? "missing"
            }
            return (field(after: "kernels: "), field(after: "neighbour-code kernels (quantized walk): "))
        }
        let automatic = try kernels(nil)
        #expect(automatic.distance != "portable" || DistanceKernels.available == [.portable])
        #expect(try kernels("portable") == ("portable", "portable"))
        #expect(try kernels("PORTABLE") == ("portable", "portable"))
        #expect(try kernels("no-such-isa") == automatic)
        for isa in DistanceKernels.available where isa != .portable {
            // AVX-512 distance kernels need only AVX-512F; the neighbour-code
            // ones also BW, so they may fall back.
            let forced = try kernels(isa.rawValue.uppercased())
            #expect(forced.distance == isa.rawValue)
            #expect(forced.codes == isa.rawValue || (isa == .avx512 && forced.codes == automatic.codes), "\(forced)")
        }
        let unsupported = KernelISA.allCases.filter { !DistanceKernels.available.contains($0) }
        for isa in unsupported { #expect(try kernels(isa.rawValue) == automatic) }
    }

    @Test("--version prints the release, the one the C ABI and Python/pyproject.toml give")
    func version() throws {
        let run = try Self.run(["--version"])
        #expect(run.status == 0 && run.output == LodestoneVersion.string + "\n", "\(run.output)")
        let pyproject = try String(contentsOfFile: Fixtures.repositoryRoot.appendingPathComponent("Python/pyproject.toml").path,
                                   encoding: .utf8)
        #expect(pyproject.contains("version = \"\(LodestoneVersion.string)\""))
    }

    @Test("HDF5 is loaded on first use: without it, reading an HDF5 file says what to install; with it, a file that is not HDF5 is named")
    func hdf5LoadedOnFirstUse() throws {
        let notHDF5 = Fixtures.sampleData.appendingPathComponent("base.fvecs").path
        let absent = try Self.run(["bench", "--hdf5", notHDF5, "--index", "flat"],
                                  environment: ["LODESTONE_HDF5_LIBRARY": "/nonexistent/libhdf5.so"])
        #expect(absent.status != 0)
        #expect(absent.errors.contains("needs the HDF5 library") && absent.errors.contains("apt-get install libhdf5"),
                "\(absent.errors)")
        // Scripts/setup.sh installs HDF5, so here it loads and reads the file's first bytes.
        let present = try Self.run(["bench", "--hdf5", notHDF5, "--index", "flat"])
        #expect(present.status != 0 && present.errors.contains("not an HDF5 file"), "\(present.errors)")
    }

    @Test("bench --insert-batch grows a quantized index in small batches after a bulk build and reports insert_per_s; bad values are errors")
    func benchInsertBatch() throws {
        let data = Fixtures.sampleData
        let files = ["--base", data.appendingPathComponent("base.fvecs").path,
                     "--queries", data.appendingPathComponent("query.fvecs").path,
                     "--truth", data.appendingPathComponent("groundtruth.ivecs").path]
        let run = try Self.run(["bench"] + files + ["--index", "hnsw", "--traversal", "quantized", "--m", "8",
                                                    "--ef-construction", "48", "--ef", "64", "--insert-batch", "50",
                                                    "--repeats", "1", "--json"])
        #expect(run.status == 0, "\(run.errors)")
        let line = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Any])
        #expect((line["insert_per_s"] as? Double ?? 0) > 0, "\(line)")
        #expect((line["recall"] as? Double ?? 0) >= 0.9, "\(line)")
        let flat = try Self.run(["bench"] + files + ["--index", "flat", "--insert-batch", "50"])
        #expect(flat.status != 0 && flat.errors.contains("--insert-batch needs --index hnsw"), "\(flat.errors)")
        let zero = try Self.run(["bench"] + files + ["--index", "hnsw", "--insert-batch", "0"])
        #expect(zero.status != 0 && zero.errors.contains("--insert-batch must be at least 1"), "\(zero.errors)")
    }

    @Test("create, upsert with metadata, query with a filter, export, drop, import: the same answers; exit codes")
    func tour() throws {
        let dir = Fixtures.temporaryDirectory("cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/db"
        let (vectors, metadata, queries) = Self.files
        func ok(_ args: [String]) throws -> String {
            let r = try Self.lodestone(args, db: db)
            #expect(r.status == 0, "\(args): \(r.errors)")
            return r.output
        }
        // A flat index: the debug build this test runs builds HNSW graphs slowly;
        // the HNSW path through the same API is tested in IndexAPITests.
        _ = try ok(["create", "pypi", "--dimension", "384", "--metric", "cosine", "--model", "all-MiniLM-L6-v2",
                    "--kind", "flat"])
        _ = try ok(["upsert", "pypi", vectors, "--metadata", metadata])
        // A bad metadata line is named, and nothing of the file is stored.
        var lines = try String(contentsOfFile: metadata, encoding: .utf8).split(separator: "\n").map(String.init)
        lines[3] = "{\"id\": "
        let badMetadata = dir + "/bad-meta.jsonl"
        try lines.joined(separator: "\n").write(toFile: badMetadata, atomically: true, encoding: .utf8)
        _ = try ok(["create", "bad", "--dimension", "384", "--kind", "flat"])
        let refused = try Self.lodestone(["upsert", "bad", vectors, "--metadata", badMetadata], db: db)
        #expect(refused.status == 4 && refused.errors.contains("bad-meta.jsonl:4"), "\(refused.status) \(refused.errors)")
        #expect(try ok(["stats", "bad", "--json"]).contains("\"total_record_count\": 0"))
        _ = try ok(["drop", "bad"])
        let badWalk = try Self.lodestone(["create", "walk", "--dimension", "4", "--traversal", "fast"], db: db)
        #expect(badWalk.status != 0 && badWalk.errors.contains("--traversal is exact, quantized or compact"), "\(badWalk.errors)")
        let stats = try ok(["stats", "pypi", "--json"])
        #expect(stats.contains("\"total_record_count\": \(Fixtures.realData.base.rows)"))
        let queryFile = dir + "/queries.txt"
        let q = Fixtures.realData.queries
        try (0..<5).map { i in q.row(i).map { "\($0)" }.joined(separator: ",") }.joined(separator: "\n")
            .write(toFile: queryFile, atomically: true, encoding: .utf8)
        let filter = #"{"year": {"$gte": 2024}}"#
        let before = try ok(["query", "pypi", "--text-file", queryFile, "--top-k", "5", "--filter", filter, "--json"])
        #expect(before.split(separator: "\n").count == 25)
        let explained = try ok(["query", "pypi", "--text-file", queryFile, "--top-k", "5", "--filter",
                                #"{"popular": true}"#, "--explain", "--json"])
        #expect(explained.contains("\"plan\": \"flat-scan\"") && explained.contains("\"estimated_matches\""))
        _ = try ok(["export", "pypi", dir + "/pypi.jsonl.gz"])
        _ = try ok(["drop", "pypi"])
        #expect(try ok(["list"]).isEmpty)
        let missing = try Self.lodestone(["query", "pypi", "--id", "x"], db: db)
        #expect(missing.status == 3 && missing.errors.contains("no index named \"pypi\""))
        _ = try ok(["import", dir + "/pypi.jsonl.gz", "pypi", "--model", "all-MiniLM-L6-v2", "--kind", "flat"])
        let after = try ok(["query", "pypi", "--text-file", queryFile, "--top-k", "5", "--filter", filter, "--json"])
        #expect(after == before)
        let described = try ok(["describe", "pypi", "--json"])
        #expect(described.contains("\"embedding_model\": \"all-MiniLM-L6-v2\""))
        let checked = try ok(["verify", "pypi", "--vectors", queries])
        #expect(checked.contains("consistent with the stored vectors"))
        // Bad input: a typed message and exit code 4.
        let bad = try Self.lodestone(["query", "pypi", "--vector", "1,2,3"], db: db)
        #expect(bad.status == 4 && bad.errors.contains("dimension mismatch"))
        let badFilter = try Self.lodestone(["query", "pypi", "--id", "x", "--filter", #"{"a": {"$near": 1}}"#], db: db)
        #expect(badFilter.status == 4 && badFilter.errors.contains("$near"))
    }

    @Test("create --text-field, then query --text (BM25) alone and with --vector; --text on another index is exit 4")
    func textSearch() throws {
        let dir = Fixtures.temporaryDirectory("cli-text")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/db"
        let (vectors, metadata, _) = Self.files
        func ok(_ args: [String]) throws -> String {
            let r = try Self.lodestone(args, db: db)
            #expect(r.status == 0, "\(args): \(r.errors)")
            return r.output
        }
        _ = try ok(["create", "docs", "--dimension", "384", "--kind", "flat", "--text-field", "text"])
        _ = try ok(["upsert", "docs", vectors, "--metadata", metadata])
        let record = Fixtures.realMetadata[3]
        guard case let .string(text)? = record.metadata["text"] else { Issue.record("no text"); return }
        let found = try ok(["query", "docs", "--text", text, "--top-k", "3", "--json", "--include-metadata"])
        #expect(found.split(separator: "\n").count == 3)
        #expect(found.contains(text), "\(found)")
        let vector = Fixtures.realData.queries.row(0).map { "\($0)" }.joined(separator: ",")
        let hybrid = try ok(["query", "docs", "--text", text, "--vector", vector, "--top-k", "4", "--json"])
        #expect(hybrid.split(separator: "\n").count == 4)
        _ = try ok(["create", "plain", "--dimension", "4"])
        let bad = try Self.lodestone(["query", "plain", "--text", "python"], db: db)
        #expect(bad.status == 4 && bad.errors.contains("no text field"), "\(bad.errors)")
    }

    @Test("persist, then reopen in a new process: identical results, nothing re-linked")
    func reopenInAnotherProcess() throws {
        let data = Fixtures.realData
        let dir = Fixtures.temporaryDirectory("reopen")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let index = try HNSWIndex(dimension: data.base.dimension, metric: .cosine)
        try index.add(contentsOf: data.base.values, keys: (0..<UInt64(data.base.rows)).map { $0 }, threads: 2)
        let path = dir + "/index.lodestone", queries = dir + "/q.fvecs", truth = dir + "/t.ivecs"
        try index.persist(to: path)
        try VectorFiles.writeFvecs(data.queries, to: queries)
        try VectorFiles.writeIvecs(data.truth, to: truth)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Tools.lodestone)
        process.arguments = ["bench-open", "--segment", path, "--queries", queries, "--truth", truth, "--k", "10", "--ef", "32", "--dump"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let lines = output.split(separator: "\n")
        #expect(lines.last == "{\"nodes_linked\": 0}", "the other process re-linked nodes: \(lines.last ?? "")")
        let expected = try (0..<data.queries.rows).map { try index.search(data.queries.row($0), k: 10, ef: 32) }
            .map { "[" + $0.map { String($0.key) }.joined(separator: ",") + "]" }
        #expect(lines.dropLast().map(String.init) == expected)
    }

    @Test("a load that commits by persisting, killed (SIGKILL) after a persist, keeps that persist and logs nothing")
    func persistingLoadKilled() throws {
        let dir = Fixtures.temporaryDirectory("cli-load-persist-kill")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/db"
        let rows = Fixtures.realData.base.rows
        _ = try Self.lodestone(["create", "load", "--dimension", "384", "--traversal", "compact",
                                "--ef-construction", "32"], db: db)
        let args = ["upsert", "load", Self.files.vectors, "--batch", "500", "--commit", "persist", "--db", db,
                    "--auto-persist-bytes", "1000000"]
        func files(_ prefix: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: db + "/load")) ?? []).filter { $0.hasPrefix(prefix) }
        }
        func size(_ name: String) -> Int {
            ((try? FileManager.default.attributesOfItem(atPath: db + "/load/" + name)[.size]) as? Int) ?? 0
        }
        var stored = 0
        for _ in 0..<10 where stored == 0 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Tools.lodestone)
            p.arguments = args
            p.standardError = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            func manifest() -> Data? { FileManager.default.contents(atPath: db + "/load/MANIFEST") }
            let before = manifest()
            try p.run()
            // Killed once a persist is committed (the manifest names its
            // files), while more batches wait.
            while p.isRunning && manifest() == before { usleep(200) }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            #expect(files("wal-").allSatisfy { size($0) == 0 }, "a batch was logged")
            let opened = try Database(path: db)
            let index = try opened.index("load")
            let count = index.count
            try index.verify()
            if p.terminationReason == .uncaughtSignal && count > 0 && count < rows { stored = count }
            if count == rows {  // finished before the kill: start over
                try opened.deleteIndex("load")
                _ = try opened.createIndex(name: "load", dimension: 384, metric: .cosine,
                                           options: IndexOptions(hnsw: HNSWParameters(efConstruction: 32, traversal: .compact)))
            }
            try opened.close()
        }
        #expect(stored > 0, "never caught the load after a persist")
        #expect(stored % 500 == 0, "\(stored) records: a batch was half applied")
        let opened = try Database(path: db)
        #expect(try opened.index("load").fetch(ids: (0..<stored).map(String.init)).count == stored)
        try opened.close()
        // The same command again completes the load, still without a log.
        let again = try Self.run(args)
        #expect(again.status == 0, "\(again.errors)")
        #expect(files("wal-").allSatisfy { size($0) == 0 })
        let reopened = try Database(path: db)
        #expect(try reopened.index("load").count == rows)
        try reopened.index("load").verify()
        try reopened.close()
    }

    @Test("a vectors-file load killed (SIGKILL) between batches keeps whole batches only; running it again completes it")
    func loadKilledHalfWay() throws {
        let dir = Fixtures.temporaryDirectory("cli-load-kill")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/db"
        let vectors = Self.files.vectors
        let rows = Fixtures.realData.base.rows
        _ = try Self.lodestone(["create", "load", "--dimension", "384", "--kind", "flat"], db: db)
        let args = ["upsert", "load", vectors, "--batch", "50", "--db", db]
        func logBytes() -> Int {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: db + "/load")) ?? []
            return names.filter { $0.hasPrefix("wal-") }.reduce(0) { total, name in
                let size = (try? FileManager.default.attributesOfItem(atPath: db + "/load/" + name)[.size]) as? Int
                return total + (size ?? 0)
            }
        }
        var stored = 0
        for _ in 0..<20 where stored == 0 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Tools.lodestone)
            p.arguments = args + ["--no-persist"]
            p.standardError = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            let before = logBytes()
            try p.run()
            // A few batches into the log (each is logged, then acknowledged).
            while p.isRunning && logBytes() < before + 4 * 50 * 384 * 4 { usleep(200) }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            let opened = try Database(path: db)
            let count = try opened.index("load").count
            if p.terminationReason == .uncaughtSignal && count > 0 && count < rows { stored = count }
            if count == rows {  // finished before the kill: start over
                try opened.deleteIndex("load")
                _ = try opened.createIndex(name: "load", dimension: 384, metric: .cosine, options: IndexOptions(kind: .flat))
            }
            try opened.close()
        }
        #expect(stored > 0, "never caught the load between two batches")
        #expect(stored % 50 == 0, "\(stored) records: a batch was half applied")
        let opened = try Database(path: db)
        let index = try opened.index("load")
        let present = try index.fetch(ids: (0..<stored).map(String.init))
        let next = try index.fetch(ids: [String(stored)])
        #expect(present.count == stored && next.isEmpty)
        let row = Fixtures.realData.base.row(stored - 1)
        let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let values = present[String(stored - 1)]?.values ?? []
        #expect(values.count == row.count
                && zip(values, row).allSatisfy { abs($0 - $1 / norm) < 1e-5 || abs($0 - $1) < 1e-6 })
        try opened.close()
        // The same command again completes the load.
        let again = try Self.run(args)
        #expect(again.status == 0, "\(again.errors)")
        let reopened = try Database(path: db)
        #expect(try reopened.index("load").count == rows)
        try reopened.close()
    }
}
