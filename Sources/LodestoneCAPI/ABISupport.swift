// Shared machinery of the C ABI (lodestone.h): errors and status codes,
// handles, and checking every argument before the engine sees it.
import Lodestone

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The ABI version this library implements (`LDS_ABI_VERSION`).
let abiVersion: UInt32 = 4

/// A C `lds_error`: a status code and a NUL-terminated message.
final class ErrorBox {
    let code: Int32
    let message: UnsafeMutablePointer<CChar>

    init(code: Int32, message: String) {
        self.code = code
        self.message = strdup(message)!
    }

    deinit { free(message) }
}

/// `LDS_E_*` for an engine error.
func statusCode(_ error: LodestoneError) -> Int32 {
    switch error {
    case .invalidArgument: return 1
    case .dimensionMismatch: return 2
    case .nonFiniteComponent: return 3
    case .zeroVector: return 4
    case .emptyIndex: return 5
    case .keyNotFound: return 6
    case .duplicateKey: return 7
    case .malformedFile: return 8
    case .corruptSegment: return 9
    case .unsupportedFormatVersion: return 10
    case .invalidFilter: return 11
    case .invalidMetadata: return 12
    case .io: return 13
    case .indexNotFound: return 14
    case .indexAlreadyExists: return 15
    case .indexClosed: return 16
    case .directoryLocked: return 17
    case .embeddingModelMismatch: return 18
    case .invalidID: return 19
    case .recordNotFound: return 20
    case .malformedLine: return 21
    case .readOnly: return 22
    case .cancelled: return 23
    }
}

/// The `lds_error **err` out-parameter.
public typealias ErrorOut = UnsafeMutablePointer<OpaquePointer?>?

/// Runs `body`, turning a thrown error into a status code and, when the
/// caller asked for it, an `lds_error`.
@inline(__always)
func withStatus(_ err: ErrorOut, _ body: () throws(LodestoneError) -> Void) -> Int32 {
    err?.pointee = nil
    do {
        try body()
        return 0
    } catch {
        let code = statusCode(error)
        if let err { err.pointee = retain(ErrorBox(code: code, message: error.description)) }
        return code
    }
}

/// A new handle: the object, retained once, as an opaque pointer.
func retain(_ object: AnyObject) -> OpaquePointer {
    OpaquePointer(Unmanaged.passRetained(object).toOpaque())
}

/// The object behind a handle, checked to be a `T` (a handle of another
/// type is an invalid argument, not a crash).
@inline(__always)
func object<T: AnyObject>(_ handle: OpaquePointer?, _ type: T.Type, name: String) throws(LodestoneError) -> T {
    guard let handle else { throw .invalidArgument(name: name, reason: "is NULL") }
    let any = Unmanaged<AnyObject>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
    guard let typed = any as? T else {
        throw .invalidArgument(name: name, reason: "is not a \(T.self) handle")
    }
    return typed
}

/// Releases a handle made by ``retain(_:)`` (NULL is ignored).
func release(_ handle: OpaquePointer?) {
    guard let handle else { return }
    Unmanaged<AnyObject>.fromOpaque(UnsafeRawPointer(handle)).release()
}

/// Argument checks: each throws `invalidArgument` naming the argument.
enum Check {
    static func pointer<T>(_ p: UnsafePointer<T>?, _ name: String) throws(LodestoneError) -> UnsafePointer<T> {
        guard let p else { throw .invalidArgument(name: name, reason: "is NULL") }
        return p
    }

    static func pointer<T>(_ p: UnsafeMutablePointer<T>?, _ name: String) throws(LodestoneError) -> UnsafeMutablePointer<T> {
        guard let p else { throw .invalidArgument(name: name, reason: "is NULL") }
        return p
    }

    static func count(_ n: Int64, _ name: String, atLeast minimum: Int64 = 0, atMost maximum: Int64 = Int64(Int32.max))
        throws(LodestoneError) -> Int
    {
        guard n >= minimum, n <= maximum else {
            throw .invalidArgument(name: name, reason: "must be in \(minimum)...\(maximum), got \(n)")
        }
        return Int(n)
    }

