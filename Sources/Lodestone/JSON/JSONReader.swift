// A strict JSON reader (RFC 8259) that says where a text is wrong. Bodies,
// filters, metadata lines and import files are read through it: it builds
// ``JSONValue`` directly, without Codable's existential containers.

/// Why a text is not JSON, and where.
public struct JSONSyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What is wrong ("truncated", "leading zeros", ...).
    public let reason: String
    /// The byte offset at which the reader stopped.
    public let offset: Int

    /// An error at byte `offset`.
    public init(reason: String, offset: Int) {
        self.reason = reason
        self.offset = offset
    }

    public var description: String { "\(reason) (at byte \(offset))" }
}

/// The strict reader behind ``JSONValue/parse(bytes:)``.
enum JSONReader {
    /// Nesting deeper than this is refused (no recursion without bound).
    static let maximumDepth = 64

    /// Parses a whole document.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(JSONSyntaxError) -> JSONValue {
        var parser = Parser(bytes: bytes)
        parser.skipSpace()
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.position == bytes.count else { throw parser.error("unexpected text after the JSON value") }
        return value
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var position = 0

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        func error(_ reason: String) -> JSONSyntaxError { JSONSyntaxError(reason: reason, offset: position) }

        mutating func skipSpace() {
            while position < bytes.count {
                switch bytes[position] {
                case 0x20, 0x09, 0x0A, 0x0D: position += 1
                default: return
                }
            }
        }

        mutating func expect(_ literal: StaticString, _ value: JSONValue) throws(JSONSyntaxError) -> JSONValue {
            let n = literal.utf8CodeUnitCount
            guard position + n <= bytes.count else { throw error("truncated") }
            for i in 0..<n where bytes[position + i] != literal.utf8Start[i] { throw error("unknown literal") }
            position += n
            return value
        }

        mutating func value(depth: Int) throws(JSONSyntaxError) -> JSONValue {
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

        mutating func object(depth: Int) throws(JSONSyntaxError) -> JSONValue {
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

        mutating func array(depth: Int) throws(JSONSyntaxError) -> JSONValue {
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

        /// Exact powers of ten a double holds (10^0 ... 10^22).
        private static let powersOfTen: [Double] = (0...22).map { e in (0..<e).reduce(1.0) { r, _ in r * 10 } }

        mutating func number() throws(JSONSyntaxError) -> Double {
            let start = position
            // Significant digits (at most 19 kept) and the power of ten they
            // are scaled by, gathered while the grammar is checked.
            var mantissa: UInt64 = 0, kept = 0, dropped = false, scale = 0, saturated = false
            func digits(_ p: inout Int, fraction: Bool) -> Int {
                let s = p
                while p < bytes.count, bytes[p] >= UInt8(ascii: "0"), bytes[p] <= UInt8(ascii: "9") {
                    let d = UInt64(bytes[p] &- UInt8(ascii: "0"))
                    if mantissa == 0 && d == 0 {
                        if fraction { scale -= 1 }
                    } else if kept < 19 {
                        mantissa = mantissa &* 10 &+ d
                        kept += 1
                        if fraction { scale -= 1 }
                    } else {
                        dropped = dropped || d != 0
                        if !fraction { scale += 1 }
                    }
                    p += 1
                }
                return p - s
            }
            var p = position
            let negative = bytes[p] == UInt8(ascii: "-")
            if negative { p += 1 }
            let intStart = p
            guard digits(&p, fraction: false) > 0 else { throw error("a number needs digits") }
            guard !(bytes[intStart] == UInt8(ascii: "0") && p - intStart > 1) else { throw error("leading zeros") }
            if p < bytes.count, bytes[p] == UInt8(ascii: ".") {
                p += 1
                guard digits(&p, fraction: true) > 0 else { throw error("a fraction needs digits") }
            }
            if p < bytes.count, bytes[p] == UInt8(ascii: "e") || bytes[p] == UInt8(ascii: "E") {
                p += 1
                var sign = 1
                if p < bytes.count, bytes[p] == UInt8(ascii: "+") || bytes[p] == UInt8(ascii: "-") {
                    if bytes[p] == UInt8(ascii: "-") { sign = -1 }
                    p += 1
                }
                let e0 = p
                var exponent = 0
                while p < bytes.count, bytes[p] >= UInt8(ascii: "0"), bytes[p] <= UInt8(ascii: "9") {
                    exponent = exponent * 10 + Int(bytes[p] - UInt8(ascii: "0"))
                    // Past any double's range: the slow path decides.
                    if exponent > 100_000 { exponent = 100_000; saturated = true }
                    p += 1
                }
                guard p > e0 else { throw error("an exponent needs digits") }
                scale += sign * exponent
            }
            position = p
            // Clinger's fast path: a mantissa below 2^53 times or over an
            // exact power of ten rounds once, so the result is the correctly
            // rounded double (every float32's shortest form takes it).
            if !dropped, !saturated, mantissa <= 1 << 53, scale >= -22, scale <= 22 {
                let m = Double(mantissa)
                let value = scale >= 0 ? m * Self.powersOfTen[scale] : m / Self.powersOfTen[-scale]
                return negative ? -value : value
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<p]), as: UTF8.self)
            guard let value = Double(text), value.isFinite else { throw error("number \(text) is out of range") }
            return value
        }

        mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
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

        mutating func string() throws(JSONSyntaxError) -> String {
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
