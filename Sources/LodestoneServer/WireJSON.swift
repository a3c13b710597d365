import Lodestone

// JSON on the wire: a strict reader (RFC 8259) that says where a body is
// wrong, and a writer that appends straight into the response's bytes. The
// server reads a few hundred numbers per query, so neither goes through
// Codable's existential containers.

/// Parses JSON bodies into ``JSONValue``.
enum JSONReader {
    /// Nesting deeper than this is refused (no recursion without bound).
    static let maximumDepth = 64

    /// Parses a whole document.
    /// - Throws: ``APIError`` 400 saying what is wrong and at which byte.
    static func parse(_ bytes: [UInt8]) throws(APIError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { (buffer) throws(APIError) -> JSONValue in
            var parser = Parser(bytes: buffer)
            parser.skipSpace()
            let value = try parser.value(depth: 0)
            parser.skipSpace()
            guard parser.position == buffer.count else { throw parser.error("unexpected text after the JSON value") }
            return value
        }
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var position = 0

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        func error(_ reason: String) -> APIError {
            .badRequest("the request body is not valid JSON: \(reason) (at byte \(position))")
        }

        mutating func skipSpace() {
            while position < bytes.count {
                switch bytes[position] {
                case 0x20, 0x09, 0x0A, 0x0D: position += 1
                default: return
                }
            }
        }

        mutating func expect(_ literal: StaticString, _ value: JSONValue) throws(APIError) -> JSONValue {
            let n = literal.utf8CodeUnitCount
            guard position + n <= bytes.count else { throw error("truncated") }
            for i in 0..<n where bytes[position + i] != literal.utf8Start[i] { throw error("unknown literal") }
            position += n
            return value
        }

        mutating func value(depth: Int) throws(APIError) -> JSONValue {
            guard depth < JSONReader.maximumDepth else { throw error("nested deeper than \(JSONReader.maximumDepth) levels") }
            guard position < bytes.count else { throw error("truncated") }
            switch bytes[position] {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "n"): return try expect("null", .null)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw error("unexpected character")
            }
        }

        mutating func object(depth: Int) throws(APIError) -> JSONValue {
            position += 1
            var fields: [String: JSONValue] = [:]
            skipSpace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
                position += 1
                return .object(fields)
            }
            while true {
                skipSpace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw error("expected a field name") }
                let key = try string()
                skipSpace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw error("expected ':'") }
                position += 1
                skipSpace()
                fields[key] = try value(depth: depth + 1)
                skipSpace()
                guard position < bytes.count else { throw error("truncated") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                guard bytes[position] == UInt8(ascii: "}") else { throw error("expected ',' or '}'") }
                position += 1
                return .object(fields)
            }
        }

        mutating func array(depth: Int) throws(APIError) -> JSONValue {
            position += 1
            var items: [JSONValue] = []
            skipSpace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
                position += 1
                return .array(items)
            }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard position < bytes.count else { throw error("truncated") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                guard bytes[position] == UInt8(ascii: "]") else { throw error("expected ',' or ']'") }
                position += 1
                return .array(items)
            }
        }

        mutating func number() throws(APIError) -> Double {
            let start = position
            func digits(_ p: inout Int) -> Int {
                let s = p
                while p < bytes.count, bytes[p] >= UInt8(ascii: "0"), bytes[p] <= UInt8(ascii: "9") { p += 1 }
                return p - s
            }
            var p = position
            if bytes[p] == UInt8(ascii: "-") { p += 1 }
            let intStart = p
            guard digits(&p) > 0 else { throw error("a number needs digits") }
            guard !(bytes[intStart] == UInt8(ascii: "0") && p - intStart > 1) else { throw error("leading zeros") }
            if p < bytes.count, bytes[p] == UInt8(ascii: ".") {
                p += 1
                guard digits(&p) > 0 else { throw error("a fraction needs digits") }
            }
            if p < bytes.count, bytes[p] == UInt8(ascii: "e") || bytes[p] == UInt8(ascii: "E") {
                p += 1
                if p < bytes.count, bytes[p] == UInt8(ascii: "+") || bytes[p] == UInt8(ascii: "-") { p += 1 }
                guard digits(&p) > 0 else { throw error("an exponent needs digits") }
            }
            position = p
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<p]), as: UTF8.self)
            guard let value = Double(text), value.isFinite else { throw error("number \(text) is out of range") }
            return value
        }

        mutating func hex4() throws(APIError) -> UInt32 {
            guard position + 4 <= bytes.count else { throw error("truncated \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[position]
                let d: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
                default: throw error("bad \\u escape")
                }
                v = v << 4 | UInt32(d)
                position += 1
            }
            return v
        }

        mutating func string() throws(APIError) -> String {
            position += 1
            let start = position
            // Fast path: no escapes.
            while position < bytes.count {
                let c = bytes[position]
                if c == UInt8(ascii: "\"") {
                    let raw = UnsafeBufferPointer(rebasing: bytes[start..<position])
                    position += 1
                    guard let s = String(validating: raw, as: UTF8.self) else { throw error("a string is not valid UTF-8") }
                    return s
                }
                if c == UInt8(ascii: "\\") { break }
                guard c >= 0x20 else { throw error("a control character inside a string") }
                position += 1
            }
            var out = Array(UnsafeBufferPointer(rebasing: bytes[start..<position]))
            while position < bytes.count {
                let c = bytes[position]
                position += 1
                if c == UInt8(ascii: "\"") {
                    guard let s = String(validating: out, as: UTF8.self) else { throw error("a string is not valid UTF-8") }
                    return s
                }
                guard c >= 0x20 else { throw error("a control character inside a string") }
                guard c == UInt8(ascii: "\\") else { out.append(c); continue }
                guard position < bytes.count else { break }
                let e = bytes[position]
                position += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard position + 2 <= bytes.count, bytes[position] == UInt8(ascii: "\\"),
                              bytes[position + 1] == UInt8(ascii: "u") else { throw error("an unpaired surrogate") }
                        position += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("an unpaired surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw error("an unpaired surrogate") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw error("unknown escape \\\(Character(Unicode.Scalar(e)))")
                }
            }
            throw error("an unterminated string")
        }
    }
}

