import Foundation
import Testing
import Lodestone
@testable import LodestoneServer

@Suite("lodestone serve: JSON on the wire, requests, errors")
struct ServerWireTests {
    static func parse(_ text: String) throws(APIError) -> JSONValue { try JSONReader.parse(Array(text.utf8)) }

    @Test("the reader takes what JSONSerialization takes, and gives the same values")
    func readerAgreesWithFoundation() throws {
        let documents = [
            #"{"a": [1, -2.5, 1e-7, 3E+2, 0], "b": {"c": null, "d": true, "e": false}, "f": "x\"y\\z\/\n\u00e9\ud83d\ude00"}"#,
            "[]", "{}", "  [ 1 , 2 ]  ", #""plain""#, "-0.0", "12345678901234", #"[{"k": [[], {}]}]"#,
        ]
        for text in documents {
            let ours = try Self.parse(text)
            let theirs = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
            #expect(Self.same(ours, theirs), "\(text)")
        }
    }

    static func same(_ a: JSONValue, _ b: Any) -> Bool {
        switch a {
        case .null: return b is NSNull
        case let .bool(x): return (b as? Bool) == x
        case let .number(x): return (b as? NSNumber).map { $0.doubleValue == x } ?? false
        case let .string(x): return (b as? String) == x
        case let .array(items):
            guard let other = b as? [Any], other.count == items.count else { return false }
            return zip(items, other).allSatisfy { same($0, $1) }
        case let .object(fields):
            guard let other = b as? [String: Any], other.count == fields.count else { return false }
            return fields.allSatisfy { k, v in other[k].map { same(v, $0) } ?? false }
        }
    }

    @Test("malformed JSON is a 400 that says what and where, for every kind of mistake")
    func readerRefusesMalformed() {
        let bad = ["", "{", "[1,", #"{"a" 1}"#, #"{"a": 1,}"#, "[1 2]", "01", "1.", ".5", "1e", "-", "+1", "tru",
                   "nul", #""unterminated"#, "\"tab\there\"", #""\x""#, #""\u12""#, #""\ud800""#, #""\udc00x""#,
                   "[1] [2]", "NaN", "Infinity", "1e999", "{1: 2}", String(repeating: "[", count: 100) +
                       String(repeating: "]", count: 100)]
        for text in bad {
            do {
                _ = try Self.parse(text)
                Issue.record("accepted \(text.prefix(40))")
            } catch {
                #expect(error.status == .badRequest && error.message.contains("at byte"), "\(text.prefix(40))")
            }
        }
        // Bytes that are not UTF-8 inside a string.
        #expect(throws: APIError.self) { try JSONReader.parse([0x22, 0xFF, 0xFE, 0x22]) }
    }

