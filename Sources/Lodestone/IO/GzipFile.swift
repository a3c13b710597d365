import CLodestoneZlib

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a gzip-compressed (or plain) text file line by line, in constant
/// memory (the only file that calls zlib for reading).
final class GzipLineReader {
    let path: String
    private let file: gzFile
    private var buffer: [UInt8] = []
    private var start = 0
    private var finished = false
    /// The 1-based number of the last line returned.
    private(set) var lineNumber = 0

    init(path: String) throws(LodestoneError) {
        self.path = path
        guard access(path, R_OK) == 0 else { throw .io(path: path, operation: "open", errno: errno) }
        guard let f = gzopen(path, "rb") else { throw .io(path: path, operation: "gzopen", errno: errno) }
        file = f
        gzbuffer(file, 1 << 17)
    }

    deinit { gzclose(file) }

    /// The next line (without its newline), or nil at the end.
    func nextLine() throws(LodestoneError) -> [UInt8]? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 10) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                lineNumber += 1
                return line
            }
            if finished {
                guard start < buffer.count else { return nil }
                let line = Array(buffer[start...])
                start = buffer.count
                lineNumber += 1
                return line
            }
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            let chunk = 1 << 16
            let old = buffer.count
            buffer += [UInt8](repeating: 0, count: chunk)
            let n = buffer.withUnsafeMutableBytes { gzread(file, $0.baseAddress! + old, UInt32(chunk)) }
            if n < 0 {
                var code: Int32 = 0
                let message = gzerror(file, &code).map { String(cString: $0) } ?? "unknown error"
                throw .malformedFile(path: path, reason: "gzip data is damaged or truncated: \(message)")
            }
            buffer.removeLast(chunk - Int(n))
            if n == 0 {
                // gzread returns 0 at the end, and also for a stream cut short.
                var code: Int32 = 0
                let message = gzerror(file, &code).map { String(cString: $0) } ?? ""
                if code != Z_OK && code != Z_STREAM_END {
                    throw .malformedFile(path: path, reason: "gzip data is damaged or truncated: \(message)")
                }
                finished = true
            }
        }
    }
}

/// Writes a gzip-compressed text file atomically: a temporary file beside
/// `path`, renamed over it by ``finish()``.
final class GzipWriter {
    let path: String
    private let temporary: String
    private var file: gzFile?

    init(path: String, level: Int = 6) throws(LodestoneError) {
        self.path = path
        temporary = path + ".tmp-\(getpid())"
        guard let f = gzopen(temporary, "wb\(level)") else { throw .io(path: temporary, operation: "gzopen", errno: errno) }
        file = f
        gzbuffer(f, 1 << 17)
    }

    deinit {
        if let file {
            gzclose(file)
            unlink(temporary)
        }
    }

    /// Appends text.
    func write(_ text: String) throws(LodestoneError) {
        var s = text
        let ok = s.withUTF8 { bytes in
            bytes.isEmpty || gzwrite(file, bytes.baseAddress, UInt32(bytes.count)) == Int32(bytes.count)
        }
        guard ok else { throw .io(path: temporary, operation: "gzwrite", errno: errno) }
    }

    /// Flushes, syncs and renames the file into place.
    func finish() throws(LodestoneError) {
        guard let f = file else { return }
        file = nil
        guard gzclose(f) == Z_OK else {
            unlink(temporary)
            throw .io(path: temporary, operation: "gzclose", errno: errno)
        }
        let fd = open(temporary, O_RDONLY)
        if fd >= 0 {
            _ = StorageIO.fsync(fd)
            close(fd)
        }
        guard StorageIO.rename(temporary, path) == 0 else {
            let e = errno
            StorageIO.unlink(temporary)
            throw .io(path: path, operation: "rename", errno: e)
        }
    }
}
