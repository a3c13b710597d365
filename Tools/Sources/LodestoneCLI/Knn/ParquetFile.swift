import Foundation
@_spi(LodestoneTools) import Lodestone
import LodestoneToolSupport

// A Parquet writer for k-NN results: flat columns and lists, written one
// row group at a time (bounded memory), uncompressed PLAIN pages with
// RLE levels, the footer in Thrift's compact protocol. Enough of the format
// (https://parquet.apache.org/docs/file-format/) for pyarrow, Spark, DuckDB
// and Polars to read the results; nothing more.

/// A column's values for one row group.
enum ParquetColumn {
    case int64([Int64])
    case strings([String])
    /// Lists of int64, strings or floats: one list per row.
    case int64Lists([[Int64]])
    case stringLists([[String]])
    case floatLists([[Float]])

    var rows: Int {
        switch self {
        case let .int64(v): return v.count
        case let .strings(v): return v.count
        case let .int64Lists(v): return v.count
        case let .stringLists(v): return v.count
        case let .floatLists(v): return v.count
        }
    }
}

/// A column's name and type, fixed for the file.
struct ParquetField: Equatable, Codable {
    enum Kind: String, Codable { case int64, string, int64List, stringList, floatList }
    var name: String
    var kind: Kind

    var isList: Bool { kind == .int64List || kind == .stringList || kind == .floatList }

    /// Parquet's physical type of the leaf: INT64 2, FLOAT 4, BYTE_ARRAY 6.
    var physicalType: Int32 {
        switch kind {
        case .int64, .int64List: return 2
        case .floatList: return 4
        case .string, .stringList: return 6
        }
    }

    var path: [String] { isList ? [name, "list", "element"] : [name] }
}

/// Where a written row group's column chunks are (kept across a resumed
/// run in the job's checkpoint, so the footer can be written at the end).
struct ParquetRowGroup: Equatable {
    struct Chunk: Equatable {
        var offset: Int64
        var size: Int64
        var values: Int64
    }
    var rows: Int64
    var chunks: [Chunk]
}

/// Appends row groups to a file and writes the footer at the end.
final class ParquetWriter {
    let path: String
    let fields: [ParquetField]
    private(set) var rowGroups: [ParquetRowGroup]
    private let handle: FileHandle
    private(set) var offset: Int64

    /// A new file, or (with `resumeAt`) an unfinished one cut back to the end
    /// of its last complete row group.
    init(path: String, fields: [ParquetField], resumeAt: (offset: Int64, rowGroups: [ParquetRowGroup])? = nil) throws {
        self.path = path
        self.fields = fields
        if let resume = resumeAt {
            guard let h = FileHandle(forUpdatingAtPath: path) else { throw CLIError("cannot reopen \(path) to resume") }
            try h.truncate(atOffset: UInt64(resume.offset))
            try h.seekToEnd()
            handle = h
            offset = resume.offset
            rowGroups = resume.rowGroups
        } else {
            guard FileManager.default.createFile(atPath: path, contents: Data("PAR1".utf8)),
                  let h = FileHandle(forUpdatingAtPath: path) else { throw CLIError("cannot create \(path)") }
            try h.seekToEnd()
            handle = h
            offset = 4
            rowGroups = []
        }
    }

    /// Writes one row group (every column must have the same row count).
    func write(_ columns: [ParquetColumn]) throws {
        precondition(columns.count == fields.count)
        let rows = columns[0].rows
        var chunks: [ParquetRowGroup.Chunk] = []
        for (field, column) in zip(fields, columns) {
            precondition(column.rows == rows)
            let (page, values) = try Self.page(field, column)
            try handle.write(contentsOf: Data(page))
            chunks.append(.init(offset: offset, size: Int64(page.count), values: values))
            offset += Int64(page.count)
        }
        try handle.synchronize()
        rowGroups.append(ParquetRowGroup(rows: Int64(rows), chunks: chunks))
    }

