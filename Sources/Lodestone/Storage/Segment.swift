import CLodestoneKernels
import CLodestoneLZ4

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How a section's bytes are stored.
enum SectionCodec: UInt32 {
    case raw = 0
    case lz4 = 1
}

/// The section kinds of the segment format (see FORMAT.md).
enum SectionKind {
    static let parameters: UInt32 = 1
    static let vectors: UInt32 = 2
    static let keys: UInt32 = 3
    static let states: UInt32 = 4
    static let free: UInt32 = 5
    static let chunkChecksums: UInt32 = 6
    static let norms: UInt32 = 7
    static let hnswLinks0: UInt32 = 16
    static let hnswLevels: UInt32 = 17
    static let hnswUpperStart: UInt32 = 18
    static let hnswUpperLinks: UInt32 = 19
    static let hnswTombstones: UInt32 = 20
    static let hnswFreeUpperRuns: UInt32 = 21
    /// Format 1.1's blocks of the quantized traversal (without the node's
    /// own code): ignored on open, so such an index encodes its blocks again.
    static let hnswNeighbourCodes11: UInt32 = 22
    /// Per node, its neighbours' codes and its own (the quantized traversal's blocks).
    static let hnswNeighbourCodes: UInt32 = 23
    static let recordsHeader: UInt32 = 32
    static let recordsSlots: UInt32 = 33
    static let recordsHash: UInt32 = 34
    static let recordsBlob: UInt32 = 35
    /// An `Index`'s record changes since the base segment (delta files).
    static let recordsChanges: UInt32 = 36
    /// A delta's patch of per-node section `k` has kind `patchBase + k`.
    static let patchBase: UInt32 = 64

    static func name(_ kind: UInt32) -> String {
        switch kind {
        case parameters: return "parameters"
        case vectors: return "vectors"
        case keys: return "keys"
        case states: return "states"
        case free: return "free"
        case chunkChecksums: return "chunk-checksums"
        case norms: return "norms"
        case hnswLinks0: return "hnsw.links0"
        case hnswLevels: return "hnsw.levels"
        case hnswUpperStart: return "hnsw.upper-start"
        case hnswUpperLinks: return "hnsw.upper-links"
        case hnswTombstones: return "hnsw.tombstones"
        case hnswFreeUpperRuns: return "hnsw.free-upper-runs"
        case hnswNeighbourCodes11: return "hnsw.neighbour-codes-1.1"
        case hnswNeighbourCodes: return "hnsw.neighbour-codes"
        case recordsHeader: return "records.header"
        case recordsSlots: return "records.slots"
        case recordsHash: return "records.hash"
        case recordsBlob: return "records.blob"
        case recordsChanges: return "records.changes"
        case (patchBase + 1)..<(patchBase + 32): return "patch." + name(kind - patchBase)
        default: return "section kind \(kind)"
        }
    }
}

/// The format constants.
enum SegmentFormat {
    static let magic: [UInt8] = Array("LODESTON".utf8)
    static let major: UInt16 = 1
    static let minor: UInt16 = 2
    static let byteOrderMark: UInt32 = 0x0A0B_0C0D
    static let headerLength = 256
    static let page = 4096
    static let directoryEntryLength = 64
    static let maxModelName = 128
    /// Records per chunk of a chunked section.
    static let chunkRecords = 4096

    static func align(_ n: Int) -> Int { (n + page - 1) / page * page }
}

/// Bytes a section may own (an array of plain values).
protocol SectionBytes {
    func withRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws(LodestoneError) -> R) throws(LodestoneError) -> R
}

/// Plain values a section's owned array may hold.
protocol SectionElement {}
extension UInt8: SectionElement {}
extension UInt32: SectionElement {}
extension UInt64: SectionElement {}
extension Float: SectionElement {}

extension Array: SectionBytes where Element: SectionElement {
    func withRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws(LodestoneError) -> R) throws(LodestoneError) -> R {
        try withBytes(self, body)
    }
}

/// A section to write: its kind, codec, record layout and content: byte
/// ranges written one after another (valid for the duration of the write),
/// or an array the section owns.
struct PendingSection {
    var kind: UInt32
    var codec: SectionCodec = .raw
    var stride = 0
    var count = 0
    var pieces: [UnsafeRawBufferPointer] = []
    /// Content owned by the section, written instead of `pieces`.
    var owned: (any SectionBytes)? = nil
    /// Whether the section's records get a checksum per chunk of 4,096
    /// (listed in the `chunk-checksums` section), so that a reader can verify
    /// it lazily, chunk by chunk. Pieces may be any runs of whole records.
    var chunked = false
}

