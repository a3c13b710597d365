// Mirrors the code snippets of the DocC articles in
// Sources/Lodestone/Lodestone.docc/ (GettingStarted, Filtering,
// DurabilityAndRecovery, ChoosingAnIndex, Concurrency): one test per
// article, running its snippets in order against a temporary directory
// (which replaces the articles' /var/lib/myapp/vectors and /backups paths)
// and checking the results the articles' comments state. When a snippet or
// an API changes, change both.
//
// A plain `import Lodestone` (not @testable): the articles may use public API only.
import Foundation
import Lodestone
import Testing

@Suite("DocC articles' snippets")
struct DocCArticleTests {
    /// A fresh directory for one test, and its database path inside it.
    static func directory(_ label: String) -> String {
        let path = NSTemporaryDirectory() + "lodestone-docc-\(label)-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// GettingStarted.md's database: "articles", 4-d cosine, records a-d in "news".
    static func articlesIndex(_ path: String) throws -> (Database, Index) {
        let db = try Database(path: path)
        let index = try db.createIndex(name: "articles", dimension: 4, metric: .cosine,
                                       embeddingModel: "my-model-v1",
                                       options: IndexOptions(kind: .hnsw))
        try index.upsert([
            Record(id: "a", values: [1, 0, 0, 0], metadata: ["year": 2021, "lang": "en"]),
            Record(id: "b", values: [0, 1, 0, 0], metadata: ["year": 2024, "lang": "fr"]),
            Record(id: "c", values: [0.9, 0.1, 0, 0], metadata: ["year": 2025, "lang": "en", "tags": ["draft"]]),
            Record(id: "d", values: [0, 0, 1, 0]),
        ], namespace: "news")
        return (db, index)
    }

    // The articles' do/catch snippets, each in a function of its own: in
    // Swift 6.3.1, a `catch` of one LodestoneError case followed by an
    // #expect in the same function crashes the compiler (SILGen ownership
    // verification), so the tests call these and check what they return.

    /// Filtering.md: the error a malformed filter throws.
    static func invalidFilterSnippet() throws -> (path: String, reason: String)? {
        do {
            _ = try Filter(json: #"{"year": {"$in": 2024}}"#)
        } catch LodestoneError.invalidFilter(let path, let reason) {
            return (path, reason)
        }
        return nil
    }

    /// DurabilityAndRecovery.md: opening an index with another model's name.
    static func modelMismatchSnippet(_ db: Database) throws -> (expected: String, actual: String)? {
        do {
            _ = try db.index("articles", embeddingModel: "other-model")
        } catch LodestoneError.embeddingModelMismatch(let expected, let actual) {
            return (expected, actual)
        }
        return nil
    }

    /// Concurrency.md: updating an absent record.
    static func recordNotFoundSnippet(_ index: Index) throws -> String? {
        do {
            try index.update(id: "nope", setMetadata: ["year": 2026], namespace: "news")
        } catch LodestoneError.recordNotFound(let id, let namespace) {
            return "no \(id) in \(namespace)"
        }
        return nil
    }

    @Test("GettingStarted.md")
    func gettingStarted() throws {
        let dir = Self.directory("start")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/vectors"
        let (db, index) = try Self.articlesIndex(path)
        #expect(Database.isValidName("articles"))

        let response = try index.query(vector: [1, 0.05, 0, 0], topK: 2, namespace: "news", includeMetadata: true)
        #expect(response.matches.map(\.id) == ["a", "c"])
        #expect(response.matches.map { String(format: "%.5f", $0.score) } == ["0.99875", "0.99816"])
        #expect(response.matches.map { $0.metadata?.jsonText ?? "" }
                == [#"{"lang":"en","year":2021}"#, #"{"lang":"en","tags":["draft"],"year":2025}"#])

        let recent = try Filter(json: #"{"year": {"$gte": 2024}}"#)
        let filtered = try index.query(vector: [1, 0.05, 0, 0], topK: 2, namespace: "news", filter: recent)
        #expect(filtered.matches.map(\.id) == ["c", "b"])
        #expect(try index.query(id: "a", topK: 1, namespace: "news").matches.map(\.id) == ["a"])

        let fetched = try index.fetch(ids: ["a", "missing"], namespace: "news")
        #expect(Array(fetched.keys) == ["a"] && fetched["a"]?.values == [1, 0, 0, 0])
        try index.update(id: "a", setMetadata: ["year": 2022], namespace: "news")
        try index.update(id: "b", values: [0, 1, 0.1, 0], namespace: "news")
        #expect(try index.delete(ids: ["d"], namespace: "news") == 1)
        let updated = try index.fetch(ids: ["a", "b"], namespace: "news")
        #expect(updated["a"]?.metadata == ["year": 2022, "lang": "en"])
        #expect(updated["b"]?.metadata == ["year": 2024, "lang": "fr"])
        let b = try #require(updated["b"])
        #expect(b.values.elementsEqual([0, 1, 0.1, 0]) { abs($0 - $1) < 1e-6 })
        #expect(throws: LodestoneError.recordNotFound(id: "d", namespace: "news")) {
            try index.update(id: "d", setMetadata: ["year": 1], namespace: "news")
        }

        let stats = try index.describeStats()
        #expect(stats.namespaces == ["news": 3] && stats.totalRecordCount == 3)
        let description = try db.describeIndex("articles")
        #expect(description.dimension == 4 && description.kind == .hnsw && description.embeddingModel == "my-model-v1")

        try index.persist()
        try db.close()
        #expect(!index.isOpen)
        let reopened = try Database(path: path)
        let again = try reopened.index("articles", embeddingModel: "my-model-v1")
        #expect(again.count == 3)
        #expect(try again.query(vector: [1, 0.05, 0, 0], topK: 1, namespace: "news").matches.map(\.id) == ["a"])
        try reopened.close()
    }

    @Test("Filtering.md")
    func filtering() throws {
        let dir = Self.directory("filter")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (db, index) = try Self.articlesIndex(dir + "/vectors")
        defer { try? db.close() }

        let json = try Filter(json: #"{"year": {"$gte": 2024}, "lang": {"$in": ["en", "de"]}}"#)
        let swift: Filter = .and([
            .field("lang", .in([.string("en"), .string("de")])),
            .field("year", .gte(2024)),
        ])
        #expect(json == swift)
        #expect(swift.matches(["year": 2025, "lang": "en"]))
        #expect(try index.count(namespace: "news", filter: json) == 1)

        // The table's rows.
        func ids(_ text: String) throws -> [String] {
            try index.listIDs(namespace: "news", filter: try Filter(json: text)).ids
        }
        #expect(try ids(#"{"lang": "en"}"#) == ["a", "c"])
        #expect(try ids(#"{"tags": {"$eq": "draft"}}"#) == ["c"])
        #expect(try ids(#"{"lang": {"$ne": "en"}}"#) == ["b", "d"])
        #expect(try ids(#"{"year": {"$lt": 2025}}"#) == ["a", "b"])
        #expect(try ids(#"{"lang": {"$nin": ["fr"]}}"#) == ["a", "c", "d"])
        #expect(try ids(#"{"year": {"$exists": false}}"#) == ["d"])
        #expect(try ids(#"{"$or": [{"year": 2021}, {"lang": "fr"}]}"#) == ["a", "b"])
        #expect(try ids(#"{"year": "2024"}"#) == [])
        #expect(try ids(#"{"year": {"$gte": 2021, "$lt": 2025}}"#) == ["a", "b"])

        let caught = try Self.invalidFilterSnippet()
        #expect(caught?.path == "year" && caught?.reason == "$in expects an array")

        let response = try index.query(vector: [1, 0.05, 0, 0], topK: 2, namespace: "news",
                                       filter: json, explain: true)
        #expect(response.matches.map(\.id) == ["c"])
        let stats = try #require(response.explanation)
        #expect(stats.plan == .exactScan && "\(stats.plan)" == "exactScan" && stats.plan.rawValue == "exact-scan")
        #expect(stats.matches == 1 && stats.candidates == 4 && stats.selectivity == 0.25 && stats.ef == 0)
        #expect(stats.distancesComputed == 1 && stats.estimatedScanCost > 0)
        // Without a filter, over the whole index: the graph.
        let unfiltered = try index.query(vector: [1, 0, 0, 0], topK: 2, namespace: "news", explain: true)
        #expect(unfiltered.explanation?.plan == .graph)
    }

    @Test("DurabilityAndRecovery.md")
    func durability() throws {
        let dir = Self.directory("durable")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (db, _) = try Self.articlesIndex(dir + "/vectors")
        defer { try? db.close() }

        let index = try db.createIndex(name: "events", dimension: 4, metric: .euclidean,
                                       options: IndexOptions(durability: .groupCommit))
        let fast = try db.index("events", durability: .none)
        #expect(fast === index)

        try index.upsert([Record(id: "e1", values: [1, 2, 3, 4])])
        try index.persist()
        try index.persist(merge: true)
        try index.upsert([Record(id: "e2", values: [4, 3, 2, 1])])
        try index.close(persist: false)
        #expect(throws: LodestoneError.indexClosed(name: "events")) { try index.describeStats() }

        let events = try db.index("events")
        #expect(events.count == 2)  // e2 came back from the log
        try events.delete(ids: ["e2"])
        try events.snapshot(to: dir + "/backups/events-1")
        let copy = try db.restoreIndex(name: "events-copy", from: dir + "/backups/events-1")
        #expect(try copy.fetch(ids: ["e1"])["e1"]?.values == [1, 2, 3, 4])

        let written = try events.export(to: dir + "/backups/events.jsonl.gz")
        #expect(written == 1)
        let report = try db.importRecords(from: dir + "/backups/events.jsonl.gz", into: "events-imported",
                                          metric: .euclidean)
        #expect(report.records == 1 && report.createdIndex && report.skippedLines == 0)
        let imported = try db.index("events-imported")
        #expect(imported.metric == .euclidean && imported.count == 1)
        #expect(try imported.fetch(ids: ["e1"])["e1"]?.values == [1, 2, 3, 4])

        let caught = try Self.modelMismatchSnippet(db)
        #expect(caught?.expected == "my-model-v1" && caught?.actual == "other-model")
        let articles = try db.index("articles")
        #expect(articles.embeddingModel == "my-model-v1")
        #expect(throws: LodestoneError.embeddingModelMismatch(expected: "my-model-v1", actual: "other-model")) {
            try articles.upsert([Record(id: "z", values: [1, 1, 1, 1])], embeddingModel: "other-model")
        }
        // Four stored vectors: too few for the fingerprint to say "another model".
        #expect(try !articles.compareWithStored([[-1, 0, 0, 0]]).looksLikeAnotherModel)
    }

    @Test("ChoosingAnIndex.md")
    func choosingAnIndex() throws {
        let dir = Self.directory("choose")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir + "/vectors")
        defer { try? db.close() }

        let exact = try db.createIndex(name: "exact", dimension: 4, metric: .euclidean,
                                       options: IndexOptions(kind: .flat))
        let graph = try db.createIndex(name: "graph", dimension: 4, metric: .euclidean,
                                       options: IndexOptions(kind: .hnsw,
                                                             hnsw: HNSWParameters(m: 16, efConstruction: 200, efSearch: 64)))
        #expect(graph.parameters == HNSWParameters())
        #expect(throws: LodestoneError.invalidArgument(name: "m", reason: "must be in 2...128, got 1")) {
            try db.createIndex(name: "bad", dimension: 4, metric: .cosine,
                               options: IndexOptions(hnsw: HNSWParameters(m: 1)))
        }
        let quantized = try db.createIndex(name: "quantized", dimension: 4, metric: .cosine,
                                           options: IndexOptions(hnsw: HNSWParameters(traversal: .quantized)))
        #expect(quantized.kind == .hnsw && quantized.parameters.traversal == .quantized)

        let records = [
            Record(id: "x", values: [1, 0, 0, 0]),
            Record(id: "y", values: [0, 1, 0, 0]),
            Record(id: "z", values: [0, 0, 1, 0]),
        ]
        try exact.upsert(records)
        try graph.upsert(records)
        try quantized.upsert(records)
        let wide = try graph.query(vector: [1, 0, 0, 0], topK: 3, ef: 200)
        #expect(wide.matches.map(\.id) == ["x", "y", "z"] && wide.matches[0].score == 0)
        #expect(try quantized.query(vector: [0, 0.9, 0.1, 0], topK: 1).matches.map(\.id) == ["y"])
        #expect(try exact.query(vector: [1, 0, 0, 0], topK: 1, explain: true).explanation?.plan == .flatScan)

        #expect(!Metric.euclidean.higherIsBetter && Metric.cosine.higherIsBetter)
        #expect(Metric(name: "l2") == .euclidean && Metric(name: "dot") == .dotProduct && Metric(name: "cosine") == .cosine)
        #expect(throws: LodestoneError.zeroVector) { try quantized.upsert([Record(id: "0", values: [0, 0, 0, 0])]) }

        let results = try exact.queryBatch(vectors: [[0.9, 0, 0, 0], [0, 0, 1.1, 0]], topK: 1, threads: 2)
        #expect(results.map { $0.map(\.id) } == [["x"], ["z"]])
        try graph.warm(threads: 2)
        let batch = try graph.queryBatch(rows: [0.9, 0, 0, 0, 0, 0, 1.1, 0], topK: 1, threads: 2)
        #expect(batch.map { $0.map(\.id) } == [["x"], ["z"]])
    }

    @Test("Concurrency.md")
    func concurrency() async throws {
        let dir = Self.directory("threads")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/vectors"
        let (db, _) = try Self.articlesIndex(path)

        let index = try await db.index("articles")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await index.upsert([Record(id: "e", values: [0, 0, 0, 1])], namespace: "news")
            }
            for _ in 0..<4 {
                group.addTask {
                    let ids = try index.query(vector: [1, 0, 0, 0], topK: 1, namespace: "news").matches.map(\.id)
                    #expect(ids == ["a"])
                }
            }
            try await group.waitForAll()
        }
        #expect(index.count == 5)

        #expect(try Self.recordNotFoundSnippet(index) == "no nope in news")
        // A namespace (or index) with no records: no matches, no error.
        #expect(try index.query(vector: [1, 0, 0, 0], topK: 1, namespace: "empty").matches.isEmpty)

        // One Index per directory and process; a read-only Database is
        // refused while this process has the index open for writing.
        #expect(try await Database(path: path).index("articles") === index)
        let reader = try Database(path: path, readOnly: true)
        #expect(throws: LodestoneError.directoryLocked(path: path + "/articles", inThisProcess: true)) {
            try reader.index("articles")
        }
        try await db.close()
        let readOnly = try await reader.index("articles")
        #expect(readOnly.isReadOnly && readOnly.count == 5)
        #expect(throws: LodestoneError.readOnly(name: "articles")) {
            try readOnly.delete(ids: ["a"], namespace: "news")
        }
        #expect(throws: LodestoneError.indexNotFound(name: "nothing")) { try reader.index("nothing") }
        try await reader.close()
    }
}
