import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

// Where `lodestone knn` writes: every output appends block after block, and
// records its files' lengths in the job's checkpoint, so an interrupted job
// cuts them back to the last completed block and continues.

/// What an output has written, as of the last completed block.
struct OutputState: Equatable {
    var lengths: [Int64]
    var rowGroups: [ParquetRowGroup]? = nil
}

// Checkpoints hold offsets as JSON numbers: exact below 2^53 bytes.
extension OutputState {
    init?(json: JSONValue) {
        guard let lengths = json["lengths"]?.arrayValue?.compactMap(\.integerValue).map(Int64.init),
              lengths.count == json["lengths"]?.arrayValue?.count else { return nil }
        self.lengths = lengths
        if let groups = json["rowGroups"], groups != .null {
            guard let items = groups.arrayValue else { return nil }
            var out: [ParquetRowGroup] = []
            for item in items {
                guard let rows = item["rows"]?.integerValue, let chunks = item["chunks"]?.arrayValue else { return nil }
                var group = ParquetRowGroup(rows: Int64(rows), chunks: [])
                for c in chunks {
                    guard let offset = c["offset"]?.integerValue, let size = c["size"]?.integerValue,
                          let values = c["values"]?.integerValue else { return nil }
                    group.chunks.append(.init(offset: Int64(offset), size: Int64(size), values: Int64(values)))
                }
                out.append(group)
            }
            rowGroups = out
        }
    }

    var json: JSONValue {
        func number(_ v: Int64) -> JSONValue { .number(Double(v)) }
        let groups: JSONValue = rowGroups.map { groups in
            .array(groups.map { g in
                .object(["rows": number(g.rows),
                         "chunks": .array(g.chunks.map {
                             .object(["offset": number($0.offset), "size": number($0.size), "values": number($0.values)])
                         })])
            })
        } ?? .null
        return .object(["lengths": .array(lengths.map(number)), "rowGroups": groups])
    }
}

/// The result formats.
enum KnnFormat: String, CaseIterable {
    case parquet, jsonl, npy, vecs

    /// The format an output path's extension names.
    init?(path: String) {
        switch (path as NSString).pathExtension {
        case "parquet": self = .parquet
        case "jsonl", "json": self = .jsonl
        case "npy": self = .npy
        case "ivecs", "fvecs": self = .vecs
        default: return nil
        }
    }
}

protocol KnnOutput: AnyObject {
    var files: [String] { get }
    var state: OutputState { get }
    /// Appends the results of queries `first..<first + results.count`.
    func write(first: Int, queryIDs: [String]?, results: KnnResults, k: Int) throws
    /// Completes the files (headers, footers) once every query is written.
    func finish(total: Int, k: Int) throws
}

/// A file appended to, cut back to a recorded length when resuming.
final class AppendFile {
    let path: String
    private let handle: FileHandle
    private(set) var length: Int64

    init(path: String, resumeAt: Int64?) throws {
        self.path = path
        if let resumeAt {
            guard let h = FileHandle(forUpdatingAtPath: path) else { throw CLIError("cannot reopen \(path) to resume") }
            try h.truncate(atOffset: UInt64(resumeAt))
            try h.seekToEnd()
            handle = h
            length = resumeAt
        } else {
            guard FileManager.default.createFile(atPath: path, contents: nil),
                  let h = FileHandle(forUpdatingAtPath: path) else { throw CLIError("cannot create \(path)") }
            handle = h
            length = 0
        }
    }

    func append(_ bytes: [UInt8]) throws {
        try handle.write(contentsOf: Data(bytes))
        length += Int64(bytes.count)
    }

    func overwrite(at offset: UInt64, _ bytes: [UInt8]) throws {
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: Data(bytes))
        try handle.seekToEnd()
    }

    func sync() throws { try handle.synchronize() }
    func close() throws { try handle.close() }
}

/// Little-endian scalars appended to a byte array.
private extension Array where Element == UInt8 {
    mutating func append<T: FixedWidthInteger>(le v: T) { Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) } }
    mutating func append(le v: Float) { append(le: v.bitPattern) }
}

/// Neighbour ids as integers (row numbers, or record ids that are numbers).
private func integerIDs(_ results: KnnResults) throws -> [[Int64]] {
    if let rows = results.rowIDs { return rows }
    return try (results.stringIDs ?? []).map { ids in
        try ids.map { id in
            guard let n = Int64(id) else {
                throw CLIError("record id \"\(id.prefix(40))\" is not an integer: the npy and vecs formats hold "
                               + "integer ids; write parquet or jsonl for string ids")
            }
            return n
        }
    }
}

/// Two files of queries × k rows, ids and scores (-1 and NaN past the last
/// neighbour): `PREFIX.ids.npy` (int64) and `PREFIX.scores.npy` (float32),
/// whose headers get the shape when the job completes; or TEXMEX
/// `PREFIX.ivecs` (int32) and `PREFIX.fvecs`, each row prefixed by k, as
/// ground-truth files are.
final class MatrixOutput: KnnOutput {
    enum Layout { case npy, vecs }
    private let layout: Layout
    private let ids: AppendFile, scores: AppendFile
    static let npyHeaderBytes = 128

