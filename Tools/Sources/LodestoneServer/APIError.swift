import HTTPTypes
@_spi(LodestoneTools) import Lodestone

/// An error answered to a client: an HTTP status, Pinecone's code for it,
/// and a message the user can act on.
///
/// A client's mistake is always 4xx, never 5xx or 429: Pinecone's SDKs
/// retry those, so a bad request would be sent again and again. Features
/// Lodestone does not implement are 501, which no SDK retries.
struct APIError: Error, Sendable {
    var status: HTTPResponse.Status
    /// Pinecone's code string: `INVALID_ARGUMENT`, `NOT_FOUND`, ...
    var code: String
    var message: String

    static func badRequest(_ message: String) -> APIError {
        APIError(status: .badRequest, code: "INVALID_ARGUMENT", message: message)
    }

    static func notFound(_ message: String) -> APIError {
        APIError(status: .notFound, code: "NOT_FOUND", message: message)
    }

    static func notImplemented(_ what: String) -> APIError {
        APIError(status: .notImplemented, code: "UNIMPLEMENTED",
                 message: "\(what) is not supported by Lodestone's Pinecone-compatible server")
    }

    /// The gRPC status number Pinecone's data plane puts in `code`.
    var grpcCode: Int {
        switch code {
        case "INVALID_ARGUMENT": return 3
        case "NOT_FOUND": return 5
        case "ALREADY_EXISTS": return 6
        case "FORBIDDEN", "PERMISSION_DENIED": return 7
        case "RESOURCE_EXHAUSTED": return 8
        case "FAILED_PRECONDITION": return 9
        case "OUT_OF_RANGE": return 11
        case "UNIMPLEMENTED": return 12
        case "UNAUTHENTICATED": return 16
        default: return 2
        }
    }

    /// The body: both of Pinecone's error shapes at once, so every SDK
    /// finds the message (the control plane's `error.{code,message}` and
    /// `status`, the data plane's numeric `code`, `message` and `details`).
    var body: [UInt8] {
        var w = JSONWriter()
        w.object { w in
            w.key("error")
            w.object { w in
                w.field("code", code)
                w.field("message", message)
            }
            w.field("status", status.code)
            w.field("code", grpcCode)
            w.field("message", message)
            w.key("details")
            w.array { _ in }
        }
        return w.bytes
    }

    /// A library error as the client sees it.
    init(_ error: LodestoneError) {
        let message = error.description
        switch error {
        case .indexNotFound:
            self = APIError(status: .notFound, code: "NOT_FOUND", message: message)
        case .recordNotFound:
            self = APIError(status: .notFound, code: "NOT_FOUND", message: message)
        case .indexAlreadyExists:
            self = APIError(status: .conflict, code: "ALREADY_EXISTS", message: message)
        case .directoryLocked, .readOnly:
            self = APIError(status: .init(code: 412), code: "FAILED_PRECONDITION", message: message)
        case .indexClosed:
            self = APIError(status: .init(code: 412), code: "FAILED_PRECONDITION",
                            message: "\(message) (the server is shutting down)")
        case .cancelled:
            self = APIError(status: .serviceUnavailable, code: "UNAVAILABLE", message: message)
        case .corruptSegment, .unsupportedFormatVersion, .io:
            // The server's own files: a real failure, not the client's.
            self = APIError(status: .internalServerError, code: "UNKNOWN", message: message)
        case .dimensionMismatch, .nonFiniteComponent, .zeroVector, .invalidArgument, .emptyIndex, .keyNotFound,
             .duplicateKey, .malformedFile, .invalidFilter, .invalidMetadata, .embeddingModelMismatch, .invalidID,
             .malformedLine:
            self = APIError(status: .badRequest, code: "INVALID_ARGUMENT", message: message)
        }
    }

    init(status: HTTPResponse.Status, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }
}

/// Runs a library call, turning its error into an ``APIError``.
@inline(__always)
func library<T>(_ body: () throws(LodestoneError) -> T) throws(APIError) -> T {
    do {
        return try body()
    } catch {
        throw APIError(error)
    }
}
