#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Every error Lodestone throws.
///
/// Each case carries what a caller needs to act on it; `description` renders a
/// message written for the person reading the log. Cases are matchable, so code
/// never has to parse messages.
public enum LodestoneError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A vector (or query) has `actual` components where the index holds `expected`.
    case dimensionMismatch(expected: Int, actual: Int)
    /// A vector has a NaN or infinite component at `index`.
    case nonFiniteComponent(index: Int, value: Float)
    /// A zero vector was given to a cosine index, where it has no direction.
    case zeroVector
    /// An argument is outside its valid range; `name` says which.
    case invalidArgument(name: String, reason: String)
    /// A search ran on an index that holds no vectors.
    case emptyIndex
    /// No vector is stored under `key`.
    case keyNotFound(UInt64)
    /// A vector is already stored under `key` (or a batch names it twice).
    case duplicateKey(UInt64)
    /// A file could not be read as the format it claims to be.
    case malformedFile(path: String, reason: String)
    /// A segment file fails validation: `section` names the part at fault
    /// (`header`, `directory`, or a section's name).
    case corruptSegment(path: String, section: String, reason: String)
    /// A segment file was written by a newer format version than this build reads.
    case unsupportedFormatVersion(path: String, found: Int, supported: Int)
    /// A metadata filter is malformed; `path` says where in it (a field name,
    /// `$and[1]`, …) and `reason` what is wrong.
    case invalidFilter(path: String, reason: String)
    /// A record's metadata is not acceptable.
    case invalidMetadata(field: String, reason: String)
    /// An operating-system call failed on `path`.
    case io(path: String, operation: String, errno: Int32)
    /// No index of this name exists in the database.
    case indexNotFound(name: String)
    /// An index of this name already exists in the database.
    case indexAlreadyExists(name: String)
    /// This ``Index`` instance was closed (``Index/close(persist:)-4g3lv``).
    case indexClosed(name: String)
    /// The index directory at `path` is already open for writing: by another
    /// handle in this process when `inThisProcess`, else by another process
    /// (its `LOCK` file is held). One handle at a time may own a directory.
    case directoryLocked(path: String, inThisProcess: Bool)
    /// The index was built with embedding model `expected`; `actual` was given.
    case embeddingModelMismatch(expected: String, actual: String)
    /// A record id is not acceptable (empty, too long, or named twice in one batch).
    case invalidID(id: String, reason: String)
    /// No record has this id in the namespace.
    case recordNotFound(id: String, namespace: String)
    /// A line of a JSON Lines file is not an acceptable record.
    case malformedLine(path: String, line: Int, reason: String)
    /// A write (or persist, create, delete) was asked of an index or
    /// database opened read-only.
    case readOnly(name: String)
    /// The task running an async call was cancelled, and the call stopped
    /// where it could stop cleanly (`operation` says what and how far).
    case cancelled(operation: String)

    public var description: String {
        switch self {
        case let .dimensionMismatch(expected, actual):
            return "dimension mismatch: the index holds \(expected)-dimensional vectors but got \(actual) components"
        case let .nonFiniteComponent(index, value):
            return "vector component \(index) is \(value); every component must be a finite number"
        case .zeroVector:
            return "zero vector: cosine similarity is undefined for a vector whose components are all 0"
        case let .invalidArgument(name, reason):
            return "invalid \(name): \(reason)"
        case .emptyIndex:
            return "the index is empty: add vectors before searching it"
        case let .keyNotFound(key):
            return "no vector is stored under key \(key)"
        case let .duplicateKey(key):
            return "key \(key) is already present (or appears twice in one batch)"
        case let .malformedFile(path, reason):
            return "\(path): \(reason)"
        case let .corruptSegment(path, section, reason):
            return "\(path): corrupt segment (\(section)): \(reason)"
        case let .unsupportedFormatVersion(path, found, supported):
            return "\(path): written by segment format version \(found); this build reads versions up to \(supported): upgrade Lodestone to open it"
        case let .invalidFilter(path, reason):
            return path.isEmpty ? "invalid filter: \(reason)" : "invalid filter at \"\(path)\": \(reason)"
        case let .invalidMetadata(field, reason):
            return field.isEmpty ? "invalid metadata: \(reason)" : "invalid metadata field \"\(field)\": \(reason)"
        case let .io(path, operation, errno):
            return "\(path): \(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case let .indexNotFound(name):
            return "no index named \"\(name)\" exists (listIndexes() shows those that do)"
        case let .indexClosed(name):
            return "index \"\(name)\" was closed: open it again with Database.index(\"\(name)\")"
        case let .directoryLocked(path, inThisProcess):
            if inThisProcess {
                return "\(path) is already open in this process: use the handle that opened it, or close it first "
                    + "(a Database hands out one shared Index per directory, whichever Database asks)"
            }
            return "\(path) is open in another process (it holds the LOCK file): close it there first; "
                + "one process at a time may open an index for writing, and only while no process has it open read-only"
        case let .indexAlreadyExists(name):
            return "an index named \"\(name)\" already exists: open it, or delete it first"
        case let .embeddingModelMismatch(expected, actual):
            return "embedding model mismatch: the index was built with \"\(expected)\" but the vectors come from \"\(actual)\"; "
                + "vectors of different models are not comparable: use an index built with \"\(actual)\""
        case let .invalidID(id, reason):
            return "invalid record id \"\(id.prefix(80))\": \(reason)"
        case let .recordNotFound(id, namespace):
            return "no record with id \"\(id)\" in namespace \"\(namespace)\""
        case let .malformedLine(path, line, reason):
            return "\(path):\(line): \(reason)"
        case let .cancelled(operation):
            return "cancelled: \(operation) (what was stored before stays stored)"
        case let .readOnly(name):
            return "\"\(name)\" was opened read-only: writes go through the one process that opens it for writing"
        }
    }
}
