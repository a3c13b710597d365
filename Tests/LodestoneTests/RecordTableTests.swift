import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

/// `RecordTable` (ids, namespaces and metadata by slot) against a plain
/// dictionary model, through random writes on real metadata: in memory, as
/// read back from a segment, with changes layered over that segment, and
/// with those changes carried by a delta.
@Suite("Record table: ids, namespaces and metadata by slot")
struct RecordTableTests {
    struct Stored: Equatable {
        var namespace: String
        var id: String
        var metadata: Metadata
    }

    /// What the table must hold: slot -> record.
    typealias Model = [UInt32: Stored]

    static let namespaces = ["", "docs", "ns-é"]

    /// Random upserts (a present id keeps its slot, as `Index` does), deletes
    /// and metadata changes, applied to the table and the model alike.
    static func write(_ table: RecordTable, _ model: inout Model, ops: Int, rng: inout Fixtures.SeededGenerator) {
        let pool = Array(Fixtures.realMetadata.prefix(400))
        for _ in 0..<ops {
            let roll = Int.random(in: 0..<10, using: &rng)
            if roll < 6 || model.isEmpty {
                let source = pool.randomElement(using: &rng)!
                let namespace = namespaces.randomElement(using: &rng)!
                let slot = table.slot(id: source.id, namespace: namespace) ?? table.slotsForNewRecords(1)[0]
                table.set(slot: slot, id: source.id, namespace: namespace, metadata: source.metadata)
                model[slot] = Stored(namespace: namespace, id: source.id, metadata: source.metadata)
            } else if roll < 8 {
                let slot = model.keys.sorted().randomElement(using: &rng)!
                table.clear(slot: slot)
                model[slot] = nil
            } else {
                let slot = model.keys.sorted().randomElement(using: &rng)!
                let metadata = pool.randomElement(using: &rng)!.metadata
                table.setMetadata(metadata, slot: slot)
                model[slot]!.metadata = metadata
            }
        }
    }

