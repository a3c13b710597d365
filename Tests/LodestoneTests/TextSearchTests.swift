import Foundation
import Testing
@testable import Lodestone

/// BM25 over a metadata text field (`IndexOptions.textField`), checked
/// against float64 brute force with a `BM25Encoder` fitted on the same
/// real PyPI summaries.
@Suite struct TextSearchTests {
    static let texts: [String] = Fixtures.realMetadata.map { SparseTests.string($0.metadata["text"]) }

    static let hasTokens: [Bool] = texts.map { !BM25Encoder.tokenize($0).isEmpty }

    static let queryTexts: [String] = {
        let url = Fixtures.sharedData?.appendingPathComponent("query_meta.jsonl")
            ?? Fixtures.sampleData.appendingPathComponent("query_meta.jsonl")
        return try! String(contentsOf: url, encoding: .utf8).split(separator: "\n").prefix(30).map { line in
            SparseTests.string(try! Metadata.from(json: JSONValue.parse(String(line)))["text"])
        }
    }()

    /// An encoder fitted on the texts of `rows` with a token, as the index
    /// counts them.
    static func encoder(rows: some Sequence<Int>) -> BM25Encoder {
        var encoder = BM25Encoder()
        encoder.fit(rows.filter { hasTokens[$0] }.map { texts[$0] })
        return encoder
    }

    /// Text queries rank as the exact BM25 ranking over `rows`.
    static func expectExactText(_ index: Index, rows: [Int], documents: [SparseVector], queries: BM25Encoder,
                                filter: Filter? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for text in queryTexts {
            let exact = SparseTests.bruteForce(queries.encodeQuery(text), rows: rows, k: 10, documents: documents)
            let got = try index.query(text: text, topK: 10, filter: filter)
            SparseTests.expectExact(got.matches, exact, sourceLocation: sourceLocation)
        }
    }

