import Dispatch
import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

#if canImport(Glibc)
import Glibc
#endif

@Suite("Durable index: log, manifest, recovery, crashes")
struct DurableIndexTests {
    @Test("writes survive reopening without persist (the log), and with it (the segment)")
    func reopen() throws {
        let dir = Fixtures.freshPath("durable")
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
        let dir = Fixtures.freshPath("durable")
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
        let dir = Fixtures.freshPath("durable")
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

    @Test("group commit: concurrent writers all land, each acknowledged only once durable")
    func groupCommit() throws {
        let dir = Fixtures.freshPath("durable")
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

    @Test("replaceFile writes beside, syncs, renames, then syncs the directory; racing replaces land whole; a failure is a typed error naming the temporary file")
    func replaceFile() throws {
        let dir = Fixtures.freshPath("durable")
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
