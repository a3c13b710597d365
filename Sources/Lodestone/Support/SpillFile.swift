/// An unnamed scratch file that an arena's chunks can live in instead of
/// anonymous memory (``NodeArena/spillNewChunks(to:)``): the pages of a
/// shared file mapping can leave memory at any time and come back on the
/// next access, so a large build keeps only what it is working on
/// resident. Nothing in it needs to survive a crash (the log and the
/// segments hold the data), so it has no name: it disappears with the
/// process.
final class SpillFile: @unchecked Sendable {
    // @unchecked: `length` is changed by the arena's writer only.

    private let fd: Int32
    /// Bytes handed out so far.
    private(set) var length = 0

    private init(fd: Int32) { self.fd = fd }

    deinit { SystemCalls.close(fd) }

    /// A scratch file in `directory`, or nil when one cannot be made there
    /// (the caller then keeps its records in memory).
    static func create(inDirectory directory: String) -> SpillFile? {
        let fd = SystemCalls.openScratchFile(inDirectory: directory)
        return fd >= 0 ? SpillFile(fd: fd) : nil
    }

    /// `bytes` more of the file (zeros), mapped shared, with their disk
    /// blocks reserved, and where they start in the file; nil when the disk
    /// cannot hold them. Unmapped by the caller (``SystemCalls/unmap(_:size:)``).
    func mapRegion(bytes: Int) -> (pointer: UnsafeMutableRawPointer, offset: Int)? {
        guard SystemCalls.allocateFileSpace(fd, offset: length, length: bytes) == 0,
              let p = SystemCalls.mapShared(fd, offset: length, size: bytes) else { return nil }
        defer { length += bytes }
        return (p, length)
    }

    /// Gives back the disk blocks of a region no longer mapped (its records
    /// now live elsewhere): the file keeps its length, the region is a hole.
    func release(offset: Int, bytes: Int) {
        _ = SystemCalls.punchHole(fd, offset: offset, length: bytes)
    }

    /// Disk blocks the file holds, in bytes.
    var allocatedBytes: Int {
        guard let st = SystemCalls.status(fd) else { return 0 }
        return Int(st.st_blocks) * 512
    }
}