    /// Writes the footer and closes the file.
    func finish() throws {
        var t = ThriftWriter()
        fileMetadata(&t)
        let footer = t.bytes
        var tail = footer
        withUnsafeBytes(of: UInt32(footer.count).littleEndian) { tail += $0 }
        tail += Array("PAR1".utf8)
        try handle.write(contentsOf: Data(tail))
        try handle.synchronize()
        try handle.close()
    }

    // MARK: Pages

    /// One data page (header and body) holding a whole column chunk, and
    /// its number of level entries.
    private static func page(_ field: ParquetField, _ column: ParquetColumn) throws -> ([UInt8], Int64) {
        var body: [UInt8] = []
        var entries = 0
        func plain(_ v: Int64) { withUnsafeBytes(of: v.littleEndian) { body += $0 } }
        func plain(_ v: Float) { withUnsafeBytes(of: v.bitPattern.littleEndian) { body += $0 } }
        func plain(_ s: String) {
            let b = Array(s.utf8)
            withUnsafeBytes(of: UInt32(b.count).littleEndian) { body += $0 }
            body += b
        }
        func levels<T>(_ lists: [[T]]) {
            // Repetition then definition levels (bit width 1), each as RLE
            // runs behind a 4-byte length: a row's first value starts it
            // (0), the rest continue it (1); an empty list is one entry with
            // definition 0 and no value.
            var rep = RLE(), def = RLE()
            for list in lists {
                if list.isEmpty {
                    rep.add(0); def.add(0)
                } else {
                    rep.add(0); rep.add(1, count: list.count - 1)
                    def.add(1, count: list.count)
                }
                entries += max(1, list.count)
            }
            for encoded in [rep.encoded, def.encoded] {
                withUnsafeBytes(of: UInt32(encoded.count).littleEndian) { body += $0 }
                body += encoded
            }
        }
        switch column {
        case let .int64(v): v.forEach(plain); entries = v.count
        case let .strings(v): v.forEach(plain); entries = v.count
        case let .int64Lists(v): levels(v); v.forEach { $0.forEach(plain) }
        case let .stringLists(v): levels(v); v.forEach { $0.forEach(plain) }
        case let .floatLists(v): levels(v); v.forEach { $0.forEach(plain) }
        }
        // A page's sizes and count are int32 in the format.
        guard body.count < Int(Int32.max), entries < Int(Int32.max) else {
            throw CLIError("a block's \(field.name) column is \(body.count) bytes, more than a Parquet page holds: "
                           + "use a smaller --block")
        }
        var h = ThriftWriter()
        h.structBegin()
        h.i32(1, 0)                       // type: DATA_PAGE
        h.i32(2, Int32(body.count))       // uncompressed_page_size
        h.i32(3, Int32(body.count))       // compressed_page_size
        h.fieldStruct(5)                  // data_page_header
        h.i32(1, Int32(entries))          // num_values
        h.i32(2, 0)                       // encoding: PLAIN
        h.i32(3, 3)                       // definition_level_encoding: RLE
        h.i32(4, 3)                       // repetition_level_encoding: RLE
        h.structEnd()
        h.structEnd()
        return (h.bytes + body, Int64(entries))
    }

    // MARK: Footer

    private func fileMetadata(_ t: inout ThriftWriter) {
        t.structBegin()
        t.i32(1, 1)  // version
        var schema: [(inout ThriftWriter) -> Void] = []
        schema.append { t in
            t.string(4, "schema")
            t.i32(5, Int32(self.fields.count))
        }
        for field in fields {
            if field.isList {
                schema.append { t in
                    t.i32(3, 0)  // REQUIRED
                    t.string(4, field.name)
                    t.i32(5, 1)
                    t.i32(6, 3)  // converted_type LIST
                }
                schema.append { t in
                    t.i32(3, 2)  // REPEATED
                    t.string(4, "list")
                    t.i32(5, 1)
                }
            }
            schema.append { t in
                t.i32(1, field.physicalType)
                t.i32(3, 0)  // REQUIRED
                t.string(4, field.isList ? "element" : field.name)
                if field.physicalType == 6 { t.i32(6, 0) }  // converted_type UTF8
            }
        }
        t.listOfStructs(2, schema)
        t.i64(3, rowGroups.reduce(0) { $0 + $1.rows })
        t.listOfStructs(4, rowGroups.map { group in
            { (t: inout ThriftWriter) in
                t.listOfStructs(1, zip(self.fields, group.chunks).map { field, chunk in
                    { (t: inout ThriftWriter) in
                        t.i64(2, chunk.offset)  // file_offset
                        t.fieldStruct(3)        // meta_data
                        t.i32(1, field.physicalType)
                        t.list(2, i32: [0, 3])  // PLAIN, RLE
                        t.list(3, strings: field.path)
                        t.i32(4, 0)             // UNCOMPRESSED
                        t.i64(5, chunk.values)
                        t.i64(6, chunk.size)
                        t.i64(7, chunk.size)
                        t.i64(9, chunk.offset)  // data_page_offset
                        t.structEnd()
                    }
                })
                t.i64(2, group.chunks.reduce(0) { $0 + $1.size })
                t.i64(3, group.rows)
            }
        })
        t.string(6, "lodestone knn")
        t.structEnd()
    }
}

