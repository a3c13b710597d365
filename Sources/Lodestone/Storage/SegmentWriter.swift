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
    /// `beforeCommit` runs once every section is written, before the file
    /// is synced and renamed: what it throws abandons the write (content
    /// produced during the write can be checked there).
    static func write(path: String, indexKind: UInt32, embeddingModel: String, sections: [PendingSection],
                      beforeCommit: (() throws(LodestoneError) -> Void)? = nil) throws(LodestoneError) {
        try pinning(sections, from: 0) { (pinned: [PendingSection]) throws(LodestoneError) in
            try writePinned(path: path, indexKind: indexKind, embeddingModel: embeddingModel, sections: pinned,
                            beforeCommit: beforeCommit)
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
                                    sections: [PendingSection],
                                    beforeCommit: (() throws(LodestoneError) -> Void)?) throws(LodestoneError) {
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
        var sectionCount = 0
        var chunkList = ByteWriter()
        /// Writes one section (its pieces read once: checksums and write in
        /// one pass) and its directory entry; returns its record checksums
        /// when asked for.
        func emit(_ s: PendingSection) throws(LodestoneError) -> [UInt32]? {
            var chunks = s.chunked ? WindowChecksums(windowBytes: SegmentFormat.chunkRecords * s.stride) : nil
            var records = s.recordChecksumKind != nil ? WindowChecksums(windowBytes: s.stride) : nil
            var crc: UInt32 = 0
            var length = 0, rawLength = 0
            func store(_ p: UnsafeRawBufferPointer) throws(LodestoneError) {
                crc = lodestone_crc32c(crc, p.baseAddress, p.count)
                try POSIXFile.writeAll(fd, p, at: offset + length, path: temporary)
                length += p.count
            }
            // Raw bytes: checksums and write a slice at a time, small
            // enough to stay in cache between them.
            let slice = max(s.stride, 1) * max(1, (256 << 10) / max(s.stride, 1))
            func take(_ p: UnsafeRawBufferPointer) throws(LodestoneError) {
                rawLength += p.count
                var at = 0
                while at < p.count {
                    let part = UnsafeRawBufferPointer(rebasing: p[at..<min(p.count, at + slice)])
                    chunks?.feed(part)
                    records?.feed(part)
                    try store(part)
                    at += part.count
                }
            }
            if s.codec == .lz4 {
                precondition(s.producer == nil, "a produced section is raw")
                var joined = [UInt8]()
                for p in s.pieces {
                    chunks?.feed(p)
                    records?.feed(p)
                    joined.append(contentsOf: p)
                }
                rawLength = joined.count
                try withBytes(LZ4Codec.compress(joined)) { (c: UnsafeRawBufferPointer) throws(LodestoneError) in
                    if c.count > 0 { try store(c) }
                }
            } else if let producer = s.producer {
                try producer(take)
            } else {
                for p in s.pieces where p.count > 0 { try take(p) }
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
            sectionCount += 1
            if let crcs = chunks?.finish() {
                chunkList.u32(s.kind)
                chunkList.u32(UInt32(crcs.count))
                for c in crcs { chunkList.u32(c) }
            }
            return records?.finish()
        }
        for s in sections {
            guard let sums = try emit(s), let kind = s.recordChecksumKind else { continue }
            try withBytes(sums) { (b: UnsafeRawBufferPointer) throws(LodestoneError) in
                _ = try emit(PendingSection(kind: kind, stride: 4, count: sums.count, pieces: [b], chunked: true))
            }
        }
        let list = chunkList.bytes
        try withBytes(list) { (b: UnsafeRawBufferPointer) throws(LodestoneError) in
            _ = try emit(PendingSection(kind: SectionKind.chunkChecksums, pieces: [b]))
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
        header.u32(UInt32(sectionCount))
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
        try beforeCommit?()
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

/// CRC-32C of each `windowBytes`-long window of a stream of bytes fed in
/// pieces of any length (the last window may be shorter).
struct WindowChecksums {
    let windowBytes: Int
    private var sums: [UInt32] = []
    private var crc: UInt32 = 0
    private var filled = 0

    init(windowBytes: Int) {
        precondition(windowBytes > 0)
        self.windowBytes = windowBytes
    }

    mutating func feed(_ p: UnsafeRawBufferPointer) {
        var at = 0
        while at < p.count {
            let n = min(windowBytes - filled, p.count - at)
            crc = lodestone_crc32c(crc, p.baseAddress! + at, n)
            filled += n
            at += n
            if filled == windowBytes {
                sums.append(crc)
                crc = 0
                filled = 0
            }
        }
    }

    /// The checksums, the last partial window's included.
    mutating func finish() -> [UInt32] {
        if filled > 0 { sums.append(crc) }
        filled = 0
        crc = 0
        return sums
    }
}
