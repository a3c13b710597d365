import Foundation
import Testing

@_spi(LodestoneTools) @testable import Lodestone

@Suite("Bulk load from vectors files")
struct BulkLoadTests {
    static let base = Fixtures.dataFile(small: "small_base.fvecs", sample: "base.fvecs")
    static let metadata = Fixtures.dataFile(small: "small_base_meta.jsonl", sample: "base_meta.jsonl")

    @Test("a vectors file and its metadata load in batches into the same records as one upsert, and answer alike")
    func loadsLikeUpsert() throws {
        let dir = Fixtures.temporaryDirectory("bulk")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        let flat = IndexOptions(kind: .flat)
        let streamed = try db.createIndex(name: "streamed", dimension: 384, metric: .cosine, options: flat)
        var reports: [TransferProgress] = []
        let report = try streamed.upsertVectors(fromFile: Self.base, metadata: Self.metadata, batchSize: 700) {
            reports.append($0)
        }
        let records = Fixtures.realRecords
        #expect(report.records == records.count && !report.stopped)
        #expect(reports.map(\.records) == Array(stride(from: 700, to: records.count, by: 700)) + [records.count])
        let direct = try db.createIndex(name: "direct", dimension: 384, metric: .cosine, options: flat)
        try direct.upsert(records)
        let ids = stride(from: 0, to: records.count, by: 97).map { records[$0].id }
        let a = try streamed.fetch(ids: ids), b = try direct.fetch(ids: ids)
        #expect(a.count == ids.count && ids.allSatisfy { a[$0] == b[$0] })
        for qi in 0..<20 {
            let q = Fixtures.realData.queries.row(qi)
            let x = try streamed.query(vector: q, topK: 10).matches, y = try direct.query(vector: q, topK: 10).matches
            #expect(x.map(\.id) == y.map(\.id) && x.map(\.score) == y.map(\.score), "query \(qi)")
        }
        // Reopened, the records are there (the load went through the log).
        let reopened = try Database(path: dir).index("streamed")
        #expect(reopened.count == records.count)

        // Without metadata, ids are row numbers, here in a namespace.
        let rows = try db.createIndex(name: "rows", dimension: 384, metric: .cosine, options: flat)
        #expect(try rows.upsertVectors(fromFile: Self.base, namespace: "n", batchSize: 1_000, threads: 2).records
                == records.count)
        let truth = Fixtures.realData.truth
        for qi in 0..<20 {
            let found = try rows.query(vector: Fixtures.realData.queries.row(qi), topK: 10, namespace: "n").matches
            #expect(found.first?.id == String(truth.row(qi)[0]), "query \(qi)")
        }
    }

    @Test("a load that commits by persisting logs nothing, persists as the log would, and maps its vectors from the segments")
    func commitsByPersisting() throws {
        let dir = Fixtures.temporaryDirectory("bulk-persist")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        let options = IndexOptions(hnsw: HNSWParameters(m: 16, efConstruction: 64, traversal: .compact))
        let logged = try db.createIndex(name: "logged", dimension: 384, metric: .cosine, options: options)
        let persisted = try db.createIndex(name: "persisted", dimension: 384, metric: .cosine, options: options)
        // Ten batches; an auto-persist threshold of two batches' vectors.
        let rows = try VectorFileReader(path: Self.base).count, batch = rows / 10
        for index in [logged, persisted] { index.setAutoPersistBytes(2 * batch * 384 * 4) }
        var generations: Set<UInt64> = []
        var logBytes = 0
        let report = try persisted.upsertVectors(fromFile: Self.base, batchSize: batch, commit: .persist) { _ in
            generations.insert(persisted.store.generation)
            logBytes = max(logBytes, persisted.store.logBytes)
        }
        _ = try logged.upsertVectors(fromFile: Self.base, batchSize: batch)
        let n = report.records
        #expect(n == Fixtures.realRecords.count)
        // No byte logged; persisted on the way (past the threshold, then
        // past the segment's size) and once more at the end.
        #expect(logBytes == 0 && persisted.store.logBytes == 0 && !persisted.store.hasUnlogged)
        #expect(generations.count >= 3, "persists seen during the load: \(generations.sorted())")
        #expect(persisted.store.generation > generations.max()! || generations.count >= 4)
        // The whole chunks the last segment holds are mapped from it; the
        // scratch file keeps the partial last chunk only.
        let vectors = persisted.engine.hnsw!.vectors
        let chunk = vectors.chunkBytes
        #expect(vectors.remappedBytes == n / NodeArena.chunkSize * chunk)
        #expect(vectors.spillFileBytes == (n % NodeArena.chunkSize == 0 ? 0 : chunk))
        #expect(logged.engine.hnsw!.vectors.spillFileBytes >= n / NodeArena.chunkSize * chunk)
        // The same batches build the same graph: the same answers, the same vectors.
        for qi in 0..<20 {
            let q = Fixtures.realData.queries.row(qi)
            let x = try persisted.query(vector: q, topK: 10, ef: 64).matches
            let y = try logged.query(vector: q, topK: 10, ef: 64).matches
            #expect(x.map(\.id) == y.map(\.id) && x.map(\.score) == y.map(\.score), "query \(qi)")
        }
        let ids = stride(from: 0, to: n, by: 331).map(String.init)
        let a = try persisted.fetch(ids: ids), b = try logged.fetch(ids: ids)
        #expect(ids.allSatisfy { a[$0] != nil && a[$0] == b[$0] })

        // An update of a vector mapped from the segment changes this index
        // only (copy-on-write); the next persist maps the chunk again.
        let changed = Fixtures.realData.queries.row(0)
        try persisted.update(id: "5", values: changed)
        #expect(try persisted.query(vector: changed, topK: 1).matches.first?.id == "5")
        try persisted.persist(merge: true)
        #expect(vectors.remappedBytes == n / NodeArena.chunkSize * chunk)
        #expect(try persisted.query(vector: changed, topK: 1).matches.first?.id == "5")

        // Unlogged batches wait for a persist; a logged write persists them
        // first, and a close without persisting (a crash) drops only them.
        let extra = (0..<3).map { Record(id: "extra\($0)", values: Fixtures.realData.queries.row($0 + 1)) }
        _ = try persisted.upsert([extra[0]], namespace: "", embeddingModel: nil, threads: 1, commit: .persist)
        #expect(persisted.store.hasUnlogged && persisted.store.logBytes == 0)
        let before = persisted.store.generation
        try persisted.upsert([extra[1]])
        #expect(persisted.store.generation == before + 1 && !persisted.store.hasUnlogged && persisted.store.logBytes > 0)
        _ = try persisted.upsert([extra[2]], namespace: "", embeddingModel: nil, threads: 1, commit: .persist)
        try persisted.close(persist: false)
        let reopened = try Database(path: dir).index("persisted")
        #expect(reopened.count == n + 2)
        #expect(try reopened.fetch(ids: ["extra0", "extra1", "extra2"]).keys.sorted() == ["extra0", "extra1"])
        #expect(try reopened.query(vector: changed, topK: 1).matches.first?.id == "5")
        try reopened.verify()

        // A load stopped by a damaged row commits the batches before it.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: Self.base)).prefix(1_200 * (4 + 4 * 384))
        let at = 1_000 * (4 + 4 * 384)
        bytes.replaceSubrange(at..<at + 4, with: [9, 0, 0, 0])
        let damaged = dir + "/damaged.fvecs"
        try bytes.write(to: URL(fileURLWithPath: damaged))
        let stopped = try db.createIndex(name: "stopped", dimension: 384, metric: .cosine, options: options)
        #expect(throws: LodestoneError.self) {
            _ = try stopped.upsertVectors(fromFile: damaged, batchSize: 250, commit: .persist)
        }
        #expect(stopped.count == 1_000 && !stopped.store.hasUnlogged && stopped.store.logBytes == 0)
        try stopped.close(persist: false)
        #expect(try Database(path: dir).index("stopped").count == 1_000)
    }

    @Test("bad files: refused before storing, or stopped at the damaged row's batch with the earlier batches kept")
    func badFiles() throws {
        let dir = Fixtures.temporaryDirectory("bulk-bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try Database(path: dir)
        let index = try db.createIndex(name: "t", dimension: 384, metric: .cosine)
        let data = Fixtures.realData.base
        let rows = 1_200
        let part = Matrix(rows: rows, dimension: 384, values: Array(data.values.prefix(rows * 384)))
        let good = dir + "/good.fvecs"
        try VectorFiles.writeFvecs(part, to: good)
        let metaLines = try String(contentsOfFile: Self.metadata, encoding: .utf8).split(separator: "\n")
            .prefix(rows).map(String.init)
        func write(_ lines: [String], _ name: String) throws -> String {
            let path = dir + "/" + name
            try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        func failure(_ body: () throws -> Void) -> LodestoneError? {
            do { try body() } catch let error as LodestoneError { return error } catch { return nil }
            return nil
        }

        // Metadata: too few lines, a line that is not JSON, an id that is
        // not a string: refused before anything is stored.
        let short = try write(Array(metaLines.dropLast()), "short.jsonl")
        guard case .malformedFile? = failure({ _ = try index.upsertVectors(fromFile: good, metadata: short) }) else {
            Issue.record("a short metadata file is refused"); return
        }
        var broken = metaLines
        broken[4] = "{\"id\": \"x\", "
        let notJSON = try write(broken, "broken.jsonl")
        let e1 = failure { _ = try index.upsertVectors(fromFile: good, metadata: notJSON, batchSize: 2) }
        guard case let .malformedLine(_, line, _)? = e1, line == 5 else { Issue.record("\(String(describing: e1))"); return }
        broken = metaLines
        broken[7] = #"{"id": true}"#
        let badID = try write(broken, "bad-id.jsonl")
        let e2 = failure { _ = try index.upsertVectors(fromFile: good, metadata: badID) }
        guard case let .malformedLine(_, line2, _)? = e2, line2 == 8 else { Issue.record("\(String(describing: e2))"); return }
        #expect(index.count == 0)

        // Vectors: a truncated file and another dimension are refused.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        let truncated = dir + "/truncated.fvecs"
        try bytes.prefix(bytes.count - 10).write(to: URL(fileURLWithPath: truncated))
        guard case .malformedFile? = failure({ _ = try index.upsertVectors(fromFile: truncated) }) else {
            Issue.record("a truncated file is refused"); return
        }
        let small = dir + "/small.fvecs"
        try VectorFiles.writeFvecs(Matrix(rows: 2, dimension: 3, values: [1, 2, 3, 4, 5, 6]), to: small)
        guard case .dimensionMismatch? = failure({ _ = try index.upsertVectors(fromFile: small) }) else {
            Issue.record("another dimension is refused"); return
        }
        #expect(index.count == 0)

        // Row 1,000 declares another dimension: batches 0..<1,000 stay.
        var damaged = bytes
        let at = 1_000 * (4 + 4 * 384)
        damaged.replaceSubrange(at..<at + 4, with: [9, 0, 0, 0])
        let damagedPath = dir + "/damaged.fvecs"
        try damaged.write(to: URL(fileURLWithPath: damagedPath))
        let e3 = failure { _ = try index.upsertVectors(fromFile: damagedPath, batchSize: 250) }
        guard case let .malformedFile(_, reason)? = e3, reason.contains("record 1000") else {
            Issue.record("\(String(describing: e3))"); return
        }
        #expect(index.count == 1_000)

        // A non-finite component in row 610: the batch holding it stores
        // nothing, the ones before stay.
        var values = part.values
        values[610 * 384 + 5] = .nan
        let nanPath = dir + "/nan.fvecs"
        try VectorFiles.writeFvecs(Matrix(rows: rows, dimension: 384, values: values), to: nanPath)
        let other = try db.createIndex(name: "u", dimension: 384, metric: .cosine)
        #expect(failure { _ = try other.upsertVectors(fromFile: nanPath, batchSize: 300) } != nil)
        #expect(other.count == 600)

        // Stopped after two batches.
        var asked = 0
        let third = try db.createIndex(name: "v", dimension: 384, metric: .cosine)
        let stopped = try third.upsertVectors(fromFile: good, batchSize: 100, shouldStop: {
            asked += 1
            return asked > 2
        })
        #expect(stopped.stopped && stopped.records == 200 && third.count == 200)
        guard case .invalidArgument? = failure({ _ = try third.upsertVectors(fromFile: good, batchSize: 0) }) else {
            Issue.record("batch size 0 is refused"); return
        }
    }
}