/// The RLE half of Parquet's RLE/bit-packing hybrid, for bit width 1:
/// runs of one value, each a varint header (count << 1) and one byte.
struct RLE {
    private var bytes: [UInt8] = []
    private var value: UInt8 = 0
    private var count = 0

    mutating func add(_ v: UInt8, count n: Int = 1) {
        guard n > 0 else { return }
        if count > 0 && v != value { flush() }
        value = v
        count += n
    }

    private mutating func flush() {
        var header = UInt64(count) << 1
        while header >= 0x80 {
            bytes.append(UInt8(header & 0x7F) | 0x80)
            header >>= 7
        }
        bytes.append(UInt8(header))
        bytes.append(value)
        count = 0
    }

    /// The encoding, the last run included.
    var encoded: [UInt8] {
        var copy = self
        if copy.count > 0 { copy.flush() }
        return copy.bytes
    }
}

/// Thrift's compact protocol, writing only what the Parquet footer and
/// page headers use.
struct ThriftWriter {
    private(set) var bytes: [UInt8] = []
    private var lastField: [Int16] = []

    mutating func structBegin() { lastField.append(0) }

    mutating func structEnd() {
        bytes.append(0)  // stop
        lastField.removeLast()
    }

    private mutating func header(_ id: Int16, _ type: UInt8) {
        let delta = id - lastField[lastField.count - 1]
        if delta > 0 && delta <= 15 {
            bytes.append(UInt8(delta) << 4 | type)
        } else {
            bytes.append(type)
            varint(zigzag(Int64(id)))
        }
        lastField[lastField.count - 1] = id
    }

    private func zigzag(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }

    private mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func binary(_ s: String) {
        let b = Array(s.utf8)
        varint(UInt64(b.count))
        bytes += b
    }

    mutating func i32(_ id: Int16, _ v: Int32) { header(id, 5); varint(zigzag(Int64(v))) }
    mutating func i64(_ id: Int16, _ v: Int64) { header(id, 6); varint(zigzag(v)) }
    mutating func string(_ id: Int16, _ s: String) { header(id, 8); binary(s) }

    /// A struct field: its fields follow, then ``structEnd()``.
    mutating func fieldStruct(_ id: Int16) {
        header(id, 12)
        structBegin()
    }

    private mutating func listHeader(_ count: Int, _ type: UInt8) {
        if count < 15 { bytes.append(UInt8(count) << 4 | type) } else {
            bytes.append(0xF0 | type)
            varint(UInt64(count))
        }
    }

    mutating func list(_ id: Int16, i32 values: [Int32]) {
        header(id, 9)
        listHeader(values.count, 5)
        for v in values { varint(zigzag(Int64(v))) }
    }

    mutating func list(_ id: Int16, strings values: [String]) {
        header(id, 9)
        listHeader(values.count, 8)
        for v in values { binary(v) }
    }

    mutating func listOfStructs(_ id: Int16, _ elements: [(inout ThriftWriter) -> Void]) {
        header(id, 9)
        listHeader(elements.count, 12)
        for write in elements {
            structBegin()
            write(&self)
            structEnd()
        }
    }
}