    @Test func textQueriesRankAsBM25AndFollowWrites() throws {
        let n = Fixtures.realRecords.count
        let path = Fixtures.temporaryDirectory("text")
        var db = try Database(path: path)
        var index = try db.createIndex(name: "docs", dimension: 384, metric: .cosine,
                                       options: IndexOptions(kind: .flat, textField: "text"))
        try index.upsert(Fixtures.realRecords, threads: 2)
        let all = Self.encoder(rows: 0..<n)
        let documents = Self.texts.map(all.encodeDocument)
        // The stored sparse values are the document vectors of the text.
        let fetched = try index.fetch(ids: [Fixtures.realRecords[7].id])[Fixtures.realRecords[7].id]
        #expect(fetched?.sparseValues?.indices == documents[7].indices)
        for (a, b) in zip(fetched?.sparseValues?.values ?? [], documents[7].values) { #expect(abs(a - b) < 1e-6) }
        try Self.expectExactText(index, rows: Array(0..<n), documents: documents, queries: all)
        let year = Filter.field("year", .gte(2024))
        let yearRows = (0..<n).filter { i in
            if case let .number(y)? = Fixtures.realMetadata[i].metadata["year"] { return y >= 2024 }
            return false
        }
        try Self.expectExactText(index, rows: yearRows, documents: documents, queries: all, filter: year)

        // Deletes change the idf of the next query (the documents keep their vectors).
        let gone = Array(stride(from: 0, to: n, by: 2))
        try index.delete(ids: gone.map { Fixtures.realRecords[$0].id })
        let left = Array(stride(from: 1, to: n, by: 2))
        let leftEncoder = Self.encoder(rows: left)
        try Self.expectExactText(index, rows: left, documents: documents, queries: leftEncoder)

        // Reopened: the same answers; a new record's vector uses the average
        // length over the records stored now.
        try db.close()
        db = try Database(path: path)
        index = try db.index("docs")
        try Self.expectExactText(index, rows: left, documents: documents, queries: leftEncoder)
        let text = "zyzzyva quokka tokenizer for llama embeddings"
        try index.upsert([Record(id: "new", values: Fixtures.realRecords[0].values, metadata: ["text": .string(text)])])
        let after = leftEncoder
        let (counts, length) = BM25Encoder.termCounts(text)
        let expected = BM25Encoder.documentVector(counts, length: length,
                                                  averageLength: Double(after.tokenCount + 6) / Double(after.documentCount + 1),
                                                  k1: 1.2, b: 0.75)
        let stored = try index.fetch(ids: ["new"])["new"]?.sparseValues
        #expect(stored?.indices == expected.indices)
        for (a, b) in zip(stored?.values ?? [], expected.values) { #expect(abs(a - b) < 1e-6) }
        #expect(try index.query(text: "quokka zyzzyva", topK: 3).matches.first?.id == "new")

        // Changing the text changes what the record is found by.
        try index.update(id: "new", setMetadata: ["text": .string("wombat numbat")])
        #expect(try index.query(text: "quokka", topK: 3).matches.isEmpty)
        #expect(try index.query(text: "numbat", topK: 3).matches.map(\.id) == ["new"])
        let tagged = try index.update(filter: .field("year", .gte(2024)), setMetadata: ["text": .string("numbat")])
        #expect(tagged > 0)
        #expect(try index.query(text: "numbat", topK: tagged + 5).matches.count == tagged + 1)
        // Text without a word or number finds nothing; with a vector it is the dense query.
        #expect(try index.query(text: "  -- ", topK: 5).matches.isEmpty)
        let dense = try index.query(vector: Fixtures.realRecords[1].values, topK: 5)
        #expect(try index.query(text: "...", vector: Fixtures.realRecords[1].values, topK: 5).matches.map(\.id)
                == dense.matches.map(\.id))
        try db.close()
    }

    @Test func hybridTextQueriesOnAFlatIndexAreExact() throws {
        let n = Fixtures.realRecords.count
        let db = try Database(path: Fixtures.temporaryDirectory("text-hybrid"))
        let index = try db.createIndex(name: "docs", dimension: 384, metric: .cosine,
                                       options: IndexOptions(kind: .flat, textField: "text"))
        try index.upsert(Fixtures.realRecords, threads: 2)
        let all = Self.encoder(rows: 0..<n)
        let documents = Self.texts.map(all.encodeDocument)
        let unit = Fixtures.realRecords.map { r -> [Double] in
            let v = r.values.map(Double.init)
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return v.map { $0 / norm }
        }
        for (q, text) in Self.queryTexts.prefix(20).enumerated() {
            let vector = Fixtures.realData.queries.row(q)
            let qv = vector.map(Double.init)
            let qn = qv.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let sparse = all.encodeQuery(text)
            var scored: [(Int, Double)] = (0..<n).map { i in
                var dense = 0.0
                for d in 0..<qv.count { dense += unit[i][d] * qv[d] / qn }
                let s = SparseTests.bruteForce(sparse, rows: [i], k: 1, documents: documents).first?.1 ?? 0
                return (i, dense + s)
            }
            scored.sort { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
            let got = try index.query(text: text, vector: vector, topK: 10)
            SparseTests.expectExact(got.matches, Array(scored.prefix(10)))
        }
    }

    @Test func aSparseTextIndexAndExportImport() throws {
        let db = try Database(path: Fixtures.temporaryDirectory("text-sparse"))
        let index = try db.createSparseIndex(name: "words", options: IndexOptions(textField: "body"))
        let rows = 0..<500
        try index.upsert(rows.map { Record(id: "r\($0)", values: [], metadata: ["body": .string(Self.texts[$0])]) })
        #expect(index.count == 500)
        #expect(try db.describeIndex("words").textField == "body")
        let first = try index.query(text: Self.queryTexts[0], topK: 10, includeMetadata: true)
        #expect(!first.matches.isEmpty)
        let file = Fixtures.temporaryDirectory("text-export") + "/words.jsonl.gz"
        try index.export(to: file)
        _ = try db.importRecords(from: file, into: "words-copy", metric: .dotProduct, options: IndexOptions(kind: .sparse, textField: "body"))
        let copy = try db.index("words-copy")
        #expect(copy.textField == "body")
        for text in Self.queryTexts.prefix(20) {
            // The same scores (records of equal text tie, in slot order).
            let a = try index.query(text: text, topK: 10), b = try copy.query(text: text, topK: 10)
            #expect(a.matches.count == b.matches.count)
            for (x, y) in zip(a.matches, b.matches) { #expect(abs(x.score - y.score) < 1e-6, "\(x.id) \(y.id)") }
        }
    }

    @Test func badTextInputIsRefusedAndStoresNothing() throws {
        let db = try Database(path: Fixtures.temporaryDirectory("text-bad"))
        let index = try db.createIndex(name: "docs", dimension: 384, metric: .cosine,
                                       options: IndexOptions(textField: "text"))
        let base = Array(Fixtures.realRecords.prefix(20))
        try index.upsert(base)
        var withSparse = Fixtures.realRecords[30]
        withSparse.sparseValues = SparseVector(indices: [1], values: [1])
        var numeric = Fixtures.realRecords[31]
        numeric.metadata = ["text": .number(3)]
        let cases: [(String, () throws -> Void)] = [
            ("sparseValues", { try index.upsert([Fixtures.realRecords[29], withSparse]) }),
            ("text", { try index.upsert([numeric]) }),
            ("sparseValues", { try index.update(id: base[0].id, sparseValues: SparseVector(indices: [1], values: [1])) }),
            ("text", { try index.update(id: base[0].id, setMetadata: ["text": .bool(true)]) }),
            ("text", { _ = try index.update(filter: .field("year", .gte(0)), setMetadata: ["text": .number(1)]) }),
            ("text", { _ = try index.query(text: String(repeating: "a ", count: 40_000), topK: 3) }),
            ("textField", { _ = try db.createIndex(name: "empty-field", dimension: 4, metric: .cosine,
                                                   options: IndexOptions(textField: "")) }),
        ]
        for (field, body) in cases {
            do {
                try body()
                Issue.record("accepted: \(field)")
            } catch let error as LodestoneError {
                #expect("\(error)".contains(field), "\(error)")
            }
        }
        #expect(index.count == 20)
        #expect(try index.fetch(ids: [base[0].id])[base[0].id]?.metadata == base[0].metadata)
        let plain = try db.createIndex(name: "plain", dimension: 384, metric: .cosine)
        #expect(throws: LodestoneError.self) { try plain.query(text: "python", topK: 3) }
        let words = try db.createSparseIndex(name: "words", options: IndexOptions(textField: "body"))
        #expect(throws: LodestoneError.self) { try words.upsert([Record(id: "x", values: [], metadata: ["body": .string("—")])]) }
        #expect(words.count == 0)
    }
}