    static func check(_ table: RecordTable, _ model: Model, _ stage: String,
                      sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(table.count == model.count, "\(stage): count", sourceLocation: sourceLocation)
        var counts: [String: Int] = [:]
        for r in model.values { counts[r.namespace, default: 0] += 1 }
        #expect(table.namespaceCountsByName == counts, "\(stage): namespace counts", sourceLocation: sourceLocation)
        for slot in 0..<UInt32(max(table.capacity, 1)) {
            let expected = model[slot]
            #expect(table.isInUse(slot) == (expected != nil), "\(stage): slot \(slot) in use", sourceLocation: sourceLocation)
            #expect(table.id(ofSlot: Int(slot)) == expected?.id, "\(stage): slot \(slot) id", sourceLocation: sourceLocation)
            let metadata = table.metadata.metadata(slot: Int(slot))
            #expect((metadata ?? [:]) == (expected?.metadata ?? [:]), "\(stage): slot \(slot) metadata",
                    sourceLocation: sourceLocation)
        }
        for (slot, r) in model {
            #expect(table.slot(id: r.id, namespace: r.namespace) == slot, "\(stage): \(r.id) in \"\(r.namespace)\"",
                    sourceLocation: sourceLocation)
        }
        for ns in namespaces {
            let expected = model.filter { $0.value.namespace == ns }.sorted { $0.key < $1.key }
            #expect(table.slots(namespace: ns) == expected.map(\.key), "\(stage): slots of \"\(ns)\"",
                    sourceLocation: sourceLocation)
            #expect(table.ids(namespace: ns) == expected.map(\.value.id), "\(stage): ids of \"\(ns)\"",
                    sourceLocation: sourceLocation)
        }
        // An id deleted from every namespace is found in none.
        #expect(table.slot(id: "never-stored", namespace: "docs") == nil, sourceLocation: sourceLocation)
        let fresh = table.slotsForNewRecords(5)
        #expect(Set(fresh).count == 5 && fresh.allSatisfy { model[$0] == nil }, "\(stage): new slots \(fresh) are free",
                sourceLocation: sourceLocation)
        // The metadata index answers filters as the model does.
        let filter = Filter.field("year", .gte(2025))
        let expected = model.filter { filter.matches($0.value.metadata) }.keys.map(Int.init).sorted()
        #expect(table.metadata.evaluate(filter).slots == expected, "\(stage): filter", sourceLocation: sourceLocation)
    }

    /// Writes `sections` as a segment file and maps it.
    static func segment(_ sections: [PendingSection], at path: String) throws -> MappedSegment {
        try SegmentWriter.write(path: path, indexKind: 0, embeddingModel: "", sections: sections)
        return try MappedSegment(path: path)
    }

    @Test("a delta whose record moved to a lower slot (deleted, then stored again in a freed slot) keeps its id")
    func movedRecordThroughDelta() throws {
        let dir = Fixtures.temporaryDirectory("record-table-moved")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fingerprint = VectorFingerprint(dimension: 4)
        let table = RecordTable()
        for (slot, id) in ["a", "b", "c", "x", "d", "y"].enumerated() {
            table.set(slot: UInt32(slot), id: id, namespace: "", metadata: ["n": .number(Double(slot))])
        }
        let base = try RecordBase(segment: try Self.segment(table.sections(fingerprint: fingerprint), at: dir + "/segment"),
                                  dimension: 4)
        let live = RecordTable(base: base)
        live.clear(slot: 1)  // b
        live.clear(slot: 3)  // x
        // x again, in b's freed slot (below its old one); y overwritten in place.
        live.set(slot: 1, id: "x", namespace: "", metadata: ["n": .number(10)])
        live.set(slot: 5, id: "y", namespace: "", metadata: ["n": .number(11)])
        #expect(live.slot(id: "x", namespace: "") == 1 && live.slot(id: "b", namespace: "") == nil)
        let delta = try Self.segment([live.changesSection(fingerprint: fingerprint)], at: dir + "/delta")
        let reopened = RecordTable(base: base)
        _ = try reopened.applyChanges(try delta.bytes(SectionKind.recordsChanges), dimension: 4, path: delta.path)
        #expect(reopened.slot(id: "x", namespace: "") == 1, "the moved record's id must still find it")
        #expect(reopened.slot(id: "b", namespace: "") == nil && reopened.slot(id: "y", namespace: "") == 5)
        #expect(reopened.ids(namespace: "") == ["a", "x", "c", "d", "y"] && reopened.count == 5)
    }

    @Test("through the API: a record deleted and stored again in a lower freed slot is found by id after a delta and reopen")
    func movedRecordThroughIndexDelta() throws {
        let dir = Fixtures.temporaryDirectory("record-table-index")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = Array(Fixtures.realRecords.prefix(300))
        do {
            let db = try Database(path: dir)
            let index = try db.createIndex(name: "d", dimension: 384, metric: .cosine)
            try index.upsert(records)
            try index.persist()  // the segment
            // Slots are reused most recently freed first: deleting x and then
            // b puts x back in b's slot, below its own.
            let x = records[200], b = records[10]
            try index.delete(ids: [x.id])
            try index.delete(ids: [b.id])
            try index.upsert([x])
            try index.persist()  // a delta
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/d").contains { $0.hasPrefix("delta-") })
            try db.close(persist: false)
        }
        let index = try Database(path: dir).index("d")
        let x = records[200]
        #expect(try index.fetch(ids: [x.id])[x.id]?.values == x.values, "the moved record is found by its id")
        try index.upsert([x])  // must replace it, not add a second record with the same id
        #expect(index.count == records.count - 1)
        #expect(try index.listIDs(limit: 1_000).ids.filter { $0 == x.id }.count == 1)
    }

    @Test("random writes on real metadata match a model: in memory, read from a segment, changed over it, and through a delta")
    func modelCheck() throws {
        let dir = Fixtures.temporaryDirectory("record-table")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = Fixtures.SeededGenerator(seed: 31)
        var model: Model = [:]
        let fingerprint = VectorFingerprint(dimension: 4)

        let table = RecordTable()
        Self.write(table, &model, ops: 900, rng: &rng)
        Self.check(table, model, "in memory")

        let base = try RecordBase(segment: try Self.segment(table.sections(fingerprint: fingerprint), at: dir + "/segment"),
                                  dimension: 4)
        let reopened = RecordTable(base: base)
        Self.check(reopened, model, "read from the segment")

        // Overwrites, deletes (tombstones over the segment) and reuse of
        // freed slots, layered over the mapped table.
        Self.write(reopened, &model, ops: 500, rng: &rng)
        Self.check(reopened, model, "changed over the segment")

        let delta = try Self.segment([reopened.changesSection(fingerprint: fingerprint)], at: dir + "/delta")
        let replayed = RecordTable(base: base)
        _ = try replayed.applyChanges(try delta.bytes(SectionKind.recordsChanges), dimension: 4, path: delta.path)
        Self.check(replayed, model, "the segment plus the delta")
    }
}
