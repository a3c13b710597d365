import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

/// Incremental persistence (FORMAT.md, "Deltas"): a small change persists as
/// a delta beside the untouched segment, and reopening gives what the index
/// gave before it closed.
@Suite("Deltas: small changes persist without rewriting the segment")
struct DeltaTests {
    static func files(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    }

    static func inode(_ path: String) -> UInt64 {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_ino) : 0
    }

    static func size(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? -1
    }

    /// What an index answers: queries (ids, scores, metadata), a filtered
    /// query, fetched values and the namespace counts.
    struct Answers: Equatable {
        var queries: [[String]] = []
        var scores: [[Float]] = []
        var filtered: [[String]] = []
        var fetched: [String: [Float]] = [:]
        var metadata: [String: String] = [:]
        var namespaces: [String: Int] = [:]
    }

    static func answers(_ index: Index, ids: [String]) throws -> Answers {
        var a = Answers()
        let q = Fixtures.realData.queries
        for i in 0..<min(40, q.rows) {
            let r = try index.query(vector: q.row(i), topK: 10, includeMetadata: true, ef: 96)
            a.queries.append(r.matches.map(\.id))
            a.scores.append(r.matches.map(\.score))
            let f = try index.query(vector: q.row(i), topK: 5, filter: .field("changed", .eq(.bool(true))), ef: 96)
            a.filtered.append(f.matches.map(\.id))
        }
        for (id, r) in try index.fetch(ids: ids) {
            a.fetched[id] = r.values
            a.metadata[id] = MetadataCodec.json(r.metadata ?? [:])
        }
        a.namespaces = try index.describeStats().namespaces
        return a
    }

    /// A round of changes: new records (from `extra`), replaced vectors and
    /// new metadata and deletions (of `base` records), and records in another
    /// namespace: 40 records, so that two rounds stay under a quarter of the
    /// segment even of the 2,000-vector sample. Returns the ids touched.
    static func change(_ index: Index, round: Int, base: [Record], extra: [Record]) throws -> [String] {
        let start = round * 50
        let fresh = Array(extra[start..<(start + 20)])
        try index.upsert(fresh.map { Record(id: $0.id, values: $0.values, metadata: ["changed": true]) })
        let replaced = (0..<5).map { base[$0 * 7 + round] }
        try index.upsert(replaced.enumerated().map { i, r in
            Record(id: r.id, values: extra[(i * 37 + 61) % extra.count].values, metadata: ["changed": true])
        })
        let renoted = (0..<5).map { base[300 + round * 10 + $0].id }
        for id in renoted { try index.update(id: id, setMetadata: ["note": .string("round \(round)")]) }
        let deleted = (0..<5).map { base[400 + round * 30 + $0].id }
        _ = try index.delete(ids: deleted)
        try index.upsert(Array(extra[(start + 20)..<(start + 25)]), namespace: "b")
        return fresh.map(\.id) + replaced.map(\.id) + renoted + deleted
    }

    @Test("small changes persist as a delta (the segment untouched), cumulative, merged on request; reopening gives the same answers (neighbour and compact codes included)",
          arguments: [HNSWParameters.Traversal.exact, .quantized, .compact])
    func deltaRoundTrip(traversal: HNSWParameters.Traversal) throws {
        let dir = Fixtures.temporaryDirectory("delta-\(traversal)")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let all = Fixtures.realRecords
        let baseCount = min(all.count, 6_000) - 100
        var db = try Database(path: dir)
        var index = try db.createIndex(name: "d", dimension: 384, metric: .cosine,
                                       options: IndexOptions(hnsw: HNSWParameters(traversal: traversal)))
        // A reopened quantized or compact index uses the stored codes: none encoded.
        func codesStored() -> Bool {
            switch traversal {
            case .exact: return true
            case .quantized: return index.engine.hnsw!.neighbourCodes!.isReady
            case .compact: return index.engine.hnsw!.compactCodes!.isReady && index.engine.hnsw!.compactCodes!.inBase
            }
        }
        try index.upsert(Array(all.prefix(baseCount)), threads: 2)
        try index.persist()
        let indexDir = dir + "/d"
        let segment = Self.files(indexDir).first { $0.hasPrefix("segment-") }!
        let segmentInode = Self.inode(indexDir + "/" + segment)
        #expect(!Self.files(indexDir).contains { $0.hasPrefix("delta-") })
        let extra = Array(all[baseCount...])
        let base = Array(all.prefix(baseCount))
        var touched = try Self.change(index, round: 0, base: base, extra: extra)
        touched += extra.prefix(5).map(\.id)
        try index.persist()
        var delta = Self.files(indexDir).first { $0.hasPrefix("delta-") }
        #expect(delta != nil, "\(Self.files(indexDir))")
        #expect(Self.files(indexDir).contains(segment) && Self.inode(indexDir + "/" + segment) == segmentInode,
                "the segment is not rewritten")
        let segmentBytes = Self.size(indexDir + "/" + segment)
        #expect(Self.size(indexDir + "/" + delta!) * 4 < segmentBytes, "a delta is a fraction of the segment")
        var before = try Self.answers(index, ids: touched)
        try db.close()
        db = try Database(path: dir)
        index = try db.index("d")
        #expect(index.engine.hnsw!.nodesLinked == 0, "reopening re-inserts nothing")
        #expect(index.engine.hnsw!.parameters.traversal == traversal)
        #expect(codesStored())
        #expect(try Self.answers(index, ids: touched) == before)

        // A second round: the new delta holds both rounds' changes and
        // replaces the first.
        touched += try Self.change(index, round: 1, base: base, extra: extra)
        try index.persist()
        let second = Self.files(indexDir).first { $0.hasPrefix("delta-") }
        if traversal != .quantized || second != nil {
            #expect(second != nil && second != delta && !Self.files(indexDir).contains(delta!))
            #expect(Self.inode(indexDir + "/" + segment) == segmentInode)
        } else {
            // Each change rewrites the blocks of the nodes whose links it
            // touched (a few dozen each): on the 2,000-vector sample two
            // rounds pass a quarter of the segment, so persist writes a
            // new segment instead, as it should.
            #expect(!Self.files(indexDir).contains(segment) && Self.files(indexDir).count(where: { $0.hasPrefix("segment-") }) == 1)
        }
        delta = second
        before = try Self.answers(index, ids: touched)
        try db.close()
        db = try Database(path: dir)
        index = try db.index("d")
        #expect(codesStored())
        #expect(try Self.answers(index, ids: touched) == before)
        if traversal == .quantized { try QuantizedTraversalTests.checkBlocksMirrorLinks(index.engine.hnsw!) }
        // Written again as a delta after reopening (the marks survive it).
        try index.update(id: all[0].id, setMetadata: ["note": "after reopen"])
        try index.persist()
        #expect(Self.files(indexDir).filter { $0.hasPrefix("delta-") }.count == 1)
        before = try Self.answers(index, ids: touched + [all[0].id])

        // A merge writes one new segment and drops the delta.
        try index.persist(merge: true)
        #expect(!Self.files(indexDir).contains { $0.hasPrefix("delta-") })
        #expect(!Self.files(indexDir).contains(segment))
        try db.close()
        db = try Database(path: dir)
        index = try db.index("d")
        #expect(try Self.answers(index, ids: touched + [all[0].id]) == before)
        try db.close()
    }

    @Test("a delta past a quarter of the segment, or after a compaction, is a new segment; a flat index always writes segments")
    func whenSegments() throws {
        let dir = Fixtures.temporaryDirectory("delta-when")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let all = Array(Fixtures.realRecords.prefix(2_000))
        let db = try Database(path: dir)
        let graph = try db.createIndex(name: "g", dimension: 384, metric: .cosine)
        try graph.upsert(Array(all.prefix(1_300)), threads: 2)
        try graph.persist()
        // Half the index again is more than a quarter of the segment.
        try graph.upsert(Array(all[1_300...]), threads: 2)
        try graph.persist()
        #expect(!Self.files(dir + "/g").contains { $0.hasPrefix("delta-") })
        // Removing 1,100 (over a fifth, and over 1,024) compacts (renumbers)
        // the segment; deltas wait for a reopen.
        _ = try graph.delete(ids: all.prefix(1_100).map(\.id))
        try graph.persist()
        try graph.upsert([all[0]])
        try graph.persist()
        #expect(!Self.files(dir + "/g").contains { $0.hasPrefix("delta-") })
        try db.close()
        let reopened = try Database(path: dir).index("g")
        try reopened.upsert([all[1]])
        try reopened.persist()
        #expect(Self.files(dir + "/g").contains { $0.hasPrefix("delta-") })
        #expect(try reopened.describeStats().totalRecordCount == 902)

        let flat = try db.createIndex(name: "f", dimension: 384, metric: .cosine,
                                      options: IndexOptions(kind: .flat))
        try flat.upsert(Array(all.prefix(1_000)))
        try flat.persist()
        try flat.upsert([all[1_200]])
        try flat.persist()
        #expect(!Self.files(dir + "/f").contains { $0.hasPrefix("delta-") })
    }

    @Test("a damaged, truncated or foreign delta is a typed error naming it; the files stay as they were")
    func damagedDelta() throws {
        let dir = Fixtures.temporaryDirectory("delta-damaged")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let all = Array(Fixtures.realRecords.prefix(1_200))
        do {
            let db = try Database(path: dir)
            for name in ["a", "b"] {
                let index = try db.createIndex(name: name, dimension: 384, metric: .cosine)
                try index.upsert(Array(all.prefix(name == "a" ? 1_000 : 900)), threads: 2)
                try index.persist()
                try index.upsert(Array(all[1_000..<1_050]))
                try index.persist()
            }
            try db.close()
        }
        let indexDir = dir + "/a"
        let delta = indexDir + "/" + Self.files(indexDir).first { $0.hasPrefix("delta-") }!
        let good = try Data(contentsOf: URL(fileURLWithPath: delta))
        func expectRefused(_ label: String) {
            do {
                _ = try Database(path: dir).index("a")
                Issue.record("\(label): opened")
            } catch {
                guard case let .corruptSegment(path, _, _) = error else { Issue.record("\(label): \(error)"); return }
                #expect(path == delta, "\(label): \(error)")
            }
            #expect(Self.files(indexDir).contains((delta as NSString).lastPathComponent), "\(label): the delta is kept")
        }
        var bad = good
        bad[4096 * 3 + 100] ^= 0x40  // inside a section
        try bad.write(to: URL(fileURLWithPath: delta))
        expectRefused("flipped bit")
        try good.prefix(good.count - 4096).write(to: URL(fileURLWithPath: delta))
        expectRefused("truncated")
        // Another index's delta (its counts and records do not fit).
        let other = dir + "/b/" + Self.files(dir + "/b").first { $0.hasPrefix("delta-") }!
        try Data(contentsOf: URL(fileURLWithPath: other)).write(to: URL(fileURLWithPath: delta))
        expectRefused("foreign")
        try good.write(to: URL(fileURLWithPath: delta))
        let index = try Database(path: dir).index("a")
        #expect(try index.describeStats().totalRecordCount == 1_050)
    }
}
