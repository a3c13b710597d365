@_spi(LodestoneTools) import Lodestone
import HTTPTypes

/// One request as the handlers see it: the method, the path's segments
/// (percent-decoded), the query's pairs (percent-decoded, `+` as a space,
/// repeated keys kept), the whole body, and the host the client called.
struct ServerRequest: Sendable {
    var method: HTTPRequest.Method
    var segments: [String]
    var query: [(String, String)]
    var body: [UInt8]
    /// The `Host` header (what the client used to reach us), or the
    /// configured public host.
    var host: String

    init(method: HTTPRequest.Method, path: String, body: [UInt8], host: String) throws(APIError) {
        self.method = method
        self.body = body
        self.host = host
        let (pathPart, queryPart) = Self.split(path)
        segments = try pathPart.split(separator: "/", omittingEmptySubsequences: true).map {
            (segment) throws(APIError) -> String in try Self.decode(segment, plusIsSpace: false)
        }
        query = []
        for pair in (queryPart ?? "").split(separator: "&", omittingEmptySubsequences: true) {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            query.append((try Self.decode(kv[0], plusIsSpace: true),
                          kv.count > 1 ? try Self.decode(kv[1], plusIsSpace: true) : ""))
        }
    }

    private static func split(_ path: String) -> (Substring, Substring?) {
        guard let q = path.firstIndex(of: "?") else { return (path[...], nil) }
        return (path[..<q], path[path.index(after: q)...])
    }

    /// Percent-decoding (and `+` as a space in queries, as form encoding
    /// writes it); the result must be UTF-8.
    static func decode(_ text: Substring, plusIsSpace: Bool) throws(APIError) -> String {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "%") || (plusIsSpace && $0 == UInt8(ascii: "+")) }) else {
            return String(text)
        }
        var out: [UInt8] = []
        var it = Array(text.utf8)[...]
        func hexValue(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        while let c = it.popFirst() {
            if c == UInt8(ascii: "%") {
                guard it.count >= 2, let hi = hexValue(it[it.startIndex]), let lo = hexValue(it[it.startIndex + 1]) else {
                    throw .badRequest("bad percent-escape in the URL: \(text)")
                }
                out.append(hi << 4 | lo)
                it = it.dropFirst(2)
            } else if plusIsSpace && c == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
            } else {
                out.append(c)
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw .badRequest("the URL is not UTF-8: \(text)") }
        return s
    }

    /// The last value of a query parameter.
    func parameter(_ name: String) -> String? { query.last { $0.0 == name }?.1 }

    /// Every value of a repeated query parameter (`ids=a&ids=b`).
    func parameters(_ name: String) -> [String] { query.filter { $0.0 == name }.map(\.1) }

    /// An integer query parameter in `range`.
    func intParameter(_ name: String, in range: ClosedRange<Int>) throws(APIError) -> Int? {
        guard let text = parameter(name), !text.isEmpty else { return nil }
        guard let v = Int(text), range.contains(v) else {
            throw .badRequest("query parameter \"\(name)\" must be an integer in \(range.lowerBound)...\(range.upperBound), "
                              + "not \"\(text)\"")
        }
        return v
    }

    /// The body as a JSON object (an empty body is `{}`).
    func fields() throws(APIError) -> Fields {
        guard !body.isEmpty else { return try Fields(.object([:])) }
        return try Fields(try parseBody(body))
    }
}

/// A JSON answer.
struct Reply: Sendable {
    var status: HTTPResponse.Status
    var body: [UInt8]

    init(_ status: HTTPResponse.Status = .ok, _ write: (inout JSONWriter) -> Void) {
        self.status = status
        var w = JSONWriter()
        write(&w)
        body = w.bytes
    }

    init(error: APIError) {
        status = error.status
        body = error.body
    }

    /// `{}`, which every SDK accepts where it expects no fields.
    static let empty = Reply { w in w.object { _ in } }
}
