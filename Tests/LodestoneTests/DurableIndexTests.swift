import Dispatch
import Foundation
import Testing
@testable import Lodestone

#if canImport(Glibc)
import Glibc
#endif

@Suite("Durable index: log, manifest, recovery, crashes")
struct DurableIndexTests {
    static func temporaryDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("lodestone-durable-\(UUID().uuidString)").path
    }

    /// The state of an index as key → vector.
    static func snapshot(_ index: HNSWIndex, keys: Range<UInt64>) -> [UInt64: [Float]] {
        var out: [UInt64: [Float]] = [:]
        for key in keys { if let v = index.vector(forKey: key) { out[key] = v } }
        return out
    }

    @Test("writes survive reopening without persist (the log), and with it (the segment)")
    func reopen() throws {
        let dir = Self.temporaryDirectory()
        let d = 16
        let vectors = Fixtures.randomVectors(count: 300, dimension: d, seed: 1)
        do {
            let index = try DurableIndex.create(directory: dir, dimension: d, metric: .euclidean,
                                                parameters: HNSWParameters(m: 8, efConstruction: 32), embeddingModel: "m1")
            try index.upsert(Array(vectors[0..<(200 * d)]), keys: (0..<200).map { UInt64($0) }, threads: 2)
            #expect(try index.remove(keys: [3, 4, 999]) == 2)
            try index.upsert(Array(vectors[(200 * d)..<(201 * d)]), keys: [5])  // replace
            #expect(throws: LodestoneError.dimensionMismatch(expected: d, actual: 3)) { try index.upsert([1, 2, 3], keys: [7]) }
            #expect(throws: LodestoneError.duplicateKey(8)) { try index.upsert(Array(vectors[0..<(2 * d)]), keys: [8, 8]) }
        }
        var generation: UInt64 = 0
        do {
            let reopened = try DurableIndex.open(directory: dir)
            #expect(reopened.replayedRecords == 3 && reopened.droppedTailBytes == 0)
            #expect(reopened.index.count == 198 && !reopened.index.contains(key: 3))
            #expect(reopened.index.vector(forKey: 5) == Array(vectors[(200 * d)..<(201 * d)]))
            #expect(reopened.index.embeddingModel == "m1")
            try reopened.persist()
            try reopened.upsert(Array(vectors[(250 * d)..<(251 * d)]), keys: [1000])
            generation = reopened.generation
            // One writer at a time: a second open while this one holds the lock fails.
            #expect(throws: LodestoneError.self) { _ = try DurableIndex.open(directory: dir) }
        }
        let again = try DurableIndex.open(directory: dir)
        #expect(again.generation == generation && again.replayedRecords == 1)
        #expect(again.index.count == 199 && again.index.contains(key: 1000))
        #expect(try again.index.search(Array(vectors[(250 * d)..<(251 * d)]), k: 1).first?.key == 1000)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(files == ["LOCK", "MANIFEST", "segment-2.lodestone", "wal-2.log"], "\(files)")
    }

    @Test("a torn last log record is dropped, never half-applied; damage before the end is an error")
    func tornTail() throws {
        let dir = Self.temporaryDirectory()
        let d = 4
        do {
            let index = try DurableIndex.create(directory: dir, dimension: d, metric: .euclidean)
            try index.upsert([1, 2, 3, 4], keys: [1])
            try index.upsert([5, 6, 7, 8], keys: [2])
        }
        let log = dir + "/wal-1.log"
        let full = try VectorFiles.readFile(log)
        // Records are padded to 512-byte sectors: the second starts at 512.
        let recordLength = full.count / 2
        #expect(recordLength == 512)
        let secondEnd = recordLength + 8 + Int(full[recordLength]) + Int(full[recordLength + 1]) << 8
        for cut in [secondEnd - 1, secondEnd - 5, recordLength + 3, recordLength + 9] {
            try VectorFiles.writeFile(log, Array(full[0..<cut]))
            let index = try DurableIndex.open(directory: dir)
            #expect(index.index.count == 1 && index.index.contains(key: 1) && !index.index.contains(key: 2))
            #expect(index.droppedTailBytes == cut - recordLength, "cut \(cut)")
            #expect(try VectorFiles.readFile(log).count == recordLength, "the torn tail is cut off")
        }
        // A flipped byte in the first record, with a good record after it.
        var damaged = full
        damaged[10] ^= 1
        try VectorFiles.writeFile(log, damaged)
        #expect {
            _ = try DurableIndex.open(directory: dir)
        } throws: { error in
            guard case let .corruptSegment(path, section, _)? = error as? LodestoneError else { return false }
            return path == log && section.hasPrefix("log record at offset 0")
        }
    }

    @Test("a damaged or truncated manifest is a typed error; a second create is refused")
    func manifest() throws {
        let dir = Self.temporaryDirectory()
        _ = try DurableIndex.create(directory: dir, dimension: 4, metric: .cosine)
        #expect(throws: LodestoneError.self) { _ = try DurableIndex.create(directory: dir, dimension: 4, metric: .cosine) }
        let path = dir + "/MANIFEST"
        let bytes = try VectorFiles.readFile(path)
        for variant in [Array(bytes.dropLast(3)), [UInt8](), { var b = bytes; b[12] ^= 4; return b }()] {
            try VectorFiles.writeFile(path, variant)
            #expect {
                _ = try DurableIndex.open(directory: dir)
            } throws: { error in
                guard case let .corruptSegment(_, section, _)? = error as? LodestoneError else { return false }
                return section == "manifest"
            }
        }
    }

    /// The lodestone executable built beside this test bundle.
    static var executable: String { product("lodestone") }

    /// The reliability drivers' executable (the crash workload), built beside it.
    static var stressExecutable: String { product("lodestone-stress") }

    static func product(_ name: String) -> String {
        let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [products.appendingPathComponent(name).path,
                          Fixtures.repositoryRoot.appendingPathComponent(".build/debug/\(name)").path]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }

    /// The model's state after applying `ops` of run `seed` to `state`.
    static func apply(_ state: [UInt64: [Float]], seed: Int, ops: Range<Int>) -> [UInt64: [Float]] {
        var s = state
        for i in ops {
            let key = UInt64((seed * 7919 + i * 104_729) % 300)
            if i % 10 == 9 { continue }
            if i % 4 == 3 { s[key] = nil; continue }
            s[key] = (0..<8).map { j in Float((seed * 13 + i * 31 + j * 17) % 97) / 10 + 0.1 }
        }
        return s
    }

    @Test("group commit: concurrent writers all land, each acknowledged only once durable")
    func groupCommit() throws {
        let dir = Self.temporaryDirectory()
        let d = 8
        do {
            let index = try DurableIndex.create(directory: dir, dimension: d, metric: .euclidean,
                                                parameters: HNSWParameters(m: 8, efConstruction: 32), durability: .groupCommit)
            DispatchQueue.concurrentPerform(iterations: 4) { worker in
                for i in 0..<50 {
                    let key = UInt64(worker * 1000 + i)
                    try! index.upsert((0..<d).map { Float(Int(key) % 97 + $0) }, keys: [key])
                    if i % 10 == 9 { try! index.remove(keys: [key - 1]) }
                }
            }
            #expect(index.index.count == 4 * 45)
        }
        let reopened = try DurableIndex.open(directory: dir, durability: .groupCommit)
        #expect(reopened.index.count == 4 * 45 && reopened.replayedRecords == 4 * 55)
        #expect(reopened.index.vector(forKey: 2049) == (0..<d).map { Float(2049 % 97 + $0) })
        #expect(!reopened.index.contains(key: 3008))
    }

    @Test("a persist that fails (writes past a file size limit, like a full disk) leaves the previous state intact")
    func failedPersist() throws {
        let exe = Self.stressExecutable
        try #require(FileManager.default.isExecutableFile(atPath: exe), "build the lodestone-stress executable first: \(exe)")
        let dir = Self.temporaryDirectory()
        // A first run persists (op 9) and leaves a segment of a known size.
        let first = Process()
        first.executableURL = URL(fileURLWithPath: exe)
        first.arguments = ["crash-workload", "--dir", dir, "--seed", "1", "--ops", "40"]
        try first.run()
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)
        var model = Self.apply([:], seed: 1, ops: 0..<40)
        let before = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        let segment = try #require(before.first { $0.hasPrefix("segment-") })
        let segmentBytes = try VectorFiles.readFile(dir + "/" + segment).count
        // The second run's persist at op 9 cannot write a whole segment.
        let second = Process()
        second.executableURL = URL(fileURLWithPath: exe)
        second.arguments = ["crash-workload", "--dir", dir, "--seed", "2", "--ops", "40",
                            "--file-size-limit", String(segmentBytes / 2)]
        let pipe = Pipe()
        second.standardOutput = pipe
        second.standardError = Pipe()
        try second.run()
        second.waitUntilExit()
        let acked = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: "\n").filter { $0.hasPrefix("ack ") }.count
        #expect(second.terminationStatus != 0, "the persist should have failed")
        #expect(acked == 9, "ops 0-8 acknowledged, the persist at op 9 failed")
        model = Self.apply(model, seed: 2, ops: 0..<acked)
        let reopened = try DurableIndex.open(directory: dir)
        #expect(Self.snapshot(reopened.index, keys: 0..<300) == model)
        try reopened.index.verify()
        let after = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(after == before, "no leftover of the failed persist: \(after)")
    }

    @Test("SIGKILL at random moments: every acknowledged write survives, nothing is half-applied",
          arguments: [(Durability.synchronous, 60), (.groupCommit, 30)])
    func crashes(durability: Durability, kills: Int) throws {
        let exe = Self.stressExecutable
        try #require(FileManager.default.isExecutableFile(atPath: exe), "build the lodestone-stress executable first: \(exe)")
        let dir = Self.temporaryDirectory()
        var model: [UInt64: [Float]] = [:]
        var rng = Fixtures.SeededGenerator(seed: 2026)
        var inFlightApplied = 0, totalAcked = 0, createKills = 0
        for run in 0..<kills {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: exe)
            process.arguments = ["crash-workload", "--dir", dir, "--seed", String(run), "--ops", "100000",
                                 "--durability", durability.rawValue]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            // The first runs die within milliseconds (before, inside or
            // just after create); the rest after some hundreds of writes.
            let pause: ClosedRange<UInt32> = run < 3 ? 0...(UInt32(run) * 40_000 + 5_000) : 30_000...250_000
            usleep(UInt32.random(in: pause, using: &rng))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            // Only the kill ends it: a workload that exits by itself (say,
            // a create that fails) would leave nothing to check.
            #expect(process.terminationReason == .uncaughtSignal,
                    "run \(run): the workload exited with status \(process.terminationStatus) before the kill")
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let acked = output.split(separator: "\n").filter { $0.hasPrefix("ack ") }.count
            totalAcked += acked
            // A kill during the first run's create (a loaded machine can
            // take longer than the shortest sleep to get there) leaves no
            // manifest, so no index: nothing may have been acknowledged,
            // and the next run's create must clear what was left.
            guard FileManager.default.fileExists(atPath: dir + "/MANIFEST") else {
                #expect(acked == 0 && model.isEmpty, "run \(run): \(acked) ops acknowledged but no MANIFEST")
                createKills += 1
                continue
            }
            let reopened = try DurableIndex.open(directory: dir)
            let actual = Self.snapshot(reopened.index, keys: 0..<300)
            let done = Self.apply(model, seed: run, ops: 0..<acked)
            let withNext = Self.apply(done, seed: run, ops: acked..<(acked + 1))
            if actual == done {
                model = done
            } else if actual == withNext {
                model = withNext  // the op in flight reached the log before the kill
                inFlightApplied += 1
            } else {
                let missing = done.keys.filter { actual[$0] != done[$0] }.sorted()
                Issue.record("run \(run): after \(acked) acknowledged ops the index differs from the model at keys \(missing.prefix(10))")
                return
            }
            #expect(reopened.index.count == model.count)
        }
        #expect(createKills < kills / 2 && totalAcked > 0, "\(createKills) runs died before the index existed")
        print("crash test (\(durability.rawValue)): \(kills) kill points, \(totalAcked) acknowledged writes checked, \(inFlightApplied) in-flight ops found applied, \(createKills) kills before the index existed")
    }

    @Test("replaceFile writes beside, syncs, renames, then syncs the directory; racing replaces land whole; a failure is a typed error naming the temporary file")
    func replaceFile() throws {
        let dir = Self.temporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/settings.json"
        try StorageIO.replaceFile(path, with: Array("old".utf8))
        StorageIO.startJournal()
        try StorageIO.replaceFile(path, with: Array("new".utf8))
        // Tests run in parallel: keep only this directory's operations.
        let mine = StorageIO.stopJournal().filter { $0.path.hasPrefix(dir) }
        // The temporary file's name ends with the process id and a counter.
        let steps = mine.map { e in
            "\(e.operation.rawValue) \(e.path.dropFirst(dir.count).split(separator: "-").first.map(String.init) ?? "")"
        }
        #expect(steps == ["create /settings.json.tmp", "truncate /settings.json.tmp", "write /settings.json.tmp",
                          "fsync /settings.json.tmp", "rename /settings.json.tmp", "fsync-directory "], "\(steps)")
        #expect(Set(mine.dropLast().map(\.path)).count == 1, "one temporary file")
        #expect(mine.first { $0.operation == .rename }?.other == path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "new")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["settings.json"])
        // Replaces racing on one file each land whole, leaving nothing behind.
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            try? StorageIO.replaceFile(path, with: Array("writer \(i)".utf8))
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8).hasPrefix("writer "))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["settings.json"])
        // A replace that cannot write its temporary file (here: the
        // directory is gone) throws a typed error naming it.
        let gone = dir + "/missing/settings.json"
        #expect {
            try StorageIO.replaceFile(gone, with: Array("lost".utf8))
        } throws: { error in
            guard case LodestoneError.io(let p, "open", _)? = error as? LodestoneError else { return false }
            return p.hasPrefix(gone + ".tmp-")
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8).hasPrefix("writer "))
    }
}
