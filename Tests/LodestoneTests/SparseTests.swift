import Foundation
import Testing
@testable import Lodestone

/// Sparse vectors and hybrid search, checked against float64 brute force on
/// BM25 vectors of the real PyPI summaries (the metadata's `text`).
@Suite struct SparseTests {
    /// BM25 vectors of the base texts and of the query texts.
    struct TextSet {
        let encoder: BM25Encoder
        let documents: [SparseVector]
        let queries: [SparseVector]
    }

    static let texts: TextSet = {
        let documents = Fixtures.realMetadata.map { "\($0.id): \(Self.string($0.metadata["text"]))" }
        let queryURL = Fixtures.sharedData?.appendingPathComponent("query_meta.jsonl")
            ?? Fixtures.sampleData.appendingPathComponent("query_meta.jsonl")
        let queryLines = try! String(contentsOf: queryURL, encoding: .utf8).split(separator: "\n").prefix(100)
        let queries = queryLines.map { line -> String in
            let m = try! Metadata.from(json: JSONValue.parse(String(line)))
            return "\(SparseTests.string(m["id"])): \(SparseTests.string(m["text"]))"
        }
        var encoder = BM25Encoder()
        encoder.fit(documents)
        return TextSet(encoder: encoder, documents: documents.map(encoder.encodeDocument),
                       queries: queries.map(encoder.encodeQuery))
    }()

    static func string(_ value: MetadataValue?) -> String {
        if case let .string(s)? = value { return s }
        return ""
    }

    static func records(_ range: Range<Int>) -> [Record] {
        range.map { i in
            var r = Fixtures.realRecords[i]
            r.sparseValues = texts.documents[i]
            return r
        }
    }

    /// The exact top k by float64 sparse dot product over `rows` (only
    /// rows sharing a term), ties to the lower row; with the scores.
    static func bruteForce(_ query: SparseVector, rows: [Int], k: Int) -> [(Int, Double)] {
        bruteForce(query, rows: rows, k: k, documents: texts.documents)
    }

