@_spi(LodestoneTools) import Lodestone

// JSON on the wire: bodies are read with the library's strict reader
// (``JSONValue/parse(bytes:)``) and answers written with its ``JSONWriter``;
// here are the wire's own shapes and the field-by-field reading of a body.

/// Parses a request body.
/// - Throws: ``APIError`` 400 saying what is wrong and at which byte.
func parseBody(_ bytes: [UInt8]) throws(APIError) -> JSONValue {
    do {
        return try JSONValue.parse(bytes: bytes)
    } catch {
        throw .badRequest("the request body is not valid JSON: \(error)")
    }
}

extension JSONWriter {
    /// Pinecone 2026-07's `schema` of a dense index: its one vector field,
    /// `_values`.
    /// A sparse index's schema: its one `_sparse_values` field.
    mutating func sparseSchema() {
        object { w in
            w.key("fields")
            w.object { w in
                w.key("_sparse_values")
                w.object { w in w.field("type", "sparse_vector") }
            }
        }
    }

    mutating func denseSchema(dimension: Int, metric: String) {
        object { w in
            w.key("fields")
            w.object { w in
                w.key("_values")
                w.object { w in
                    w.field("type", "dense_vector")
                    w.field("dimension", dimension)
                    w.field("metric", metric)
                }
            }
        }
    }

    /// One page of a list (`{"data": [...], "pagination": {"next"}?}`, as
    /// backups, restore jobs and imports are listed).
    mutating func page<T>(_ items: ArraySlice<T>, more: Bool, next: (T) -> String, write: (inout JSONWriter, T) -> Void) {
        object { w in
            w.key("data")
            w.array { w in for item in items { write(&w, item) } }
            if more, let last = items.last {
                w.key("pagination")
                w.object { w in w.field("next", next(last)) }
            }
        }
    }
}

/// A JSON object from a request, read field by field with errors that name
/// the field and say what was expected.
struct Fields {
    let values: [String: JSONValue]
    /// Where these fields are, for messages ("the body", "vectors[3]").
    let place: String

    init(_ value: JSONValue, place: String = "the request body") throws(APIError) {
        guard case let .object(values) = value else { throw .badRequest("\(place) must be a JSON object") }
        self.values = values
        self.place = place
    }

    private func wrong(_ name: String, _ expected: String) -> APIError {
        .badRequest("\"\(name)\" in \(place) must be \(expected)")
    }

    /// The field, or nil when absent or null.
    func raw(_ name: String) -> JSONValue? {
        guard let v = values[name], v != .null else { return nil }
        return v
    }

    func string(_ name: String) throws(APIError) -> String? {
        guard let v = raw(name) else { return nil }
        guard case let .string(s) = v else { throw wrong(name, "a string") }
        return s
    }

    func bool(_ name: String) throws(APIError) -> Bool? {
        guard let v = raw(name) else { return nil }
        guard case let .bool(b) = v else { throw wrong(name, "true or false") }
        return b
    }

    func int(_ name: String, in range: ClosedRange<Int>) throws(APIError) -> Int? {
        guard let v = raw(name) else { return nil }
        guard case let .number(n) = v, n == n.rounded(), abs(n) < 1e15 else { throw wrong(name, "an integer") }
        guard range.contains(Int(n)) else { throw wrong(name, "in \(range.lowerBound)...\(range.upperBound), not \(Int(n))") }
        return Int(n)
    }

    func object(_ name: String) throws(APIError) -> Fields? {
        guard let v = raw(name) else { return nil }
        return try Fields(v, place: "\"\(name)\"")
    }

    func array(_ name: String) throws(APIError) -> [JSONValue]? {
        guard let v = raw(name) else { return nil }
        guard case let .array(items) = v else { throw wrong(name, "an array") }
        return items
    }

    func strings(_ name: String) throws(APIError) -> [String]? {
        guard let items = try array(name) else { return nil }
        var out: [String] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard case let .string(s) = item else { throw wrong(name, "an array of strings") }
            out.append(s)
        }
        return out
    }

    /// A dense vector: an array of finite numbers, as float32.
    func floats(_ name: String) throws(APIError) -> [Float]? {
        guard let items = try array(name) else { return nil }
        var out: [Float] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard case let .number(n) = item else { throw wrong(name, "an array of numbers") }
            let f = Float(n)
            guard f.isFinite else { throw wrong(name, "an array of finite float32 numbers (\(n) is out of range)") }
            out.append(f)
        }
        return out
    }
}
