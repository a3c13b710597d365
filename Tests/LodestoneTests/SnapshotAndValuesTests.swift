import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

@Suite("Values as upserted; snapshots and restores")
struct SnapshotAndValuesTests {
    /// Real vectors scaled by a different factor each, so a cosine index's
    /// unit vectors differ from what was given.
    static func scaledRecords(_ n: Int) -> [Record] {
        Fixtures.realRecords.prefix(n).enumerated().map { i, r in
            Record(id: r.id, values: r.values.map { $0 * Float(0.5 + Double(i % 7)) }, metadata: r.metadata)
        }
    }

    static func expectSameValues(_ got: [Float]?, _ want: [Float], _ label: String) {
        guard let got else { Issue.record("\(label): no values"); return }
        #expect(got.count == want.count)
        let worst = zip(got, want).map { abs(Double($0) - Double($1)) / max(1e-6, abs(Double($1))) }.max() ?? 0
        #expect(worst < 1e-5, "\(label): relative error \(worst)")
    }

    @Test("a cosine index gives back the values as upserted (fetch, query, update, after replay and persist); other metrics store them as given")
    func valuesAsUpserted() throws {
        let dir = Fixtures.temporaryDirectory("values")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = Self.scaledRecords(300)
        for metric in [Metric.cosine, .euclidean, .dotProduct] {
            let name = "m-\(metric.rawValue)"
            let db = try Database(path: dir)
            let index = try db.createIndex(name: name, dimension: 384, metric: metric)
            try index.upsert(records)
            try index.update(id: records[1].id, setMetadata: ["note": "kept"])  // values untouched
            let fetched = try index.fetch(ids: records.map(\.id))
            for r in records.prefix(20) { Self.expectSameValues(fetched[r.id]?.values, r.values, "\(metric) fetch") }
            let top = try index.query(vector: records[3].values, topK: 1, includeValues: true).matches[0]
            #expect(top.id == records[3].id)
            Self.expectSameValues(top.values, records[3].values, "\(metric) query")
            try db.close(persist: false)
            let replayed = try db.index(name)  // reopened: the log replayed
            Self.expectSameValues(try replayed.fetch(ids: [records[1].id])[records[1].id]?.values, records[1].values,
                                  "\(metric) after replay")
            try db.close()  // persists
            let reopened = try db.index(name)  // from the segment
            for r in records.prefix(20) {
                Self.expectSameValues(try reopened.fetch(ids: [r.id])[r.id]?.values, r.values, "\(metric) after persist")
            }
            try db.close()
        }
    }

    @Test("a snapshot restores as a new index equal to the source at snapshot time, while the source keeps changing")
    func snapshotRestore() throws {
        let dir = Fixtures.temporaryDirectory("snapshot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = Self.scaledRecords(1_000)
        let db = try Database(path: dir)
        let source = try db.createIndex(name: "source", dimension: 384, metric: .cosine)
        try source.upsert(Array(records.prefix(600)))
        try source.persist()
        try source.upsert(Array(records[600..<800]), namespace: "b")  // in the log only
        try source.snapshot(to: dir + "/snap")
        try source.upsert(Array(records[800...]))  // after the snapshot: not in it
        _ = try source.delete(ids: [records[0].id])

        let restored = try db.restoreIndex(name: "restored", from: dir + "/snap")
        #expect(restored.count == 800)
        #expect(try restored.describeStats().namespaces == ["": 600, "b": 200])
        #expect(try restored.fetch(ids: [records[900].id]).isEmpty)
        Self.expectSameValues(try restored.fetch(ids: [records[0].id])[records[0].id]?.values, records[0].values, "restored")
        for r in records.prefix(50) {
            let a = try restored.query(vector: r.values, topK: 10).matches.map(\.id)
            #expect(a.first == r.id)
        }
        #expect(source.count == 999)
        // The snapshot is untouched by the restore and by writes to either index.
        try restored.upsert([Record(id: "new", values: records[5].values)])
        let again = try db.restoreIndex(name: "again", from: dir + "/snap")
        #expect(again.count == 800)
        // Refusals: an existing name, a directory that is not a snapshot, a snapshot into an index's directory.
        #expect(throws: LodestoneError.indexAlreadyExists(name: "again")) {
            try db.restoreIndex(name: "again", from: dir + "/snap")
        }
        #expect(throws: LodestoneError.self) { try db.restoreIndex(name: "nothing", from: dir + "/missing") }
        #expect(throws: LodestoneError.self) { try source.snapshot(to: dir + "/again") }
        #expect(again.count == 800)
    }
}