    @Test("the writer's output reads back to the same values (numbers round-trip, strings escaped)")
    func writerRoundTrips() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let floats = (0..<16).map { _ in Float.random(in: -1e6...1e6, using: &rng) * (Bool.random() ? 1e-9 : 1) }
            let text = String((0..<12).map { _ in Character(Unicode.Scalar(UInt8.random(in: 0...127, using: &rng))) }) + "é😀"
            let metadata: Metadata = ["s": .string(text), "n": .number(Double(floats[0])), "b": true, "l": ["a", text]]
            var w = JSONWriter()
            w.object { w in
                w.key("v"); w.floats(floats)
                w.key("m"); w.metadata(metadata)
                w.field(text, 42)
            }
            let back = try Fields(try JSONReader.parse(w.bytes))
            #expect(try back.floats("v") == floats)
            #expect(try Metadata.from(json: back.raw("m")!) == metadata)
            #expect(try back.int(text, in: 0...100) == 42)
        }
    }

    @Test("fields give typed errors naming the field")
    func fieldsAreTyped() throws {
        let f = try Fields(try Self.parse(#"{"topK": 2.5, "v": [1, "x"], "big": [1e300], "s": 3, "n": null}"#))
        for (attempt, words) in [({ _ = try f.int("topK", in: 1...10) }, "\"topK\""),
                                 ({ _ = try f.floats("v") }, "array of numbers"),
                                 ({ _ = try f.floats("big") }, "out of range"),
                                 ({ _ = try f.string("s") }, "a string")] as [(() throws -> Void, String)] {
            do {
                try attempt()
                Issue.record("no error for \(words)")
            } catch let error as APIError {
                #expect(error.status == .badRequest && error.message.contains(words), "\(error.message)")
            }
        }
        #expect(try f.string("n") == nil)  // null is absent
        #expect(throws: APIError.self) { try Fields(.array([])) }
    }

    @Test("paths and queries are percent-decoded; + is a space in queries; bad escapes are 400")
    func requestDecoding() throws {
        let r = try ServerRequest(method: .get, path: "/_data/docs/vectors/fetch?ids=doc%231&ids=a+b&namespace=&x",
                                  body: [], host: "h")
        #expect(r.segments == ["_data", "docs", "vectors", "fetch"])
        #expect(r.parameters("ids") == ["doc#1", "a b"])
        #expect(r.parameter("namespace") == "")
        #expect(r.parameter("x") == "")
        #expect(try ServerRequest(method: .get, path: "/indexes/a%2Fb", body: [], host: "h").segments == ["indexes", "a/b"])
        for path in ["/indexes/%zz", "/indexes/%f", "/indexes/%ff%fe"] {
            #expect(throws: APIError.self) { try ServerRequest(method: .get, path: path, body: [], host: "h") }
        }
    }

    @Test("library errors map to the statuses the SDKs expect; a client's mistake is never 5xx")
    func errorMapping() throws {
        let cases: [(LodestoneError, Int)] = [
            (.indexNotFound(name: "x"), 404), (.recordNotFound(id: "a", namespace: ""), 404),
            (.indexAlreadyExists(name: "x"), 409), (.dimensionMismatch(expected: 3, actual: 2), 400),
            (.zeroVector, 400), (.invalidFilter(path: "a", reason: "b"), 400), (.invalidMetadata(field: "f", reason: "r"), 400),
            (.invalidID(id: "", reason: "empty"), 400), (.nonFiniteComponent(index: 0, value: .nan), 400),
            (.directoryLocked(path: "/x", inThisProcess: false), 412), (.io(path: "/x", operation: "open", errno: 5), 500),
        ]
        for (error, status) in cases {
            let api = APIError(error)
            #expect(api.status.code == status, "\(error)")
            let body = try? Fields(try JSONReader.parse(api.body))
            #expect(try body?.object("error")?.string("message") == error.description)
            #expect(try body?.int("status", in: 0...999) == status)
        }
    }

    @Test("a backup folder without its backup.json (a crash mid-backup) is removed when the server starts; complete ones stay")
    func interruptedBackupIsSwept() throws {
        let db = NSTemporaryDirectory() + "lodestone-backups-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: db) }
        let store = try BackupStore(database: db)
        let record = BackupRecord(id: "bk-done", sourceIndex: "docs", name: nil, description: nil, dimension: 4,
                                  metric: "cosine", recordCount: 1, namespaceCount: 1, sizeBytes: 0, cloud: "aws",
                                  region: "us-east-1", createdAt: 0)
        try FileManager.default.createDirectory(atPath: store.path("bk-done") + "/index", withIntermediateDirectories: true)
        try store.store(record)
        // What a crash between the snapshot and backup.json leaves behind.
        try FileManager.default.createDirectory(atPath: store.path("bk-torn") + "/index", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: store.path("bk-torn") + "/index/segment-1.lodestone", contents: Data([1, 2, 3]))
        #expect(store.all().map(\.id) == ["bk-done"])
        let restarted = try BackupStore(database: db)
        let left = try FileManager.default.contentsOfDirectory(atPath: restarted.directory).sorted()
        #expect(left == ["bk-done"])
        #expect(restarted.all().map(\.id) == ["bk-done"])
    }
}