/// Writes JSON into a byte array: objects and arrays through closures,
/// commas placed for the caller.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []
    private var needsComma = false

    init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    private mutating func separate() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
        needsComma = true
    }

    /// `{ ... }`, as a value (in an array, or after ``key(_:)``).
    mutating func object(_ body: (inout JSONWriter) -> Void) {
        separate()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
        body(&self)
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    /// `[ ... ]`, as a value.
    mutating func array(_ body: (inout JSONWriter) -> Void) {
        separate()
        bytes.append(UInt8(ascii: "["))
        needsComma = false
        body(&self)
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    /// A field name; the next value written is its value.
    mutating func key(_ name: String) {
        separate()
        quoted(name)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    mutating func string(_ s: String) { separate(); quoted(s) }
    mutating func int(_ v: Int) { separate(); bytes.append(contentsOf: String(v).utf8) }
    mutating func bool(_ v: Bool) { separate(); bytes.append(contentsOf: (v ? "true" : "false").utf8) }
    mutating func null() { separate(); bytes.append(contentsOf: "null".utf8) }

    /// A finite number in its shortest round-trip form (never NaN or
    /// infinity, which JSON has no spelling for: those become 0).
    mutating func number(_ v: Double) {
        separate()
        guard v.isFinite else { bytes.append(UInt8(ascii: "0")); return }
        if v == v.rounded(), abs(v) < 1e15 { bytes.append(contentsOf: String(Int64(v)).utf8) } else {
            bytes.append(contentsOf: v.description.utf8)
        }
    }

    mutating func number(_ v: Float) {
        separate()
        guard v.isFinite else { bytes.append(UInt8(ascii: "0")); return }
        bytes.append(contentsOf: v.description.utf8)
    }

    mutating func floats(_ values: [Float]) {
        array { w in for v in values { w.number(v) } }
    }

    mutating func strings(_ values: [String]) {
        array { w in for v in values { w.string(v) } }
    }

    mutating func field(_ name: String, _ value: String) { key(name); string(value) }
    mutating func field(_ name: String, _ value: Int) { key(name); int(value) }
    mutating func field(_ name: String, _ value: Bool) { key(name); bool(value) }

    /// Pinecone 2026-07's `schema` of a dense index: its one vector field,
    /// `_values`.
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

    mutating func metadata(_ m: Metadata) {
        object { w in
            for name in m.keys.sorted() {
                w.key(name)
                switch m[name]! {
                case let .string(s): w.string(s)
                case let .number(n): w.number(n)
                case let .bool(b): w.bool(b)
                case let .strings(list): w.strings(list)
                }
            }
        }
    }

    mutating func json(_ value: JSONValue) {
        switch value {
        case .null: null()
        case let .bool(b): bool(b)
        case let .number(n): number(n)
        case let .string(s): string(s)
        case let .array(items): array { w in for item in items { w.json(item) } }
        case let .object(fields):
            object { w in for name in fields.keys.sorted() { w.key(name); w.json(fields[name]!) } }
        }
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    private mutating func quoted(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                          Self.hex[Int(c >> 4)], Self.hex[Int(c & 15)]])
            default: bytes.append(c)
            }
        }
        bytes.append(UInt8(ascii: "\""))
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
