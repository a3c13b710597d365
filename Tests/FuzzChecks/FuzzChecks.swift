// The bodies of Lodestone's fuzz targets, shared by the libFuzzer executables
// in Fuzz/ (which reach this folder through the symlink
// Fuzz/Sources/FuzzChecks) and by the normal test suite, which replays the
// committed corpus in Fuzz/seeds/ through the very same calls.
//
// A check returns normally when the input was handled (answered, or refused
// with a typed error) and throws ``InvariantViolation`` when Lodestone broke
// a promise; a crash, a hang or an unbounded allocation is a finding too.
import Foundation
import Lodestone

/// A fuzz target: one kind of untrusted input pushed through the public API.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// A segment file's bytes: opening, verifying and searching must give
    /// typed errors or answers.
    case segmentOpen = "FuzzSegmentOpen"
    /// A write-ahead log's bytes under a valid index: replay applies whole
    /// records, drops a torn tail or reports damage.
    case logReplay = "FuzzLogReplay"
    /// A MANIFEST's bytes: a typed error or a working index.
    case manifest = "FuzzManifest"
    /// A JSON Lines file: import stores every line or none, and what it
    /// stores reads back.
    case importLine = "FuzzImportLine"
    /// A gzip file: damaged or hostile streams (bombs included) give typed errors.
    case importGzip = "FuzzImportGzip"
    /// A filter's JSON: parsing gives a Filter or a typed error, and the
    /// metadata index agrees with the record-by-record evaluator.
    case filter = "FuzzFilter"
    /// A sequence of operations on a flat index, checked after each against a
    /// dictionary model.
    case operations = "FuzzOperations"

    /// Inputs a fresh corpus starts from, built from the workspace's golden
    /// database (so they follow the current file format).
    public func generatedSeeds(in workspace: FuzzWorkspace) -> [[UInt8]] {
        switch self {
        case .segmentOpen: [workspace.goldenFile("flat", "segment-"), workspace.goldenFile("graph", "segment-")]
        case .logReplay: [workspace.goldenFile("flat", "wal-"), workspace.goldenFile("graph", "wal-")]
        case .manifest: [workspace.goldenFile("flat", "MANIFEST"), workspace.goldenFile("graph", "MANIFEST")]
        case .importLine: [
            Array(#"{"id": "a", "values": [1, 2, 3], "metadata": {"k": "v", "n": 2, "b": true, "l": ["x"]}, "namespace": "n"}"#.utf8),
            Array("{\"id\": \"b\", \"values\": [0.5, -1e-3, 3e2]}\n{\"id\": \"c\", \"values\": [1, 1, 1]}".utf8),
        ]
        case .importGzip: [workspace.goldenExport()]
        case .filter: [
            Array(#"{"g": {"$gte": 2}, "t": {"$in": ["x1", "x2"]}}"#.utf8),
            Array(#"{"$or": [{"b": true}, {"l": {"$nin": ["a"]}}, {"g": {"$exists": false}}]}"#.utf8),
        ]
        case .operations: [[0, 1, 2, 3, 4, 5, 0, 9, 9, 9, 9, 2, 1, 4, 0, 3, 3], Array(repeating: 0, count: 40) + [5, 1, 2]]
        }
    }

    /// Runs one input. Throws ``InvariantViolation`` when a promise broke.
    public func check(_ input: [UInt8], in workspace: FuzzWorkspace) throws(InvariantViolation) {
        switch self {
        case .segmentOpen: try FuzzChecks.segmentOpen(input, workspace)
        case .logReplay: try FuzzChecks.replaceFile("wal-", input, workspace, includeMetadata: true)
        case .manifest: try FuzzChecks.replaceFile("MANIFEST", input, workspace, includeMetadata: false)
        case .importLine: try FuzzChecks.importLine(input, workspace)
        case .importGzip: try FuzzChecks.importGzip(input, workspace)
        case .filter: try FuzzChecks.filter(input, workspace)
        case .operations: try FuzzChecks.operations(input, workspace)
        }
    }
}

/// A broken promise found by a fuzz check (not a crash).
public struct InvariantViolation: Error, CustomStringConvertible {
    /// What broke, for the finding's report.
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The bodies, one per target.
enum FuzzChecks {
    static let query = [Float](repeating: 0.5, count: 8)

    static func segmentOpen(_ input: [UInt8], _ workspace: FuzzWorkspace) throws(InvariantViolation) {
        let path = workspace.scratch + "/segment"
        workspace.write(input, to: path)
        if let index = try? HNSWIndex.open(path: path) {
            _ = try? index.verify()
            _ = try? index.search(query, k: 5)
        }
        if let index = try? FlatIndex.open(path: path) { _ = try? index.search(query, k: 5) }
    }

    /// A copy of each golden index with one file replaced by `input`, opened and read.
    static func replaceFile(_ prefix: String, _ input: [UInt8], _ workspace: FuzzWorkspace,
                            includeMetadata: Bool) throws(InvariantViolation) {
        for name in ["flat", "graph"] {
            let dir = workspace.goldenCopy(name, replacing: prefix, with: input)
            if let index = try? Database(path: dir).index(name) {
                _ = try? index.query(vector: query, topK: 5, includeMetadata: includeMetadata)
                if includeMetadata { _ = try? index.listIDs(limit: 100) }
            }
        }
    }

    static func importLine(_ input: [UInt8], _ workspace: FuzzWorkspace) throws(InvariantViolation) {
        let file = workspace.scratch + "/import.jsonl"
        workspace.write(input, to: file)
        let dir = workspace.scratch + "/import-db"
        try? FileManager.default.removeItem(atPath: dir)
        guard let db = try? Database(path: dir) else { return }
        if let report = try? db.importRecords(from: file, into: "imp", options: IndexOptions(kind: .flat, durability: .none)) {
            guard let index = try? db.index("imp") else { throw InvariantViolation("imported index cannot be opened") }
            if report.records > 0 && (try? index.describeStats().totalRecordCount) == 0 {
                throw InvariantViolation("\(report.records) records imported, none stored")
            }
        }
    }

    static func importGzip(_ input: [UInt8], _ workspace: FuzzWorkspace) throws(InvariantViolation) {
        let file = workspace.scratch + "/import.jsonl.gz"
        workspace.write(input, to: file)
        let dir = workspace.scratch + "/gzip-db"
        try? FileManager.default.removeItem(atPath: dir)
        if let db = try? Database(path: dir) {
            _ = try? db.importRecords(from: file, into: "imp", options: IndexOptions(kind: .flat, durability: .none))
        }
    }

    static func filter(_ input: [UInt8], _ workspace: FuzzWorkspace) throws(InvariantViolation) {
        let text = String(decoding: input, as: UTF8.self)
        guard let filter = try? Filter(json: text) else { return }
        let fromIndex = workspace.filterIndex.evaluate(filter)
        for (slot, m) in FuzzWorkspace.filterRecords.enumerated() where fromIndex.contains(slot) != filter.matches(m) {
            throw InvariantViolation("\(text): slot \(slot) index \(fromIndex.contains(slot)) evaluator \(filter.matches(m))")
        }
    }

    /// Bytes read as operations (upsert, delete, update, query, persist) on a
    /// flat index; after each, the index holds exactly the model's records and
    /// queries return the model's exact nearest scores.
    static func operations(_ input: [UInt8], _ workspace: FuzzWorkspace) throws(InvariantViolation) {
        let dir = workspace.scratch + "/ops-db"
        try? FileManager.default.removeItem(atPath: dir)
        guard let db = try? Database(path: dir),
              let index = try? db.createIndex(name: "ops", dimension: 4, metric: .euclidean,
                                              options: IndexOptions(kind: .flat, durability: .none)) else { return }
        var model: [String: (values: [Float], metadata: Metadata)] = [:]
        var at = 0
        func next() -> Int {
            defer { at += 1 }
            return at < input.count ? Int(input[at]) : 0
        }
        var persists = 0
        while at < input.count {
            let op = next() % 6
            let id = "r\(next() % 12)"
            switch op {
            case 0, 1:
                let v = (0..<4).map { _ in Float(next() % 16) - 8 }
                let m: Metadata = ["n": .number(Double(next() % 4))]
                do {
                    try index.upsert([Record(id: id, values: v, metadata: m)])
                    model[id] = (v, m)
                } catch { throw InvariantViolation("upsert of a valid record failed: \(error)") }
            case 2:
                _ = try? index.delete(ids: [id])
                model[id] = nil
            case 3:
                let m: Metadata = ["n": .number(Double(next() % 4))]
                if (try? index.update(id: id, setMetadata: m)) != nil { model[id]?.metadata = m }
            case 4:
                let q = (0..<4).map { _ in Float(next() % 16) - 8 }
                let got = (try? index.query(vector: q, topK: 3).matches.map(\.score)) ?? []
                var distances: [Float] = []
                for r in model.values {
                    var d: Float = 0
                    for j in 0..<4 { d += (q[j] - r.values[j]) * (q[j] - r.values[j]) }
                    distances.append(d)
                }
                let want = distances.sorted().prefix(3)
                if got != Array(want) { throw InvariantViolation("query \(q): \(got), model \(Array(want))") }
            default:
                // Fold the log into a segment: later reads go through the mapped table.
                guard persists < 3 else { continue }
                persists += 1
                do { try index.persist() } catch { throw InvariantViolation("persist failed: \(error)") }
            }
            let fetched = (try? index.fetch(ids: Array(model.keys))) ?? [:]
            if fetched.count != model.count {
                throw InvariantViolation("\(fetched.count) records fetched, the model holds \(model.count)")
            }
            for (k, r) in model where fetched[k]?.values != r.values || fetched[k]?.metadata != r.metadata {
                throw InvariantViolation("record \(k) differs from the model")
            }
        }
    }
}
