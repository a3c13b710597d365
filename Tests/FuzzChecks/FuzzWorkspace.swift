import Foundation
import Lodestone

/// Where fuzz checks work: a scratch directory of their own, and a small
/// golden database (a flat and an HNSW index over 8-d vectors with metadata,
/// persisted, plus one record only in the log) that the file targets damage
/// copies of. One workspace serves one thread at a time.
public final class FuzzWorkspace: @unchecked Sendable {
    /// The scratch directory (created; the owner removes it).
    public let scratch: String
    /// The golden database's directory, built by ``init(scratch:)``.
    public let golden: String
    /// The metadata index over ``filterRecords`` that the filter target checks.
    let filterIndex: MetadataIndex

    /// A workspace in `scratch`, building the golden database there.
    public init(scratch: String) {
        self.scratch = scratch
        try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        golden = scratch + "/golden"
        filterIndex = MetadataIndex()
        for (slot, m) in Self.filterRecords.enumerated() { filterIndex.set(m, slot: slot) }
        if !FileManager.default.fileExists(atPath: golden + "/graph/MANIFEST") { buildGolden() }
    }

    /// Thirty records whose metadata mixes numbers, strings, booleans, lists
    /// and missing fields: what the filter target evaluates.
    static let filterRecords: [Metadata] = (0..<30).map { i in
        var m: Metadata = ["g": .number(Double(i % 7)), "t": .string("x\(i % 4)")]
        if i % 3 == 0 { m["b"] = .bool(i % 2 == 0) }
        if i % 5 == 0 { m["l"] = .strings(["a", "b\(i % 3)"]) }
        return m
    }

    private func buildGolden() {
        let db = try! Database(path: golden)
        for (name, kind) in [("flat", IndexKind.flat), ("graph", IndexKind.hnsw)] {
            let index = try! db.createIndex(name: name, dimension: 8, metric: .euclidean,
                                            options: IndexOptions(kind: kind, hnsw: HNSWParameters(m: 4, efConstruction: 16)))
            var records: [Record] = []
            for i in 0..<40 {
                var values: [Float] = []
                for d in 0..<8 { values.append(Float((d * 7 + i * 13) % 17) - 8) }
                let metadata: Metadata = ["g": .number(Double(i % 5)), "t": .string("x\(i % 3)")]
                records.append(Record(id: "r\(i)", values: values, metadata: metadata))
            }
            try! index.upsert(records)
            try! index.persist()
            try! index.upsert([Record(id: "tail", values: [Float](repeating: 1, count: 8))])
        }
    }

    /// Writes `bytes` to `path`.
    public func write(_ bytes: [UInt8], to path: String) {
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }

    /// The bytes of the golden index's file whose name starts with `prefix`.
    public func goldenFile(_ index: String, _ prefix: String) -> [UInt8] {
        let dir = golden + "/" + index
        let name = (try? FileManager.default.contentsOfDirectory(atPath: dir))?.first { $0.hasPrefix(prefix) } ?? prefix
        return (try? Array(Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)))) ?? []
    }

    /// The golden flat index exported as gzip'd JSON Lines.
    public func goldenExport() -> [UInt8] {
        let path = scratch + "/seed.jsonl.gz"
        _ = try? Database(path: golden).index("flat").export(to: path)
        return (try? Array(Data(contentsOf: URL(fileURLWithPath: path)))) ?? []
    }

    /// A copy of the golden index `index` (in `scratch/case`), with the file
    /// whose name starts with `prefix` replaced by `bytes`; returns the copy's
    /// database directory.
    public func goldenCopy(_ index: String, replacing prefix: String, with bytes: [UInt8]) -> String {
        let target = scratch + "/case"
        let fm = FileManager.default
        try? fm.removeItem(atPath: target)
        try? fm.createDirectory(atPath: target + "/" + index, withIntermediateDirectories: true)
        for name in (try? fm.contentsOfDirectory(atPath: golden + "/" + index)) ?? [] where name != "LOCK" {
            if name.hasPrefix(prefix) {
                write(bytes, to: target + "/" + index + "/" + name)
            } else {
                try? fm.copyItem(atPath: golden + "/" + index + "/" + name, toPath: target + "/" + index + "/" + name)
            }
        }
        return target
    }
}
