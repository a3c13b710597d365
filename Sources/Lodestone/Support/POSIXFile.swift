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
}
