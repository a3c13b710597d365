import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

/// The write-ahead log's record codec (`LogRecord`): what the live path
/// writes, replay reads back; damaged payloads are corruption, never a
/// caller's mistake and never a crash.
@Suite("Log records: one codec for writing and replay")
struct LogRecordTests {
    static let d = 384

    /// Real records: ids, vectors and metadata from the data set.
    static var samples: [LogRecord] {
        let records = Array(Fixtures.realRecords.prefix(5))
        return [
            .upsert(namespace: "ns-é", slots: [7, 0, 3, 9, 1], ids: records.map(\.id),
                    rows: records.flatMap(\.values), metadata: records.map { $0.metadata ?? [:] }),
            .upsert(namespace: "", slots: [2], ids: ["x"], rows: records[1].values, metadata: [[:]]),
            .upsert(namespace: "", slots: [], ids: [], rows: [], metadata: []),
            .delete(slots: [4, 2, 4_000_000_000]),
            .delete(slots: []),
            .setMetadata(slots: [3, 1], metadata: [records[0].metadata ?? [:], ["tags": .strings(["a", "b"]), "n": .number(2.5)]]),
            .keyedUpsert(keys: [UInt64.max, 0, 42], rows: records.prefix(3).flatMap(\.values)),
            .keyedRemove(keys: [1, UInt64.max]),
            .keyedUpsert(keys: [], rows: []),  // an empty batch still names the index's dimension
        ]
    }

    static func layout(_ r: LogRecord) -> LogRecord.Layout {
        switch r {
        case .keyedUpsert, .keyedRemove: return .keyed
        default: return .records
        }
    }

    @Test("every kind of record reads back as written")
    func roundTrip() throws {
        for record in Self.samples {
            let bytes = record.encoded(dimension: Self.d)
            let back = try LogRecord.decode(bytes, layout: Self.layout(record), dimension: Self.d)
            #expect(back == record)
        }
    }

    @Test("the bytes are the format's (FORMAT.md): logs written before the codec existed replay unchanged")
    func layoutIsTheFormats() throws {
        // Built by hand from FORMAT.md's description, not by the codec.
        var w = ByteWriter()
        w.raw([1]); w.u32(2); w.raw(Array("ns".utf8)); w.u32(1); w.u32(2)
        w.u32(5); w.u32(1); w.raw(Array("a".utf8)); w.u32(Float(1.5).bitPattern); w.u32(Float(-2).bitPattern)
        MetadataCodec.encode(["k": .string("v")], into: &w)
        #expect(LogRecord.upsert(namespace: "ns", slots: [5], ids: ["a"], rows: [1.5, -2],
                                 metadata: [["k": .string("v")]]).encoded(dimension: 2) == w.bytes)
        var k = ByteWriter()
        k.raw([1]); k.u32(1); k.u32(2); k.u64(9); k.u32(Float(3).bitPattern); k.u32(Float(4).bitPattern)
        #expect(LogRecord.keyedUpsert(keys: [9], rows: [3, 4]).encoded(dimension: 2) == k.bytes)
        #expect(try LogRecord.decode(k.bytes, layout: .keyed, dimension: 2) == .keyedUpsert(keys: [9], rows: [3, 4]))
        var del = ByteWriter()
        del.raw([2]); del.u32(2); del.u32(3); del.u32(8)
        #expect(LogRecord.delete(slots: [3, 8]).encoded(dimension: 2) == del.bytes)
    }

    /// A damaged payload gives a corrupt-record error (section "log record").
    static func expectCorrupt(_ bytes: [UInt8], layout: LogRecord.Layout, dimension: Int = d,
                              _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let r = try LogRecord.decode(bytes, layout: layout, dimension: dimension)
            Issue.record("decoded \(bytes.count) damaged bytes as \(r)", sourceLocation: sourceLocation)
        } catch let .corruptSegment(_, section, _) where section == "log record" {
        } catch {
            Issue.record("\(comment?.rawValue ?? ""): not a corrupt-record error: \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("every truncation, trailing bytes, an unknown operation, a huge count or another dimension is a corrupt record")
    func damage() {
        for record in Self.samples {
            let bytes = record.encoded(dimension: Self.d)
            for n in 0..<bytes.count where n % 97 == 0 || n < 64 || n > bytes.count - 64 {
                Self.expectCorrupt(Array(bytes.prefix(n)), layout: Self.layout(record), "prefix \(n) of \(record)")
            }
            Self.expectCorrupt(bytes + [0], layout: Self.layout(record), "a byte after \(record)")
        }
        Self.expectCorrupt([9, 0, 0, 0, 0], layout: .records)
        Self.expectCorrupt([3, 0, 0, 0, 0], layout: .keyed)  // metadata is an Index's operation only
        Self.expectCorrupt([2, 0xff, 0xff, 0xff, 0xff], layout: .records)
        Self.expectCorrupt([2, 0xff, 0xff, 0xff, 0xff], layout: .keyed)
        Self.expectCorrupt(LogRecord.keyedUpsert(keys: [1], rows: [1, 2, 3]).encoded(dimension: 3), layout: .keyed, dimension: 4)
        let upsert = Self.samples[0].encoded(dimension: Self.d)
        Self.expectCorrupt(upsert, layout: .records, dimension: 383)
    }

    @Test("an index whose log holds a record that cannot be one fails to open with an error naming the log and the record")
    func corruptRecordInIndexLog() throws {
        let dir = Fixtures.temporaryDirectory("log-record")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let db = try Database(path: dir)
            let index = try db.createIndex(name: "docs", dimension: Self.d, metric: .cosine)
            try index.upsert(Array(Fixtures.realRecords.prefix(3)))
            try db.close(persist: false)
        }
        // A well-framed record (length, CRC) whose payload is a DurableIndex's.
        let logPath = dir + "/docs/wal-1.log"
        do {
            let log = try WriteAheadLog(path: logPath, durability: .synchronous)
            try log.append(LogRecord.keyedRemove(keys: [1]).encoded(dimension: Self.d))
        }
        do {
            _ = try Database(path: dir).index("docs")
            Issue.record("opened an index whose log holds a foreign record")
        } catch let .corruptSegment(path, section, reason) {
            #expect(path == logPath && section == "log record 1", "\(path) \(section) \(reason)")
        }
    }

    @Test("a DurableIndex that logged an empty batch reopens")
    func emptyBatchReopens() throws {
        let dir = Fixtures.temporaryDirectory("log-empty")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let index = try DurableIndex.create(directory: dir, dimension: 4, metric: .euclidean)
            try index.upsert([1, 2, 3, 4], keys: [7])
            try index.upsert([], keys: [])
        }
        let reopened = try DurableIndex.open(directory: dir)
        #expect(reopened.index.count == 1 && reopened.replayedRecords == 2)
    }
}
