/// Metadata's two encodings: a compact binary one (log records and
/// segments) and JSON text (export, and the size limit, which Pinecone
/// states in bytes of JSON).
enum MetadataCodec {
    private static let stringTag: UInt8 = 0
    private static let numberTag: UInt8 = 1
    private static let boolTag: UInt8 = 2
    private static let stringsTag: UInt8 = 3

    /// Checks metadata before it is stored: finite numbers, non-empty field
    /// names, and at most ``Metadata/maximumBytes`` of JSON.
    static func validate(_ metadata: Metadata) throws(LodestoneError) {
        for (name, value) in metadata {
            guard !name.isEmpty else { throw .invalidMetadata(field: name, reason: "field names must not be empty") }
            if case let .number(n) = value, !n.isFinite {
                throw .invalidMetadata(field: name, reason: "\(n) is not a finite number")
            }
        }
        let size = json(metadata).utf8.count
        guard size <= Metadata.maximumBytes else {
            throw .invalidMetadata(field: "", reason: "\(size) bytes of JSON; the limit per record is \(Metadata.maximumBytes) bytes")
        }
    }

    // MARK: Binary

    /// Appends the binary form: field count, then per field (sorted by name)
    /// its name, a type tag and the value.
    static func encode(_ metadata: Metadata, into w: inout ByteWriter) {
        w.u32(UInt32(metadata.count))
        for name in metadata.keys.sorted() {
            w.lengthPrefixed(name)
            switch metadata[name]! {
            case let .string(s):
                w.raw([stringTag])
                w.lengthPrefixed(s)
            case let .number(n):
                w.raw([numberTag])
                w.u64(n.bitPattern)
            case let .bool(b):
                w.raw([boolTag, b ? 1 : 0])
            case let .strings(list):
                w.raw([stringsTag])
                w.u32(UInt32(list.count))
                for s in list { w.lengthPrefixed(s) }
            }
        }
    }

    /// Reads the binary form written by ``encode(_:into:)``.
    static func decode<R: LittleEndianReader>(_ r: inout R) throws(LodestoneError) -> Metadata {
        let count = Int(try r.u32())
        var out: Metadata = [:]
        for _ in 0..<count {
            let name = try r.lengthPrefixedString()
            out[name] = try value(tag: try r.u8(), field: name, &r)
        }
        return out
    }

    /// One field of the binary form, decoding nothing else (names are
    /// compared as bytes, without making strings).
    static func value<R: LittleEndianReader>(of field: [UInt8], in r: inout R) throws(LodestoneError) -> MetadataValue? {
        let count = Int(try r.u32())
        for _ in 0..<count {
            let length = Int(try r.u32())
            let order = try r.compare(length, with: field)
            let tag = try r.u8()
            if order == 0 { return try value(tag: tag, field: "", &r) }
            try skipValue(tag: tag, &r)
        }
        return nil
    }

    private static func value<R: LittleEndianReader>(tag: UInt8, field: String, _ r: inout R) throws(LodestoneError)
        -> MetadataValue
    {
        switch tag {
        case stringTag: return .string(try r.lengthPrefixedString())
        case numberTag: return .number(Double(bitPattern: try r.u64()))
        case boolTag: return .bool(try r.u8() != 0)
        case stringsTag:
            let n = Int(try r.u32())
            var list: [String] = []
            for _ in 0..<n { list.append(try r.lengthPrefixedString()) }
            return .strings(list)
        default:
            throw .invalidMetadata(field: field, reason: "unknown stored type tag \(tag)")
        }
    }

    private static func skipValue<R: LittleEndianReader>(tag: UInt8, _ r: inout R) throws(LodestoneError) {
        switch tag {
        case stringTag: try r.skip(Int(try r.u32()))
        case numberTag: try r.skip(8)
        case boolTag: try r.skip(1)
        case stringsTag:
            let n = Int(try r.u32())
            for _ in 0..<n { try r.skip(Int(try r.u32())) }
        default:
            throw .invalidMetadata(field: "", reason: "unknown stored type tag \(tag)")
        }
    }

    // MARK: JSON

    /// The JSON object text (fields sorted by name).
    static func json(_ metadata: Metadata) -> String {
        var writer = JSONWriter()
        writer.metadata(metadata)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}

extension MetadataValue {
    /// The value as JSON text (a string literal, a number that reads back
    /// to the same double, `true`/`false`, or an array of strings).
    public var jsonText: String {
        var writer = JSONWriter(capacity: 16)
        writer.metadataValue(self)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}

extension Dictionary where Key == String, Value == MetadataValue {
    /// The metadata as a JSON object, fields sorted by name: the shape
    /// Pinecone returns and ``Index/export(to:)`` writes.
    public var jsonText: String { MetadataCodec.json(self) }
}

/// What the metadata decoder reads from: a copied byte array
/// (``ByteReader``, log records) or memory in place (``RawReader``,
/// mapped segments).
protocol LittleEndianReader {
    mutating func u8() throws(LodestoneError) -> UInt8
    mutating func u32() throws(LodestoneError) -> UInt32
    mutating func u64() throws(LodestoneError) -> UInt64
    /// The next `n` bytes as UTF-8 text.
    mutating func string(_ n: Int) throws(LodestoneError) -> String
    mutating func skip(_ n: Int) throws(LodestoneError)
    /// Compares the next `n` bytes with `other` (negative, 0, positive, as
    /// byte strings), consuming them.
    mutating func compare(_ n: Int, with other: [UInt8]) throws(LodestoneError) -> Int
}

extension LittleEndianReader {
    /// A string stored as its UTF-8 length (UInt32) and bytes.
    mutating func lengthPrefixedString() throws(LodestoneError) -> String { try string(Int(try u32())) }
}

extension ByteReader: LittleEndianReader {
    mutating func u8() throws(LodestoneError) -> UInt8 { try raw(1)[0] }
    mutating func string(_ n: Int) throws(LodestoneError) -> String { String(decoding: try raw(n), as: UTF8.self) }
    mutating func compare(_ n: Int, with other: [UInt8]) throws(LodestoneError) -> Int {
        let mine = try raw(n)
        return mine == other ? 0 : (mine.lexicographicallyPrecedes(other) ? -1 : 1)
    }
}

extension RawReader: LittleEndianReader {
    mutating func string(_ n: Int) throws(LodestoneError) -> String { String(decoding: try take(n), as: UTF8.self) }
    mutating func skip(_ n: Int) throws(LodestoneError) { _ = try take(n) }
    mutating func compare(_ n: Int, with other: [UInt8]) throws(LodestoneError) -> Int {
        let mine = try take(n)
        return other.withUnsafeBytes { o -> Int in
            let common = min(mine.count, o.count)
            if common > 0 {
                let c = Int(memcmp(mine.baseAddress!, o.baseAddress!, common))
                if c != 0 { return c }
            }
            return mine.count - o.count
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
