import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

@Suite("Read-only databases: many readers share an index, no writer meanwhile")
struct ReadOnlyTests {
    /// Every file of a directory tree with its size and modification time.
    static func state(_ dir: String) -> [String: String] {
        var out: [String: String] = [:]
        for case let file as String in FileManager.default.enumerator(atPath: dir)! {
            let a = try? FileManager.default.attributesOfItem(atPath: dir + "/" + file)
            out[file] = "\(a?[.size] ?? 0) \((a?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)"
        }
        return out
    }

    /// A child process holding `dir/LOCK` with flock(1), shared or exclusive, until released.
    static func holdLock(_ dir: String, shared: Bool) throws -> (Process, FileHandle) {
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        holder.arguments = (shared ? ["-s"] : []) + ["-n", dir + "/LOCK", "-c", "echo held; read line"]
        let toChild = Pipe(), fromChild = Pipe()
        holder.standardInput = toChild
        holder.standardOutput = fromChild
        try holder.run()
        _ = fromChild.fileHandleForReading.availableData  // "held"
        return (holder, toChild.fileHandleForWriting)
    }

    @Test("a read-only database searches what was written (segment and log), changes no file, and refuses every write with a typed error")
    func readOnlyOpen() throws {
        let dir = Fixtures.temporaryDirectory("read-only")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = Array(Fixtures.realRecords.prefix(550))
        do {
            let db = try Database(path: dir)
            let index = try db.createIndex(name: "docs", dimension: 384, metric: .cosine)
            try index.upsert(Array(records.prefix(500)))
            try index.persist()
            try index.upsert(Array(records[500...]))  // in the log only
            try db.close(persist: false)
        }
        let before = Self.state(dir)
        let ro = try Database(path: dir, readOnly: true)
        // Group commit would flush the log on close: read-only, there is nothing to flush.
        let index = try ro.index("docs", durability: .groupCommit)
        #expect(index.isReadOnly && index.count == 550)
        for r in [records[3], records[520]] {
            #expect(try index.query(vector: r.values, topK: 1).matches.first?.id == r.id)
            #expect(try index.fetch(ids: [r.id])[r.id]?.metadata == r.metadata)
        }
        let v = records[0].values
        let refusals: [(String, () throws -> Void)] = [
            ("upsert", { try index.upsert([Record(id: "new", values: v)]) }),
            ("update", { try index.update(id: records[0].id, setMetadata: ["x": 1]) }),
            ("delete ids", { _ = try index.delete(ids: [records[0].id]) }),
            ("delete all", { _ = try index.deleteAll() }),
            ("delete filter", { _ = try index.delete(filter: try Filter(json: #"{"year": 2020}"#)) }),
            ("persist", { try index.persist() }),
            ("snapshot", { try index.snapshot(to: dir + "/../snap-ro") }),
            ("create", { _ = try ro.createIndex(name: "other", dimension: 3, metric: .cosine) }),
            ("delete index", { try ro.deleteIndex("docs") }),
        ]
        for (what, attempt) in refusals {
            do {
                try attempt()
                Issue.record("\(what) was allowed on a read-only database")
            } catch let error as LodestoneError {
                if case .readOnly = error {} else { Issue.record("\(what): \(error)") }
            }
        }
        #expect(index.count == 550)
        // In this process: another read-only Database shares the instance; a writable one is refused.
        #expect(try Database(path: dir, readOnly: true).index("docs") === index)
        #expect(throws: LodestoneError.directoryLocked(path: dir + "/docs", inThisProcess: true)) {
            _ = try Database(path: dir).index("docs")
        }
        try ro.close()
        // And the other way round: the writer's instance is not handed to a reader.
        let writer = try Database(path: dir)
        _ = try writer.index("docs")
        #expect(throws: LodestoneError.directoryLocked(path: dir + "/docs", inThisProcess: true)) {
            _ = try Database(path: dir, readOnly: true).index("docs")
        }
        try writer.close(persist: false)
        #expect(Self.state(dir) == before, "a read-only open changed the directory")
        #expect(throws: LodestoneError.self) { _ = try Database(path: dir + "/missing", readOnly: true) }
    }

    @Test("other processes: readers share the lock, a writer excludes readers, readers exclude a writer")
    func acrossProcesses() throws {
        let dir = Fixtures.temporaryDirectory("read-only-procs")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        try db.createIndex(name: "docs", dimension: 3, metric: .euclidean).upsert([Record(id: "a", values: [1, 2, 3])])
        try db.close()
        // Another process reading: we may read too, but not write.
        var (holder, release) = try Self.holdLock(dir + "/docs", shared: true)
        let reader = try Database(path: dir, readOnly: true).index("docs")
        #expect(try reader.fetch(ids: ["a"])["a"]?.values == [1, 2, 3])
        try reader.close()
        #expect(throws: LodestoneError.directoryLocked(path: dir + "/docs", inThisProcess: false)) {
            _ = try Database(path: dir).index("docs")
        }
        release.write(Data("\n".utf8))
        holder.waitUntilExit()
        // Another process writing: no reader, and no deleting it under that process.
        (holder, release) = try Self.holdLock(dir + "/docs", shared: false)
        #expect(throws: LodestoneError.directoryLocked(path: dir + "/docs", inThisProcess: false)) {
            _ = try Database(path: dir, readOnly: true).index("docs")
        }
        #expect(throws: LodestoneError.directoryLocked(path: dir + "/docs", inThisProcess: false)) {
            try Database(path: dir).deleteIndex("docs")
        }
        #expect(FileManager.default.fileExists(atPath: dir + "/docs/MANIFEST"))
        release.write(Data("\n".utf8))
        holder.waitUntilExit()
        #expect(try Database(path: dir, readOnly: true).index("docs").count == 1)
    }

    @Test("update by filter: one write, validated whole (nothing changes if one record fails), replayed from the log, vectors untouched")
    func updateByFilter() throws {
        let dir = Fixtures.temporaryDirectory("update-filter")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = Array(Fixtures.realRecords.prefix(400))
        let popular = try Filter(json: #"{"popular": true}"#)
        let matching = records.filter { popular.matches($0.metadata ?? [:]) }
        let db = try Database(path: dir)
        let index = try db.createIndex(name: "docs", dimension: 384, metric: .cosine)
        try index.upsert(records)
        try index.persist()
        #expect(try index.update(filter: popular, setMetadata: ["flag": "x"]) == matching.count)
        // A value that makes one merged record too large: refused, nothing changed.
        let big = MetadataValue.string(String(repeating: "y", count: Metadata.maximumBytes))
        #expect(throws: LodestoneError.self) { try index.update(filter: popular, setMetadata: ["flag": "z", "big": big]) }
        try db.close(persist: false)  // reopen replays the metadata-only log record
        let again = try db.index("docs")
        let flagged = try Filter(json: #"{"flag": "x"}"#)
        #expect(try again.listIDs(filter: flagged, limit: 1_000).ids.sorted() == matching.map(\.id).sorted())
        for r in matching.prefix(5) {
            let got = try again.fetch(ids: [r.id])[r.id]
            var want = r.metadata ?? [:]
            want["flag"] = "x"
            #expect(got?.metadata == want)
            #expect(try again.query(vector: r.values, topK: 1).matches.first?.id == r.id)
        }
        try again.update(id: records[0].id, setMetadata: ["note": "kept"])  // metadata only: the vector stays
        #expect(try again.fetch(ids: [records[0].id])[records[0].id]?.values.count == 384)
        try db.close()
        #expect(try db.index("docs").fetch(ids: [records[0].id])[records[0].id]?.metadata?["note"] == "kept")
        try db.close()
    }
}
