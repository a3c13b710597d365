import ArgumentParser
import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

/// `lodestone-stress reliability-bad-input`: feeds every kind of bad input to the
/// API and checks each gives a typed `LodestoneError` and leaves what was
/// stored exactly as it was (and no temporary files behind).
struct ReliabilityBadInputCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reliability-bad-input", abstract: "Run the bad-input matrix against the API.")
    @Option var work: String = "/dev/shm/lodestone-bad-input"
    @Flag var verbose = false

    func run() throws {
        try? FileManager.default.removeItem(atPath: work)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let db = try Database(path: work + "/db")
        let model = "test-model"
        let index = try db.createIndex(name: "bad", dimension: 8, metric: .cosine, embeddingModel: model)
        let good = (0..<40).map { i in
            Record(id: "g\(i)", values: ReliabilityWorkload.vector(5, i, 0), metadata: ["n": .number(Double(i)), "t": .string("x\(i % 3)")])
        }
        try index.upsert(good)
        try index.persist()
        try index.upsert([Record(id: "late", values: ReliabilityWorkload.vector(6, 0, 0))])  // one record in the log
        let v = good[0].values
        var nan = v; nan[2] = .nan
        var inf = v; inf[0] = .infinity
        var negInf = v; negInf[7] = -.infinity
        let huge = [Float](repeating: 1e30, count: 8)
        let zero = [Float](repeating: 0, count: 8)
        let bigText = String(repeating: "x", count: 41_000)
        let gz = work + "/files"
        try FileManager.default.createDirectory(atPath: gz, withIntermediateDirectories: true)
        func file(_ name: String, _ lines: [String]) -> String {
            let path = gz + "/" + name
            try? (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let truncatedGzip = gz + "/truncated.jsonl.gz"
        do {
            let export = gz + "/full.jsonl.gz"
            try index.export(to: export)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: export))
            try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: truncatedGzip))
        }

        let cases: [(String, () throws -> Void)] = [
            ("upsert: too few components", { try index.upsert([Record(id: "x", values: [1, 2])]) }),
            ("upsert: too many components", { try index.upsert([Record(id: "x", values: v + v)]) }),
            ("upsert: NaN", { try index.upsert([Record(id: "x", values: nan)]) }),
            ("upsert: +infinity", { try index.upsert([Record(id: "x", values: inf)]) }),
            ("upsert: -infinity", { try index.upsert([Record(id: "x", values: negInf)]) }),
            ("upsert: squared norm overflows", { try index.upsert([Record(id: "x", values: huge)]) }),
            ("upsert: zero vector under cosine", { try index.upsert([Record(id: "x", values: zero)]) }),
            ("upsert: empty id", { try index.upsert([Record(id: "", values: v)]) }),
            ("upsert: id of 513 bytes", { try index.upsert([Record(id: String(repeating: "a", count: 513), values: v)]) }),
            ("upsert: id twice in a batch", { try index.upsert([Record(id: "d", values: v), Record(id: "d", values: v)]) }),
            ("upsert: metadata over 40 KB", { try index.upsert([Record(id: "x", values: v, metadata: ["t": .string(bigText)])]) }),
            ("upsert: metadata NaN", { try index.upsert([Record(id: "x", values: v, metadata: ["n": .number(.nan)])]) }),
            ("upsert: metadata infinity", { try index.upsert([Record(id: "x", values: v, metadata: ["n": .number(.infinity)])]) }),
            ("upsert: metadata empty field name", { try index.upsert([Record(id: "x", values: v, metadata: ["": .bool(true)])]) }),
            ("upsert: one bad record mid-batch", {
                try index.upsert([Record(id: "ok1", values: v), Record(id: "bad", values: nan), Record(id: "ok2", values: v)])
            }),
            ("upsert: another embedding model", { try index.upsert([Record(id: "x", values: v)], embeddingModel: "other") }),
            ("upsert: namespace over 512 bytes", { try index.upsert([Record(id: "x", values: v)], namespace: String(repeating: "n", count: 600)) }),
            ("upsert: sparse lengths differ", {
                try index.upsert([Record(id: "x", values: v, sparseValues: SparseVector(indices: [1, 2], values: [1]))])
            }),
            ("upsert: sparse index twice", {
                try index.upsert([Record(id: "x", values: v, sparseValues: SparseVector(indices: [4, 4], values: [1, 2]))])
            }),
            ("upsert: sparse NaN", {
                try index.upsert([Record(id: "x", values: v, sparseValues: SparseVector(indices: [4], values: [.nan]))])
            }),
            ("upsert: sparse over 2,048 components", {
                let n = SparseVector.maximumNonzeros + 1
                try index.upsert([Record(id: "x", values: v, sparseValues: SparseVector(
                    indices: (0..<n).map(UInt32.init), values: Array(repeating: 1, count: n)))])
            }),
            ("update: sparse index twice", { try index.update(id: "g1", sparseValues: SparseVector(indices: [4, 4], values: [1, 2])) }),
            ("query: sparse NaN", { _ = try index.query(sparseVector: SparseVector(indices: [1], values: [.nan]), topK: 3) }),
            ("query: hybrid with lengths differing", {
                _ = try index.query(vector: v, sparseVector: SparseVector(indices: [1], values: []), topK: 3)
            }),
            ("update: missing id", { try index.update(id: "nope", setMetadata: ["a": .bool(true)]) }),
            ("update: wrong dimension", { try index.update(id: "g1", values: [1, 2, 3]) }),
            ("update: NaN values", { try index.update(id: "g1", values: nan) }),
            ("update: metadata over 40 KB", { try index.update(id: "g1", setMetadata: ["t": .string(bigText)]) }),
            ("update: NaN metadata", { try index.update(id: "g1", setMetadata: ["n": .number(.nan)]) }),
            ("query: wrong dimension", { _ = try index.query(vector: [1, 2, 3], topK: 3) }),
            ("query: NaN", { _ = try index.query(vector: nan, topK: 3) }),
            ("query: zero vector under cosine", { _ = try index.query(vector: zero, topK: 3) }),
            ("query: topK 0", { _ = try index.query(vector: v, topK: 0) }),
            ("query: topK negative", { _ = try index.query(vector: v, topK: -5) }),
            ("query: ef 0", { _ = try index.query(vector: v, topK: 3, ef: 0) }),
            ("query: missing id", { _ = try index.query(id: "nope", topK: 3) }),
            ("query: another embedding model", { _ = try index.query(vector: v, topK: 3, embeddingModel: "other") }),
            ("queryBatch: one vector of another dimension", { _ = try index.queryBatch(vectors: [v, [1, 2]], topK: 3) }),
            ("queryBatch: topK 0", { _ = try index.queryBatch(vectors: [v], topK: 0) }),
            ("listIDs: limit 0", { _ = try index.listIDs(limit: 0) }),
            ("compareWithStored: wrong dimension", { _ = try index.compareWithStored([[1, 2]]) }),
            ("filter: unknown operator", { _ = try Filter(json: #"{"n": {"$near": 3}}"#) }),
            ("filter: $in not an array", { _ = try Filter(json: #"{"n": {"$in": 3}}"#) }),
            ("filter: $nin not an array", { _ = try Filter(json: #"{"n": {"$nin": "a"}}"#) }),
            ("filter: $gt on a string", { _ = try Filter(json: #"{"n": {"$gt": "a"}}"#) }),
            ("filter: $and not an array", { _ = try Filter(json: #"{"$and": {"n": 1}}"#) }),
            ("filter: $or of a number", { _ = try Filter(json: #"{"$or": 3}"#) }),
            ("filter: $exists not a bool", { _ = try Filter(json: #"{"n": {"$exists": 1}}"#) }),
            ("filter: nested 17 deep", {
                var f = #"{"n": 1}"#
                for _ in 0..<17 { f = #"{"$and": ["# + f + "]}" }
                _ = try Filter(json: f)
            }),
            ("filter: $in of 10,001 values", { _ = try Filter(json: #"{"n": {"$in": ["# + (0...10_000).map(String.init).joined(separator: ",") + "]}}") }),
            ("filter: not JSON", { _ = try Filter(json: "{year: 2020") }),
            ("filter: an array at the top", { _ = try Filter(json: "[1, 2]") }),
            ("filter: unknown top-level operator", { _ = try Filter(json: #"{"$not": {"n": 1}}"#) }),
            ("filter: $eq of an object", { _ = try Filter(json: #"{"n": {"$eq": {"a": 1}}}"#) }),
            ("create: uppercase name", { _ = try db.createIndex(name: "Bad", dimension: 8, metric: .cosine) }),
            ("create: underscore in name", { _ = try db.createIndex(name: "a_b", dimension: 8, metric: .cosine) }),
            ("create: name of 46 characters", { _ = try db.createIndex(name: String(repeating: "a", count: 46), dimension: 8, metric: .cosine) }),
            ("create: name starting with a hyphen", { _ = try db.createIndex(name: "-a", dimension: 8, metric: .cosine) }),
            ("create: empty name", { _ = try db.createIndex(name: "", dimension: 8, metric: .cosine) }),
            ("create: existing name", { _ = try db.createIndex(name: "bad", dimension: 8, metric: .cosine) }),
            ("create: dimension 0", { _ = try db.createIndex(name: "d0", dimension: 0, metric: .cosine) }),
            ("create: dimension 70,000", { _ = try db.createIndex(name: "d1", dimension: 70_000, metric: .cosine) }),
            ("create: HNSW m 1", { _ = try db.createIndex(name: "d2", dimension: 8, metric: .cosine, options: IndexOptions(hnsw: HNSWParameters(m: 1))) }),
            ("create: efConstruction 0", { _ = try db.createIndex(name: "d3", dimension: 8, metric: .cosine, options: IndexOptions(hnsw: HNSWParameters(efConstruction: 0))) }),
            ("create: model name over 128 bytes", { _ = try db.createIndex(name: "d4", dimension: 8, metric: .cosine, embeddingModel: String(repeating: "m", count: 200)) }),
            ("open: missing index", { _ = try db.index("missing") }),
            ("open: another embedding model", { _ = try db.index("bad", embeddingModel: "other") }),
            ("drop: missing index", { try db.deleteIndex("missing") }),
            ("import: another dimension into an existing index", { _ = try db.importRecords(from: file("dim.jsonl", [#"{"id": "z", "values": [1, 2, 3]}"#]), into: "bad") }),
            ("import: malformed JSON line", { _ = try db.importRecords(from: file("json.jsonl", [#"{"id": "z", "values": [1,2,3,4,5,6,7,8]"#]), into: "bad") }),
            ("import: line without an id", { _ = try db.importRecords(from: file("noid.jsonl", [#"{"values": [1,2,3,4,5,6,7,8]}"#]), into: "bad") }),
            ("import: a NaN token", { _ = try db.importRecords(from: file("nan.jsonl", [#"{"id": "z", "values": [NaN,2,3,4,5,6,7,8]}"#]), into: "bad") }),
            ("import: nested metadata", { _ = try db.importRecords(from: file("meta.jsonl", [#"{"id": "z", "values": [1,2,3,4,5,6,7,8], "metadata": {"o": {"a": 1}}}"#]), into: "bad") }),
            ("import: a good line then a bad one", { _ = try db.importRecords(from: file("mixed.jsonl", [#"{"id": "z1", "values": [1,2,3,4,5,6,7,8]}"#, #"{"id": "", "values": [1,2,3,4,5,6,7,8]}"#]), into: "bad") }),
            ("import: truncated gzip", { _ = try db.importRecords(from: truncatedGzip, into: "bad") }),
            ("import: missing file", { _ = try db.importRecords(from: gz + "/none.jsonl.gz", into: "bad") }),
            ("import: no records and no dimension", { _ = try db.importRecords(from: file("empty.jsonl", [""]), into: "new-empty") }),
            ("import: another embedding model", { _ = try db.importRecords(from: gz + "/full.jsonl.gz", into: "bad", embeddingModel: "other") }),
        ]

        let before = try ReliabilityWorkload.records(of: index)
        let indexesBefore = db.listIndexes()
        var failures: [String] = []
        for (name, body) in cases {
            do {
                try body()
                failures.append("\(name): accepted")
            } catch is LodestoneError {
                // typed: now check nothing changed
            } catch {
                failures.append("\(name): untyped error \(error)")
            }
            let after = try ReliabilityWorkload.records(of: index)
            if !ReliabilityWorkload.same(before, after) { failures.append("\(name): stored records changed") }
            if db.listIndexes() != indexesBefore { failures.append("\(name): the list of indexes changed") }
            let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: work + "/db/bad")) ?? []).filter { $0.contains(".tmp") }
            if !leftovers.isEmpty { failures.append("\(name): temporary files \(leftovers)") }
            if verbose { print("\(name): \(failures.last?.hasPrefix(name) == true ? "FAIL" : "ok")") }
        }
        var line = JSONLine()
        line.set("bad_input_cases", cases.count)
        line.set("bad_input_failures", failures.count)
        print(line.text)
        for f in failures { FileHandle.standardError.write(Data("FAIL \(f)\n".utf8)) }
        if !failures.isEmpty { throw ExitCode.failure }
    }
}