    /// `matches` equal the exact ranking: the same scores rank by rank
    /// (within float32 rounding), and the same ids except where scores tie.
    static func expectExact(_ matches: [Match], _ exact: [(Int, Double)], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(matches.count == exact.count, sourceLocation: sourceLocation)
        for (m, e) in zip(matches, exact) {
            #expect(abs(Double(m.score) - e.1) <= 1e-4 * max(1, abs(e.1)), "\(m.id) \(m.score) vs \(e)",
                    sourceLocation: sourceLocation)
        }
        let exactIDs = Set(exact.map { Fixtures.realRecords[$0.0].id })
        let tiesAtEdge = exact.count > 1 && abs(exact[exact.count - 1].1 - exact[exact.count - 2].1) < 1e-5
        if !tiesAtEdge {
            #expect(Set(matches.map(\.id)) == exactIDs, sourceLocation: sourceLocation)
        }
    }

    @Test func murmurHashAndTokenizerMatchTheirReferences() {
        // mmh3.hash(s, signed=False), the ids pinecone-text gives its tokens.
        let reference: [(String, UInt32)] = [("", 0), ("a", 1_009_084_850), ("ab", 2_613_040_991), ("abc", 3_017_643_002),
                                             ("hello", 613_153_351), ("python", 683_459_885), ("ü", 2_017_519_274),
                                             ("naïve tokenizer", 4_230_677_173)]
        for (s, h) in reference { #expect(BM25Encoder.termID(s) == h, "\(s)") }
        #expect(BM25Encoder.tokenize("Ｆｕｌｌ-width ＡＢＣ, ﬁne: Café_2 ½ x86-64!") == ["full", "width", "abc", "fine", "café", "2", "1", "2", "x86", "64"])
        #expect(BM25Encoder.tokenize(String(repeating: "a", count: 65) + " ok") == ["ok"])
        #expect(BM25Encoder.tokenize("日本語のテキスト") == ["日本語のテキスト"])
    }

    @Test func sparseQueriesAreExactWithFiltersAndNamespaces() throws {
        let n = Fixtures.realRecords.count
        let db = try Database(path: Fixtures.temporaryDirectory("sparse-exact"))
        let index = try db.createIndex(name: "bm25", dimension: 384, metric: .cosine)
        try index.upsert(Self.records(0..<n), threads: 2)
        let year = Filter.field("year", .gte(2024))
        let recent = (0..<n).filter { i in
            if case let .number(y)? = Fixtures.realRecords[i].metadata?["year"] { return y >= 2024 }
            return false
        }
        for q in Self.texts.queries.prefix(50) where !q.isEmpty {
            let got = try index.query(sparseVector: q, topK: 10, includeValues: true)
            Self.expectExact(got.matches, Self.bruteForce(q, rows: Array(0..<n), k: 10))
            for m in got.matches {
                let i = Fixtures.realRecords.firstIndex { $0.id == m.id }!
                #expect(m.sparseValues == Self.texts.documents[i])
            }
            Self.expectExact(try index.query(sparseVector: q, topK: 10, filter: year).matches,
                             Self.bruteForce(q, rows: recent, k: 10))
            // With a floor (as hybrid queries pass): the exact top k among records reaching it.
            let exact = Self.bruteForce(q, rows: Array(0..<n), k: 10)
            if let floor = exact.dropFirst(3).first.map({ Float($0.1) }) {
                let above = index.lock.reading {
                    index.table.sparse.search(q, k: 10, allowed: nil, slots: index.table.capacity, floor: floor)
                }
                let expected = exact.filter { Float($0.1) >= floor * (1 + 1e-5) }
                #expect(above.count >= expected.count && above.count <= 10)
                for e in expected { #expect(above.contains { $0.key == UInt64(index.table.slot(id: Fixtures.realRecords[e.0].id, namespace: "")!) }) }
            }
        }
        // A namespace holds its own records only.
        try index.upsert(Self.records(0..<50), namespace: "other")
        let q = Self.texts.queries.first { !$0.isEmpty }!
        let other = try index.query(sparseVector: q, topK: 100, namespace: "other")
        Self.expectExact(other.matches, Self.bruteForce(q, rows: Array(0..<50), k: 100))
        #expect(try index.query(sparseVector: q, topK: 5, explain: true).explanation?.plan == .sparse)
    }

    @Test func sparseVectorsPersistInSegmentsDeltasAndTheLog() throws {
        let n = min(Fixtures.realRecords.count, 4_000)
        let path = Fixtures.temporaryDirectory("sparse-persist")
        var db = try Database(path: path)
        var index = try db.createIndex(name: "bm25", dimension: 384, metric: .dotProduct)
        try index.upsert(Self.records(0..<(n - 500)))
        try index.persist()  // a segment with the sparse sections
        try index.upsert(Self.records((n - 500)..<n))
        try index.delete(ids: (0..<100).map { Fixtures.realRecords[$0].id })
        // A sparse vector replaced without the vector, one cleared, one set by a full update.
        try index.update(id: Fixtures.realRecords[200].id, sparseValues: Self.texts.documents[201])
        try index.update(id: Fixtures.realRecords[202].id, sparseValues: SparseVector(indices: [], values: []))
        try index.update(id: Fixtures.realRecords[203].id, values: Fixtures.realRecords[203].values,
                         sparseValues: Self.texts.documents[204])
        var documents = Self.texts.documents
        documents[200] = documents[201]
        documents[202] = SparseVector(indices: [], values: [])
        documents[203] = documents[204]
        let live = Array(100..<n)
        func check(_ index: Lodestone.Index, _ label: String) throws {
            for q in Self.texts.queries.prefix(30) where !q.isEmpty {
                let got = try index.query(sparseVector: q, topK: 10)
                let exact = Self.bruteForce(q, rows: live, k: 10, documents: documents)
                Self.expectExact(got.matches, exact)
            }
            let fetched = try index.fetch(ids: [200, 202, 203, 300].map { Fixtures.realRecords[$0].id })
            #expect(fetched[Fixtures.realRecords[200].id]?.sparseValues == documents[200], "\(label)")
            #expect(fetched[Fixtures.realRecords[202].id]?.sparseValues == nil, "\(label)")
            #expect(fetched[Fixtures.realRecords[203].id]?.sparseValues == documents[203], "\(label)")
            #expect(fetched[Fixtures.realRecords[300].id]?.sparseValues == documents[300], "\(label)")
        }
        try check(index, "live")
        try index.close(persist: false)
        db = try Database(path: path)
        index = try db.index("bm25")
        try check(index, "replayed from the log")
        try index.persist()  // a delta over the segment
        try index.close(persist: false)
        db = try Database(path: path)
        index = try db.index("bm25")
        try check(index, "segment and delta")
        try index.persist(merge: true)
        try index.close(persist: false)
        db = try Database(path: path)
        index = try db.index("bm25")
        try check(index, "merged segment")
    }

    @Test func hybridQueriesSumBothScores() throws {
        let n = min(Fixtures.realRecords.count, 3_000)
        let db = try Database(path: Fixtures.temporaryDirectory("hybrid"))
        let flat = try db.createIndex(name: "flat", dimension: 384, metric: .dotProduct, options: IndexOptions(kind: .flat))
        let hnsw = try db.createIndex(name: "hnsw", dimension: 384, metric: .dotProduct)
        try flat.upsert(Self.records(0..<n))
        try hnsw.upsert(Self.records(0..<n))
        var found = 0, wanted = 0
        for (qi, q) in Self.texts.queries.prefix(40).enumerated() where !q.isEmpty {
            // Weight the sparse side as a caller would (alpha 0.5 on each).
            let dense = Fixtures.realData.queries.row(qi).map { $0 * 0.5 }
            let sparse = SparseVector(indices: q.indices, values: q.values.map { $0 * 0.5 })
            var exact: [(Int, Double)] = (0..<n).map { i in
                let d = zip(dense, Fixtures.realRecords[i].values).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                let s = Self.bruteForce(sparse, rows: [i], k: 1).first?.1 ?? 0
                return (i, d + s)
            }
            exact.sort { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
            if qi < 3 {  // a top k large enough to be sorted whole
                Self.expectExact(try flat.query(vector: dense, sparseVector: sparse, topK: 40).matches,
                                 Array(exact.prefix(40)))
            }
            exact = Array(exact.prefix(10))
            Self.expectExact(try flat.query(vector: dense, sparseVector: sparse, topK: 10).matches, exact)
            let approximate = try hnsw.query(vector: dense, sparseVector: sparse, topK: 10, explain: true)
            #expect(approximate.explanation?.plan == .hybrid)
            let ids = Set(exact.map { Fixtures.realRecords[$0.0].id })
            found += approximate.matches.filter { ids.contains($0.id) }.count
            wanted += ids.count
            for m in approximate.matches {
                let i = Fixtures.realRecords.firstIndex { $0.id == m.id }!
                let d = zip(dense, Fixtures.realRecords[i].values).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                let s = Self.bruteForce(sparse, rows: [i], k: 1).first?.1 ?? 0
                #expect(abs(Double(m.score) - (d + s)) < 1e-4, "scores are exact")
            }
            // Reciprocal-rank fusion: a record first on both sides scores 2 / (60 + 1).
            let rrf = try flat.query(vector: dense, sparseVector: sparse, topK: 5, fusion: .reciprocalRank(k: 60))
            #expect(rrf.matches.count == 5)
            #expect(rrf.matches.allSatisfy { $0.score <= 2.0 / 61 + 1e-6 })
        }
        #expect(Double(found) / Double(wanted) >= 0.95, "hybrid recall@10 on HNSW \(Double(found) / Double(wanted))")
    }

    @Test func exportAndImportCarrySparseValues() throws {
        let dir = Fixtures.temporaryDirectory("sparse-export")
        let db = try Database(path: dir + "/db")
        let index = try db.createIndex(name: "source", dimension: 384, metric: .dotProduct)
        let records = Self.records(0..<200)
        try index.upsert(records)
        try index.upsert(Self.records(200..<210), namespace: "other")
        #expect(try index.export(to: dir + "/out.jsonl.gz") == 210)
        let report = try db.importRecords(from: dir + "/out.jsonl.gz", into: "copy", metric: .dotProduct)
        #expect(report.records == 210)
        let copy = try db.index("copy")
        let ids = records.map(\.id)
        let original = try index.fetch(ids: ids), copied = try copy.fetch(ids: ids)
        #expect(original.count == 200 && original == copied)
        #expect(copied[records[0].id]?.sparseValues == records[0].sparseValues)
        let sparseIndex = try db.createSparseIndex(name: "keywords")
        try sparseIndex.upsert(records.map { Record(id: $0.id, values: [], sparseValues: $0.sparseValues) })
        try sparseIndex.export(to: dir + "/sparse.jsonl.gz")
        _ = try db.importRecords(from: dir + "/sparse.jsonl.gz", into: "keywords")  // merges the same records back
        #expect(sparseIndex.count == 200)
    }

    @Test func badSparseInputIsRefusedAndStoresNothing() throws {
        let db = try Database(path: Fixtures.temporaryDirectory("sparse-bad"))
        let index = try db.createIndex(name: "bad", dimension: 384, metric: .cosine)
        let good = Self.records(0..<3)
        let bad: [(SparseVector, String)] = [
            (SparseVector(indices: [1, 2], values: [1]), "same length"),
            (SparseVector(indices: [5, 5], values: [1, 2]), "appears twice"),
            (SparseVector(indices: [1], values: [.nan]), "finite"),
            (SparseVector(indices: [7], values: [.infinity]), "finite"),
            (SparseVector(indices: (0..<2_049).map(UInt32.init), values: Array(repeating: 1, count: 2_049)), "at most"),
        ]
        for (vector, reason) in bad {
            var batch = good
            batch[2].sparseValues = vector
            #expect {
                try index.upsert(batch)
            } throws: { error in
                guard case let .invalidArgument(name, message) = error as? LodestoneError else { return false }
                return name == "sparseValues" && message.contains(reason) && message.contains(good[2].id)
            }
            #expect(index.count == 0)
            #expect {
                try index.query(sparseVector: vector, topK: 3)
            } throws: { error in
                guard case let .invalidArgument(name, _) = error as? LodestoneError else { return false }
                return name == "sparseVector"
            }
        }
        try index.upsert(good)
        #expect(throws: LodestoneError.self) { try index.update(id: good[0].id, sparseValues: bad[1].0) }
        #expect(try index.fetch(ids: [good[0].id])[good[0].id]?.sparseValues == good[0].sparseValues)
        let euclidean = try db.createIndex(name: "l2", dimension: 384, metric: .euclidean)
        try euclidean.upsert(good)
        #expect {
            try euclidean.query(vector: good[0].values, sparseVector: good[0].sparseValues!, topK: 3)
        } throws: { error in
            guard case let .invalidArgument(name, _) = error as? LodestoneError else { return false }
            return name == "fusion"
        }
        // Unsorted indices are accepted and stored ascending.
        let unsorted = SparseVector(indices: [9, 3, 5], values: [0.9, 0.3, 0.5])
        try index.update(id: good[1].id, sparseValues: unsorted)
        #expect(try index.fetch(ids: [good[1].id])[good[1].id]?.sparseValues
                == SparseVector(indices: [3, 5, 9], values: [0.3, 0.5, 0.9]))
    }
}