    /// `a * b` floats, refusing a product that overflows or exceeds 2^40.
    static func product(_ a: Int, _ b: Int, _ name: String) throws(LodestoneError) -> Int {
        let (p, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow, p <= 1 << 40 else {
            throw .invalidArgument(name: name, reason: "\(a) x \(b) elements is too large")
        }
        return p
    }

    static func metric(_ code: Int32) throws(LodestoneError) -> Metric {
        switch code {
        case 0: return .cosine
        case 1: return .euclidean
        case 2: return .dotProduct
        default: throw .invalidArgument(name: "metric", reason: "must be 0 (cosine), 1 (euclidean) or 2 (dot product), got \(code)")
        }
    }

    static func kind(_ code: Int32) throws(LodestoneError) -> IndexKind {
        switch code {
        case 0: return .hnsw
        case 1: return .flat
        case 2: return .sparse
        default: throw .invalidArgument(name: "kind", reason: "must be 0 (HNSW), 1 (flat) or 2 (sparse), got \(code)")
        }
    }

    static func traversal(_ code: Int32) throws(LodestoneError) -> HNSWParameters.Traversal {
        switch code {
        case 0: return .exact
        case 1: return .quantized
        case 2: return .compact
        default:
            throw .invalidArgument(name: "traversal", reason: "must be 0 (exact), 1 (quantized) or 2 (compact), got \(code)")
        }
    }

    static func durability(_ code: Int32) throws(LodestoneError) -> Durability {
        switch code {
        case 0: return .synchronous
        case 1: return .groupCommit
        case 2: return .none
        default:
            throw .invalidArgument(name: "durability", reason: "must be 0 (synchronous), 1 (group commit) or 2 (none), got \(code)")
        }
    }

    static func threads(_ n: Int32) throws(LodestoneError) -> Int {
        guard n >= 1, n <= 1024 else { throw .invalidArgument(name: "threads", reason: "must be in 1...1024, got \(n)") }
        return Int(n)
    }

    /// A NUL-terminated UTF-8 string; nil stays nil. Bytes that are not
    /// UTF-8 are refused (repairing them would store another string).
    static func optionalString(_ p: UnsafePointer<CChar>?, _ name: String) throws(LodestoneError) -> String? {
        guard let p else { return nil }
        return try utf8(UnsafeRawBufferPointer(start: p, count: strlen(p)), name)
    }

    /// A namespace (NULL is the default namespace, "").
    static func namespace(_ p: UnsafePointer<CChar>?) throws(LodestoneError) -> String {
        try optionalString(p, "namespace") ?? ""
    }

    /// A required NUL-terminated UTF-8 string.
    static func string(_ p: UnsafePointer<CChar>?, _ name: String) throws(LodestoneError) -> String {
        guard let s = try optionalString(p, name) else { throw .invalidArgument(name: name, reason: "is NULL") }
        return s
    }

    /// Bytes as a string, refusing any that are not UTF-8.
    static func utf8(_ bytes: UnsafeRawBufferPointer, _ name: String) throws(LodestoneError) -> String {
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw .invalidArgument(name: name, reason: "is not valid UTF-8")
        }
        return s
    }

    /// `n` floats as an array.
    static func floats(_ p: UnsafePointer<Float>?, count n: Int, _ name: String) throws(LodestoneError) -> [Float] {
        if n == 0 { return [] }
        let p = try pointer(p, name)
        return Array(UnsafeBufferPointer(start: p, count: n))
    }

    /// A string array: `n` strings in `bytes` at `offsets[0...n]`.
    static func strings(_ bytes: UnsafePointer<CChar>?, _ offsets: UnsafePointer<Int64>?, count n: Int, _ name: String)
        throws(LodestoneError) -> [String]
    {
        if n == 0 { return [] }
        let offsets = try pointer(offsets, name + " offsets")
        guard offsets[0] == 0 else { throw .invalidArgument(name: name + " offsets", reason: "must start at 0") }
        for i in 0..<n where offsets[i + 1] < offsets[i] {
            throw .invalidArgument(name: name + " offsets", reason: "decrease at \(i + 1)")
        }
        guard offsets[n] <= 1 << 40 else { throw .invalidArgument(name: name + " offsets", reason: "too large") }
        if offsets[n] == 0 { return [String](repeating: "", count: n) }
        let base = UnsafeRawPointer(try pointer(bytes, name))
        var out: [String] = []
        out.reserveCapacity(n)
        for i in 0..<n {
            out.append(try utf8(UnsafeRawBufferPointer(start: base + Int(offsets[i]), count: Int(offsets[i + 1] - offsets[i])),
                                "\(name)[\(i)]"))
        }
        return out
    }

    /// A filter from JSON text; nil stays nil.
    static func filter(_ p: UnsafePointer<CChar>?) throws(LodestoneError) -> Filter? {
        guard let text = try optionalString(p, "filter_json") else { return nil }
        return try Filter(json: text)
    }

    /// Metadata from a JSON object's text; "" is no metadata.
    static func metadata(_ text: String) throws(LodestoneError) -> Metadata? {
        if text.isEmpty { return nil }
        let json: JSONValue
        do throws(LodestoneError) {
            json = try JSONValue.parse(text)
        } catch let .invalidFilter(_, reason) {
            throw .invalidMetadata(field: "", reason: reason)  // the parser's words, without "filter"
        }
        return try Metadata.from(json: json)
    }
}

/// A static C string for the lifetime of the process.
func staticCString(_ s: String) -> UnsafePointer<CChar> {
    UnsafePointer(strdup(s)!)
}

// MARK: Library and errors

@_cdecl("lds_abi_version")
public func lds_abi_version() -> UInt32 { abiVersion }

nonisolated(unsafe) private let versionString = staticCString(LodestoneVersion.string)

@_cdecl("lds_version")
public func lds_version() -> UnsafePointer<CChar> { versionString }

nonisolated(unsafe) private let kernelString = staticCString(DistanceKernels.active.isa.rawValue)

@_cdecl("lds_kernel_name")
public func lds_kernel_name() -> UnsafePointer<CChar> { kernelString }

@_cdecl("lds_error_code")
public func lds_error_code(_ error: OpaquePointer?) -> Int32 {
    (try? object(error, ErrorBox.self, name: "error"))?.code ?? 1
}

nonisolated(unsafe) private let notAnError = staticCString("not an lds_error")

@_cdecl("lds_error_message")
public func lds_error_message(_ error: OpaquePointer?) -> UnsafePointer<CChar> {
    (try? object(error, ErrorBox.self, name: "error")).map { UnsafePointer($0.message) } ?? notAnError
}

@_cdecl("lds_error_free")
public func lds_error_free(_ error: OpaquePointer?) { release(error) }