/// One directory entry of an opened segment.
struct SectionEntry {
    let kind: UInt32
    let codec: SectionCodec
    let offset: Int
    let storedLength: Int
    let rawLength: Int
    let crc: UInt32
    let stride: Int
    let count: Int
    var name: String { SectionKind.name(kind) }
}

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
        let temporary = path + ".tmp-\(getpid())"
        let fd = StorageIO.open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw .io(path: temporary, operation: "open", errno: errno) }
        var succeeded = false
        defer {
            if !succeeded {
                close(fd)
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
        guard close(fd) == 0 else {
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
        defer { close(fd) }
        guard StorageIO.fsyncDirectory(fd) == 0 else { throw .io(path: dir, operation: "fsync directory", errno: errno) }
    }
}

/// An opened segment: the file mapped copy-on-write (`MAP_PRIVATE`), its
/// header and directory validated, every section's checksum verified.
/// Raw sections are used in place; an index may write to its mapped records
/// (links, states) without touching the file.
final class MappedSegment: @unchecked Sendable {
    // @unchecked: the mapping is immutable except through the index that
    // owns this segment, which follows its own synchronisation.
    let path: String
    let base: UnsafeMutableRawPointer
    let size: Int
    let indexKind: UInt32
    let embeddingModel: String
    let createdNanoseconds: Int64
    let minorVersion: Int
    let entries: [SectionEntry]
    /// Per-chunk checksums of the chunked sections, by kind.
    let chunkChecksums: [UInt32: [UInt32]]

    /// Opens and validates a segment. With `lazy` (the default) the chunked
    /// sections' checksums are left to their readers, chunk by chunk (see
    /// ``NodeArena``); everything else is verified here.
    init(path: String, lazy: Bool = true) throws(LodestoneError) {
        self.path = path
        let (fd, size) = try POSIXFile.openForReading(path)
        defer { close(fd) }
        self.size = size
        func corrupt(_ section: String, _ reason: String) -> LodestoneError {
            .corruptSegment(path: path, section: section, reason: reason)
        }
        guard size >= SegmentFormat.page else {
            throw corrupt("header", "the file is \(size) bytes, shorter than the \(SegmentFormat.page)-byte header page (truncated?)")
        }
        guard let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw .io(path: path, operation: "mmap", errno: errno)
        }
        base = mapped
        var ok = false
        defer { if !ok { munmap(mapped, size) } }

        let headerBytes = Array(UnsafeRawBufferPointer(start: mapped, count: SegmentFormat.headerLength))
        var h = ByteReader(headerBytes) { corrupt("header", "shorter than its fields") }
        guard try h.raw(8) == SegmentFormat.magic else {
            throw corrupt("header", "no LODESTON magic: not a Lodestone segment")
        }
        let major = try h.u16()
        minorVersion = Int(try h.u16())
        guard Int(major) <= Int(SegmentFormat.major) else {
            throw .unsupportedFormatVersion(path: path, found: Int(major), supported: Int(SegmentFormat.major))
        }
        guard major == SegmentFormat.major else { throw corrupt("header", "format major version \(major) is not 1") }
        guard try h.u32() == SegmentFormat.byteOrderMark else {
            throw corrupt("header", "byte-order mark mismatch (written on a host of the other byte order, or damaged)")
        }
        let storedCRC = headerBytes.withUnsafeBytes { p in p.load(fromByteOffset: 252, as: UInt32.self).littleEndian }
        let actualCRC = headerBytes.withUnsafeBytes { lodestone_crc32c(0, $0.baseAddress, 252) }
        guard storedCRC == actualCRC else { throw corrupt("header", "checksum mismatch") }
        guard try h.u32() == UInt32(SegmentFormat.headerLength) else { throw corrupt("header", "unexpected header length") }
        indexKind = try h.u32()
        createdNanoseconds = Int64(bitPattern: try h.u64())
        let directoryOffset = try h.u64()
        let count = Int(try h.u32())
        let directoryCRC = try h.u32()
        let modelLength = Int(try h.u16())
        guard modelLength <= SegmentFormat.maxModelName else { throw corrupt("header", "model name length \(modelLength)") }
        embeddingModel = String(decoding: try h.raw(modelLength), as: UTF8.self)

        let dirLength = count * SegmentFormat.directoryEntryLength
        guard count <= 4096, directoryOffset >= UInt64(SegmentFormat.page),
              directoryOffset <= UInt64(size), UInt64(size) - directoryOffset >= UInt64(dirLength) else {
            throw corrupt("directory", "\(count) entries at offset \(directoryOffset) do not fit in the \(size)-byte file (truncated?)")
        }
        let dirPointer = mapped + Int(directoryOffset)
        guard lodestone_crc32c(0, dirPointer, dirLength) == directoryCRC else {
            throw corrupt("directory", "checksum mismatch")
        }
        let dirBytes = Array(UnsafeRawBufferPointer(start: dirPointer, count: dirLength))
        var d = ByteReader(dirBytes) { corrupt("directory", "shorter than its entries") }
        var entries: [SectionEntry] = []
        for _ in 0..<count {
            let kind = try d.u32()
            let codecRaw = try d.u32()
            let offset = try d.u64(), stored = try d.u64(), raw = try d.u64()
            let crc = try d.u32()
            let stride = Int(try d.u32())
            let records = try d.u64()
            try d.skip(16)
            let name = SectionKind.name(kind)
            guard let codec = SectionCodec(rawValue: codecRaw) else { throw corrupt(name, "unknown codec \(codecRaw)") }
            guard offset % UInt64(SegmentFormat.page) == 0, offset >= UInt64(SegmentFormat.page),
                  offset <= UInt64(size), stored <= UInt64(size) - offset else {
                throw corrupt(name, "\(stored) bytes at offset \(offset) do not fit in the \(size)-byte file (truncated?)")
            }
            guard raw < 1 << 40, records < 1 << 40 else { throw corrupt(name, "absurd lengths") }
            if codec == .raw {
                guard raw == stored else { throw corrupt(name, "raw section with stored \(stored) != raw \(raw) bytes") }
            }
            if stride > 0 {
                let (bytes, overflow) = UInt64(stride).multipliedReportingOverflow(by: records)
                guard !overflow, bytes == raw else {
                    throw corrupt(name, "\(records) records of \(stride) bytes do not make \(raw) bytes")
                }
            }
            entries.append(SectionEntry(kind: kind, codec: codec, offset: Int(offset), storedLength: Int(stored),
                                        rawLength: Int(raw), crc: crc, stride: stride, count: Int(records)))
        }
        // Sections must not overlap each other or the directory.
        let spans = (entries.map { ($0.offset, $0.offset + $0.storedLength, $0.name) }
            + [(Int(directoryOffset), Int(directoryOffset) + dirLength, "directory")])
            .filter { $0.1 > $0.0 }.sorted { $0.0 < $1.0 }
        for (a, b) in zip(spans, spans.dropFirst()) where b.0 < a.1 {
            throw corrupt(b.2, "overlaps \(a.2)")
        }
        // Verify the sections that are not checked chunk by chunk.
        guard let listEntry = entries.first(where: { $0.kind == SectionKind.chunkChecksums }) else {
            throw corrupt("chunk-checksums", "section missing")
        }
        let listBytes = Array(UnsafeRawBufferPointer(start: mapped + listEntry.offset, count: listEntry.storedLength))
        guard lodestone_crc32c(0, mapped + listEntry.offset, listEntry.storedLength) == listEntry.crc else {
            throw corrupt("chunk-checksums", "checksum mismatch")
        }
        var list = ByteReader(listBytes) { corrupt("chunk-checksums", "shorter than its lists") }
        var chunkChecksums: [UInt32: [UInt32]] = [:]
        while list.position < listBytes.count {
            let kind = try list.u32()
            let count = Int(try list.u32())
            guard let e = entries.first(where: { $0.kind == kind }), e.stride > 0, e.codec == .raw,
                  count == (e.count + 4095) / 4096 else {
                throw corrupt("chunk-checksums", "list for \(SectionKind.name(kind)) does not match its section")
            }
            var crcs: [UInt32] = []
            for _ in 0..<count { crcs.append(try list.u32()) }
            chunkChecksums[kind] = crcs
        }
        for e in entries where e.kind != SectionKind.chunkChecksums && (!lazy || chunkChecksums[e.kind] == nil) {
            guard lodestone_crc32c(0, mapped + e.offset, e.storedLength) == e.crc else {
                throw corrupt(e.name, "checksum mismatch")
            }
        }
        self.entries = entries
        self.chunkChecksums = chunkChecksums
        #if os(Linux)
        _ = madvise(mapped, size, 14 /* MADV_HUGEPAGE: no effect on file pages, harmless */)
        #endif
        ok = true
    }

    deinit { munmap(base, size) }

    /// Whether the file has a section of `kind`.
    func has(_ kind: UInt32) -> Bool { entries.contains { $0.kind == kind } }

    /// The directory entry of `kind`, or a `corruptSegment` error if missing.
    func entry(_ kind: UInt32) throws(LodestoneError) -> SectionEntry {
        guard let e = entries.first(where: { $0.kind == kind }) else {
            throw .corruptSegment(path: path, section: SectionKind.name(kind), reason: "section missing")
        }
        return e
    }

    /// A raw section's bytes in the mapping, checked to hold `count` records
    /// of `stride` bytes.
    func records(_ kind: UInt32, stride: Int, count: Int) throws(LodestoneError) -> UnsafeMutableRawPointer {
        let e = try entry(kind)
        guard e.codec == .raw, e.stride == stride, e.count == count else {
            throw .corruptSegment(path: path, section: e.name,
                                  reason: "expected \(count) raw records of \(stride) bytes, found \(e.count) of \(e.stride)")
        }
        return base + e.offset
    }

    /// The per-chunk checksums of a chunked section.
    func checksums(_ kind: UInt32) throws(LodestoneError) -> [UInt32] {
        guard let crcs = chunkChecksums[kind] else {
            throw .corruptSegment(path: path, section: SectionKind.name(kind), reason: "no chunk checksums listed")
        }
        return crcs
    }

    /// Verifies the whole checksum of every section not verified chunk by
    /// chunk (those are never written through the mapping).
    func verifyUnchunkedSections() throws(LodestoneError) {
        for e in entries where chunkChecksums[e.kind] == nil && lodestone_crc32c(0, base + e.offset, e.storedLength) != e.crc {
            throw .corruptSegment(path: path, section: e.name, reason: "checksum mismatch")
        }
    }

    /// A section's decoded bytes (decompressed when LZ4).
    func bytes(_ kind: UInt32) throws(LodestoneError) -> [UInt8] {
        let e = try entry(kind)
        let stored = UnsafeRawBufferPointer(start: base + e.offset, count: e.storedLength)
        if e.codec == .raw { return Array(stored) }
        guard let out = LZ4Codec.decompress(stored, rawLength: e.rawLength) else {
            throw .corruptSegment(path: path, section: e.name, reason: "LZ4 data does not decode to \(e.rawLength) bytes")
        }
        return out
    }
}

