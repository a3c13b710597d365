import Foundation
import Synchronization
import Testing
@_spi(LodestoneTools) @testable import Lodestone

@Suite("Async API: off the cooperative pool, cancellable where work is long")
struct AsyncAPITests {
    static func records(_ n: Int, seed: UInt64 = 1) -> [Record] {
        let values = Fixtures.randomVectors(count: n, dimension: 8, seed: seed)
        return (0..<n).map { i in
            Record(id: "r\(i)", values: Array(values[(i * 8)..<(i * 8 + 8)]), metadata: ["n": .number(Double(i % 10))])
        }
    }

    /// Starts `work` in a task, cancels the task at once, and says whether
    /// the work threw ``LodestoneError/cancelled(operation:)``.
    static func cancelledAtOnce<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) async -> Bool {
        let task = Task { try await work() }
        task.cancel()
        guard case let .failure(error) = await task.result, case LodestoneError.cancelled? = error as? LodestoneError else {
            return false
        }
        return true
    }

    @Test("async writes, persist and batch queries give what the synchronous calls give")
    func sameAnswers() async throws {
        let dir = Fixtures.temporaryDirectory("async")
        let db = try await Database.open(path: dir)
        let index = try await db.createIndex(name: "a", dimension: 8, metric: .cosine)
        let records = Self.records(600)
        #expect(try await index.upsert(records) == 600)
        try await index.update(id: "r1", setMetadata: ["n": .number(42)])
        #expect(try await index.delete(ids: ["r2", "r3"]) == 2)
        #expect(try await index.delete(filter: .field("n", .eq(.number(9)))) == 60)
        try await index.persist()
        let queries = Array(Fixtures.randomVectors(count: 40, dimension: 8, seed: 9))
        let asyncAnswers = try await index.queryBatch(rows: queries, topK: 5, filter: .field("n", .lt(5)))
        let syncAnswers = try { () throws(LodestoneError) in
            try index.queryBatch(rows: queries, topK: 5, filter: .field("n", .lt(5)))
        }()
        #expect(asyncAnswers == syncAnswers && asyncAnswers.count == 40)
        #expect(try index.fetch(ids: ["r1"])["r1"]?.metadata?["n"] == .number(42))
        try await index.close()
        let reopened = try await db.index("a")
        #expect(try reopened.count() == 600 - 2 - 60)
        try await db.close()
    }

    @Test("the pool is bounded: never more jobs at once than threads, and all of them run")
    func bounded() async throws {
        final class Gauge: Sendable {
            let running = Atomic<Int>(0), peak = Atomic<Int>(0)
        }
        let pool = BlockingPool(threads: 2), gauge = Gauge()
        try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<12 {
                group.addTask {
                    try await pool.run { () throws(LodestoneError) -> Int in
                        let now = gauge.running.add(1, ordering: .relaxed).newValue
                        _ = gauge.peak.max(now, ordering: .relaxed)
                        usleep(5_000)
                        _ = gauge.running.subtract(1, ordering: .relaxed)
                        return i
                    }
                }
            }
            var seen = Set<Int>()
            for try await i in group { seen.insert(i) }
            #expect(seen == Set(0..<12))
        }
        #expect(gauge.peak.load(ordering: .relaxed) == 2)
        #if os(Linux)
        // Its threads carry a name, as `top -H` and debuggers show them.
        let names = try await pool.run { () throws(LodestoneError) -> String in
            (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
        }
        #expect(names.hasPrefix("lodestone-io "), "\(names)")
        #endif
    }

    @Test("cancelling a batch query stops it between blocks")
    func cancelBatch() async throws {
        let dir = Fixtures.temporaryDirectory("async-cancel")
        let db = try Database(path: dir)
        let index = try await db.createIndex(name: "a", dimension: 8, metric: .euclidean)
        try await index.upsert(Self.records(2_000))
        let queries = Fixtures.randomVectors(count: 12 * Index.asyncBatchBlock, dimension: 8, seed: 3)
        #expect(await Self.cancelledAtOnce { try await index.queryBatch(rows: queries, topK: 10, threads: 1) },
                "the batch query was not cancelled")
    }

    @Test("cancelling an import stops before its next batch; what was stored stays")
    func cancelImport() async throws {
        let dir = Fixtures.temporaryDirectory("async-import")
        let db = try Database(path: dir)
        let source = try await db.createIndex(name: "source", dimension: 8, metric: .cosine)
        try await source.upsert(Self.records(20_000, seed: 5))
        let file = dir + "/records.jsonl.gz"
        try await source.export(to: file)
        guard await Self.cancelledAtOnce({ try await db.importRecords(from: file, into: "copy", batchSize: 100) }) else {
            Issue.record("the import was not cancelled")
            return
        }
        let stored = db.listIndexes().contains("copy") ? try await db.index("copy").count() : 0
        #expect(stored < 20_000 && stored % 100 == 0, "\(stored) records stored")
    }

    @Test("cancelling an export stops it and leaves no file")
    func cancelExport() async throws {
        let dir = Fixtures.temporaryDirectory("async-export")
        let db = try Database(path: dir)
        let index = try await db.createIndex(name: "a", dimension: 8, metric: .cosine)
        try await index.upsert(Self.records(20_000, seed: 6))
        let file = dir + "/out.jsonl.gz"
        guard await Self.cancelledAtOnce({ try await index.export(to: file) }) else {
            Issue.record("the export was not cancelled")
            return
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("out.jsonl.gz") }
        #expect(left.isEmpty, "\(left)")
    }
}
