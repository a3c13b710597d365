/// A metadata filter in Pinecone's language, parsed from its JSON form or
/// built in Swift.
///
/// ```swift
/// let f = try Filter(json: #"{"year": {"$gte": 2025}, "popular": true}"#)
/// let g: Filter = .and([.field("year", .gte(2025)), .field("popular", .eq(.bool(true)))])
/// ```
///
/// Semantics (Pinecone's, MongoDB's where Pinecone is silent):
/// - `$eq`/`$in` on a list field match when any element matches;
///   `$ne`/`$nin` match when no element does, and also when the field is
///   missing;
/// - `$gt $gte $lt $lte` compare numbers only;
/// - several fields in one object are an implicit `$and`, and a bare value is
///   an implicit `$eq`.
public indirect enum Filter: Sendable, Hashable {
    /// All must match (an empty list matches everything).
    case and([Filter])
    /// At least one must match.
    case or([Filter])
    /// A condition on one field.
    case field(String, Condition)

    /// A condition on a field's value.
    public enum Condition: Sendable, Hashable {
        case eq(Scalar)
        case ne(Scalar)
        case gt(Double)
        case gte(Double)
        case lt(Double)
        case lte(Double)
        case `in`([Scalar])
        case nin([Scalar])
        case exists(Bool)
    }

    /// A value a condition compares with.
    public enum Scalar: Sendable, Hashable {
        case string(String)
        case number(Double)
        case bool(Bool)
    }

    /// The deepest nesting of `$and`/`$or` accepted.
    public static let maximumDepth = 16
    /// The most values accepted in one `$in` or `$nin`.
    public static let maximumListLength = 10_000

    /// Whether a record with `metadata` passes the filter.
    public func matches(_ metadata: Metadata) -> Bool {
        switch self {
        case let .and(parts): return parts.allSatisfy { $0.matches(metadata) }
        case let .or(parts): return parts.contains { $0.matches(metadata) }
        case let .field(name, condition): return condition.matches(metadata[name])
        }
    }
}

extension Filter.Condition {
    func matches(_ value: MetadataValue?) -> Bool {
        switch self {
        case let .eq(s): return value.map { Self.contains($0, s) } ?? false
        case let .ne(s): return !(value.map { Self.contains($0, s) } ?? false)
        case let .in(list): return value.map { v in list.contains { Self.contains(v, $0) } } ?? false
        case let .nin(list): return !(value.map { v in list.contains { Self.contains(v, $0) } } ?? false)
        case let .exists(flag): return (value != nil) == flag
        case let .gt(x): return Self.number(value).map { $0 > x } ?? false
        case let .gte(x): return Self.number(value).map { $0 >= x } ?? false
        case let .lt(x): return Self.number(value).map { $0 < x } ?? false
        case let .lte(x): return Self.number(value).map { $0 <= x } ?? false
        }
    }

    /// Whether `value` equals `scalar`, or (a list) holds it.
    static func contains(_ value: MetadataValue, _ scalar: Filter.Scalar) -> Bool {
        switch (value, scalar) {
        case let (.string(a), .string(b)): return a == b
        case let (.number(a), .number(b)): return a == b
        case let (.bool(a), .bool(b)): return a == b
        case let (.strings(list), .string(b)): return list.contains(b)
        default: return false
        }
    }

    static func number(_ value: MetadataValue?) -> Double? {
        if case let .number(n)? = value { return n }
        return nil
    }
}

// MARK: Parsing

extension Filter {
    /// Parses a filter from Pinecone's JSON syntax.
    /// - Throws: ``LodestoneError/invalidFilter(path:reason:)`` naming where
    ///   the problem is (for example `$in expects an array` at `year`).
    public init(json text: String) throws(LodestoneError) {
        try self.init(json: JSONValue.parse(text))
    }

    /// Parses a filter from a parsed JSON value.
    public init(json: JSONValue) throws(LodestoneError) {
        self = try Filter.parse(json, path: "", depth: 0)
    }