/// LZ4 block compression (the only file that calls liblz4).
enum LZ4Codec {
    static func compress(_ input: [UInt8]) -> [UInt8] {
        guard !input.isEmpty else { return [] }
        let bound = Int(LZ4_compressBound(Int32(input.count)))
        var out = [UInt8](repeating: 0, count: bound)
        let n = input.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                LZ4_compress_default(src.baseAddress!.assumingMemoryBound(to: CChar.self),
                                     dst.baseAddress!.assumingMemoryBound(to: CChar.self),
                                     Int32(input.count), Int32(bound))
            }
        }
        precondition(n > 0, "LZ4 compression failed")
        return Array(out[0..<Int(n)])
    }

    static func decompress(_ input: UnsafeRawBufferPointer, rawLength: Int) -> [UInt8]? {
        if rawLength == 0 { return input.isEmpty ? [] : nil }
        // LZ4 expands at most 255:1; check before allocating.
        guard !input.isEmpty, rawLength <= Int(Int32.max), input.count <= Int(Int32.max),
              rawLength <= input.count * 255 + 16 else { return nil }
        var out = [UInt8](repeating: 0, count: rawLength)
        let n = out.withUnsafeMutableBytes { dst in
            LZ4_decompress_safe(input.baseAddress!.assumingMemoryBound(to: CChar.self),
                                dst.baseAddress!.assumingMemoryBound(to: CChar.self),
                                Int32(input.count), Int32(rawLength))
        }
        return Int(n) == rawLength ? out : nil
    }
}
