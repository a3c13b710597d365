import Synchronization

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
        let fd = SystemCalls.open(path, O_RDONLY)
        guard fd >= 0 else { throw .io(path: path, operation: "open", errno: errno) }
        guard let st = SystemCalls.status(fd) else {
            let e = errno
            SystemCalls.close(fd)
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
            let r = SystemCalls.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
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

    /// Temporary files made by ``replace(_:with:renamed:)`` so far (their
    /// names are unique, so two replaces of one file never share one).
    private static let temporaries = Atomic<Int>(0)

    /// Replaces the file at `path` with `bytes`, crash-safely: written to a
    /// temporary file beside it (`path.tmp-PID-N`) and synced, renamed over
    /// `path`, then `renamed` runs and the directory is synced (a crash
    /// leaves the old file or the new one, never a mix; a failure before the
    /// rename removes the temporary file). Concurrent replaces of one file
    /// each land whole; the last rename wins.
    static func replace(_ path: String, with bytes: [UInt8], renamed: () -> Void = {}) throws(LodestoneError) {
        let temporary = path + ".tmp-\(SystemCalls.processID)-\(temporaries.add(1, ordering: .relaxed).newValue)"
        let fd = StorageIO.open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw .io(path: temporary, operation: "open", errno: errno) }
        do throws(LodestoneError) {
            try withBytes(bytes) { (b: UnsafeRawBufferPointer) throws(LodestoneError) in
                try writeAll(fd, b, at: 0, path: temporary)
            }
            guard StorageIO.fsync(fd) == 0 else { throw .io(path: temporary, operation: "fsync", errno: errno) }
        } catch {
            SystemCalls.close(fd)
            StorageIO.unlink(temporary)
            throw error
        }
        SystemCalls.close(fd)
        guard StorageIO.rename(temporary, path) == 0 else {
            let e = errno
            StorageIO.unlink(temporary)
            throw .io(path: path, operation: "rename", errno: e)
        }
        renamed()
        try SegmentWriter.syncDirectory(of: path)
    }
}

extension StorageIO {
    /// Replaces the file at `path` with `bytes` crash-safely (a temporary
    /// file beside it, `fsync`, `rename`, `fsync` of the directory): after a
    /// crash the file holds the old bytes or the new ones. For small files
    /// kept beside an index, such as a server's settings.
    @_spi(LodestoneTools) public static func replaceFile(_ path: String, with bytes: [UInt8]) throws(LodestoneError) {
        try POSIXFile.replace(path, with: bytes)
    }
}
