#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The few file system calls Lodestone makes, with its errors.
enum POSIXFile {
    /// Opens `path` for reading; returns the descriptor (the caller closes
    /// it) and the file's size.
    static func openForReading(_ path: String) throws(LodestoneError) -> (fd: Int32, size: Int) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw .io(path: path, operation: "open", errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw .io(path: path, operation: "fstat", errno: e)
        }
        return (fd, Int(st.st_size))
    }

    /// Writes all of `bytes` at `offset`, retrying short writes and EINTR.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws(LodestoneError) {
        var done = 0
        while done < bytes.count {
            let w = StorageIO.pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if w < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "write", errno: errno)
            }
            done += w
        }
    }

    /// Reads exactly `count` bytes at `offset`, retrying short reads and
    /// EINTR; a file that ends first is `malformedFile`.
    static func readAll(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String)
        throws(LodestoneError)
    {
        var done = 0
        while done < buffer.count {
            let r = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if r < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "read", errno: errno)
            }
            guard r > 0 else { throw .malformedFile(path: path, reason: "ends at byte \(offset + done), inside a read") }
            done += r
        }
    }

    /// `count` bytes read at `offset` (see ``readAll(_:_:at:path:)``).
    static func read(_ fd: Int32, count: Int, at offset: Int, path: String) throws(LodestoneError) -> [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 16)
        defer { buffer.deallocate() }
        try readAll(fd, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]), at: offset, path: path)
        return Array(buffer[0..<count])
    }
}