    private static func parse(_ json: JSONValue, path: String, depth: Int) throws(LodestoneError) -> Filter {
        guard depth <= maximumDepth else {
            throw .invalidFilter(path: path, reason: "nested deeper than \(maximumDepth) levels")
        }
        guard case let .object(fields) = json else {
            throw .invalidFilter(path: path, reason: "a filter must be a JSON object")
        }
        var parts: [Filter] = []
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            let here = path.isEmpty ? key : path + "." + key
            switch key {
            case "$and", "$or":
                guard case let .array(items) = value, !items.isEmpty else {
                    throw .invalidFilter(path: here, reason: "\(key) expects a non-empty array of filters")
                }
                var subs: [Filter] = []
                for (i, item) in items.enumerated() {
                    subs.append(try parse(item, path: "\(here)[\(i)]", depth: depth + 1))
                }
                parts.append(key == "$and" ? .and(subs) : .or(subs))
            default:
                guard !key.hasPrefix("$") else {
                    throw .invalidFilter(path: here, reason: "unknown operator \(key) (use $and or $or here, or a field name)")
                }
                guard !key.isEmpty else { throw .invalidFilter(path: here, reason: "empty field name") }
                parts.append(contentsOf: try parseField(key, value, path: here))
            }
        }
        return parts.count == 1 ? parts[0] : .and(parts)
    }

    private static func parseField(_ name: String, _ value: JSONValue, path: String) throws(LodestoneError) -> [Filter] {
        guard case let .object(ops) = value else {
            // A bare value: implicit $eq.
            return [.field(name, .eq(try scalar(value, path: path, op: "$eq")))]
        }
        guard !ops.isEmpty else { throw .invalidFilter(path: path, reason: "expects at least one operator") }
        var out: [Filter] = []
        for (op, operand) in ops.sorted(by: { $0.key < $1.key }) {
            let condition: Condition
            switch op {
            case "$eq": condition = .eq(try scalar(operand, path: path, op: op))
            case "$ne": condition = .ne(try scalar(operand, path: path, op: op))
            case "$gt", "$gte", "$lt", "$lte":
                guard case let .number(x) = operand, x.isFinite else {
                    throw .invalidFilter(path: path, reason: "\(op) expects a number")
                }
                condition = op == "$gt" ? .gt(x) : op == "$gte" ? .gte(x) : op == "$lt" ? .lt(x) : .lte(x)
            case "$in", "$nin":
                guard case let .array(items) = operand else {
                    throw .invalidFilter(path: path, reason: "\(op) expects an array")
                }
                guard items.count <= maximumListLength else {
                    throw .invalidFilter(path: path, reason: "\(op) holds \(items.count) values; at most \(maximumListLength)")
                }
                var list: [Scalar] = []
                for item in items { list.append(try scalar(item, path: path, op: op)) }
                condition = op == "$in" ? .in(list) : .nin(list)
            case "$exists":
                guard case let .bool(b) = operand else {
                    throw .invalidFilter(path: path, reason: "$exists expects true or false")
                }
                condition = .exists(b)
            default:
                throw .invalidFilter(path: path, reason: op.hasPrefix("$")
                    ? "unknown operator \(op) (supported: $eq $ne $gt $gte $lt $lte $in $nin $exists)"
                    : "expects operators such as {\"$eq\": …}, found the key \"\(op)\"")
            }
            out.append(.field(name, condition))
        }
        return out
    }

    private static func scalar(_ json: JSONValue, path: String, op: String) throws(LodestoneError) -> Scalar {
        switch json {
        case let .string(s): return .string(s)
        case let .number(n) where n.isFinite: return .number(n)
        case let .bool(b): return .bool(b)
        default: throw .invalidFilter(path: path, reason: "\(op) expects a string, a number or a boolean")
        }
    }
}
