#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A parsed JSON document (what filters and metadata arrive as).
public enum JSONValue: Sendable, Hashable, Decodable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? c.decode(Double.self) {
            self = .number(n)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    /// Parses one JSON document (RFC 8259, strictly: no comments, no
    /// trailing commas, no NaN; UTF-8 validated; numbers must fit a double;
    /// nesting at most 64 deep).
    /// - Throws: ``JSONSyntaxError`` saying what is wrong and at which byte.
    public static func parse<Bytes: Collection<UInt8>>(bytes: Bytes) throws(JSONSyntaxError) -> JSONValue {
        let parsed = bytes.withContiguousStorageIfAvailable { (buffer) -> Result<JSONValue, JSONSyntaxError> in
            do throws(JSONSyntaxError) { return .success(try JSONReader.parse(buffer)) } catch { return .failure(error) }
        }
        if let parsed { return try parsed.get() }
        return try Array(bytes).withUnsafeBufferPointer { (buffer) throws(JSONSyntaxError) -> JSONValue in
            try JSONReader.parse(buffer)
        }
    }

    /// Parses JSON text.
    /// - Throws: ``LodestoneError/invalidFilter(path:reason:)`` when the text
    ///   is not JSON (`path` is "" and `reason` says why and where).
    public static func parse(_ text: String) throws(LodestoneError) -> JSONValue {
        var text = text
        do {
            return try text.withUTF8 { (buffer) throws(JSONSyntaxError) -> JSONValue in try JSONReader.parse(buffer) }
        } catch {
            throw .invalidFilter(path: "", reason: "not valid JSON: \(error)")
        }
    }

    /// The value as compact JSON text (object fields sorted by name).
    public var jsonText: String {
        var writer = JSONWriter()
        writer.json(self)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}

extension JSONValue {
    /// An object's field (nil when absent, or when this is not an object).
    public subscript(_ name: String) -> JSONValue? {
        guard case let .object(fields) = self else { return nil }
        return fields[name]
    }

    /// The string, when this is one.
    public var stringValue: String? {
        guard case let .string(s) = self else { return nil }
        return s
    }

    /// The number, when this is one.
    public var numberValue: Double? {
        guard case let .number(n) = self else { return nil }
        return n
    }

    /// The number, when this is an integer a double holds exactly.
    public var integerValue: Int? {
        guard case let .number(n) = self, n == n.rounded(), abs(n) <= 9_007_199_254_740_992 else { return nil }
        return Int(n)
    }

    /// The items, when this is an array.
    public var arrayValue: [JSONValue]? {
        guard case let .array(items) = self else { return nil }
        return items
    }
}
