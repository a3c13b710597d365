#if ServiceIntegration
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
@_spi(LodestoneTools) @testable import Lodestone
@testable import LodestoneService

/// A task executor of its own threads: stands for an event loop's threads,
/// which nothing else in the test process shares (unlike the cooperative pool).
final class ThreadsExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    init(threads: Int) {
        for _ in 0..<threads { Thread { [self] in serve() }.start() }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func serve() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

@Suite("LodestoneService: shutdown loses nothing; a slow sync blocks no thread")
struct ShutdownTests {
    @Test("graceful shutdown under load: writes refused after it, every acknowledged write survives, persisted")
    func shutdownUnderLoad() async throws {
        let h = try ServiceTests.Harness(durability: .groupCommit)
        let index = try await h.service.createIndex(name: "w", dimension: 384, metric: .cosine)
        let records = ServiceTests.records(4_000)
        try await index.upsert(Array(records[0..<1_000]))
        let acknowledged = Locked<Set<String>>(Set(records[0..<1_000].map(\.id)))
        let refused = Locked<Int>(0)
        let group = ServiceGroup(services: [h.service], logger: h.service.logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            for writer in 0..<4 {
                tasks.addTask {
                    for i in stride(from: 1_000 + writer, to: records.count, by: 4) {
                        do {
                            try await index.upsert([records[i]])
                            _ = acknowledged.withLock { $0.insert(records[i].id) }
                        } catch LodestoneError.indexClosed {
                            refused.withLock { $0 += 1 }
                            return
                        }
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        let stored = acknowledged.withLock { $0 }
        #expect(stored.count > 1_000, "writers ran before the shutdown")
        #expect(refused.withLock { $0 } > 0, "writes after the shutdown were refused")
        await #expect(throws: LodestoneError.indexClosed(name: "w")) { try await index.upsert([records[0]]) }
        #expect(h.logs.entries.contains { "\($0.message)".contains("shutting down") })
        #expect(h.logs.entries.contains { "\($0.message)".contains("service stopped") })

        // Reopened: exactly the acknowledged records, and nothing to replay
        // (the shutdown persisted the log into the index's files).
        let database = try Database(path: h.path)
        let reopened = try await database.index("w")
        #expect(reopened.activity.logBytes == 0)
        #expect(try reopened.count() == stored.count)
        let fetched = try reopened.fetch(ids: Array(stored))
        #expect(Set(fetched.keys) == stored)
        try await database.close()
    }

    /// The synchronous upsert (in an async context Swift picks the async twin).
    static func upsertBlocking(_ index: Index, _ records: [Record]) throws { try index.upsert(records) }

    /// Holds four writes on `executor`'s threads, each in a 300 ms
    /// `fdatasync`, while queries arrive as tasks on the same threads (as
    /// requests on an event loop would); returns the longest a query waited.
    static func longestQueryWait(index: Index, executor: ThreadsExecutor, directory: String, blocking: Bool)
        async throws -> Duration
    {
        StorageIO.delaySyncs(microseconds: 300_000, under: directory)
        defer { StorageIO.delaySyncs(microseconds: 0) }
        let query = Fixtures.realData.queries.row(0)
        let extra = ServiceTests.records(2_004).suffix(4)
        return try await withThrowingTaskGroup(of: Void.self) { writers in
            for (w, record) in extra.enumerated() {
                var record = record
                record.id = "held-\(blocking)-\(w)"
                writers.addTask(executorPreference: executor) { [record] in
                    if blocking {
                        try Self.upsertBlocking(index, [record])
                    } else {
                        try await index.upsert([record])
                    }
                }
            }
            let clock = ContinuousClock()
            let start = clock.now
            var longest = Duration.zero
            while clock.now - start < .milliseconds(900) {
                let asked = clock.now
                _ = try await Task(executorPreference: executor) { try index.query(vector: query, topK: 10) }.value
                longest = max(longest, clock.now - asked)
                try await Task.sleep(for: .milliseconds(2))
            }
            try await writers.waitForAll()
            return longest
        }
    }

    @Test("writes held in a slow fdatasync leave an event loop's threads free: queries keep flowing")
    func slowSyncBlocksNoThread() async throws {
        let directory = Fixtures.freshPath("slow-sync")
        let database = try Database(path: directory)
        let index = try await database.createIndex(name: "s", dimension: 384, metric: .cosine,
                                                   options: IndexOptions(kind: .flat))
        try await index.upsert(ServiceTests.records(2_000))
        let executor = ThreadsExecutor(threads: 2)
        // Best of three: a stall of the whole machine (another process
        // flushing gigabytes, as CI's background installs do) can hold any
        // one attempt; a blocked thread holds every attempt.
        var viaAsync = Duration.seconds(3_600)
        for _ in 0..<3 where viaAsync >= .milliseconds(150) {
            viaAsync = min(viaAsync, try await Self.longestQueryWait(index: index, executor: executor,
                                                                     directory: directory, blocking: false))
        }
        // The control: the same writes through the synchronous call stall the
        // queries, which shows the measure can tell.
        let viaSync = try await Self.longestQueryWait(index: index, executor: executor, directory: directory,
                                                     blocking: true)
        #expect(viaAsync < .milliseconds(150), "async writes: a query waited up to \(viaAsync)")
        #expect(viaSync > .milliseconds(250), "synchronous writes: a query waited up to \(viaSync)")
        #expect(try index.count() == 2_008)
        try await database.close()
    }
}
#endif
