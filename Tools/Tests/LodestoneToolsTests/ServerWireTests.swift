import Foundation
import Testing
@_spi(LodestoneTools) import Lodestone
@testable import LodestoneServer

@Suite("lodestone serve: JSON on the wire, requests, errors")
struct ServerWireTests {
    static func parse(_ text: String) throws(APIError) -> JSONValue { try parseBody(Array(text.utf8)) }

    @Test("a malformed body is a 400 that says what and where")
    func malformedBodyIs400() {
        for text in ["", "{", #"{"a": 1,}"#, "NaN"] {
            do {
                _ = try Self.parse(text)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.status == .badRequest && error.message.contains("not valid JSON") && error.message.contains("at byte"),
                        "\(text): \(error.message)")
            }
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
            let body = try? Fields(try parseBody(api.body))
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
        _ = FileManager.default.createFile(atPath: store.path("bk-torn") + "/index/segment-1.lodestone", contents: Data([1, 2, 3]))
        #expect(store.all().map(\.id) == ["bk-done"])
        let restarted = try BackupStore(database: db)
        let left = try FileManager.default.contentsOfDirectory(atPath: restarted.directory).sorted()
        #expect(left == ["bk-done"])
        #expect(restarted.all().map(\.id) == ["bk-done"])
    }
}
