import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

@Suite("Opening one index twice; metadata as text")
struct OpenTwiceTests {
    @Test("two Databases on one path in one process share the index; another model name is refused, not a LOCK error")
    func twoDatabasesShare() throws {
        let dir = Fixtures.temporaryDirectory("twice")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = Array(Fixtures.realRecords.prefix(200))
        let first = try Database(path: dir)
        let index = try first.createIndex(name: "docs", dimension: 384, metric: .cosine, embeddingModel: "all-MiniLM-L6-v2")
        try index.upsert(records)
        // Another spelling of the same path (a relative one through "..").
        let other = try Database(path: dir + "/../" + URL(fileURLWithPath: dir).lastPathComponent)
        let shared = try other.index("docs")
        #expect(shared === index)
        #expect(shared.count == 200)
        #expect(throws: LodestoneError.embeddingModelMismatch(expected: "all-MiniLM-L6-v2", actual: "text-embedding-3-small")) {
            _ = try Database(path: dir).index("docs", embeddingModel: "text-embedding-3-small")
        }
        // A write through either is seen by both; closing through one closes the shared handle,
        // after which either Database opens it again.
        try shared.upsert([Record(id: "extra", values: records[0].values)])
        #expect(index.count == 201)
        try first.close()
        let again = try other.index("docs")
        #expect(again !== index && again.count == 201)
        // A low-level handle on the same directory is refused with the truth.
        #expect(throws: LodestoneError.directoryLocked(path: dir + "/docs", inThisProcess: true)) {
            _ = try DurableIndex.open(directory: dir + "/docs")
        }
    }

    @Test("a directory held by another process is refused with a typed error saying so; nothing is changed")
    func heldByAnotherProcess() throws {
        let dir = Fixtures.temporaryDirectory("locked")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        try db.createIndex(name: "docs", dimension: 3, metric: .euclidean).upsert([Record(id: "a", values: [1, 2, 3])])
        try db.close()
        // flock(1) holds the LOCK in a child process until we let it go.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        holder.arguments = ["-n", dir + "/docs/LOCK", "-c", "echo held; read line"]
        let toChild = Pipe(), fromChild = Pipe()
        holder.standardInput = toChild
        holder.standardOutput = fromChild
        try holder.run()
        _ = fromChild.fileHandleForReading.availableData  // "held": the lock is taken
        #expect(throws: LodestoneError.directoryLocked(path: dir + "/docs", inThisProcess: false)) {
            _ = try Database(path: dir).index("docs")
        }
        #expect(LodestoneError.directoryLocked(path: "/x", inThisProcess: false).description.contains("another process"))
        toChild.fileHandleForWriting.write("\n".data(using: .utf8)!)
        holder.waitUntilExit()
        let reopened = try Database(path: dir).index("docs")
        #expect(reopened.count == 1)
        #expect(try reopened.fetch(ids: ["a"])["a"]?.values == [1, 2, 3])
    }

    @Test("metadata prints as the JSON a user wrote, and literals build it")
    func metadataText() throws {
        let m: Metadata = ["year": 2025, "score": 0.5, "popular": true, "tags": ["a", "b"], "name": "numpy"]
        #expect(m["year"] == .number(2025) && m["tags"] == .strings(["a", "b"]) && m["name"] == .string("numpy"))
        #expect("\(MetadataValue.number(2025))" == "2025")
        #expect("\(MetadataValue.string("x \"y\""))" == #""x \"y\"""#)
        #expect(m.jsonText == #"{"name":"numpy","popular":true,"score":0.5,"tags":["a","b"],"year":2025}"#)
        let printed = "\(m)"
        #expect(printed.contains(#""year": 2025"#) && printed.contains(#""tags": ["a","b"]"#) && !printed.contains("MetadataValue"))
        // The real data's metadata prints without Swift's enum spelling too.
        let real = Fixtures.realRecords[0].metadata ?? [:]
        #expect(!"\(real)".contains("MetadataValue") && !"\(real)".contains(".number("))
    }
}

extension OpenTwiceTests {
    @Test("opening for another model is refused without leaving the index open (its lock is free)")
    func refusedOpenReleasesTheLock() throws {
        let dir = Fixtures.temporaryDirectory("refused")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        try db.createIndex(name: "docs", dimension: 3, metric: .euclidean, embeddingModel: "model-a")
            .upsert([Record(id: "a", values: [1, 2, 3])])
        try db.close()
        #expect(throws: LodestoneError.embeddingModelMismatch(expected: "model-a", actual: "model-b")) {
            _ = try db.index("docs", embeddingModel: "model-b")
        }
        // Nothing holds the directory: another process may take its lock.
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        probe.arguments = ["-n", dir + "/docs/LOCK", "true"]
        try probe.run()
        probe.waitUntilExit()
        #expect(probe.terminationStatus == 0, "the refused open left the LOCK held")
        #expect(try db.index("docs", embeddingModel: "model-a").count == 1)
    }
}
