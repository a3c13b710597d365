import CLodestoneKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a segment file atomically: a temporary file beside `path`, then
/// `fsync`, `rename` over `path`, and `fsync` of the directory. On any
/// failure the temporary file is removed and whatever was at `path` stays.
enum SegmentWriter {
    static func write(path: String, indexKind: UInt32, embeddingModel: String,
                      sections: [PendingSection]) throws(LodestoneError) {
        try pinning(sections, from: 0) { (pinned: [PendingSection]) throws(LodestoneError) in
            var chunkList = ByteWriter()
            for s in pinned where s.chunked {
                let crcs = chunkChecksums(s.pieces, windowBytes: SegmentFormat.chunkRecords * s.stride)
                chunkList.u32(s.kind)
                chunkList.u32(UInt32(crcs.count))
                for c in crcs { chunkList.u32(c) }
            }
            try withBytes(chunkList.bytes) { (list: UnsafeRawBufferPointer) throws(LodestoneError) in
                try writePinned(path: path, indexKind: indexKind, embeddingModel: embeddingModel,
                                sections: pinned + [PendingSection(kind: SectionKind.chunkChecksums, pieces: [list])])
            }
        }
    }

    /// Runs `body` with every owned section's bytes pinned as its pieces.
    private static func pinning(_ sections: [PendingSection], from i: Int,
                                _ body: ([PendingSection]) throws(LodestoneError) -> Void) throws(LodestoneError) {
        guard i < sections.count else { return try body(sections) }
        guard let owned = sections[i].owned else { return try pinning(sections, from: i + 1, body) }
        try owned.withRawBytes { (bytes: UnsafeRawBufferPointer) throws(LodestoneError) in
            var pinned = sections
            pinned[i].pieces = [bytes]
            pinned[i].owned = nil
            try pinning(pinned, from: i + 1, body)
        }
    }

    private static func writePinned(path: String, indexKind: UInt32, embeddingModel: String,
                                    sections: [PendingSection]) throws(LodestoneError) {
        let model = Array(embeddingModel.utf8)
        guard model.count <= SegmentFormat.maxModelName else {
            throw .invalidArgument(name: "embeddingModel", reason: "at most \(SegmentFormat.maxModelName) UTF-8 bytes")
        }
        let temporary = path + ".tmp-\(SystemCalls.processID)"
        let fd = StorageIO.open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw .io(path: temporary, operation: "open", errno: errno) }
        var succeeded = false
        defer {
            if !succeeded {
                SystemCalls.close(fd)
                StorageIO.unlink(temporary)
            }
        }
        var offset = SegmentFormat.page
        var directory = ByteWriter()
        for s in sections {
            var stored = s.pieces
            var compressed: [UInt8] = []
            let rawLength = s.pieces.reduce(0) { $0 + $1.count }
            if s.codec == .lz4 {
                var joined = [UInt8]()
                joined.reserveCapacity(rawLength)
                for p in s.pieces { joined.append(contentsOf: p) }
                compressed = LZ4Codec.compress(joined)
            }
            var crc: UInt32 = 0
            var length = 0
            try withBytes(compressed) { (c: UnsafeRawBufferPointer) throws(LodestoneError) in
                if s.codec == .lz4 { stored = [c] }
                for p in stored where p.count > 0 {
                    crc = lodestone_crc32c(crc, p.baseAddress, p.count)
                    try POSIXFile.writeAll(fd, p, at: offset + length, path: temporary)
                    length += p.count
                }
            }
            directory.u32(s.kind)
            directory.u32(s.codec.rawValue)
            directory.u64(UInt64(offset))
            directory.u64(UInt64(length))
            directory.u64(UInt64(rawLength))
            directory.u32(crc)
            directory.u32(UInt32(s.stride))
            directory.u64(UInt64(s.count))
            directory.zeros(16)
            offset = SegmentFormat.align(offset + length)
        }
        let dirBytes = directory.bytes
        try withBytes(dirBytes) { (d: UnsafeRawBufferPointer) throws(LodestoneError) in
            try POSIXFile.writeAll(fd, d, at: offset, path: temporary)
        }
        var header = ByteWriter()
        header.raw(SegmentFormat.magic)
        header.u16(SegmentFormat.major)
        header.u16(SegmentFormat.minor)
        header.u32(SegmentFormat.byteOrderMark)
        header.u32(UInt32(SegmentFormat.headerLength))
        header.u32(indexKind)
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        header.u64(UInt64(bitPattern: Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)))
        header.u64(UInt64(offset))
        header.u32(UInt32(sections.count))
        header.u32(dirBytes.withUnsafeBytes { lodestone_crc32c(0, $0.baseAddress, $0.count) })
        header.u16(UInt16(model.count))
        header.raw(model)
        header.pad(to: 252)
        var headerBytes = header.bytes
        let headerCRC = headerBytes.withUnsafeBytes { lodestone_crc32c(0, $0.baseAddress, 252) }
        var crcBytes = ByteWriter()
        crcBytes.u32(headerCRC)
        headerBytes += crcBytes.bytes
        headerBytes += [UInt8](repeating: 0, count: SegmentFormat.page - headerBytes.count)
        try withBytes(headerBytes) { (h: UnsafeRawBufferPointer) throws(LodestoneError) in
            try POSIXFile.writeAll(fd, h, at: 0, path: temporary)
        }
        guard StorageIO.fsync(fd) == 0 else { throw .io(path: temporary, operation: "fsync", errno: errno) }
        guard SystemCalls.close(fd) == 0 else {
            succeeded = true  // closed: do not close again
            StorageIO.unlink(temporary)
            throw .io(path: temporary, operation: "close", errno: errno)
        }
        succeeded = true
        guard StorageIO.rename(temporary, path) == 0 else {
            let e = errno
            StorageIO.unlink(temporary)
            throw .io(path: path, operation: "rename", errno: e)
        }
        try syncDirectory(of: path)
    }

    /// CRC-32C of each `windowBytes`-long window of the bytes the pieces
    /// form one after another (the last window may be shorter).
    static func chunkChecksums(_ pieces: [UnsafeRawBufferPointer], windowBytes: Int) -> [UInt32] {
        var out: [UInt32] = []
        var crc: UInt32 = 0, filled = 0
        for p in pieces {
            var at = 0
            while at < p.count {
                let n = min(windowBytes - filled, p.count - at)
                crc = lodestone_crc32c(crc, p.baseAddress! + at, n)
                filled += n
                at += n
                if filled == windowBytes {
                    out.append(crc)
                    crc = 0
                    filled = 0
                }
            }
        }
        if filled > 0 { out.append(crc) }
        return out
    }

    /// Makes a rename in `path`'s directory durable.
    static func syncDirectory(of path: String) throws(LodestoneError) {
        var dir = path
        if let slash = dir.lastIndex(of: "/") { dir = String(dir[..<slash]) } else { dir = "." }
        if dir.isEmpty { dir = "/" }
        let fd = StorageIO.open(dir, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw .io(path: dir, operation: "open directory", errno: errno) }
        defer { SystemCalls.close(fd) }
        guard StorageIO.fsyncDirectory(fd) == 0 else { throw .io(path: dir, operation: "fsync directory", errno: errno) }
    }
}
