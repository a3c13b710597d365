import Foundation
import Synchronization
import Testing
@_spi(LodestoneTools) @testable import Lodestone

@Suite("Database and Index API")
struct IndexAPITests {
    static let model = "all-MiniLM-L6-v2"

    /// Exact filtered top-k in Float64 among records passing `filter`.
    static func exactFiltered(_ query: [Float], records: [Record], filter: Filter?, k: Int) -> [String] {
        let passing = records.filter { filter?.matches($0.metadata ?? [:]) ?? true }
        let base = passing.flatMap(\.values)
        return Fixtures.bruteForce(base: base, dimension: query.count, query: query, metric: .cosine, k: k)
            .map { passing[$0.0].id }
    }

    static let filters: [String] = [
        #"{"year": {"$gte": 2024}}"#,                          // broad
        #"{"popular": true}"#,                                  // narrow
        #"{"$and": [{"year": {"$eq": 2019}}, {"words": {"$gte": 10}}]}"#,  // very narrow
        #"{"$or": [{"year": {"$lt": 2012}}, {"rank": {"$exists": true}}]}"#,
    ]

    @Test("real data: filtered queries return min(k, matches) results, recall ≥ 0.95 against float64 brute force; persisted and reopened identically")
    func filteredQueriesAndReopen() throws {
        let dir = Fixtures.temporaryDirectory("api")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = Fixtures.realRecords, data = Fixtures.realData
        let queries = (0..<min(50, data.queries.rows)).map { data.queries.row($0) }
        var before: [[String]] = []
        do {
            let db = try Database(path: dir)
            let index = try db.createIndex(name: "pypi", dimension: 384, metric: .cosine, embeddingModel: Self.model)
            var start = 0
            while start < records.count {
                try index.upsert(Array(records[start..<min(records.count, start + 2_000)]), threads: 2)
                start += 2_000
            }
            #expect(index.count == records.count)
            for json in Self.filters {
                let filter = try Filter(json: json)
                let matching = records.filter { filter.matches($0.metadata ?? [:]) }.count
                var hits = 0, wanted = 0
                for q in queries {
                    let response = try index.query(vector: q, topK: 10, filter: filter, includeMetadata: true, explain: true)
                    #expect(response.matches.count == min(10, matching), "\(json)")
                    #expect(response.explanation?.matches == matching)
                    #expect(response.matches.allSatisfy { filter.matches($0.metadata ?? [:]) })
                    let truth = Set(Self.exactFiltered(q, records: records, filter: filter, k: 10))
                    hits += response.matches.filter { truth.contains($0.id) }.count
                    wanted += truth.count
                    before.append(response.matches.map(\.id))
                }
                let recall = Double(hits) / Double(max(wanted, 1))
                #expect(recall >= 0.95, "recall \(recall) for \(json) (\(matching) matches)")
                // A batch answers each query as the single query does (a narrow
                // filter's exact scan runs once for the batch, through BLAS).
                let batch = try index.queryBatch(vectors: queries, topK: 10, filter: filter, threads: 2)
                #expect(batch.map { $0.map(\.id) } == Array(before.suffix(queries.count)), "\(json)")
            }
            try index.persist()
        }
        let db = try Database(path: dir)
        let index = try db.index("pypi", embeddingModel: Self.model)
        #expect(index.count == records.count)
        var after: [[String]] = []
        for json in Self.filters {
            let filter = try Filter(json: json)
            for q in queries { after.append(try index.query(vector: q, topK: 10, filter: filter).matches.map(\.id)) }
        }
        #expect(after == before)
        let fetched = try index.fetch(ids: [records[7].id])
        #expect(fetched[records[7].id]?.metadata == records[7].metadata)
    }