    init(prefix: String, layout: Layout, resume: OutputState?) throws {
        self.layout = layout
        let (idPath, scorePath) = layout == .npy ? (prefix + ".ids.npy", prefix + ".scores.npy")
                                                 : (prefix + ".ivecs", prefix + ".fvecs")
        ids = try AppendFile(path: idPath, resumeAt: resume?.lengths[0])
        scores = try AppendFile(path: scorePath, resumeAt: resume?.lengths[1])
        if layout == .npy && resume == nil {
            try ids.append(Self.npyHeader(descr: "<i8", rows: 0, k: 0))
            try scores.append(Self.npyHeader(descr: "<f4", rows: 0, k: 0))
        }
    }

    var files: [String] { [ids.path, scores.path] }
    var state: OutputState { OutputState(lengths: [ids.length, scores.length]) }

    /// A version 1.0 `.npy` header padded to 128 bytes.
    static func npyHeader(descr: String, rows: Int, k: Int) -> [UInt8] {
        var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(rows), \(k)), }"
        dict += String(repeating: " ", count: npyHeaderBytes - 10 - dict.utf8.count - 1) + "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        out.append(le: UInt16(dict.utf8.count))
        return out + Array(dict.utf8)
    }

    func write(first: Int, queryIDs: [String]?, results: KnnResults, k: Int) throws {
        var idBytes: [UInt8] = [], scoreBytes: [UInt8] = []
        idBytes.reserveCapacity(results.count * (k + 1) * 8)
        scoreBytes.reserveCapacity(results.count * (k + 1) * 4)
        for (row, s) in zip(try integerIDs(results), results.scores) {
            if layout == .vecs {
                idBytes.append(le: Int32(k))
                scoreBytes.append(le: Int32(k))
            }
            for j in 0..<k {
                let id = j < row.count ? row[j] : -1
                if layout == .npy {
                    idBytes.append(le: id)
                } else {
                    guard id <= Int64(Int32.max) else { throw CLIError("id \(id) does not fit the ivecs format's int32") }
                    idBytes.append(le: Int32(id))
                }
                scoreBytes.append(le: j < s.count ? s[j] : Float.nan)
            }
        }
        try ids.append(idBytes)
        try scores.append(scoreBytes)
        try ids.sync()
        try scores.sync()
    }

    func finish(total: Int, k: Int) throws {
        if layout == .npy {
            try ids.overwrite(at: 0, Self.npyHeader(descr: "<i8", rows: total, k: k))
            try scores.overwrite(at: 0, Self.npyHeader(descr: "<f4", rows: total, k: k))
        }
        for f in [ids, scores] {
            try f.sync()
            try f.close()
        }
    }
}

/// One JSON object per query: `{"query": n, "query_id": ..., "ids": [...],
/// "scores": [...]}` (`query_id` when the queries have ids).
final class JSONLinesOutput: KnnOutput {
    private let file: AppendFile

    init(path: String, resume: OutputState?) throws {
        file = try AppendFile(path: path, resumeAt: resume?.lengths[0])
    }

    var files: [String] { [file.path] }
    var state: OutputState { OutputState(lengths: [file.length]) }

    func write(first: Int, queryIDs: [String]?, results: KnnResults, k: Int) throws {
        var text = ""
        for q in 0..<results.count {
            text += "{\"query\": \(first + q)"
            if let queryIDs { text += ", \"query_id\": " + MetadataValue.string(queryIDs[q]).jsonText }
            if let rows = results.rowIDs {
                text += ", \"ids\": [" + rows[q].map { String($0) }.joined(separator: ", ") + "]"
            } else if let strings = results.stringIDs {
                text += ", \"ids\": " + MetadataValue.strings(strings[q]).jsonText
            }
            text += ", \"scores\": [" + results.scores[q].map { "\($0)" }.joined(separator: ", ") + "]}\n"
        }
        try file.append(Array(text.utf8))
        try file.sync()
    }

    func finish(total: Int, k: Int) throws {
        try file.sync()
        try file.close()
    }
}

/// Parquet: columns `query` (int64), `query_id` (string, when the queries
/// have ids), `ids` (list of strings, or of int64 row numbers) and `scores`
/// (list of float32); one row group per block.
final class ParquetOutput: KnnOutput {
    private let writer: ParquetWriter
    private let withQueryIDs: Bool

    init(path: String, rowIDs: Bool, queryIDs: Bool, resume: OutputState?) throws {
        withQueryIDs = queryIDs
        var fields = [ParquetField(name: "query", kind: .int64)]
        if queryIDs { fields.append(ParquetField(name: "query_id", kind: .string)) }
        fields.append(ParquetField(name: "ids", kind: rowIDs ? .int64List : .stringList))
        fields.append(ParquetField(name: "scores", kind: .floatList))
        writer = try ParquetWriter(path: path, fields: fields,
                                   resumeAt: resume.map { ($0.lengths[0], $0.rowGroups ?? []) })
    }

    var files: [String] { [writer.path] }
    var state: OutputState { OutputState(lengths: [writer.offset], rowGroups: writer.rowGroups) }

    func write(first: Int, queryIDs: [String]?, results: KnnResults, k: Int) throws {
        var columns: [ParquetColumn] = [.int64((0..<results.count).map { Int64(first + $0) })]
        if withQueryIDs { columns.append(.strings(queryIDs ?? (0..<results.count).map { String(first + $0) })) }
        if let rows = results.rowIDs { columns.append(.int64Lists(rows)) } else {
            columns.append(.stringLists(results.stringIDs ?? []))
        }
        columns.append(.floatLists(results.scores))
        try writer.write(columns)
    }

    func finish(total: Int, k: Int) throws { try writer.finish() }
}
