/// One metadata value, as Pinecone stores them: a string, a number, a
/// boolean, or a list of strings.
public enum MetadataValue: Sendable, Hashable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case strings([String])

    /// The value a JSON value denotes, or nil (null, objects, mixed lists).
    public init?(json: JSONValue) {
        switch json {
        case let .string(s): self = .string(s)
        case let .number(n): self = .number(n)
        case let .bool(b): self = .bool(b)
        case let .array(items):
            var out: [String] = []
            for item in items {
                guard case let .string(s) = item else { return nil }
                out.append(s)
            }
            self = .strings(out)
        default: return nil
        }
    }
}

/// A record's metadata: a flat map from field names to values.
public typealias Metadata = [String: MetadataValue]

extension Metadata {
    /// The largest metadata a record may carry, in bytes of its JSON form.
    public static let maximumBytes = 40 * 1024

    /// Metadata from a JSON object, Pinecone's way: `null` fields are
    /// dropped; other values must be strings, numbers, booleans or lists of
    /// strings.
    /// - Throws: ``LodestoneError/invalidMetadata(field:reason:)``.
    public static func from(json: JSONValue) throws(LodestoneError) -> Metadata {
        guard case let .object(fields) = json else {
            throw .invalidMetadata(field: "", reason: "metadata must be a JSON object")
        }
        var out: Metadata = [:]
        for (name, value) in fields {
            if case .null = value { continue }
            guard let v = MetadataValue(json: value) else {
                throw .invalidMetadata(field: name, reason: "values must be strings, numbers, booleans or lists of strings")
            }
            out[name] = v
        }
        return out
    }
}

extension MetadataValue: CustomStringConvertible, CustomDebugStringConvertible {
    /// The value as the JSON a user wrote: `"text"`, `2025`, `0.5`, `true`,
    /// `["a","b"]`. Printing a ``Metadata`` dictionary therefore shows
    /// `["year": 2025, "popular": true]`; ``Metadata``'s `jsonText` gives the
    /// JSON object itself.
    public var description: String { jsonText }
    /// The same JSON text (so dictionaries of values print it too).
    public var debugDescription: String { jsonText }
}

extension MetadataValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral
{
    /// `"text"` in a ``Metadata`` literal: ``string(_:)``.
    public init(stringLiteral value: String) { self = .string(value) }
    /// `2025` in a ``Metadata`` literal: ``number(_:)``.
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    /// `0.5` in a ``Metadata`` literal: ``number(_:)``.
    public init(floatLiteral value: Double) { self = .number(value) }
    /// `true` in a ``Metadata`` literal: ``bool(_:)``.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    /// `["a", "b"]` in a ``Metadata`` literal: ``strings(_:)``.
    public init(arrayLiteral elements: String...) { self = .strings(elements) }
}
