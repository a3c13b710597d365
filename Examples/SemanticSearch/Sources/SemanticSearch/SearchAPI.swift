import Foundation
import Hummingbird
import Lodestone
import LodestoneService
import NIOCore
import Prometheus

/// The HTTP API (JSON in and out):
/// - `POST /search` `{"vector": [384 numbers] | "vectorBase64": "<little-endian float32>",
///   "topK": 10, "filter": {Pinecone filter}, "ef": 64, "includeMetadata": true}`
///   → `{"matches": [{"id", "score", "metadata"?}]}`
/// - `POST /raw/search`: the same query on the bare `Index`, without the
///   service's metrics and spans (to measure what they cost).
/// - `POST /documents` `{"records": [{"id", "values", "metadata"?}]}` → `{"upserted": n}`
/// - `GET /documents/{id}` → the record's id and metadata (404 when absent)
/// - `GET /metrics`: Prometheus text; `GET /health`: `ok`.
///
/// A client's mistake gets a 400 naming it; a missing record a 404; a
/// write during shutdown a 503.
struct SearchAPI: Sendable {
    let index: ServiceIndex
    let service: LodestoneService
    let registry: PrometheusCollectorRegistry
    static let maxBodyBytes = 8 << 20

    func register(on router: Router<BasicRequestContext>) {
        router.get("health") { _, _ in "ok" }
        router.post("search") { request, _ in try await answer { try await search(request, instrumented: true) } }
        router.post("raw/search") { request, _ in try await answer { try await search(request, instrumented: false) } }
        router.post("documents") { request, _ in try await answer { try await upsert(request) } }
        router.get("documents/:id") { _, context in
            try await answer { try fetch(context.parameters.require("id")) }
        }
        router.get("metrics") { _, _ in
            service.collectMetrics()
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
    }

    // MARK: Handlers

    func search(_ request: Request, instrumented: Bool) async throws -> String {
        let body = try await Self.json(request)
        let vector = try Self.vector(body)
        let topK = try Self.integer(body, "topK") ?? 10
        let ef = try Self.integer(body, "ef")
        let includeMetadata = body["includeMetadata"].map { $0 == .bool(true) } ?? true
        let filter: Filter? = try body["filter"].map { json throws(LodestoneError) in try Filter(json: json) }
        // A query takes microseconds: it runs here, on the request's task.
        let response = instrumented
            ? try index.query(vector: vector, topK: topK, filter: filter, includeMetadata: includeMetadata, ef: ef)
            : try index.index.query(vector: vector, topK: topK, filter: filter, includeMetadata: includeMetadata, ef: ef)
        var out = #"{"matches":["#
        for (i, match) in response.matches.enumerated() {
            if i > 0 { out += "," }
            out += #"{"id":\#(JSONValue.string(match.id).jsonText),"score":\#(match.score)"#
            if let metadata = match.metadata { out += #","metadata":\#(metadata.jsonText)"# }
            out += "}"
        }
        return out + "]}"
    }

    func upsert(_ request: Request) async throws -> String {
        let body = try await Self.json(request)
        guard case let .array(items)? = body["records"] else {
            throw APIError(.badRequest, #""records": an array of {"id", "values", "metadata"} is required"#)
        }
        var records: [Record] = []
        for (i, item) in items.enumerated() {
            guard case let .string(id)? = item["id"] else {
                throw APIError(.badRequest, "records[\(i)].id: a string is required")
            }
            let values = try Self.floats(item["values"], field: "records[\(i)].values")
            let metadata = try item["metadata"].map { json throws(LodestoneError) in try Metadata.from(json: json) }
            records.append(Record(id: id, values: values, metadata: metadata))
        }
        // Waits for the log's sync on Lodestone's threads, not this event loop's.
        let n = try await index.upsert(records)
        return #"{"upserted":\#(n)}"#
    }

    func fetch(_ id: String) throws -> String {
        guard let record = try index.fetch(ids: [id])[id] else {
            throw APIError(.notFound, "no record with id \(id)")
        }
        return #"{"id":\#(JSONValue.string(record.id).jsonText),"metadata":\#((record.metadata ?? [:]).jsonText)}"#
    }

    // MARK: Reading requests, answering

    /// Runs a handler, answering JSON; a Lodestone error becomes the status it deserves.
    func answer(_ body: () async throws -> String) async throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        do {
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: try await body())))
        } catch let error as APIError {
            return Self.failure(error.status, error.message, headers: headers)
        } catch let error as LodestoneError {
            let status: HTTPResponse.Status = switch error {
            case .recordNotFound, .indexNotFound: .notFound
            case .indexClosed: .serviceUnavailable
            case .io, .corruptSegment, .malformedFile, .unsupportedFormatVersion, .directoryLocked: .internalServerError
            default: .badRequest
            }
            return Self.failure(status, error.description, headers: headers)
        }
    }

    /// `{"error": "<what went wrong>"}` with `status`.
    static func failure(_ status: HTTPResponse.Status, _ message: String, headers: HTTPFields) -> Response {
        let text = #"{"error":\#(JSONValue.string(message).jsonText)}"#
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func json(_ request: Request) async throws -> JSONValue {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "the body is over \(maxBodyBytes) bytes")
        }
        do {
            return try buffer.withUnsafeReadableBytes { bytes in try JSONValue.parse(bytes: bytes) }
        } catch let error as JSONSyntaxError {
            throw APIError(.badRequest, "the body is not JSON: \(error)")
        }
    }

    /// The query vector: `vector` (JSON numbers) or `vectorBase64`
    /// (little-endian float32, as OpenAI's `encoding_format: "base64"` sends them).
    static func vector(_ body: JSONValue) throws -> [Float] {
        if case let .string(text)? = body["vectorBase64"] {
            guard let data = Data(base64Encoded: text), data.count % 4 == 0 else {
                throw APIError(.badRequest, "vectorBase64: base64 of little-endian float32 values is required")
            }
            return data.withUnsafeBytes { raw in
                (0..<data.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
        }
        return try floats(body["vector"], field: "vector")
    }

    static func floats(_ json: JSONValue?, field: String) throws -> [Float] {
        guard case let .array(items)? = json else {
            throw APIError(.badRequest, "\(field): an array of numbers is required")
        }
        var out: [Float] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard case let .number(x) = item else { throw APIError(.badRequest, "\(field): numbers only") }
            out.append(Float(x))
        }
        return out
    }

    static func integer(_ body: JSONValue, _ field: String) throws -> Int? {
        guard let value = body[field] else { return nil }
        guard case let .number(x) = value, x == x.rounded(), abs(x) < 1e9 else {
            throw APIError(.badRequest, "\(field): an integer is required")
        }
        return Int(x)
    }
}

/// A client's mistake, answered with `status` and `{"error": message}`.
struct APIError: Error {
    let status: HTTPResponse.Status
    let message: String
    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }
}
