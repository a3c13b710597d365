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