    @Test("writes survive reopening from the log alone; update merges metadata; delete by id and by filter")
    func writesUpdatesDeletes() throws {
        let dir = Fixtures.temporaryDirectory("api-log")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = Array(Fixtures.realRecords.prefix(500))
        let filter = try Filter(json: #"{"popular": true}"#)
        let popular = records.filter { filter.matches($0.metadata!) }.map(\.id)
        do {
            let db = try Database(path: dir)
            let index = try db.createIndex(name: "log", dimension: 384, metric: .cosine, options: IndexOptions(kind: .flat))
            try index.upsert(records)
            try index.update(id: records[0].id, setMetadata: ["note": .string("edited")])
            try index.update(id: records[1].id, values: records[2].values)
            #expect(try index.delete(ids: [records[3].id, "no-such-id"]) == 1)
            #expect(try index.delete(filter: filter) == popular.count - (popular.contains(records[3].id) ? 1 : 0))
        }
        let index = try Database(path: dir).index("log")
        let expected = records.count - 1 - popular.filter { $0 != records[3].id }.count
        #expect(index.count == expected)
        let r0 = try index.fetch(ids: [records[0].id])[records[0].id]
        #expect(r0?.metadata?["note"] == .string("edited"))
        #expect(r0?.metadata?["year"] == records[0].metadata?["year"])
        // Record 1 now holds record 2's vector: querying by it finds both at the top.
        if !popular.contains(records[1].id) && !popular.contains(records[2].id) {
            let top = try index.query(id: records[1].id, topK: 2).matches.map(\.id)
            #expect(Set(top) == Set([records[1].id, records[2].id]))
        }
        #expect(try index.fetch(ids: [records[3].id]).isEmpty)
        #expect(try index.query(vector: records[5].values, topK: 5, filter: filter).matches.isEmpty)
        // Log replayed, then a persist: the same again.
        try index.persist()
        #expect(index.count == expected)
    }

    @Test("namespaces partition ids and queries; stats count them; listIDs pages through ids")
    func namespaces() throws {
        let dir = Fixtures.temporaryDirectory("api-ns")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        let index = try db.createIndex(name: "ns", dimension: 384, metric: .cosine)
        let records = Array(Fixtures.realRecords.prefix(300))
        try index.upsert(Array(records[0..<200]), namespace: "a")
        try index.upsert(Array(records[100..<300]), namespace: "b")
        let stats = try index.describeStats()
        #expect(stats.namespaces == ["a": 200, "b": 200])
        #expect(stats.totalRecordCount == 400)
        let q = records[250].values
        let inA = try index.query(vector: q, topK: 5, namespace: "a").matches.map(\.id)
        let inB = try index.query(vector: q, topK: 5, namespace: "b").matches.map(\.id)
        let idsA = Set(records[0..<200].map(\.id))
        #expect(inA.allSatisfy { idsA.contains($0) })
        #expect(inB.first == records[250].id)
        #expect(try index.query(vector: q, topK: 5, namespace: "missing").matches.isEmpty)
        var listed: [String] = []
        var token: String? = nil
        repeat {
            let page = try index.listIDs(namespace: "b", limit: 64, paginationToken: token)
            listed += page.ids
            token = page.nextToken
        } while token != nil
        #expect(listed == records[100..<300].map(\.id).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        #expect(try index.deleteAll(namespace: "a") == 200)
        #expect(try index.describeStats().namespaces == ["b": 200])
        #expect(try index.query(vector: q, topK: 5, namespace: "a").matches.isEmpty)
    }

    @Test("bad input: each is a typed error and nothing already stored is lost")
    func badInput() throws {
        let dir = Fixtures.temporaryDirectory("api-bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        let index = try db.createIndex(name: "bad", dimension: 384, metric: .cosine, embeddingModel: Self.model)
        let good = Array(Fixtures.realRecords.prefix(20))
        try index.upsert(good)
        let v = good[0].values
        func rejects(_ label: String, _ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(throws: LodestoneError.self, "\(label)", sourceLocation: sourceLocation) { try body() }
        }
        var nan = v; nan[3] = .nan
        var inf = v; inf[0] = .infinity
        let bigMeta: Metadata = ["text": .string(String(repeating: "x", count: 41_000))]
        rejects("wrong dimension") { try index.upsert([Record(id: "x", values: Array(v.prefix(10)))]) }
        rejects("NaN") { try index.upsert([Record(id: "x", values: nan)]) }
        rejects("infinity") { try index.upsert([Record(id: "x", values: inf)]) }
        rejects("zero vector under cosine") { try index.upsert([Record(id: "x", values: [Float](repeating: 0, count: 384))]) }
        rejects("empty id") { try index.upsert([Record(id: "", values: v)]) }
        rejects("id over 512 bytes") { try index.upsert([Record(id: String(repeating: "é", count: 257), values: v)]) }
        rejects("duplicate id in a batch") { try index.upsert([Record(id: "d", values: v), Record(id: "d", values: v)]) }
        rejects("metadata over 40 KB") { try index.upsert([Record(id: "x", values: v, metadata: bigMeta)]) }
        rejects("non-finite metadata") { try index.upsert([Record(id: "x", values: v, metadata: ["n": .number(.nan)])]) }
        rejects("other model") { try index.upsert([Record(id: "x", values: v)], embeddingModel: "text-embedding-3-small") }
        rejects("query of another dimension") { _ = try index.query(vector: [1, 2, 3], topK: 3) }
        rejects("topK 0") { _ = try index.query(vector: v, topK: 0) }
        rejects("query by a missing id") { _ = try index.query(id: "nope", topK: 3) }
        rejects("update of a missing id") { try index.update(id: "nope", setMetadata: ["a": .bool(true)]) }
        rejects("unknown filter operator") { _ = try Filter(json: #"{"year": {"$near": 3}}"#) }
        rejects("unknown index") { _ = try db.index("nope") }
        rejects("invalid name") { _ = try db.createIndex(name: "Bad_Name", dimension: 3, metric: .cosine) }
        rejects("existing name") { _ = try db.createIndex(name: "bad", dimension: 3, metric: .cosine) }
        rejects("opening with another model") { _ = try db.index("bad", embeddingModel: "other-model") }
        rejects("dimension 0") { _ = try db.createIndex(name: "zero", dimension: 0, metric: .cosine) }
        // A batch with one bad record stores none of it.
        rejects("one bad record in a batch") { try index.upsert([Record(id: "fine", values: v), Record(id: "nan", values: nan)]) }
        #expect(try index.fetch(ids: ["fine"]).isEmpty)
        #expect(index.count == good.count)
        #expect(try index.query(vector: v, topK: 1).matches.first?.id == good[0].id)
        do {
            try index.upsert([Record(id: "x", values: v)], embeddingModel: "text-embedding-3-small")
        } catch let LodestoneError.embeddingModelMismatch(expected, actual) {
            #expect(expected == Self.model && actual == "text-embedding-3-small")
        }
    }

    @Test("deleteIndex: later calls say the index is gone; listIndexes and describeIndex report")
    func deleteIndex() throws {
        let dir = Fixtures.temporaryDirectory("api-drop")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        let a = try db.createIndex(name: "a", dimension: 384, metric: .cosine, embeddingModel: Self.model)
        _ = try db.createIndex(name: "b", dimension: 8, metric: .euclidean, options: IndexOptions(kind: .flat))
        try a.upsert(Array(Fixtures.realRecords.prefix(100)))
        #expect(db.listIndexes() == ["a", "b"])
        let d = try db.describeIndex("a")
        #expect(d.recordCount == 100 && d.dimension == 384 && d.embeddingModel == Self.model && d.diskBytes > 0)
        // Searches read the float32 vector (1,536 bytes), 32 links and a key, state, level and upper start.
        let resident = try #require(d.residentBytesPerVector)
        #expect(resident >= 1_536 + 128 + 14 && resident < 1_536 + 128 + 14 + 64)
        #expect(try db.describeIndex("b").residentBytesPerVector == 9 * 4 + 8)
        try db.deleteIndex("a")
        #expect(db.listIndexes() == ["b"])
        #expect(throws: LodestoneError.indexNotFound(name: "a")) { _ = try a.query(vector: Fixtures.realRecords[0].values, topK: 1) }
        #expect(throws: LodestoneError.indexNotFound(name: "a")) { _ = try db.index("a") }
    }

    @Test("flat index: queryBatch (BLAS) equals one query at a time and the float64 brute force")
    func flatBatch() throws {
        let dir = Fixtures.temporaryDirectory("api-flat")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        let index = try db.createIndex(name: "flat", dimension: 384, metric: .cosine, options: IndexOptions(kind: .flat))
        let records = Array(Fixtures.realRecords.prefix(3_000))
        try index.upsert(records)
        let queries = (0..<40).map { Fixtures.realData.queries.row($0) }
        let batch = try index.queryBatch(vectors: queries, topK: 10, threads: 2)
        for (q, b) in zip(queries, batch) {
            let one = try index.query(vector: q, topK: 10).matches
            #expect(one.map(\.id) == b.map(\.id))
            #expect(one.map(\.id) == Self.exactFiltered(q, records: records, filter: nil, k: 10))
        }
        // Few matches (one filtered scan per query), some (the matching rows
        // gathered, then BLAS), most (BLAS over every row, the rest passed
        // over): each batch answer equals the single query's and the exact one.
        for text in [#"{"year": {"$lt": 2015}}"#, #"{"year": {"$lt": 2022}}"#, #"{"year": {"$gte": 2016}}"#] {
            let filter = try Filter(json: text)
            let filtered = try index.queryBatch(vectors: queries, topK: 10, filter: filter, threads: 2)
            for (q, b) in zip(queries, filtered) {
                let one = try index.query(vector: q, topK: 10, filter: filter).matches
                #expect(one.map(\.id) == b.map(\.id), "\(text)")
                #expect(one.map(\.score) == b.map(\.score), "\(text)")
                #expect(b.map(\.id) == Self.exactFiltered(q, records: records, filter: filter, k: 10), "\(text)")
            }
        }
    }

    @Test("close persists the log, so reopening replays nothing and answers the same; a closed handle refuses calls")
    func closeAndReopen() throws {
        let dir = Fixtures.temporaryDirectory("api-close")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        let index = try db.createIndex(name: "c", dimension: 384, metric: .cosine)
        let records = Array(Fixtures.realRecords.prefix(500))
        try index.upsert(records)
        let q = Fixtures.realData.queries.row(0)
        let before = try index.query(vector: q, topK: 10).matches.map(\.id)
        try index.close()
        #expect(throws: LodestoneError.indexClosed(name: "c")) { _ = try index.query(vector: q, topK: 10) }
        #expect(throws: LodestoneError.indexClosed(name: "c")) { try index.upsert([records[0]]) }
        // The log was folded into a segment; a new, empty log remains.
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/c")
        let logs = files.filter { $0.hasPrefix("wal-") }
        #expect(logs.count == 1 && files.contains { $0.hasPrefix("segment-") })
        let logSize = try FileManager.default.attributesOfItem(atPath: dir + "/c/" + logs[0])[.size] as? Int
        #expect(logSize == 0)
        let reopened = try db.index("c")
        #expect(reopened !== index)
        #expect(try reopened.query(vector: q, topK: 10).matches.map(\.id) == before)
        #expect(reopened.count == 500)
        // Closing without persisting keeps the write in the log; the lock is
        // released, so another Database (as another process) opens it.
        try reopened.upsert([Record(id: "new", values: records[1].values)])
        try db.close(persist: false)
        let other = try Database(path: dir).index("c")
        #expect(other.count == 501)
        #expect(try other.fetch(ids: ["new"])["new"] != nil)
    }

    @Test("fingerprint: the stored model's vectors pass, another distribution is flagged")
    func fingerprint() throws {
        let dir = Fixtures.temporaryDirectory("api-fp")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let index = try Database(path: dir).createIndex(name: "fp", dimension: 384, metric: .cosine)
        let records = Fixtures.realRecords
        try index.upsert(Array(records.prefix(2_000)))
        let same = try index.compareWithStored(records.suffix(500).map(\.values))
        #expect(!same.looksLikeAnotherModel, "\(same.summary)")
        // Another "model": the same texts' vectors under a fixed random rotation
        // of coordinates plus an offset (a different mean direction).
        var rng = Fixtures.SeededGenerator(seed: 7)
        let perm = Array(0..<384).shuffled(using: &rng)
        let other = records.suffix(500).map { r in perm.map { r.values[$0] + 0.05 } }
        let report = try index.compareWithStored(other)
        #expect(report.looksLikeAnotherModel, "\(report.summary)")
    }

    @Test("concurrent readers and a writer: every query sees whole records, no write is lost")
    func concurrentReadersAndWriter() throws {
        let dir = Fixtures.temporaryDirectory("api-conc")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let index = try Database(path: dir).createIndex(name: "c", dimension: 384, metric: .cosine,
                                                        options: IndexOptions(durability: .none))
        let records = Array(Fixtures.realRecords.prefix(1_200))
        try index.upsert(Array(records.prefix(200)))
        let done = Atomic<Bool>(false)
        let torn = Atomic<Int>(0)
        let box = UncheckedSendable(index)
        let readers = (0..<8).map { r in
            Thread {
                var i = r
                while !done.load(ordering: .relaxed) {
                    let rec = records[i % 200]
                    if let response = try? box.value.query(vector: rec.values, topK: 5, includeValues: true, includeMetadata: true) {
                        // A record's id, metadata and vector belong together.
                        for m in response.matches {
                            let expected = records.first { $0.id == m.id }!
                            if m.metadata != expected.metadata { torn.add(1, ordering: .relaxed) }
                        }
                    }
                    i += 7
                }
            }
        }
        readers.forEach { $0.start() }
        var start = 200
        while start < records.count {
            try index.upsert(Array(records[start..<min(records.count, start + 50)]))
            start += 50
        }
        done.store(true, ordering: .relaxed)
        Thread.sleep(forTimeInterval: 0.1)
        #expect(torn.load(ordering: .relaxed) == 0)
        #expect(index.count == records.count)
        for rec in records.prefix(1_200) where try index.fetch(ids: [rec.id]).isEmpty {
            Issue.record("lost write \(rec.id)")
        }
    }
}

@Suite("Export and import (gzip JSON Lines)")
struct TransferTests {
    static func write(_ lines: [String], gzip: Bool = true) throws -> String {
        let path = Fixtures.temporaryDirectory("jsonl") + (gzip ? "/in.jsonl.gz" : "/in.jsonl")
        let text = lines.joined(separator: "\n") + "\n"
        if gzip {
            let plain = path.replacingOccurrences(of: ".gz", with: "")
            try text.write(toFile: plain, atomically: true, encoding: .utf8)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["gzip", "-f", plain]
            try p.run()
            p.waitUntilExit()
        } else {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        return path
    }

    @Test("a round trip is exact: every record's id, bits, metadata and namespace, and the same query answers")
    func roundTrip() throws {
        let dir = Fixtures.temporaryDirectory("transfer")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        let source = try db.createIndex(name: "src", dimension: 384, metric: .cosine, embeddingModel: "m")
        let records = Array(Fixtures.realRecords.prefix(1_500))
        try source.upsert(Array(records[0..<1_000]))
        try source.upsert(Array(records[1_000...]), namespace: "second")
        let file = dir + "/export.jsonl.gz"
        #expect(try source.export(to: file) == records.count)
        let report = try db.importRecords(from: file, into: "copy", embeddingModel: "m")
        #expect(report.records == records.count && report.createdIndex && report.skippedLines == 0)
        let copy = try db.index("copy")
        #expect(try copy.describeStats().namespaces == ["": 1_000, "second": 500])
        for (ns, range) in [("", 0..<1_000), ("second", 1_000..<1_500)] {
            let ids = records[range].map(\.id)
            let a = try source.fetch(ids: ids, namespace: ns), b = try copy.fetch(ids: ids, namespace: ns)
            let differing = ids.filter { a[$0] != b[$0] }
            #expect(differing.isEmpty && a.count == ids.count, "\(differing.count) records differ, first \(differing.first ?? "")")
        }
        let filter = try Filter(json: #"{"year": {"$gte": 2020}}"#)
        for qi in 0..<20 {
            let q = Fixtures.realData.queries.row(qi)
            let a = try source.query(vector: q, topK: 10, filter: filter).matches
            let b = try copy.query(vector: q, topK: 10, filter: filter).matches
            #expect(a.map(\.id) == b.map(\.id) && a.map(\.score) == b.map(\.score), "query \(qi)")
        }
        // Exporting the copy gives the same records again.
        let again = dir + "/again.jsonl.gz"
        try copy.export(to: again)
        let r1 = try GzipLineReader(path: file), r2 = try GzipLineReader(path: again)
        var lines1: Set<[UInt8]> = [], lines2: Set<[UInt8]> = []
        while let l = try r1.nextLine() { lines1.insert(l) }
        while let l = try r2.nextLine() { lines2.insert(l) }
        #expect(lines1 == lines2, "\(lines1.subtracting(lines2).count) lines differ")
        #expect(lines1.count == records.count)
    }

    static func failure(_ body: () throws -> Void) -> LodestoneError? {
        do {
            try body()
            return nil
        } catch {
            return error as? LodestoneError
        }
    }

    @Test("bad files: the line number is in the error and nothing is imported, unless bad lines are skipped")
    func badLines() throws {
        let dir = Fixtures.temporaryDirectory("transfer-bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        let good = #"{"id": "a", "values": [0.1, 0.2, 0.3], "metadata": {"k": "v"}}"#
        let good2 = #"{"id": "b", "values": [0.3, 0.2, 0.1], "namespace": "n"}"#
        let cases: [(String, Int)] = [
            (#"{"id": "c", "values": [0.1, 0.2]}"#, 3),                      // wrong dimension
            (#"{"id": "", "values": [0.1, 0.2, 0.3]}"#, 3),                   // empty id
            (#"{"id": "c", "values": [0.1, "x", 0.3]}"#, 3),                  // not a number
            (#"{"values": [0.1, 0.2, 0.3]}"#, 3),                             // no id
            (#"{"id": "c", "values": [0.1, 0.2, 0.3]"#, 3),                  // cut short
            (#"{"id": "c", "values": [0, 0, 0]}"#, 3),                        // zero vector under cosine
            (#"{"id": "c", "values": [1, 2, 3], "metadata": {"o": {"x": 1}}}"#, 3),  // nested metadata
        ]
        for i in cases.indices {
            let line = cases[i].0, number = cases[i].1
            let file = try TransferTests.write([good, good2, line])
            let error = TransferTests.failure { _ = try db.importRecords(from: file, into: "t\(i)") }
            if case let .malformedLine(_, n, _)? = error {
                #expect(n == number, "\(line)")
            } else {
                Issue.record("\(line): \(String(describing: error))")
            }
            #expect(!db.listIndexes().contains("t\(i)"), "nothing is created")
        }
        let file = try TransferTests.write([good, cases[0].0, good2, cases[2].0])
        let report = try db.importRecords(from: file, into: "skip", skipBadLines: true)
        #expect(report.records == 2 && report.skippedLines == 2)
        // A file of another dimension is refused before anything is written.
        let other = try TransferTests.write([#"{"id": "z", "values": [1, 2, 3, 4]}"#], gzip: false)
        #expect(throws: LodestoneError.self) { _ = try db.importRecords(from: other, into: "skip") }
        #expect(try db.index("skip").count == 2)
        // A truncated gzip stream is a typed error.
        let big = try TransferTests.write((0..<2_000).map { #"{"id": "r\#($0)", "values": [\#($0 + 1), 2, 3]}"# })
        let bytes = try Data(contentsOf: URL(fileURLWithPath: big))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: big))
        #expect(throws: LodestoneError.self) { _ = try db.importRecords(from: big, into: "trunc") }
        #expect(!db.listIndexes().contains("trunc"))
    }
}

extension IndexAPITests {
    @Test("replacing records keeps their slots: later new records never take them over (also after reopening)")
    func replaceThenAdd() throws {
        let dir = Fixtures.temporaryDirectory("api-replace")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = Array(Fixtures.realRecords.prefix(60))
        do {
            let index = try Database(path: dir).createIndex(name: "r", dimension: 384, metric: .cosine)
            try index.upsert(Array(records[0..<20]))
            try index.upsert(Array(records[0..<10]))                   // replace: same ids, same vectors
            try index.update(id: records[11].id, setMetadata: ["x": .bool(true)])
            try index.upsert(Array(records[20..<40]))                  // new records
            try index.delete(ids: [records[5].id])
            try index.upsert(Array(records[40..<60]))                  // new records reuse slot 5 only
            #expect(index.count == 59)
            let fetched = try index.fetch(ids: records.map(\.id))
            #expect(fetched.count == 59)
            for r in records where r.id != records[5].id {
                #expect(fetched[r.id]?.values == r.values, "\(r.id)")
            }
            try index.persist()
        }
        let index = try Database(path: dir).index("r")
        let fetched = try index.fetch(ids: records.map(\.id))
        #expect(fetched.count == 59)
        for r in records where r.id != records[5].id {
            #expect(fetched[r.id]?.values == r.values, "\(r.id) after reopening")
            #expect(try index.query(vector: r.values, topK: 1).matches.first?.id == r.id)
        }
    }
}

extension IndexAPITests {
    @Test("concurrent deleteIndex while querying: queries answer or say the index is gone, nothing crashes")
    func concurrentDeleteWhileQuerying() throws {
        let dir = Fixtures.temporaryDirectory("api-drop-conc")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        let index = try db.createIndex(name: "d", dimension: 384, metric: .cosine)
        let records = Array(Fixtures.realRecords.prefix(300))
        try index.upsert(records)
        let answered = Atomic<Int>(0), gone = Atomic<Int>(0), other = Atomic<Int>(0)
        let box = UncheckedSendable(index)
        let readers = (0..<4).map { r in
            Thread {
                for i in 0..<400 {
                    do {
                        let m = try box.value.query(vector: records[(r * 31 + i) % 300].values, topK: 5).matches
                        if m.count == 5 { answered.add(1, ordering: .relaxed) } else { other.add(1, ordering: .relaxed) }
                    } catch LodestoneError.indexNotFound {
                        gone.add(1, ordering: .relaxed)
                    } catch {
                        other.add(1, ordering: .relaxed)
                    }
                }
            }
        }
        readers.forEach { $0.start() }
        Thread.sleep(forTimeInterval: 0.02)
        try db.deleteIndex("d")
        while answered.load(ordering: .relaxed) + gone.load(ordering: .relaxed) + other.load(ordering: .relaxed) < 1_600 {
            Thread.sleep(forTimeInterval: 0.01)
        }
        #expect(other.load(ordering: .relaxed) == 0)
        #expect(gone.load(ordering: .relaxed) > 0)
        #expect(!db.listIndexes().contains("d"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/d"))
    }

    @Test("listIDs and fetch respect a filter")
    func listAndFetchWithFilter() throws {
        let dir = Fixtures.temporaryDirectory("api-list-filter")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let index = try Database(path: dir).createIndex(name: "l", dimension: 384, metric: .cosine)
        let records = Array(Fixtures.realRecords.prefix(400))
        try index.upsert(records)
        let filter = try Filter(json: #"{"year": {"$lt": 2020}}"#)
        let expected = records.filter { filter.matches($0.metadata!) }.map(\.id)
            .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        var listed: [String] = [], token: String? = nil
        repeat {
            let page = try index.listIDs(filter: filter, limit: 7, paginationToken: token)
            listed += page.ids
            token = page.nextToken
        } while token != nil
        #expect(listed == expected)
        #expect(Set(try index.fetch(filter: filter, limit: 1_000).keys) == Set(expected))
    }
}

extension IndexAPITests {
    @Test("changes layered over a persisted (mapped) record table: ids, metadata, filters and namespaces stay right through persist and reopen")
    func changesOverPersistedTable() throws {
        let dir = Fixtures.temporaryDirectory("api-overlay")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = Array(Fixtures.realRecords.prefix(600))
        var model: [String: (ns: String, record: Record)] = [:]
        do {
            let index = try Database(path: dir).createIndex(name: "o", dimension: 384, metric: .cosine)
            try index.upsert(Array(records[0..<300]))
            try index.upsert(Array(records[300..<400]), namespace: "x")
            try index.persist()
        }
        for r in records[0..<300] { model["/" + r.id] = ("", r) }
        for r in records[300..<400] { model["x/" + r.id] = ("x", r) }
        for round in 0..<2 {
            do {
                let index = try Database(path: dir).index("o")
                // Delete some base records, replace others, add new ones (reusing slots), move metadata.
                let deleted = records[(round * 20)..<(round * 20 + 10)].map(\.id)
                try index.delete(ids: deleted)
                for id in deleted { model["/" + id] = nil }
                let fresh = Array(records[(400 + round * 100)..<(500 + round * 100)])
                try index.upsert(fresh)
                for r in fresh { model["/" + r.id] = ("", r) }
                let target = records[250 + round]
                try index.update(id: target.id, setMetadata: ["year": .number(1999)])
                var m = target.metadata!
                m["year"] = .number(1999)
                model["/" + target.id] = ("", Record(id: target.id, values: target.values, metadata: m))
                try index.persist()
            }
            let index = try Database(path: dir).index("o")
            #expect(index.count == model.count, "round \(round)")
            for (key, entry) in model {
                let got = try index.fetch(ids: [entry.record.id], namespace: entry.ns)[entry.record.id]
                #expect(got?.values == entry.record.values && got?.metadata == entry.record.metadata, "\(key)")
            }
            let filter = try Filter(json: #"{"year": {"$lte": 2000}}"#)
            let expected = Set(model.values.filter { $0.ns == "" && filter.matches($0.record.metadata!) }.map(\.record.id))
            var listed: [String] = [], token: String? = nil
            repeat {
                let page = try index.listIDs(filter: filter, limit: 50, paginationToken: token)
                listed += page.ids
                token = page.nextToken
            } while token != nil
            #expect(Set(listed) == expected)
            #expect(try index.describeStats().namespaces == ["": model.values.filter { $0.ns == "" }.count, "x": 100])
        }
    }

    @Test("a damaged record section is a typed error naming it")
    func damagedRecordSections() throws {
        let dir = Fixtures.temporaryDirectory("api-damage")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let index = try Database(path: dir).createIndex(name: "d", dimension: 384, metric: .cosine,
                                                            options: IndexOptions(kind: .flat))
            try index.upsert(Array(Fixtures.realRecords.prefix(200)))
            try index.persist()
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/d").filter { $0.hasPrefix("segment-") }
        let path = dir + "/d/" + files[0]
        let info = try SegmentInfo(path: path)
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        for name in ["records.header", "records.slots", "records.hash", "records.blob"] {
            let section = info.sections.first { $0.name == name }!
            var damaged = original
            damaged[section.offset + section.storedBytes / 2] ^= 0x40
            try damaged.write(to: URL(fileURLWithPath: path))
            let error = TransferTests.failure { _ = try Database(path: dir).index("d") }
            if case let .corruptSegment(_, s, _)? = error {
                #expect(s == name)
            } else {
                Issue.record("\(name): \(String(describing: error))")
            }
        }
    }
}

extension IndexAPITests {
    @Test("concurrent readers while a writer upserts, updates, deletes and persists (compacting) in a loop")
    func concurrentReadersWhilePersisting() throws {
        let dir = Fixtures.temporaryDirectory("api-conc-persist")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let index = try Database(path: dir).createIndex(name: "p", dimension: 384, metric: .cosine,
                                                        options: IndexOptions(durability: .none))
        let records = Array(Fixtures.realRecords.prefix(900))
        try index.upsert(Array(records.prefix(300)))
        try index.persist()
        let done = Atomic<Bool>(false)
        let problems = Atomic<Int>(0), reads = Atomic<Int>(0)
        let box = UncheckedSendable(index)
        let filter = try Filter(json: #"{"year": {"$gte": 2020}}"#)
        let readers = (0..<3).map { r in
            Thread {
                var i = r
                while !done.load(ordering: .relaxed) {
                    let rec = records[i % 300]
                    do {
                        let m = try box.value.query(vector: rec.values, topK: 5, filter: i % 2 == 0 ? filter : nil,
                                                    includeMetadata: true).matches
                        if i % 2 == 0 && !m.allSatisfy({ filter.matches($0.metadata ?? [:]) }) { problems.add(1, ordering: .relaxed) }
                        _ = try box.value.fetch(ids: [rec.id])
                    } catch {
                        problems.add(1, ordering: .relaxed)
                    }
                    reads.add(1, ordering: .relaxed)
                    i += 3
                }
            }
        }
        readers.forEach { $0.start() }
        for round in 0..<6 {
            try index.upsert(Array(records[(300 + round * 100)..<(400 + round * 100)]))
            try index.delete(ids: records[(round * 40)..<(round * 40 + 20)].map(\.id))
            try index.update(id: records[299 - round].id, setMetadata: ["round": .number(Double(round))])
            try index.persist()
        }
        done.store(true, ordering: .relaxed)
        Thread.sleep(forTimeInterval: 0.2)
        #expect(problems.load(ordering: .relaxed) == 0)
        #expect(reads.load(ordering: .relaxed) > 0)
        #expect(index.count == 900 - 6 * 20)
    }
}

extension IndexAPITests {
    @Test("listIDs pages equal a sorted reference for every prefix, filter and page size, and follow writes")
    func listIDsPages() throws {
        let dir = Fixtures.temporaryDirectory("list-ids")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = Array(Fixtures.realRecords.prefix(1_200))
        let index = try Database(path: dir).createIndex(name: "ids", dimension: 384, metric: .cosine,
                                                        options: IndexOptions(kind: .flat))
        try index.upsert(records)
        func reference(_ prefix: String, _ filter: Filter?, _ live: [Record]) -> [String] {
            live.filter { Array($0.id.utf8).starts(with: Array(prefix.utf8)) && (filter?.matches($0.metadata ?? [:]) ?? true) }
                .map(\.id).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        }
        func pages(_ prefix: String, _ filter: Filter?, _ limit: Int) throws -> [String] {
            var out: [String] = [], token: String? = nil
            repeat {
                let page = try index.listIDs(prefix: prefix, filter: filter, limit: limit, paginationToken: token)
                #expect(page.ids.count <= limit)
                out += page.ids
                token = page.nextToken
            } while token != nil
            return out
        }
        var live = records
        for round in 0..<2 {
            for prefix in ["", "p", "py", "a", "zz-none"] {
                for filter in [nil, try Filter(json: #"{"year": {"$gte": 2020}}"#)] {
                    for limit in [1, 7, 100, 5_000] {
                        #expect(try pages(prefix, filter, limit) == reference(prefix, filter, live),
                                "round \(round) prefix \(prefix) limit \(limit)")
                    }
                }
            }
            // A write changes the order's version: the next pages see it.
            let gone = live.prefix(100).map(\.id)
            try index.delete(ids: gone)
            live.removeFirst(100)
            try index.upsert([Record(id: "pz-new", values: records[0].values)])
            live.append(Record(id: "pz-new", values: records[0].values))
        }
    }
}
