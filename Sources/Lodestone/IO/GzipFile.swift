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
public final class GzipLineReader {
    /// The file.
    public let path: String
    private let file: gzFile
    private var buffer: [UInt8] = []
    private var start = 0
    private var finished = false
    /// The 1-based number of the last line returned.
    public private(set) var lineNumber = 0

    /// Opens `path` (gzip'd or plain text).
    /// - Throws: ``LodestoneError/io(path:operation:errno:)``.
    public init(path: String) throws(LodestoneError) {
        self.path = path
        guard SystemCalls.isReadable(path) else { throw .io(path: path, operation: "open", errno: errno) }
        guard let f = gzopen(path, "rb") else { throw .io(path: path, operation: "gzopen", errno: errno) }
        file = f
        gzbuffer(file, 1 << 17)
    }

    deinit { gzclose(file) }

    /// The next line (without its newline), or nil at the end.
    public func nextLine() throws(LodestoneError) -> [UInt8]? {
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
/// `path`, then `fsync`, `rename` over `path` and `fsync` of the directory
/// by ``finish()``. Compresses with zlib's deflate (gzip wrapper) and writes
/// through ``StorageIO``, like every durable write.
final class GzipWriter {
    let path: String
    private let temporary: String
    private var fd: Int32
    private var stream = z_stream()
    private var offset = 0
    private var output = [UInt8](repeating: 0, count: 1 << 17)

    init(path: String, level: Int32 = 6) throws(LodestoneError) {
        self.path = path
        temporary = path + ".tmp-\(SystemCalls.processID)"
        fd = StorageIO.open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw .io(path: temporary, operation: "open", errno: errno) }
        // windowBits 15 + 16: a gzip header and trailer around the deflate stream.
        guard deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                            Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            SystemCalls.close(fd)
            StorageIO.unlink(temporary)
            throw .io(path: temporary, operation: "deflateInit", errno: ENOMEM)
        }
    }

    deinit {
        if fd >= 0 {
            deflateEnd(&stream)
            SystemCalls.close(fd)
            StorageIO.unlink(temporary)
        }
    }

    private func pump(_ input: UnsafeRawBufferPointer, flush: Int32) throws(LodestoneError) {
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = UInt32(input.count)
        while true {
            var result: Int32 = Z_OK
            let produced: Int = output.withUnsafeMutableBytes { out in
                stream.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = UInt32(out.count)
                result = deflate(&stream, flush)
                return out.count - Int(stream.avail_out)
            }
            if produced > 0 {
                try withBytes(Array(output[0..<produced])) { (b: UnsafeRawBufferPointer) throws(LodestoneError) in
                    try POSIXFile.writeAll(fd, b, at: offset, path: temporary)
                }
                offset += produced
            }
            if flush == Z_FINISH ? result == Z_STREAM_END : stream.avail_out != 0 { break }
            if result != Z_OK && result != Z_BUF_ERROR {
                throw .io(path: temporary, operation: "deflate (zlib error \(result))", errno: EIO)
            }
        }
    }

    /// Appends text.
    func write(_ text: String) throws(LodestoneError) {
        var s = text
        try write(s.withUTF8 { Array($0) })
    }

    /// Appends bytes.
    func write(_ bytes: [UInt8]) throws(LodestoneError) {
        try withBytes(bytes) { (b: UnsafeRawBufferPointer) throws(LodestoneError) in try pump(b, flush: Z_NO_FLUSH) }
    }

    /// Finishes the stream, syncs and renames the file into place, and
    /// syncs the directory.
    func finish() throws(LodestoneError) {
        guard fd >= 0 else { return }
        try withBytes([UInt8]()) { (b: UnsafeRawBufferPointer) throws(LodestoneError) in try pump(b, flush: Z_FINISH) }
        deflateEnd(&stream)
        let ok = StorageIO.fsync(fd) == 0
        let e = errno
        SystemCalls.close(fd)
        fd = -1
        guard ok else {
            StorageIO.unlink(temporary)
            throw .io(path: temporary, operation: "fsync", errno: e)
        }
        guard StorageIO.rename(temporary, path) == 0 else {
            let e = errno
            StorageIO.unlink(temporary)
            throw .io(path: path, operation: "rename", errno: e)
        }
        try SegmentWriter.syncDirectory(of: path)
    }
}