extension SparseTests {
    @Test func sparseIndexesHoldSparseVectorsOnly() throws {
        let n = min(Fixtures.realRecords.count, 3_000)
        let path = Fixtures.temporaryDirectory("sparse-kind")
        var db = try Database(path: path)
        var index = try db.createSparseIndex(name: "bm25")
        #expect(index.kind == .sparse && index.dimension == 0 && index.metric == .dotProduct)
        let records = (0..<n).compactMap { i -> Record? in
            Self.texts.documents[i].isEmpty ? nil : Record(id: Fixtures.realRecords[i].id, values: [],
                                                              metadata: Fixtures.realRecords[i].metadata,
                                                              sparseValues: Self.texts.documents[i])
        }
        try index.upsert(records)
        let rows = (0..<n).filter { !Self.texts.documents[$0].isEmpty }
        func check(_ index: Lodestone.Index) throws {
            for q in Self.texts.queries.prefix(20) where !q.isEmpty {
                Self.expectExact(try index.query(sparseVector: q, topK: 10).matches, Self.bruteForce(q, rows: rows, k: 10))
            }
            let batch = try index.queryBatch(sparseVectors: Array(Self.texts.queries.prefix(20)), topK: 10, threads: 2)
            for (q, matches) in zip(Self.texts.queries.prefix(20), batch) {
                Self.expectExact(matches, Self.bruteForce(q, rows: rows, k: 10))
            }
            let first = records[0]
            #expect(try index.fetch(ids: [first.id])[first.id] == first)
            // A query by id is by the record's sparse vector.
            let byID = try index.query(id: first.id, topK: 10)
            Self.expectExact(byID.matches, Self.bruteForce(first.sparseValues!, rows: rows, k: 10))
            #expect(try index.describeStats().dimension == 0)
        }
        try check(index)
        try index.close()
        db = try Database(path: path)
        index = try db.index("bm25")
        #expect(index.kind == .sparse)
        try check(index)
        // What a sparse index refuses, with nothing stored.
        let count = index.count
        let refusals: [(() throws -> Void, String)] = [
            ({ try index.upsert([Record(id: "dense", values: [1, 2], sparseValues: SparseVector(indices: [1], values: [1]))]) },
             "values"),
            ({ try index.upsert([Record(id: "none", values: [])]) }, "sparseValues"),
            ({ try index.upsert([Record(id: "empty", values: [], sparseValues: SparseVector(indices: [], values: []))]) },
             "sparseValues"),
            ({ _ = try index.query(vector: [1], topK: 3) }, "vector"),
            ({ _ = try index.query(vector: [1], sparseVector: SparseVector(indices: [1], values: [1]), topK: 3) }, "vector"),
            ({ try index.update(id: records[0].id, values: [1]) }, "values"),
        ]
        for (call, field) in refusals {
            #expect {
                try call()
            } throws: { error in
                guard case let .invalidArgument(name, _) = error as? LodestoneError else { return false }
                return name == field
            }
        }
        #expect(index.count == count)
        #expect(throws: LodestoneError.self) {
            try db.createIndex(name: "wrong", dimension: 4, metric: .dotProduct, options: IndexOptions(kind: .sparse))
        }
    }
}

extension SparseTests {
    static func bruteForce(_ query: SparseVector, rows: [Int], k: Int, documents: [SparseVector]) -> [(Int, Double)] {
        var scored: [(Int, Double)] = []
        for i in rows {
            let d = documents[i]
            var j = 0, l = 0, sum = 0.0, shared = false
            while j < d.indices.count && l < query.indices.count {
                if d.indices[j] == query.indices[l] {
                    sum += Double(d.values[j]) * Double(query.values[l])
                    shared = true
                    j += 1
                    l += 1
                } else if d.indices[j] < query.indices[l] { j += 1 } else { l += 1 }
            }
            if shared { scored.append((i, sum)) }
        }
        scored.sort { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
        return Array(scored.prefix(k))
    }
}
